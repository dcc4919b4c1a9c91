#include "ipsentry/ipsec/crypto_backend.hpp"

#include <stdexcept>

#include "esp_backend.hpp"

namespace ipsentry::ipsec {

const char* to_string(CryptoBackend b) noexcept { return b == CryptoBackend::ipsec_mb ? "ipsec-mb" : "openssl"; }

const char* to_string(CryptoChoice c) noexcept {
  switch (c) {
    case CryptoChoice::auto_: return "auto";
    case CryptoChoice::openssl: return "openssl";
    case CryptoChoice::ipsec_mb: return "ipsec-mb";
  }
  return "auto";
}

std::optional<CryptoChoice> find_crypto_choice(std::string_view name) noexcept {
  for (auto c : {CryptoChoice::auto_, CryptoChoice::openssl, CryptoChoice::ipsec_mb}) {
    if (name == to_string(c)) return c;
  }
  return std::nullopt;
}

CryptoChoice parse_crypto_choice(std::string_view name) {
  auto c = find_crypto_choice(name);
  if (!c) {
    throw std::invalid_argument("unknown backend '" + std::string(name) + "' (expected auto, openssl or ipsec-mb)");
  }
  if (*c == CryptoChoice::ipsec_mb && !crypto_availability().ipsec_mb_built) {
    throw std::invalid_argument("ipsec-mb: this ipsentry was built without libipsec-mb");
  }
  return *c;
}

std::string CryptoAvailability::describe() const {
  if (!ipsec_mb_built) return "libipsec-mb: not built";
  if (!ipsec_mb_usable) return "libipsec-mb " + ipsec_mb_version + ": not usable (" + problem + ")";
  auto feature = [](bool have, const char* name) { return std::string(have ? "" : "no ") + name; };
  return "libipsec-mb " + ipsec_mb_version + ", arch " + ipsec_mb_arch + " (" + feature(aesni, "AES-NI") + ", " +
         feature(shani, "SHA-NI") + ", " + feature(vaes, "VAES") + ", " + feature(avx512, "AVX-512") + ")";
}

const CryptoAvailability& crypto_availability() noexcept {
  static const CryptoAvailability a = [] {
    CryptoAvailability r;
#ifdef IPSENTRY_HAVE_IPSEC_MB
    r.ipsec_mb_built = true;
    detail::probe_ipsec_mb(r);
#endif
    return r;
  }();
  return a;
}

}  // namespace ipsentry::ipsec
