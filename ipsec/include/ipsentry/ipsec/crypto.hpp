// Cryptographic primitives over OpenSSL 3, keyed once and reused per packet.
//
// Every object here is created when an SA is installed: the key schedule is
// computed once, the OpenSSL algorithm objects are fetched once per process,
// and the per-packet calls only set the IV or nonce, the AAD and the tag.
// Measured on OpenSSL 3.0: per-packet calls here do not allocate (see
// tests/unit/test_allocations.cpp). Objects are not thread-safe; an SA is
// processed by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "ipsentry/filters/algorithms.hpp"

namespace ipsentry::ipsec::crypto {

using Bytes = std::span<const std::uint8_t>;

class CryptoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Loads the OpenSSL providers ipsentry needs (default, and legacy for
/// single DES). Safe to call repeatedly; returns false when the legacy
/// provider is missing, in which case des-cbc SAs are reported unsupported.
bool init_providers() noexcept;
[[nodiscard]] bool legacy_available() noexcept;

/// A keyed MAC: HMAC-MD5/SHA-1/SHA-2 (RFC 2104) or AES-XCBC-MAC (RFC 3566).
class Mac {
 public:
  virtual ~Mac() = default;
  virtual void begin() noexcept = 0;
  virtual void update(Bytes data) noexcept = 0;
  /// Writes output_len() bytes (the full MAC, before IPsec truncation).
  virtual void finish(std::uint8_t* out) noexcept = 0;
  [[nodiscard]] virtual std::size_t output_len() const noexcept = 0;
};

/// Creates the MAC of an integrity algorithm. Throws CryptoError for
/// algorithms without a MAC (none, unchecked-*).
[[nodiscard]] std::unique_ptr<Mac> make_mac(filters::Integrity alg, Bytes key);

/// An unauthenticated cipher: DES/3DES/AES in CBC mode, or AES in counter
/// mode. For CTR the IV passed per call is the whole 16-byte counter block.
class Cipher {
 public:
  static std::unique_ptr<Cipher> create(filters::Cipher alg, Bytes key);
  ~Cipher();
  Cipher(const Cipher&) = delete;
  Cipher& operator=(const Cipher&) = delete;

  [[nodiscard]] bool decrypt(const std::uint8_t* iv, Bytes in, std::uint8_t* out) noexcept;
  [[nodiscard]] bool encrypt(const std::uint8_t* iv, Bytes in, std::uint8_t* out) noexcept;
  [[nodiscard]] std::size_t block_size() const noexcept { return block_; }

 private:
  Cipher() = default;
  struct Ctx;
  std::unique_ptr<Ctx> dec_;
  std::unique_ptr<Ctx> enc_;
  std::size_t block_ = 1;
};

/// An AEAD: AES-GCM (and GMAC: an empty plaintext), AES-CCM, ChaCha20-Poly1305.
class Aead {
 public:
  enum class Kind { gcm, ccm, chacha20_poly1305 };
  /// `key` is the cipher key without salt; nonce_len is 12 for GCM/ChaCha20
  /// and 11 for CCM in ESP (7 to 13 allowed for CCM).
  static std::unique_ptr<Aead> create(Kind kind, Bytes key, std::size_t tag_len, std::size_t nonce_len);
  ~Aead();
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;

  /// Decrypts and verifies. The AAD may come in two parts (CCM takes only
  /// aad1). Returns false when the tag does not match; out then holds
  /// nothing usable.
  [[nodiscard]] bool open(Bytes nonce, Bytes aad1, Bytes aad2, Bytes ciphertext, Bytes tag, std::uint8_t* out) noexcept;
  [[nodiscard]] bool seal(Bytes nonce, Bytes aad1, Bytes aad2, Bytes plaintext, std::uint8_t* out,
                          std::uint8_t* tag) noexcept;
  [[nodiscard]] std::size_t tag_len() const noexcept { return tag_len_; }

 private:
  Aead() = default;
  struct Ctx;
  std::unique_ptr<Ctx> dec_;  // all but CCM
  std::unique_ptr<Ctx> enc_;
  std::unique_ptr<Ctx> ccm_ctr_;           // CCM only: its counter stream (see open)
  std::vector<std::uint8_t> ccm_scratch_;  // CCM only: ciphertext of the re-sealing
  Kind kind_ = Kind::gcm;
  std::size_t tag_len_ = 16;
};

/// Fills `out` with unpredictable bytes from OpenSSL's DRBG.
void random_bytes(std::uint8_t* out, std::size_t n);

/// Constant-time comparison of two equal-length byte strings.
[[nodiscard]] bool equal_ct(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) noexcept;

}  // namespace ipsentry::ipsec::crypto
