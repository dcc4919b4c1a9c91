// IKE profiles after loading: how `config check` shows them (never the
// pre-shared key), copies, and their consistency with the negotiate
// policies that name them.
#include <fmt/format.h>

#include <algorithm>

#include "config_internal.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::filters {

namespace {

// "8h", "15m", "1h30m", "45s": the units the configuration is written in.
std::string duration_str(std::uint64_t s) {
  if (s == 0) return "0";
  std::string out;
  for (auto [unit, len] : {std::pair{"d", 86400ull}, {"h", 3600ull}, {"m", 60ull}, {"s", 1ull}}) {
    if (s >= len) {
      out += fmt::format("{}{}", s / len, unit);
      s %= len;
    }
  }
  return out;
}

// Binary multiples, as parse_size reads them.
std::string size_str(std::uint64_t v) {
  for (auto [unit, len] : {std::pair{"T", 1ull << 40}, {"G", 1ull << 30}, {"M", 1ull << 20}, {"K", 1ull << 10}}) {
    if (v >= len && v % len == 0) return fmt::format("{}{}", v / len, unit);
  }
  return fmt::format("{}", v);
}

const char* integrity_keyword(Integrity i) {
  switch (i) {
    case Integrity::hmac_sha1_96: return "sha1";
    case Integrity::hmac_sha256_128: return "sha256";
    case Integrity::hmac_sha384_192: return "sha384";
    case Integrity::hmac_sha512_256: return "sha512";
    case Integrity::hmac_md5_96: return "md5";
    case Integrity::aes_xcbc_96: return "aesxcbc";
    default: return integrity_info(i).name.data();
  }
}

const char* prf_keyword(Prf p) {
  switch (p) {
    case Prf::hmac_md5: return "prfmd5";
    case Prf::hmac_sha1: return "prfsha1";
    case Prf::hmac_sha256: return "prfsha256";
    case Prf::hmac_sha384: return "prfsha384";
    case Prf::hmac_sha512: return "prfsha512";
  }
  return "?";
}

// A proposal as strongSwan keywords with what loading completed (the PRF
// taken from the integrity algorithm, the PFS group, noesn): what is
// actually offered.
std::string keywords(const std::vector<KeyedCipher>& enc, const std::vector<Integrity>& integ,
                     const std::vector<Prf>& prf, const std::vector<DhGroup>& dh, const std::vector<bool>* esn) {
  std::vector<std::string> k;
  for (const auto& e : enc) k.push_back(e.str());
  for (auto i : integ) k.emplace_back(integrity_keyword(i));
  for (auto p : prf) k.emplace_back(prf_keyword(p));
  for (auto g : dh) k.emplace_back(to_string(g));
  if (esn != nullptr) {
    for (bool e : *esn) k.emplace_back(e ? "esn" : "noesn");
  }
  std::string s;
  for (const auto& w : k) s += (s.empty() ? "" : "-") + w;
  return s;
}

bool single_address(const AddressSelector& s) {
  return s.kind == AddressSelector::Kind::prefix && s.prefix.length == s.prefix.addr.size() * 8;
}

}  // namespace

IkeProfile IkeProfile::clone() const {
  IkeProfile p;
  p.name = name;
  p.version = version;
  p.method = method;
  p.psk = psk.clone();
  p.cert = cert;
  p.key = key;
  p.ca = ca;
  p.local_id = local_id;
  p.remote_id = remote_id;
  p.peer = peer;
  p.proposals = proposals;
  p.esp_proposals = esp_proposals;
  p.ah_proposals = ah_proposals;
  p.ike_lifetime = ike_lifetime;
  p.child_lifetime = child_lifetime;
  p.child_lifetime_bytes = child_lifetime_bytes;
  p.child_lifetime_packets = child_lifetime_packets;
  p.pfs = pfs;
  p.dpd = dpd;
  p.soft_timeout = soft_timeout;
  p.origin = origin;
  return p;
}

std::string IkeProfile::describe() const {
  std::string s = fmt::format("IKE profile '{}' ({}): IKEv{}, ", name, origin.str(), version);
  if (method == IkeAuthMethod::psk) {
    s += fmt::format("psk: set ({} bytes)\n", psk.size());
  } else {
    std::string cas;
    for (const auto& c : ca) cas += (cas.empty() ? "" : ", ") + c.string();
    s += fmt::format("certificate {}, key {}, trusting {}\n", cert.string(), key.string(), cas);
  }
  const std::string local = local_id.kind != IkeIdentity::Kind::any ? local_id.str()
                            : method == IkeAuthMethod::psk          ? "(our address)"
                                                                    : "(the certificate's subject)";
  s += fmt::format("  identities: local {}, remote {}; peer {}\n", local, remote_id.str(),
                   peer ? peer->str() : "any (responds only)");
  auto list = [&](const char* what, const auto& props, auto render) {
    if (props.empty()) return;
    std::string l;
    for (const auto& p : props) l += (l.empty() ? "" : ", ") + render(p);
    s += fmt::format("  {}: {}\n", what, l);
  };
  list("IKE proposals", proposals,
       [](const IkeProposal& p) { return keywords(p.encryption, p.integrity, p.prf, p.dh, nullptr); });
  auto child = [](const ChildProposal& p) { return keywords(p.encryption, p.integrity, {}, p.dh, &p.esn); };
  list("ESP proposals", esp_proposals, child);
  list("AH proposals", ah_proposals, child);
  std::string child_life = duration_str(child_lifetime);
  if (child_lifetime_bytes != 0) child_life += " or " + size_str(child_lifetime_bytes) + "B";
  if (child_lifetime_packets != 0) child_life += fmt::format(" or {} packets", child_lifetime_packets);
  s += fmt::format(
      "  lifetimes (rekeyed before they end): IKE SA {}, CHILD_SA {}; pfs {}; dpd {}; soft association "
      "{}\n",
      duration_str(ike_lifetime), child_life, to_string(pfs), dpd == 0 ? "off" : duration_str(dpd),
      duration_str(soft_timeout));
  return s;
}

const IkeProfile* Config::find_ike_profile(std::string_view name) const noexcept {
  for (const auto& p : ike_profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void check_negotiate_policies(Config& cfg) {
  for (std::size_t i = 0; i < cfg.policies.size(); ++i) {
    PolicyConfig& p = cfg.policies[i];
    if (p.action != PolicyAction::negotiate) continue;
    auto fail = [&](const std::string& field, const std::string& msg) {
      // A setting left out ("ipsec.peer") points at its mapping ("ipsec").
      int line = p.origin.line_of(field);
      if (line == p.origin.line && field.find('.') != std::string::npos) {
        line = p.origin.line_of(field.substr(0, field.find('.')));
      }
      throw ConfigError(p.origin.file, line, fmt::format("policies[{}].{}", i, field),
                        fmt::format("policy '{}': {}", p.name, msg));
    };
    const IkeProfile* prof = cfg.find_ike_profile(p.ike);
    if (prof == nullptr) {
      std::string known;
      for (const auto& x : cfg.ike_profiles) known += (known.empty() ? "" : ", ") + x.name;
      fail("ike",
           fmt::format("no IKE profile is named '{}' (ike_profiles: {})", p.ike, known.empty() ? "none" : known));
    }
    if (p.ipsec == PolicyIpsec::ah_esp) {
      fail("ipsec.protocol",
           "IKEv2 negotiates one protocol per CHILD_SA (RFC 7296 removed AH+ESP bundles): use esp "
           "or ah");
    }
    if (p.ipsec == PolicyIpsec::ah && prof->ah_proposals.empty()) {
      fail("ike", fmt::format("the policy protects with AH but IKE profile '{}' has no ah_proposals", prof->name));
    }
    // require and request start negotiations, so they must know whom to
    // ask; respond only answers, so `peer: any` leaves it to whoever
    // negotiates first (road warriors, a site whose address changes).
    const bool initiates = p.inbound != InboundCleartext::respond;
    if (p.mode == SaMode::transport) {
      // Transport mode protects traffic with the IKE peer itself.
      if (initiates && !prof->peer && !single_address(p.remote)) {
        fail("to", fmt::format("a transport policy with inbound: {} negotiates with the host it talks to: with IKE "
                               "profile '{}' at peer: any, `to` must be one address (or use inbound: respond to "
                               "only answer)",
                               to_string(p.inbound), prof->name));
      }
      // With a fixed peer, what else `to` selects could never be carried:
      // such packets would wait for an SA whose selectors never cover them.
      if (prof->peer && !(single_address(p.remote) && p.remote.prefix.contains(*prof->peer))) {
        fail("to", fmt::format("transport mode protects only traffic with the IKE peer {} itself: `to` must be that "
                               "address (it is {}); use tunnel mode for what lies behind it",
                               prof->peer->str(), p.remote.str()));
      }
    } else {
      if (initiates && !p.peer && !prof->peer) {
        fail("ipsec.peer", fmt::format("a tunnel policy with inbound: {} starts negotiations and needs the remote "
                                       "tunnel endpoint: ipsec.peer, or peer in IKE profile '{}' (or use inbound: "
                                       "respond to only answer)",
                                       to_string(p.inbound), prof->name));
      }
      if (p.peer && prof->peer && *p.peer != *prof->peer) {
        fail("ipsec.peer", fmt::format("the tunnel ends at {} but IKE profile '{}' negotiates with {}", p.peer->str(),
                                       prof->name, prof->peer->str()));
      }
      if (!p.peer) p.peer = prof->peer;
    }
  }
  // A profile no policy names negotiates nothing: most likely a typo in ike:.
  for (const auto& prof : cfg.ike_profiles) {
    const bool used = std::any_of(cfg.policies.begin(), cfg.policies.end(), [&](const PolicyConfig& p) {
      return p.action == PolicyAction::negotiate && p.ike == prof.name;
    });
    if (!used && !cfg.policies.empty()) {
      cfg.warnings.push_back(fmt::format("{}: IKE profile '{}' is not named by any negotiate policy (ike: {})",
                                         prof.origin.str(), prof.name, prof.name));
    }
  }
}

}  // namespace ipsentry::filters
