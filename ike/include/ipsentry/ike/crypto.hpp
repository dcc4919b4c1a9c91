// IKE cryptography shared by the analyzer (verify, capture, TUI) and the
// IKEv2 daemon of enforcement: hashes and prf+, the IKE SA and CHILD_SA key
// schedules, the SK payload, Diffie-Hellman, and AUTH (pre-shared keys,
// RSA/ECDSA signatures, RFC 7427 digital signatures) with certificates.
//
// Not on a per-packet path: clarity over speed. Every secret is held in
// filters::SecretBytes (wiped when freed) or wiped before its buffer is
// released; nothing here logs. OpenSSL appears only in the .cpp files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ipsentry/filters/algorithms.hpp"
#include "ipsentry/filters/ike_proposal.hpp"
#include "ipsentry/filters/secret.hpp"

namespace ipsentry::ike {

using Bytes = std::span<const std::uint8_t>;
using Buffer = std::vector<std::uint8_t>;

/// Where nonces, SPIs, IVs and cookie secrets come from. Production uses
/// system_random() (OpenSSL's DRBG); tests and fuzz targets substitute a
/// seeded generator so that a message sequence replays exactly.
class Random {
 public:
  virtual ~Random() = default;
  virtual void fill(std::span<std::uint8_t> out) = 0;
};
[[nodiscard]] Random& system_random();

// ---- hashes and the prf (RFC 7296 2.13, RFC 2409 5) ----------------------

/// H(data) with the prf's hash.
[[nodiscard]] Buffer hash(filters::Prf alg, std::initializer_list<Bytes> parts);
/// prf(key, data): HMAC with the prf's hash (RFC 2104).
[[nodiscard]] Buffer prf(filters::Prf alg, Bytes key, std::initializer_list<Bytes> parts);
/// prf+ of RFC 7296 section 2.13, `length` bytes. Empty when the length
/// would need more than 255 rounds.
[[nodiscard]] filters::SecretBytes prf_plus(filters::Prf alg, Bytes key, Bytes seed, std::size_t length);
/// IKEv1 Quick Mode KEYMAT without PFS (RFC 2409 section 5.5).
[[nodiscard]] filters::SecretBytes v1_keymat(filters::Prf alg, Bytes skeyid_d, std::uint8_t protocol, Bytes spi,
                                             Bytes ni, Bytes nr, std::size_t length);

// ---- Diffie-Hellman (RFC 7296 3.4, RFC 3526, RFC 5903, RFC 8031) ---------

class CryptoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One side of a key exchange: a fresh private value for every use.
class KeyExchange {
 public:
  /// Throws CryptoError when the group cannot be set up.
  [[nodiscard]] static std::unique_ptr<KeyExchange> create(filters::DhGroup group);
  /// The length of a group's public value in a KE payload (MODP: the
  /// prime's length; ECP: x||y; curve25519: 32).
  [[nodiscard]] static std::size_t public_length(filters::DhGroup group) noexcept;
  virtual ~KeyExchange() = default;
  [[nodiscard]] virtual filters::DhGroup group() const noexcept = 0;
  /// Our public value as the KE payload carries it.
  [[nodiscard]] virtual const Buffer& public_value() const noexcept = 0;
  /// g^ir from the peer's public value. nullopt, with a reason, when the
  /// value is not acceptable: wrong length, not a point on the curve, a
  /// MODP value of 0, 1 or p-1 (RFC 7296 2.12 and the small-subgroup
  /// checks of RFC 6989), or an all-zero curve25519 result.
  [[nodiscard]] virtual std::optional<filters::SecretBytes> shared_secret(Bytes peer, std::string& why) const = 0;
};

// ---- the IKE SA key schedule (RFC 7296 2.14, 2.18) ------------------------

/// What an IKE SA was negotiated with.
struct IkeSuite {
  filters::KeyedCipher encryption;
  filters::Integrity integrity = filters::Integrity::none;  // none for AEAD ciphers
  filters::Prf prf = filters::Prf::hmac_sha256;
  filters::DhGroup dh = filters::DhGroup::none;
  /// Key bytes of SK_e (cipher key plus salt: 4 for GCM, RFC 5282) and SK_a.
  [[nodiscard]] std::size_t encryption_key_len() const noexcept;
  [[nodiscard]] std::size_t integrity_key_len() const noexcept;
  /// "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384", as the analyzer prints proposals.
  [[nodiscard]] std::string str() const;
};

struct IkeKeys {
  filters::SecretBytes sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr;
};

/// SKEYSEED = prf(Ni | Nr, g^ir), or when rekeying an IKE SA
/// prf(SK_d (old), g^ir (new) | Ni | Nr) with the old SA's prf; then
/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
struct IkeRekeyFrom {
  filters::Prf prf;
  Bytes sk_d;
};
[[nodiscard]] IkeKeys derive_ike_keys(const IkeSuite& suite, Bytes shared, Bytes ni, Bytes nr, std::uint64_t spi_i,
                                      std::uint64_t spi_r, const IkeRekeyFrom* rekey = nullptr);

/// CHILD_SA keys (RFC 7296 2.17): KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr);
/// the keys for what the initiator sends come first, encryption key (with
/// its salt) before integrity key.
struct ChildKeys {
  filters::SecretBytes encr_i, integ_i;  // initiator to responder
  filters::SecretBytes encr_r, integ_r;  // responder to initiator
};
[[nodiscard]] ChildKeys derive_child_keys(filters::Prf prf, Bytes sk_d, Bytes pfs_shared, Bytes ni, Bytes nr,
                                          std::size_t encr_len, std::size_t integ_len);

// ---- the SK payload (RFC 7296 3.14, RFC 5282 for AEAD) --------------------

/// The protection of the IKE messages one side sends: SK_ei/SK_ai for the
/// original initiator's messages, SK_er/SK_ar for the responder's.
class SkCipher {
 public:
  /// Throws CryptoError when the algorithm is not usable or a key has the
  /// wrong length.
  SkCipher(const IkeSuite& suite, Bytes sk_e, Bytes sk_a);
  ~SkCipher();
  SkCipher(SkCipher&&) noexcept;
  SkCipher& operator=(SkCipher&&) noexcept;

  /// The SK payload body's size around an inner chain of `plaintext` bytes:
  /// IV, padding, pad length, ICV.
  [[nodiscard]] std::size_t sealed_size(std::size_t plaintext) const noexcept;
  /// Appends the SK payload body to `msg`, which holds everything before
  /// it (IKE header, cleartext payloads, the SK generic header) with the
  /// final lengths already written. Integrity covers all of `msg`; for AEAD
  /// it is the AAD. The IV comes from `random`.
  void seal(Buffer& msg, Bytes plaintext, Random& random) const;
  /// Checks and decrypts the SK (or SKF) payload body that starts at
  /// `body_offset` in `msg` and runs to its end. Returns the inner payload
  /// chain without padding, or nullopt with a reason ("ICV mismatch",
  /// "padding longer than the data").
  ///
  /// The body starts with the IV. For SKF (RFC 7383) that is after the
  /// Fragment Number and Total Fragments fields, which, like everything
  /// before the IV, are authenticated (the AAD of an AEAD cipher); seal()
  /// likewise expects them already in `msg`.
  [[nodiscard]] std::optional<Buffer> open(Bytes msg, std::size_t body_offset, std::string& why) const;

  /// For the analyzer only (verify, capture, TUI), which shows what a
  /// captured message holds even when it cannot vouch for it; the daemon
  /// acts on open() alone. Like open(), but a non-AEAD cipher's data is
  /// decrypted even when the ICV does not match (`trust` says so), and a
  /// cipher made by for_inspection() with an unchecked-* integrity
  /// placeholder skips the ICV. AEAD data is never returned unauthenticated.
  enum class Trust : std::uint8_t { verified, icv_mismatch, unchecked };
  [[nodiscard]] std::optional<Buffer> inspect(Bytes msg, std::size_t body_offset, Trust& trust, std::string& why) const;
  /// An SkCipher for the analyzer that also takes what a key table may name
  /// but an IKE SA must not use: single DES, and the unchecked-* integrity
  /// placeholders (the ICV's length is known, its key is not). Such a
  /// cipher refuses open() and seal(). Throws CryptoError like the constructor.
  [[nodiscard]] static SkCipher for_inspection(const IkeSuite& suite, Bytes sk_e, Bytes sk_a);

 private:
  SkCipher(const IkeSuite& suite, Bytes sk_e, Bytes sk_a, bool inspection);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- AUTH (RFC 7296 2.15, RFC 7427) ---------------------------------------

/// IKEv2 authentication methods (AUTH payload, RFC 7296 3.8, RFC 4754, RFC 7427).
enum class AuthMethod : std::uint8_t {
  rsa_sig =
      1,  // RSASSA-PKCS1-v1_5 with SHA-1: deprecated; verified and sent (to a peer without RFC 7427) with a warning
  psk = 2,
  ecdsa_sha256_p256 = 9,
  ecdsa_sha384_p384 = 10,
  ecdsa_sha512_p521 = 11,
  digital_signature = 14,  // RFC 7427
};
/// RFC 7427 hash algorithms (SIGNATURE_HASH_ALGORITHMS notify, RFC 7427 4).
enum class SignatureHash : std::uint16_t { sha1 = 1, sha256 = 2, sha384 = 3, sha512 = 4 };

/// The octets an AUTH payload covers (RFC 7296 2.15):
/// RealMessage | peer's Nonce data | prf(SK_p, RestOfIDPayload).
/// `id_body` is the ID payload's body (ID type, 3 reserved bytes, data).
[[nodiscard]] Buffer signed_octets(filters::Prf prf, Bytes real_message, Bytes peer_nonce, Bytes sk_p, Bytes id_body);
/// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
[[nodiscard]] Buffer psk_auth(filters::Prf prf, Bytes psk, Bytes octets);

/// An X.509 certificate (DER) and what IKE needs of it.
class Certificate {
 public:
  /// Throws CryptoError naming the file on unreadable or invalid input.
  [[nodiscard]] static std::vector<Certificate> load_pem(const std::filesystem::path& file);
  [[nodiscard]] static std::optional<Certificate> from_der(Bytes der, std::string& why);
  ~Certificate();
  Certificate(Certificate&&) noexcept;
  Certificate& operator=(Certificate&&) noexcept;
  Certificate(const Certificate&);
  [[nodiscard]] const Buffer& der() const noexcept;
  /// The subject as DER (ID_DER_ASN1_DN) and as text ("C=CH, O=example, CN=gw1").
  [[nodiscard]] Buffer subject_der() const;
  [[nodiscard]] std::string subject() const;
  /// Whether the certificate names this ID payload (subject DN, or a
  /// subjectAltName of the same kind: dNSName, rfc822Name, iPAddress).
  [[nodiscard]] bool has_identity(std::uint8_t id_type, Bytes id_data) const;
  /// SHA-1 of the subjectPublicKeyInfo, as CERTREQ lists trust anchors (RFC 7296 3.7).
  [[nodiscard]] Buffer key_id_sha1() const;

 private:
  Certificate();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend class TrustStore;
  friend class Signer;
  friend bool verify_auth(AuthMethod, Bytes, Bytes, const Certificate&, std::string&, std::vector<std::string>&);
};

/// Trust anchors; verifies a peer's end-entity certificate with the
/// intermediate certificates it sent.
class TrustStore {
 public:
  /// Throws CryptoError naming the file.
  explicit TrustStore(const std::vector<std::filesystem::path>& ca_files);
  ~TrustStore();
  TrustStore(TrustStore&&) noexcept;
  TrustStore& operator=(TrustStore&&) noexcept;
  /// Chain and validity check at `now` (seconds since the epoch). Returns
  /// false with OpenSSL's reason in words.
  [[nodiscard]] bool verify(const Certificate& end_entity, const std::vector<Certificate>& intermediates,
                            std::int64_t now, std::string& why) const;
  /// CERTREQ data: the SHA-1 key IDs of the anchors (RFC 7296 3.7).
  [[nodiscard]] Buffer certreq_data() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Our own certificate and private key: makes AUTH payloads.
class Signer {
 public:
  /// Throws CryptoError naming the file: unreadable, not PEM, a key that
  /// is not the certificate's, a key type IKE cannot sign with.
  Signer(const std::filesystem::path& cert_file, const std::filesystem::path& key_file);
  ~Signer();
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  [[nodiscard]] const Certificate& certificate() const noexcept;
  [[nodiscard]] const std::vector<Certificate>& chain() const noexcept;  // intermediates from the file
  /// The AUTH payload's method and data over `octets`. With RFC 7427
  /// support announced by the peer (its hashes), method 14 with the
  /// strongest common hash; otherwise the classic method of the key type
  /// (ECDSA 9/10/11; RSA falls back to method 1 only if the peer
  /// announced nothing, with a warning in `warnings`). RSA keys sign
  /// RSASSA-PKCS1-v1_5, keys made for RSA-PSS sign PSS (salt = hash
  /// length) and only with RFC 7427. Throws CryptoError when nothing fits.
  [[nodiscard]] std::pair<AuthMethod, Buffer> sign(Bytes octets, const std::vector<SignatureHash>& peer_hashes,
                                                   std::vector<std::string>& warnings) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Checks an AUTH payload made with a signature method against the peer's
/// certificate. False with a reason on a bad signature, an unsupported
/// method or hash, or a key type that does not fit the method; deprecated
/// choices (SHA-1) add a warning.
[[nodiscard]] bool verify_auth(AuthMethod method, Bytes auth_data, Bytes octets, const Certificate& peer,
                               std::string& why, std::vector<std::string>& warnings);

}  // namespace ipsentry::ike
