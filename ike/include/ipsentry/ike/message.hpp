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

}  // namespace ipsentry::ike::v2
