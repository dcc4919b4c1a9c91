// Published test vectors, each labelled with its source.
#include <gtest/gtest.h>

#include <cstring>

#include "ipsentry/ipsec/crypto.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace ipsentry {
namespace {

using filters::Cipher;
using filters::Integrity;
using ipsec::EspTransform;
using test::ascii;
using test::hex;

std::vector<std::uint8_t> repeat(std::uint8_t b, std::size_t n) { return std::vector<std::uint8_t>(n, b); }
std::vector<std::uint8_t> range(std::uint8_t from, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(from + i);
  return v;
}
std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct MacVector {
  const char* source;
  Integrity alg;
  std::vector<std::uint8_t> key;
  std::vector<std::uint8_t> data;
  std::vector<std::uint8_t> mac;  // compared over its length (full or truncated)
};

std::vector<MacVector> mac_vectors() {
  const auto hi = ascii("Hi There");
  const auto jefe_msg = ascii("what do ya want for nothing?");
  const auto big = ascii("Test Using Larger Than Block-Size Key - Hash Key First");
  const auto big2 = ascii("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data");
  const auto big3 = ascii(
      "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
      "hashed before being used by the HMAC algorithm.");
  return {
      // RFC 2202 section 2 (HMAC-MD5)
      {"RFC 2202 MD5 1", Integrity::hmac_md5_96, repeat(0x0b, 16), hi, hex("9294727a3638bb1c13f48ef8158bfc9d")},
      {"RFC 2202 MD5 2", Integrity::hmac_md5_96, ascii("Jefe"), jefe_msg, hex("750c783e6ab0b503eaa86e310a5db738")},
      {"RFC 2202 MD5 3", Integrity::hmac_md5_96, repeat(0xaa, 16), repeat(0xdd, 50),
       hex("56be34521d144c88dbb8c733f0e8b3f6")},
      {"RFC 2202 MD5 4", Integrity::hmac_md5_96, range(1, 25), repeat(0xcd, 50), hex("697eaf0aca3a3aea3a75164746ffaa79")},
      {"RFC 2202 MD5 6", Integrity::hmac_md5_96, repeat(0xaa, 80), big, hex("6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd")},
      {"RFC 2202 MD5 7", Integrity::hmac_md5_96, repeat(0xaa, 80), big2, hex("6f630fad67cda0ee1fb1f562db3aa53e")},
      // RFC 2202 section 3 (HMAC-SHA-1)
      {"RFC 2202 SHA-1 1", Integrity::hmac_sha1_96, repeat(0x0b, 20), hi,
       hex("b617318655057264e28bc0b6fb378c8ef146be00")},
      {"RFC 2202 SHA-1 2", Integrity::hmac_sha1_96, ascii("Jefe"), jefe_msg,
       hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")},
      {"RFC 2202 SHA-1 3", Integrity::hmac_sha1_96, repeat(0xaa, 20), repeat(0xdd, 50),
       hex("125d7342b9ac11cd91a39af48aa17b4f63f175d3")},
      {"RFC 2202 SHA-1 4", Integrity::hmac_sha1_96, range(1, 25), repeat(0xcd, 50),
       hex("4c9007f4026250c6bc8414f9bf50c86c2d7235da")},
      {"RFC 2202 SHA-1 6", Integrity::hmac_sha1_96, repeat(0xaa, 80), big, hex("aa4ae5e15272d00e95705637ce8a3b55ed402112")},
      {"RFC 2202 SHA-1 7", Integrity::hmac_sha1_96, repeat(0xaa, 80), big2, hex("e8e99d0f45237d786d6bbaa7965c7808bbff1a91")},
      // RFC 4231 section 4 (HMAC-SHA-2, full output)
      {"RFC 4231 1 SHA-256", Integrity::hmac_sha256_128, repeat(0x0b, 20), hi,
       hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")},
      {"RFC 4231 1 SHA-384", Integrity::hmac_sha384_192, repeat(0x0b, 20), hi,
       hex("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")},
      {"RFC 4231 1 SHA-512", Integrity::hmac_sha512_256, repeat(0x0b, 20), hi,
       hex("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1"
           "702e696c203a126854")},
      {"RFC 4231 3 SHA-256", Integrity::hmac_sha256_128, repeat(0xaa, 20), repeat(0xdd, 50),
       hex("773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe")},
      {"RFC 4231 3 SHA-384", Integrity::hmac_sha384_192, repeat(0xaa, 20), repeat(0xdd, 50),
       hex("88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27")},
      {"RFC 4231 3 SHA-512", Integrity::hmac_sha512_256, repeat(0xaa, 20), repeat(0xdd, 50),
       hex("fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee894"
           "2674278859e13292fb")},
      {"RFC 4231 4 SHA-256", Integrity::hmac_sha256_128, range(1, 25), repeat(0xcd, 50),
       hex("82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b")},
      {"RFC 4231 4 SHA-384", Integrity::hmac_sha384_192, range(1, 25), repeat(0xcd, 50),
       hex("3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb")},
      {"RFC 4231 4 SHA-512", Integrity::hmac_sha512_256, range(1, 25), repeat(0xcd, 50),
       hex("b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f"
           "2de2adebeb10a298dd")},
      {"RFC 4231 6 SHA-256", Integrity::hmac_sha256_128, repeat(0xaa, 131), big,
       hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")},
      {"RFC 4231 6 SHA-384", Integrity::hmac_sha384_192, repeat(0xaa, 131), big,
       hex("4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952")},
      {"RFC 4231 6 SHA-512", Integrity::hmac_sha512_256, repeat(0xaa, 131), big,
       hex("80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0a"
           "ec8b915a985d786598")},
      {"RFC 4231 7 SHA-256", Integrity::hmac_sha256_128, repeat(0xaa, 131), big3,
       hex("9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")},
      {"RFC 4231 7 SHA-384", Integrity::hmac_sha384_192, repeat(0xaa, 131), big3,
       hex("6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e")},
      // RFC 4868 section 2.7.2 (the IPsec authentication test cases, truncated)
      {"RFC 4868 2.7.2.1 1", Integrity::hmac_sha256_128, repeat(0x0b, 32), hi, hex("198a607eb44bfbc69903a0f1cf2bbdc5")},
      {"RFC 4868 2.7.2.1 2", Integrity::hmac_sha256_128, ascii("JefeJefeJefeJefeJefeJefeJefeJefe"), jefe_msg,
       hex("167f928588c5cc2eef8e3093caa0e87c")},
      {"RFC 4868 2.7.2.1 3", Integrity::hmac_sha256_128, repeat(0xaa, 32), repeat(0xdd, 50),
       hex("cdcb1220d1ecccea91e53aba3092f962")},
      {"RFC 4868 2.7.2.2 1", Integrity::hmac_sha384_192, repeat(0x0b, 48), hi,
       hex("b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973")},
      {"RFC 4868 2.7.2.2 2", Integrity::hmac_sha384_192, ascii("JefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefe"),
       jefe_msg, hex("2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d")},
      {"RFC 4868 2.7.2.2 3", Integrity::hmac_sha384_192, repeat(0xaa, 48), repeat(0xdd, 50),
       hex("809f439be00274321d4a538652164b53554a508184a0c316")},
      {"RFC 4868 2.7.2.3 1", Integrity::hmac_sha512_256, repeat(0x0b, 64), hi,
       hex("637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8")},
      {"RFC 4868 2.7.2.3 2", Integrity::hmac_sha512_256,
       ascii("JefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefeJefe"), jefe_msg,
       hex("cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454")},
      {"RFC 4868 2.7.2.3 3", Integrity::hmac_sha512_256, repeat(0xaa, 64), repeat(0xdd, 50),
       hex("2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8")},
      // RFC 3566 section 4.6 (AES-XCBC-MAC-96)
      {"RFC 3566 1", Integrity::aes_xcbc_96, range(0, 16), {}, hex("75f0251d528ac01c4573dfd5")},
      {"RFC 3566 2", Integrity::aes_xcbc_96, range(0, 16), range(0, 3), hex("5b376580ae2f19afe7219cee")},
      {"RFC 3566 3", Integrity::aes_xcbc_96, range(0, 16), range(0, 16), hex("d2a246fa349b68a79998a439")},
      {"RFC 3566 4", Integrity::aes_xcbc_96, range(0, 16), range(0, 20), hex("47f51b4564966215b8985c63")},
      {"RFC 3566 5", Integrity::aes_xcbc_96, range(0, 16), range(0, 32), hex("f54f0ec8d2b9f3d36807734b")},
  };
}

TEST(PublishedVectors, MacsMatchRfc2202Rfc4231Rfc4868Rfc3566) {
  for (const auto& v : mac_vectors()) {
    SCOPED_TRACE(v.source);
    auto mac = ipsec::crypto::make_mac(v.alg, v.key);
    std::uint8_t out[64];
    // Whole input at once.
    mac->begin();
    mac->update(v.data);
    mac->finish(out);
    EXPECT_EQ(std::vector<std::uint8_t>(out, out + v.mac.size()), v.mac);
    // The same input fed byte by byte must give the same MAC (streaming).
    mac->begin();
    for (auto b : v.data) mac->update({&b, 1});
    mac->finish(out);
    EXPECT_EQ(std::vector<std::uint8_t>(out, out + v.mac.size()), v.mac);
    // A second use of the keyed context must not depend on the first.
    mac->begin();
    mac->update(v.data);
    mac->finish(out);
    EXPECT_EQ(std::vector<std::uint8_t>(out, out + v.mac.size()), v.mac);
  }
}

TEST(PublishedVectors, InvalidMacRowsFail) {
  // One key bit flipped: the MAC must change (guards against a test that
  // compares nothing).
  auto v = mac_vectors()[0];
  v.key[0] ^= 1;
  auto mac = ipsec::crypto::make_mac(v.alg, v.key);
  std::uint8_t out[64];
  mac->begin();
  mac->update(v.data);
  mac->finish(out);
  EXPECT_NE(std::vector<std::uint8_t>(out, out + v.mac.size()), v.mac);
}

struct CipherVector {
  const char* source;
  Cipher alg;
  std::vector<std::uint8_t> key;  // without the CTR nonce
  std::vector<std::uint8_t> iv;   // CBC IV, or the full CTR counter block
  std::vector<std::uint8_t> plain;
  std::vector<std::uint8_t> cipher;
};

TEST(PublishedVectors, AesCbcRfc3602AndAesCtrRfc3686) {
  const auto ctr = [](const char* nonce, const char* iv) { return concat(concat(hex(nonce), hex(iv)), hex("00000001")); };
  const std::vector<CipherVector> vectors = {
      {"RFC 3602 case 1", Cipher::aes_cbc, hex("06a9214036b8a15b512e03d534120006"), hex("3dafba429d9eb430b422da802c9fac41"),
       ascii("Single block msg"), hex("e353779c1079aeb82708942dbe77181a")},
      {"RFC 3602 case 2", Cipher::aes_cbc, hex("c286696d887c9aa0611bbb3e2025a45a"), hex("562e17996d093d28ddb3ba695a2e6f58"),
       range(0, 32), hex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")},
      {"RFC 3602 case 4", Cipher::aes_cbc, hex("56e47a38c5598974bc46903dba290349"), hex("8ce82eefbea0da3c44699ed7db51b7d9"),
       range(0xa0, 64),
       hex("c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee9"
           "9d49a53e87f4c3da55")},
      {"RFC 3686 case 1", Cipher::aes_ctr, hex("ae6852f8121067cc4bf7a5765577f39e"), ctr("00000030", "0000000000000000"),
       ascii("Single block msg"), hex("e4095d4fb7a7b3792d6175a3261311b8")},
      {"RFC 3686 case 2", Cipher::aes_ctr, hex("7e24067817fae0d743d6ce1f32539163"), ctr("006cb6db", "c0543b59da48d90b"),
       range(0, 32), hex("5104a106168a72d9790d41ee8edad388eb2e1efc46da57c8fce630df9141be28")},
      {"RFC 3686 case 3", Cipher::aes_ctr, hex("7691be035e5020a8ac6e618529f9a0dc"), ctr("00e0017b", "27777f3f4a1786f0"),
       range(0, 36), hex("c1cf48a89f2ffdd9cf4652e9efdb72d74540a42bde6d7836d59a5ceaaef3105325b2072f")},
      {"RFC 3686 case 4", Cipher::aes_ctr, hex("16af5b145fc9f579c175f93e3bfb0eed863d06ccfdb78515"),
       ctr("00000048", "36733c147d6d93cb"), ascii("Single block msg"), hex("4b55384fe259c9c84e7935a003cbe928")},
      {"RFC 3686 case 5", Cipher::aes_ctr, hex("7c5cb2401b3dc33c19e7340819e0f69c678c3db8e6f6a91a"),
       ctr("0096b03b", "020c6eadc2cb500d"), range(0, 32),
       hex("453243fc609b23327edfaafa7131cd9f8490701c5ad4a79cfc1fe0ff42f4fb00")},
      {"RFC 3686 case 6", Cipher::aes_ctr, hex("02bf391ee8ecb159b959617b0965279bf59b60a786d3e0fe"),
       ctr("0007bdfd", "5cbd60278dcc0912"), range(0, 36),
       hex("96893fc55e5c722f540b7dd1ddf7e758d288bc95c69165884536c811662f2188abee0935")},
      {"RFC 3686 case 7", Cipher::aes_ctr, hex("776beff2851db06f4c8a0542c8696f6c6a81af1eec96b4d37fc1d689e6c1c104"),
       ctr("00000060", "db5672c97aa8f0b2"), ascii("Single block msg"), hex("145ad01dbf824ec7560863dc71e3e0c0")},
      {"RFC 3686 case 8", Cipher::aes_ctr, hex("f6d66d6bd52d59bb0796365879eff886c66dd51a5b6a99744b50590c87a23884"),
       ctr("00faac24", "c1585ef15a43d875"), range(0, 32),
       hex("f05e231b3894612c49ee000b804eb2a9b8306b508f839d6a5530831d9344af1c")},
      {"RFC 3686 case 9", Cipher::aes_ctr, hex("ff7a617ce69148e4f1726e2f43581de2aa62d9f805532edff1eed687fb54153d"),
       ctr("001cc5b7", "51a51d70a1c11148"), range(0, 36),
       hex("eb6c52821d0bbbf7ce7594462aca4faab407df866569fd07f48cc0b583d6071f1ec0e6b8")},
  };
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.source);
    auto c = ipsec::crypto::Cipher::create(v.alg, v.key);
    std::vector<std::uint8_t> out(v.plain.size());
    ASSERT_TRUE(c->encrypt(v.iv.data(), v.plain, out.data()));
    EXPECT_EQ(out, v.cipher);
    ASSERT_TRUE(c->decrypt(v.iv.data(), v.cipher, out.data()));
    EXPECT_EQ(out, v.plain);
  }
}

TEST(PublishedVectors, AesCcmRfc3610PacketVectors) {
  // RFC 3610 section 8, packet vectors 1-3 (13-byte nonce, 8-byte tag).
  // RFC 4309 publishes no vectors of its own; ESP-CCM framing is checked
  // against Python's cryptography package in tests/interop.
  struct V {
    const char* nonce;
    std::size_t len;
    const char* ct;
    const char* tag;
  };
  const V vs[] = {
      {"00000003020100a0a1a2a3a4a5", 23, "588c979a61c663d2f066d0c2c0f989806d5f6b61dac384", "17e8d12cfdf926e0"},
      {"00000004030201a0a1a2a3a4a5", 24, "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3b", "a091d56e10400916"},
      {"00000005040302a0a1a2a3a4a5", 25, "51b1e5f44a197d1da46b0f8e2d282ae871e838bb64da859657", "4adaa76fbd9fb0c5"},
  };
  const auto key = range(0xc0, 16);
  const auto aad = range(0, 8);
  for (const auto& v : vs) {
    SCOPED_TRACE(v.nonce);
    auto a = ipsec::crypto::Aead::create(ipsec::crypto::Aead::Kind::ccm, key, 8, 13);
    const auto pt = range(8, v.len);
    std::vector<std::uint8_t> ct(v.len);
    std::uint8_t tag[16];
    const auto nonce = hex(v.nonce);
    ASSERT_TRUE(a->seal(nonce, aad, {}, pt, ct.data(), tag));
    EXPECT_EQ(ct, hex(v.ct));
    EXPECT_EQ(std::vector<std::uint8_t>(tag, tag + 8), hex(v.tag));
    std::vector<std::uint8_t> back(v.len);
    ASSERT_TRUE(a->open(nonce, aad, {}, hex(v.ct), hex(v.tag), back.data()));
    EXPECT_EQ(back, pt);
    auto bad = hex(v.tag);
    bad[0] ^= 1;
    EXPECT_FALSE(a->open(nonce, aad, {}, hex(v.ct), bad, back.data()));
  }
}

// ---------------------------------------------------------------- ESP packets

struct EspVector {
  const char* source;
  Cipher alg;
  std::vector<std::uint8_t> key;  // key || salt
  bool esn;
  std::uint64_t seq;
  std::vector<std::uint8_t> plaintext;  // payload, padding, pad length, next header
  std::vector<std::uint8_t> packet;     // SPI through ICV
};

// The ESP packet vectors run on each backend this build has; a backend
// that is asked for by name must be the one that ran.
std::vector<ipsec::CryptoChoice> backends() {
  std::vector<ipsec::CryptoChoice> v{ipsec::CryptoChoice::openssl};
  if (ipsec::crypto_availability().ipsec_mb_usable && ipsec::crypto_availability().aesni) {
    v.push_back(ipsec::CryptoChoice::ipsec_mb);
  }
  return v;
}

class EspVectors : public testing::TestWithParam<ipsec::CryptoChoice> {};

std::string backend_name(const testing::TestParamInfo<ipsec::CryptoChoice>& i) {
  return i.param == ipsec::CryptoChoice::openssl ? "openssl" : "ipsec_mb";
}

void expect_backend(ipsec::CryptoChoice c, const EspTransform& t) {
  EXPECT_EQ(t.backend(),
            c == ipsec::CryptoChoice::openssl ? ipsec::CryptoBackend::openssl : ipsec::CryptoBackend::ipsec_mb)
      << t.backend_reason();
}

void check_esp_vector(const EspVector& v, ipsec::CryptoChoice choice) {
  SCOPED_TRACE(v.source);
  auto sa = test::esp_sa(v.alg, v.key, Integrity::none, {}, v.esn);
  EspTransform t(sa, choice);
  expect_backend(choice, t);
  std::vector<std::uint8_t> out(v.packet.size());
  std::size_t n = 0;
  ipsec::IcvMismatch mm;
  ASSERT_EQ(t.decrypt(v.packet, v.seq, out.data(), n, &mm), EspTransform::Status::ok);
  EXPECT_EQ(std::vector<std::uint8_t>(out.begin(), out.begin() + n), v.plaintext);

  // Encrypting the plaintext with the packet's IV must reproduce the packet.
  std::vector<std::uint8_t> buf(v.packet.size(), 0);
  std::memcpy(buf.data(), v.packet.data(), 8);
  std::memcpy(buf.data() + 8 + t.iv_len(), v.plaintext.data(), v.plaintext.size());
  ASSERT_TRUE(t.encrypt(buf, v.seq, t.iv_len() ? v.packet.data() + 8 : nullptr));
  EXPECT_EQ(buf, v.packet);

  // Any changed byte is caught (the RFC 3602 packets carry no ICV, so only
  // transforms with integrity can tell).
  if (!t.checks_integrity()) return;
  for (std::size_t i : {std::size_t{0}, std::size_t{9}, v.packet.size() / 2, v.packet.size() - 1}) {
    auto bad = v.packet;
    bad[i] ^= 0x40;
    EXPECT_NE(t.decrypt(bad, v.seq, out.data(), n, &mm), EspTransform::Status::ok) << "byte " << i;
  }
  // With ESN the high bits are authenticated although not sent.
  if (v.esn) {
    EXPECT_NE(t.decrypt(v.packet, v.seq + (1ull << 32), out.data(), n, &mm), EspTransform::Status::ok);
  }
}

TEST_P(EspVectors, AesGcmEspDraftMcgrewGcmTest) {
  // draft-mcgrew-gcm-test-01 section 4 (the GCM ESP packet vectors RFC 4106
  // implementations are checked against). Key column: key || salt.
  const std::vector<EspVector> vectors = {
      {"gcm-test case 1 (ESN)", Cipher::aes_gcm_16, hex("4c80cdefbb5d10da906ac73c3613a634 2e443b68"), true,
       0x8765432100000000ull,
       hex("45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
           "00000000045f736970045f756470037369700963796265726369747902646b00"
           "0021000101020201"),
       hex("00004321000000004956ed7e3b244cfefecf537e729d5b07dc30df528dd22b76"
           "8d1b98736696a6fd348509fa13ceac34cfa2436f14a3f3cf65925bf1f4a13c5d"
           "15b21e1884f5ff6247aeabb786b93bce61bc17d768fd9732459018148f6cbe72"
           "2fd04796562dfdb4")},
      {"gcm-test case 2", Cipher::aes_gcm_16, hex("feffe9928665731c6d6a8f9467308308 cafebabe"), false, 0x0a,
       hex("4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100"
           "0001000000000000037369700963796265726369747902646b00000100010001"),
       hex("0000a5f80000000afacedbaddecaf888deb22cd9b07c72c16e3a65beeb8df304"
           "a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f51330d0eec416642"
           "cfbb85a5b47e48a4ec3b9ba95d918bd183b70d3aa8bc6ee4c309e9d85a41ad4a")},
      {"gcm-test case 3 (256-bit)", Cipher::aes_gcm_16,
       hex("abbccddef00112233445566778899aababbccddef00112233445566778899aab 11223344"), false, 2,
       hex("4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
           "7002400020bf0000020405b40101040201020201"),
       hex("4a2cbfe3000000020102030405060708ff425c9b724599df7a3bcd510194e00d"
           "6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99d"
           "ef842d8eb335f4eecfdbf831824b4c4915956c96")},
      {"gcm-test case 4 (zero key)", Cipher::aes_gcm_16, hex("00000000000000000000000000000000 00000000"), false, 1,
       hex("4500003c99c500008001cb7a40679318010101010800075c0200440061626364"
           "65666768696a6b6c6d6e6f707172737475767761626364656667686901020201"),
       hex("000000000000000100000000000000004688daf2f973a392732909c331d56d60"
           "f694abaa414b5e7ff5fdcdfff5e9a284456476492719ffb64de7d9dca1e1d894"
           "bc3bd57873ed4d181d19d4d5c8c18af3f821d496eeb096e98ad2b69e4799c71d")},
      {"gcm-test case 5 (ESN)", Cipher::aes_gcm_16, hex("3de09874b388e6491988d0c3607eae1f 57690e43"), true,
       0x1010101010101010ull,
       hex("4500003c99c300008001cb7c40679318010101010800085c0200430061626364"
           "65666768696a6b6c6d6e6f707172737475767761626364656667686901020201"),
       hex("42f67e3f101010104e280000a2fca1a3fba2caa4853cf9f0f22cb10d86dd83b0"
           "fec75691cf1a04b00d1138ec9c35791765acbd8701ad79845bf9fe3fba487bc9"
           "1755e6662b4c8d0d1f5e22739530320ae0d731cc978ecafaeae88f00e80d6e48")},
      {"gcm-test case 6 (ESN, short)", Cipher::aes_gcm_16, hex("3de09874b388e6491988d0c3607eae1f 57690e43"), true,
       0x1010101010101010ull, hex("4500001c42a200008001441f406793b6e00000020a00f5ff01020201"),
       hex("42f67e3f101010104e280000a2fca1a3fba2ca845e5df9f0f22c3e6e86dd831e"
           "1fc65792cd1af9130e1379ed369f071f35e034be95f112e4e7d05d35")},
      {"gcm-test case 7 (192-bit)", Cipher::aes_gcm_16, hex("feffe9928665731c6d6a8f9467308308feffe9928665731c cafebabe"),
       false, 0x0a, hex("45000028a4ad4000400678800a01038f0a010612802306b8cb712602dd6bb03e501016d075680001"),
       hex("0000a5f80000000afacedbaddecaf888a5b1f8066029aea40e598b8122de0242"
           "0938b3ab33f828e687b8858b5bfbdbd0315b27452144cc7795457b9652037f53"
           "18027b5b4cd7a636")},
      {"gcm-test case 8 (ESN)", Cipher::aes_gcm_16, hex("abbccddef00112233445566778899aab decaf888"), true, 1,
       hex("4500004933ba00007f119106c3fb1d10c2b1d326c02831ce0035dd7b800302d5"
           "00004e20001e8c18d75b81dc91baa0476b91b924b280389d92c963bac046ec95"
           "9b6266c04722b14923010101"),
       hex("0000010000000001cafedebaceface7418a6fd42f72cbf4ab2a2ea901f73d814"
           "e3e7f243d95412e1c349c1d2fbec168f9190feebaf2cb01984e65863965d7472"
           "b79da345e0e780191f0d2f0e0f496c226f2127b27db35724e7845d68651f57e6"
           "5f354f75ff17015769623436")},
      {"gcm-test case 9 (256-bit, ESN)", Cipher::aes_gcm_16,
       hex("abbccddef00112233445566778899aababbccddef00112233445566778899aab 73616c74"), true, 0x156f3126dd0db99bull,
       hex("45080028732c00004006e9f90a0106120a01038f06b88023dd6bafbecb712602"
           "50101f646d540001"),
       hex("17405e67dd0db99b616e640169766563f2d69ecdbd5a0d5b8d5ef38bad4da58d"
           "1f278fde98ef67549d524a3018d9a57ff4d3a31ce673119e451626c2415771e3"
           "b7eebca614c89b35")},
      {"gcm-test case 10 (ESN)", Cipher::aes_gcm_16, hex("3de09874b388e6491988d0c3607eae1f 57690e43"), true,
       0x1010101010101010ull,
       hex("45000049333e00007f119182c3fb1d10c2b1d326c02831ce0035cb458003025b"
           "000001e0001e8c18d65759d52284a0352c71475c8880391c764d6e5ee0496b32"
           "5ae270c03899493915010101"),
       hex("42f67e3f101010104e280000a2fca1a3fba2cad12fc1f9f00d3cebf305410db8"
           "3d7784b607323d220f24b0a97d54182800cadb0f68d99ef0e0c0c89ae9bea888"
           "4e52d65bc1afd0740f742444747b5b39ab533163aad4550ee5160975cdb608c5"
           "769189609763b8e18caa81e2")},
      {"gcm-test case 11 (256-bit, ESN)", Cipher::aes_gcm_16,
       hex("abbccddef00112233445566778899aababbccddef00112233445566778899aab 73616c74"), true, 0x156f3126dd0db99bull,
       hex("636973636f0172756c65730174686501"
           "6e6574776501646566696e6501746865746563686e6f6c6f6769657301746861"
           "7477696c6c01646566696e65746f6d6f72726f7701020201"),
       hex("17405e67dd0db99b616e640169766563d4b7ed86a1777f2ea13d6973d324c69e"
           "7b43f826fb56831226508bebd2dceb18d0a6df10e5487df074113e14c641024e"
           "3e6773d91a62ee429b043a10e3efe6b012a49363412364f8c0cac587f249e56b"
           "11e24f30e44ccc76")},
      {"gcm-test case 12 (seq ffffffff)", Cipher::aes_gcm_16, hex("7d773d00c144c525ac619d18c84a3f47 d9664267"), false,
       0xffffffffull, hex("01020201"),
       hex("335467aeffffffff43457e9182443bc6437f866bcb3f699fe9b0822bac961c4504bef270")},
      {"gcm-test case 13 (ESN)", Cipher::aes_gcm_16, hex("abbccddef00112233445566778899aab decaf888"), true, 1,
       hex("746f016265016f72016e6f7401746f0162650001"),
       hex("0000010000000001cafedebaceface7429c9fc69a197d038ccdd14e2ddfcaa05"
           "43332164412503524303ed3c6c5f283843af8c3e")},
      {"gcm-test case 14 (256-bit, ESN all ones)", Cipher::aes_gcm_16,
       hex("6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961 7475726e"), true,
       0xffffffffffffffffull,
       hex("45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
           "65666768696a6b6c6d6e6f707172737401020201"),
       hex("796b6963ffffffff333021696765746df97ab2aa356d8edce17644ac8c78e25d"
           "d24dedbb29ebf1b64a274b39b49c3a864cd3d78ca4ae68a32b42458fb57dbe82"
           "1dcc63b9d0937ba2945f669368661a329fb4c053")},
      {"gcm-test case 16 (ESN)", Cipher::aes_gcm_16, hex("3de09874b388e6491988d0c3607eae1f 57690e43"), true,
       0x1010101010101010ull,
       hex("45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
           "65666768696a6b6c6d6e6f707172737401020201"),
       hex("3f7ef642101010104e280000a2fca1a3fba2caa8c6c5f9f0f22ca54a061210ad"
           "3f6e5791cf1aca210d117cec9c35791765acbd8701ad79845bf9fe3fba487bc9"
           "6321930684eecadb56912546e7a95c9740d7cb05")},
      {"gcm-test case 17 (ESN)", Cipher::aes_gcm_16, hex("4c80cdefbb5d10da906ac73c3613a634 22433c64"), true,
       0x8765432100000007ull, hex("0800c6cd020007006162636465666768696a6b6c6d6e6f707172737401020201"),
       hex("00004321000000074855ec7d3a234bfd74752e8aeb5d873cd7c0f4acc36c4bff"
           "84b7d7b98f0ca8b6acda6894bc619069ef9cbc28fe1b56a7c4e0d58c86cd2bc0")},
      // The same draft's GMAC case (RFC 4543 ENCR_NULL_AUTH_AES_GMAC).
      {"gcm-test case 15 (GMAC)", Cipher::aes_gmac, hex("4c80cdefbb5d10da906ac73c3613a634 22433c64"), false, 7,
       hex("45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
           "65666768696a6b6c6d6e6f707172737401020201"),
       hex("000043210000000700000000000000004500003 0da3a00008001df3bc0a80005"
           "c0a800010800c6cd020007006162636465666768696a6b6c6d6e6f7071727374"
           "01020201f2a9a836e155106aa8dcd618e4099aaa")},
  };
  for (const auto& v : vectors) check_esp_vector(v, GetParam());
}

TEST_P(EspVectors, AesCbcEspRfc3602Cases5To8) {
  // RFC 3602 section 4, cases 5-8: whole ESP packets (no integrity).
  struct V {
    const char* name;
    const char* key;
    std::uint32_t seq;
    std::uint8_t nh;
    const char* payload;
    const char* packet;
  };
  const V vs[] = {
      {"case 5", "90d382b410eeba7ad938c46cec1a82bf", 1, 1,
       "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e"
       "2f3031323334353637",
       "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6a9453e194e120849a4870b66cc6b9965330013b4898dc8"
       "56a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c538ab50c551b874aa269add047ad2d5913ac19b7cfbad4a6"},
      {"case 6", "90d382b410eeba7ad938c46cec1a82bf", 8, 1, "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777",
       "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4488987ce742e8109689bb379d2d750c0d915dca346a89f"
       "75"},
      {"case 7", "0123456789abcdef0123456789abcdef", 2, 4,
       "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b0c0d0e0f101112131415161718191a"
       "1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
       "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c449225e4f3ce5ed611b0c237ca96cf74a93013c1b0ea1a0cf70"
       "f8e4ecaec78ac53aad7a0f022b859243c647752e94a859352b8a4d4d2decd136e5c177f132ad3fbfb2201ac9904c74ee0a109e0ca1e4dfe9"
       "d5a100b842f1c22f0d"},
      {"case 8", "0123456789abcdef0123456789abcdef", 5, 4,
       "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083da3de0300ffffffffffffffffffffffffffffffffffffff"
       "ffffffffffffffffffffffffff",
       "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8047232cc00f7048fe45318e11f8a0f62ede3c3fc61203b"
       "b50f980a08c9843fd3a1b06d5c07ff9639b7eb7dfb3512e5de435e7207ed971ef3d2726d9b5ef6affc6d17a0decbb13892"},
  };
  for (const auto& v : vs) {
    auto payload = hex(v.payload);
    // Default padding (RFC 4303 section 2.4): 1, 2, 3, ... up to the block size.
    std::size_t pad = (16 - (payload.size() + 2) % 16) % 16;
    auto plain = payload;
    for (std::size_t i = 0; i < pad; ++i) plain.push_back(static_cast<std::uint8_t>(i + 1));
    plain.push_back(static_cast<std::uint8_t>(pad));
    plain.push_back(v.nh);
    check_esp_vector({v.name, Cipher::aes_cbc, hex(v.key), false, v.seq, plain, hex(v.packet)}, GetParam());
  }
}

TEST_P(EspVectors, ChaCha20Poly1305EspRfc7634AppendixA) {
  // RFC 7634 Appendix A: an ICMP echo request in tunnel mode, SPI 0x01020304,
  // sequence number 5, IV 1011121314151617. Built by ipsentry's outbound path.
  filters::SaConfig cfg = test::esp_sa(Cipher::chacha20_poly1305, concat(range(0x80, 32), hex("a0a1a2a3")));
  cfg.spi = 0x01020304;
  cfg.mode = filters::SaMode::tunnel;
  cfg.direction = filters::Direction::outbound;
  cfg.src = dissect::IpAddr::parse("203.0.113.153");
  cfg.dst = dissect::IpAddr::parse("203.0.113.5");
  cfg.initial_seq = 4;
  std::vector<filters::SaConfig> sas;
  sas.push_back(std::move(cfg));
  ipsec::Sad sad(std::move(sas), GetParam());
  ASSERT_NE(sad.at(0).esp(), nullptr);
  expect_backend(GetParam(), *sad.at(0).esp());
  ipsec::Engine engine;
  const auto inner = concat(hex("45000054a6f2000040 01e778c6336405c0000205 08005b7a3a080000553bec1000073627"), range(8, 48));
  const auto iv = hex("1011121314151617");
  ipsec::OutboundOptions o;
  o.iv = iv.data();
  auto r = engine.outbound(sad.at(0), inner, o);
  ASSERT_EQ(r.status, ipsec::OutboundStatus::ok);
  const auto expected_esp = hex(
      "0102030400000005101112131415161724039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb"
      "61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7"
      "b11b369907e1ad43");
  ASSERT_EQ(r.packet.size(), 20 + expected_esp.size());
  EXPECT_EQ(std::vector<std::uint8_t>(r.packet.begin() + 20, r.packet.end()), expected_esp);
  EXPECT_EQ(r.packet[9], 50);  // outer protocol ESP
}

INSTANTIATE_TEST_SUITE_P(Backends, EspVectors, testing::ValuesIn(backends()), backend_name);

}  // namespace
}  // namespace ipsentry
