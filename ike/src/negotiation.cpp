// Proposal choice (RFC 7296 2.7, 3.3) and traffic-selector narrowing
// (RFC 7296 2.9): pure functions, shared by the daemon's two roles.
#include "ipsentry/ike/negotiation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "ipsentry/dissect/ike.hpp"

namespace ipsentry::ike::v2 {

using filters::Cipher;
using filters::DhGroup;
using filters::Integrity;
using filters::KeyedCipher;
using filters::Prf;

namespace {

namespace tt {
inline constexpr std::uint8_t encr = 1;
inline constexpr std::uint8_t prf = 2;
inline constexpr std::uint8_t integ = 3;
inline constexpr std::uint8_t dh = 4;
inline constexpr std::uint8_t esn = 5;
}  // namespace tt

// ---- algorithms and their transforms ------------------------------------

// Ciphers whose key length is negotiated with the Key Length attribute
// (RFC 7296 3.3.5: AES in every mode); the others have one key size and
// must be sent without it.
bool variable_key(Cipher c) noexcept {
  switch (c) {
    case Cipher::aes_cbc:
    case Cipher::aes_ctr:
    case Cipher::aes_gcm_8:
    case Cipher::aes_gcm_12:
    case Cipher::aes_gcm_16:
    case Cipher::aes_ccm_8:
    case Cipher::aes_ccm_12:
    case Cipher::aes_ccm_16:
    case Cipher::aes_gmac: return true;
    default: return false;
  }
}

Transform encr_transform(const KeyedCipher& k) {
  Transform t{tt::encr, filters::cipher_info(k.cipher).ikev2_id, std::nullopt};
  if (variable_key(k.cipher)) t.key_bits = static_cast<std::uint16_t>(k.key_bytes * 8);
  return t;
}

std::uint16_t prf_id(Prf p) noexcept {
  switch (p) {
    case Prf::hmac_md5: return 1;
    case Prf::hmac_sha1: return 2;
    case Prf::hmac_sha256: return 5;
    case Prf::hmac_sha384: return 6;
    case Prf::hmac_sha512: return 7;
  }
  return 0;
}

Transform integ_transform(Integrity i) { return {tt::integ, filters::integrity_info(i).ikev2_id, std::nullopt}; }
Transform dh_transform(DhGroup g) { return {tt::dh, static_cast<std::uint16_t>(g), std::nullopt}; }
Transform esn_transform(bool esn) { return {tt::esn, static_cast<std::uint16_t>(esn ? 1 : 0), std::nullopt}; }

std::optional<KeyedCipher> keyed_cipher_of(const Transform& t) {
  auto c = filters::cipher_from_ikev2(t.id);
  if (!c) return std::nullopt;
  const auto& ci = filters::cipher_info(*c);
  if (variable_key(*c)) {
    if (!t.key_bits || (*t.key_bits != 128 && *t.key_bits != 192 && *t.key_bits != 256)) return std::nullopt;
    return KeyedCipher{*c, static_cast<std::uint16_t>(*t.key_bits / 8)};
  }
  if (t.key_bits) return std::nullopt;
  return KeyedCipher{*c, static_cast<std::uint16_t>(ci.key_sizes[0] > ci.salt_len ? ci.key_sizes[0] - ci.salt_len : 0)};
}

std::vector<Transform> of_type(const Proposal& p, std::uint8_t type) {
  std::vector<Transform> out;
  for (const auto& t : p.transforms) {
    if (t.type == type) out.push_back(t);
  }
  return out;
}

bool contains(const std::vector<Transform>& ts, const Transform& t) {
  return std::find(ts.begin(), ts.end(), t) != ts.end();
}

bool has_id(const std::vector<Transform>& ts, std::uint16_t id) {
  return std::any_of(ts.begin(), ts.end(), [&](const Transform& t) { return t.id == id; });
}

// The first of `ours` (in our order) that `theirs` offers.
std::optional<Transform> first_common(const std::vector<Transform>& ours, const std::vector<Transform>& theirs) {
  for (const auto& o : ours) {
    if (contains(theirs, o)) return o;
  }
  return std::nullopt;
}

// Transform types each protocol uses (RFC 7296 3.3.3); a proposal with any
// other type must be rejected whole (3.3.6).
bool allowed_type(ProtocolId protocol, std::uint8_t type) {
  switch (protocol) {
    case ProtocolId::ike: return type >= tt::encr && type <= tt::dh;
    case ProtocolId::esp: return type == tt::encr || type == tt::integ || type == tt::dh || type == tt::esn;
    case ProtocolId::ah: return type == tt::integ || type == tt::dh || type == tt::esn;
  }
  return false;
}

bool only_allowed_types(const Proposal& p) {
  return std::all_of(p.transforms.begin(), p.transforms.end(),
                     [&](const Transform& t) { return allowed_type(p.protocol, t.type); });
}

// What one of our proposals allows, as transforms.
struct Ours {
  std::vector<Transform> encr, prf, integ, dh, esn;
  bool dh_none = true;  // a child proposal without groups, or with "none" among them: PFS optional
};

Ours ours_of(const filters::IkeProposal& p) {
  Ours o;
  for (const auto& e : p.encryption) o.encr.push_back(encr_transform(e));
  for (auto x : p.prf) o.prf.push_back({tt::prf, prf_id(x), std::nullopt});
  for (auto i : p.integrity) o.integ.push_back(integ_transform(i));
  for (auto g : p.dh) o.dh.push_back(dh_transform(g));
  return o;
}

Ours ours_of(const filters::ChildProposal& p) {
  Ours o;
  if (p.protocol == filters::IpsecProtocol::esp) {
    for (const auto& e : p.encryption) o.encr.push_back(encr_transform(e));
  }
  for (auto i : p.integrity) o.integ.push_back(integ_transform(i));
  for (auto g : p.dh) {
    if (g != DhGroup::none) o.dh.push_back(dh_transform(g));
  }
  o.dh_none = o.dh.empty() || std::find(p.dh.begin(), p.dh.end(), DhGroup::none) != p.dh.end();
  for (bool e : p.esn) o.esn.push_back(esn_transform(e));
  return o;
}

// Integrity: with an AEAD cipher none is used and whatever is offered is
// ignored (RFC 7296 3.3: combined modes take no integrity transform). With
// a classic cipher our first that they offer; where we have none (ESP
// encryption without integrity), only an offer without one, or with NONE.
std::optional<Transform> choose_integ(const Ours& o, const Proposal& theirs, bool aead, bool& ok) {
  ok = true;
  if (aead) return std::nullopt;
  const auto offered = of_type(theirs, tt::integ);
  if (o.integ.empty()) {
    ok = offered.empty() || has_id(offered, 0);
    return std::nullopt;
  }
  auto t = first_common(o.integ, offered);
  ok = t.has_value();
  return t;
}

Buffer spi_bytes(std::uint32_t spi) {
  return {static_cast<std::uint8_t>(spi >> 24), static_cast<std::uint8_t>(spi >> 16),
          static_cast<std::uint8_t>(spi >> 8), static_cast<std::uint8_t>(spi)};
}

std::uint32_t spi_value(const Buffer& b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

ProtocolId protocol_id(filters::IpsecProtocol p) {
  return p == filters::IpsecProtocol::ah ? ProtocolId::ah : ProtocolId::esp;
}

// The responder's answer to an IKE proposal with one of ours, or nullopt.
std::optional<IkeChoice> match_ike(const Proposal& theirs, const filters::IkeProposal& mine, Bytes spi,
                                   DhGroup ke_group) {
  if (theirs.protocol != ProtocolId::ike || !only_allowed_types(theirs)) return std::nullopt;
  // IKE_SA_INIT carries no SPI; an IKE SA rekey the new 8-byte one (3.3.1).
  if (theirs.spi.size() != (spi.empty() ? 0u : 8u)) return std::nullopt;
  const Ours o = ours_of(mine);
  auto encr = first_common(o.encr, of_type(theirs, tt::encr));
  auto prf = first_common(o.prf, of_type(theirs, tt::prf));
  if (!encr || !prf) return std::nullopt;
  const auto kc = keyed_cipher_of(*encr);
  if (!kc) return std::nullopt;
  bool ok = false;
  auto integ = choose_integ(o, theirs, filters::cipher_info(kc->cipher).aead(), ok);
  if (!ok || (!integ && !filters::cipher_info(kc->cipher).aead())) return std::nullopt;
  const auto offered_dh = of_type(theirs, tt::dh);
  std::optional<Transform> dh;
  // The group the initiator sent a KE for wins when both accept it: no
  // INVALID_KE_PAYLOAD round trip for a choice that only differs in order.
  if (ke_group != DhGroup::none && contains(o.dh, dh_transform(ke_group)) &&
      contains(offered_dh, dh_transform(ke_group))) {
    dh = dh_transform(ke_group);
  } else {
    dh = first_common(o.dh, offered_dh);
  }
  if (!dh) return std::nullopt;

  IkeChoice c;
  c.answer.number = theirs.number;
  c.answer.protocol = ProtocolId::ike;
  c.answer.spi.assign(spi.begin(), spi.end());
  c.answer.transforms.push_back(*encr);
  c.answer.transforms.push_back(*prf);
  if (integ) c.answer.transforms.push_back(*integ);
  c.answer.transforms.push_back(*dh);
  c.suite.encryption = *kc;
  c.suite.integrity = integ ? *filters::integrity_from_ikev2(integ->id) : Integrity::none;
  c.suite.prf = *filters::prf_from_ikev2(prf->id);
  c.suite.dh = static_cast<DhGroup>(dh->id);
  return c;
}

std::optional<ChildChoice> match_child(const Proposal& theirs, const filters::ChildProposal& mine, DhGroup pfs_group,
                                       std::uint32_t our_spi) {
  if (theirs.protocol != protocol_id(mine.protocol) || !only_allowed_types(theirs)) return std::nullopt;
  if (theirs.spi.size() != 4) return std::nullopt;
  const Ours o = ours_of(mine);
  ChildChoice c;
  c.suite.protocol = mine.protocol;
  std::optional<Transform> encr;
  bool aead = false;
  if (mine.protocol == filters::IpsecProtocol::esp) {
    encr = first_common(o.encr, of_type(theirs, tt::encr));
    if (!encr) return std::nullopt;
    const auto kc = keyed_cipher_of(*encr);
    if (!kc) return std::nullopt;
    c.suite.encryption = *kc;
    aead = filters::cipher_info(kc->cipher).aead();
  }
  bool ok = false;
  auto integ = choose_integ(o, theirs, aead, ok);
  if (!ok) return std::nullopt;
  if (mine.protocol == filters::IpsecProtocol::ah && !integ) return std::nullopt;
  c.suite.integrity = integ ? *filters::integrity_from_ikev2(integ->id) : Integrity::none;

  // PFS (RFC 7296 1.3.1). Without a KE (IKE_AUTH, or a rekey without PFS)
  // only an offer that allows NONE; our groups are not insisted on here,
  // since IKE_AUTH never has one: a rekey that must have PFS checks
  // suite.dh. With a KE, the KE's group when both allow it, else our first
  // common group (the daemon answers INVALID_KE_PAYLOAD), else NONE where
  // both allow it.
  const auto offered_dh = of_type(theirs, tt::dh);
  const bool they_allow_none = offered_dh.empty() || has_id(offered_dh, 0);
  std::optional<Transform> dh;
  if (pfs_group == DhGroup::none) {
    if (!they_allow_none) return std::nullopt;
  } else if (contains(o.dh, dh_transform(pfs_group)) && contains(offered_dh, dh_transform(pfs_group))) {
    dh = dh_transform(pfs_group);
  } else {
    dh = first_common(o.dh, offered_dh);
    if (!dh && !(o.dh_none && they_allow_none)) return std::nullopt;
  }
  c.suite.dh = dh ? static_cast<DhGroup>(dh->id) : DhGroup::none;

  auto esn = first_common(o.esn, of_type(theirs, tt::esn));
  if (!esn) return std::nullopt;
  c.suite.esn = esn->id == 1;

  c.answer.number = theirs.number;
  c.answer.protocol = theirs.protocol;
  c.answer.spi = spi_bytes(our_spi);
  if (encr) c.answer.transforms.push_back(*encr);
  if (integ) c.answer.transforms.push_back(*integ);
  if (dh) c.answer.transforms.push_back(*dh);
  c.answer.transforms.push_back(*esn);
  c.peer_spi = spi_value(theirs.spi);
  return c;
}

// The initiator's check of an answer: one proposal, one transform of each
// type, each among what the proposal of that number offered, and every
// type we offered answered except where NONE was a choice (DH with NONE
// offered, integrity under an AEAD cipher). Returns the offered proposal.
const Proposal* check_answer(const SaPayload& answer, const SaPayload& offered, std::string& why) {
  if (answer.proposals.size() != 1) {
    why = fmt::format("the answer holds {} proposals instead of one", answer.proposals.size());
    return nullptr;
  }
  const Proposal& a = answer.proposals.front();
  const Proposal* o = nullptr;
  for (const auto& p : offered.proposals) {
    if (p.number == a.number && p.protocol == a.protocol) o = &p;
  }
  if (o == nullptr) {
    why = fmt::format("the answer names proposal {}, which we did not offer", a.number);
    return nullptr;
  }
  std::array<int, 6> seen{};
  for (const auto& t : a.transforms) {
    if (!allowed_type(a.protocol, t.type)) {
      why = fmt::format("the answer holds a transform of type {}", t.type);
      return nullptr;
    }
    if (++seen[t.type] > 1) {
      why = fmt::format("the answer holds more than one transform of type {}", t.type);
      return nullptr;
    }
    if (!contains(o->transforms, t)) {
      why = fmt::format("the answer's {} was not offered", dissect::ike::v2_transform_str({0, t.type, t.id, {}}));
      return nullptr;
    }
  }
  bool aead = false;
  for (const auto& t : a.transforms) {
    if (t.type == tt::encr) {
      if (auto k = keyed_cipher_of(t)) aead = filters::cipher_info(k->cipher).aead();
    }
  }
  for (std::uint8_t type = tt::encr; type <= tt::esn; ++type) {
    const auto ours = of_type(*o, type);
    if (ours.empty() || seen[type] == 1) continue;
    if (type == tt::dh && has_id(ours, 0)) continue;
    if (type == tt::integ && (aead || has_id(ours, 0))) continue;
    why = fmt::format("the answer chose no {} transform", dissect::ike::v2_transform_type_name(type));
    return nullptr;
  }
  return o;
}

// ---- traffic selectors ------------------------------------------------------

using dissect::IpAddr;

IpAddr with_bytes(const IpAddr& like, const std::array<std::uint8_t, 16>& b) {
  return like.is_v4() ? IpAddr::v4(b.data()) : IpAddr::v6(b.data());
}

// First and last address of a prefix.
std::pair<IpAddr, IpAddr> range_of(const dissect::IpPrefix& p) {
  std::array<std::uint8_t, 16> lo{};
  std::array<std::uint8_t, 16> hi{};
  const std::size_t n = p.addr.size();
  for (std::size_t i = 0; i < n; ++i) {
    const int bits = std::clamp(static_cast<int>(p.length) - static_cast<int>(i * 8), 0, 8);
    const auto mask = static_cast<std::uint8_t>(bits == 0 ? 0 : 0xff << (8 - bits));
    lo[i] = p.addr.data()[i] & mask;
    hi[i] = static_cast<std::uint8_t>(lo[i] | static_cast<std::uint8_t>(~mask));
  }
  return {with_bytes(p.addr, lo), with_bytes(p.addr, hi)};
}

TrafficSelector whole(IpAddr::Family f) {
  std::array<std::uint8_t, 16> lo{};
  std::array<std::uint8_t, 16> hi{};
  hi.fill(0xff);
  TrafficSelector t;
  t.start = f == IpAddr::Family::v4 ? IpAddr::v4(lo.data()) : IpAddr::v6(lo.data());
  t.end = f == IpAddr::Family::v4 ? IpAddr::v4(hi.data()) : IpAddr::v6(hi.data());
  return t;
}

TrafficSelector host(const IpAddr& a) {
  TrafficSelector t;
  t.start = a;
  t.end = a;
  return t;
}

// The selectors of one side of a policy. "any" takes the family of the
// other side when that is a prefix, both families otherwise.
std::vector<TrafficSelector> side(const filters::AddressSelector& sel, const filters::AddressSelector& other,
                                  const IpAddr& me) {
  using K = filters::AddressSelector::Kind;
  switch (sel.kind) {
    case K::me: return {host(me)};
    case K::prefix: {
      auto [lo, hi] = range_of(sel.prefix);
      TrafficSelector t;
      t.start = lo;
      t.end = hi;
      return {t};
    }
    case K::any: break;
  }
  if (other.kind == K::prefix) return {whole(other.prefix.addr.family())};
  return {whole(IpAddr::Family::v4), whole(IpAddr::Family::v6)};
}

std::optional<TrafficSelector> intersect(const TrafficSelector& a, const TrafficSelector& b) {
  if (a.start.family() != b.start.family()) return std::nullopt;
  TrafficSelector r;
  if (a.ip_protocol != 0 && b.ip_protocol != 0 && a.ip_protocol != b.ip_protocol) return std::nullopt;
  r.ip_protocol = a.ip_protocol != 0 ? a.ip_protocol : b.ip_protocol;
  r.start_port = std::max(a.start_port, b.start_port);
  r.end_port = std::min(a.end_port, b.end_port);
  if (r.start_port > r.end_port) return std::nullopt;
  r.start = std::max(a.start, b.start);
  r.end = std::min(a.end, b.end);
  if (r.end < r.start) return std::nullopt;
  return r;
}

bool contained(const TrafficSelector& inner, const TrafficSelector& outer) {
  return inner.start.family() == outer.start.family() &&
         (outer.ip_protocol == 0 || outer.ip_protocol == inner.ip_protocol) && outer.start_port <= inner.start_port &&
         inner.end_port <= outer.end_port && outer.start <= inner.start && inner.end <= outer.end &&
         inner.start <= inner.end && inner.start_port <= inner.end_port;
}

// Every intersection of `theirs` with `ours`, in their order, without
// those another one already covers (the initiator's single-host "packet"
// selector inside the range it also proposed).
std::vector<TrafficSelector> narrow_side(const std::vector<TrafficSelector>& theirs,
                                         const std::vector<TrafficSelector>& ours) {
  std::vector<TrafficSelector> all;
  for (const auto& t : theirs) {
    for (const auto& o : ours) {
      if (auto r = intersect(t, o)) all.push_back(*r);
    }
  }
  std::vector<TrafficSelector> out;
  for (std::size_t i = 0; i < all.size(); ++i) {
    bool covered = false;
    for (std::size_t j = 0; j < all.size() && !covered; ++j) {
      if (i == j || !contained(all[i], all[j])) continue;
      // Of two equal selectors, keep the first.
      covered = !(all[i] == all[j]) || j < i;
    }
    if (!covered) out.push_back(all[i]);
  }
  return out;
}

}  // namespace

// ---- ChildSuite ----------------------------------------------------------------

std::size_t ChildSuite::encryption_key_len() const noexcept {
  if (protocol == filters::IpsecProtocol::ah || encryption.cipher == Cipher::null) return 0;
  return encryption.key_bytes + filters::cipher_info(encryption.cipher).salt_len;
}

std::size_t ChildSuite::integrity_key_len() const noexcept {
  return integrity == Integrity::none ? 0 : filters::integrity_info(integrity).key_len;
}

std::string ChildSuite::str() const {
  std::string s;
  if (protocol == filters::IpsecProtocol::esp) {
    const auto& ci = filters::cipher_info(encryption.cipher);
    s = encryption.cipher == Cipher::null ? std::string(ci.name)
                                          : fmt::format("{} ({}-bit)", ci.name, encryption.key_bytes * 8);
  }
  if (integrity != Integrity::none) {
    if (!s.empty()) s += " + ";
    s += filters::integrity_info(integrity).name;
  }
  if (dh != DhGroup::none) s += fmt::format(", pfs {}", filters::to_string(dh));
  if (esn) s += ", esn";
  return s;
}

// ---- proposals -------------------------------------------------------------------

SaPayload ike_sa_payload(const std::vector<filters::IkeProposal>& ours, Bytes spi) {
  SaPayload sa;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    const Ours o = ours_of(ours[i]);
    Proposal p;
    p.number = static_cast<std::uint8_t>(i + 1);
    p.protocol = ProtocolId::ike;
    p.spi.assign(spi.begin(), spi.end());
    for (const auto* list : {&o.encr, &o.prf, &o.integ, &o.dh}) {
      p.transforms.insert(p.transforms.end(), list->begin(), list->end());
    }
    sa.proposals.push_back(std::move(p));
  }
  return sa;
}

SaPayload child_sa_payload(const std::vector<filters::ChildProposal>& ours, std::uint32_t spi, DhGroup pfs) {
  SaPayload sa;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    const Ours o = ours_of(ours[i]);
    Proposal p;
    p.number = static_cast<std::uint8_t>(i + 1);
    p.protocol = protocol_id(ours[i].protocol);
    p.spi = spi_bytes(spi);
    p.transforms.insert(p.transforms.end(), o.encr.begin(), o.encr.end());
    p.transforms.insert(p.transforms.end(), o.integ.begin(), o.integ.end());
    // No DH transform in IKE_AUTH (RFC 7296 1.2: the SA payload there may
    // only say NONE, which is better left out) or a rekey without PFS.
    // With PFS, the group of our KE first, then the proposal's others.
    if (pfs != DhGroup::none) {
      if (o.dh.empty() || contains(o.dh, dh_transform(pfs))) p.transforms.push_back(dh_transform(pfs));
      for (const auto& t : o.dh) {
        if (t.id != static_cast<std::uint16_t>(pfs)) p.transforms.push_back(t);
      }
    }
    p.transforms.insert(p.transforms.end(), o.esn.begin(), o.esn.end());
    sa.proposals.push_back(std::move(p));
  }
  return sa;
}

std::optional<IkeChoice> choose_ike(const SaPayload& offered, const std::vector<filters::IkeProposal>& ours, Bytes spi,
                                    DhGroup ke_group) {
  for (const auto& theirs : offered.proposals) {
    for (const auto& mine : ours) {
      if (auto c = match_ike(theirs, mine, spi, ke_group)) return c;
    }
  }
  return std::nullopt;
}

std::optional<ChildChoice> choose_child(const SaPayload& offered, const std::vector<filters::ChildProposal>& ours,
                                        DhGroup pfs_group, std::uint32_t our_spi) {
  for (const auto& theirs : offered.proposals) {
    for (const auto& mine : ours) {
      if (auto c = match_child(theirs, mine, pfs_group, our_spi)) return c;
    }
  }
  return std::nullopt;
}

std::optional<IkeSuite> accept_ike(const SaPayload& answer, const SaPayload& offered, std::string& why) {
  const Proposal* o = check_answer(answer, offered, why);
  if (o == nullptr) return std::nullopt;
  const Proposal& a = answer.proposals.front();
  if (a.protocol != ProtocolId::ike) {
    why = "the answer is not an IKE proposal";
    return std::nullopt;
  }
  if (a.spi.size() != o->spi.size()) {
    why = fmt::format("the answer's SPI is {} bytes, ours {}", a.spi.size(), o->spi.size());
    return std::nullopt;
  }
  IkeSuite s;
  bool encr = false;
  for (const auto& t : a.transforms) {
    switch (t.type) {
      case tt::encr:
        if (auto k = keyed_cipher_of(t)) {
          s.encryption = *k;
          encr = true;
        }
        break;
      case tt::prf: s.prf = *filters::prf_from_ikev2(t.id); break;
      case tt::integ: s.integrity = filters::integrity_from_ikev2(t.id).value_or(Integrity::none); break;
      case tt::dh: s.dh = static_cast<DhGroup>(t.id); break;
      default: break;
    }
  }
  if (!encr || s.dh == DhGroup::none) {
    why = "the answer lacks an encryption algorithm or a DH group";
    return std::nullopt;
  }
  return s;
}

std::optional<ChildChoice> accept_child(const SaPayload& answer, const SaPayload& offered, std::string& why) {
  const Proposal* o = check_answer(answer, offered, why);
  if (o == nullptr) return std::nullopt;
  const Proposal& a = answer.proposals.front();
  if (a.protocol == ProtocolId::ike) {
    why = "the answer is an IKE proposal, not ESP or AH";
    return std::nullopt;
  }
  if (a.spi.size() != 4) {
    why = fmt::format("the answer's SPI is {} bytes instead of 4", a.spi.size());
    return std::nullopt;
  }
  ChildChoice c;
  c.answer = a;
  c.peer_spi = spi_value(a.spi);
  c.suite.protocol = a.protocol == ProtocolId::ah ? filters::IpsecProtocol::ah : filters::IpsecProtocol::esp;
  bool encr = false;
  for (const auto& t : a.transforms) {
    switch (t.type) {
      case tt::encr:
        if (auto k = keyed_cipher_of(t)) {
          c.suite.encryption = *k;
          encr = true;
        }
        break;
      case tt::integ: c.suite.integrity = filters::integrity_from_ikev2(t.id).value_or(Integrity::none); break;
      case tt::dh: c.suite.dh = static_cast<DhGroup>(t.id); break;
      case tt::esn: c.suite.esn = t.id == 1; break;
      default: break;
    }
  }
  if (c.suite.protocol == filters::IpsecProtocol::esp && !encr) {
    why = "the ESP answer lacks an encryption algorithm";
    return std::nullopt;
  }
  if (c.suite.protocol == filters::IpsecProtocol::ah && c.suite.integrity == Integrity::none) {
    why = "the AH answer lacks an integrity algorithm";
    return std::nullopt;
  }
  return c;
}

std::optional<DhGroup> acceptable_ke_group(const SaPayload& offered, std::uint16_t group) {
  auto g = filters::dh_group_from_id(group);
  if (!g || *g == DhGroup::none) return std::nullopt;
  for (const auto& p : offered.proposals) {
    if (contains(p.transforms, dh_transform(*g))) return g;
  }
  return std::nullopt;
}

// ---- traffic selectors ---------------------------------------------------------------

PolicySelectors policy_selectors(const filters::PolicyConfig& policy, const IpAddr& me, const IpAddr& peer) {
  PolicySelectors s;
  if (policy.mode == filters::SaMode::transport) {
    s.local = {host(me)};
    s.remote = {host(peer)};
  } else {
    s.local = side(policy.local, policy.remote, me);
    s.remote = side(policy.remote, policy.local, me);
  }
  const std::uint8_t proto = policy.protocol.value_or(0);
  for (auto& t : s.local) {
    t.ip_protocol = proto;
    t.start_port = policy.local_ports.low;
    t.end_port = policy.local_ports.high;
  }
  for (auto& t : s.remote) {
    t.ip_protocol = proto;
    t.start_port = policy.remote_ports.low;
    t.end_port = policy.remote_ports.high;
  }
  return s;
}

std::optional<Narrowed> narrow(const std::vector<TrafficSelector>& tsi, const std::vector<TrafficSelector>& tsr,
                               const PolicySelectors& ours) {
  Narrowed n;
  n.initiator = narrow_side(tsi, ours.remote);
  n.responder = narrow_side(tsr, ours.local);
  if (n.initiator.empty() || n.responder.empty()) return std::nullopt;
  return n;
}

bool within(const std::vector<TrafficSelector>& answer, const std::vector<TrafficSelector>& offered) {
  if (answer.empty()) return false;
  return std::all_of(answer.begin(), answer.end(), [&](const TrafficSelector& a) {
    return std::any_of(offered.begin(), offered.end(), [&](const TrafficSelector& o) { return contained(a, o); });
  });
}

bool covers(const std::vector<TrafficSelector>& ts, const IpAddr& addr, std::uint8_t protocol, std::uint16_t port) {
  return std::any_of(ts.begin(), ts.end(), [&](const TrafficSelector& t) {
    return t.start.family() == addr.family() && t.start <= addr && addr <= t.end &&
           (t.ip_protocol == 0 || t.ip_protocol == protocol) && t.start_port <= port && port <= t.end_port;
  });
}

}  // namespace ipsentry::ike::v2
