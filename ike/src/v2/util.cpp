// Small helpers of the IKEv2 daemon: randomness, constant-time compares,
// notify names, identities.
#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

std::string Endpoint::str() const {
  if (addr.is_v6()) return fmt::format("[{}]:{}", addr.str(), port);
  return fmt::format("{}:{}", addr.str(), port);
}

const char* to_string(EventKind k) noexcept {
  switch (k) {
    case EventKind::ike_established: return "ike-established";
    case EventKind::ike_failed: return "ike-failed";
    case EventKind::ike_rekeyed: return "ike-rekeyed";
    case EventKind::ike_deleted: return "ike-deleted";
    case EventKind::child_established: return "child-established";
    case EventKind::child_rekeyed: return "child-rekeyed";
    case EventKind::child_deleted: return "child-deleted";
    case EventKind::auth_failed: return "auth-failed";
    case EventKind::dpd_timeout: return "dpd-timeout";
    case EventKind::retransmit: return "retransmit";
    case EventKind::invalid_message: return "invalid-message";
    case EventKind::cookies: return "cookies";
    case EventKind::half_open_limit: return "half-open-limit";
    case EventKind::soft_association: return "soft-association";
    case EventKind::peer_moved: return "peer-moved";
    case EventKind::count_: break;
  }
  return "?";
}

namespace detail {

const char* to_string(SaState s) noexcept {
  switch (s) {
    case SaState::init_sent:
    case SaState::auth_sent:
    case SaState::half_open: return "connecting";
    case SaState::established: return "established";
    case SaState::rekeyed:
    case SaState::deleting: return "deleting";
  }
  return "?";
}

const char* work_name(const Work& w) noexcept {
  struct V {
    const char* operator()(const InitWork&) const { return "IKE_SA_INIT"; }
    const char* operator()(const AuthWork&) const { return "IKE_AUTH"; }
    const char* operator()(const ChildRequest& r) const { return r.rekeys ? "CHILD_SA rekey" : "CREATE_CHILD_SA"; }
    const char* operator()(const IkeRekeyWork&) const { return "IKE SA rekey"; }
    const char* operator()(const DeleteChildWork&) const { return "CHILD_SA delete"; }
    const char* operator()(const DeleteIkeWork&) const { return "IKE SA delete"; }
    const char* operator()(const DpdWork&) const { return "DPD"; }
    const char* operator()(const NotifyWork&) const { return "INFORMATIONAL"; }
  };
  return std::visit(V{}, w);
}

Buffer random_bytes(Random& r, std::size_t n) {
  Buffer b(n);
  r.fill(b);
  return b;
}

std::uint64_t random_u64(Random& r) {
  std::uint8_t b[8];
  r.fill(b);
  std::uint64_t v = 0;
  for (auto x : b) v = (v << 8) | x;
  filters::cleanse(b, sizeof b);
  return v;
}

std::uint32_t random_u32(Random& r) { return static_cast<std::uint32_t>(random_u64(r) >> 32); }

TimeNs jittered(Random& r, std::uint64_t seconds) {
  // 10 % plus up to another 10 %, in thousandths.
  const auto permille = 100 + random_u32(r) % 101;
  const auto ns = static_cast<TimeNs>(seconds) * kSecond;
  return ns - ns / 1000 * static_cast<TimeNs>(permille);
}

bool equal_const(Bytes a, Bytes b) noexcept {
  return a.size() == b.size() && (a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

Buffer sha256(Bytes data) { return hash(filters::Prf::hmac_sha256, {data}); }

TypedPayload notify_payload(std::uint16_t type, Bytes data) {
  NotifyPayload n;
  n.type = type;
  n.data.assign(data.begin(), data.end());
  return {dissect::ike::pt::v2_notify, std::move(n)};
}

const char* notify_name(std::uint16_t type) noexcept {
  switch (type) {
    case notify::unsupported_critical_payload: return "UNSUPPORTED_CRITICAL_PAYLOAD";
    case notify::invalid_ike_spi: return "INVALID_IKE_SPI";
    case notify::invalid_major_version: return "INVALID_MAJOR_VERSION";
    case notify::invalid_syntax: return "INVALID_SYNTAX";
    case notify::invalid_message_id: return "INVALID_MESSAGE_ID";
    case notify::invalid_spi: return "INVALID_SPI";
    case notify::no_proposal_chosen: return "NO_PROPOSAL_CHOSEN";
    case notify::invalid_ke_payload: return "INVALID_KE_PAYLOAD";
    case notify::authentication_failed: return "AUTHENTICATION_FAILED";
    case notify::single_pair_required: return "SINGLE_PAIR_REQUIRED";
    case notify::no_additional_sas: return "NO_ADDITIONAL_SAS";
    case notify::internal_address_failure: return "INTERNAL_ADDRESS_FAILURE";
    case notify::failed_cp_required: return "FAILED_CP_REQUIRED";
    case notify::ts_unacceptable: return "TS_UNACCEPTABLE";
    case notify::invalid_selectors: return "INVALID_SELECTORS";
    case notify::temporary_failure: return "TEMPORARY_FAILURE";
    case notify::child_sa_not_found: return "CHILD_SA_NOT_FOUND";
    case notify::cookie: return "COOKIE";
    default: break;
  }
  return type < 16384 ? "error notify" : "status notify";
}

std::string hex_spi(std::uint64_t spi) { return fmt::format("{:016x}", spi); }

IdPayload our_identity(const Profile& p, const dissect::IpAddr& local) {
  IdPayload id;
  if (p.cfg.local_id.kind != filters::IkeIdentity::Kind::any) {
    id.id_type = p.cfg.local_id.id_type();
    id.data = p.cfg.local_id.id_data();
  } else if (p.cert()) {
    id.id_type = 9;  // ID_DER_ASN1_DN
    id.data = p.signer->certificate().subject_der();
  } else {
    id.id_type = local.is_v6() ? 5 : 1;  // ID_IPV6_ADDR, ID_IPV4_ADDR
    id.data.assign(local.data(), local.data() + local.size());
  }
  return id;
}

std::string identity_text(const IdPayload& id) {
  switch (id.id_type) {
    case 1:
      if (id.data.size() == 4) return dissect::IpAddr::v4(id.data.data()).str();
      break;
    case 5:
      if (id.data.size() == 16) return dissect::IpAddr::v6(id.data.data()).str();
      break;
    case 2:
    case 3: {
      std::string s;
      for (auto c : id.data) s += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
      return s;
    }
    default: break;
  }
  std::string s = fmt::format("id-type-{}:", id.id_type);
  for (auto c : id.data) s += fmt::format("{:02x}", c);
  return s;
}

bool lower_nonce(Bytes a, Bytes b) noexcept {
  const std::size_t n = std::min(a.size(), b.size());
  const int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  return c < 0 || (c == 0 && a.size() < b.size());
}

Buffer min_nonce(Bytes a, Bytes b) {
  Bytes m = lower_nonce(a, b) ? a : b;
  return Buffer(m.begin(), m.end());
}

}  // namespace detail
}  // namespace ipsentry::ike::v2
