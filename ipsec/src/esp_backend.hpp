// Internal: the interface each ESP crypto backend implements, and what they
// share. EspTransform checks lengths and chooses IVs; a backend only does
// the cryptography.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "ipsentry/dissect/wire.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/crypto_backend.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"

namespace ipsentry::ipsec::detail {

constexpr std::size_t kEspHeader = 8;  // SPI + sequence number

/// The geometry and salt of an SA's ESP packets, owned by EspTransform
/// (which cleanses the salt) and read by its backend.
struct EspLayout {
  filters::CipherMode mode = filters::CipherMode::none;
  bool esn = false;
  bool implicit_iv = false;
  std::size_t iv_len = 0;
  std::size_t icv_len = 0;
  std::size_t block = 1;  // cipher block size (CBC lengths are multiples of it)
  std::array<std::uint8_t, 4> salt{};
  std::size_t salt_len = 0;
};

/// RFC 4106 section 5 (and 4309, 4543, 7634): SPI || 32-bit sequence number,
/// or SPI || 64-bit extended sequence number.
inline std::size_t make_aad(const EspLayout& l, const std::uint8_t* esp, std::uint64_t seq,
                            std::uint8_t* aad) noexcept {
  std::memcpy(aad, esp, 4);
  if (l.esn) {
    dissect::store_be64(aad + 4, seq);
    return 12;
  }
  std::memcpy(aad + 4, esp + 4, 4);
  return 8;
}

/// salt || IV, or salt || sequence number for RFC 8750's implicit IV.
inline std::size_t make_nonce(const EspLayout& l, const std::uint8_t* iv, std::uint64_t seq,
                              std::uint8_t* nonce) noexcept {
  std::memcpy(nonce, l.salt.data(), l.salt_len);
  if (l.implicit_iv) {
    dissect::store_be64(nonce + l.salt_len, l.esn ? seq : (seq & 0xffffffffu));
  } else {
    std::memcpy(nonce + l.salt_len, iv, 8);
  }
  return l.salt_len + 8;
}

/// RFC 3686 section 4: nonce || IV || block counter starting at 1.
inline void make_ctr_block(const EspLayout& l, const std::uint8_t* iv, std::uint8_t* block) noexcept {
  std::memcpy(block, l.salt.data(), 4);
  std::memcpy(block + 4, iv, 8);
  dissect::store_be32(block + 12, 1);
}

class EspCrypto {
 public:
  EspCrypto() = default;
  virtual ~EspCrypto() = default;
  EspCrypto(const EspCrypto&) = delete;
  EspCrypto& operator=(const EspCrypto&) = delete;

  /// `esp` is a whole packet whose lengths EspTransform::decrypt checked:
  /// room for header, IV, ICV and a trailer, ciphertext aligned. Writes the
  /// plaintext (esp.size() - header - IV - ICV bytes) to `out` on success.
  [[nodiscard]] virtual EspTransform::Status open(std::span<const std::uint8_t> esp, std::uint64_t seq,
                                                  std::uint8_t* out, IcvMismatch* mismatch) noexcept = 0;
  /// Encrypts in place; the IV is already in the packet.
  [[nodiscard]] virtual bool seal(std::span<std::uint8_t> esp, std::uint64_t seq) noexcept = 0;
};

/// Throws crypto::CryptoError when OpenSSL lacks the algorithm.
std::unique_ptr<EspCrypto> make_openssl_esp(const filters::SaConfig& sa, const EspLayout& layout,
                                            std::span<const std::uint8_t> cipher_key);

#ifdef IPSENTRY_HAVE_IPSEC_MB
/// The libipsec-mb transform of an SA, or nullptr with `reason` set when
/// the choice (or the library, or the CPU) sends the SA to OpenSSL.
std::unique_ptr<EspCrypto> make_ipsecmb_esp(const filters::SaConfig& sa, const EspLayout& layout,
                                            std::span<const std::uint8_t> cipher_key, CryptoChoice choice,
                                            std::string& reason);
#endif

}  // namespace ipsentry::ipsec::detail

namespace ipsentry::ipsec::detail {
#ifdef IPSENTRY_HAVE_IPSEC_MB
/// Fills the libipsec-mb part of the availability (called once).
void probe_ipsec_mb(CryptoAvailability& a) noexcept;
#endif
}  // namespace ipsentry::ipsec::detail
