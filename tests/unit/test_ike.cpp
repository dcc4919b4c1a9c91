// IKE: payload walking on hostile input, SA parsing and names, the key
// importers (Wireshark tables, strongSwan logs, YAML), and the analyzer on
// the peer corpus.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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
  Vec sa{0, 0, 0, 32, 1, 3, 4, 2, 1, 2, 3, 4, 3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0, 0, 0, 0, 8, 5, 0, 0, 0};
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
  const Vec win2003{0x1e, 0x2b, 0x51, 0x69, 0x05, 0x99, 0x1c, 0x7d, 0x7c, 0x96,
                    0xfc, 0xbf, 0xb5, 0x87, 0xe4, 0x61, 0x00, 0x00, 0x00, 0x04};
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

// ---- negotiation tracking on messages built here: what a capture shows
// when the keys are not needed to tell how a negotiation ended.

// One IKE message in a UDP 500 datagram over raw IPv4, as a capture holds it.
class IkeCapture {
 public:
  struct Payload {
    std::uint8_t type;
    Vec body;
  };

  // A Notify payload body: IKEv1 has a DOI before protocol, SPI size and type.
  static Vec notify(bool v2, std::uint16_t type) {
    Vec b = v2 ? Vec{} : Vec{0, 0, 0, 1};
    b.insert(b.end(), {1, 0, static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type)});
    return b;
  }

  void add(double t, const char* src, const char* dst, int version, std::uint8_t exchange, std::uint8_t flags,
           std::uint32_t mid, std::uint64_t spi_r, const std::vector<Payload>& payloads, std::size_t encrypted = 0) {
    Vec msg;
    auto be = [&](std::uint64_t v, int n) {
      for (int i = n - 1; i >= 0; --i) msg.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    be(kSpiI, 8);
    be(spi_r, 8);
    msg.push_back(payloads.empty() ? 0 : payloads[0].type);
    msg.push_back(static_cast<std::uint8_t>(version << 4));
    msg.push_back(exchange);
    msg.push_back(flags);
    be(mid, 4);
    be(0, 4);  // length, set below
    if (encrypted != 0) {
      msg.insert(msg.end(), encrypted, 0xa5);  // IKEv1 ciphertext without keys
    } else {
      for (std::size_t i = 0; i < payloads.size(); ++i) {
        const auto& pl = payloads[i];
        msg.push_back(i + 1 < payloads.size() ? payloads[i + 1].type : 0);
        msg.push_back(0);
        be(pl.body.size() + 4, 2);
        msg.insert(msg.end(), pl.body.begin(), pl.body.end());
      }
    }
    for (int i = 0; i < 4; ++i) msg[24 + i] = static_cast<std::uint8_t>(msg.size() >> (8 * (3 - i)));
    Vec pkt{0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0};
    auto addr = [&](const char* a) {
      const auto ip = dissect::IpAddr::parse(a);
      pkt.insert(pkt.end(), ip->data(), ip->data() + ip->size());
    };
    addr(src);
    addr(dst);
    const std::size_t udp_len = 8 + msg.size();
    pkt.insert(pkt.end(), {0x01, 0xf4, 0x01, 0xf4, static_cast<std::uint8_t>(udp_len >> 8),
                           static_cast<std::uint8_t>(udp_len), 0, 0});
    pkt.insert(pkt.end(), msg.begin(), msg.end());
    pkt[2] = static_cast<std::uint8_t>(pkt.size() >> 8);
    pkt[3] = static_cast<std::uint8_t>(pkt.size());
    frames_.push_back(std::move(pkt));
    times_.push_back(static_cast<std::int64_t>(t * 1e9));
  }

  std::unique_ptr<ike::Analyzer> analyze() const {
    auto a = std::make_unique<ike::Analyzer>(std::vector<filters::IkeSaConfig>{});
    for (std::size_t i = 0; i < frames_.size(); ++i) {
      dissect::Frame f;
      f.number = i + 1;
      f.ts_ns = times_[i];
      f.linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
      f.data = frames_[i];
      f.orig_len = static_cast<std::uint32_t>(frames_[i].size());
      dissect::Packet p;
      dissect::dissect_frame(f, p);
      a->observe(f, p);
    }
    a->finish();
    return a;
  }

  static constexpr std::uint64_t kSpiI = 0x1122334455667788;
  static constexpr std::uint64_t kSpiR = 0x99aabbccddeeff00;

 private:
  std::vector<Vec> frames_;
  std::vector<std::int64_t> times_;
};

constexpr const char* kI = "192.0.2.1";
constexpr const char* kR = "192.0.2.2";

// IKEv1 Main Mode: four cleartext messages, then MM5/MM6 encrypted (no keys).
void main_mode(IkeCapture& c) {
  using P = IkeCapture::Payload;
  const Vec sa{0, 0, 0, 1, 0, 0, 0, 1};  // DOI IPsec, situation identity-only, no proposals
  c.add(0.0, kI, kR, 1, dik::xt::v1_main, 0, 0, 0, {P{dik::pt::v1_sa, sa}});
  c.add(0.1, kR, kI, 1, dik::xt::v1_main, 0, 0, IkeCapture::kSpiR, {P{dik::pt::v1_sa, sa}});
  c.add(0.2, kI, kR, 1, dik::xt::v1_main, 0, 0, IkeCapture::kSpiR,
        {P{dik::pt::v1_ke, Vec(128, 1)}, P{dik::pt::v1_nonce, Vec(16, 2)}});
  c.add(0.3, kR, kI, 1, dik::xt::v1_main, 0, 0, IkeCapture::kSpiR,
        {P{dik::pt::v1_ke, Vec(128, 3)}, P{dik::pt::v1_nonce, Vec(16, 4)}});
  c.add(0.4, kI, kR, 1, dik::xt::v1_main, 1, 0, IkeCapture::kSpiR, {P{dik::pt::v1_id, {}}}, 48);
  c.add(0.5, kR, kI, 1, dik::xt::v1_main, 1, 0, IkeCapture::kSpiR, {P{dik::pt::v1_id, {}}}, 48);
}

using P = IkeCapture::Payload;

TEST(IkeNegotiations, ALaterInformationalIsNoPartOfTheMainMode) {
  IkeCapture c;
  main_mode(c);
  // Ten seconds later a delete, in its own Informational exchange.
  c.add(10.5, kI, kR, 1, dik::xt::v1_informational, 1, 0x01020304, IkeCapture::kSpiR, {P{dik::pt::v1_hash, {}}}, 32);
  auto a = c.analyze();
  ASSERT_EQ(a->negotiations().size(), 1u);
  const ike::Negotiation& mm = a->negotiations()[0];
  EXPECT_EQ(mm.kind, "Main Mode");
  EXPECT_EQ(mm.outcome, ike::Outcome::established);
  EXPECT_EQ(mm.frames, (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_NEAR(mm.duration(), 0.5, 1e-9);
  EXPECT_EQ(a->record(7)->negotiation, -1);
  EXPECT_EQ(a->statistics().main_modes, 1u);
  EXPECT_EQ(a->statistics().negotiation_failures, 0u);
}

TEST(IkeNegotiations, AnAuthenticationFailureAfterMainModeIsOneFailureOnce) {
  // The initiator rejects MM6 (its hash does not verify) and says so twice.
  IkeCapture c;
  main_mode(c);
  for (double t : {0.6, 1.6}) {
    c.add(t, kI, kR, 1, dik::xt::v1_informational, 0, 0x0a0b0c0d, IkeCapture::kSpiR,
          {P{dik::pt::v1_notify, IkeCapture::notify(false, 24)}});
  }
  auto a = c.analyze();
  ASSERT_EQ(a->negotiations().size(), 1u);
  const ike::Negotiation& mm = a->negotiations()[0];
  EXPECT_EQ(mm.outcome, ike::Outcome::failed);
  EXPECT_EQ(mm.reason, "AUTHENTICATION-FAILED");
  EXPECT_TRUE(mm.auth_failure);
  EXPECT_EQ(mm.frames.size(), 8u);
  EXPECT_EQ(a->statistics().main_modes, 0u);
  EXPECT_EQ(a->statistics().negotiation_failures, 1u);
  EXPECT_EQ(a->statistics().authentication_failures, 1u);
  // Both messages say it; the one that ended it and its repetition.
  EXPECT_EQ(ike::verdict(*a->record(7)), ike::MessageVerdict::ike_fail);
  EXPECT_EQ(ike::verdict(*a->record(8)), ike::MessageVerdict::ike_fail);
  EXPECT_EQ(ike::verdict(*a->record(1)), ike::MessageVerdict::ok);
  EXPECT_EQ(ike::verdict(*a->record(5)), ike::MessageVerdict::unverifiable);  // encrypted, no keys
  EXPECT_TRUE(ike::failed(ike::MessageVerdict::ike_fail));
  EXPECT_FALSE(ike::failed(ike::MessageVerdict::unverifiable));
}

TEST(IkeNegotiations, ARefusedProposalEndsTheNegotiationAndItsMessageSaysSo) {
  IkeCapture c;
  const Vec sa{0, 0, 0, 8, 0, 0, 0, 0};  // one empty IKEv2 proposal header's worth
  c.add(0.0, kI, kR, 2, dik::xt::v2_sa_init, 0x08, 0, 0,
        {P{dik::pt::v2_sa, sa}, P{dik::pt::v2_ke, Vec(36, 1)}, P{dik::pt::v2_nonce, Vec(16, 2)}});
  c.add(0.1, kR, kI, 2, dik::xt::v2_sa_init, 0x20, 0, 0, {P{dik::pt::v2_notify, IkeCapture::notify(true, 14)}});
  auto a = c.analyze();
  ASSERT_EQ(a->negotiations().size(), 1u);
  EXPECT_EQ(a->negotiations()[0].outcome, ike::Outcome::failed);
  EXPECT_EQ(a->negotiations()[0].reason, "NO_PROPOSAL_CHOSEN");
  EXPECT_EQ(a->statistics().negotiation_failures, 1u);
  EXPECT_EQ(a->statistics().authentication_failures, 0u);
  EXPECT_EQ(ike::verdict(*a->record(1)), ike::MessageVerdict::ok);
  EXPECT_EQ(ike::verdict(*a->record(2)), ike::MessageVerdict::ike_fail);
  EXPECT_EQ(ike::verdict_name(ike::verdict(*a->record(2))), "ike-fail");
  EXPECT_EQ(ike::verdict_name(ike::MessageVerdict::decrypt_fail), "decrypt-fail");
}

}  // namespace
