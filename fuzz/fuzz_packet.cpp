// The packet path: frames through capture::Verifier (dissection, SAD lookup,
// replay window, ICV, decryption, padding, inner dissection, nesting) with a
// fixed set of SAs. The first byte chooses how the rest is used:
//   0..7    a frame of one of the supported link types, as captured;
//   8..11   the cleartext of an ESP packet (null encryption, HMAC-SHA-256-128)
//           whose ICV this harness computes, so arbitrary bytes get past the
//           ICV into the padding and next-header checks and the inner packet;
//   12..15  the same sealed with AES-128-GCM.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace {

using namespace ipsentry;

constexpr std::uint8_t kAuthKey[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
constexpr std::uint8_t kGcmKey[20] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
                                      0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0xca, 0xfe, 0xba, 0xbe};

filters::SecretBytes key(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> k(n);
  for (std::size_t i = 0; i < n; ++i) k[i] = static_cast<std::uint8_t>(seed + i);
  return filters::SecretBytes(k);
}

filters::SaConfig sa(std::uint32_t spi, filters::IpsecProtocol p, filters::Cipher c, filters::SecretBytes ek,
                     filters::Integrity i, filters::SecretBytes ak, const char* dst) {
  filters::SaConfig s;
  s.name = "fuzz";
  s.spi = spi;
  s.protocol = p;
  s.cipher = c;
  s.enc_key = std::move(ek);
  s.integrity = i;
  s.auth_key = std::move(ak);
  if (dst != nullptr) s.dst = dissect::IpAddr::parse(dst);
  s.replay_window = 64;
  return s;
}

ipsec::Sad make_sad() {
  using filters::Cipher;
  using filters::Integrity;
  using filters::IpsecProtocol;
  std::vector<filters::SaConfig> v;
  v.push_back(sa(0x100, IpsecProtocol::esp, Cipher::null, {}, Integrity::hmac_sha256_128,
                 filters::SecretBytes(std::vector<std::uint8_t>(kAuthKey, kAuthKey + 32)), "192.0.2.2"));
  v.push_back(sa(0x200, IpsecProtocol::esp, Cipher::aes_gcm_16,
                 filters::SecretBytes(std::vector<std::uint8_t>(kGcmKey, kGcmKey + 20)), Integrity::none, {},
                 "192.0.2.2"));
  v.push_back(sa(0x300, IpsecProtocol::ah, Cipher::null, {}, Integrity::hmac_md5_96, key(16, 3), nullptr));
  v.push_back(sa(0x400, IpsecProtocol::esp, Cipher::aes_cbc, key(16, 4), Integrity::hmac_sha1_96, key(20, 5), nullptr));
  v.push_back(sa(0x500, IpsecProtocol::esp, Cipher::aes_ccm_8, key(19, 6), Integrity::none, {}, nullptr));
  v.push_back(
      sa(0x600, IpsecProtocol::esp, Cipher::chacha20_poly1305_iiv, key(36, 7), Integrity::none, {}, "2001:db8::2"));
  auto esn = sa(0x700, IpsecProtocol::esp, Cipher::aes_ctr, key(20, 8), Integrity::aes_xcbc_96, key(16, 9), nullptr);
  esn.esn = true;
  esn.replay_window = 4096;
  v.push_back(std::move(esn));
  v.push_back(sa(0x800, IpsecProtocol::ah, Cipher::null, {}, Integrity::hmac_sha512_256, key(64, 10), nullptr));
  return ipsec::Sad(std::move(v));
}

constexpr std::uint32_t kLinkTypes[8] = {0, 1, 101, 108, 113, 228, 229, 276};

void ipv4_header(std::vector<std::uint8_t>& p, std::size_t payload) {
  const std::uint8_t h[20] = {0x45,
                              0,
                              static_cast<std::uint8_t>((20 + payload) >> 8),
                              static_cast<std::uint8_t>(20 + payload),
                              0,
                              1,
                              0,
                              0,
                              64,
                              50,
                              0,
                              0,
                              192,
                              0,
                              2,
                              1,
                              192,
                              0,
                              2,
                              2};
  p.assign(h, h + 20);
}

void put32(std::vector<std::uint8_t>& p, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) p.push_back(static_cast<std::uint8_t>(v >> s));
}

// ESP with null encryption: SPI, sequence, the fuzzer's bytes as cleartext
// (payload, padding, pad length, next header), then a correct ICV.
std::vector<std::uint8_t> null_hmac_esp(const std::uint8_t* d, std::size_t n, std::uint32_t seq) {
  std::vector<std::uint8_t> esp;
  put32(esp, 0x100);
  put32(esp, seq);
  esp.insert(esp.end(), d, d + n);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kAuthKey, 32, esp.data(), esp.size(), mac, &len);
  esp.insert(esp.end(), mac, mac + 16);
  std::vector<std::uint8_t> p;
  ipv4_header(p, esp.size());
  p.insert(p.end(), esp.begin(), esp.end());
  return p;
}

std::vector<std::uint8_t> gcm_esp(const std::uint8_t* d, std::size_t n, std::uint32_t seq) {
  std::vector<std::uint8_t> esp;
  put32(esp, 0x200);
  put32(esp, seq);
  const std::uint8_t iv[8] = {1, 2, 3, 4, 5, 6, 7, static_cast<std::uint8_t>(seq)};
  esp.insert(esp.end(), iv, iv + 8);
  std::uint8_t nonce[12];
  std::memcpy(nonce, kGcmKey + 16, 4);
  std::memcpy(nonce + 4, iv, 8);
  std::vector<std::uint8_t> ct(n + 16);
  int l = 0;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), nullptr, kGcmKey, nonce);
  EVP_EncryptUpdate(c, nullptr, &l, esp.data(), 8);
  if (n > 0) EVP_EncryptUpdate(c, ct.data(), &l, d, static_cast<int>(n));
  EVP_EncryptFinal_ex(c, ct.data() + n, &l);
  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, ct.data() + n);
  EVP_CIPHER_CTX_free(c);
  esp.insert(esp.end(), ct.begin(), ct.end());
  std::vector<std::uint8_t> p;
  ipv4_header(p, esp.size());
  p.insert(p.end(), esp.begin(), esp.end());
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 65535) return 0;
  ipsec::Sad sad = make_sad();
  capture::Verifier verifier(sad, true);
  capture::FrameResult result;
  std::vector<std::uint8_t> frame;
  std::uint32_t linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
  const std::uint8_t mode = data[0];
  if (mode < 8) {
    linktype = kLinkTypes[mode];
    frame.assign(data + 1, data + size);
  } else if (mode < 12) {
    frame = null_hmac_esp(data + 1, size - 1, 1u + mode % 4);
  } else if (mode < 16) {
    frame = gcm_esp(data + 1, size - 1, 1u + mode % 4);
  } else {
    return 0;
  }
  dissect::Frame f;
  f.number = 1;
  f.linktype = linktype;
  f.orig_len = static_cast<std::uint32_t>(frame.size());
  // A copy of exactly the frame's size, so ASan sees any read past its end.
  std::vector<std::uint8_t> exact(frame.begin(), frame.end());
  f.data = dissect::Bytes(exact.data(), exact.size());
  verifier.process(f, result);
  verifier.process(f, result);  // the same frame again: the replay path
  return 0;
}
