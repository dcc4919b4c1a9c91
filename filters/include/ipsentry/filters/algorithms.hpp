// The ESP/AH algorithms ipsentry knows: names, key lengths and sizes.
//
// This table is the single source of truth for configuration validation,
// importers and the transforms in ipsec/. Lengths are in bytes; a key length
// includes the salt or nonce that RFC 3686/4106/4309/4543/7634 append to the
// cipher key ("key || salt").
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ipsentry::filters {

/// The IPsec protocol of an SA, by its IP protocol number.
enum class IpsecProtocol : std::uint8_t { esp = 50, ah = 51 };
[[nodiscard]] const char* to_string(IpsecProtocol p) noexcept;

enum class Cipher : std::uint8_t {
  null,
  des_cbc,
  tdes_cbc,
  aes_cbc,
  aes_ctr,
  aes_gcm_8,
  aes_gcm_12,
  aes_gcm_16,
  aes_ccm_8,
  aes_ccm_12,
  aes_ccm_16,
  aes_gmac,
  chacha20_poly1305,
  aes_gcm_16_iiv,
  aes_ccm_8_iiv,
  chacha20_poly1305_iiv,
  // Known so that old configurations and captures are reported clearly, but
  // obsolete and not implemented.
  blowfish_cbc,
  twofish_cbc,
  cast_cbc,
};

enum class Integrity : std::uint8_t {
  none,
  hmac_md5_96,
  hmac_sha1_96,
  hmac_sha256_128,
  hmac_sha384_192,
  hmac_sha512_256,
  aes_xcbc_96,
  // Pre-RFC 4868 HMAC-SHA-256 truncated to 96 bits: what Linux uses for
  // "auth hmac(sha256)" without auth-trunc, so it appears in xfrm states.
  hmac_sha256_96,
  // The ICV length is known but the key is not (tcpdump -E secrets, Wireshark
  // "ANY n bit authentication"): the ICV is skipped, never checked.
  unchecked_64,
  unchecked_96,
  unchecked_128,
  unchecked_192,
  unchecked_256,
  hmac_ripemd160_96,  // known, not implemented
  hmac_sha1_160,      // IKEv2 AUTH_HMAC_SHA1_160 (RFC 4595): full-length HMAC-SHA-1
};

enum class CipherMode : std::uint8_t { none, cbc, ctr, gcm, ccm, gmac, chacha20_poly1305 };

struct CipherInfo {
  Cipher id;
  std::string_view name;          // the configuration name
  std::string_view rfc;
  CipherMode mode;
  std::uint8_t key_sizes[3];      // allowed key lengths incl. salt; 0 = unused slot
  std::uint8_t salt_len;          // bytes of salt / nonce at the end of the key
  std::uint8_t iv_len;            // explicit IV carried in each packet
  std::uint8_t block_size;        // payload alignment before padding (>= 4 for ESP)
  std::uint8_t icv_len;           // tag length of combined-mode algorithms; 0 otherwise
  bool implicit_iv;               // RFC 8750: the IV is the sequence number
  bool deprecated;                // RFC 8221 says MUST NOT / SHOULD NOT
  bool supported;                 // implemented by ipsentry
  std::uint16_t ikev2_id;         // IKEv2 transform ID (ENCR_*)
  [[nodiscard]] bool aead() const noexcept { return icv_len != 0; }
  [[nodiscard]] bool confidential() const noexcept {
    return mode != CipherMode::none && mode != CipherMode::gmac;
  }
};

struct IntegrityInfo {
  Integrity id;
  std::string_view name;
  std::string_view rfc;
  std::uint8_t icv_len;
  std::uint8_t key_len;           // the length the RFC specifies
  bool any_key_len;               // HMAC-MD5/SHA-1: other lengths are accepted with a warning
  bool deprecated;
  std::uint16_t ikev2_id;         // IKEv2 transform ID (AUTH_*)
  bool checks = true;             // false for the unchecked-* placeholders
  bool supported = true;
};

[[nodiscard]] const CipherInfo& cipher_info(Cipher c) noexcept;
[[nodiscard]] const IntegrityInfo& integrity_info(Integrity i) noexcept;
[[nodiscard]] std::span<const CipherInfo> all_ciphers() noexcept;
[[nodiscard]] std::span<const IntegrityInfo> all_integrity() noexcept;

/// IKE pseudo-random functions (RFC 7296 section 3.3.2), also the IKEv1
/// hash algorithms whose HMAC is the IKEv1 prf (RFC 2409 section 5).
enum class Prf : std::uint8_t { hmac_md5, hmac_sha1, hmac_sha256, hmac_sha384, hmac_sha512 };
/// Accepts "sha1", "hmac-sha1", "prf-hmac-sha2-256", "sha256", "md5", ...
[[nodiscard]] std::optional<Prf> find_prf(std::string_view name) noexcept;
[[nodiscard]] const char* to_string(Prf p) noexcept;
/// Output length of the prf's hash in bytes.
[[nodiscard]] std::size_t prf_len(Prf p) noexcept;
/// From the IKEv2 transform ID (PRF_*) and the IKEv1 hash attribute.
[[nodiscard]] std::optional<Prf> prf_from_ikev2(std::uint16_t id) noexcept;
[[nodiscard]] std::optional<Prf> prf_from_ikev1_hash(std::uint32_t id) noexcept;
/// The cipher or integrity algorithm of an IKEv2 transform ID (with the key
/// length attribute for AES), when ipsentry knows it.
[[nodiscard]] std::optional<Cipher> cipher_from_ikev2(std::uint16_t id) noexcept;
[[nodiscard]] std::optional<Integrity> integrity_from_ikev2(std::uint16_t id) noexcept;

/// Looks up a name or one of its common aliases (case-insensitive): the
/// configuration names, Linux xfrm names ("rfc4106(gcm(aes))", "cbc(aes)"),
/// strongSwan proposal keywords ("aes128gcm16"), IKEv2 names.
[[nodiscard]] std::optional<Cipher> find_cipher(std::string_view name) noexcept;
[[nodiscard]] std::optional<Integrity> find_integrity(std::string_view name) noexcept;

/// Checks a key length; on failure returns a sentence such as
/// "aes-cbc takes a 16, 24 or 32 byte key; this one is 15 bytes".
[[nodiscard]] std::optional<std::string> check_cipher_key(Cipher c, std::size_t len);
[[nodiscard]] std::optional<std::string> check_integrity_key(Integrity i, std::size_t len);
/// A warning for keys that are accepted but not what the RFC specifies.
[[nodiscard]] std::optional<std::string> integrity_key_warning(Integrity i, std::size_t len);

/// The allowed key lengths as text: "16, 24 or 32".
[[nodiscard]] std::string allowed_key_sizes(Cipher c);

}  // namespace ipsentry::filters
