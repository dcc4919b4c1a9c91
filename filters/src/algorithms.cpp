#include "ipsentry/filters/algorithms.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace ipsentry::filters {

namespace {

using enum Cipher;
using M = CipherMode;

// ESP block sizes for stream-like modes are 4: RFC 4303 requires the
// ciphertext to end on a 4-byte boundary.
constexpr std::array<CipherInfo, 19> kCiphers{{
    {null, "null", "RFC 2410", M::none, {0, 0, 0}, 0, 0, 4, 0, false, false, true, 11},
    {des_cbc, "des-cbc", "RFC 2405", M::cbc, {8, 0, 0}, 0, 8, 8, 0, false, true, true, 2},
    {tdes_cbc, "3des-cbc", "RFC 2451", M::cbc, {24, 0, 0}, 0, 8, 8, 0, false, true, true, 3},
    {aes_cbc, "aes-cbc", "RFC 3602", M::cbc, {16, 24, 32}, 0, 16, 16, 0, false, false, true, 12},
    {aes_ctr, "aes-ctr", "RFC 3686", M::ctr, {20, 28, 36}, 4, 8, 4, 0, false, false, true, 13},
    {aes_gcm_8, "aes-gcm-8", "RFC 4106", M::gcm, {20, 28, 36}, 4, 8, 4, 8, false, false, true, 18},
    {aes_gcm_12, "aes-gcm-12", "RFC 4106", M::gcm, {20, 28, 36}, 4, 8, 4, 12, false, false, true, 19},
    {aes_gcm_16, "aes-gcm-16", "RFC 4106", M::gcm, {20, 28, 36}, 4, 8, 4, 16, false, false, true, 20},
    {aes_ccm_8, "aes-ccm-8", "RFC 4309", M::ccm, {19, 27, 35}, 3, 8, 4, 8, false, false, true, 14},
    {aes_ccm_12, "aes-ccm-12", "RFC 4309", M::ccm, {19, 27, 35}, 3, 8, 4, 12, false, false, true, 15},
    {aes_ccm_16, "aes-ccm-16", "RFC 4309", M::ccm, {19, 27, 35}, 3, 8, 4, 16, false, false, true, 16},
    {aes_gmac, "aes-gmac", "RFC 4543", M::gmac, {20, 28, 36}, 4, 8, 4, 16, false, false, true, 21},
    {chacha20_poly1305, "chacha20-poly1305", "RFC 7634", M::chacha20_poly1305, {36, 0, 0}, 4, 8, 4, 16,
     false, false, true, 28},
    {aes_gcm_16_iiv, "aes-gcm-16-iiv", "RFC 8750", M::gcm, {20, 28, 36}, 4, 0, 4, 16, true, false, true, 30},
    {aes_ccm_8_iiv, "aes-ccm-8-iiv", "RFC 8750", M::ccm, {19, 27, 35}, 3, 0, 4, 8, true, false, true, 29},
    {chacha20_poly1305_iiv, "chacha20-poly1305-iiv", "RFC 8750", M::chacha20_poly1305, {36, 0, 0}, 4, 0, 4,
     16, true, false, true, 31},
    {blowfish_cbc, "blowfish-cbc", "RFC 2451", M::cbc, {0, 0, 0}, 0, 8, 8, 0, false, true, false, 7},
    {twofish_cbc, "twofish-cbc", "draft-ietf-ipsec-ciph-aes-cbc", M::cbc, {0, 0, 0}, 0, 16, 16, 0, false, true,
     false, 0},
    {cast_cbc, "cast-cbc", "RFC 2451", M::cbc, {0, 0, 0}, 0, 8, 8, 0, false, true, false, 6},
}};

constexpr std::array<IntegrityInfo, 15> kIntegrity{{
    {Integrity::none, "none", "RFC 4303", 0, 0, false, false, 0},
    {Integrity::hmac_md5_96, "hmac-md5-96", "RFC 2403", 12, 16, true, true, 1},
    {Integrity::hmac_sha1_96, "hmac-sha1-96", "RFC 2404", 12, 20, true, false, 2},
    {Integrity::hmac_sha256_128, "hmac-sha256-128", "RFC 4868", 16, 32, false, false, 12},
    {Integrity::hmac_sha384_192, "hmac-sha384-192", "RFC 4868", 24, 48, false, false, 13},
    {Integrity::hmac_sha512_256, "hmac-sha512-256", "RFC 4868", 32, 64, false, false, 14},
    {Integrity::aes_xcbc_96, "aes-xcbc-96", "RFC 3566", 12, 16, false, false, 5},
    {Integrity::hmac_sha256_96, "hmac-sha256-96", "draft-ietf-ipsec-ciph-sha-256-00", 12, 32, true, true, 0},
    {Integrity::unchecked_64, "unchecked-64", "no key", 8, 0, false, false, 0, false},
    {Integrity::unchecked_96, "unchecked-96", "no key", 12, 0, false, false, 0, false},
    {Integrity::unchecked_128, "unchecked-128", "no key", 16, 0, false, false, 0, false},
    {Integrity::unchecked_192, "unchecked-192", "no key", 24, 0, false, false, 0, false},
    {Integrity::unchecked_256, "unchecked-256", "no key", 32, 0, false, false, 0, false},
    {Integrity::hmac_ripemd160_96, "hmac-ripemd160-96", "RFC 2857", 12, 20, true, true, 0, true, false},
    {Integrity::hmac_sha1_160, "hmac-sha1-160", "RFC 4595", 20, 20, true, false, 7},
}};

struct Alias {
  std::string_view name;
  std::uint8_t value;
};

// Lower-case aliases users meet in other tools.
constexpr Alias kCipherAliases[] = {
    {"enc_null", 0},
    {"ecb(cipher_null)", 0},
    {"cipher_null", 0},
    {"des", 1},
    {"cbc(des)", 1},
    {"3des", 2},
    {"des3_ede", 2},
    {"cbc(des3_ede)", 2},
    {"tripledes-cbc", 2},
    {"des3-cbc", 2},
    {"aes", 3},
    {"cbc(aes)", 3},
    {"aes128", 3},
    {"aes192", 3},
    {"aes256", 3},
    {"aes128-cbc", 3},
    {"aes192-cbc", 3},
    {"aes256-cbc", 3},
    {"rfc3686(ctr(aes))", 4},
    {"aesctr", 4},
    {"aes128ctr", 4},
    {"aes192ctr", 4},
    {"aes256ctr", 4},
    {"aes-gcm", 7},
    {"aes128gcm8", 5},
    {"aes192gcm8", 5},
    {"aes256gcm8", 5},
    {"aes128gcm12", 6},
    {"aes192gcm12", 6},
    {"aes256gcm12", 6},
    {"aes128gcm16", 7},
    {"aes192gcm16", 7},
    {"aes256gcm16", 7},
    {"aes128gcm", 7},
    {"aes256gcm", 7},
    {"rfc4106(gcm(aes))", 7},
    {"aes-ccm", 10},
    {"aes128ccm8", 8},
    {"aes192ccm8", 8},
    {"aes256ccm8", 8},
    {"aes128ccm12", 9},
    {"aes192ccm12", 9},
    {"aes256ccm12", 9},
    {"aes128ccm16", 10},
    {"aes192ccm16", 10},
    {"aes256ccm16", 10},
    {"rfc4309(ccm(aes))", 10},
    {"null-aes-gmac", 11},
    {"aes128gmac", 11},
    {"aes192gmac", 11},
    {"aes256gmac", 11},
    {"rfc4543(gcm(aes))", 11},
    {"chacha20poly1305", 12},
    {"rfc7539esp(chacha20,poly1305)", 12},
    {"blowfish", 16},
    {"cbc(blowfish)", 16},
    {"bf-cbc", 16},
    {"twofish", 17},
    {"cbc(twofish)", 17},
    {"cast", 18},
    {"cast5-cbc", 18},
    {"cbc(cast5)", 18},
    {"cast128", 18},
};

constexpr Alias kIntegrityAliases[] = {
    {"null", 0},
    {"digest_null", 0},
    {"md5", 1},
    {"hmac(md5)", 1},
    {"md5-96", 1},
    {"hmac-md5", 1},
    {"sha1", 2},
    {"hmac(sha1)", 2},
    {"sha1-96", 2},
    {"hmac-sha1", 2},
    {"sha256", 3},
    {"sha2_256", 3},
    {"hmac(sha256)", 3},
    {"hmac-sha256", 3},
    {"hmac-sha2-256-128", 3},
    {"sha384", 4},
    {"sha2_384", 4},
    {"hmac(sha384)", 4},
    {"hmac-sha384", 4},
    {"hmac-sha2-384-192", 4},
    {"sha512", 5},
    {"sha2_512", 5},
    {"hmac(sha512)", 5},
    {"hmac-sha512", 5},
    {"hmac-sha2-512-256", 5},
    {"aesxcbc", 6},
    {"xcbc(aes)", 6},
    {"aes-xcbc", 6},
    {"ripemd160", 13},
    {"hmac(rmd160)", 13},
};

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return r;
}

}  // namespace

const CipherInfo& cipher_info(Cipher c) noexcept { return kCiphers[static_cast<std::size_t>(c)]; }
const IntegrityInfo& integrity_info(Integrity i) noexcept { return kIntegrity[static_cast<std::size_t>(i)]; }
std::span<const CipherInfo> all_ciphers() noexcept { return kCiphers; }
std::span<const IntegrityInfo> all_integrity() noexcept { return kIntegrity; }

std::optional<Cipher> find_cipher(std::string_view name) noexcept {
  std::string n = lower(name);
  for (const auto& c : kCiphers) {
    if (c.name == n) return c.id;
  }
  for (const auto& a : kCipherAliases) {
    if (a.name == n) return static_cast<Cipher>(a.value);
  }
  return std::nullopt;
}

std::optional<Integrity> find_integrity(std::string_view name) noexcept {
  std::string n = lower(name);
  for (const auto& c : kIntegrity) {
    if (c.name == n) return c.id;
  }
  for (const auto& a : kIntegrityAliases) {
    if (a.name == n) return static_cast<Integrity>(a.value);
  }
  return std::nullopt;
}

std::string allowed_key_sizes(Cipher c) {
  const CipherInfo& info = cipher_info(c);
  std::string out;
  int count = 0;
  for (auto k : info.key_sizes) count += k != 0;
  int seen = 0;
  for (auto k : info.key_sizes) {
    if (k == 0) continue;
    if (seen > 0) out += seen + 1 == count ? " or " : ", ";
    out += std::to_string(k);
    ++seen;
  }
  return out;
}

std::optional<std::string> check_cipher_key(Cipher c, std::size_t len) {
  const CipherInfo& info = cipher_info(c);
  if (!info.supported) return std::nullopt;  // reported as unsupported elsewhere
  if (info.mode == CipherMode::none) {
    if (len == 0) return std::nullopt;
    return fmt::format("{} takes no key; this one is {} bytes", info.name, len);
  }
  for (auto k : info.key_sizes) {
    if (k != 0 && k == len) return std::nullopt;
  }
  std::string salt;
  if (info.salt_len != 0) salt = fmt::format(" (cipher key followed by a {}-byte salt)", info.salt_len);
  return fmt::format("{} takes a {} byte key{}; this one is {} bytes", info.name, allowed_key_sizes(c), salt,
                     len);
}

std::optional<std::string> check_integrity_key(Integrity i, std::size_t len) {
  const IntegrityInfo& info = integrity_info(i);
  if (i == Integrity::none || !info.checks) {
    if (len == 0) return std::nullopt;
    return fmt::format("integrity '{}' takes no key; this one is {} bytes", info.name, len);
  }
  if (!info.supported) return std::nullopt;  // reported as unsupported elsewhere
  if (info.any_key_len) {
    if (len >= 1 && len <= 128) return std::nullopt;
    return fmt::format("{} needs a key of 1 to 128 bytes ({} recommended); this one is {} bytes", info.name,
                       info.key_len, len);
  }
  if (len == info.key_len) return std::nullopt;
  return fmt::format("{} takes a {} byte key ({}); this one is {} bytes", info.name, info.key_len, info.rfc, len);
}

std::optional<std::string> integrity_key_warning(Integrity i, std::size_t len) {
  const IntegrityInfo& info = integrity_info(i);
  if (info.any_key_len && len != info.key_len) {
    return fmt::format("{} key is {} bytes; {} specifies {} bytes", info.name, len, info.rfc, info.key_len);
  }
  return std::nullopt;
}

std::optional<Prf> find_prf(std::string_view name) noexcept {
  std::string n = lower(name);
  for (std::string_view prefix : {"prf-", "prf_", "hmac-", "hmac_", "prfhmac", "hmac"}) {
    if (n.starts_with(prefix)) n.erase(0, prefix.size());
  }
  for (auto& ch : n) {
    if (ch == '_') ch = '-';
  }
  if (n == "md5") return Prf::hmac_md5;
  if (n == "sha1" || n == "sha" || n == "sha-1") return Prf::hmac_sha1;
  if (n == "sha256" || n == "sha2-256" || n == "sha-256") return Prf::hmac_sha256;
  if (n == "sha384" || n == "sha2-384" || n == "sha-384") return Prf::hmac_sha384;
  if (n == "sha512" || n == "sha2-512" || n == "sha-512") return Prf::hmac_sha512;
  return std::nullopt;
}

const char* to_string(Prf p) noexcept {
  switch (p) {
    case Prf::hmac_md5: return "hmac-md5";
    case Prf::hmac_sha1: return "hmac-sha1";
    case Prf::hmac_sha256: return "hmac-sha256";
    case Prf::hmac_sha384: return "hmac-sha384";
    case Prf::hmac_sha512: return "hmac-sha512";
  }
  return "?";
}

std::size_t prf_len(Prf p) noexcept {
  switch (p) {
    case Prf::hmac_md5: return 16;
    case Prf::hmac_sha1: return 20;
    case Prf::hmac_sha256: return 32;
    case Prf::hmac_sha384: return 48;
    case Prf::hmac_sha512: return 64;
  }
  return 0;
}

std::optional<Prf> prf_from_ikev2(std::uint16_t id) noexcept {
  switch (id) {
    case 1: return Prf::hmac_md5;
    case 2: return Prf::hmac_sha1;
    case 5: return Prf::hmac_sha256;
    case 6: return Prf::hmac_sha384;
    case 7: return Prf::hmac_sha512;
    default: return std::nullopt;
  }
}

std::optional<Prf> prf_from_ikev1_hash(std::uint32_t id) noexcept {
  switch (id) {
    case 1: return Prf::hmac_md5;
    case 2: return Prf::hmac_sha1;
    case 4: return Prf::hmac_sha256;
    case 5: return Prf::hmac_sha384;
    case 6: return Prf::hmac_sha512;
    default: return std::nullopt;
  }
}

std::optional<Cipher> cipher_from_ikev2(std::uint16_t id) noexcept {
  if (id == 0) return std::nullopt;
  for (const auto& c : kCiphers) {
    if (c.ikev2_id == id) return c.id;
  }
  return std::nullopt;
}

std::optional<Integrity> integrity_from_ikev2(std::uint16_t id) noexcept {
  if (id == 0) return Integrity::none;
  for (const auto& i : kIntegrity) {
    if (i.ikev2_id == id && i.checks) return i.id;
  }
  return std::nullopt;
}

}  // namespace ipsentry::filters
