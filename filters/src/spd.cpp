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

// The seeds' exemptions (broadcast, multicast, RSVP, IKE, Kerberos), IKE's NAT-T port, and the
// IPv6 Neighbor Discovery messages a host needs before it can reach a peer
// at all (RFC 4301 section 4.4.1 leaves ND to local policy).
std::vector<SpdEntry> default_exemptions(const LocalAddresses& local) {
  std::vector<SpdEntry> out;
  auto add = [&](std::string name, auto&& fill) {
    SpdEntry e;
    e.name = std::move(name);
    e.exemption = true;
    e.action = PolicyAction::permit;
    fill(e);
    out.push_back(std::move(e));
  };
  add("exempt multicast", [](SpdEntry& e) { e.dst = prefix_selector("224.0.0.0/4"); });
  add("exempt multicast", [](SpdEntry& e) { e.dst = prefix_selector("ff00::/8"); });
  add("exempt broadcast", [](SpdEntry& e) { e.dst = prefix_selector("255.255.255.255/32"); });
  for (const auto& b : local.broadcasts) {
    add("exempt broadcast", [&](SpdEntry& e) {
      e.dst.kind = AddressSelector::Kind::prefix;
      e.dst.prefix = IpPrefix{b, 32};
    });
  }
  add("exempt rsvp", [](SpdEntry& e) { e.protocol = 46; });
  add("exempt ike", [](SpdEntry& e) {
    e.protocol = 17;
    e.sport = {500, 500};
  });
  add("exempt ike", [](SpdEntry& e) {
    e.protocol = 17;
    e.dport = {500, 500};
  });
  // IKE behind NAT moves to 4500 (RFC 3948); ESP-in-UDP on that port is
  // recognised and checked before any policy is consulted.
  add("exempt ike nat-t", [](SpdEntry& e) {
    e.protocol = 17;
    e.sport = {4500, 4500};
  });
  add("exempt ike nat-t", [](SpdEntry& e) {
    e.protocol = 17;
    e.dport = {4500, 4500};
  });
  for (std::uint8_t proto : {std::uint8_t{17}, std::uint8_t{6}}) {
    add("exempt kerberos", [&](SpdEntry& e) {
      e.protocol = proto;
      e.sport = {88, 88};
    });
    add("exempt kerberos", [&](SpdEntry& e) {
      e.protocol = proto;
      e.dport = {88, 88};
    });
  }
  add("exempt neighbor discovery", [](SpdEntry& e) {
    e.protocol = 58;
    e.icmp_types = std::pair<std::uint8_t, std::uint8_t>{133, 137};
  });
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
  if (!selector_matches(src, p.src, local) || !selector_matches(dst, p.dst, local)) return false;
  if (icmp_types) {
    if (!p.has_icmp_type || p.sport < icmp_types->first || p.sport > icmp_types->second) return false;
  }
  return ports_match(sport, p.has_ports, p.sport) && ports_match(dport, p.has_ports, p.dport);
}

PacketSelector selector_of(const dissect::Packet& p) noexcept {
  PacketSelector s;
  s.src = p.ip.src;
  s.dst = p.ip.final_dst.empty() ? p.ip.dst : p.ip.final_dst;
  s.protocol = p.ip.protocol;
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

Spd::Spd(const Config& config, LocalAddresses local) : config_(&config), local_(std::move(local)) {
  if (config.default_exemptions) entries_ = default_exemptions(local_);
  for (std::size_t i = 0; i < config.policies.size(); ++i) {
    const PolicyConfig& p = config.policies[i];
    if (p.action == PolicyAction::protect) {
      const int line = p.origin.line;
      auto fail = [&](const std::string& field, const std::string& msg) {
        throw ConfigError(p.origin.file, line, fmt::format("policies[{}].{}", i, field),
                          fmt::format("policy '{}': {}", p.name, msg));
      };
      std::vector<Direction> senses{Direction::outbound};
      if (p.mirrored) senses.push_back(Direction::inbound);
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
          if (!sa.spi) fail("sas", fmt::format("SA '{}' has no SPI, so nothing can be sent on it", name));
          if (p.mode == SaMode::tunnel && (!sa.dst || !sa.src || !(*sa.dst == *p.peer))) {
            fail("sas", fmt::format("outbound tunnel SA '{}' must have src (our endpoint) and dst {} (the peer)", name,
                                    p.peer->str()));
          }
        }
      }
      for (Direction d : senses) {
        for (IpsecProtocol proto : protos) {
          const bool found = std::any_of(p.sas.begin(), p.sas.end(), [&](const std::string& name) {
            const SaConfig* sa = config.find_sa(name);  // every name was checked above
            return sa->protocol == proto && sa_direction(*sa) == d;
          });
          if (!found) {
            fail("sas",
                 fmt::format("lists no {} {} SA (direction: {}, or a destination {} one of ours)", to_string(d),
                             to_string(proto), to_string(d), d == Direction::inbound ? "that is" : "that is not"));
          }
        }
      }
    }
    SpdEntry e;
    e.name = p.name;
    e.sense = Sense::outbound;
    e.src = p.local;
    e.dst = p.remote;
    e.protocol = p.protocol;
    e.sport = p.local_ports;
    e.dport = p.remote_ports;
    e.action = p.action;
    e.policy = &p;
    e.policy_index = i;
    entries_.push_back(e);
    if (p.mirrored) {
      e.name = p.name + " (mirrored)";
      e.sense = Sense::inbound;
      std::swap(e.src, e.dst);
      std::swap(e.sport, e.dport);
      entries_.push_back(e);
    }
  }
}

const SpdEntry* Spd::lookup(const PacketSelector& p, Sense sense) const noexcept {
  for (const auto& e : entries_) {
    // IPsec entries act in their own sense: the mirrored entry checks
    // what arrives, the one written sends.
    const bool ipsec = e.action == PolicyAction::protect || e.action == PolicyAction::negotiate;
    if (ipsec && e.sense != sense) continue;
    if (e.matches(p, local_)) return &e;
  }
  return nullptr;
}

std::string Spd::describe() const {
  std::string out;
  out += "Local addresses (\"me\"):";
  if (local_.addresses.empty()) out += " none";
  for (const auto& a : local_.addresses) out += " " + a.str();
  out += "\n\nEffective policy, first match wins:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : entries_) {
    std::string action = to_string(e.action);
    if (e.action == PolicyAction::protect) {
      const PolicyConfig& p = *e.policy;
      action += fmt::format(" {} {}", to_string(p.ipsec), to_string(p.mode));
      if (p.peer) action += " peer " + p.peer->str();
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
