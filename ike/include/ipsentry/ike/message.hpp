// IKEv2 messages as values (RFC 7296 section 3): built by the daemon,
// encoded to bytes and decoded from them. Decoding walks the bytes with
// dissect::ike's bounds-checked parsers (the analyzer's, so both read IKE
// the same way) and opens the SK payload with ike::SkCipher.
//
// Strict where RFC 7296 is: a critical payload of an unknown type, lengths
// that do not add up, an SK payload that is not last, or trailing bytes
// make a message malformed; unknown non-critical payloads are kept as
// `Unknown` and ignored by the daemon.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/ike/crypto.hpp"

namespace ipsentry::ike::v2 {

// Notify message types the daemon sends or acts on (RFC 7296 3.10.1 and
// the IKEv2 registry).
namespace notify {
inline constexpr std::uint16_t unsupported_critical_payload = 1;
inline constexpr std::uint16_t invalid_ike_spi = 4;
inline constexpr std::uint16_t invalid_major_version = 5;
inline constexpr std::uint16_t invalid_syntax = 7;
inline constexpr std::uint16_t invalid_message_id = 9;
inline constexpr std::uint16_t invalid_spi = 11;
inline constexpr std::uint16_t no_proposal_chosen = 14;
inline constexpr std::uint16_t invalid_ke_payload = 17;
inline constexpr std::uint16_t authentication_failed = 24;
inline constexpr std::uint16_t single_pair_required = 34;
inline constexpr std::uint16_t no_additional_sas = 35;
inline constexpr std::uint16_t internal_address_failure = 36;
inline constexpr std::uint16_t failed_cp_required = 37;
inline constexpr std::uint16_t ts_unacceptable = 38;
inline constexpr std::uint16_t invalid_selectors = 39;
inline constexpr std::uint16_t temporary_failure = 43;
inline constexpr std::uint16_t child_sa_not_found = 44;
inline constexpr std::uint16_t initial_contact = 16384;
inline constexpr std::uint16_t set_window_size = 16385;
inline constexpr std::uint16_t additional_ts_possible = 16386;
inline constexpr std::uint16_t ipcomp_supported = 16387;
inline constexpr std::uint16_t nat_detection_source_ip = 16388;
inline constexpr std::uint16_t nat_detection_destination_ip = 16389;
inline constexpr std::uint16_t cookie = 16390;
inline constexpr std::uint16_t use_transport_mode = 16391;
inline constexpr std::uint16_t http_cert_lookup_supported = 16392;
inline constexpr std::uint16_t rekey_sa = 16393;
inline constexpr std::uint16_t esp_tfc_padding_not_supported = 16394;
inline constexpr std::uint16_t non_first_fragments_also = 16395;
inline constexpr std::uint16_t mobike_supported = 16396;
inline constexpr std::uint16_t fragmentation_supported = 16430;
inline constexpr std::uint16_t signature_hash_algorithms = 16431;
}  // namespace notify

/// Protocol IDs (RFC 7296 3.3.1).
enum class ProtocolId : std::uint8_t { ike = 1, ah = 2, esp = 3 };

struct Transform {
  std::uint8_t type = 0;  // 1 ENCR, 2 PRF, 3 INTEG, 4 DH, 5 ESN
  std::uint16_t id = 0;
  std::optional<std::uint16_t> key_bits;  // Key Length attribute (ENCR)
  friend bool operator==(const Transform&, const Transform&) = default;
};

struct Proposal {
  std::uint8_t number = 1;
  ProtocolId protocol = ProtocolId::ike;
  Buffer spi;  // empty in IKE_SA_INIT; 8 bytes for IKE rekeying; 4 for ESP/AH
  std::vector<Transform> transforms;
  friend bool operator==(const Proposal&, const Proposal&) = default;
};

struct SaPayload {
  std::vector<Proposal> proposals;
  friend bool operator==(const SaPayload&, const SaPayload&) = default;
};
struct KePayload {
  std::uint16_t group = 0;
  Buffer data;
  friend bool operator==(const KePayload&, const KePayload&) = default;
};
struct IdPayload {
  std::uint8_t id_type = 0;
  Buffer data;
  /// ID type, 3 reserved bytes and data: what prf(SK_p, ...) covers (2.15).
  [[nodiscard]] Buffer body() const;
  friend bool operator==(const IdPayload&, const IdPayload&) = default;
};
struct CertPayload {
  std::uint8_t encoding = 4;  // X.509 certificate - signature
  Buffer data;
  friend bool operator==(const CertPayload&, const CertPayload&) = default;
};
struct CertReqPayload {
  std::uint8_t encoding = 4;
  Buffer data;  // concatenated SHA-1 key IDs of trusted anchors
  friend bool operator==(const CertReqPayload&, const CertReqPayload&) = default;
};
struct AuthPayload {
  AuthMethod method = AuthMethod::psk;
  Buffer data;
  friend bool operator==(const AuthPayload&, const AuthPayload&) = default;
};
struct NoncePayload {
  Buffer data;  // 16 to 256 bytes (RFC 7296 3.9)
  friend bool operator==(const NoncePayload&, const NoncePayload&) = default;
};
struct NotifyPayload {
  ProtocolId protocol = ProtocolId::ike;  // or 0 encoded as ike with empty spi
  std::uint8_t raw_protocol = 0;          // as received
  Buffer spi;
  std::uint16_t type = 0;
  Buffer data;
  [[nodiscard]] bool error() const noexcept { return type < 16384; }
  friend bool operator==(const NotifyPayload&, const NotifyPayload&) = default;
};
struct DeletePayload {
  ProtocolId protocol = ProtocolId::esp;
  std::vector<std::uint32_t> spis;  // ESP/AH: 4-byte SPIs; empty with protocol ike
  friend bool operator==(const DeletePayload&, const DeletePayload&) = default;
};
struct VendorPayload {
  Buffer data;
  friend bool operator==(const VendorPayload&, const VendorPayload&) = default;
};
struct TrafficSelector {
  std::uint8_t ip_protocol = 0;  // 0: any
  std::uint16_t start_port = 0;
  std::uint16_t end_port = 65535;
  dissect::IpAddr start;  // TS_IPV4_ADDR_RANGE (7) or TS_IPV6_ADDR_RANGE (8) by family
  dissect::IpAddr end;
  friend bool operator==(const TrafficSelector&, const TrafficSelector&) = default;
  [[nodiscard]] std::string str() const;  // "192.0.2.0/24[udp/500]", ranges when not a prefix
};
struct TsPayload {
  std::vector<TrafficSelector> selectors;
  friend bool operator==(const TsPayload&, const TsPayload&) = default;
};
struct UnknownPayload {
  std::uint8_t type = 0;
  bool critical = false;
  Buffer body;
  friend bool operator==(const UnknownPayload&, const UnknownPayload&) = default;
};

using Payload = std::variant<SaPayload, KePayload, IdPayload /*IDi*/, CertPayload, CertReqPayload, AuthPayload,
                             NoncePayload, NotifyPayload, DeletePayload, VendorPayload, TsPayload, UnknownPayload>;

/// A payload with the type it is sent as (IDi and IDr share IdPayload, TSi
/// and TSr share TsPayload).
struct TypedPayload {
  std::uint8_t type = 0;  // dissect::ike::pt
  Payload body;
  friend bool operator==(const TypedPayload&, const TypedPayload&) = default;
};

/// Values compare member by member (tests, the fuzz target's round trip);
/// AUTH data and other secrets are compared in constant time by whoever
/// checks them, never with these.
struct Message {
  std::uint64_t spi_i = 0;
  std::uint64_t spi_r = 0;
  std::uint8_t exchange = 0;  // dissect::ike::xt
  bool initiator = false;     // I flag: sent by the original initiator of the IKE SA
  bool response = false;      // R flag
  std::uint32_t message_id = 0;
  /// Cleartext payloads; with `encrypted`, the payloads inside SK.
  std::vector<TypedPayload> payloads;
  bool encrypted = false;

  template <class T>
  [[nodiscard]] const T* find(std::uint8_t type) const noexcept {
    for (const auto& p : payloads) {
      if (p.type == type) return std::get_if<T>(&p.body);
    }
    return nullptr;
  }
  [[nodiscard]] const NotifyPayload* notify(std::uint16_t type) const noexcept;
  /// The first error Notify (type < 16384), if any.
  [[nodiscard]] const NotifyPayload* error_notify() const noexcept;
  /// "IKE_AUTH request 1 [ IDi AUTH SA TSi TSr N(USE_TRANSPORT_MODE) ]"
  [[nodiscard]] std::string summary() const;
  friend bool operator==(const Message&, const Message&) = default;
};

/// Encodes a message. With `sk` (required when `encrypted`), the payloads go
/// inside an SK payload sealed with it. Throws CryptoError only on an
/// OpenSSL failure; a Message the daemon builds always encodes.
[[nodiscard]] Buffer encode(const Message& m, const SkCipher* sk, Random& random);

enum class DecodeStatus : std::uint8_t {
  ok,
  malformed,              // header, lengths or a payload body do not parse
  unsupported_critical,   // a critical payload of an unknown type (answer UNSUPPORTED_CRITICAL_PAYLOAD)
  integrity_failed,       // the SK payload does not authenticate
  no_keys,                // encrypted, and `sk` is null
};

/// The header alone, for routing a message to its IKE SA before any key is
/// known. nullopt on a malformed or non-IKEv2 header (with the reason).
[[nodiscard]] std::optional<Message> decode_header(Bytes bytes, std::string& why);

/// Decodes a whole message; `sk` opens its SK payload (the peer's
/// direction). On anything but ok, `why` says what was wrong and `out`
/// holds at least the header.
[[nodiscard]] DecodeStatus decode(Bytes bytes, const SkCipher* sk, Message& out, std::string& why);

// ---- IKE fragmentation (RFC 7383) ------------------------------------------

/// Whether `bytes` (a whole IKEv2 message) is an Encrypted Fragment message:
/// its first payload is SKF (53).
[[nodiscard]] bool is_fragment(Bytes bytes) noexcept;

/// Encodes an encrypted message as it goes on the wire: one SK message when
/// it fits in `max_message` bytes (the IKE message, without IP, UDP or
/// non-ESP marker), else Encrypted Fragment messages of at most that size,
/// each sealed with its own IV and ICV, the first payload's type in
/// fragment 1 only (RFC 7383 2.5). Throws std::length_error when
/// `max_message` leaves no room for data or the message needs more than
/// FragmentSet::kMaxFragments fragments.
[[nodiscard]] std::vector<Buffer> encode_fragments(const Message& m, const SkCipher& sk, Random& random,
                                                   std::size_t max_message);

/// One authenticated fragment's contents.
struct Fragment {
  std::uint16_t number = 0;
  std::uint16_t total = 0;
  std::uint8_t first_payload = 0;  // Next Payload of the SKF payload: meaningful in fragment 1 only
  Buffer plain;                    // its part of the inner payload chain
};

/// Decodes one Encrypted Fragment message: the header into `header`, the
/// opened fragment into `out`. The ICV is checked before anything is
/// returned (RFC 7383 2.6). SKF must be the only payload; Fragment Number
/// must be 1..Total.
[[nodiscard]] DecodeStatus decode_fragment(Bytes bytes, const SkCipher* sk, Message& header, Fragment& out,
                                           std::string& why);

/// Decodes a reassembled inner payload chain into `out`, which already
/// holds the header (decode_fragment's). As decode() does for SK's contents.
[[nodiscard]] DecodeStatus decode_reassembled(Bytes plain, std::uint8_t first_payload, Message& out, std::string& why);

/// The fragments of one message being collected (RFC 7383 2.6), bounded
/// in count and size. Used by the daemon (authenticated fragments only)
/// and by the analyzer.
class FragmentSet {
 public:
  static constexpr std::uint16_t kMaxFragments = 32;
  static constexpr std::size_t kMaxBytes = 64 * 1024;  // of plaintext, all fragments together

  enum class Added : std::uint8_t {
    kept,          // stored, more to come
    complete,      // every fragment is here: take() the message
    duplicate,     // this fragment number is already stored: ignored
    inconsistent,  // a smaller Total Fragments than the stored ones: ignored
    too_many,      // Total Fragments above kMaxFragments: ignored
    too_big,       // the fragments together exceed kMaxBytes: all dropped
  };

  /// Adds fragment `f` of message ID `mid`. A fragment of another message
  /// ID, or with a larger Total Fragments (the sender re-fragmented it
  /// smaller, RFC 7383 2.6), starts the collection anew.
  Added add(std::uint32_t mid, Fragment f);
  /// The reassembled inner chain and its first payload type; clears the set.
  [[nodiscard]] Buffer take(std::uint8_t& first_payload);
  void clear() noexcept;
  [[nodiscard]] bool empty() const noexcept { return parts_.empty(); }
  [[nodiscard]] std::uint32_t message_id() const noexcept { return mid_; }

  FragmentSet() = default;
  ~FragmentSet() { clear(); }
  FragmentSet(const FragmentSet&) = delete;
  FragmentSet& operator=(const FragmentSet&) = delete;
  FragmentSet(FragmentSet&&) noexcept = default;
  FragmentSet& operator=(FragmentSet&&) noexcept = default;

 private:
  std::uint32_t mid_ = 0;
  std::uint16_t total_ = 0;
  std::uint8_t first_ = 0;
  std::size_t bytes_ = 0;
  std::vector<std::pair<std::uint16_t, Buffer>> parts_;  // sorted by number
};

}  // namespace ipsentry::ike::v2
