#include "ipsentry/filters/spd.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>

#include <fmt/format.h>

#include "ipsentry/dissect/text_table.hpp"

namespace ipsentry::filters {

using dissect::IpAddr;
using dissect::IpPrefix;

const char* to_string(PolicyAction a) noexcept {
  switch (a) {
    case PolicyAction::permit: return "permit";
    case PolicyAction::block: return "block";
    case PolicyAction::protect: return "protect";
    case PolicyAction::negotiate: return "negotiate";
  }
  return "?";
}

const char* to_string(InboundCleartext c) noexcept {
  switch (c) {
    case InboundCleartext::require: return "require";
    case InboundCleartext::request: return "request";
    case InboundCleartext::respond: return "respond";
  }
  return "?";
}

const char* to_string(PolicyIpsec p) noexcept {
  switch (p) {
    case PolicyIpsec::esp: return "esp";
    case PolicyIpsec::ah: return "ah";
    case PolicyIpsec::ah_esp: return "ah+esp";
  }
  return "?";
}

bool LocalAddresses::contains(const IpAddr& a) const noexcept {
  return std::find(addresses.begin(), addresses.end(), a) != addresses.end();
}

LocalAddresses LocalAddresses::of_host() {
  LocalAddresses out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      out.addresses.push_back(IpAddr::v4(reinterpret_cast<const std::uint8_t*>(&sin->sin_addr)));
      if ((i->ifa_flags & IFF_BROADCAST) != 0 && i->ifa_broadaddr != nullptr &&
          i->ifa_broadaddr->sa_family == AF_INET) {
        const auto* b = reinterpret_cast<const sockaddr_in*>(i->ifa_broadaddr);
        // Without a configured broadcast address glibc reports the address
        // itself (or 0.0.0.0): exempting that would leave it unprotected.
        const IpAddr bc = IpAddr::v4(reinterpret_cast<const std::uint8_t*>(&b->sin_addr));
        const std::uint8_t zero[4] = {};
        if (!(bc == out.addresses.back()) && !(bc == IpAddr::v4(zero))) out.broadcasts.push_back(bc);
      }
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      out.addresses.push_back(IpAddr::v6(reinterpret_cast<const std::uint8_t*>(&sin6->sin6_addr)));
    }
  }
  freeifaddrs(list);
  return out;
}

LocalAddresses LocalAddresses::for_config(const Config& config) {
  LocalAddresses host = of_host();
  if (!config.local_addresses.empty()) host.addresses = config.local_addresses;
  return host;
}

namespace {

bool selector_matches(const AddressSelector& s, const IpAddr& a, const LocalAddresses& local) noexcept {
  switch (s.kind) {
    case AddressSelector::Kind::any: return true;
    case AddressSelector::Kind::me: return local.contains(a);
    case AddressSelector::Kind::prefix: return s.prefix.contains(a);
  }
  return false;
}

bool ports_match(const PortRange& r, bool has_ports, std::uint16_t port) noexcept {
  if (r.any()) return true;
  return has_ports && port >= r.low && port <= r.high;
}

AddressSelector prefix_selector(const char* text) {
  AddressSelector s;
  s.kind = AddressSelector::Kind::prefix;
  s.prefix = *IpPrefix::parse(text);
  return s;
}

std::string ports_str(const PortRange& r) {
  if (r.any()) return "*";
  if (r.low == r.high) return std::to_string(r.low);
  return fmt::format("{}-{}", r.low, r.high);
}

std::string protocol_str(const std::optional<std::uint8_t>& p) {
  if (!p) return "any";
  switch (*p) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 46: return "rsvp";
    case 50: return "esp";
    case 51: return "ah";
    case 58: return "icmpv6";
    case 132: return "sctp";
    default: return std::to_string(*p);
  }
}

AddressSelector me_selector() {
  AddressSelector s;
  s.kind = AddressSelector::Kind::me;
  return s;
}

// The entries of the configured exemptions, inbound ones first. Inbound
// entries select only what is addressed to this host (or to a multicast or
// broadcast address it listens on), outbound ones only what it sends: a port
// alone never suffices, since any host can send from port 88 or 500.
std::vector<SpdEntry> exemption_entries(ExemptionSet set, const LocalAddresses& local) {
  std::vector<SpdEntry> out;
  for (Sense sense : {Sense::inbound, Sense::outbound}) {
    const bool in = sense == Sense::inbound;
    auto add = [&](Exemption kind, auto&& fill) {
      if (!set.has(kind)) return;
      SpdEntry e;
      e.name = fmt::format("exempt {} {}", to_string(kind), in ? "in" : "out");
      e.sense = sense;
      e.exemption = true;
      e.exemption_kind = kind;
      e.action = PolicyAction::permit;
      fill(e);
      out.push_back(std::move(e));
    };
    // IKE to this host's ports 500 and 4500 (RFC 3948: NAT-T moves IKE to
    // 4500), from any port, since a NAT rewrites it. Going out, from our IKE
    // ports and only from root's sockets: port 4500 is open to any local
    // user, who would otherwise send anything in clear from it.
    for (std::uint16_t port : {std::uint16_t{500}, std::uint16_t{4500}}) {
      add(Exemption::ike, [&](SpdEntry& e) {
        e.protocol = 17;
        (in ? e.dst : e.src) = me_selector();
        (in ? e.dport : e.sport) = {port, port};
        e.root_only = !in;
      });
    }
    // Neighbor Discovery: without it IPv6 cannot reach a neighbour to start
    // protecting anything, and its multicast destinations cannot be covered by
    // a unicast SA (RFC 4301 section 4.4.1 leaves ND to local policy). Hop
    // limit 255 proves the sender is on the link; inbound, the destination is
    // this host or link-scoped, so nothing routed is exempted.
    auto nd = [&](const char* dst) {
      add(Exemption::neighbor_discovery, [&](SpdEntry& e) {
        e.protocol = 58;
        e.icmp_types = std::pair<std::uint8_t, std::uint8_t>{133, 137};
        e.hop_limit = 255;
        if (dst == nullptr) {
          if (in) e.dst = me_selector();
        } else {
          e.dst = prefix_selector(dst);
        }
      });
    };
    nd(nullptr);
    if (in) {
      nd("fe80::/10");
      nd("ff02::/16");
    }
    // Opt-in. Kerberos: the port in either place, as Windows had it; inbound
    // this admits any packet from port 88 to this host (documented).
    for (std::uint8_t proto : {std::uint8_t{17}, std::uint8_t{6}}) {
      for (bool source_port : {true, false}) {
        add(Exemption::kerberos, [&](SpdEntry& e) {
          e.protocol = proto;
          (in ? e.dst : e.src) = me_selector();
          (source_port ? e.sport : e.dport) = {88, 88};
        });
      }
    }
    add(Exemption::rsvp, [&](SpdEntry& e) {
      e.protocol = 46;
      (in ? e.dst : e.src) = me_selector();
    });
    add(Exemption::multicast, [](SpdEntry& e) { e.dst = prefix_selector("224.0.0.0/4"); });
    add(Exemption::multicast, [](SpdEntry& e) { e.dst = prefix_selector("ff00::/8"); });
    add(Exemption::broadcast, [](SpdEntry& e) { e.dst = prefix_selector("255.255.255.255/32"); });
    for (const auto& b : local.broadcasts) {
      add(Exemption::broadcast, [&](SpdEntry& e) {
        e.dst.kind = AddressSelector::Kind::prefix;
        e.dst.prefix = IpPrefix{b, 32};
      });
    }
  }
  return out;
}

bool is_ipsec_protocol(PolicyIpsec wanted, IpsecProtocol p) noexcept {
  switch (wanted) {
    case PolicyIpsec::esp: return p == IpsecProtocol::esp;
    case PolicyIpsec::ah: return p == IpsecProtocol::ah;
    case PolicyIpsec::ah_esp: return true;
  }
  return false;
}

}  // namespace

bool SpdEntry::matches(const PacketSelector& p, const LocalAddresses& local) const noexcept {
  if (protocol && *protocol != p.protocol) return false;
  if (hop_limit && *hop_limit != p.hop_limit) return false;
  if (!selector_matches(src, p.src, local) || !selector_matches(dst, p.dst, local)) return false;
  if (icmp_types) {
    if (!p.has_icmp_type || p.sport < icmp_types->first || p.sport > icmp_types->second) return false;
  }
  return ports_match(sport, p.has_ports, p.sport) && ports_match(dport, p.has_ports, p.dport);
}

std::string SpdEntry::exemption_tag() const {
  return fmt::format("{}-{}", to_string(exemption_kind), sense == Sense::inbound ? "in" : "out");
}

PacketSelector selector_of(const dissect::Packet& p) noexcept {
  PacketSelector s;
  s.src = p.ip.src;
  s.dst = p.ip.final_dst.empty() ? p.ip.dst : p.ip.final_dst;
  s.protocol = p.ip.protocol;
  s.hop_limit = p.ip.ttl;
  if (p.l4.present) {
    if (p.ip.protocol == 6 || p.ip.protocol == 17 || p.ip.protocol == 132) {
      s.has_ports = true;
      s.sport = p.l4.sport;
      s.dport = p.l4.dport;
    } else if (p.ip.protocol == 1 || p.ip.protocol == 58) {
      s.has_icmp_type = true;
      s.sport = p.l4.icmp_type;
      s.dport = p.l4.icmp_code;
    }
  }
  return s;
}

Direction Spd::sa_direction(const SaConfig& sa) const noexcept {
  if (sa.direction != Direction::unspecified) return sa.direction;
  return sa.dst && local_.contains(*sa.dst) ? Direction::inbound : Direction::outbound;
}

SaMode Spd::sa_mode(const SaConfig& sa) const noexcept {
  if (sa.mode != SaMode::unspecified || config_ == nullptr) return sa.mode;
  for (const PolicyConfig& p : config_->policies) {
    if (p.action == PolicyAction::protect && std::find(p.sas.begin(), p.sas.end(), sa.name) != p.sas.end()) {
      return p.mode;
    }
  }
  return SaMode::unspecified;
}

std::string Spd::local_list(const char* separator) const {
  std::string out;
  for (const auto& a : local_.addresses) out += (out.empty() ? "" : separator) + a.str();
  return out.empty() ? "none" : out;
}

Spd::Spd(const Config& config, LocalAddresses local) : config_(&config), local_(std::move(local)) {
  entries_ = exemption_entries(config.exemptions, local_);
  for (std::size_t i = 0; i < config.policies.size(); ++i) {
    const PolicyConfig& p = config.policies[i];
    const bool tunnel = p.action == PolicyAction::protect && p.mode == SaMode::tunnel && p.peer;
    // The seeds' second tunnel rule: from the remote network to ours, with
    // this gateway as the tunnel endpoint. It is what arrives, not what leaves.
    const bool inbound_half = tunnel && local_.contains(*p.peer);
    if (p.action == PolicyAction::protect) {
      const int line = p.origin.line;
      auto fail = [&](const std::string& field, const std::string& msg) {
        throw ConfigError(p.origin.file, line, fmt::format("policies[{}].{}", i, field),
                          fmt::format("policy '{}': {}", p.name, msg));
      };
      if (inbound_half && p.mirrored) {
        fail("ipsec.peer",
             fmt::format("peer {} is this host's own address: a mirrored tunnel rule names the remote gateway as its "
                         "peer; a rule whose endpoint is this gateway is the inbound half of a tunnel and is one-way "
                         "(mirrored: false, from the remote network to ours)",
                         p.peer->str()));
      }
      std::vector<Direction> senses;
      if (!inbound_half) senses.push_back(Direction::outbound);
      if (p.mirrored || inbound_half) senses.push_back(Direction::inbound);
      std::vector<IpsecProtocol> protos;
      if (p.ipsec != PolicyIpsec::ah) protos.push_back(IpsecProtocol::esp);
      if (p.ipsec != PolicyIpsec::esp) protos.push_back(IpsecProtocol::ah);
      for (const auto& name : p.sas) {
        const SaConfig* found = config.find_sa(name);
        if (found == nullptr) fail("sas", fmt::format("no SA is named '{}'", name));
        const SaConfig& sa = *found;
        if (!is_ipsec_protocol(p.ipsec, sa.protocol)) {
          fail("sas", fmt::format("SA '{}' is {} but the policy protects with {}", name, to_string(sa.protocol),
                                  to_string(p.ipsec)));
        }
        if (p.mode == SaMode::tunnel && sa.mode != SaMode::tunnel) {
          fail("sas", fmt::format("SA '{}' is used by a tunnel policy but is not mode: tunnel", name));
        }
        if (p.mode == SaMode::transport && sa.mode == SaMode::tunnel) {
          fail("sas", fmt::format("SA '{}' is mode: tunnel but the policy is transport", name));
        }
        if (sa_direction(sa) == Direction::outbound) {
          if (inbound_half) {
            fail("sas",
                 fmt::format("SA '{}' is outbound, but this rule is the inbound half of a tunnel (its peer {} is "
                             "this gateway): list only inbound SAs here, and the outbound SA in the rule "
                             "whose peer is the remote gateway",
                             name, p.peer->str()));
          }
          if (!sa.spi) fail("sas", fmt::format("SA '{}' has no SPI, so nothing can be sent on it", name));
          if (p.mode == SaMode::tunnel && (!sa.dst || !sa.src || !(*sa.dst == *p.peer))) {
            fail("sas", fmt::format("outbound tunnel SA '{}' must have src (our endpoint) and dst {} (the peer)", name,
                                    p.peer->str()));
          }
        } else if (inbound_half && sa.dst && !(*sa.dst == *p.peer)) {
          fail("sas", fmt::format("inbound tunnel SA '{}' ends at {}, but this rule's tunnel endpoint is {}", name,
                                  sa.dst->str(), p.peer->str()));
        }
      }
      for (Direction d : senses) {
        for (IpsecProtocol proto : protos) {
          const bool found = std::any_of(p.sas.begin(), p.sas.end(), [&](const std::string& name) {
            const SaConfig* sa = config.find_sa(name);  // every name was checked above
            return sa->protocol == proto && sa_direction(*sa) == d;
          });
          if (found) continue;
          std::string msg =
              fmt::format("lists no {} {} SA (direction: {}, or a destination {} one of ours)", to_string(d),
                          to_string(proto), to_string(d), d == Direction::inbound ? "that is" : "that is not");
          const bool only_inbound = !p.sas.empty() && std::all_of(p.sas.begin(), p.sas.end(), [&](const auto& n) {
            return sa_direction(*config.find_sa(n)) == Direction::inbound;
          });
          if (tunnel && !p.mirrored && d == Direction::outbound && only_inbound) {
            msg += fmt::format(
                ". If this rule is the inbound half of a gateway tunnel (the seeds' second tunnel rule: from the "
                "remote network to ours, tunnel endpoint this gateway), its peer must be one of this host's "
                "addresses, and {} is not (\"me\" is {}; set interfaces.local to this gateway's addresses)",
                p.peer->str(), local_list());
          }
          fail("sas", msg);
        }
      }
    }
    SpdEntry e;
    e.name = p.name;
    e.sense = inbound_half ? Sense::inbound : Sense::outbound;
    e.src = p.local;
    e.dst = p.remote;
    e.protocol = p.protocol;
    e.sport = p.local_ports;
    e.dport = p.remote_ports;
    e.action = p.action;
    e.policy = &p;
    e.policy_index = i;
    if (tunnel) e.outer_dst = *p.peer;
    entries_.push_back(e);
    if (p.mirrored) {
      e.name = p.name + " (mirrored)";
      e.sense = Sense::inbound;
      std::swap(e.src, e.dst);
      std::swap(e.sport, e.dport);
      e.outer_dst.reset();
      if (tunnel) e.outer_src = *p.peer;
      entries_.push_back(e);
    }
  }
}

const SpdEntry* Spd::lookup(const PacketSelector& p, Sense sense, LookupScope scope) const noexcept {
  for (const auto& e : entries_) {
    // IPsec entries act in their own sense: the mirrored entry checks
    // what arrives, the one written sends.
    if (is_ipsec_action(e.action) && e.sense != sense) continue;
    if (e.exemption && (e.sense != sense || scope.forwarded || (e.root_only && !scope.root_exemptions) ||
                        (scope.past_ike && e.is_ike_exemption()))) {
      continue;
    }
    if (e.matches(p, local_)) return &e;
  }
  return nullptr;
}

const SpdEntry* Spd::lookup_protected(const PacketSelector& p, Sense sense) const noexcept {
  for (const auto& e : entries_) {
    if (e.exemption || (is_ipsec_action(e.action) && e.sense != sense)) continue;
    if (e.matches(p, local_)) return &e;
  }
  return nullptr;
}

std::string Spd::describe_exemptions() const {
  std::string out;
  for (const auto& e : entries_) {
    if (!e.exemption) continue;
    std::string sel = protocol_str(e.protocol);
    if (e.icmp_types) sel += fmt::format(" type {}-{}", e.icmp_types->first, e.icmp_types->second);
    sel += " " + e.src.str();
    if (!e.sport.any()) sel += " port " + ports_str(e.sport);
    sel += " -> " + e.dst.str();
    if (!e.dport.any()) sel += " port " + ports_str(e.dport);
    if (e.hop_limit) sel += fmt::format(", hop limit {}", *e.hop_limit);
    if (e.root_only) sel += ", root's sockets";
    out += fmt::format("{}{} {}: {}", out.empty() ? "" : "; ", to_string(e.exemption_kind),
                       e.sense == Sense::inbound ? "in" : "out", sel);
  }
  if (out.empty()) return "none";
  return out + "; none for forwarded traffic";
}

std::string Spd::describe() const {
  std::string out;
  out += "Local addresses (\"me\"): " + local_list(" ");
  out += fmt::format(
      "\nExemptions: {} (they pass without any policy: inbound only when addressed to this host, outbound only "
      "when sent by it, never when forwarded; `exemptions: [...]` chooses them)\n",
      config_ != nullptr ? config_->exemptions.str() : "none");
  out += "\nEffective policy, first match wins:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : entries_) {
    std::string action = to_string(e.action);
    if (e.action == PolicyAction::protect) {
      const PolicyConfig& p = *e.policy;
      action += fmt::format(" {} {}", to_string(p.ipsec), to_string(p.mode));
      if (p.peer) {
        action += local_.contains(*p.peer)
                      ? fmt::format(" endpoint {} (this gateway: the tunnel's inbound half)", p.peer->str())
                      : " peer " + p.peer->str();
      }
      std::string sas;
      for (const auto& name : p.sas) {
        const SaConfig* sa = config_->find_sa(name);
        const Direction d = sa_direction(*sa);
        if ((d == Direction::outbound) == (e.sense == Sense::outbound)) {
          sas += (sas.empty() ? "" : ", ") + name + " (" + sa->describe() + ")";
        }
      }
      action += e.sense == Sense::outbound ? "; sends on " : "; accepts from ";
      action += sas;
      if (e.sense == Sense::inbound) action += fmt::format("; cleartext: {}", to_string(p.inbound));
    } else if (e.action == PolicyAction::negotiate) {
      const PolicyConfig& p = *e.policy;
      action += fmt::format(" {} {}", to_string(p.ipsec), to_string(p.mode));
      if (p.peer) action += " peer " + p.peer->str();
      action += fmt::format("; IKE profile {}", p.ike);
      if (e.sense == Sense::inbound) action += fmt::format("; cleartext: {}", to_string(p.inbound));
    } else if (e.exemption) {
      action += " (exemption";
      if (e.hop_limit) action += fmt::format(", hop limit {}", *e.hop_limit);
      if (e.root_only) action += ", from root's sockets only";
      action += ")";
    }
    std::string proto = protocol_str(e.protocol);
    if (e.icmp_types) proto += fmt::format(" type {}-{}", e.icmp_types->first, e.icmp_types->second);
    rows.push_back({fmt::format("{}", rows.size() + 1), e.name, e.src.str(), e.dst.str(), proto, ports_str(e.sport),
                    ports_str(e.dport), action});
  }
  const std::vector<dissect::TableColumn> cols{{"#", dissect::Align::right},
                                               {"name"},
                                               {"source"},
                                               {"destination"},
                                               {"proto"},
                                               {"src port"},
                                               {"dst port"},
                                               {"action"}};
  for (const auto& line : dissect::text_table(cols, rows, 1)) out += line + "\n";
  out += "     anything else: permit (passes unchanged)\n";
  return out;
}

}  // namespace ipsentry::filters
