// The ESP cryptographic transform of one SA (RFC 4303 with the cipher RFCs).
//
// One interface covers the "cipher + integrity" pairs and the combined-mode
// algorithms (GCM, CCM, ChaCha20-Poly1305, GMAC, and the implicit-IV
// variants of RFC 8750): callers only see the IV and ICV sizes, decrypt()
// and encrypt(). All buffers belong to the caller.
//
// The cryptography runs on one of two backends (crypto_backend.hpp), chosen
// when the SA is installed; both give the same bytes and verdicts.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/crypto.hpp"
#include "ipsentry/ipsec/crypto_backend.hpp"

namespace ipsentry::ipsec {

namespace detail {
struct EspLayout;
class EspCrypto;
}  // namespace detail

/// Expected and received ICV of a packet that failed its integrity check.
struct IcvMismatch {
  std::uint8_t len = 0;
  bool expected_known = false;
  std::array<std::uint8_t, 32> expected{};
  std::array<std::uint8_t, 32> received{};
};

class EspTransform {
 public:
  enum class Status : std::uint8_t { ok, icv_mismatch, tag_mismatch, too_short, not_aligned, failed };

  /// Builds the transform of an ESP SA on the backend `choice` allows and
  /// suits best. Throws crypto::CryptoError when no backend can provide the
  /// algorithm. Not thread-safe to use concurrently, like the SA itself; it
  /// may move between threads (libipsec-mb state is per thread).
  explicit EspTransform(const filters::SaConfig& sa, CryptoChoice choice = CryptoChoice::auto_);
  ~EspTransform();
  EspTransform(const EspTransform&) = delete;
  EspTransform& operator=(const EspTransform&) = delete;

  [[nodiscard]] std::size_t iv_len() const noexcept { return iv_len_; }
  [[nodiscard]] std::size_t icv_len() const noexcept { return icv_len_; }
  /// Payload + trailer must be a multiple of this (4 at least, RFC 4303).
  [[nodiscard]] std::size_t alignment() const noexcept { return align_; }
  [[nodiscard]] bool checks_integrity() const noexcept { return checks_; }
  [[nodiscard]] bool aead() const noexcept { return aead_; }
  [[nodiscard]] CryptoBackend backend() const noexcept { return backend_; }
  /// Why OpenSSL does this SA when it does ("--crypto openssl", "aes-ccm-16
  /// with a 192-bit key is not in libipsec-mb", ...); empty otherwise.
  [[nodiscard]] const std::string& backend_reason() const noexcept { return backend_reason_; }

  /// Verifies and decrypts a whole ESP packet (SPI through ICV). `seq` is the
  /// full sequence number (its high half matters with ESN). On success `out`
  /// holds the plaintext (payload, padding, pad length, next header) and
  /// `out_len` its length. `out` needs room for esp.size() bytes.
  [[nodiscard]] Status decrypt(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* out,
                               std::size_t& out_len, IcvMismatch* mismatch) noexcept;

  /// Encrypts in place. `esp` is laid out as SPI, sequence number, room for
  /// the IV, plaintext with trailer, room for the ICV. The IV is taken from
  /// `iv` (iv_len() bytes) when given, generated otherwise.
  [[nodiscard]] bool encrypt(std::span<std::uint8_t> esp, std::uint64_t seq, const std::uint8_t* iv) noexcept;

 private:
  // Declared before impl_, which reads it and is destroyed first.
  std::unique_ptr<detail::EspLayout> layout_;
  std::unique_ptr<detail::EspCrypto> impl_;
  bool checks_ = false;
  bool aead_ = false;
  CryptoBackend backend_ = CryptoBackend::openssl;
  std::size_t iv_len_ = 0;
  std::size_t icv_len_ = 0;
  std::size_t align_ = 4;
  std::string backend_reason_;
};

}  // namespace ipsentry::ipsec
