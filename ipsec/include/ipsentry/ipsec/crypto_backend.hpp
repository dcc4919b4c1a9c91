// Which library does the ESP cryptography of an SA.
//
// OpenSSL does everything. libipsec-mb (Intel's multi-buffer IPsec library,
// optional at build time) does the AES and ChaCha20 suites faster on CPUs
// with AES-NI; each SA picks one when it is installed (see EspTransform).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipsentry::ipsec {

/// The library an SA's ESP transform runs on.
enum class CryptoBackend : std::uint8_t { openssl, ipsec_mb };

/// What the user asked for (--crypto): `auto_` picks per SA the backend
/// measured faster on this CPU; `ipsec_mb` uses libipsec-mb wherever it
/// can do the SA and OpenSSL elsewhere; `openssl` never uses libipsec-mb.
enum class CryptoChoice : std::uint8_t { auto_, openssl, ipsec_mb };

/// "openssl", "ipsec-mb".
[[nodiscard]] const char* to_string(CryptoBackend b) noexcept;
/// "auto", "openssl", "ipsec-mb".
[[nodiscard]] const char* to_string(CryptoChoice c) noexcept;
/// Parses the names to_string gives; nullopt for anything else.
[[nodiscard]] std::optional<CryptoChoice> find_crypto_choice(std::string_view name) noexcept;

/// Parses a --crypto value and checks this build can honour it. Throws
/// std::invalid_argument with a sentence naming the problem (without the
/// option's name, which the caller adds): an unknown name, or ipsec-mb in a
/// build without libipsec-mb.
[[nodiscard]] CryptoChoice parse_crypto_choice(std::string_view name);

/// What this build and CPU offer, probed once per process.
struct CryptoAvailability {
  bool ipsec_mb_built = false;   // compiled with libipsec-mb
  bool ipsec_mb_usable = false;  // and its manager initialised on this CPU
  std::string ipsec_mb_version;  // "1.3.0"
  std::string ipsec_mb_arch;     // the code path init_mb_mgr_auto chose: "sse", "avx2", "avx512"
  std::string problem;           // why libipsec-mb is not usable, when it is not
  // CPU features that decide the choice, as libipsec-mb detected them.
  bool aesni = false;
  bool shani = false;
  bool vaes = false;
  bool avx512 = false;
  /// One line for --version and statistics, e.g. "libipsec-mb 1.3.0, arch
  /// avx2 (AES-NI, SHA-NI, VAES, no AVX-512)" or "libipsec-mb: not built".
  [[nodiscard]] std::string describe() const;
};

[[nodiscard]] const CryptoAvailability& crypto_availability() noexcept;

}  // namespace ipsentry::ipsec
