#include "ipsentry/filters/exporters.hpp"

#include <fmt/format.h>

namespace ipsentry::filters {

namespace {

const char* wireshark_cipher_name(Cipher c) noexcept {
  switch (c) {
    case Cipher::null: return "NULL";
    case Cipher::des_cbc: return "DES-CBC [RFC2405]";
    case Cipher::tdes_cbc: return "TripleDES-CBC [RFC2451]";
    case Cipher::aes_cbc: return "AES-CBC [RFC3602]";
    case Cipher::aes_ctr: return "AES-CTR [RFC3686]";
    case Cipher::aes_gcm_8: return "AES-GCM with 8 octet ICV [RFC4106]";
    case Cipher::aes_gcm_12: return "AES-GCM with 12 octet ICV [RFC4106]";
    case Cipher::aes_gcm_16: return "AES-GCM with 16 octet ICV [RFC4106]";
    case Cipher::aes_gmac: return "NULL with AES-GMAC [RFC4543]";
    case Cipher::chacha20_poly1305: return "ChaCha20 with Poly1305 [RFC7634]";
    case Cipher::cast_cbc: return "CAST5-CBC [RFC2144]";
    case Cipher::blowfish_cbc: return "BLOWFISH-CBC [RFC2451]";
    case Cipher::twofish_cbc: return "TWOFISH-CBC";
    // Wireshark has no CCM and no implicit-IV (RFC 8750) transforms.
    case Cipher::aes_ccm_8:
    case Cipher::aes_ccm_12:
    case Cipher::aes_ccm_16:
    case Cipher::aes_gcm_16_iiv:
    case Cipher::aes_ccm_8_iiv:
    case Cipher::chacha20_poly1305_iiv: return nullptr;
  }
  return nullptr;
}

const char* wireshark_integrity_name(Integrity i) noexcept {
  switch (i) {
    case Integrity::none: return "NULL";
    case Integrity::hmac_md5_96: return "HMAC-MD5-96 [RFC2403]";
    case Integrity::hmac_sha1_96: return "HMAC-SHA-1-96 [RFC2404]";
    case Integrity::hmac_sha256_96: return "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]";
    case Integrity::hmac_sha256_128: return "HMAC-SHA-256-128 [RFC4868]";
    case Integrity::hmac_sha384_192: return "HMAC-SHA-384-192 [RFC4868]";
    case Integrity::hmac_sha512_256: return "HMAC-SHA-512-256 [RFC4868]";
    case Integrity::hmac_ripemd160_96: return "MAC-RIPEMD-160-96 [RFC2857]";
    case Integrity::unchecked_64: return "ANY 64 bit authentication [no checking]";
    case Integrity::unchecked_96: return "ANY 96 bit authentication [no checking]";
    case Integrity::unchecked_128: return "ANY 128 bit authentication [no checking]";
    case Integrity::unchecked_192: return "ANY 192 bit authentication [no checking]";
    case Integrity::unchecked_256: return "ANY 256 bit authentication [no checking]";
    case Integrity::aes_xcbc_96:
    case Integrity::hmac_sha1_160: return nullptr;
  }
  return nullptr;
}

std::string key_text(const SecretBytes& k) { return k.empty() ? std::string() : k.reveal_hex(); }

}  // namespace

std::optional<std::string> to_wireshark_esp_sa(const SaConfig& sa, std::string& why) {
  if (sa.protocol != IpsecProtocol::esp) {
    why = fmt::format("SA {}: Wireshark's ESP secrets cannot describe AH SAs", sa.name);
    return std::nullopt;
  }
  const char* enc = wireshark_cipher_name(sa.cipher);
  const char* auth = wireshark_integrity_name(sa.integrity);
  if (enc == nullptr || auth == nullptr) {
    why = fmt::format("SA {}: Wireshark has no name for {}", sa.name,
                      enc == nullptr ? cipher_info(sa.cipher).name : integrity_info(sa.integrity).name);
    return std::nullopt;
  }
  const bool v6 = (sa.src && sa.src->is_v6()) || (sa.dst && sa.dst->is_v6());
  const bool any_family = !sa.src && !sa.dst;
  auto addr = [](const std::optional<dissect::IpAddr>& a) { return a ? a->str() : std::string("*"); };
  return fmt::format(R"("{}","{}","{}","{}","{}","{}","{}","{}")",
                     any_family ? "Any"
                     : v6       ? "IPv6"
                                : "IPv4",
                     addr(sa.src), addr(sa.dst), sa.spi ? fmt::format("0x{:08x}", *sa.spi) : std::string("*"), enc,
                     key_text(sa.enc_key), auth, key_text(sa.auth_key));
}

std::string to_wireshark_esp_sa(const std::vector<SaConfig>& sas, std::vector<std::string>& skipped) {
  std::string out;
  for (const auto& sa : sas) {
    std::string why;
    if (auto line = to_wireshark_esp_sa(sa, why)) {
      out += *line;
      out += '\n';
    } else {
      skipped.push_back(why);
    }
  }
  return out;
}

}  // namespace ipsentry::filters
