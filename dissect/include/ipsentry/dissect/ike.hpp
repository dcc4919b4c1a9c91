// ISAKMP / IKEv1 (RFC 2408, 2409, 2407, 3947) and IKEv2 (RFC 7296, 7383)
// messages: header, payload chain, SA proposals, and the names of every
// registered value.
//
// The parsers are bounds-checked views over the message bytes; a payload
// whose length does not fit stops the walk with a reason instead of reading
// past the end. Decryption is not done here (see the ike/ module): encrypted
// parts are handed back as spans, and their decrypted bytes can be fed to
// the same payload walker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::dissect::ike {

inline constexpr std::size_t kHeaderLen = 28;

// Header flags.
inline constexpr std::uint8_t kV1Encrypted = 0x01;
inline constexpr std::uint8_t kV1Commit = 0x02;
inline constexpr std::uint8_t kV1AuthOnly = 0x04;
inline constexpr std::uint8_t kV2Initiator = 0x08;
inline constexpr std::uint8_t kV2Version = 0x10;
inline constexpr std::uint8_t kV2Response = 0x20;

// Payload types used by the analyzer.
namespace pt {
inline constexpr std::uint8_t none = 0;
inline constexpr std::uint8_t v1_sa = 1;
inline constexpr std::uint8_t v1_proposal = 2;
inline constexpr std::uint8_t v1_transform = 3;
inline constexpr std::uint8_t v1_ke = 4;
inline constexpr std::uint8_t v1_id = 5;
inline constexpr std::uint8_t v1_cert = 6;
inline constexpr std::uint8_t v1_cr = 7;
inline constexpr std::uint8_t v1_hash = 8;
inline constexpr std::uint8_t v1_sig = 9;
inline constexpr std::uint8_t v1_nonce = 10;
inline constexpr std::uint8_t v1_notify = 11;
inline constexpr std::uint8_t v1_delete = 12;
inline constexpr std::uint8_t v1_vid = 13;
inline constexpr std::uint8_t v1_attr = 14;
inline constexpr std::uint8_t v1_nat_d = 20;
inline constexpr std::uint8_t v1_nat_oa = 21;
inline constexpr std::uint8_t v1_nat_d_draft = 130;
inline constexpr std::uint8_t v1_nat_oa_draft = 131;
inline constexpr std::uint8_t v1_frag = 132;
inline constexpr std::uint8_t v2_sa = 33;
inline constexpr std::uint8_t v2_ke = 34;
inline constexpr std::uint8_t v2_idi = 35;
inline constexpr std::uint8_t v2_idr = 36;
inline constexpr std::uint8_t v2_cert = 37;
inline constexpr std::uint8_t v2_certreq = 38;
inline constexpr std::uint8_t v2_auth = 39;
inline constexpr std::uint8_t v2_nonce = 40;
inline constexpr std::uint8_t v2_notify = 41;
inline constexpr std::uint8_t v2_delete = 42;
inline constexpr std::uint8_t v2_vid = 43;
inline constexpr std::uint8_t v2_tsi = 44;
inline constexpr std::uint8_t v2_tsr = 45;
inline constexpr std::uint8_t v2_sk = 46;
inline constexpr std::uint8_t v2_cp = 47;
inline constexpr std::uint8_t v2_eap = 48;
inline constexpr std::uint8_t v2_skf = 53;
}  // namespace pt

// Exchange types.
namespace xt {
inline constexpr std::uint8_t v1_base = 1;
inline constexpr std::uint8_t v1_main = 2;
inline constexpr std::uint8_t v1_auth_only = 3;
inline constexpr std::uint8_t v1_aggressive = 4;
inline constexpr std::uint8_t v1_informational = 5;
inline constexpr std::uint8_t v1_transaction = 6;
inline constexpr std::uint8_t v1_quick = 32;
inline constexpr std::uint8_t v1_new_group = 33;
inline constexpr std::uint8_t v2_sa_init = 34;
inline constexpr std::uint8_t v2_auth = 35;
inline constexpr std::uint8_t v2_create_child = 36;
inline constexpr std::uint8_t v2_informational = 37;
}  // namespace xt

struct Header {
  std::uint64_t spi_i = 0;  // IKEv1: initiator cookie
  std::uint64_t spi_r = 0;  // IKEv1: responder cookie
  std::uint8_t next_payload = 0;
  std::uint8_t major = 0;
  std::uint8_t minor = 0;
  std::uint8_t exchange = 0;
  std::uint8_t flags = 0;
  std::uint32_t message_id = 0;
  std::uint32_t length = 0;

  [[nodiscard]] bool v2() const noexcept { return major == 2; }
  [[nodiscard]] bool encrypted_v1() const noexcept { return major == 1 && (flags & kV1Encrypted) != 0; }
  [[nodiscard]] bool initiator_v2() const noexcept { return (flags & kV2Initiator) != 0; }
  [[nodiscard]] bool response_v2() const noexcept { return (flags & kV2Response) != 0; }
};

/// Parses the fixed header. Returns a reason when the bytes are not an
/// ISAKMP message (too short, unknown major version, length shorter than
/// the header); the length may exceed the captured bytes (truncation).
[[nodiscard]] const char* parse_header(Bytes msg, Header& out) noexcept;

struct Payload {
  std::uint8_t type = 0;
  std::uint8_t next = 0;
  bool critical = false;     // IKEv2 C bit
  std::uint32_t offset = 0;  // of the generic header, from the start of the chain
  Bytes body;                // after the 4-byte generic header
};

/// Walks a payload chain that starts with a payload of type `first`.
/// Returns the payloads in order; `error` is set when the chain stops on a
/// length that does not fit or loops. IKEv2 SK / SKF end the chain: their
/// `next` names the first payload inside the encrypted data.
struct Chain {
  std::vector<Payload> payloads;
  const char* error = nullptr;
};
[[nodiscard]] Chain walk(Bytes chain, std::uint8_t first);

struct Attribute {
  std::uint16_t type = 0;  // without the AF bit
  bool tv = false;         // basic (type/value) format
  std::uint32_t value = 0;  // TV value, or a variable value of up to 4 bytes
  Bytes data;               // variable value
};

struct Transform {
  std::uint8_t number = 0;  // IKEv1 transform number
  std::uint8_t type = 0;    // IKEv2 transform type; IKEv1: 0
  std::uint16_t id = 0;
  std::vector<Attribute> attributes;
  [[nodiscard]] std::optional<std::uint32_t> attribute(std::uint16_t type) const noexcept;
};

struct Proposal {
  std::uint8_t number = 0;
  std::uint8_t protocol = 0;  // 1 ISAKMP/IKE, 2 AH, 3 ESP, 4 IPCOMP
  Bytes spi;
  std::vector<Transform> transforms;
};

struct SaPayload {
  std::uint32_t doi = 0;        // IKEv1
  std::uint32_t situation = 0;  // IKEv1
  std::vector<Proposal> proposals;
  const char* error = nullptr;
};

/// With `strict` (IKEv2 only), what RFC 7296 3.3 requires is checked as
/// well, for a peer's message that must be refused rather than shown:
/// the last-substructure markers (0/2 for proposals, 0/3 for transforms),
/// the transform count, no bytes left over in a proposal, a transform or
/// after the last proposal, and Key Length as the only transform attribute
/// (TV, once). A lenient parse, for display, only stops on lengths that do
/// not fit.
[[nodiscard]] SaPayload parse_sa(Bytes body, bool v2, bool strict = false);

struct Notify {
  std::uint8_t protocol = 0;
  std::uint16_t type = 0;
  Bytes spi;
  Bytes data;
};
[[nodiscard]] std::optional<Notify> parse_notify(Bytes body, bool v2) noexcept;

struct TrafficSelector {
  std::uint8_t type = 0;
  std::uint8_t protocol = 0;
  std::uint16_t start_port = 0;
  std::uint16_t end_port = 0;
  Bytes start;
  Bytes end;
  [[nodiscard]] std::string str() const;
};
/// With `strict`, only TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE of their
/// exact lengths (16, 40), and no bytes after the last selector.
[[nodiscard]] std::optional<std::vector<TrafficSelector>> parse_ts(Bytes body, bool strict = false);

// Names of registered values; nullptr (or a "type N" fallback in the *_str
// forms) when unknown.
[[nodiscard]] const char* payload_name(std::uint8_t type) noexcept;
[[nodiscard]] const char* payload_abbrev(std::uint8_t type) noexcept;  // "SA", "KE", "N", ...
[[nodiscard]] const char* exchange_name(std::uint8_t type) noexcept;
[[nodiscard]] const char* v1_notify_name(std::uint16_t type) noexcept;
[[nodiscard]] const char* v2_notify_name(std::uint16_t type) noexcept;
[[nodiscard]] const char* v2_transform_type_name(std::uint8_t type) noexcept;
[[nodiscard]] const char* v2_transform_id_name(std::uint8_t type, std::uint16_t id) noexcept;
[[nodiscard]] const char* v1_attribute_name(bool phase2, std::uint16_t type) noexcept;
[[nodiscard]] const char* v1_attribute_value_name(bool phase2, std::uint16_t type, std::uint32_t value) noexcept;
[[nodiscard]] const char* v1_transform_id_name(std::uint8_t protocol, std::uint16_t id) noexcept;
[[nodiscard]] const char* id_type_name(bool v2, std::uint8_t type) noexcept;
[[nodiscard]] const char* protocol_id_name(std::uint8_t id) noexcept;
[[nodiscard]] const char* v2_auth_method_name(std::uint8_t m) noexcept;
[[nodiscard]] const char* cert_encoding_name(std::uint8_t e) noexcept;
[[nodiscard]] const char* dh_group_name(std::uint16_t g) noexcept;
/// A well-known vendor ID ("RFC 3947 NAT-T", "Windows Server 2003", ...).
[[nodiscard]] std::optional<std::string> vendor_id_name(Bytes vid);

/// "Notify NO_PROPOSAL_CHOSEN" style, always printable.
[[nodiscard]] std::string notify_str(bool v2, std::uint16_t type);
/// One IKEv2 transform as text: "ENCR_AES_CBC-128", "PRF_HMAC_SHA2_256".
[[nodiscard]] std::string v2_transform_str(const Transform& t);
/// A proposal as text: IKEv2 "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
/// IKEv1 phase 1 "3DES-CBC/MD5/pre-shared key/MODP1024", phase 2 "ESP AES-CBC-128/HMAC-SHA tunnel".
[[nodiscard]] std::string proposal_str(const Proposal& p, bool v2);
/// The text of an identification payload's data ("192.0.2.1", "west", "CN=...").
[[nodiscard]] std::string id_str(bool v2, std::uint8_t type, Bytes data);

/// Payload-type abbreviations of a chain: "SA KE No N(NAT_DETECTION_SOURCE_IP)".
[[nodiscard]] std::string chain_summary(const Chain& chain, bool v2);

/// Adds the IKE message (header and payloads) under `parent`. `base` is the
/// offset of the message in the node's buffer. Encrypted parts appear as
/// one node each; decrypted payloads are added by add_chain.
void add_message(Bytes msg, std::uint32_t base, Node& parent);
/// Adds the payloads of a chain (for example decrypted ones) under
/// `parent`; offsets are `base` plus the payload offsets in `chain`.
void add_chain(Bytes chain, std::uint8_t first, bool v2, std::uint32_t base, Node& parent);

}  // namespace ipsentry::dissect::ike
