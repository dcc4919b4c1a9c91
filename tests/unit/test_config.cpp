// The YAML configuration and the key importers: what they accept, and that
// every error names the file, the line and the field.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/importers.hpp"
#include "test_support.hpp"

namespace ipsentry::filters {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("ipsentry-test-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

Config parse(const std::string& yaml) { return parse_config(yaml, "test.yaml", temp_dir()); }

/// Parses and returns the error message (failing the test if it parses).
std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "configuration was accepted:\n" << yaml;
  return {};
}

TEST(Config, SeedAhConfigurationWithKeyFile) {
  auto dir = temp_dir();
  {
    std::ofstream k(dir / "Test.key", std::ios::binary);
    k << "This is a test";
  }
  auto cfg = parse(R"(
interfaces: { local: [fe80::2aa:ff:fe53:a92c] }
policies:
  - name: host1-host2
    from: me
    to: fe80::2aa:ff:fe92:d0f1
    protocol: any
    mirrored: true
    action: protect
    ipsec: { protocol: ah, mode: transport }
    sas: [to-host2, from-host2]
sas:
  - name: to-host2
    spi: 3001
    direction: outbound
    dst: fe80::2aa:ff:fe92:d0f1
    protocol: ah
    auth: hmac-md5-96
    key_file: Test.key
    replay_window: 64
    lifetime: { seconds: 900, bytes: 2G }
  - name: from-host2
    spi: 3000
    direction: inbound
    dst: fe80::2aa:ff:fe53:a92c
    protocol: ah
    auth: hmac-md5-96
    key_file: Test.key
)");
  ASSERT_EQ(cfg.sas.size(), 2u);
  const auto& sa = cfg.sas[0];
  EXPECT_EQ(*sa.spi, 3001u);
  EXPECT_EQ(sa.protocol, IpsecProtocol::ah);
  EXPECT_EQ(sa.integrity, Integrity::hmac_md5_96);
  // key_file is the raw bytes of the file (ipsec6 semantics).
  EXPECT_EQ(std::string(sa.auth_key.bytes().begin(), sa.auth_key.bytes().end()), "This is a test");
  EXPECT_EQ(sa.lifetime.bytes, 2ull << 30);
  ASSERT_EQ(cfg.policies.size(), 1u);
  EXPECT_EQ(cfg.policies[0].local.kind, AddressSelector::Kind::me);
  EXPECT_TRUE(cfg.policies[0].mirrored);
  // MD5 is accepted with a warning, and so is the 14-byte key.
  bool md5_warned = false;
  bool len_warned = false;
  for (const auto& w : cfg.warnings) {
    md5_warned |= w.find("hmac-md5-96 is deprecated") != std::string::npos;
    len_warned |= w.find("key is 14 bytes") != std::string::npos;
  }
  EXPECT_TRUE(md5_warned);
  EXPECT_TRUE(len_warned);
}

TEST(Config, ErrorsNameFileLineAndField) {
  EXPECT_EQ(error_of("sas:\n  - spi: 1\n    protocol: esp\n    encryption: aes-cbc\n    enc_key: 0x0011\n"),
            "test.yaml:5: sas[0].enc_key: aes-cbc takes a 16, 24 or 32 byte key; this one is 2 bytes");
  EXPECT_EQ(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: aes-gcm-16\n"
                     "    enc_key: 0x000102030405060708090a0b0c0d0e0f\n"),
            "test.yaml:5: sas[0].enc_key: aes-gcm-16 takes a 20, 28 or 36 byte key (cipher key followed by a 4-byte "
            "salt); this one is 16 bytes");
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: rot13\n")
                .find("test.yaml:4: sas[0].encryption: unknown encryption algorithm 'rot13'"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: null\n    colour: blue\n")
                .find("test.yaml:5: sas[0].colour: unknown setting 'colour'"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: ah\n    auth: hmac-sha1-96\n    key_file: /nonexistent/k\n")
                .find("test.yaml:5: sas[0].key_file: cannot read key file '/nonexistent/k'"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: [1, 2\n").find("test.yaml:"), std::string::npos);  // broken YAML
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: aes-gcm-16\n"
                     "    enc_key: 0x000102030405060708090a0b0c0d0e0f10111213\n    auth: hmac-sha1-96\n"
                     "    auth_key: 0x0001020304050607080910111213141516171819\n")
                .find("aes-gcm-16 already provides integrity"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: aes-cbc\n"
                     "    auth: hmac-sha1-96\n    key: 0x000102030405060708090a0b0c0d0e0f\n")
                .find("sas[0].key: this SA needs two keys"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: null\n"
                     "  - spi: 300\n    protocol: esp\n    encryption: null\n")
                .find("test.yaml:5: SA spi 0x0000012c esp is already defined at test.yaml:2"),
            std::string::npos);
  EXPECT_NE(error_of("policies:\n  - action: protect\n    ipsec: {protocol: esp}\n    sas: [nope]\n")
                .find("policies[0].sas: no SA is named 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: null\n    dst: 192.0.2.300\n")
                .find("sas[0].dst: '192.0.2.300' is not an IPv4 or IPv6 address"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: aes-cbc\n    enc_key: 0x00zz\n")
                .find("'z' is not a hex digit"),
            std::string::npos);
  EXPECT_NE(error_of("sas:\n  - spi: 300\n    protocol: esp\n    encryption: null\n    replay_window: 70000\n")
                .find("replay_window"),
            std::string::npos);
}

TEST(Config, KeysNeverAppearInMessages) {
  auto msg =
      error_of("sas:\n  - spi: 1\n    protocol: esp\n    encryption: aes-cbc\n    enc_key: 0x0123456789abcdef\n");
  EXPECT_EQ(msg.find("0123456789abcdef"), std::string::npos);
}

TEST(Config, SupportedAlgorithmsAndKeyLengths) {
  for (const auto& ci : all_ciphers()) {
    if (!ci.supported || ci.mode == CipherMode::none) continue;
    for (auto len : ci.key_sizes) {
      if (len == 0) continue;
      EXPECT_FALSE(check_cipher_key(ci.id, len).has_value()) << ci.name << " " << int(len);
      EXPECT_TRUE(check_cipher_key(ci.id, len + 1u).has_value()) << ci.name;
    }
  }
  EXPECT_EQ(find_cipher("rfc4106(gcm(aes))"), Cipher::aes_gcm_16);
  EXPECT_EQ(find_cipher("AES128GCM16"), Cipher::aes_gcm_16);
  EXPECT_EQ(find_integrity("hmac(sha256)"), Integrity::hmac_sha256_128);
  EXPECT_EQ(find_cipher("blowfish-cbc"), Cipher::blowfish_cbc);
  EXPECT_FALSE(cipher_info(Cipher::blowfish_cbc).supported);
}

fs::path corpus() {
  const char* src = std::getenv("IPSENTRY_SOURCE_DIR");
  return fs::path(src ? src : ".") / "tests/corpus/peers";
}

TEST(Importers, WiresharkEspSaTables) {
  auto cfg = import_keys(KeyFormat::wireshark_esp_sa, (corpus() / "wireshark/esp_sa.tmpl").string());
  ASSERT_EQ(cfg.sas.size(), 2u);
  EXPECT_EQ(*cfg.sas[0].spi, 0x070883c2u);
  EXPECT_EQ(cfg.sas[0].cipher, Cipher::aes_cbc);
  EXPECT_EQ(cfg.sas[0].integrity, Integrity::hmac_sha1_96);
  EXPECT_EQ(cfg.sas[0].enc_key.reveal_hex(), "0x5de1a4c2c72662c9fda7a7c78cd25623");
  EXPECT_EQ(cfg.sas[0].dst->str(), "192.168.0.100");
  EXPECT_EQ(cfg.sas[0].name, "esp_sa.tmpl:1");

  auto wiki1 =
      import_keys(KeyFormat::wireshark_esp_sa, (corpus() / "wireshark-wiki/ipsec_esp_capture_1/esp_sa").string());
  EXPECT_EQ(wiki1.sas.size(), 24u);
  // ASCII keys are taken byte for byte.
  EXPECT_EQ(wiki1.sas[0].enc_key.reveal_hex(), "0x616573636263656e6372797074696f6e");
  auto wiki3 =
      import_keys(KeyFormat::wireshark_esp_sa, (corpus() / "wireshark-wiki/ipsec_esp_capture_3/esp_sa").string());
  ASSERT_EQ(wiki3.sas.size(), 3u);
  EXPECT_FALSE(cipher_info(wiki3.sas[0].cipher).supported);
  for (const char* dir : {"ipsec_esp_capture_2", "ipsec_esp_capture_5", "ipsec_ikev2_esp"}) {
    SCOPED_TRACE(dir);
    auto c = import_keys(KeyFormat::wireshark_esp_sa, (corpus() / "wireshark-wiki" / dir / "esp_sa").string());
    EXPECT_FALSE(c.sas.empty());
  }
}

TEST(Importers, TcpdumpSecrets) {
  auto cfg = import_keys(KeyFormat::tcpdump, (corpus() / "tcpdump/esp-secrets.txt").string());
  ASSERT_EQ(cfg.sas.size(), 3u);
  EXPECT_EQ(*cfg.sas[2].spi, 0xd1234567u);
  EXPECT_EQ(cfg.sas[2].cipher, Cipher::aes_cbc);
  EXPECT_EQ(cfg.sas[2].enc_key.size(), 32u);
  EXPECT_EQ(cfg.sas[2].integrity, Integrity::unchecked_96);
  // Inline, several SAs, and the default SA without spi@address.
  auto inline_cfg = import_keys(KeyFormat::tcpdump_inline,
                                "0x1@192.0.2.1 3des-cbc-hmac96:0x4043434545464649494a4a4c4c4f4f515152525454575758,"
                                "aes128-cbc:0x000102030405060708090a0b0c0d0e0f");
  ASSERT_EQ(inline_cfg.sas.size(), 2u);
  EXPECT_FALSE(inline_cfg.sas[1].spi.has_value());
  EXPECT_FALSE(inline_cfg.sas[1].dst.has_value());
  // The "ikev2 I|R" lines of an IKEv2 secrets file become one IKE SA.
  auto ike = import_keys(KeyFormat::tcpdump, (corpus() / "tcpdump/ikev2pI2-secrets.txt").string());
  EXPECT_TRUE(ike.sas.empty());
  ASSERT_EQ(ike.ike_sas.size(), 1u);
  EXPECT_EQ(ike.ike_sas[0].spi_i, 0x0001020304050607ull);
  EXPECT_EQ(ike.ike_sas[0].spi_r, 0xc02e7a3031a03188ull);
  EXPECT_EQ(ike.ike_sas[0].cipher, Cipher::aes_cbc);
  EXPECT_EQ(ike.ike_sas[0].integrity, Integrity::hmac_sha1_96);
  EXPECT_EQ(ike.ike_sas[0].sk_ei.size(), 16u);
  EXPECT_EQ(ike.ike_sas[0].sk_ar.size(), 20u);
  try {
    (void)import_keys(KeyFormat::tcpdump_inline, "0x1@192.0.2.1 rc5-cbc:0x0011");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown tcpdump ESP algorithm 'rc5-cbc'"), std::string::npos);
  }
}

TEST(Importers, IpXfrmState) {
  const std::string text =
      "src 192.0.2.1 dst 192.0.2.2\n"
      "\tproto esp spi 0xc0ffee01 reqid 1 mode tunnel\n"
      "\treplay-window 32 flag af-unspec\n"
      "\tauth-trunc hmac(sha256) 0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 128\n"
      "\tenc cbc(aes) 0x000102030405060708090a0b0c0d0e0f\n"
      "\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0\n"
      "\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n"
      "src 2001:db8::2 dst 2001:db8::1\n"
      "\tproto esp spi 0x00001234 reqid 2 mode transport\n"
      "\treplay-window 0 flag af-unspec esn\n"
      "\taead rfc4106(gcm(aes)) 0x000102030405060708090a0b0c0d0e0f10111213 128\n"
      "\tanti-replay esn context:\n"
      "\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0\n"
      "\t replay_window 128, bitmap-length 4\n"
      "src 192.0.2.2 dst 192.0.2.1\n"
      "\tproto ah spi 0x00000301 reqid 3 mode transport\n"
      "\treplay-window 64\n"
      "\tauth hmac(sha256) 0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
      "src 192.0.2.2 dst 192.0.2.1\n"
      "\tproto comp spi 0x00000302 reqid 3 mode transport\n";
  auto cfg = import_xfrm(text, "xfrm.txt");
  ASSERT_EQ(cfg.sas.size(), 3u);
  EXPECT_EQ(cfg.sas[0].mode, SaMode::tunnel);
  EXPECT_EQ(cfg.sas[0].integrity, Integrity::hmac_sha256_128);
  ASSERT_TRUE(cfg.sas[0].encap.has_value());
  EXPECT_EQ(cfg.sas[0].replay_window, 32u);
  EXPECT_EQ(cfg.sas[1].cipher, Cipher::aes_gcm_16);
  EXPECT_TRUE(cfg.sas[1].esn);
  EXPECT_EQ(cfg.sas[1].replay_window, 128u);
  EXPECT_EQ(cfg.sas[2].protocol, IpsecProtocol::ah);
  // Linux's "auth hmac(sha256)" without auth-trunc truncates to 96 bits.
  EXPECT_EQ(cfg.sas[2].integrity, Integrity::hmac_sha256_96);
  EXPECT_FALSE(cfg.warnings.empty());  // the IPComp state was skipped with a note
  try {
    (void)import_xfrm("src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x1 mode tunnel\n\tenc cbc(aes) 0x0011\n", "x.txt");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("x.txt:1"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("aes-cbc takes a 16, 24 or 32 byte key"), std::string::npos);
  }
}

// Issue 15 item 9: `ip -s xfrm state` exactly as iproute2 prints it (the
// SPI and reqid in both bases, the key's bit count, the flags' mask, the
// lifetime and statistics blocks), and `ip -o` with its backslashes.
TEST(Importers, IpXfrmStateAsIproute2PrintsIt) {
  const std::string key20 = "0x000102030405060708090a0b0c0d0e0f10111213";
  const std::string text =
      "src 192.0.2.1 dst 192.0.2.2\n"
      "\tproto esp spi 0xc0ffee01(3237998081) reqid 16385(0x00004001) mode tunnel\n"
      "\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)\n"
      "\taead rfc4106(gcm(aes)) " +
      key20 +
      " (160 bits) 128\n"
      "\tanti-replay esn context:\n"
      "\t seq-hi 0x0, seq 0x1c, oseq-hi 0x0, oseq 0x0\n"
      "\t replay_window 256, bitmap-length 8\n"
      "\t 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0fffffff \n"
      "\tdir in\n"
      "\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0\n"
      "\tlifetime config:\n"
      "\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n"
      "\t  limit: soft (INF)(packets), hard (INF)(packets)\n"
      "\t  expire add: soft 0(sec), hard 0(sec)\n"
      "\t  expire use: soft 0(sec), hard 0(sec)\n"
      "\tlifetime current:\n"
      "\t  2400(bytes), 28(packets)\n"
      "\t  add 2026-12-07 10:00:00 use 2026-12-07 10:00:01\n"
      "\tstats:\n"
      "\t  replay-window 7 replay 2 failed 1\n"
      "src 192.0.2.2 dst 192.0.2.1\n"
      "\tproto esp spi 0x00000101(257) reqid 1(0x00000001) mode transport\n"
      "\treplay-window 32 seq 0x00000000 flag noecn af-unspec esn (0x10100001)\n"
      "\tauth-trunc hmac(sha1) 0x000102030405060708090a0b0c0d0e0f10111213 (160 bits) 96\n"
      "\tenc ecb(cipher_null) \n"
      "\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n"
      "\tstats:\n"
      "\t  replay-window 0 replay 0 failed 0\n"
      // ip -o: one state on one line.
      "src 192.0.2.3 dst 192.0.2.4\\\tproto ah spi 0x00000300(768) reqid 2(0x00000002) mode transport\\"
      "\treplay-window 64 seq 0x00000000 flag  (0x00000000)\\\tauth-trunc hmac(sha256) "
      "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f (256 bits) 128\\\n";
  const auto cfg = import_xfrm(text, "xfrm.txt");
  ASSERT_EQ(cfg.sas.size(), 3u);
  EXPECT_EQ(cfg.sas[0].spi, 0xc0ffee01u);
  EXPECT_EQ(cfg.sas[0].cipher, Cipher::aes_gcm_16);
  EXPECT_EQ(cfg.sas[0].direction, Direction::inbound);
  EXPECT_FALSE(cfg.sas[0].esn);               // an ESN anti-replay context without the esn flag
  EXPECT_EQ(cfg.sas[0].replay_window, 256u);  // the context's window, not the statistics' count
  EXPECT_EQ(cfg.sas[1].spi, 0x101u);
  EXPECT_TRUE(cfg.sas[1].esn);                 // the flag
  EXPECT_EQ(cfg.sas[1].replay_window, 32u);    // not the statistics' 0
  EXPECT_EQ(cfg.sas[1].cipher, Cipher::null);  // a zero-bit key is not printed
  EXPECT_EQ(cfg.sas[1].integrity, Integrity::hmac_sha1_96);
  EXPECT_EQ(cfg.sas[2].protocol, IpsecProtocol::ah);
  EXPECT_EQ(cfg.sas[2].integrity, Integrity::hmac_sha256_128);
  EXPECT_EQ(cfg.sas[2].replay_window, 64u);
  EXPECT_TRUE(cfg.warnings.empty()) << cfg.warnings.front();
  auto error = [](const std::string& t) -> std::string {
    try {
      (void)import_xfrm(t, "x.txt");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "accepted";
  };
  const std::string head =
      "src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00000001(1) reqid 1(0x00000001) mode tunnel\n";
  EXPECT_NE(error(head + "\taead rfc4106(gcm(aes)) " + key20 + " (128 bits) 128\n")
                .find("x.txt:3: aead: the key has 160 bits"),
            std::string::npos);
  EXPECT_NE(
      error("src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00000001(2) reqid 1 mode tunnel\n").find("x.txt:2: spi"),
      std::string::npos);
  EXPECT_NE(error(head + "\taead rfc4106(gcm(aes)) <<Keys hidden>> 128\n").find("x.txt:3: aead: the keys are hidden"),
            std::string::npos);
}

TEST(Importers, IpXfrmReplayWindowZeroKeepsReplayDetection) {
  const std::string state =
      "src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00000100 reqid 1 mode tunnel\n\treplay-window 0 flag af-unspec\n"
      "\taead rfc4106(gcm(aes)) 0x000102030405060708090a0b0c0d0e0f10111213 128\n";
  auto cfg = import_xfrm(state, "xfrm.txt");
  ASSERT_EQ(cfg.sas.size(), 1u);
  EXPECT_EQ(cfg.sas[0].replay_window, 64u);
  ASSERT_EQ(cfg.warnings.size(), 1u);
  EXPECT_NE(cfg.warnings[0].find("xfrm.txt:1: state spi 0x00000100 has replay-window 0"), std::string::npos);
  // A state that says it is outbound needs no word: a sender keeps no window.
  cfg = import_xfrm(state + "\tdir out\n", "xfrm.txt");
  EXPECT_EQ(cfg.sas[0].replay_window, 64u);
  EXPECT_EQ(cfg.sas[0].direction, Direction::outbound);
  EXPECT_TRUE(cfg.warnings.empty());
}

TEST(Importers, IpXfrmWithoutAStateSaysSo) {
  for (const std::string text : {"", "hello\n", "sas:\n  - spi: 1\n",
                                 "src 192.0.2.0/24 dst 198.51.100.0/24\n\tdir out priority 0 ptype main\n"}) {
    try {
      (void)import_xfrm(text, "x.txt");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("x.txt: holds no xfrm state"), std::string::npos) << e.what();
    }
  }
}

// Issue 15 item 11: replay_window 0 turns anti-replay off; it is honoured,
// never silently.
TEST(Config, ReplayWindowZeroIsSaid) {
  auto cfg = parse(
      "sas:\n  - name: in\n    spi: 300\n    protocol: esp\n    encryption: null\n"
      "    auth: hmac-sha1-96\n    auth_key: 0x000102030405060708090a0b0c0d0e0f10111213\n"
      "    replay_window: 0\n");
  ASSERT_EQ(cfg.sas.size(), 1u);
  EXPECT_EQ(cfg.sas[0].replay_window, 0u);
  ASSERT_EQ(cfg.warnings.size(), 1u);
  EXPECT_NE(cfg.warnings[0].find("test.yaml:8: sas[0].replay_window: 0 turns anti-replay off for SA in"),
            std::string::npos)
      << cfg.warnings[0];
  EXPECT_TRUE(parse("sas:\n  - spi: 300\n    protocol: esp\n    encryption: null\n    auth: hmac-sha1-96\n"
                    "    auth_key: 0x000102030405060708090a0b0c0d0e0f10111213\n    replay_window: 32\n")
                  .warnings.empty());
}

// Issue 15 item 12: a key file that is a directory, a device, a pipe nobody
// writes to, or too large: an error naming file, line and setting, at once.
TEST(Config, KeyFilesThatCannotBeKeysAreNamed) {
  const fs::path dir = temp_dir() / "keydir";
  fs::create_directories(dir);
  const fs::path fifo = temp_dir() / "keyfifo";
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const fs::path big = temp_dir() / "big.key";
  std::ofstream(big) << std::string(kMaxKeyFile + 1, 'k');
  for (const auto& [path, says] :
       std::vector<std::pair<std::string, std::string>>{{dir.string(), "is a directory"},
                                                        {"/dev/zero", "is a character device"},
                                                        {fifo.string(), "is a pipe and nothing was written to it"},
                                                        {big.string(), "is 4097 bytes; at most 4096 are allowed"}}) {
    const std::string e =
        error_of("sas:\n  - spi: 300\n    protocol: ah\n    auth: hmac-sha1-96\n    key_file: " + path + "\n");
    EXPECT_EQ(e.find("test.yaml:5: sas[0].key_file: cannot read key file '" + path + "': it " + says), 0u) << e;
  }
  // A pipe that is written to is read (bash's <(...)).
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "01234567890123456789", 20), 20);
  ::close(fds[1]);
  auto cfg = parse("sas:\n  - spi: 300\n    protocol: ah\n    auth: hmac-sha1-96\n    key_file: /dev/fd/" +
                   std::to_string(fds[0]) + "\n");
  ::close(fds[0]);
  EXPECT_EQ(cfg.sas[0].auth_key.size(), 20u);
  fs::remove(fifo);
}

}  // namespace
}  // namespace ipsentry::filters
