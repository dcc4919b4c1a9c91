#include "ipsentry/ike/analyzer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/message.hpp"
#include "ipsentry/ipsec/crypto.hpp"

namespace ipsentry::ike {

namespace dik = dissect::ike;
namespace notify = v2::notify;  // the Notify types, as the IKEv2 daemon names them
using dissect::IpAddr;
using filters::Cipher;
using filters::Integrity;
using filters::Prf;

const char* to_string(DecryptStatus s) noexcept {
  switch (s) {
    case DecryptStatus::cleartext: return "cleartext";
    case DecryptStatus::decrypted: return "decrypted";
    case DecryptStatus::icv_mismatch: return "icv-mismatch";
    case DecryptStatus::failed: return "decrypt-failed";
    case DecryptStatus::no_key: return "no-key";
    case DecryptStatus::no_iv: return "no-iv";
    case DecryptStatus::fragment: return "fragment";
  }
  return "?";
}

const char* to_string(Outcome o) noexcept {
  switch (o) {
    case Outcome::in_progress: return "in progress";
    case Outcome::established: return "established";
    case Outcome::failed: return "failed";
    case Outcome::no_answer: return "no answer";
    case Outcome::unknown: return "unknown";
  }
  return "?";
}

MessageVerdict verdict(const MessageRecord& m) noexcept {
  if (m.malformed != nullptr) return MessageVerdict::malformed;
  switch (m.status) {
    case DecryptStatus::cleartext:
    case DecryptStatus::decrypted: break;
    case DecryptStatus::icv_mismatch: return MessageVerdict::icv_fail;
    case DecryptStatus::failed: return MessageVerdict::decrypt_fail;
    case DecryptStatus::no_key:
    case DecryptStatus::no_iv:
    case DecryptStatus::fragment: return MessageVerdict::unverifiable;
  }
  return m.ends_negotiation ? MessageVerdict::ike_fail : MessageVerdict::ok;
}

std::string_view verdict_name(MessageVerdict v) noexcept {
  if (v == MessageVerdict::ike_fail) return "ike-fail";
  return ipsec::verdict_name(static_cast<ipsec::Verdict>(v));
}

namespace {

using Vec = std::vector<std::uint8_t>;

bool is_error_notify(bool v2, std::uint16_t type) { return v2 ? type < 16384 : type < 8192; }
// AUTHENTICATION(-)FAILED has the same number in both versions; IKEv1 adds
// INVALID-HASH-INFORMATION (23) and INVALID-SIGNATURE (25).
bool is_auth_failure(bool v2, std::uint16_t type) {
  return type == notify::authentication_failed || (!v2 && (type == 23 || type == 25));
}

std::optional<Cipher> v1_phase1_cipher(std::uint32_t id) {
  switch (id) {
    case 1: return Cipher::des_cbc;
    case 5: return Cipher::tdes_cbc;
    case 7: return Cipher::aes_cbc;
    default: return std::nullopt;
  }
}

// An IKEv1 IPsec DOI ESP transform ID with its key length (bits).
std::optional<Cipher> v1_esp_cipher(std::uint16_t id) {
  switch (id) {
    case 2: return Cipher::des_cbc;
    case 3: return Cipher::tdes_cbc;
    case 11: return Cipher::null;
    case 12: return Cipher::aes_cbc;
    case 13: return Cipher::aes_ctr;
    case 14: return Cipher::aes_ccm_8;
    case 15: return Cipher::aes_ccm_12;
    case 16: return Cipher::aes_ccm_16;
    case 18: return Cipher::aes_gcm_8;
    case 19: return Cipher::aes_gcm_12;
    case 20: return Cipher::aes_gcm_16;
    case 23: return Cipher::aes_gmac;
    default: return std::nullopt;
  }
}

std::optional<Integrity> v1_auth_alg(std::uint32_t id) {
  switch (id) {
    case 1: return Integrity::hmac_md5_96;
    case 2: return Integrity::hmac_sha1_96;
    case 5: return Integrity::hmac_sha256_128;
    case 6: return Integrity::hmac_sha384_192;
    case 7: return Integrity::hmac_sha512_256;
    case 9: return Integrity::aes_xcbc_96;
    default: return std::nullopt;
  }
}

// Key bytes of a cipher: the key length attribute (bits) plus salt/nonce.
std::size_t cipher_key_bytes(Cipher c, std::optional<std::uint32_t> bits) {
  const auto& ci = filters::cipher_info(c);
  if (c == Cipher::null) return 0;
  if (c == Cipher::des_cbc) return 8;
  if (c == Cipher::tdes_cbc) return 24;
  if (c == Cipher::chacha20_poly1305) return 36;
  const std::size_t k = bits ? *bits / 8 : 16;
  return k + ci.salt_len;
}

// IKEv1 encrypts a message whole in CBC mode (RFC 2409 appendix B), with
// IVs the analyzer chains itself, so it decrypts without SkCipher.
bool cbc_decrypt(Cipher alg, dissect::Bytes key, dissect::Bytes iv, dissect::Bytes in, Vec& out, std::string& why) {
  try {
    auto c = ipsec::crypto::Cipher::create(alg, key);
    out.resize(in.size());
    if (!c->decrypt(iv.data(), in, out.data())) {
      why = "the cipher rejected the data";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    why = e.what();
    return false;
  }
}

std::string spi_hex(dissect::Bytes b) {
  std::string s;
  for (auto v : b) s += fmt::format("{:02x}", v);
  return s;
}

// The algorithms of the proposal an exchange chose for an ESP or AH SA, and
// whether ipsentry implements them all.
struct ChildAlgorithms {
  Cipher cipher = Cipher::null;
  Integrity integ = Integrity::none;
  bool esn = false;
  std::optional<std::uint32_t> bits;
  filters::SaMode mode = filters::SaMode::tunnel;
  bool known = true;
};

// IKEv2 gives every algorithm a transform of its own type (RFC 7296 3.3.2);
// the mode is transport when both peers sent USE_TRANSPORT_MODE (1.3.1).
ChildAlgorithms v2_child_algorithms(const dik::Proposal& chosen, bool transport) {
  ChildAlgorithms a;
  for (const auto& t : chosen.transforms) {
    if (t.type == 1) {
      auto c = filters::cipher_from_ikev2(t.id);
      a.known = a.known && c.has_value();
      if (c) a.cipher = *c;
      a.bits = t.attribute(14);
    } else if (t.type == 3) {
      auto i = filters::integrity_from_ikev2(t.id);
      a.known = a.known && i.has_value();
      if (i) a.integ = *i;
    } else if (t.type == 5) {
      a.esn = t.id == 1;
    }
  }
  if (transport) a.mode = filters::SaMode::transport;
  return a;
}

// IKEv1's IPsec DOI (RFC 2407 4.4.4, 4.5): one transform, whose ID is the
// ESP cipher or the AH algorithm, with attributes for the rest.
ChildAlgorithms v1_child_algorithms(const dik::Proposal& chosen) {
  ChildAlgorithms a;
  if (chosen.transforms.empty()) return a;
  const auto& t = chosen.transforms.front();
  if (chosen.protocol == 3) {
    auto c = v1_esp_cipher(t.id);
    a.known = a.known && c.has_value();
    if (c) a.cipher = *c;
    a.bits = t.attribute(6);
  }
  if (auto au = t.attribute(5)) {
    auto i = v1_auth_alg(*au);
    a.known = a.known && i.has_value();
    if (i) a.integ = *i;
  } else if (chosen.protocol == 2) {
    auto i = v1_auth_alg(t.id == 2 ? 1 : t.id == 3 ? 2 : t.id);
    a.known = a.known && i.has_value();
    if (i) a.integ = *i;
  }
  if (auto m = t.attribute(4))
    a.mode = (*m == 2 || *m == 4 || *m == 61444) ? filters::SaMode::transport : filters::SaMode::tunnel;
  if (auto e = t.attribute(11)) a.esn = *e == 1;
  return a;
}

}  // namespace

// One exchange that may create SAs (Quick Mode, IKE_AUTH, CREATE_CHILD_SA).
struct Analyzer::Exchange {
  int neg = -1;
  IpAddr requester;
  IpAddr peer;
  Vec ni;
  Vec nr;
  bool pfs = false;
  bool ike_rekey = false;
  bool transport_req = false;
  bool transport_resp = false;
  // The proposals without their views into message buffers (a payload
  // outside SK points into the captured packet, which a live capture
  // frees): their SPIs are owned copies, and attribute data is dropped.
  std::vector<dik::Proposal> offered;
  std::vector<Vec> offered_spis;  // offered[i]'s SPI
  std::optional<dik::Proposal> chosen;
  Vec chosen_spi;

  void offer(const std::vector<dik::Proposal>& props) {
    offered.clear();
    offered_spis.clear();
    for (const auto& p : props) {
      offered_spis.emplace_back(p.spi.begin(), p.spi.end());
      offered.push_back(detached(p));
    }
  }
  void choose(const dik::Proposal& p) {
    chosen_spi.assign(p.spi.begin(), p.spi.end());
    chosen = detached(p);
  }
  static dik::Proposal detached(dik::Proposal p) {
    p.spi = {};
    for (auto& t : p.transforms) {
      for (auto& a : t.attributes) a.data = {};
    }
    return p;
  }
  bool learned = false;
  int requests = 0;
  int responses = 0;
};

struct Analyzer::IkeSaState {
  std::uint8_t version = 0;
  std::uint64_t spi_i = 0;
  std::uint64_t spi_r = 0;
  IpAddr initiator;
  IpAddr responder;
  bool roles_known = false;
  int key = -1;
  std::optional<Cipher> cipher;
  std::optional<std::uint32_t> key_bits;
  std::optional<Integrity> integrity;
  std::optional<Prf> prf;
  int ike_neg = -1;
  bool established = false;
  std::uint32_t last_auth_mid = 0;
  // IKEv1 phase 1: whether each peer's encrypted messages (initiator 0,
  // responder 1) decrypted with the key given, or did not.
  bool p1_decrypted[2] = {false, false};
  bool p1_undecryptable[2] = {false, false};
  bool psk = false;  // the chosen authentication method is a pre-shared key
  Vec ni;
  Vec nr;
  // IKEv1 IV derivation (RFC 2409 appendix B).
  Vec ke_i;
  Vec ke_r;
  Vec p1_last_block;
  struct Iv {
    Vec next;
    Vec last_used;
    Vec last_msg;
  };
  std::map<std::uint32_t, Iv> ivs;
  using Exchange = Analyzer::Exchange;
  std::map<std::uint32_t, Exchange> exchanges;
  // IKEv2 fragments being collected, per message ID and direction, with
  // the daemon's bounds and rules (RFC 7383 2.6).
  std::map<std::pair<std::uint32_t, bool>, v2::FragmentSet> frags;
  std::map<std::pair<std::uint32_t, bool>, Vec> last_msg;
};

namespace {

// Who is the initiator: IKEv2 says so in every header; in IKEv1 the first
// message of the SA has a zero responder cookie.
bool note_roles(Analyzer::IkeSaState& st, const dik::Header& h, const dissect::Packet& p) {
  bool from_initiator = true;
  if (h.v2()) {
    from_initiator = h.initiator_v2();
    if (!st.roles_known) {
      st.initiator = from_initiator ? p.ip.src : p.ip.dst;
      st.responder = from_initiator ? p.ip.dst : p.ip.src;
      st.roles_known = true;
    }
  } else {
    if (!st.roles_known) {
      st.initiator = p.ip.src;
      st.responder = p.ip.dst;
      st.roles_known = true;
    }
    from_initiator = p.ip.src == st.initiator;
  }
  return from_initiator;
}

// How trying one key on an encrypted message ended.
enum class Attempt : std::uint8_t { next_key, give_up, opened };

// One key on an IKEv2 SK or SKF payload. A key without SPIs (a trial key)
// whose ICV does not match belongs to another IKE SA: the next one is tried.
// An ICV mismatch under the key named for this SA decrypts anyway, flagged.
Attempt open_sk(const filters::IkeSaConfig& k, const Analyzer::IkeSaState& st, MessageRecord& rec, dissect::Bytes msg,
                const dik::Payload& sk, bool from_initiator, Vec& plain, bool& icv_ok) {
  const bool trial = !k.spi_i;
  const bool frag = sk.type == dik::pt::v2_skf;
  const std::optional<Cipher> cipher = k.cipher ? k.cipher : st.cipher;
  if (!cipher) {
    rec.detail = "the encryption algorithm is unknown (no IKE_SA_INIT response in the capture; give encryption:)";
    return Attempt::next_key;
  }
  const auto& ci = filters::cipher_info(*cipher);
  const filters::SecretBytes& ek = from_initiator ? k.sk_ei : k.sk_er;
  const filters::SecretBytes& ak = from_initiator ? k.sk_ai : k.sk_ar;
  const std::size_t pre = frag ? 4 : 0;
  if (sk.body.size() < pre) {
    rec.detail = "encrypted payload too short";
    return Attempt::give_up;
  }
  // The key table gives SK_e whole; the suite takes its length from it.
  IkeSuite suite;
  suite.encryption = {*cipher, static_cast<std::uint16_t>(ek.size() - std::min<std::size_t>(ek.size(), ci.salt_len))};
  suite.integrity = ci.aead() ? Integrity::none : k.integrity ? *k.integrity : st.integrity.value_or(Integrity::none);
  std::string why;
  std::optional<Vec> opened;
  SkCipher::Trust trust = SkCipher::Trust::verified;
  try {
    const SkCipher skc = SkCipher::for_inspection(suite, ek.bytes(), ak.bytes());
    // The SK payload runs to its own end (it is the last payload), its IV
    // after the generic header and, in SKF, the fragment fields.
    const std::size_t sk_off = dik::kHeaderLen + sk.offset;
    opened = skc.inspect(msg.first(sk_off + 4 + sk.body.size()), sk_off + (frag ? 8 : 4), trust, why);
  } catch (const CryptoError& e) {
    why = e.what();
  }
  if (trial && opened && trust == SkCipher::Trust::icv_mismatch) return Attempt::next_key;
  if (!opened) {
    rec.detail = why;
    return trial ? Attempt::next_key : Attempt::give_up;
  }
  plain = std::move(*opened);
  icv_ok = trust != SkCipher::Trust::icv_mismatch;
  return Attempt::opened;
}

// One decrypted SKF fragment, collected with the daemon's bounds and rules
// (RFC 7383 2.6); the message is whole with the last one.
void add_fragment(MessageRecord& rec, Analyzer::IkeSaState& st, const dik::Payload& skf, bool from_initiator,
                  Vec plain) {
  const dik::Header& h = rec.header;
  const std::uint16_t num = dissect::load_be16(skf.body.data());
  const std::uint16_t total = dissect::load_be16(skf.body.data() + 2);
  auto& f = st.frags[{h.message_id, from_initiator}];
  v2::Fragment part;
  part.number = num;
  part.total = total;
  part.first_payload = skf.next;
  part.plain = std::move(plain);
  const auto added = f.add(h.message_id, std::move(part));
  if (added == v2::FragmentSet::Added::complete) {
    rec.plaintext = f.take(rec.first_inner);
    st.frags.erase({h.message_id, from_initiator});
    rec.detail += fmt::format("; {} fragments reassembled", total);
    return;
  }
  rec.status = DecryptStatus::fragment;
  rec.detail += fmt::format("; fragment {} of {}", num, total);
  switch (added) {
    case v2::FragmentSet::Added::duplicate: rec.detail += " (a retransmission)"; break;
    case v2::FragmentSet::Added::inconsistent: rec.detail += " (ignored: other fragments say more)"; break;
    case v2::FragmentSet::Added::too_many:
      rec.detail += fmt::format(" (ignored: more than {})", v2::FragmentSet::kMaxFragments);
      break;
    case v2::FragmentSet::Added::too_big:
      rec.detail += fmt::format(" (all dropped: more than {} bytes)", v2::FragmentSet::kMaxBytes);
      break;
    default: break;
  }
}

// What an IKEv1 message is decrypted with.
struct V1Cipher {
  Cipher cipher = Cipher::aes_cbc;
  std::optional<Prf> hash;  // of phase 1, for the IVs
  std::size_t key_len = 0;
  std::size_t block = 16;
};

V1Cipher v1_cipher_for(const filters::IkeSaConfig& k, const Analyzer::IkeSaState& st) {
  // What the Main Mode SA in the capture chose comes first: what a key
  // says is a guess for captures without it (a charon log, say, ties
  // its keys to the proposal another thread logged for another SA).
  std::optional<Cipher> cipher = st.cipher ? st.cipher : k.cipher;
  if (!cipher) {
    // No SA payload seen: go by the key length, as users would.
    cipher = k.enc_key.size() == 8 ? Cipher::des_cbc : k.enc_key.size() == 24 ? Cipher::tdes_cbc : Cipher::aes_cbc;
  }
  V1Cipher c;
  c.cipher = *cipher;
  c.hash = st.prf ? st.prf : k.prf;
  c.key_len = k.enc_key.size();
  if (c.cipher == Cipher::aes_cbc && st.key_bits && *st.key_bits / 8 <= c.key_len) c.key_len = *st.key_bits / 8;
  if (c.cipher == Cipher::tdes_cbc) c.key_len = 24;
  if (c.cipher == Cipher::des_cbc) c.key_len = 8;
  c.block = c.cipher == Cipher::aes_cbc ? 16 : 8;
  return c;
}

// The IV of an IKEv1 message (RFC 2409 appendix B): a retransmission's own
// again, else the last block of the exchange's previous message, else the
// exchange's first IV. Without what that takes the message stays encrypted:
// nullopt, and rec says why.
std::optional<Vec> v1_iv(MessageRecord& rec, const Analyzer::IkeSaState& st, const Analyzer::IkeSaState::Iv& ivs,
                         dissect::Bytes msg, const V1Cipher& c) {
  const dik::Header& h = rec.header;
  Vec iv;
  if (!ivs.last_msg.empty() && ivs.last_msg.size() == msg.size() &&
      std::equal(ivs.last_msg.begin(), ivs.last_msg.end(), msg.begin())) {
    iv = ivs.last_used;  // a retransmission is encrypted with the same IV
  } else if (!ivs.next.empty()) {
    iv = ivs.next;
  } else if (!c.hash) {
    rec.status = DecryptStatus::no_iv;
    rec.detail = "the IV needs the phase 1 hash algorithm (not in the capture; give hash:)";
    return std::nullopt;
  } else {
    // Phase 1 starts from H(g^xi | g^xr); phase 2 from H(last phase-1
    // block | M-ID), with the phase 1 IV standing in for the last block
    // when no phase-1 message was encrypted.
    Vec base = h.message_id == 0 ? Vec{} : st.p1_last_block;
    if (base.empty()) {
      if (st.ke_i.empty() || st.ke_r.empty()) {
        rec.status = DecryptStatus::no_iv;
        rec.detail = h.message_id == 0 ? "the phase 1 IV needs both KE payloads, and the capture lacks them"
                                       : "the phase 2 IV needs phase 1's last block, and the capture lacks phase 1";
        return std::nullopt;
      }
      base = hash(*c.hash, {Bytes(st.ke_i), Bytes(st.ke_r)});
    }
    if (h.message_id == 0) {
      iv = std::move(base);
    } else {
      base.resize(c.block);
      std::uint8_t mid[4];
      dissect::store_be32(mid, h.message_id);
      iv = hash(*c.hash, {Bytes(base), Bytes(mid, 4)});
    }
  }
  if (iv.size() < c.block) {
    rec.detail = "the hash is shorter than the cipher block";
    return std::nullopt;
  }
  iv.resize(c.block);
  return iv;
}

// The payload and Notify types a record lists, outer and decrypted, for the
// reports and filters that go by them.
void list_payloads(MessageRecord& rec, const dik::Chain& outer, const dik::Chain* inner) {
  for (const auto& pl : outer.payloads) rec.payloads.push_back(pl.type);
  if (inner != nullptr) {
    for (const auto& pl : inner->payloads) rec.inner_payloads.push_back(pl.type);
  }
  for (const dik::Chain* c : {&outer, inner}) {
    if (c == nullptr) continue;
    for (const auto& pl : c->payloads) {
      if (pl.type != dik::pt::v1_notify && pl.type != dik::pt::v2_notify) continue;
      if (auto n = dik::parse_notify(pl.body, rec.header.v2())) rec.notifies.push_back(n->type);
    }
  }
}

// The summary line: "IKEv2 IKE_AUTH request 1 ... [ IDi AUTH SA TSi TSr ]",
// with the decrypted payloads in place of the SK payload, and what went
// wrong with the decryption.
std::string summary_of(const MessageRecord& rec, const dik::Chain& outer, const dik::Chain* inner) {
  const dik::Header& h = rec.header;
  const bool v2 = h.v2();
  const char* ex = dik::exchange_name(h.exchange);
  std::string what =
      v2 ? fmt::format("IKEv2 {} {} {}", ex ? ex : "exchange", h.response_v2() ? "response" : "request", h.message_id)
         : fmt::format("IKEv1 {}{}", ex ? ex : "exchange",
                       h.message_id != 0 ? fmt::format(" 0x{:08x}", h.message_id) : "");
  std::string payloads;
  if (inner != nullptr) {
    std::string outer_s = dik::chain_summary(outer, v2);
    // Replace the SK payload by what it held.
    payloads =
        outer_s.empty() ? dik::chain_summary(*inner, v2) : outer_s + " { " + dik::chain_summary(*inner, v2) + " }";
  } else if (h.encrypted_v1()) {
    payloads = "encrypted";
  } else {
    payloads = dik::chain_summary(outer, v2);
  }
  std::string summary = fmt::format("{} {:016x}/{:016x} [ {} ]", what, h.spi_i, h.spi_r, payloads);
  if (rec.status != DecryptStatus::cleartext && rec.status != DecryptStatus::decrypted) {
    summary += fmt::format(" ({}{}{})", to_string(rec.status), rec.detail.empty() ? "" : ": ", rec.detail);
  }
  if (rec.retransmission) summary += " (retransmission)";
  return summary;
}

}  // namespace

Analyzer::Analyzer(std::vector<filters::IkeSaConfig> keys) : keys_(std::move(keys)), key_bound_(keys_.size(), false) {}
Analyzer::~Analyzer() = default;

const MessageRecord* Analyzer::record(std::uint64_t frame) const {
  auto it = by_frame_.find(frame);
  return it == by_frame_.end() ? nullptr : &records_[it->second];
}

Analyzer::IkeSaState& Analyzer::state_for(const dik::Header& h) {
  const auto k = std::make_pair(std::uint64_t{h.major}, h.spi_i);
  auto it = state_index_.find(k);
  if (it != state_index_.end()) return *states_[it->second];
  auto st = std::make_unique<IkeSaState>();
  st->version = h.major;
  st->spi_i = h.spi_i;
  states_.push_back(std::move(st));
  state_index_[k] = states_.size() - 1;
  return *states_.back();
}

const MessageRecord* Analyzer::observe(const dissect::Frame& frame, const dissect::Packet& p) {
  if (!p.is_ike()) {
    if (!unanswered_.empty() && p.ip.version != 0 && !p.is_ipsec() && p.encap == dissect::UdpEncap::none) {
      note_clear(p, frame.ts_ns);
    }
    return nullptr;
  }
  if (p.ike_offset >= p.data.size()) return nullptr;
  MessageRecord& r = process(frame, p, p.data.subspan(p.ike_offset));
  return &r;
}

void Analyzer::note_clear(const dissect::Packet& p, std::int64_t ts) {
  auto key = p.ip.src < p.ip.dst ? std::make_pair(p.ip.src, p.ip.dst) : std::make_pair(p.ip.dst, p.ip.src);
  auto it = unanswered_.find(key);
  if (it == unanswered_.end()) return;
  for (std::size_t n : it->second) {
    Negotiation& neg = negotiations_[n];
    if (!neg.answered && ts >= neg.first_ns) neg.clear_traffic_after = true;
  }
}

std::vector<int> Analyzer::key_candidates(const dik::Header& h, const IkeSaState& st, MessageRecord& rec) const {
  // The key already bound to this IKE SA; else keys naming its SPIs first,
  // then keys without SPIs (strongSwan logs) not yet bound elsewhere, to try.
  std::vector<int> candidates;
  if (st.key >= 0) {
    candidates.push_back(st.key);
  } else {
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      const auto& k = keys_[i];
      if (k.version != h.major || (h.major == 1 && k.enc_key.empty())) continue;
      // IKEv1 tables name the initiator cookie only.
      const bool spi_r_fits = h.major == 1 || !k.spi_r || h.spi_r == 0 || *k.spi_r == h.spi_r;
      if (k.spi_i && *k.spi_i == h.spi_i && spi_r_fits) {
        candidates.insert(candidates.begin(), static_cast<int>(i));
      } else if (!k.spi_i && !key_bound_[i]) {
        candidates.push_back(static_cast<int>(i));
      }
    }
  }
  rec.status = candidates.empty() ? DecryptStatus::no_key : DecryptStatus::failed;
  if (candidates.empty()) rec.detail = "no key for this IKE SA";
  return candidates;
}

MessageRecord& Analyzer::new_record(const dissect::Frame& frame, const dissect::Packet& p) {
  records_.emplace_back();
  MessageRecord& rec = records_.back();
  by_frame_[frame.number] = records_.size() - 1;
  rec.frame = frame.number;
  rec.ts_ns = frame.ts_ns;
  rec.src = p.ip.src;
  rec.dst = p.ip.dst;
  rec.sport = p.l4.sport;
  rec.dport = p.l4.dport;
  ++stats_.messages;
  return rec;
}

// Retransmissions: the same bytes again in the same direction.
void Analyzer::note_retransmission(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, bool from_initiator) {
  auto key = std::make_pair(rec.header.message_id, from_initiator);
  Vec& last = st.last_msg[key];
  if (last.size() == msg.size() && std::equal(last.begin(), last.end(), msg.begin())) {
    rec.retransmission = true;
    ++stats_.retransmissions;
  }
  last.assign(msg.begin(), msg.end());
}

// IKEv2 (RFC 7296 3.14): the SK payload, or one SKF fragment of it (RFC
// 7383), opened with the first key that fits.
bool Analyzer::decrypt_v2(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, const dik::Chain& outer,
                          bool from_initiator, dik::Chain& inner) {
  const dik::Payload* sk = nullptr;
  for (const auto& pl : outer.payloads) {
    if (pl.type == dik::pt::v2_sk || pl.type == dik::pt::v2_skf) sk = &pl;
  }
  if (sk == nullptr) return false;
  ++stats_.encrypted;
  for (int ki : key_candidates(rec.header, st, rec)) {
    Vec plain;
    bool icv_ok = false;
    const Attempt a = open_sk(keys_[static_cast<std::size_t>(ki)], st, rec, msg, *sk, from_initiator, plain, icv_ok);
    if (a == Attempt::next_key) continue;
    if (a == Attempt::opened) accept_v2(ki, rec, st, *sk, from_initiator, std::move(plain), icv_ok);
    break;
  }
  if (rec.status == DecryptStatus::decrypted || rec.status == DecryptStatus::icv_mismatch) {
    if (!rec.plaintext.empty() || rec.first_inner == 0) {
      inner = dik::walk(rec.plaintext, rec.first_inner);
      if (rec.status == DecryptStatus::decrypted) ++stats_.decrypted;
      return true;
    }
  } else if (rec.status == DecryptStatus::failed) {
    ++stats_.invalid_packets;
  }
  return false;
}

// The key opened the message: it is the IKE SA's from now on, and a key
// without SPIs is no longer tried on other IKE SAs. A fragment waits for
// the others.
void Analyzer::accept_v2(int ki, MessageRecord& rec, IkeSaState& st, const dik::Payload& sk, bool from_initiator,
                         Vec plain, bool icv_ok) {
  const auto& k = keys_[static_cast<std::size_t>(ki)];
  if (!k.spi_i) key_bound_[static_cast<std::size_t>(ki)] = true;
  st.key = ki;
  rec.status = icv_ok ? DecryptStatus::decrypted : DecryptStatus::icv_mismatch;
  rec.detail = icv_ok ? fmt::format("decrypted with {}", k.name)
                      : fmt::format("ICV mismatch under {}: decrypted anyway, do not trust the contents", k.name);
  if (!icv_ok) ++stats_.invalid_packets;
  if (sk.type == dik::pt::v2_skf) {
    add_fragment(rec, st, sk, from_initiator, std::move(plain));
  } else {
    rec.plaintext = std::move(plain);
    rec.first_inner = sk.next;
  }
}

// IKEv1 (RFC 2409 appendix B): the whole body is encrypted in CBC mode,
// with IVs that chain from message to message of an exchange.
bool Analyzer::decrypt_v1(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, dik::Chain& inner) {
  ++stats_.encrypted;
  bool have_inner = false;
  for (int ki : key_candidates(rec.header, st, rec)) {
    if (decrypt_v1_with(ki, rec, st, msg, inner, have_inner)) break;
  }
  if (rec.status == DecryptStatus::failed) ++stats_.invalid_packets;
  return have_inner;
}

// One key on an IKEv1 message; false: try the next key. Without an ICV,
// only payloads that parse tell a right key from a wrong one: a trial key
// (one without SPIs) that decrypts to garbage is another IKE SA's. The key
// named for this SA is kept even then, and the exchange's IV moves on.
bool Analyzer::decrypt_v1_with(int ki, MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, dik::Chain& inner,
                               bool& have_inner) {
  const dik::Header& h = rec.header;
  const dissect::Bytes body = msg.subspan(dik::kHeaderLen);
  const auto& k = keys_[static_cast<std::size_t>(ki)];
  const bool trial = !k.spi_i;
  const V1Cipher c = v1_cipher_for(k, st);
  if (c.key_len > k.enc_key.size()) {
    rec.detail = "the encryption key is shorter than the cipher needs";
    return false;
  }
  IkeSaState::Iv& ivs = st.ivs[h.message_id];
  const std::optional<Vec> iv = v1_iv(rec, st, ivs, msg, c);
  if (!iv) return false;
  const std::size_t ct_len = body.size() - body.size() % c.block;
  if (ct_len == 0) {
    rec.detail = "no encrypted data";
    return true;
  }
  Vec out;
  std::string why;
  if (!cbc_decrypt(c.cipher, k.enc_key.bytes().first(c.key_len), *iv, body.first(ct_len), out, why)) {
    rec.detail = why;
    return false;
  }
  dik::Chain chain = dik::walk(out, h.next_payload);
  bool plausible = chain.error == nullptr && !chain.payloads.empty();
  for (const auto& pl : chain.payloads) plausible = plausible && dik::payload_name(pl.type) != nullptr;
  if (!plausible) {
    rec.detail = fmt::format("decrypts to garbage with {} (wrong key or IV)", k.name);
    if (trial) return false;
  } else {
    rec.status = DecryptStatus::decrypted;
    rec.detail = fmt::format("decrypted with {}", k.name);
  }
  if (trial && plausible) key_bound_[static_cast<std::size_t>(ki)] = true;
  if (plausible || !trial) st.key = ki;
  ivs.last_used = *iv;
  ivs.last_msg.assign(msg.begin(), msg.end());
  ivs.next.assign(body.begin() + static_cast<std::ptrdiff_t>(ct_len - c.block),
                  body.begin() + static_cast<std::ptrdiff_t>(ct_len));
  if (h.message_id == 0) st.p1_last_block = ivs.next;
  if (plausible) {
    rec.plaintext = std::move(out);
    rec.first_inner = h.next_payload;
    inner = std::move(chain);
    have_inner = true;
    ++stats_.decrypted;
  }
  return true;
}

MessageRecord& Analyzer::process(const dissect::Frame& frame, const dissect::Packet& p, dissect::Bytes msg) {
  MessageRecord& rec = new_record(frame, p);
  dik::Header& h = rec.header;
  if (const char* err = dik::parse_header(msg, h)) {
    rec.malformed = err;
    rec.summary = fmt::format("ISAKMP [malformed: {}]", err);
    ++stats_.invalid_packets;
    return rec;
  }
  const bool v2 = h.v2();
  if (h.length > msg.size()) {
    rec.malformed = "message truncated by the capture";
  }
  msg = msg.first(std::min<std::size_t>(h.length, msg.size()));
  IkeSaState& st = state_for(h);
  if (h.spi_r != 0 && st.spi_r == 0) st.spi_r = h.spi_r;
  const bool from_initiator = note_roles(st, h, p);
  note_retransmission(rec, st, msg, from_initiator);

  const dissect::Bytes body = msg.subspan(dik::kHeaderLen);
  dik::Chain outer;
  dik::Chain inner;
  bool have_inner = false;
  // IKEv1 encrypts the whole body; IKEv2 only the SK payload, the last one.
  const bool encrypted_v1 = h.encrypted_v1();
  if (!encrypted_v1) outer = dik::walk(body, h.next_payload);
  if (outer.error != nullptr) {
    rec.malformed = outer.error;
    ++stats_.invalid_packets;
  }

  if (v2) {
    have_inner = decrypt_v2(rec, st, msg, outer, from_initiator, inner);
  } else if (encrypted_v1) {
    have_inner = decrypt_v1(rec, st, msg, inner);
  }

  const dik::Chain* decrypted = have_inner ? &inner : nullptr;
  list_payloads(rec, outer, decrypted);
  rec.summary = summary_of(rec, outer, decrypted);
  track(rec, outer, decrypted, st);
  return rec;
}

void Analyzer::check_phase1_keys(MessageRecord& rec, IkeSaState& st, bool from_initiator) {
  Negotiation& p1 = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  if (p1.outcome == Outcome::established) return;
  const int side = from_initiator ? 0 : 1;
  (rec.status == DecryptStatus::decrypted ? st.p1_decrypted : st.p1_undecryptable)[side] = true;
  // One peer's messages decrypt with the key and the other's do not: the
  // two derived different keys from the same exchange, which with a
  // pre-shared key means the keys they were given differ (RFC 2409 5.4:
  // SKEYID = prf(pre-shared key, Ni | Nr)). A wrong key given to ipsentry
  // decrypts neither peer's messages.
  const int bad = st.p1_decrypted[0] && st.p1_undecryptable[1]   ? 1
                  : st.p1_decrypted[1] && st.p1_undecryptable[0] ? 0
                                                                 : -1;
  if (bad < 0) return;
  const std::string why =
      fmt::format("the {}'s encrypted messages do not decrypt with the keys the {}'s do: {}",
                  bad == 1 ? "responder" : "initiator", bad == 1 ? "initiator" : "responder",
                  st.psk ? "the peers' pre-shared keys differ" : "the peers derived different keys");
  if (p1.reason.find(why) != std::string::npos) return;  // concluded by an earlier message
  rec.ends_negotiation = true;
  if (p1.outcome == Outcome::failed) {
    p1.reason += "; " + why;
  } else {
    p1.outcome = Outcome::failed;
    p1.reason = why;
  }
  if (st.psk) p1.auth_failure = true;
}

// What tracking needs of a message's payloads, the cleartext ones and the
// decrypted ones alike: a message says the same whether it was encrypted.
struct Analyzer::Payloads {
  bool v2 = false;
  bool decrypted = false;  // its encrypted payloads are among them (an ICV mismatch included)
  std::vector<const dik::Payload*> all;
  std::vector<dik::Notify> notifies;
  const dik::Payload* sa = nullptr;
  const dik::Payload* nonce = nullptr;
  const dik::Payload* ke = nullptr;
  bool transport_mode = false;  // USE_TRANSPORT_MODE (IKEv2)

  Payloads(bool is_v2, const dik::Chain& outer, const dik::Chain* inner) : v2(is_v2), decrypted(inner != nullptr) {
    for (const auto& pl : outer.payloads) all.push_back(&pl);
    if (inner != nullptr) {
      for (const auto& pl : inner->payloads) all.push_back(&pl);
    }
    for (const auto* pl : all) {
      if (pl->type == dik::pt::v1_notify || pl->type == dik::pt::v2_notify) {
        if (auto n = dik::parse_notify(pl->body, v2)) notifies.push_back(*n);
      }
    }
    for (const auto* pl : all) {
      if (pl->type == dik::pt::v1_sa || pl->type == dik::pt::v2_sa) sa = pl;
      if (pl->type == dik::pt::v1_nonce || pl->type == dik::pt::v2_nonce) nonce = pl;
      if (pl->type == dik::pt::v1_ke || pl->type == dik::pt::v2_ke) ke = pl;
    }
    transport_mode = std::any_of(notifies.begin(), notifies.end(),
                                 [&](const dik::Notify& n) { return v2 && n.type == notify::use_transport_mode; });
  }
  [[nodiscard]] const dik::Notify* first_error() const {
    for (const auto& n : notifies) {
      if (is_error_notify(v2, n.type)) return &n;
    }
    return nullptr;
  }
  [[nodiscard]] bool has(std::uint8_t type) const {
    return std::any_of(all.begin(), all.end(), [&](const dik::Payload* pl) { return pl->type == type; });
  }
  [[nodiscard]] std::vector<dik::Proposal> proposals() const { return dik::parse_sa(sa->body, v2).proposals; }
};

int Analyzer::new_neg(const MessageRecord& rec, const std::string& kind, std::uint32_t mid, const IpAddr& initiator,
                      const IpAddr& responder) {
  const dik::Header& h = rec.header;
  Negotiation n;
  n.version = h.major;
  n.kind = kind;
  n.spi_i = h.spi_i;
  n.spi_r = h.spi_r;
  n.message_id = mid;
  n.initiator = initiator;
  n.responder = responder;
  n.first_ns = rec.ts_ns;
  n.last_ns = rec.ts_ns;
  negotiations_.push_back(n);
  const std::size_t idx = negotiations_.size() - 1;
  auto key = initiator < responder ? std::make_pair(initiator, responder) : std::make_pair(responder, initiator);
  unanswered_[key].push_back(idx);
  return static_cast<int>(idx);
}

void Analyzer::touch(MessageRecord& rec, int idx, bool answer) {
  Negotiation& n = negotiations_[static_cast<std::size_t>(idx)];
  n.frames.push_back(rec.frame);
  n.last_ns = rec.ts_ns;
  if (rec.header.spi_r != 0) n.spi_r = rec.header.spi_r;
  if (rec.retransmission) ++n.retransmissions;
  if (answer && !n.answered) {
    n.answered = true;
    auto key =
        n.initiator < n.responder ? std::make_pair(n.initiator, n.responder) : std::make_pair(n.responder, n.initiator);
    auto it = unanswered_.find(key);
    if (it != unanswered_.end()) {
      auto& v = it->second;
      v.erase(std::remove(v.begin(), v.end(), static_cast<std::size_t>(idx)), v.end());
      if (v.empty()) unanswered_.erase(it);
    }
  }
  rec.negotiation = idx;
}

// The error ends the negotiation, even one that looked established (the
// initiator rejecting the responder's last message); a repeat of it marks
// the message but changes nothing.
void Analyzer::fail(MessageRecord& rec, int idx, const dik::Notify& n) {
  Negotiation& neg = negotiations_[static_cast<std::size_t>(idx)];
  rec.ends_negotiation = true;
  if (neg.outcome == Outcome::failed) return;
  const bool v2 = rec.header.v2();
  neg.outcome = Outcome::failed;
  neg.reason = dik::notify_str(v2, n.type);
  if (is_auth_failure(v2, n.type)) neg.auth_failure = true;
}

// The CHILD_SAs negotiated inside IKE_AUTH end with their IKE SA when it
// fails: shown failed, counted once, with the IKE SA.
void Analyzer::fail_auth_children(const IkeSaState& st) {
  const Negotiation& ike = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  for (const auto& [mid, ex] : st.exchanges) {
    if (ex.neg < 0 || mid > st.last_auth_mid) continue;
    Negotiation& child = negotiations_[static_cast<std::size_t>(ex.neg)];
    if (child.outcome == Outcome::failed) continue;
    child.outcome = Outcome::failed;
    child.failed_with = st.ike_neg;
    child.reason = fmt::format("{} (its IKE_SA failed)", ike.reason);
  }
}

// IKEv1 phase 1 (RFC 2409 5): Main Mode and Aggressive Mode, and RFC 2408's
// Base and Authentication Only exchanges tracked alike. What the responder
// chose, the KE payloads and the nonces are kept: the IVs and keys of the
// later encrypted messages are made of them.
void Analyzer::track_phase1(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool from_initiator) {
  const dik::Header& h = rec.header;
  if (st.ike_neg < 0) {
    st.ike_neg = new_neg(rec, h.exchange == dik::xt::v1_aggressive ? "Aggressive Mode" : "Main Mode", 0, st.initiator,
                         st.responder);
  }
  touch(rec, st.ike_neg, !from_initiator);
  Negotiation& neg = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  if (pl.sa != nullptr && !from_initiator) {
    const std::vector<dik::Proposal> props = pl.proposals();
    if (!props.empty() && !props.front().transforms.empty()) {
      neg.proposal = dik::proposal_str(props.front(), false);
      const auto& t = props.front().transforms.front();
      if (auto e = t.attribute(1)) st.cipher = v1_phase1_cipher(*e);
      if (auto kl = t.attribute(14)) st.key_bits = *kl;
      if (auto hs = t.attribute(2)) st.prf = filters::prf_from_ikev1_hash(*hs);
      if (auto am = t.attribute(3)) st.psk = *am == 1;
    }
  }
  if (pl.ke != nullptr) (from_initiator ? st.ke_i : st.ke_r).assign(pl.ke->body.begin(), pl.ke->body.end());
  if (pl.nonce != nullptr) (from_initiator ? st.ni : st.nr).assign(pl.nonce->body.begin(), pl.nonce->body.end());
  if (const dik::Notify* e = pl.first_error()) {
    fail(rec, st.ike_neg, *e);
  } else if (neg.outcome == Outcome::in_progress &&
             ((h.exchange == dik::xt::v1_main && !from_initiator && h.encrypted_v1()) ||
              (h.exchange == dik::xt::v1_aggressive && from_initiator && neg.frames.size() >= 3))) {
    neg.outcome = Outcome::established;
    st.established = true;
  }
}

// Quick Mode (RFC 2409 5.5), one per message ID. Its proposals and nonces
// are kept for learning the ESP keys; it is established once the requester
// has sent two messages and the responder one.
void Analyzer::track_quick_mode(MessageRecord& rec, const Payloads& pl, IkeSaState& st) {
  const dik::Header& h = rec.header;
  auto& ex = st.exchanges[h.message_id];
  if (ex.neg < 0) {
    ex.neg = new_neg(rec, "Quick Mode", h.message_id, rec.src, rec.dst);
    ex.requester = rec.src;
    ex.peer = rec.dst;
    // Quick Mode runs inside an established phase 1.
    if (st.ike_neg >= 0 && negotiations_[static_cast<std::size_t>(st.ike_neg)].outcome == Outcome::in_progress) {
      negotiations_[static_cast<std::size_t>(st.ike_neg)].outcome = Outcome::established;
    }
    st.established = true;
  }
  const bool from_requester = rec.src == ex.requester;
  touch(rec, ex.neg, !from_requester);
  Negotiation& neg = negotiations_[static_cast<std::size_t>(ex.neg)];
  if (!rec.retransmission) (from_requester ? ex.requests : ex.responses) += 1;
  if (pl.decrypted) {
    if (pl.sa != nullptr) {
      const std::vector<dik::Proposal> props = pl.proposals();
      if (from_requester && ex.offered.empty()) {
        ex.offer(props);
      } else if (!from_requester && !props.empty()) {
        ex.choose(props.front());
        neg.proposal = dik::proposal_str(props.front(), false);
      }
    }
    if (pl.nonce != nullptr) (from_requester ? ex.ni : ex.nr).assign(pl.nonce->body.begin(), pl.nonce->body.end());
    if (pl.ke != nullptr) ex.pfs = true;
  }
  if (const dik::Notify* e = pl.first_error()) fail(rec, ex.neg, *e);
  if (neg.outcome == Outcome::in_progress && ex.requests >= 2 && ex.responses >= 1) {
    neg.outcome = Outcome::established;
  }
}

// An Informational exchange of its own (a delete, a keepalive) is no
// part of the negotiation before it; an error belongs to the one it
// ends: phase 1 while it runs, else the newest Quick Mode still
// running. An authentication failure before any Quick Mode is the
// initiator rejecting the last Main Mode message: phase 1 failed.
void Analyzer::track_v1_informational(MessageRecord& rec, const Payloads& pl, IkeSaState& st) {
  const Negotiation* p1 = st.ike_neg >= 0 ? &negotiations_[static_cast<std::size_t>(st.ike_neg)] : nullptr;
  int target = -1;
  const dik::Notify* e = pl.first_error();
  if (e != nullptr) {
    if (p1 != nullptr && p1->outcome != Outcome::established) {
      target = st.ike_neg;
    } else {
      for (auto& [mid, ex] : st.exchanges) {
        if (ex.neg >= 0 && negotiations_[static_cast<std::size_t>(ex.neg)].outcome == Outcome::in_progress)
          target = ex.neg;
      }
    }
    if (target < 0 && p1 != nullptr && is_auth_failure(false, e->type) && st.exchanges.empty()) {
      target = st.ike_neg;
    }
  }
  if (target >= 0) {
    touch(rec, target, true);
    fail(rec, target, *e);
  } else if (p1 != nullptr && p1->outcome != Outcome::established) {
    touch(rec, st.ike_neg, false);  // inside phase 1, or the peers still talking about its failure
  }
}

void Analyzer::track_v1(MessageRecord& rec, const Payloads& pl, IkeSaState& st) {
  const dik::Header& h = rec.header;
  const bool from_initiator = rec.src == st.initiator;
  switch (h.exchange) {
    case dik::xt::v1_main:
    case dik::xt::v1_aggressive:
    case dik::xt::v1_base:
    case dik::xt::v1_auth_only: track_phase1(rec, pl, st, from_initiator); break;
    case dik::xt::v1_quick: track_quick_mode(rec, pl, st); break;
    case dik::xt::v1_informational:
    case dik::xt::v1_transaction: track_v1_informational(rec, pl, st); break;
    default: break;
  }
  if (st.ike_neg >= 0 && (rec.status == DecryptStatus::decrypted || rec.status == DecryptStatus::failed) &&
      (h.message_id == 0 || h.exchange == dik::xt::v1_informational)) {
    check_phase1_keys(rec, st, from_initiator);
  }
}

// IKE_SA_INIT (RFC 7296 1.2). Its response says what the IKE SA is: the
// algorithms its encrypted messages need when the keys do not name them. A
// COOKIE or INVALID_KE_PAYLOAD answer asks the initiator to try again, so the
// negotiation still waits for its answer.
void Analyzer::track_sa_init(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response) {
  if (st.ike_neg < 0) st.ike_neg = new_neg(rec, "IKE_SA", 0, st.initiator, st.responder);
  touch(rec, st.ike_neg, response);
  Negotiation& neg = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  if (pl.nonce != nullptr) (response ? st.nr : st.ni).assign(pl.nonce->body.begin(), pl.nonce->body.end());
  if (!response) return;
  if (pl.sa != nullptr) {
    const std::vector<dik::Proposal> props = pl.proposals();
    if (!props.empty()) {
      neg.proposal = dik::proposal_str(props.front(), true);
      for (const auto& t : props.front().transforms) {
        if (t.type == 1) {
          st.cipher = filters::cipher_from_ikev2(t.id);
          st.key_bits = t.attribute(14);
        }
        if (t.type == 2) st.prf = filters::prf_from_ikev2(t.id);
        if (t.type == 3) st.integrity = filters::integrity_from_ikev2(t.id);
      }
    }
  }
  for (const auto& n : pl.notifies) {
    if (n.type == notify::cookie || n.type == notify::invalid_ke_payload) {
      neg.reason = fmt::format("responder asked for a retry with {}", dik::notify_str(true, n.type));
      neg.answered = false;
    }
  }
  if (const dik::Notify* e = pl.first_error(); e != nullptr && e->type != notify::invalid_ke_payload)
    fail(rec, st.ike_neg, *e);
}

// What IKE_AUTH and CREATE_CHILD_SA share: an exchange that may create SAs
// (RFC 7296 1.3), one per message ID, whose proposals and nonces learning
// its keys takes. Its requester is the original initiator for IKE_AUTH and
// whoever sends the request for CREATE_CHILD_SA. A CREATE_CHILD_SA request
// that offers IKE proposals rekeys the IKE SA (RFC 7296 1.3.2) instead of
// creating a CHILD_SA. IKE_AUTH's CHILD_SA has no nonces or KE payload of
// its own: it takes IKE_SA_INIT's.
Analyzer::Exchange& Analyzer::child_exchange(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response,
                                             bool auth) {
  const dik::Header& h = rec.header;
  auto& ex = st.exchanges[h.message_id];
  if (ex.requester.empty()) {
    ex.requester = response ? rec.dst : rec.src;
    ex.peer = response ? rec.src : rec.dst;
  }
  if (pl.decrypted) {
    if (pl.sa != nullptr) {
      const std::vector<dik::Proposal> props = pl.proposals();
      if (!response) {
        ex.offer(props);
        if (!props.empty() && props.front().protocol == 1) ex.ike_rekey = true;
      } else if (!props.empty()) {
        ex.choose(props.front());
      }
    }
    if (!response)
      ex.transport_req = pl.transport_mode;
    else
      ex.transport_resp = pl.transport_mode;
    if (!auth && pl.nonce != nullptr) (response ? ex.nr : ex.ni).assign(pl.nonce->body.begin(), pl.nonce->body.end());
    if (!auth && pl.ke != nullptr) ex.pfs = true;
    if ((pl.sa != nullptr || !auth) && ex.neg < 0) {
      ex.neg = new_neg(rec, ex.ike_rekey ? "IKE_SA rekey" : "CHILD_SA", h.message_id, ex.requester, ex.peer);
    }
  } else if (!auth && ex.neg < 0) {
    ex.neg = new_neg(rec, "CREATE_CHILD_SA", h.message_id, ex.requester, ex.peer);
  }
  if (ex.neg >= 0) touch(rec, ex.neg, response);
  return ex;
}

// A response that stays encrypted answers the exchange, but not how.
void Analyzer::child_answer_unread(const Exchange& ex) {
  if (ex.neg < 0) return;
  Negotiation& n = negotiations_[static_cast<std::size_t>(ex.neg)];
  if (n.outcome != Outcome::in_progress) return;
  n.outcome = Outcome::unknown;
  n.reason = "answered; the result is encrypted";
}

// A decrypted response ends the exchange: with its error, or with the
// proposal it chose.
void Analyzer::child_answered(MessageRecord& rec, const Exchange& ex, const dik::Notify* error) {
  if (error != nullptr) {
    fail(rec, ex.neg, *error);
  } else if (ex.chosen) {
    Negotiation& cn = negotiations_[static_cast<std::size_t>(ex.neg)];
    cn.outcome = Outcome::established;
    cn.proposal = dik::proposal_str(*ex.chosen, true);
  }
}

// IKE_AUTH (RFC 7296 1.2): its response establishes the IKE SA or ends it,
// and the CHILD_SA it carries with it.
void Analyzer::track_ike_auth(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response) {
  if (st.ike_neg < 0) st.ike_neg = new_neg(rec, "IKE_SA", 0, st.initiator, st.responder);
  touch(rec, st.ike_neg, response);
  st.last_auth_mid = std::max(st.last_auth_mid, rec.header.message_id);
  const Exchange& ex = child_exchange(rec, pl, st, response, true);
  if (!response) return;
  Negotiation& ike = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  if (!pl.decrypted) {
    if (ike.outcome == Outcome::in_progress) {
      ike.outcome = Outcome::unknown;
      ike.reason = "IKE_AUTH answered; the result is encrypted (give the IKE keys)";
    }
    child_answer_unread(ex);
    return;
  }
  const dik::Notify* e = pl.first_error();
  const bool has_auth = pl.has(dik::pt::v2_auth);
  // Without an AUTH payload an error ends the IKE SA itself.
  if (e != nullptr && (is_auth_failure(true, e->type) || !has_auth)) {
    fail(rec, st.ike_neg, *e);
  } else if (has_auth && ike.outcome != Outcome::failed) {
    ike.outcome = Outcome::established;
    ike.reason.clear();
    st.established = true;
  }
  if (ex.neg < 0) return;
  if (ike.outcome == Outcome::failed) {
    fail_auth_children(st);
  } else {
    child_answered(rec, ex, e);
  }
}

// CREATE_CHILD_SA (RFC 7296 1.3): a new or rekeyed CHILD_SA, or a rekeyed
// IKE SA. That it runs at all shows the IKE SA was up, even when IKE_AUTH's
// result was encrypted.
void Analyzer::track_create_child(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response) {
  const Exchange& ex = child_exchange(rec, pl, st, response, false);
  if (response && !pl.decrypted) {
    child_answer_unread(ex);
  } else if (response && ex.neg >= 0) {
    child_answered(rec, ex, pl.first_error());
  }
  if (st.ike_neg < 0) return;
  Negotiation& ike = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  if (ike.outcome == Outcome::unknown) {
    ike.outcome = Outcome::established;
    ike.reason = "implied by later exchanges on the IKE SA";
  }
}

// A later exchange of its own (a delete, a liveness check): no part of the
// IKE SA's negotiation, though it shows the SA was up. The exception is RFC
// 7296 2.21.2's: an initiator that cannot verify the responder's AUTH says
// so in the INFORMATIONAL that follows IKE_AUTH, and the IKE SA failed
// after all.
void Analyzer::track_v2_informational(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response) {
  const dik::Header& h = rec.header;
  if (st.ike_neg < 0) return;
  Negotiation& ike = negotiations_[static_cast<std::size_t>(st.ike_neg)];
  const dik::Notify* e = pl.first_error();
  if (e != nullptr && is_auth_failure(true, e->type) && !response && h.initiator_v2() && st.last_auth_mid != 0 &&
      h.message_id == st.last_auth_mid + 1) {
    touch(rec, st.ike_neg, true);
    fail(rec, st.ike_neg, *e);
    fail_auth_children(st);
  } else if (ike.outcome == Outcome::unknown && h.message_id > st.last_auth_mid && st.last_auth_mid != 0) {
    ike.outcome = Outcome::established;
    ike.reason = "implied by later exchanges on the IKE SA";
  }
}

void Analyzer::track_v2(MessageRecord& rec, const Payloads& pl, IkeSaState& st) {
  const bool response = rec.header.response_v2();
  switch (rec.header.exchange) {
    case dik::xt::v2_sa_init: track_sa_init(rec, pl, st, response); break;
    case dik::xt::v2_auth: track_ike_auth(rec, pl, st, response); break;
    case dik::xt::v2_create_child: track_create_child(rec, pl, st, response); break;
    case dik::xt::v2_informational: track_v2_informational(rec, pl, st, response); break;
    default: break;
  }
}

void Analyzer::track(MessageRecord& rec, const dik::Chain& outer, const dik::Chain* inner, IkeSaState& st) {
  const dik::Header& h = rec.header;
  const bool v2 = h.v2();
  const Payloads pl(v2, outer, inner);
  for (const auto& n : pl.notifies) {
    // INVALID_IKE_SPI (IKEv2) has INVALID-COOKIE's number (IKEv1).
    if (n.type == notify::invalid_ike_spi) ++stats_.invalid_cookies;
  }
  if (!v2) {
    track_v1(rec, pl, st);
  } else {
    track_v2(rec, pl, st);
  }

  learn_child_sas(rec, st);
}

// What deriving the keys of the SAs an exchange created takes, once
// learn_child_sas has found it all in the capture and the keys.
struct Analyzer::ChildKeying {
  std::string where;  // "Quick Mode 0x... of IKE SA ...": for the notes and the SAs' origin
  bool v2 = false;
  Prf prf{};
  dissect::Bytes sk_d;  // SK_d (IKEv2) or SKEYID_d (IKEv1)
  dissect::Bytes ni;
  dissect::Bytes nr;
  const dik::Proposal* chosen = nullptr;
  const dik::Proposal* offered = nullptr;  // the requester's proposal that was chosen
  dissect::Bytes chosen_spi;               // the exchange's own copies
  dissect::Bytes offered_spi;
  ChildAlgorithms alg;
};

// The ESP or AH keys of the SA an exchange created, once its answer is in
// (RFC 7296 2.17, RFC 2409 5.5). Only with everything they are made of in
// the capture and the keys; a note says what is missing otherwise.
void Analyzer::learn_child_sas(const MessageRecord& rec, IkeSaState& st) {
  if (rec.negotiation < 0) return;
  const dik::Header& h = rec.header;
  auto it = st.exchanges.find(h.message_id);
  if (it == st.exchanges.end()) return;
  Exchange& ex = it->second;
  if (ex.learned || !ex.chosen || ex.offered.empty() || st.key < 0) return;
  const filters::IkeSaConfig& key = keys_[static_cast<std::size_t>(st.key)];
  ChildKeying k;
  k.v2 = h.v2();
  // IKE_AUTH's CHILD_SA is keyed with IKE_SA_INIT's nonces.
  const bool auth = k.v2 && h.exchange == dik::xt::v2_auth;
  k.ni = auth ? st.ni : ex.ni;
  k.nr = auth ? st.nr : ex.nr;
  ex.learned = true;
  k.where = fmt::format("{} 0x{:08x} of IKE SA {:016x}", k.v2 ? dik::exchange_name(h.exchange) : "Quick Mode",
                        h.message_id, h.spi_i);
  if (key.sk_d.empty()) return;  // only the IKE messages were to be decrypted
  if (ex.pfs) {
    notes_.push_back(
        fmt::format("{}: uses PFS (a KE payload); its ESP keys need the Diffie-Hellman secret, "
                    "which no capture holds",
                    k.where));
    return;
  }
  if (ex.ike_rekey || ex.chosen->protocol == 1) {
    notes_.push_back(fmt::format("{}: rekeys the IKE SA; the new IKE keys need its Diffie-Hellman secret", k.where));
    return;
  }
  if (k.ni.empty() || k.nr.empty()) {
    notes_.push_back(fmt::format("{}: the nonces are not in the capture, so its ESP keys cannot be derived", k.where));
    return;
  }
  const std::optional<Prf> prf_alg = key.prf ? key.prf : st.prf;
  if (!prf_alg) {
    notes_.push_back(
        fmt::format("{}: the prf is unknown (no IKE_SA_INIT response or phase 1 SA in the capture; "
                    "give prf: / hash:)",
                    k.where));
    return;
  }
  k.prf = *prf_alg;
  k.sk_d = key.sk_d.bytes();
  k.chosen = &*ex.chosen;
  k.chosen_spi = ex.chosen_spi;
  k.offered = &ex.offered.front();
  k.offered_spi = ex.offered_spis.front();
  for (std::size_t i = 0; i < ex.offered.size(); ++i) {
    if (ex.offered[i].number == k.chosen->number) {
      k.offered = &ex.offered[i];
      k.offered_spi = ex.offered_spis[i];
    }
  }
  if (k.chosen_spi.size() != 4 || k.offered_spi.size() != 4) {
    notes_.push_back(fmt::format("{}: the proposals carry no 4-byte SPIs", k.where));
    return;
  }
  if (k.chosen->protocol != 2 && k.chosen->protocol != 3) {
    notes_.push_back(fmt::format("{}: protocol {} is neither ESP nor AH", k.where, k.chosen->protocol));
    return;
  }
  k.alg = k.v2 ? v2_child_algorithms(*k.chosen, ex.transport_req && ex.transport_resp) : v1_child_algorithms(*k.chosen);
  if (!k.alg.known) {
    notes_.push_back(fmt::format("{}: the chosen algorithm ({}) is not one ipsentry implements", k.where,
                                 dik::proposal_str(*k.chosen, k.v2)));
    return;
  }
  add_learned(rec, ex, k);
}

// The two SAs of the exchange, one per direction: requester → responder on
// the responder's SPI, and back on the requester's. IKEv2 derives one KEYMAT
// for both (RFC 7296 2.17), IKEv1 one per SPI (RFC 2409 5.5).
void Analyzer::add_learned(const MessageRecord& rec, const Exchange& ex, const ChildKeying& k) {
  const ChildAlgorithms& a = k.alg;
  const std::size_t ek = cipher_key_bytes(a.cipher, a.bits);
  const std::size_t ak = filters::integrity_info(a.integ).key_len;
  const std::uint8_t proto = k.chosen->protocol;
  struct Dir {
    dissect::Bytes spi;
    IpAddr src;
    IpAddr dst;
  };
  const Dir dirs[2] = {{k.chosen_spi, ex.requester, ex.peer}, {k.offered_spi, ex.peer, ex.requester}};
  std::optional<ChildKeys> child;
  if (k.v2) {
    try {
      child = derive_child_keys(k.prf, k.sk_d, {}, k.ni, k.nr, ek, ak);
    } catch (const CryptoError&) {
      notes_.push_back(fmt::format("{}: key derivation failed", k.where));
      return;
    }
  }
  Negotiation& cn = negotiations_[static_cast<std::size_t>(ex.neg)];
  for (int d = 0; d < 2; ++d) {
    filters::SecretBytes enc_key;
    filters::SecretBytes auth_key;
    if (k.v2) {
      enc_key = (d == 0 ? child->encr_i : child->encr_r).clone();
      auth_key = (d == 0 ? child->integ_i : child->integ_r).clone();
    } else {
      const filters::SecretBytes mat = v1_keymat(k.prf, k.sk_d, proto, dirs[d].spi, k.ni, k.nr, ek + ak);
      if (mat.size() != ek + ak) {
        notes_.push_back(fmt::format("{}: key derivation failed", k.where));
        return;
      }
      enc_key = mat.first(ek);
      auth_key = mat.from(ek);
    }
    filters::SaConfig sa;
    sa.spi = dissect::load_be32(dirs[d].spi.data());
    sa.protocol = proto == 2 ? filters::IpsecProtocol::ah : filters::IpsecProtocol::esp;
    sa.src = dirs[d].src;
    sa.dst = dirs[d].dst;
    sa.mode = a.mode;
    sa.cipher = proto == 2 ? Cipher::null : a.cipher;
    sa.enc_key = std::move(enc_key);
    sa.integrity = a.integ;
    sa.auth_key = std::move(auth_key);
    sa.esn = a.esn;
    sa.name = fmt::format("ike:{:08x}", *sa.spi);
    sa.origin = filters::Origin{fmt::format("IKE {} (frame {})", k.where, rec.frame), 0, {}};
    std::vector<std::string> warnings;
    try {
      filters::validate_sa(sa, "", warnings);
    } catch (const filters::ConfigError& e) {
      notes_.push_back(fmt::format("{}: derived SA 0x{} is not usable: {}", k.where, spi_hex(dirs[d].spi), e.what()));
      continue;
    }
    cn.child_spis.push_back(
        fmt::format("{} 0x{} → {}", proto == 2 ? "ah" : "esp", spi_hex(dirs[d].spi), sa.dst->str()));
    learned_.push_back(std::move(sa));
  }
}

std::vector<filters::SaConfig> Analyzer::learned_sas() const {
  std::vector<filters::SaConfig> out;
  for (const auto& sa : learned_) out.push_back(sa.clone());
  return out;
}

void Analyzer::finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& n : negotiations_) {
    if (n.outcome == Outcome::in_progress) {
      if (!n.answered) {
        n.outcome = Outcome::no_answer;
        if (n.reason.empty()) n.reason = "the responder never answered";
      } else {
        n.outcome = Outcome::unknown;
        if (n.reason.empty()) n.reason = "the capture ends before the exchange completes";
      }
    }
    const bool phase1 = n.kind == "Main Mode" || n.kind == "Aggressive Mode" || n.kind == "IKE_SA";
    const bool phase2 = n.kind == "Quick Mode" || n.kind == "CHILD_SA";
    if (n.outcome == Outcome::established) {
      if (phase1) ++stats_.main_modes;
      if (phase2) ++stats_.quick_modes;
    }
    if (n.outcome == Outcome::failed && n.failed_with < 0) ++stats_.negotiation_failures;
    if (n.auth_failure && n.failed_with < 0) ++stats_.authentication_failures;
    if (n.outcome == Outcome::no_answer) {
      ++stats_.no_answer;
      if (n.clear_traffic_after) {
        ++stats_.soft_associations;
        n.reason += "; traffic between the peers went in the clear (soft association)";
      }
    }
  }
}

void Analyzer::add_decrypted(std::uint64_t frame, dissect::Tree& tree) const {
  const MessageRecord* r = record(frame);
  if (r == nullptr) return;
  // The IKE message node: the last top-level node (it is the innermost layer).
  if (tree.root.children.empty()) return;
  dissect::Node& msg = tree.root.children.back();
  if (verdict(*r) == MessageVerdict::ike_fail && r->negotiation >= 0) {
    // In the words of the packet list, where the eye goes first.
    std::int32_t i = r->negotiation;
    if (negotiations_[static_cast<std::size_t>(i)].failed_with >= 0)
      i = negotiations_[static_cast<std::size_t>(i)].failed_with;
    const Negotiation& n = negotiations_[static_cast<std::size_t>(i)];
    msg.add_here(fmt::format("Verdict: ike-fail — it ends negotiation {} ({}): {}", i + 1, n.kind, n.reason),
                 msg.offset, 0)
        .role = dissect::NodeRole::verdict_failed;
  }
  if (r->status == DecryptStatus::cleartext) return;
  std::string head = fmt::format("Decryption: {}{}{}", to_string(r->status), r->detail.empty() ? "" : " — ", r->detail);
  // Like an ESP layer's verdict, so a front end can lead the eye to it.
  const dissect::NodeRole role = r->status == DecryptStatus::decrypted ? dissect::NodeRole::verdict_ok
                                 : r->status == DecryptStatus::icv_mismatch || r->status == DecryptStatus::failed
                                     ? dissect::NodeRole::verdict_failed
                                     : dissect::NodeRole::none;
  if (r->status != DecryptStatus::decrypted && r->status != DecryptStatus::icv_mismatch) {
    msg.add_here(head, msg.offset, 0).role = role;
    return;
  }
  const std::uint16_t buf = tree.add_buffer(r->plaintext);
  dissect::Node& n = msg.add(head, 0, static_cast<std::uint32_t>(r->plaintext.size()));
  n.buffer = buf;
  n.role = role;
  dissect::ike::add_chain(r->plaintext, r->first_inner, r->header.v2(), 0, n);
}

}  // namespace ipsentry::ike
