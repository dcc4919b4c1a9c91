// IKE cryptography (ike/crypto.hpp) against independent references: the
// published vectors of RFC 7748, RFC 5903 and RFC 4231, OpenSSL's own copies
// of the RFC 2409/3526 primes, and the values strongSwan's charon logged in
// real negotiations (tests/unit/data/ike_charon_fixture.txt).
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/crypto_testing.hpp"
#include "test_support.hpp"

namespace {

using namespace ipsentry;
using filters::Cipher;
using filters::DhGroup;
using filters::Integrity;
using filters::Prf;
using ike::Buffer;
using ike::Bytes;
using test::ascii;
using test::hex;
using Vec = std::vector<std::uint8_t>;

Vec vec(const filters::SecretBytes& s) { return Vec(s.bytes().begin(), s.bytes().end()); }
Vec cat(std::initializer_list<Vec> parts) {
  Vec out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A deterministic Random: tests see exactly which IV went out.
class CountingRandom final : public ike::Random {
 public:
  void fill(std::span<std::uint8_t> out) override {
    for (auto& b : out) b = next_++;
  }

 private:
  std::uint8_t next_ = 0x40;
};

// ---- Diffie-Hellman ------------------------------------------------------

TEST(IkeDh, Rfc7748X25519Vectors) {
  // RFC 7748 section 6.1.
  const Vec a = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Vec a_pub = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  const Vec b = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const Vec b_pub = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const Vec k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  auto alice = ike::testing::key_exchange_with_private(DhGroup::curve25519, a);
  auto bob = ike::testing::key_exchange_with_private(DhGroup::curve25519, b);
  EXPECT_EQ(alice->public_value(), a_pub);
  EXPECT_EQ(bob->public_value(), b_pub);
  std::string why;
  auto ka = alice->shared_secret(b_pub, why);
  ASSERT_TRUE(ka) << why;
  EXPECT_EQ(vec(*ka), k);
  auto kb = bob->shared_secret(a_pub, why);
  ASSERT_TRUE(kb) << why;
  EXPECT_EQ(vec(*kb), k);
}

TEST(IkeDh, X25519RefusesLowOrderPointsAndWrongLengths) {
  auto x = ike::KeyExchange::create(DhGroup::curve25519);
  EXPECT_EQ(x->public_value().size(), 32u);
  EXPECT_EQ(ike::KeyExchange::public_length(DhGroup::curve25519), 32u);
  std::string why;
  // u = 0 and u = 1 are points of small order: every private value gives
  // an all-zero result (RFC 7748 6.1, RFC 8031 2.3).
  Vec zero(32, 0);
  EXPECT_FALSE(x->shared_secret(zero, why));
  EXPECT_NE(why.find("all zero"), std::string::npos) << why;
  Vec one(32, 0);
  one[0] = 1;
  why.clear();
  EXPECT_FALSE(x->shared_secret(one, why));
  EXPECT_NE(why.find("all zero"), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(x->shared_secret(Vec(31, 9), why));
  EXPECT_NE(why.find("31 bytes"), std::string::npos) << why;
  // Two fresh exchanges agree.
  auto y = ike::KeyExchange::create(DhGroup::curve25519);
  auto s1 = x->shared_secret(y->public_value(), why);
  auto s2 = y->shared_secret(x->public_value(), why);
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(*s1, *s2);
}

struct EcpVector {
  DhGroup group;
  const char* i;
  const char* gix;
  const char* giy;
  const char* r;
  const char* grx;
  const char* gry;
  const char* girx;
};

// RFC 5903 sections 8.1 and 8.2.
const EcpVector kEcp[] = {
    {DhGroup::ecp256, "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433",
     "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180",
     "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
     "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53",
     "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63",
     "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
     "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE"},
    {DhGroup::ecp384,
     "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194",
     "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA",
     "9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C",
     "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC",
     "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571",
     "DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C",
     "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746"},
};

TEST(IkeDh, Rfc5903EcdhVectors) {
  for (const auto& v : kEcp) {
    SCOPED_TRACE(static_cast<int>(v.group));
    auto ini = ike::testing::key_exchange_with_private(v.group, hex(v.i));
    auto res = ike::testing::key_exchange_with_private(v.group, hex(v.r));
    // The KE payload carries x | y without the 0x04 marker (RFC 5903 7).
    const Vec gi = cat({hex(v.gix), hex(v.giy)});
    const Vec gr = cat({hex(v.grx), hex(v.gry)});
    EXPECT_EQ(ini->public_value(), gi);
    EXPECT_EQ(res->public_value(), gr);
    EXPECT_EQ(ike::KeyExchange::public_length(v.group), gi.size());
    std::string why;
    auto s1 = ini->shared_secret(gr, why);
    ASSERT_TRUE(s1) << why;
    EXPECT_EQ(vec(*s1), hex(v.girx));  // the x coordinate alone
    auto s2 = res->shared_secret(gi, why);
    ASSERT_TRUE(s2) << why;
    EXPECT_EQ(vec(*s2), hex(v.girx));
  }
}

TEST(IkeDh, EcpRefusesPointsOffTheCurve) {
  for (const auto& v : kEcp) {
    auto x = ike::KeyExchange::create(v.group);
    std::string why;
    Vec off = cat({hex(v.grx), hex(v.gry)});
    off.back() ^= 1;
    EXPECT_FALSE(x->shared_secret(off, why));
    EXPECT_NE(why.find("not a point on the curve"), std::string::npos) << why;
    why.clear();
    EXPECT_FALSE(x->shared_secret(Vec(off.size(), 0), why)) << "the all-zero value is no point either";
    why.clear();
    // With the 0x04 marker the value is one byte too long.
    EXPECT_FALSE(x->shared_secret(cat({Vec{4}, hex(v.grx), hex(v.gry)}), why));
    EXPECT_NE(why.find("bytes, not"), std::string::npos) << why;
  }
}

struct ModpCase {
  DhGroup group;
  BIGNUM* (*prime)(BIGNUM*);
  std::size_t len;
};

TEST(IkeDh, ModpGroupsAgreeAndRefuseSmallSubgroupValues) {
  const ModpCase cases[] = {{DhGroup::modp1024, BN_get_rfc2409_prime_1024, 128},
                            {DhGroup::modp2048, BN_get_rfc3526_prime_2048, 256},
                            {DhGroup::modp3072, BN_get_rfc3526_prime_3072, 384}};
  for (const auto& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.group));
    auto a = ike::KeyExchange::create(c.group);
    auto b = ike::KeyExchange::create(c.group);
    ASSERT_EQ(a->public_value().size(), c.len);
    EXPECT_EQ(ike::KeyExchange::public_length(c.group), c.len);
    EXPECT_EQ(a->group(), c.group);
    std::string why;
    auto s1 = a->shared_secret(b->public_value(), why);
    ASSERT_TRUE(s1) << why;
    auto s2 = b->shared_secret(a->public_value(), why);
    ASSERT_TRUE(s2) << why;
    EXPECT_EQ(*s1, *s2);
    EXPECT_EQ(s1->size(), c.len);  // padded to the prime's length
    EXPECT_NE(a->public_value(), b->public_value());

    // Our public value lies in the prime-order subgroup of the RFC's own
    // prime (OpenSSL's copy): y^q = 1 mod p with q = (p-1)/2. A value of
    // any other group would fail this.
    BIGNUM* p = c.prime(nullptr);
    BIGNUM* q = BN_new();
    BIGNUM* y = BN_bin2bn(a->public_value().data(), static_cast<int>(c.len), nullptr);
    BIGNUM* r = BN_new();
    BN_CTX* ctx = BN_CTX_new();
    ASSERT_TRUE(p && q && y && r && ctx);
    ASSERT_EQ(BN_rshift1(q, p), 1);
    ASSERT_EQ(BN_mod_exp(r, y, q, p, ctx), 1);
    EXPECT_TRUE(BN_is_one(r));

    // 0, 1, p-1 and p itself are refused (RFC 6989 2.1).
    Vec pv(c.len);
    ASSERT_EQ(BN_bn2binpad(p, pv.data(), static_cast<int>(c.len)), static_cast<int>(c.len));
    Vec pm1 = pv;
    pm1.back() -= 1;  // p is odd
    Vec one(c.len, 0);
    one.back() = 1;
    for (const Vec& bad : {Vec(c.len, 0), one, pm1, pv, Vec(c.len, 0xff)}) {
      why.clear();
      EXPECT_FALSE(a->shared_secret(bad, why));
      EXPECT_NE(why.find("RFC 6989"), std::string::npos) << why;
    }
    why.clear();
    EXPECT_FALSE(a->shared_secret(Vec(c.len - 1, 5), why));
    EXPECT_NE(why.find("bytes, not"), std::string::npos) << why;
    BN_free(p);
    BN_free(q);
    BN_free(y);
    BN_free(r);
    BN_CTX_free(ctx);
  }
}

TEST(IkeDh, GroupNoneIsRefused) { EXPECT_THROW((void)ike::KeyExchange::create(DhGroup::none), ike::CryptoError); }

// ---- prf and prf+ --------------------------------------------------------

TEST(IkePrf, HmacMatchesRfc4231) {
  const Vec k1(20, 0x0b);
  const Vec d1 = ascii("Hi There");
  EXPECT_EQ(ike::prf(Prf::hmac_sha256, k1, {d1}),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  EXPECT_EQ(ike::prf(Prf::hmac_sha384, k1, {d1}), hex("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
                                                      "faea9ea9076ede7f4af152e8b2fa9cb6"));
  EXPECT_EQ(ike::prf(Prf::hmac_sha512, k1, {d1}),
            hex("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"));
  // Test case 2, the data given in two parts.
  EXPECT_EQ(ike::prf(Prf::hmac_sha384, ascii("Jefe"), {ascii("what do ya "), ascii("want for nothing?")}),
            hex("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                "8e2240ca5e69e2c78b3239ecfab21649"));
  // Test case 6: a key longer than the hash's block.
  const Vec k6(131, 0xaa);
  const Vec d6 = ascii("Test Using Larger Than Block-Size Key - Hash Key First");
  EXPECT_EQ(ike::prf(Prf::hmac_sha256, k6, {d6}),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
  EXPECT_EQ(ike::prf(Prf::hmac_sha512, k6, {d6}),
            hex("80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"));
}

TEST(IkePrf, PrfPlusIsTheChainOfRfc7296) {
  const Vec key = hex("000102030405060708090a0b0c0d0e0f");
  const Vec seed = ascii("seed bytes");
  const auto out = ike::prf_plus(Prf::hmac_sha256, key, seed, 100);
  ASSERT_EQ(out.size(), 100u);
  // T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ...
  const Vec t1 = ike::prf(Prf::hmac_sha256, key, {seed, Vec{1}});
  const Vec t2 = ike::prf(Prf::hmac_sha256, key, {t1, seed, Vec{2}});
  const Vec t3 = ike::prf(Prf::hmac_sha256, key, {t2, seed, Vec{3}});
  const Vec t4 = ike::prf(Prf::hmac_sha256, key, {t3, seed, Vec{4}});
  Vec expect = cat({t1, t2, t3, t4});
  expect.resize(100);
  EXPECT_EQ(vec(out), expect);
  // A shorter request is a prefix of a longer one.
  EXPECT_EQ(vec(ike::prf_plus(Prf::hmac_sha256, key, seed, 7)), Vec(expect.begin(), expect.begin() + 7));
  // 255 rounds at most (the counter is one byte).
  EXPECT_EQ(ike::prf_plus(Prf::hmac_sha256, key, seed, 255 * 32).size(), 255u * 32);
  EXPECT_TRUE(ike::prf_plus(Prf::hmac_sha256, key, seed, 255 * 32 + 1).empty());
  EXPECT_EQ(ike::prf_plus(Prf::hmac_sha512, key, seed, 255 * 64).size(), 255u * 64);
  EXPECT_TRUE(ike::prf_plus(Prf::hmac_sha1, key, seed, 0).empty());
}

TEST(IkePrf, V1KeymatIsTheChainOfRfc2409) {
  const Vec skeyid_d = hex("1122334455667788990011223344556677889900");
  const Vec spi = hex("c0ffee01");
  const Vec ni = ascii("initiator nonce.");
  const Vec nr = ascii("responder nonce.");
  const auto km = ike::v1_keymat(Prf::hmac_sha1, skeyid_d, 3, spi, ni, nr, 36);
  const Vec k1 = ike::prf(Prf::hmac_sha1, skeyid_d, {Vec{3}, spi, ni, nr});
  const Vec k2 = ike::prf(Prf::hmac_sha1, skeyid_d, {k1, Vec{3}, spi, ni, nr});
  Vec expect = cat({k1, k2});
  expect.resize(36);
  EXPECT_EQ(vec(km), expect);
}

TEST(IkePrf, HashIsThePrfsHash) {
  EXPECT_EQ(ike::hash(Prf::hmac_sha256, {ascii("a"), ascii("bc")}),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT_EQ(ike::hash(Prf::hmac_sha1, {ascii("abc")}), hex("a9993e364706816aba3e25717850c26c9cd0d89d"));
}

// ---- key schedules -------------------------------------------------------

TEST(IkeKeySchedule, SuiteLengthsAndNames) {
  ike::IkeSuite gcm{{Cipher::aes_gcm_16, 32}, Integrity::none, Prf::hmac_sha384, DhGroup::ecp384};
  EXPECT_EQ(gcm.encryption_key_len(), 36u);
  EXPECT_EQ(gcm.integrity_key_len(), 0u);
  EXPECT_EQ(gcm.str(), "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384");
  ike::IkeSuite cbc{{Cipher::aes_cbc, 16}, Integrity::hmac_sha256_128, Prf::hmac_sha256, DhGroup::modp2048};
  EXPECT_EQ(cbc.encryption_key_len(), 16u);
  EXPECT_EQ(cbc.integrity_key_len(), 32u);
  EXPECT_EQ(cbc.str(), "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048");
  ike::IkeSuite chacha{{Cipher::chacha20_poly1305, 32}, Integrity::none, Prf::hmac_sha512, DhGroup::curve25519};
  EXPECT_EQ(chacha.encryption_key_len(), 36u);
  EXPECT_EQ(chacha.str(), "CHACHA20_POLY1305/PRF_HMAC_SHA2_512/CURVE_25519");
  ike::IkeSuite ctr{{Cipher::aes_ctr, 24}, Integrity::hmac_sha384_192, Prf::hmac_sha384, DhGroup::none};
  EXPECT_EQ(ctr.encryption_key_len(), 28u);
  EXPECT_EQ(ctr.integrity_key_len(), 48u);
  EXPECT_EQ(ctr.str(), "AES_CTR-192/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384");
  ike::IkeSuite tdes{{Cipher::tdes_cbc, 24}, Integrity::hmac_sha1_96, Prf::hmac_sha1, DhGroup::modp1024};
  EXPECT_EQ(tdes.encryption_key_len(), 24u);
  EXPECT_EQ(tdes.integrity_key_len(), 20u);
  EXPECT_EQ(tdes.str(), "3DES/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024");
}

TEST(IkeKeySchedule, IkeKeysFollowRfc7296Section2_14) {
  const ike::IkeSuite s{{Cipher::aes_cbc, 32}, Integrity::hmac_sha256_128, Prf::hmac_sha256, DhGroup::ecp256};
  const Vec gir = hex("d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de");
  const Vec ni = ascii("nonce of the initiator");
  const Vec nr = ascii("nonce of the responder");
  const auto k = ike::derive_ike_keys(s, gir, ni, nr, 0x0102030405060708, 0x1112131415161718);
  const Vec skeyseed = ike::prf(Prf::hmac_sha256, cat({ni, nr}), {gir});
  const Vec seed = cat({ni, nr, hex("0102030405060708 1112131415161718")});
  const Vec km = vec(ike::prf_plus(Prf::hmac_sha256, skeyseed, seed, 32 * 3 + 32 * 2 + 32 * 2));
  auto at = [&](std::size_t off, std::size_t n) { return Vec(km.begin() + off, km.begin() + off + n); };
  EXPECT_EQ(vec(k.sk_d), at(0, 32));
  EXPECT_EQ(vec(k.sk_ai), at(32, 32));
  EXPECT_EQ(vec(k.sk_ar), at(64, 32));
  EXPECT_EQ(vec(k.sk_ei), at(96, 32));
  EXPECT_EQ(vec(k.sk_er), at(128, 32));
  EXPECT_EQ(vec(k.sk_pi), at(160, 32));
  EXPECT_EQ(vec(k.sk_pr), at(192, 32));

  // Rekeying: SKEYSEED = prf_old(SK_d (old), g^ir (new) | Ni | Nr), the
  // rest with the new SA's prf.
  const ike::IkeSuite s2{{Cipher::aes_gcm_16, 16}, Integrity::none, Prf::hmac_sha384, DhGroup::ecp384};
  const ike::IkeRekeyFrom old{Prf::hmac_sha256, k.sk_d.bytes()};
  const auto r = ike::derive_ike_keys(s2, gir, nr, ni, 7, 9, &old);
  const Vec skeyseed2 = ike::prf(Prf::hmac_sha256, vec(k.sk_d), {gir, nr, ni});
  const Vec km2 = vec(ike::prf_plus(Prf::hmac_sha384, skeyseed2,
                                    cat({nr, ni, hex("0000000000000007 0000000000000009")}), 48 * 3 + 20 * 2));
  EXPECT_EQ(vec(r.sk_d), Vec(km2.begin(), km2.begin() + 48));
  EXPECT_TRUE(r.sk_ai.empty());
  EXPECT_EQ(vec(r.sk_ei), Vec(km2.begin() + 48, km2.begin() + 68));
  EXPECT_EQ(vec(r.sk_er), Vec(km2.begin() + 68, km2.begin() + 88));
  EXPECT_EQ(vec(r.sk_pr), Vec(km2.end() - 48, km2.end()));
}

TEST(IkeKeySchedule, ChildKeysFollowRfc7296Section2_17) {
  const Vec sk_d = hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  const Vec ni = ascii("Ni Ni Ni Ni Ni Ni");
  const Vec nr = ascii("Nr Nr Nr Nr Nr Nr");
  const auto c = ike::derive_child_keys(Prf::hmac_sha256, sk_d, {}, ni, nr, 20, 32);
  const Vec km = vec(ike::prf_plus(Prf::hmac_sha256, sk_d, cat({ni, nr}), 104));
  EXPECT_EQ(vec(c.encr_i), Vec(km.begin(), km.begin() + 20));
  EXPECT_EQ(vec(c.integ_i), Vec(km.begin() + 20, km.begin() + 52));
  EXPECT_EQ(vec(c.encr_r), Vec(km.begin() + 52, km.begin() + 72));
  EXPECT_EQ(vec(c.integ_r), Vec(km.begin() + 72, km.end()));
  // With PFS the new g^ir comes first in the seed.
  const Vec gir = hex("aabbccdd");
  const auto p = ike::derive_child_keys(Prf::hmac_sha256, sk_d, gir, ni, nr, 36, 0);
  const Vec kp = vec(ike::prf_plus(Prf::hmac_sha256, sk_d, cat({gir, ni, nr}), 72));
  EXPECT_EQ(vec(p.encr_i), Vec(kp.begin(), kp.begin() + 36));
  EXPECT_EQ(vec(p.encr_r), Vec(kp.begin() + 36, kp.end()));
  EXPECT_TRUE(p.integ_i.empty());
}

// ---- the SK payload ------------------------------------------------------

// An IKE header and an SK payload header with the lengths `sealed_size`
// gives, as the codec writes them before calling seal().
Vec message_head(const ike::SkCipher& sk, std::size_t plaintext) {
  Vec m = hex("0102030405060708 1112131415161718 2e202308 00000001 00000000");
  const std::size_t body = sk.sealed_size(plaintext);
  const std::size_t total = 28 + 4 + body;
  m[24] = static_cast<std::uint8_t>(total >> 24);
  m[25] = static_cast<std::uint8_t>(total >> 16);
  m[26] = static_cast<std::uint8_t>(total >> 8);
  m[27] = static_cast<std::uint8_t>(total);
  m.insert(m.end(), {0x23, 0, static_cast<std::uint8_t>((4 + body) >> 8), static_cast<std::uint8_t>(4 + body)});
  return m;
}

struct SuiteCase {
  Cipher cipher;
  std::uint16_t key_bytes;
  Integrity integ;
  std::size_t iv;
  std::size_t icv;
};

const SuiteCase kSuites[] = {
    {Cipher::aes_cbc, 16, Integrity::hmac_sha1_96, 16, 12},
    {Cipher::aes_cbc, 32, Integrity::hmac_sha256_128, 16, 16},
    {Cipher::aes_cbc, 24, Integrity::hmac_sha384_192, 16, 24},
    {Cipher::aes_cbc, 32, Integrity::hmac_sha512_256, 16, 32},
    {Cipher::aes_cbc, 16, Integrity::aes_xcbc_96, 16, 12},
    {Cipher::tdes_cbc, 24, Integrity::hmac_sha1_96, 8, 12},
    {Cipher::aes_ctr, 16, Integrity::hmac_sha256_128, 8, 16},
    {Cipher::aes_ctr, 32, Integrity::hmac_sha512_256, 8, 32},
    {Cipher::aes_gcm_8, 16, Integrity::none, 8, 8},
    {Cipher::aes_gcm_12, 24, Integrity::none, 8, 12},
    {Cipher::aes_gcm_16, 32, Integrity::none, 8, 16},
    {Cipher::aes_ccm_8, 16, Integrity::none, 8, 8},
    {Cipher::aes_ccm_16, 32, Integrity::none, 8, 16},
    {Cipher::chacha20_poly1305, 32, Integrity::none, 8, 16},
};

TEST(IkeSk, SealOpenRoundTripsAndEveryTamperedByteFails) {
  for (const auto& c : kSuites) {
    const ike::IkeSuite suite{{c.cipher, c.key_bytes}, c.integ, Prf::hmac_sha256, DhGroup::none};
    SCOPED_TRACE(suite.str());
    const Vec ek = test::key_of(suite.encryption_key_len(), 3);
    const Vec ak = test::key_of(suite.integrity_key_len(), 77);
    const ike::SkCipher tx(suite, ek, ak);
    const ike::SkCipher rx(suite, ek, ak);
    for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 100u}) {
      const Vec plain = test::key_of(n, 9);
      Vec msg = message_head(tx, n);
      const std::size_t body_off = msg.size();
      CountingRandom rnd;
      tx.seal(msg, plain, rnd);
      ASSERT_EQ(msg.size(), body_off + tx.sealed_size(n));
      const std::size_t block = c.cipher == Cipher::aes_cbc ? 16 : c.cipher == Cipher::tdes_cbc ? 8 : 1;
      EXPECT_EQ(tx.sealed_size(n), c.iv + (n + 1 + block - 1) / block * block + c.icv);
      // The IV is what the Random gave.
      EXPECT_EQ(msg[body_off], 0x40);
      EXPECT_EQ(msg[body_off + c.iv - 1], 0x40 + c.iv - 1);
      std::string why;
      auto out = rx.open(msg, body_off, why);
      ASSERT_TRUE(out) << why;
      EXPECT_EQ(*out, plain);
      if (n != 17) continue;
      // Integrity (or the AEAD's AAD) covers every byte: the IKE header,
      // the SK header, IV, ciphertext, padding and ICV.
      for (std::size_t i = 0; i < msg.size(); ++i) {
        Vec bad = msg;
        bad[i] ^= 0x01;
        why.clear();
        EXPECT_FALSE(rx.open(bad, body_off, why)) << "byte " << i;
      }
      // A truncated message fails too.
      EXPECT_FALSE(rx.open(Bytes(msg).first(msg.size() - 1), body_off, why));
    }
  }
}

TEST(IkeSk, CbcBodyIsRfc7296Section3_14AndOpenAcceptsLongerPadding) {
  const ike::IkeSuite suite{{Cipher::aes_cbc, 16}, Integrity::hmac_sha256_128, Prf::hmac_sha256, DhGroup::none};
  const Vec ek = test::key_of(16, 1);
  const Vec ak = test::key_of(32, 2);
  const ike::SkCipher sk(suite, ek, ak);
  EXPECT_EQ(sk.sealed_size(0), 16u + 16 + 16);
  EXPECT_EQ(sk.sealed_size(15), 16u + 16 + 16);
  EXPECT_EQ(sk.sealed_size(16), 16u + 32 + 16);
  // Built here with OpenSSL's AES-128-CBC and HMAC-SHA-256 (the prf): IV,
  // then 16 bytes of data, 15 of padding (more than needed, which a
  // receiver must accept) and Pad Length 15, encrypted; then the ICV, the
  // HMAC over the whole message truncated to 128 bits.
  Vec msg = message_head(sk, 31);
  const std::size_t off = msg.size();
  const Vec iv = test::key_of(16, 5);
  Vec clear = test::key_of(16, 9);
  clear.insert(clear.end(), 15, 0xee);
  clear.push_back(15);
  Vec ct(32);
  int l1 = 0;
  int l2 = 0;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  ASSERT_EQ(EVP_EncryptInit_ex(c, EVP_aes_128_cbc(), nullptr, ek.data(), iv.data()), 1);
  EVP_CIPHER_CTX_set_padding(c, 0);
  ASSERT_EQ(EVP_EncryptUpdate(c, ct.data(), &l1, clear.data(), 32), 1);
  ASSERT_EQ(EVP_EncryptFinal_ex(c, ct.data() + l1, &l2), 1);
  EVP_CIPHER_CTX_free(c);
  msg.insert(msg.end(), iv.begin(), iv.end());
  msg.insert(msg.end(), ct.begin(), ct.end());
  Vec icv = ike::prf(Prf::hmac_sha256, ak, {msg});
  msg.insert(msg.end(), icv.begin(), icv.begin() + 16);
  std::string why;
  auto out = sk.open(msg, off, why);
  ASSERT_TRUE(out) << why;
  EXPECT_EQ(*out, test::key_of(16, 9));
  // A Pad Length beyond the data is refused even with a good ICV.
  msg.resize(off + 16);
  clear.back() = 40;
  c = EVP_CIPHER_CTX_new();
  ASSERT_EQ(EVP_EncryptInit_ex(c, EVP_aes_128_cbc(), nullptr, ek.data(), iv.data()), 1);
  EVP_CIPHER_CTX_set_padding(c, 0);
  ASSERT_EQ(EVP_EncryptUpdate(c, ct.data(), &l1, clear.data(), 32), 1);
  EVP_CIPHER_CTX_free(c);
  msg.insert(msg.end(), ct.begin(), ct.end());
  icv = ike::prf(Prf::hmac_sha256, ak, {msg});
  msg.insert(msg.end(), icv.begin(), icv.begin() + 16);
  EXPECT_FALSE(sk.open(msg, off, why));
  EXPECT_NE(why.find("padding"), std::string::npos) << why;
}

TEST(IkeSk, RefusesWhatIkeCannotUse) {
  auto refuses = [](Cipher c, std::uint16_t kb, Integrity i, std::size_t ek_len, std::size_t ak_len,
                    const char* words) {
    const ike::IkeSuite suite{{c, kb}, i, Prf::hmac_sha256, DhGroup::none};
    try {
      const ike::SkCipher sk(suite, Vec(ek_len, 1), Vec(ak_len, 2));
      ADD_FAILURE() << "accepted " << filters::cipher_info(c).name;
    } catch (const ike::CryptoError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refuses(Cipher::null, 0, Integrity::hmac_sha256_128, 0, 32, "cannot protect IKE messages");
  refuses(Cipher::aes_gmac, 16, Integrity::none, 20, 0, "cannot protect IKE messages");
  refuses(Cipher::aes_gcm_16_iiv, 16, Integrity::none, 20, 0, "cannot protect IKE messages");
  refuses(Cipher::chacha20_poly1305_iiv, 32, Integrity::none, 36, 0, "cannot protect IKE messages");
  refuses(Cipher::blowfish_cbc, 16, Integrity::hmac_sha1_96, 16, 20, "cannot protect IKE messages");
  refuses(Cipher::des_cbc, 8, Integrity::hmac_sha1_96, 8, 20, "single DES");
  refuses(Cipher::aes_cbc, 16, Integrity::none, 16, 0, "needs an integrity algorithm");
  refuses(Cipher::aes_cbc, 16, Integrity::unchecked_96, 16, 0, "needs an integrity algorithm");
  refuses(Cipher::aes_cbc, 16, Integrity::hmac_sha256_96, 16, 32, "not an IKEv2 integrity algorithm");
  refuses(Cipher::aes_gcm_16, 16, Integrity::hmac_sha256_128, 20, 32, "takes no integrity");
  refuses(Cipher::aes_cbc, 16, Integrity::hmac_sha256_128, 15, 32, "SK_e");
  refuses(Cipher::aes_gcm_16, 16, Integrity::none, 16, 0, "SK_e");  // the salt is missing
  refuses(Cipher::aes_cbc, 16, Integrity::hmac_sha256_128, 16, 20, "SK_a");
  refuses(Cipher::aes_cbc, 20, Integrity::hmac_sha256_128, 20, 32, "aes-cbc");
}

TEST(IkeSk, InspectionShowsWhatOpenRefuses) {
  const ike::IkeSuite suite{{Cipher::aes_cbc, 16}, Integrity::hmac_sha256_128, Prf::hmac_sha256, DhGroup::none};
  const Vec ek = test::key_of(16, 1);
  const Vec ak = test::key_of(32, 2);
  const ike::SkCipher sk(suite, ek, ak);
  const Vec plain = ascii("inner payloads");
  Vec msg = message_head(sk, plain.size());
  const std::size_t off = msg.size();
  CountingRandom rnd;
  sk.seal(msg, plain, rnd);
  msg.back() ^= 0x80;  // a bad ICV
  std::string why;
  EXPECT_FALSE(sk.open(msg, off, why));
  EXPECT_EQ(why, "ICV mismatch");
  ike::SkCipher::Trust trust = ike::SkCipher::Trust::verified;
  auto shown = sk.inspect(msg, off, trust, why);
  ASSERT_TRUE(shown);
  EXPECT_EQ(*shown, plain);
  EXPECT_EQ(trust, ike::SkCipher::Trust::icv_mismatch);

  // An unchecked placeholder: inspect() decrypts without checking; open()
  // and seal() refuse.
  const ike::IkeSuite loose{{Cipher::aes_cbc, 16}, Integrity::unchecked_128, Prf::hmac_sha256, DhGroup::none};
  const auto ins = ike::SkCipher::for_inspection(loose, ek, {});
  shown = ins.inspect(msg, off, trust, why);
  ASSERT_TRUE(shown);
  EXPECT_EQ(*shown, plain);
  EXPECT_EQ(trust, ike::SkCipher::Trust::unchecked);
  EXPECT_FALSE(ins.open(msg, off, why));
  EXPECT_NE(why.find("inspecting"), std::string::npos);
  Vec out = message_head(ins, 3);
  EXPECT_THROW(ins.seal(out, ascii("abc"), rnd), ike::CryptoError);

  // AEAD data is never shown unauthenticated.
  const ike::IkeSuite gcm{{Cipher::aes_gcm_16, 16}, Integrity::none, Prf::hmac_sha256, DhGroup::none};
  const Vec gk = test::key_of(20, 4);
  const ike::SkCipher g(gcm, gk, {});
  Vec gm = message_head(g, plain.size());
  const std::size_t goff = gm.size();
  g.seal(gm, plain, rnd);
  gm[goff + 9] ^= 1;
  EXPECT_FALSE(g.inspect(gm, goff, trust, why));
}

// ---- AUTH with a pre-shared key -----------------------------------------

TEST(IkeAuth, PskAuthIsPrfOfPrfOfTheKeyPad) {
  const Vec psk = ascii("topsecret");
  const Vec octets = ascii("message | nonce | prf(SK_p, ID')");
  const Vec key = ike::prf(Prf::hmac_sha256, psk, {ascii("Key Pad for IKEv2")});
  EXPECT_EQ(ike::psk_auth(Prf::hmac_sha256, psk, octets), ike::prf(Prf::hmac_sha256, key, {octets}));
  const Vec msg = ascii("IKE_SA_INIT bytes");
  const Vec nonce = ascii("the peer's nonce");
  const Vec skp = test::key_of(32, 1);
  const Vec id = hex("01000000 c0000201");
  EXPECT_EQ(ike::signed_octets(Prf::hmac_sha256, msg, nonce, skp, id),
            cat({msg, nonce, ike::prf(Prf::hmac_sha256, skp, {id})}));
}

TEST(IkeRandom, SystemRandomFillsAndDiffers) {
  Vec a(32, 0);
  Vec b(32, 0);
  ike::system_random().fill(a);
  ike::system_random().fill(b);
  EXPECT_NE(a, b);
  EXPECT_NE(a, Vec(32, 0));
}

// ---- certificates and signatures -----------------------------------------

namespace fs = std::filesystem;

Vec read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Vec((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_file(const fs::path& p, Bytes b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
int run(const std::string& cmd) { return std::system(cmd.c_str()); }

// A PKI made with the openssl command line: a root CA (RSA), an
// intermediate (ECDSA P-384), end entities with RSA-2048, P-256 and P-384
// keys (the RSA one with every kind of subjectAltName), one valid for a day,
// and a second root with an end entity of its own.
class IkeCert : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("ipsentry-ike-crypto-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string script = R"(set -e
exec >openssl.log 2>&1
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > ca.ext
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/C=CH/O=ipsentry test/CN=Test Root CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout int.key -out int.csr \
  -subj "/C=CH/O=ipsentry test/CN=Test Intermediate CA"
openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 2 -out int.pem -days 3650 -extfile ca.ext
serial=10
ee() {  # name, key options, SANs, days, issuer
  serial=$((serial + 1))
  printf 'subjectAltName=%s\nkeyUsage=digitalSignature\n' "$3" > $1.ext
  openssl req -newkey $2 -nodes -keyout $1.key -out $1.csr -subj "/C=CH/O=ipsentry test/CN=$1.example.org"
  openssl x509 -req -in $1.csr -CA $5.pem -CAkey $5.key -set_serial $serial -out $1.pem -days $4 -extfile $1.ext
  cat $1.pem $5.pem > $1-chain.pem
}
ee rsa rsa:2048 "DNS:rsa.example.org,email:gw1@example.org,IP:192.0.2.1,IP:2001:db8::1" 365 int
ee p256 "ec -pkeyopt ec_paramgen_curve:P-256" DNS:p256.example.org 365 int
ee p384 "ec -pkeyopt ec_paramgen_curve:P-384" DNS:p384.example.org 365 int
ee p521 "ec -pkeyopt ec_paramgen_curve:P-521" DNS:p521.example.org 365 int
ee shortlived "ec -pkeyopt ec_paramgen_curve:P-256" DNS:shortlived.example.org 1 int
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other.pem -days 3650 \
  -subj "/C=CH/O=elsewhere/CN=Other Root CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign
ee stranger "ec -pkeyopt ec_paramgen_curve:P-256" DNS:stranger.example.org 365 other
openssl genpkey -algorithm ed25519 -out ed.key
openssl req -x509 -key ed.key -out ed.pem -days 365 -subj "/CN=ed.example.org"
openssl pkey -in p256.key -out p256-enc.key -aes128 -passout pass:secret
ee pss "RSA-PSS -pkeyopt rsa_keygen_bits:2048" DNS:pss.example.org 365 int
for h in sha256 sha384 sha512; do  # OpenSSL's own RSASSA-PSS AlgorithmIdentifiers
  openssl req -x509 -key rsa.key -new -subj /CN=algid -$h -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:$h -outform DER -out pss-$h.der
done
)";
    write_file(dir_ / "make.sh", ascii(script));
    ASSERT_EQ(run("cd " + dir_.string() + " && sh make.sh"), 0) << "see " << (dir_ / "openssl.log");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path f(const std::string& name) { return dir_ / name; }
  static std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }
  // openssl dgst -verify over `octets` with `sig` (DER for ECDSA).
  static bool openssl_verifies(const std::string& key, const char* md, Bytes octets, Bytes sig,
                               const std::string& opts = "") {
    write_file(f("octets.bin"), octets);
    write_file(f("sig.bin"), sig);
    const std::string cmd = "cd " + dir_.string() + " && openssl pkey -in " + key + ".key -pubout -out " + key +
                            ".pub 2>/dev/null && openssl dgst -" + md + " " + opts + " -verify " + key +
                            ".pub -signature sig.bin octets.bin >verify.out 2>&1";
    const int rc = run(cmd);
    return rc == 0 && read_file(f("verify.out")) == ascii("Verified OK\n");
  }
  static Vec openssl_sign(const std::string& key, const char* md, Bytes octets, const std::string& opts = "") {
    write_file(f("octets.bin"), octets);
    const std::string cmd = "cd " + dir_.string() + " && openssl dgst -" + md + " " + opts + " -sign " + key +
                            ".key -out sig.bin octets.bin";
    EXPECT_EQ(run(cmd), 0) << cmd;
    return read_file(f("sig.bin"));
  }
  static fs::path dir_;
};
fs::path IkeCert::dir_;

ike::Certificate first_cert(const std::string& file) { return ike::Certificate::load_pem(file).at(0); }

// DER ECDSA-Sig-Value <-> RFC 4754 r | s, written out here so the
// conversion in auth.cpp is checked against something else.
Vec der_int(Bytes v) {
  std::size_t i = 0;
  while (i + 1 < v.size() && v[i] == 0) ++i;
  Vec out{0x02};
  Vec body(v.begin() + static_cast<long>(i), v.end());
  if (body[0] & 0x80) body.insert(body.begin(), 0);
  out.push_back(static_cast<std::uint8_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
Vec rs_to_der(Bytes rs) {
  const Vec r = der_int(rs.first(rs.size() / 2));
  const Vec s = der_int(rs.last(rs.size() / 2));
  Vec seq = cat({r, s});
  Vec out{0x30};
  if (seq.size() >= 128) out.push_back(0x81);
  out.push_back(static_cast<std::uint8_t>(seq.size()));
  out.insert(out.end(), seq.begin(), seq.end());
  return out;
}
Vec der_to_rs(Bytes der, std::size_t half) {
  std::size_t at = der[1] == 0x81 ? 3 : 2;
  Vec out;
  for (int k = 0; k < 2; ++k) {
    const std::size_t len = der[at + 1];
    Bytes v = der.subspan(at + 2, len);
    while (v.size() > half && v[0] == 0) v = v.subspan(1);
    out.insert(out.end(), half - v.size(), 0);
    out.insert(out.end(), v.begin(), v.end());
    at += 2 + len;
  }
  return out;
}

// RFC 7427 Appendix A.
const Vec kAlgSha256Rsa = hex("300d06092a864886f70d01010b0500");
const Vec kAlgSha384Rsa = hex("300d06092a864886f70d01010c0500");
const Vec kAlgSha512Rsa = hex("300d06092a864886f70d01010d0500");
const Vec kAlgSha1Rsa = hex("300d06092a864886f70d0101050500");
const Vec kAlgEcdsaSha256 = hex("300a06082a8648ce3d040302");
const Vec kAlgEcdsaSha384 = hex("300a06082a8648ce3d040303");
const Vec kAlgEcdsaSha512 = hex("300a06082a8648ce3d040304");
const Vec kAlgPssSha256 =
    hex("3041 0609 2a864886f70d01010a 3034 a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108"
        "300d 0609 608648016503040201 0500 a203 0201 20");

// A DER TLV's length (header included) at `at`.
std::size_t tlv_size(const Vec& d, std::size_t at) {
  const std::size_t l = d.at(at + 1);
  if ((l & 0x80) == 0) return 2 + l;
  std::size_t n = 0;
  for (std::size_t i = 0; i < (l & 0x7f); ++i) n = n << 8 | d.at(at + 2 + i);
  return 2 + (l & 0x7f) + n;
}
// The signatureAlgorithm of a DER certificate: the TLV after tbsCertificate.
Vec signature_algorithm(const Vec& cert) {
  const std::size_t hdr = (cert.at(1) & 0x80) != 0 ? 2 + (cert.at(1) & 0x7f) : 2;
  const std::size_t alg = hdr + tlv_size(cert, hdr);
  return Vec(cert.begin() + static_cast<long>(alg), cert.begin() + static_cast<long>(alg + tlv_size(cert, alg)));
}

Vec method14(const Vec& algid, const Vec& sig) {
  return cat({Vec{static_cast<std::uint8_t>(algid.size())}, algid, sig});
}

TEST_F(IkeCert, SubjectsAndIdentities) {
  const auto chain = ike::Certificate::load_pem(f("rsa-chain.pem"));
  ASSERT_EQ(chain.size(), 2u);
  const ike::Certificate& c = chain[0];
  EXPECT_EQ(c.subject(), "C=CH, O=ipsentry test, CN=rsa.example.org");
  EXPECT_EQ(chain[1].subject(), "C=CH, O=ipsentry test, CN=Test Intermediate CA");
  // The DER read back from the PEM file (openssl x509 -outform DER).
  ASSERT_EQ(run("cd " + dir_.string() + " && openssl x509 -in rsa.pem -outform DER -out rsa.der"), 0);
  EXPECT_EQ(c.der(), read_file(f("rsa.der")));
  EXPECT_TRUE(c.has_identity(9, c.subject_der()));
  EXPECT_FALSE(c.has_identity(9, chain[1].subject_der()));
  EXPECT_FALSE(c.has_identity(9, hex("3000ff")));
  EXPECT_TRUE(c.has_identity(2, ascii("rsa.example.org")));
  EXPECT_TRUE(c.has_identity(2, ascii("RSA.Example.ORG")));
  EXPECT_FALSE(c.has_identity(2, ascii("p256.example.org")));
  EXPECT_FALSE(c.has_identity(2, ascii("gw1@example.org")));
  EXPECT_TRUE(c.has_identity(3, ascii("gw1@example.org")));
  EXPECT_FALSE(c.has_identity(3, ascii("gw2@example.org")));
  EXPECT_TRUE(c.has_identity(1, hex("c0000201")));
  EXPECT_FALSE(c.has_identity(1, hex("c0000202")));
  EXPECT_TRUE(c.has_identity(5, hex("20010db8000000000000000000000001")));
  EXPECT_FALSE(c.has_identity(5, hex("c0000201")));
  EXPECT_FALSE(c.has_identity(11, ascii("rsa.example.org")));  // ID_KEY_ID names no certificate
  // The CN is not a subjectAltName: an FQDN identity needs the SAN.
  const ike::Certificate ca = first_cert(f("ca.pem"));
  EXPECT_FALSE(ca.has_identity(2, ascii("Test Root CA")));

  std::string why;
  EXPECT_FALSE(ike::Certificate::from_der(hex("3003020101"), why));
  EXPECT_FALSE(why.empty());
  Vec trailing = c.der();
  trailing.push_back(0);
  EXPECT_FALSE(ike::Certificate::from_der(trailing, why));
  EXPECT_THROW((void)ike::Certificate::load_pem(f("nonexistent.pem")), ike::CryptoError);
  EXPECT_THROW((void)ike::Certificate::load_pem(f("rsa.key")), ike::CryptoError);
  const ike::Certificate copy = c;
  EXPECT_EQ(copy.der(), c.der());
}

TEST_F(IkeCert, KeyIdsAreSha1OfTheSubjectPublicKeyInfo) {
  const ike::Certificate ca = first_cert(f("ca.pem"));
  ASSERT_EQ(run("cd " + dir_.string() +
                " && openssl x509 -in ca.pem -noout -pubkey | openssl pkey -pubin -outform DER | "
                "openssl dgst -sha1 -binary > ca.keyid"),
            0);
  const Vec id = read_file(f("ca.keyid"));
  ASSERT_EQ(id.size(), 20u);
  EXPECT_EQ(ca.key_id_sha1(), id);
  const ike::TrustStore two({f("ca.pem"), f("other.pem")});
  const Vec other = first_cert(f("other.pem")).key_id_sha1();
  EXPECT_EQ(two.certreq_data(), cat({id, other}));
}

TEST_F(IkeCert, TrustStoreChecksChainsAndValidity) {
  const ike::TrustStore store({f("ca.pem")});
  const auto inter = ike::Certificate::load_pem(f("int.pem"));
  std::string why;
  for (const char* ee : {"rsa.pem", "p256.pem", "p384.pem", "p521.pem", "shortlived.pem"}) {
    EXPECT_TRUE(store.verify(first_cert(f(ee)), inter, now(), why)) << ee << ": " << why;
  }
  // Without the intermediate there is no path to the root.
  EXPECT_FALSE(store.verify(first_cert(f("rsa.pem")), {}, now(), why));
  EXPECT_NE(why.find("unable to get local issuer certificate"), std::string::npos) << why;
  // Expired two days on; not yet valid a day before it was made.
  EXPECT_FALSE(store.verify(first_cert(f("shortlived.pem")), inter, now() + 2 * 86400, why));
  EXPECT_NE(why.find("expired"), std::string::npos) << why;
  EXPECT_NE(why.find("shortlived.example.org"), std::string::npos) << why;
  EXPECT_FALSE(store.verify(first_cert(f("rsa.pem")), inter, now() - 86400, why));
  EXPECT_NE(why.find("not yet valid"), std::string::npos) << why;
  // Another CA's certificate, with its own root offered as an intermediate.
  EXPECT_FALSE(store.verify(first_cert(f("stranger.pem")), {first_cert(f("other.pem"))}, now(), why));
  EXPECT_FALSE(why.empty());
  // An intermediate configured as the anchor is enough (partial chain).
  const ike::TrustStore at_int({f("int.pem")});
  EXPECT_TRUE(at_int.verify(first_cert(f("p256.pem")), {}, now(), why)) << why;
  EXPECT_THROW(ike::TrustStore({f("rsa.key")}), ike::CryptoError);
}

struct KeyCase {
  const char* name;
  std::vector<ike::SignatureHash> peer;
  ike::AuthMethod method;
  Vec algid;  // method 14
  const char* md;
  std::size_t rs_half;  // classic ECDSA
};

TEST_F(IkeCert, SignerSignaturesVerifyWithOpensslAndUs) {
  using H = ike::SignatureHash;
  const std::vector<H> all{H::sha256, H::sha384, H::sha512};
  const KeyCase cases[] = {
      {"rsa", all, ike::AuthMethod::digital_signature, kAlgSha512Rsa, "sha512", 0},
      {"rsa", {H::sha256}, ike::AuthMethod::digital_signature, kAlgSha256Rsa, "sha256", 0},
      {"rsa", {H::sha384, H::sha1}, ike::AuthMethod::digital_signature, kAlgSha384Rsa, "sha384", 0},
      {"p256", all, ike::AuthMethod::digital_signature, kAlgEcdsaSha256, "sha256", 0},
      {"p256", {H::sha512}, ike::AuthMethod::digital_signature, kAlgEcdsaSha512, "sha512", 0},
      {"p384", all, ike::AuthMethod::digital_signature, kAlgEcdsaSha384, "sha384", 0},
      {"p256", {}, ike::AuthMethod::ecdsa_sha256_p256, {}, "sha256", 32},
      {"p384", {}, ike::AuthMethod::ecdsa_sha384_p384, {}, "sha384", 48},
      {"p521", all, ike::AuthMethod::digital_signature, kAlgEcdsaSha512, "sha512", 0},
      {"p521", {}, ike::AuthMethod::ecdsa_sha512_p521, {}, "sha512", 66},
  };
  const Vec octets = ascii("IKE_SA_INIT message | Nr | prf(SK_pi, IDi')");
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.name) + " " + c.md);
    const ike::Signer signer(f(std::string(c.name) + "-chain.pem"), f(std::string(c.name) + ".key"));
    EXPECT_EQ(signer.chain().size(), 1u);
    EXPECT_EQ(signer.certificate().subject(), "C=CH, O=ipsentry test, CN=" + std::string(c.name) + ".example.org");
    std::vector<std::string> warnings;
    const auto [method, data] = signer.sign(octets, c.peer, warnings);
    EXPECT_TRUE(warnings.empty());
    ASSERT_EQ(method, c.method);
    Vec sig_der;
    if (method == ike::AuthMethod::digital_signature) {
      // The exact AlgorithmIdentifier bytes of RFC 7427 Appendix A.
      ASSERT_GT(data.size(), 1 + c.algid.size());
      EXPECT_EQ(data[0], c.algid.size());
      EXPECT_EQ(Vec(data.begin() + 1, data.begin() + 1 + static_cast<long>(c.algid.size())), c.algid);
      sig_der.assign(data.begin() + 1 + static_cast<long>(c.algid.size()), data.end());
    } else {
      ASSERT_EQ(data.size(), 2 * c.rs_half);  // RFC 4754: r | s
      sig_der = rs_to_der(data);
    }
    EXPECT_TRUE(openssl_verifies(c.name, c.md, octets, sig_der));
    std::string why;
    EXPECT_TRUE(ike::verify_auth(method, data, octets, signer.certificate(), why, warnings)) << why;
    EXPECT_TRUE(warnings.empty());
    // Any changed byte of the signed octets or of the signature fails.
    Vec bad_octets = octets;
    bad_octets[5] ^= 1;
    EXPECT_FALSE(ike::verify_auth(method, data, bad_octets, signer.certificate(), why, warnings));
    Vec bad_sig = data;
    bad_sig.back() ^= 1;
    EXPECT_FALSE(ike::verify_auth(method, bad_sig, octets, signer.certificate(), why, warnings));
  }
}

TEST_F(IkeCert, OpensslSignaturesVerifyWithUs) {
  const Vec octets = ascii("IKE_SA_INIT response | Ni | prf(SK_pr, IDr')");
  std::vector<std::string> warnings;
  std::string why;
  const ike::Certificate rsa = first_cert(f("rsa.pem"));
  const ike::Certificate p256 = first_cert(f("p256.pem"));
  const ike::Certificate p384 = first_cert(f("p384.pem"));
  using M = ike::AuthMethod;
  // RFC 7427 with RSASSA-PKCS1-v1_5 and with RSASSA-PSS (SHA-256, MGF1
  // SHA-256, 32 bytes of salt: RFC 7427 A.4.3's parameters).
  for (auto [md, algid] :
       {std::pair{"sha256", kAlgSha256Rsa}, std::pair{"sha384", kAlgSha384Rsa}, std::pair{"sha512", kAlgSha512Rsa}}) {
    const Vec sig = openssl_sign("rsa", md, octets);
    EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(algid, sig), octets, rsa, why, warnings)) << why;
    // The same signature under another hash's identifier fails.
    EXPECT_FALSE(ike::verify_auth(M::digital_signature,
                                  method14(algid == kAlgSha256Rsa ? kAlgSha384Rsa : kAlgSha256Rsa, sig), octets, rsa,
                                  why, warnings));
  }
  EXPECT_TRUE(warnings.empty());
  const Vec pss = openssl_sign("rsa", "sha256", octets, "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32");
  EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(kAlgPssSha256, pss), octets, rsa, why, warnings))
      << why << " " << (warnings.empty() ? "" : warnings.back());
  EXPECT_FALSE(ike::verify_auth(M::digital_signature, method14(kAlgSha256Rsa, pss), octets, rsa, why, warnings));
  // Method 1: RSA with SHA-1, accepted with a warning.
  const Vec v1 = openssl_sign("rsa", "sha1", octets);
  EXPECT_TRUE(ike::verify_auth(M::rsa_sig, v1, octets, rsa, why, warnings)) << why;
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("SHA-1"), std::string::npos);
  warnings.clear();
  EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(kAlgSha1Rsa, v1), octets, rsa, why, warnings));
  EXPECT_EQ(warnings.size(), 1u);
  warnings.clear();
  // ECDSA: DER in method 14, r | s in methods 9 and 10.
  const Vec e256 = openssl_sign("p256", "sha256", octets);
  EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(kAlgEcdsaSha256, e256), octets, p256, why, warnings))
      << why;
  EXPECT_TRUE(ike::verify_auth(M::ecdsa_sha256_p256, der_to_rs(e256, 32), octets, p256, why, warnings)) << why;
  const Vec e384 = openssl_sign("p384", "sha384", octets);
  EXPECT_TRUE(ike::verify_auth(M::ecdsa_sha384_p384, der_to_rs(e384, 48), octets, p384, why, warnings)) << why;
  EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(kAlgEcdsaSha384, e384), octets, p384, why, warnings));
  const ike::Certificate p521 = first_cert(f("p521.pem"));
  const Vec e521 = openssl_sign("p521", "sha512", octets);
  EXPECT_TRUE(ike::verify_auth(M::ecdsa_sha512_p521, der_to_rs(e521, 66), octets, p521, why, warnings)) << why;
  EXPECT_TRUE(ike::verify_auth(M::digital_signature, method14(kAlgEcdsaSha512, e521), octets, p521, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::ecdsa_sha384_p384, der_to_rs(e521, 66), octets, p521, why, warnings));
  EXPECT_TRUE(warnings.empty());

  // Mismatches are refused with a reason.
  EXPECT_FALSE(ike::verify_auth(M::ecdsa_sha384_p384, der_to_rs(e256, 48), octets, p256, why, warnings));
  EXPECT_NE(why.find("P-384"), std::string::npos) << why;
  EXPECT_FALSE(ike::verify_auth(M::ecdsa_sha256_p256, der_to_rs(e256, 32), octets, rsa, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::rsa_sig, v1, octets, p256, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::ecdsa_sha256_p256, Vec(63, 1), octets, p256, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::digital_signature, method14(kAlgEcdsaSha256, e256), octets, rsa, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::psk, Vec(32, 0), octets, rsa, why, warnings));
  EXPECT_FALSE(ike::verify_auth(static_cast<M>(3), Vec(32, 0), octets, rsa, why, warnings));  // DSS
  EXPECT_FALSE(ike::verify_auth(M::digital_signature, Vec{}, octets, rsa, why, warnings));
  EXPECT_FALSE(ike::verify_auth(M::digital_signature, Vec{40, 0x30}, octets, rsa, why, warnings));
  // An AlgorithmIdentifier we do not know: Ed25519 (1.3.101.112).
  EXPECT_FALSE(
      ike::verify_auth(M::digital_signature, method14(hex("300506032b6570"), Vec(64, 1)), octets, rsa, why, warnings));
  EXPECT_NE(why.find("1.3.101.112"), std::string::npos) << why;
}

TEST_F(IkeCert, SignerRefusesWhatItCannotUse) {
  auto refused = [&](const std::string& cert, const std::string& key, const char* words) {
    try {
      const ike::Signer s(f(cert), f(key));
      ADD_FAILURE() << cert << " with " << key << " accepted";
    } catch (const ike::CryptoError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused("rsa.pem", "p256.key", "not the one of the certificate");
  refused("ed.pem", "ed.key", "RSA or ECDSA");
  refused("p256.pem", "p256-enc.key", "unencrypted");
  refused("p256.pem", "missing.key", "cannot open");
  refused("missing.pem", "p256.key", "cannot open");
  // An RSA-PSS key cannot make method 1 (PKCS#1 v1.5) nor PSS with SHA-1.
  const ike::Signer pss(f("pss-chain.pem"), f("pss.key"));
  std::vector<std::string> warnings;
  EXPECT_THROW((void)pss.sign(ascii("x"), {}, warnings), ike::CryptoError);
  EXPECT_THROW((void)pss.sign(ascii("x"), {ike::SignatureHash::sha1}, warnings), ike::CryptoError);
  // SHA-1 only when nothing better is common, and said.
  const ike::Signer rsa(f("rsa.pem"), f("rsa.key"));
  const auto [m, d] = rsa.sign(ascii("x"), {ike::SignatureHash::sha1}, warnings);
  EXPECT_EQ(m, ike::AuthMethod::digital_signature);
  EXPECT_EQ(Vec(d.begin() + 1, d.begin() + 16), kAlgSha1Rsa);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("SHA-1"), std::string::npos);
}

TEST_F(IkeCert, RsaToAPeerWithoutRfc7427SignsMethodOne) {
  const ike::Signer rsa(f("rsa-chain.pem"), f("rsa.key"));
  const Vec octets = ascii("IKE_SA_INIT request | Nr | prf(SK_pi, IDi')");
  std::vector<std::string> warnings;
  const auto [method, data] = rsa.sign(octets, {}, warnings);
  EXPECT_EQ(method, ike::AuthMethod::rsa_sig);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("SHA-1"), std::string::npos) << warnings[0];
  EXPECT_EQ(data.size(), 256u);
  EXPECT_TRUE(openssl_verifies("rsa", "sha1", octets, data));
  // PKCS#1 v1.5 is deterministic: the same bytes as openssl's.
  EXPECT_EQ(data, openssl_sign("rsa", "sha1", octets));
  std::string why;
  warnings.clear();
  EXPECT_TRUE(ike::verify_auth(method, data, octets, rsa.certificate(), why, warnings)) << why;
  // An identifier the peer announced but we do not know is as good as none.
  warnings.clear();
  EXPECT_EQ(rsa.sign(octets, {static_cast<ike::SignatureHash>(5)}, warnings).first, ike::AuthMethod::rsa_sig);
}

TEST_F(IkeCert, RsaPssKeysSignRsassaPss) {
  using H = ike::SignatureHash;
  const ike::Signer pss(f("pss-chain.pem"), f("pss.key"));
  const Vec octets = ascii("IKE_SA_INIT response | Ni | prf(SK_pr, IDr')");
  struct Case {
    std::vector<H> peer;
    const char* md;
    int salt;
  };
  for (const Case& c : {Case{{H::sha256}, "sha256", 32}, Case{{H::sha256, H::sha384}, "sha384", 48},
                        Case{{H::sha1, H::sha256, H::sha384, H::sha512}, "sha512", 64}}) {
    SCOPED_TRACE(c.md);
    std::vector<std::string> warnings;
    const auto [method, data] = pss.sign(octets, c.peer, warnings);
    EXPECT_TRUE(warnings.empty());
    ASSERT_EQ(method, ike::AuthMethod::digital_signature);
    // The AlgorithmIdentifier is OpenSSL's own for RSASSA-PSS with this
    // hash, MGF1 with it and a salt of its length (RFC 7427 A.4.3 for SHA-256).
    const Vec algid = signature_algorithm(read_file(f(std::string("pss-") + c.md + ".der")));
    ASSERT_GT(data.size(), 1 + algid.size());
    EXPECT_EQ(data[0], algid.size());
    EXPECT_EQ(Vec(data.begin() + 1, data.begin() + 1 + static_cast<long>(algid.size())), algid);
    if (std::string(c.md) == "sha256") {
      EXPECT_EQ(algid, kAlgPssSha256);
    }
    const Vec sig(data.begin() + 1 + static_cast<long>(algid.size()), data.end());
    const std::string opts = std::string("-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:") +
                             std::to_string(c.salt) + " -sigopt rsa_mgf1_md:" + c.md;
    EXPECT_TRUE(openssl_verifies("pss", c.md, octets, sig, opts));
    std::string why;
    EXPECT_TRUE(ike::verify_auth(method, data, octets, pss.certificate(), why, warnings)) << why;
    Vec bad = octets;
    bad.back() ^= 0x80;
    EXPECT_FALSE(ike::verify_auth(method, data, bad, pss.certificate(), why, warnings));
    EXPECT_NE(why.find("does not verify"), std::string::npos) << why;
    EXPECT_TRUE(warnings.empty());
  }
  // A key for PSS only takes no PKCS#1 v1.5 signature, whatever it holds.
  std::string why;
  std::vector<std::string> warnings;
  EXPECT_FALSE(ike::verify_auth(ike::AuthMethod::digital_signature, method14(kAlgSha256Rsa, Vec(256, 1)), octets,
                                pss.certificate(), why, warnings));
  EXPECT_NE(why.find("RSASSA-PSS only"), std::string::npos) << why;
  EXPECT_FALSE(ike::verify_auth(ike::AuthMethod::rsa_sig, Vec(256, 1), octets, pss.certificate(), why, warnings));
  EXPECT_NE(why.find("RSASSA-PSS only"), std::string::npos) << why;
}

TEST_F(IkeCert, OpensslPssSignaturesVerifyWithUs) {
  const Vec octets = ascii("IKE_AUTH octets");
  const ike::Certificate rsa = first_cert(f("rsa.pem"));
  std::vector<std::string> warnings;
  std::string why;
  for (auto [md, salt] : {std::pair{"sha256", 32}, std::pair{"sha384", 48}, std::pair{"sha512", 64}}) {
    SCOPED_TRACE(md);
    const Vec algid = signature_algorithm(read_file(f(std::string("pss-") + md + ".der")));
    const std::string mgf = std::string(" -sigopt rsa_mgf1_md:") + md;
    const Vec sig = openssl_sign("rsa", md, octets,
                                 "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" + std::to_string(salt) + mgf);
    EXPECT_TRUE(ike::verify_auth(ike::AuthMethod::digital_signature, method14(algid, sig), octets, rsa, why, warnings))
        << why;
    // A salt other than the one the parameters name is refused.
    const Vec short_salt =
        openssl_sign("rsa", md, octets, "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20" + mgf);
    EXPECT_FALSE(
        ike::verify_auth(ike::AuthMethod::digital_signature, method14(algid, short_salt), octets, rsa, why, warnings));
    // And a PKCS#1 v1.5 signature is not a PSS one.
    EXPECT_FALSE(ike::verify_auth(ike::AuthMethod::digital_signature, method14(algid, openssl_sign("rsa", md, octets)),
                                  octets, rsa, why, warnings));
  }
  EXPECT_TRUE(warnings.empty());
  // PSS parameters for an ECDSA key are refused for the key type.
  const Vec algid = signature_algorithm(read_file(f("pss-sha256.der")));
  EXPECT_FALSE(ike::verify_auth(ike::AuthMethod::digital_signature, method14(algid, Vec(256, 1)), octets,
                                first_cert(f("p256.pem")), why, warnings));
  EXPECT_NE(why.find("not RSA"), std::string::npos) << why;
}

TEST_F(IkeCert, TrustFailuresSayWhatIsWrong) {
  const ike::TrustStore store({f("ca.pem")});
  const auto inter = ike::Certificate::load_pem(f("int.pem"));
  std::string why;
  // Another CA's end entity with its chain.
  EXPECT_FALSE(store.verify(first_cert(f("stranger.pem")), {first_cert(f("other.pem"))}, now(), why));
  EXPECT_NE(why.find("not issued by a configured CA"), std::string::npos) << why;
  EXPECT_FALSE(store.verify(first_cert(f("shortlived.pem")), inter, now() + 3 * 86400, why));
  EXPECT_NE(why.find("validity"), std::string::npos) << why;
  // A certificate whose signature was tampered with (last byte of the DER).
  Vec der = first_cert(f("p256.pem")).der();
  der.back() ^= 1;
  auto forged = ike::Certificate::from_der(der, why);
  ASSERT_TRUE(forged) << why;
  EXPECT_FALSE(store.verify(*forged, inter, now(), why));
  EXPECT_FALSE(why.empty());
  // A self-signed certificate that is not the anchor.
  EXPECT_FALSE(store.verify(first_cert(f("ed.pem")), {}, now(), why));
  EXPECT_NE(why.find("configured CA"), std::string::npos) << why;
}

// Every AUTH payload we make stops verifying when any byte of it changes
// (AlgorithmIdentifier, its parameters, the signature), when it is cut
// short anywhere, or when a byte is appended: no lax parse lets a changed
// blob through.
TEST_F(IkeCert, EveryChangedTruncatedOrExtendedAuthFails) {
  using H = ike::SignatureHash;
  struct Case {
    const char* name;
    std::vector<H> peer;
  };
  const Vec octets = ascii("octets under test");
  int checked = 0;
  for (const Case& c : {Case{"rsa", {H::sha256}}, Case{"rsa", {}}, Case{"pss", {H::sha384}}, Case{"p256", {H::sha256}},
                        Case{"p256", {}}, Case{"p384", {}}}) {
    SCOPED_TRACE(std::string(c.name) + (c.peer.empty() ? " classic" : " RFC 7427"));
    const ike::Signer signer(f(std::string(c.name) + "-chain.pem"), f(std::string(c.name) + ".key"));
    std::vector<std::string> warnings;
    const auto [method, data] = signer.sign(octets, c.peer, warnings);
    std::string why;
    ASSERT_TRUE(ike::verify_auth(method, data, octets, signer.certificate(), why, warnings)) << why;
    for (std::size_t i = 0; i < data.size(); ++i) {
      for (const std::uint8_t mask : {static_cast<std::uint8_t>(1u << (i % 8)), std::uint8_t{0xff}}) {
        Vec bad = data;
        bad[i] ^= mask;
        EXPECT_FALSE(ike::verify_auth(method, bad, octets, signer.certificate(), why, warnings))
            << "byte " << i << " ^ " << int(mask);
        ++checked;
      }
    }
    for (std::size_t n = 0; n < data.size(); ++n) {
      EXPECT_FALSE(ike::verify_auth(method, Bytes(data).first(n), octets, signer.certificate(), why, warnings))
          << "first " << n << " bytes";
      ++checked;
    }
    Vec longer = data;
    longer.push_back(0);
    EXPECT_FALSE(ike::verify_auth(method, longer, octets, signer.certificate(), why, warnings));
  }
  EXPECT_GT(checked, 3000);
}

}  // namespace
