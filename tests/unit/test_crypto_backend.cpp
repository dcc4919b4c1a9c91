// The ESP crypto backends: names, the choice `auto` makes, and agreement of
// libipsec-mb with OpenSSL on every suite both implement (the published
// packet vectors in test_vectors.cpp cover only the AEADs and plain CBC).
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>

#include "ipsentry/ipsec/crypto_backend.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace ipsentry {
namespace {

using filters::Cipher;
using filters::Integrity;
using ipsec::CryptoBackend;
using ipsec::CryptoChoice;
using ipsec::EspTransform;

TEST(CryptoChoice, NamesRoundTripAndBadNamesAreRefused) {
  for (auto c : {CryptoChoice::auto_, CryptoChoice::openssl, CryptoChoice::ipsec_mb}) {
    EXPECT_EQ(ipsec::find_crypto_choice(ipsec::to_string(c)), c);
  }
  EXPECT_EQ(ipsec::find_crypto_choice("ipsec_mb"), std::nullopt);
  EXPECT_EQ(ipsec::parse_crypto_choice("openssl"), CryptoChoice::openssl);
  try {
    (void)ipsec::parse_crypto_choice("fast");
    FAIL() << "accepted 'fast'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'fast'"), std::string::npos) << e.what();
  }
  if (ipsec::crypto_availability().ipsec_mb_built) {
    EXPECT_EQ(ipsec::parse_crypto_choice("ipsec-mb"), CryptoChoice::ipsec_mb);
    EXPECT_NE(ipsec::crypto_availability().describe().find("libipsec-mb 1."), std::string::npos)
        << ipsec::crypto_availability().describe();
  } else {
    try {
      (void)ipsec::parse_crypto_choice("ipsec-mb");
      FAIL() << "accepted ipsec-mb without libipsec-mb";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("built without libipsec-mb"), std::string::npos) << e.what();
    }
    EXPECT_EQ(ipsec::crypto_availability().describe(), "libipsec-mb: not built");
  }
}

TEST(CryptoChoice, OpensslWhenAskedFor) {
  auto sa = test::esp_sa(Cipher::aes_gcm_16, std::vector<std::uint8_t>(20, 7));
  EspTransform t(sa, CryptoChoice::openssl);
  EXPECT_EQ(t.backend(), CryptoBackend::openssl);
  EXPECT_EQ(t.backend_reason(), "--crypto openssl");
}

// The rest needs libipsec-mb (and AES-NI); without, each test says it skipped.
bool usable() { return ipsec::crypto_availability().ipsec_mb_usable && ipsec::crypto_availability().aesni; }

TEST(CryptoChoice, AutoTakesIpsecMbForGcmAndOpensslForCcm192) {
  if (!usable()) GTEST_SKIP() << ipsec::crypto_availability().describe();
  std::vector<filters::SaConfig> sas;
  sas.push_back(test::esp_sa(Cipher::aes_gcm_16, std::vector<std::uint8_t>(20, 1)));
  sas.push_back(test::esp_sa(Cipher::aes_ccm_16, std::vector<std::uint8_t>(27, 2)));  // 24-byte key + 3 salt
  sas.push_back(test::esp_sa(Cipher::aes_ccm_16, std::vector<std::uint8_t>(19, 3)));
  ipsec::Sad sad(std::move(sas));
  EXPECT_EQ(sad.crypto(), CryptoChoice::auto_);
  EXPECT_EQ(sad.at(0).esp()->backend(), CryptoBackend::ipsec_mb) << sad.at(0).esp()->backend_reason();
  EXPECT_EQ(sad.at(0).esp()->backend_reason(), "");
  EXPECT_EQ(sad.at(1).esp()->backend(), CryptoBackend::openssl);
  EXPECT_EQ(sad.at(1).esp()->backend_reason(), "aes-ccm-16 with a 192-bit key is not in libipsec-mb");
  EXPECT_EQ(sad.at(2).esp()->backend(), CryptoBackend::ipsec_mb) << sad.at(2).esp()->backend_reason();
}

TEST(CryptoChoice, ExplicitIpsecMbFallsBackWithAReason) {
  if (!usable()) GTEST_SKIP() << ipsec::crypto_availability().describe();
  auto des = test::esp_sa(Cipher::tdes_cbc, std::vector<std::uint8_t>(24, 5), Integrity::hmac_sha1_96,
                          std::vector<std::uint8_t>(20, 6));
  EspTransform t(des, CryptoChoice::ipsec_mb);
  EXPECT_EQ(t.backend(), CryptoBackend::openssl);
  EXPECT_EQ(t.backend_reason(), "3des-cbc is left to OpenSSL (deprecated)");
  // A suite `auto` leaves to OpenSSL runs on libipsec-mb when asked for.
  auto sha512 = test::esp_sa(Cipher::aes_cbc, std::vector<std::uint8_t>(16, 5), Integrity::hmac_sha512_256,
                             std::vector<std::uint8_t>(64, 6));
  EspTransform a(sha512, CryptoChoice::auto_);
  EspTransform e(sha512, CryptoChoice::ipsec_mb);
  EXPECT_EQ(a.backend(), CryptoBackend::openssl);
  EXPECT_NE(a.backend_reason().find("auto: "), std::string::npos) << a.backend_reason();
  EXPECT_EQ(e.backend(), CryptoBackend::ipsec_mb) << e.backend_reason();
}

struct Suite {
  Cipher c;
  std::size_t key;  // incl. salt
  Integrity i;
  std::size_t auth_key;
};

// Every combination libipsec-mb takes, each with and without ESN.
const Suite kSuites[] = {
    {Cipher::aes_gcm_8, 20, Integrity::none, 0},
    {Cipher::aes_gcm_12, 28, Integrity::none, 0},
    {Cipher::aes_gcm_16, 36, Integrity::none, 0},
    {Cipher::aes_gcm_16_iiv, 20, Integrity::none, 0},
    {Cipher::aes_gmac, 20, Integrity::none, 0},
    {Cipher::aes_gmac, 28, Integrity::none, 0},
    {Cipher::aes_gmac, 36, Integrity::none, 0},
    {Cipher::aes_ccm_8, 19, Integrity::none, 0},
    {Cipher::aes_ccm_12, 35, Integrity::none, 0},
    {Cipher::aes_ccm_16, 19, Integrity::none, 0},
    {Cipher::aes_ccm_8_iiv, 19, Integrity::none, 0},
    {Cipher::chacha20_poly1305, 36, Integrity::none, 0},
    {Cipher::chacha20_poly1305_iiv, 36, Integrity::none, 0},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha1_96, 20},
    {Cipher::aes_cbc, 24, Integrity::hmac_sha1_160, 20},
    {Cipher::aes_cbc, 32, Integrity::hmac_sha256_128, 32},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha256_96, 32},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha384_192, 48},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha512_256, 64},
    {Cipher::aes_cbc, 16, Integrity::aes_xcbc_96, 16},
    {Cipher::aes_cbc, 16, Integrity::hmac_md5_96, 16},
    {Cipher::aes_cbc, 16, Integrity::none, 0},
    {Cipher::aes_cbc, 16, Integrity::unchecked_96, 0},
    {Cipher::aes_ctr, 20, Integrity::hmac_sha1_96, 20},
    {Cipher::aes_ctr, 36, Integrity::hmac_sha256_128, 32},
    {Cipher::aes_ctr, 28, Integrity::none, 0},
    {Cipher::null, 0, Integrity::hmac_sha256_128, 32},
    {Cipher::null, 0, Integrity::aes_xcbc_96, 16},
    {Cipher::aes_cbc, 16, Integrity::hmac_sha1_96, 100},
};

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed * 31 + i * 7 + (i >> 3));
  return v;
}

TEST(CryptoBackends, AgreeOnEverySuiteBothDirections) {
  if (!usable()) GTEST_SKIP() << ipsec::crypto_availability().describe();
  for (const auto& s : kSuites) {
    for (bool esn : {false, true}) {
      auto sa = test::esp_sa(s.c, bytes(s.key, 1), s.i, bytes(s.auth_key, 2), esn);
      SCOPED_TRACE(std::string(filters::cipher_info(s.c).name) + "/" + std::string(filters::integrity_info(s.i).name) +
                   " key " + std::to_string(s.key) + (esn ? " esn" : ""));
      EspTransform o(sa, CryptoChoice::openssl);
      EspTransform m(sa, CryptoChoice::ipsec_mb);
      ASSERT_EQ(m.backend(), CryptoBackend::ipsec_mb) << m.backend_reason();
      ASSERT_EQ(o.iv_len(), m.iv_len());
      ASSERT_EQ(o.icv_len(), m.icv_len());
      const std::size_t align = o.alignment();
      for (std::size_t plain : {align, 4 * align, 1024 + align}) {
        const std::uint64_t seq = 0x1234'0000'0007ull + plain;
        const auto iv = bytes(o.iv_len(), 9);
        std::vector<std::uint8_t> a(8 + o.iv_len() + plain + o.icv_len());
        std::memcpy(a.data(), "\x00\x00\x10\x00", 4);
        dissect::store_be32(a.data() + 4, static_cast<std::uint32_t>(seq));
        auto pt = bytes(plain, 3);
        std::memcpy(a.data() + 8 + o.iv_len(), pt.data(), plain);
        auto b = a;
        ASSERT_TRUE(o.encrypt(a, seq, o.iv_len() ? iv.data() : nullptr));
        ASSERT_TRUE(m.encrypt(b, seq, m.iv_len() ? iv.data() : nullptr));
        ASSERT_EQ(a, b) << "encrypt, " << plain << " bytes";
        std::vector<std::uint8_t> out_o(a.size());
        std::vector<std::uint8_t> out_m(a.size());
        std::size_t no = 0;
        std::size_t nm = 0;
        ASSERT_EQ(o.decrypt(a, seq, out_o.data(), no, nullptr), EspTransform::Status::ok);
        ASSERT_EQ(m.decrypt(a, seq, out_m.data(), nm, nullptr), EspTransform::Status::ok);
        ASSERT_EQ(nm, plain);
        EXPECT_EQ(std::vector<std::uint8_t>(out_m.begin(), out_m.begin() + static_cast<long>(nm)), pt);
        if (!o.checks_integrity()) continue;
        // A changed byte anywhere, and (with ESN) another seq-hi, fail alike.
        for (std::size_t at : {std::size_t{1}, a.size() / 2, a.size() - 1}) {
          auto bad = a;
          bad[at] ^= 0x20;
          ipsec::IcvMismatch mo;
          ipsec::IcvMismatch mm;
          const auto so = o.decrypt(bad, seq, out_o.data(), no, &mo);
          const auto sm = m.decrypt(bad, seq, out_m.data(), nm, &mm);
          EXPECT_NE(sm, EspTransform::Status::ok) << "byte " << at;
          EXPECT_EQ(so, sm) << "byte " << at;
          EXPECT_EQ(mo.len, mm.len);
          EXPECT_EQ(mo.received, mm.received);
          EXPECT_TRUE(mm.expected_known);
          if (mo.expected_known) {
            EXPECT_EQ(mo.expected, mm.expected) << "byte " << at;
          }
        }
        if (esn) {
          EXPECT_NE(m.decrypt(a, seq + (1ull << 32), out_m.data(), nm, nullptr), EspTransform::Status::ok);
        }
      }
    }
  }
}

}  // namespace
}  // namespace ipsentry
