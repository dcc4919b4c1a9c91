// The vocabulary of IKE profiles (config.hpp's IkeProfile): Diffie-Hellman
// groups, proposals written as strongSwan writes them in swanctl.conf (so
// users can copy theirs), and identities.
//
//   ike_profiles:
//     - name: to-gw2
//       version: 2
//       auth: { method: psk, psk_file: gw.psk }      # or method: cert, cert:, key:, ca:
//       local_id: 203.0.113.1
//       remote_id: any
//       peer: 198.51.100.1                          # or any (a responder)
//       proposals: [aes256-sha384-ecp384, aes128gcm16-prfsha256-curve25519]
//       esp_proposals: [aes128gcm16, aes256-sha256-modp2048]
//       lifetime: { ike: 8h, child: 15m, child_bytes: 2G }
//       pfs: ecp256                                 # or none
//       dpd: 30s
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/algorithms.hpp"
#include "ipsentry/filters/secret.hpp"

namespace ipsentry::filters {

/// Diffie-Hellman groups (IKEv2 transform type 4 IDs, RFC 7296 3.3.2,
/// RFC 5903, RFC 8031).
enum class DhGroup : std::uint16_t {
  none = 0,
  modp1024 = 2,  // deprecated (RFC 8247): accepted with a warning
  modp2048 = 14,
  modp3072 = 15,
  ecp256 = 19,
  ecp384 = 20,
  curve25519 = 31,
};
[[nodiscard]] const char* to_string(DhGroup g) noexcept;  // "ecp384"
[[nodiscard]] std::optional<DhGroup> find_dh_group(std::string_view name) noexcept;
[[nodiscard]] std::optional<DhGroup> dh_group_from_id(std::uint16_t id) noexcept;
[[nodiscard]] bool deprecated(DhGroup g) noexcept;

/// A cipher with the key length it is negotiated with (bytes, without the
/// salt: 16, 24, 32 for AES; the IKEv2 Key Length attribute in bits is 8×).
struct KeyedCipher {
  Cipher cipher = Cipher::aes_cbc;
  std::uint16_t key_bytes = 16;
  friend bool operator==(const KeyedCipher&, const KeyedCipher&) = default;
  /// strongSwan's keyword: "aes256", "aes128gcm16", "chacha20poly1305".
  [[nodiscard]] std::string str() const;
};

/// One IKE proposal: every listed algorithm is acceptable (RFC 7296 3.3:
/// one proposal with several transforms of each type).
struct IkeProposal {
  std::vector<KeyedCipher> encryption;
  std::vector<Integrity> integrity;  // empty for AEAD ciphers
  std::vector<Prf> prf;
  std::vector<DhGroup> dh;
  std::string text;  // as written
};

/// One ESP or AH proposal. `dh` is the PFS group(s) for CREATE_CHILD_SA;
/// empty: the profile's `pfs`.
struct ChildProposal {
  IpsecProtocol protocol = IpsecProtocol::esp;
  std::vector<KeyedCipher> encryption;  // ESP only
  std::vector<Integrity> integrity;     // empty with AEAD ciphers
  std::vector<DhGroup> dh;
  std::vector<bool> esn{false};  // ESN transforms offered: "esn", "noesn" (default noesn)
  std::string text;
};

/// Parses one proposal in strongSwan's syntax ("aes256-sha384-ecp384",
/// "aes128gcm16-prfsha256-curve25519"). Returns a sentence naming the
/// keyword it does not know, or the missing part ("no DH group"), on error.
[[nodiscard]] std::optional<std::string> parse_ike_proposal(std::string_view text, IkeProposal& out);
/// "aes128gcm16", "aes256-sha256-modp2048" (PFS group), "sha256" for AH.
[[nodiscard]] std::optional<std::string> parse_child_proposal(std::string_view text, IpsecProtocol protocol,
                                                              ChildProposal& out);

/// The deprecated algorithms a proposal names (RFC 8247 for IKE, RFC 8221
/// for ESP/AH, and SHA-1 everywhere), as the keywords that name them, for
/// the configuration's warnings: "3des", "des", "sha1", "md5", "prfsha1",
/// "prfmd5", "modp1024".
[[nodiscard]] std::vector<std::string> deprecated_algorithms(const IkeProposal& p);
[[nodiscard]] std::vector<std::string> deprecated_algorithms(const ChildProposal& p);
/// The integrity keywords a proposal names beside only AEAD encryption
/// ("sha256" in "aes128gcm16-sha256-ecp256"). strongSwan accepts them and
/// drops them (in an IKE proposal that names no PRF, after taking the PRF
/// from them), and so do the parsers, so that a proposal copied from
/// swanctl.conf means the same; the configuration warns about them.
[[nodiscard]] std::vector<std::string> ignored_integrity(std::string_view text);

/// IKEv2 identification (RFC 7296 3.5).
struct IkeIdentity {
  enum class Kind : std::uint8_t { any, address, fqdn, email, dn, key_id };
  Kind kind = Kind::any;
  dissect::IpAddr address;        // Kind::address
  std::string text;               // fqdn, email, the DN as OpenSSL prints it, key id as hex
  std::vector<std::uint8_t> der;  // Kind::dn: the DER encoding
  /// "203.0.113.1", "gw1.example.org", "C=CH, O=example, CN=gw1".
  [[nodiscard]] std::string str() const;
  /// ID payload type (ID_IPV4_ADDR 1, ID_FQDN 2, ID_RFC822_ADDR 3,
  /// ID_IPV6_ADDR 5, ID_DER_ASN1_DN 9, ID_KEY_ID 11) and its data.
  [[nodiscard]] std::uint8_t id_type() const noexcept;
  [[nodiscard]] std::vector<std::uint8_t> id_data() const;
  /// Whether a received ID payload (type, data) is this identity; `any`
  /// matches every one.
  [[nodiscard]] bool matches(std::uint8_t type, std::span<const std::uint8_t> data) const;
};
/// "any", an address, "@fqdn" or a plain DNS name, "user@example.org"
/// (or strongSwan's "@@user@example.org"), a DN ("C=CH, O=example, CN=gw1",
/// encoded by OpenSSL in the order written), a key ID ("keyid:0a1b..." or
/// "@#0a1b..."). Returns a sentence on error.
[[nodiscard]] std::optional<std::string> parse_identity(std::string_view text, IkeIdentity& out);

}  // namespace ipsentry::filters
