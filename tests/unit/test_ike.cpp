// IKE: payload walking on hostile input, SA parsing and names, the key
// importers (Wireshark tables, strongSwan logs, YAML), and the analyzer on
// the peer corpus.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/importers.hpp"
#include "ipsentry/ike/analyzer.hpp"

namespace {

using namespace ipsentry;
namespace dik = ipsentry::dissect::ike;
using Vec = std::vector<std::uint8_t>;

std::filesystem::path corpus() {
  const char* src = std::getenv("IPSENTRY_SOURCE_DIR");
  return std::filesystem::path(src ? src : ".") / "tests/corpus/peers";
}

TEST(IkePayloads, WalkStopsOnBadLengths) {
  // A payload claiming 2 bytes (shorter than its own header).
  Vec bad{0, 0, 0, 2};
  auto c = dik::walk(bad, 40);
  EXPECT_TRUE(c.payloads.empty());
  ASSERT_NE(c.error, nullptr);
  // A payload running past the end.
  Vec past{0, 0, 0, 40, 1, 2};
  EXPECT_NE(dik::walk(past, 40).error, nullptr);
  // A chain of 4-byte payloads that all point at the next one: bounded.
  Vec many(4 * 1000);
  for (std::size_t i = 0; i < 1000; ++i) {
    many[4 * i] = 40;
    many[4 * i + 3] = 4;
  }
  auto m = dik::walk(many, 40);
  EXPECT_LE(m.payloads.size(), 512u);
  EXPECT_NE(m.error, nullptr);
  // A good chain: Nonce (4 bytes of data) then Notify NAT_DETECTION_SOURCE_IP.
  Vec good{41, 0, 0, 8, 1, 2, 3, 4, 0, 0, 0, 8, 0, 0, 0x40, 0x04};
  auto g = dik::walk(good, 40);
  ASSERT_EQ(g.payloads.size(), 2u);
  EXPECT_EQ(g.error, nullptr);
  EXPECT_EQ(dik::chain_summary(g, true), "No N(NAT_DETECTION_SOURCE_IP)");
}

TEST(IkePayloads, Ikev2SaProposalsAndNames) {
  // One ESP proposal, SPI 0x01020304: ENCR_AES_GCM_16 with a 256-bit key,
  // ESN none.
  Vec sa{0, 0, 0, 32, 1, 3, 4, 2, 1, 2, 3, 4,
         3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0,
         0, 0, 0, 8, 5, 0, 0, 0};
  auto p = dik::parse_sa(sa, true);
  ASSERT_EQ(p.error, nullptr);
  ASSERT_EQ(p.proposals.size(), 1u);
  EXPECT_EQ(p.proposals[0].protocol, 3);
  ASSERT_EQ(p.proposals[0].transforms.size(), 2u);
  EXPECT_EQ(dik::proposal_str(p.proposals[0], true), "ESP:AES_GCM_16-256/NO_ESN");
  // Truncate it anywhere: an error, never a crash.
  for (std::size_t n = 0; n < sa.size(); ++n) {
    auto t = dik::parse_sa(dissect::Bytes(sa).first(n), true);
    EXPECT_TRUE(t.error != nullptr || t.proposals.empty()) << n;
  }
  EXPECT_STREQ(dik::v2_notify_name(24), "AUTHENTICATION_FAILED");
  EXPECT_STREQ(dik::v1_notify_name(14), "NO-PROPOSAL-CHOSEN");
  EXPECT_STREQ(dik::exchange_name(32), "Quick Mode");
  EXPECT_EQ(dik::notify_str(true, 45000), "private-status-45000");
  const Vec rfc3947{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f};
  EXPECT_EQ(dik::vendor_id_name(rfc3947).value_or(""), "RFC 3947 NAT-T");
  const Vec win2003{0x1e, 0x2b, 0x51, 0x69, 0x05, 0x99, 0x1c, 0x7d, 0x7c, 0x96, 0xfc,
                    0xbf, 0xb5, 0x87, 0xe4, 0x61, 0x00, 0x00, 0x00, 0x04};
  EXPECT_EQ(dik::vendor_id_name(win2003).value_or(""), "Microsoft Windows Server 2003");
}

TEST(IkePayloads, TrafficSelectorsPrintAsSelectors) {
  Vec ts{1, 0, 0, 0, 7, 6, 0, 16, 0, 80, 0, 80, 192, 0, 2, 0, 192, 0, 2, 255};
  auto v = dik::parse_ts(ts);
  ASSERT_TRUE(v.has_value());
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0].str(), "192.0.2.0/24[TCP/80]");
  EXPECT_FALSE(dik::parse_ts(dissect::Bytes(ts).first(10)).has_value());
}

TEST(IkeKeys, WiresharkIkev2TableSkipsTheEmptyExampleRow) {
  auto cfg = filters::import_keys(filters::KeyFormat::wireshark_ikev2,
                                  (corpus() / "wireshark/ikev2_decryption_table.tmpl").string());
  ASSERT_EQ(cfg.ike_sas.size(), 8u);
  EXPECT_EQ(cfg.ike_sas[0].cipher, filters::Cipher::tdes_cbc);
  EXPECT_EQ(cfg.ike_sas[0].integrity, filters::Integrity::hmac_sha1_160);
  EXPECT_EQ(cfg.ike_sas[1].cipher, filters::Cipher::aes_ccm_12);
  EXPECT_EQ(cfg.ike_sas[1].sk_ei.size(), 19u);
  auto v1 = filters::import_keys(filters::KeyFormat::wireshark_ikev1,
                                 (corpus() / "wireshark/ikev1_decryption_table.tmpl").string());
  ASSERT_EQ(v1.ike_sas.size(), 3u);
  EXPECT_EQ(v1.ike_sas[0].spi_i, 0xfafaeb49382a763cull);
}

TEST(IkeKeys, StrongswanLogKeyDumps) {
  // Two charon threads interleave their dumps; the proposal line gives the
  // algorithms.
  const std::string log =
      "Nov 22 19:48:52 02[CFG] selected proposal: IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048\n"
      "Nov 22 19:48:52 02[IKE] SKEYSEED => 4 bytes @ 0x1\n"
      "Nov 22 19:48:52 02[IKE]    0: 01 02 03 04                                      ....\n"
      "Nov 22 19:48:52 02[IKE] Sk_d secret => 20 bytes @ 0x2\n"
      "Nov 22 19:48:52 02[IKE]    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 07[IKE] unrelated => 2 bytes @ 0x9\n"
      "Nov 22 19:48:52 02[IKE]   16: 10 11 12 13                                      ....\n"
      "Nov 22 19:48:52 02[IKE] Sk_ai secret => 32 bytes @ 0x3\n"
      "Nov 22 19:48:52 02[IKE]    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 02[IKE]   16: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 02[IKE] Sk_ar secret => 32 bytes @ 0x3\n"
      "Nov 22 19:48:52 02[IKE]    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 02[IKE]   16: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 02[IKE] Sk_ei secret => 16 bytes @ 0x4\n"
      "Nov 22 19:48:52 02[IKE]    0: AA 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"
      "Nov 22 19:48:52 02[IKE] Sk_er secret => 16 bytes @ 0x4\n"
      "Nov 22 19:48:52 02[IKE]    0: BB 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n";
  auto cfg = filters::import_strongswan_log(log, "charon.log");
  ASSERT_EQ(cfg.ike_sas.size(), 1u);
  const auto& sa = cfg.ike_sas[0];
  EXPECT_EQ(sa.version, 2);
  EXPECT_FALSE(sa.spi_i.has_value());
  EXPECT_EQ(sa.cipher, filters::Cipher::aes_cbc);
  EXPECT_EQ(sa.integrity, filters::Integrity::hmac_sha256_128);
  EXPECT_EQ(sa.prf, filters::Prf::hmac_sha256);
  ASSERT_EQ(sa.sk_d.size(), 20u);
  EXPECT_EQ(sa.sk_d.bytes()[19], 0x13);
  EXPECT_EQ(sa.sk_ei.bytes()[0], 0xaa);
  EXPECT_EQ(sa.sk_er.bytes()[0], 0xbb);
  // The same keys twice (both peers' logs) are one SA.
  auto twice = filters::import_strongswan_log(log + log, "charon.log");
  EXPECT_EQ(twice.ike_sas.size(), 1u);
  // A dump cut short is an error that names the line.
  try {
    (void)filters::import_strongswan_log(log.substr(0, log.find("  16: 10")), "charon.log");
    FAIL();
  } catch (const filters::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("charon.log"), std::string::npos);
  }
  // No dumps at all: a warning that says which log level writes them.
  auto none = filters::import_strongswan_log("Nov 22 02[IKE] initiating IKE_SA\n", "charon.log");
  EXPECT_TRUE(none.ike_sas.empty());
  ASSERT_FALSE(none.warnings.empty());
  EXPECT_NE(none.warnings[0].find("ike = 4"), std::string::npos);
}

TEST(IkeKeys, YamlIkeSasAreChecked) {
  auto ok = filters::parse_config(
      "ike_sas:\n  - version: 2\n    spi_i: 0001020304050607\n    spi_r: 0xc02e7a3031a03188\n"
      "    encryption: aes-cbc\n    integrity: hmac-sha1-96\n    sk_ei: 0x3f44bf47cafd8150591deb088199fcbf\n"
      "    sk_er: 0xbedb67ec7dc3d00cccac42e70cd63bde\n",
      "ike.yaml", ".");
  ASSERT_EQ(ok.ike_sas.size(), 1u);
  try {
    (void)filters::parse_config(
        "ike_sas:\n  - version: 2\n    encryption: aes-cbc\n    sk_ei: 0x0011\n    sk_er: 0x0011\n", "ike.yaml", ".");
    FAIL();
  } catch (const filters::ConfigError& e) {
    EXPECT_EQ(e.line(), 4);
    EXPECT_EQ(e.field(), "ike_sas[0].sk_ei");
    EXPECT_EQ(std::string(e.what()).find("0011"), std::string::npos);  // keys never in messages
  }
  EXPECT_THROW((void)filters::parse_config("ike_sas:\n  - version: 3\n", "ike.yaml", "."), filters::ConfigError);
  EXPECT_THROW((void)filters::parse_config("ike_sas:\n  - version: 1\n    enc_key: 0x00112233\n", "ike.yaml", "."),
               filters::ConfigError);
}

std::unique_ptr<ike::Analyzer> analyze(const std::string& capture, filters::Config cfg) {
  auto a = std::make_unique<ike::Analyzer>(std::move(cfg.ike_sas));
  capture::FileSource src((corpus() / capture).string());
  dissect::Frame f;
  dissect::Packet p;
  while (src.next(f)) {
    dissect::dissect_frame(f, p);
    a->observe(f, p);
  }
  a->finish();
  return a;
}

TEST(IkeAnalyzer, Ikev2GcmCaptureDecryptsAndEstablishes) {
  auto cfg = filters::import_keys(filters::KeyFormat::wireshark_ikev2,
                                  (corpus() / "wireshark/ikev2_decryption_table.tmpl").string());
  auto a = analyze("wireshark/ikev2-decrypt-aes256gcm16.pcap", std::move(cfg));
  EXPECT_EQ(a->statistics().messages, 6u);
  EXPECT_EQ(a->statistics().encrypted, 4u);
  EXPECT_EQ(a->statistics().decrypted, 4u);
  EXPECT_EQ(a->statistics().main_modes, 1u);
  EXPECT_EQ(a->statistics().quick_modes, 1u);
  EXPECT_EQ(a->statistics().invalid_packets, 0u);
  const auto* r = a->record(3);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->status, ike::DecryptStatus::decrypted);
  ASSERT_FALSE(r->inner_payloads.empty());
  EXPECT_EQ(r->inner_payloads[0], dik::pt::v2_idi);
}

TEST(IkeAnalyzer, WrongKeyIsReportedNotTrusted) {
  // The right SPIs with a wrong SK_ai: every encrypted message fails its ICV.
  auto cfg = filters::parse_config(
      "ike_sas:\n  - version: 2\n    spi_i: 0001020304050607\n    spi_r: c02e7a3031a03188\n"
      "    encryption: aes-cbc\n    integrity: hmac-sha1-96\n    sk_ei: 0x3f44bf47cafd8150591deb088199fcbf\n"
      "    sk_er: 0xbedb67ec7dc3d00cccac42e70cd63bde\n"
      "    sk_ai: 0x0000000000000000000000000000000000000000\n"
      "    sk_ar: 0x0000000000000000000000000000000000000000\n",
      "ike.yaml", ".");
  auto a = analyze("tcpdump/ikev2pI2.pcap", std::move(cfg));
  const auto* r = a->record(2);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->status, ike::DecryptStatus::icv_mismatch);
  EXPECT_EQ(a->statistics().invalid_packets, 1u);
}

TEST(IkeAnalyzer, Ikev1RetransmissionDecryptsWithTheSameIv) {
  auto cfg = filters::import_keys(filters::KeyFormat::wireshark_ikev1,
                                  (corpus() / "wireshark/ikev1_decryption_table.tmpl").string());
  auto a = analyze("wireshark/ikev1-certs.pcap", std::move(cfg));
  const auto* r7 = a->record(7);
  const auto* r8 = a->record(8);
  ASSERT_NE(r7, nullptr);
  ASSERT_NE(r8, nullptr);
  EXPECT_TRUE(r8->retransmission);
  EXPECT_EQ(r8->status, ike::DecryptStatus::decrypted);
  EXPECT_EQ(r7->plaintext, r8->plaintext);
  EXPECT_EQ(a->statistics().decrypted, 6u);
  ASSERT_EQ(a->negotiations().size(), 2u);
  EXPECT_EQ(a->negotiations()[0].kind, "Main Mode");
  EXPECT_EQ(a->negotiations()[0].outcome, ike::Outcome::established);
  EXPECT_EQ(a->negotiations()[1].kind, "Quick Mode");
  EXPECT_NE(a->negotiations()[1].proposal.find("PFS"), std::string::npos);
}

}  // namespace
