// The ESP crypto backends against each other: the same SA (algorithms, key
// and ESN from the input) on OpenSSL and on libipsec-mb must give the same
// verdict, the same plaintext and the same ICV report for every packet, and
// the same bytes when encrypting. Input:
//   byte 0        suite (index into kSuites, modulo)
//   byte 1        bit 0: ESN
//   bytes 2..101  key material: cipher key (incl. salt) from byte 2, the
//                 integrity key from byte 38
//   then records: op (1 byte), seq (8), length (2, big-endian), bytes
//     op even: decrypt the bytes as a whole ESP packet (SPI onwards)
//     op odd:  encrypt the bytes as a plaintext (padded to the alignment)
//              with the IV from the input, compare, then decrypt each
//              backend's packet with the other backend
// Without libipsec-mb (or AES-NI) only the OpenSSL side runs.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "ipsentry/dissect/wire.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"

namespace {

using namespace ipsentry;
using filters::Cipher;
using filters::Integrity;
using ipsec::EspTransform;

struct Suite {
  Cipher c;
  std::uint8_t key;  // incl. salt
  Integrity i;
  std::uint8_t auth_key;
};

// Every combination libipsec-mb does (and CCM-192, which falls back).
constexpr Suite kSuites[] = {
    {Cipher::aes_gcm_8, 20, Integrity::none, 0},
    {Cipher::aes_gcm_12, 28, Integrity::none, 0},
    {Cipher::aes_gcm_16, 36, Integrity::none, 0},
    {Cipher::aes_gcm_16_iiv, 20, Integrity::none, 0},
    {Cipher::aes_gmac, 20, Integrity::none, 0},
    {Cipher::aes_gmac, 36, Integrity::none, 0},
    {Cipher::aes_ccm_8, 19, Integrity::none, 0},
    {Cipher::aes_ccm_16, 35, Integrity::none, 0},
    {Cipher::aes_ccm_12, 27, Integrity::none, 0},
    {Cipher::aes_ccm_8_iiv, 19, Integrity::none, 0},
    {Cipher::chacha20_poly1305, 36, Integrity::none, 0},
    {Cipher::chacha20_poly1305_iiv, 36, Integrity::none, 0},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha1_96, 20},
    {Cipher::aes_cbc, 32, Integrity::hmac_sha256_128, 32},
    {Cipher::aes_cbc, 24, Integrity::hmac_sha256_96, 32},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha384_192, 48},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha512_256, 64},
    {Cipher::aes_cbc, 16, Integrity::aes_xcbc_96, 16},
    {Cipher::aes_cbc, 16, Integrity::hmac_md5_96, 16},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha1_160, 20},
    {Cipher::aes_cbc, 16, Integrity::none, 0},
    {Cipher::aes_ctr, 20, Integrity::hmac_sha1_96, 20},
    {Cipher::aes_ctr, 36, Integrity::none, 0},
    {Cipher::null, 0, Integrity::hmac_sha256_128, 32},
    {Cipher::null, 0, Integrity::aes_xcbc_96, 16},
    {Cipher::aes_cbc, 16, Integrity::unchecked_96, 0},
};

[[noreturn]] void differ(const char* what) {
  std::fprintf(stderr, "backends differ: %s\n", what);
  std::abort();
}

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  bool take(std::size_t k, const std::uint8_t*& out) {
    if (n < k) return false;
    out = p;
    p += k;
    n -= k;
    return true;
  }
};

struct Decrypted {
  EspTransform::Status status;
  std::size_t len = 0;
  ipsec::IcvMismatch mm;
};

Decrypted open(EspTransform& t, const std::vector<std::uint8_t>& esp, std::uint64_t seq, std::uint8_t* out) {
  Decrypted d;
  d.status = t.decrypt(esp, seq, out, d.len, &d.mm);
  return d;
}

void compare(const Decrypted& a, const Decrypted& b, const std::uint8_t* out_a, const std::uint8_t* out_b) {
  if (a.status != b.status) differ("status");
  if (a.len != b.len) differ("plaintext length");
  if (a.status == EspTransform::Status::ok && std::memcmp(out_a, out_b, a.len) != 0) differ("plaintext");
  if (a.status == EspTransform::Status::icv_mismatch || a.status == EspTransform::Status::tag_mismatch) {
    if (a.mm.len != b.mm.len || a.mm.received != b.mm.received) differ("received ICV");
    // libipsec-mb always computes the tag; OpenSSL's CCM does not report it.
    if (!b.mm.expected_known) differ("libipsec-mb without the expected ICV");
    if (a.mm.expected_known && std::memcmp(a.mm.expected.data(), b.mm.expected.data(), a.mm.len) != 0) {
      differ("expected ICV");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kKeys = 2 + 36 + 64;
  if (size < kKeys) return 0;
  const Suite& s = kSuites[data[0] % std::size(kSuites)];
  const bool esn = (data[1] & 1) != 0;
  filters::SaConfig sa;
  sa.name = "fuzz";
  sa.spi = 0x1000;
  sa.protocol = filters::IpsecProtocol::esp;
  sa.cipher = s.c;
  sa.integrity = s.i;
  sa.esn = esn;
  sa.enc_key = filters::SecretBytes(std::vector<std::uint8_t>(data + 2, data + 2 + s.key));
  sa.auth_key = filters::SecretBytes(std::vector<std::uint8_t>(data + 2 + 36, data + 2 + 36 + s.auth_key));
  EspTransform ossl(sa, ipsec::CryptoChoice::openssl);
  std::unique_ptr<EspTransform> mb;
  if (ipsec::crypto_availability().ipsec_mb_built) {
    mb = std::make_unique<EspTransform>(sa, ipsec::CryptoChoice::ipsec_mb);
    if (mb->backend() != ipsec::CryptoBackend::ipsec_mb) mb.reset();  // CCM-192, or no AES-NI
  }
  Reader r{data + kKeys, size - kKeys};
  std::vector<std::uint8_t> out_a(70000);
  std::vector<std::uint8_t> out_b(70000);
  const std::uint8_t* op = nullptr;
  const std::uint8_t* seqb = nullptr;
  const std::uint8_t* lenb = nullptr;
  const std::uint8_t* body = nullptr;
  while (r.take(1, op) && r.take(8, seqb) && r.take(2, lenb)) {
    std::uint64_t seq = 0;
    std::memcpy(&seq, seqb, 8);
    if (!esn) seq &= 0xffffffffu;
    std::size_t len = dissect::load_be16(lenb);
    if (len > r.n) len = r.n;
    if (!r.take(len, body)) break;
    if ((op[0] & 1) == 0) {
      std::vector<std::uint8_t> esp(body, body + len);
      auto a = open(ossl, esp, seq, out_a.data());
      if (mb) compare(a, open(*mb, esp, seq, out_b.data()), out_a.data(), out_b.data());
      continue;
    }
    // Encrypt: SPI, seq, IV, plaintext padded to the alignment, ICV.
    const std::size_t iv_len = ossl.iv_len();
    const std::size_t align = ossl.alignment();
    const std::size_t plain = (len + 2 + align - 1) / align * align;
    std::vector<std::uint8_t> a(8 + iv_len + plain + ossl.icv_len(), 0);
    dissect::store_be32(a.data(), 0x1000);
    dissect::store_be32(a.data() + 4, static_cast<std::uint32_t>(seq));
    std::memcpy(a.data() + 8 + iv_len, body, len);
    std::uint8_t iv[16] = {};
    std::memcpy(iv, seqb, 8);
    std::memcpy(iv + 8, lenb, 2);
    auto b = a;
    const bool ea = ossl.encrypt(a, seq, iv_len != 0 ? iv : nullptr);
    if (!mb) continue;
    const bool eb = mb->encrypt(b, seq, iv_len != 0 ? iv : nullptr);
    if (ea != eb) differ("encrypt status");
    if (!ea) continue;
    if (a != b) differ("ciphertext");
    auto da = open(ossl, b, seq, out_a.data());
    auto db = open(*mb, a, seq, out_b.data());
    if (da.status != EspTransform::Status::ok || db.status != EspTransform::Status::ok) differ("round trip");
    compare(da, db, out_a.data(), out_b.data());
    if (std::memcmp(out_a.data(), a.data() + 8 + iv_len, 0) != 0 || std::memcmp(out_b.data(), body, len) != 0) {
      differ("round trip plaintext");
    }
  }
  return 0;
}
