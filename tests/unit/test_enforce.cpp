// The SPD, the ipsec6 importer and the enforcement pipeline without the
// kernel: packets go from one host's Worker to the other's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/rules.hpp"
#include "ipsentry/enforce/runner.hpp"
#include "ipsentry/enforce/save_keys.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/ipsec6.hpp"
#include "ipsentry/filters/spd.hpp"
#include "test_support.hpp"

namespace {

using namespace ipsentry;
using dissect::IpAddr;
using enforce::Decision;
using enforce::Hook;
using enforce::Outcome;
using enforce::State;
using enforce::Worker;
namespace fs = std::filesystem;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

std::string host_config(const char* me, const char* peer, const char* spi_out, const char* key_out, const char* spi_in,
                        const char* key_in, const std::string& extra_out = "", const char* inbound = "require") {
  return fmt::format(R"(interfaces: {{ local: [{0}] }}
policies:
  - name: web-blocked
    from: me
    to: {1}
    protocol: tcp
    to_port: 8080
    action: block
  - name: host
    from: me
    to: {1}
    mirrored: true
    action: protect
    inbound: {2}
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out, in]
)",
                     me, peer, inbound) +
         test::esp_sa_pair(me, peer, spi_out, key_out, spi_in, key_in, extra_out);
}

constexpr const char* kKeyAB = "00112233445566778899aabbccddeeff01020304";
constexpr const char* kKeyBA = "ffeeddccbbaa99887766554433221100a1a2a3a4";

State make_state(const std::string& yaml, const char* me) {
  filters::Config cfg = filters::parse_config(yaml, "test.yaml", ".");
  return State(std::move(cfg), filters::LocalAddresses{{ip(me)}, {}});
}

// A UDP/IPv4 packet with valid checksums.
std::vector<std::uint8_t> udp4(const char* src, const char* dst, std::uint16_t dport, std::size_t payload,
                               bool df = true) {
  std::vector<std::uint8_t> p(28 + payload, 0);
  p[0] = 0x45;
  p[2] = static_cast<std::uint8_t>(p.size() >> 8);
  p[3] = static_cast<std::uint8_t>(p.size());
  if (df) p[6] = 0x40;
  p[8] = 64;
  p[9] = 17;
  std::memcpy(&p[12], ip(src).data(), 4);
  std::memcpy(&p[16], ip(dst).data(), 4);
  dissect::ipv4_set_checksum(p.data(), 20);
  p[20] = 0x9c;
  p[21] = 0x40;
  p[22] = static_cast<std::uint8_t>(dport >> 8);
  p[23] = static_cast<std::uint8_t>(dport);
  p[24] = static_cast<std::uint8_t>((8 + payload) >> 8);
  p[25] = static_cast<std::uint8_t>(8 + payload);
  for (std::size_t i = 0; i < payload; ++i) p[28 + i] = static_cast<std::uint8_t>(i);
  return p;
}

std::vector<std::uint8_t> tcp4(const char* src, const char* dst, std::uint16_t dport) {
  auto p = udp4(src, dst, dport, 12);
  p[9] = 6;
  p[32] = 0x50;  // data offset: 5 words
  dissect::ipv4_set_checksum(p.data(), 20);
  return p;
}

struct Hosts {
  State a = make_state(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "192.0.2.1");
  State b = make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), "192.0.2.2");
  Worker wa;
  Worker wb;
};

TEST(Spd, FirstMatchMirroredAndExemptions) {
  filters::Config cfg =
      filters::parse_config(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "t.yaml", ".");
  filters::Spd spd(cfg, filters::LocalAddresses{{ip("192.0.2.1")}, {}});
  filters::PacketSelector s;
  s.src = ip("192.0.2.1");
  s.dst = ip("192.0.2.2");
  s.protocol = 6;
  s.has_ports = true;
  s.dport = 8080;
  ASSERT_NE(spd.lookup(s, filters::Sense::outbound), nullptr);
  EXPECT_EQ(spd.lookup(s, filters::Sense::outbound)->name, "web-blocked");
  s.dport = 80;
  EXPECT_EQ(spd.lookup(s, filters::Sense::outbound)->name, "host");
  // The reverse direction matches only the mirrored entry.
  std::swap(s.src, s.dst);
  EXPECT_EQ(spd.lookup(s, filters::Sense::outbound), nullptr);
  EXPECT_EQ(spd.lookup(s, filters::Sense::inbound)->name, "host (mirrored)");
  // IKE to our IKE port passes before any policy; a source port proves nothing.
  s.protocol = 17;
  s.sport = 500;
  EXPECT_EQ(spd.lookup(s, filters::Sense::inbound)->name, "host (mirrored)");
  s.dport = 500;
  EXPECT_EQ(spd.lookup(s, filters::Sense::inbound)->name, "exempt ike in");
  // Multicast is exempt only when asked for.
  s.protocol = 1;
  s.has_ports = false;
  s.dst = ip("224.0.0.5");
  EXPECT_EQ(spd.lookup(s, filters::Sense::inbound), nullptr);
  // "me" is only our address.
  s.dst = ip("192.0.2.3");
  s.src = ip("192.0.2.2");
  EXPECT_EQ(spd.lookup(s, filters::Sense::inbound), nullptr);
  EXPECT_NE(spd.describe().find("cleartext: require"), std::string::npos);
}

TEST(Spd, AnSaWithoutAModeIsUsedInItsPolicysMode) {
  filters::Config cfg =
      filters::parse_config(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "t.yaml", ".");
  filters::Spd spd(cfg, filters::LocalAddresses{{ip("192.0.2.1")}, {}});
  ASSERT_EQ(cfg.sas[0].mode, filters::SaMode::unspecified);
  EXPECT_EQ(spd.sa_mode(cfg.sas[0]), filters::SaMode::transport);
  filters::SaConfig unused = cfg.sas[1].clone();
  unused.name = "unused";
  EXPECT_EQ(spd.sa_mode(unused), filters::SaMode::unspecified);
  unused.mode = filters::SaMode::tunnel;
  EXPECT_EQ(spd.sa_mode(unused), filters::SaMode::tunnel);
}

TEST(Spd, RefusesPoliciesTheirSasCannotCarry) {
  std::string yaml = host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA);
  // A tunnel policy over transport SAs.
  std::string tunnel = yaml;
  tunnel.replace(tunnel.find("mode: transport"), 15, "mode: tunnel, peer: 198.51.100.2");
  filters::Config cfg = filters::parse_config(tunnel, "t.yaml", ".");
  try {
    filters::Spd spd(cfg, {});
    FAIL() << "accepted";
  } catch (const filters::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not mode: tunnel"), std::string::npos) << e.what();
  }
  // A mirrored policy without an inbound SA.
  std::string no_in = yaml;
  no_in.replace(no_in.find("sas: [out, in]"), 14, "sas: [out]");
  cfg = filters::parse_config(no_in, "t.yaml", ".");
  try {
    filters::Spd spd(cfg, {});
    FAIL() << "accepted";
  } catch (const filters::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lists no inbound esp SA"), std::string::npos) << e.what();
  }
}

class Ipsec6 : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ipsentry-ipsec6-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "Test.key") << "This is a test";
  }
  void TearDown() override { fs::remove_all(dir_); }
  filters::Ipsec6Import run(const std::string& spd, const std::string& sad) {
    filters::Ipsec6Options o;
    o.output_dir = dir_;
    return filters::import_ipsec6_text(spd, "Test.spd", sad, "Test.sad", dir_, o);
  }
  std::string error(const std::string& spd, const std::string& sad) {
    try {
      (void)run(spd, sad);
    } catch (const filters::ConfigError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
  const std::string spd_ =
      "Security Policy List\n\nPolicy RemoteIPAddr LocalIPAddr Protocol RemotePort LocalPort IPSecProtocol "
      "IPSecMode RemoteGWIPAddr SABundleIndex Direction Action InterfaceIndex\n____\n"
      "2 - FE80::2AA:FF:FE92:D0F1 - * - * - * - * AH TRANSPORT * NONE BIDIRECT APPLY 0 ;\n"
      "1 + * + * + * + * + * NONE NONE * NONE BIDIRECT BYPASS 0 ;\n";
  const std::string sad_ =
      "Security Association List\n\nSAEntry SPI SADestIPAddr DestIPAddr SrcIPAddr Protocol DestPort SrcPort "
      "AuthAlg KeyFile Direction SecPolicyIndex\n____\n"
      "2 3001 FE80::2AA:FF:FE92:D0F1 POLICY POLICY POLICY POLICY POLICY HMAC-MD5 Test.key OUTBOUND 2 ;\n"
      "1 3000 FE80::2AA:FF:FE53:A92C POLICY POLICY POLICY POLICY POLICY HMAC-MD5 Test.key INBOUND 2 ;\n";
};

TEST_F(Ipsec6, TheSeedsFilesBecomeTheSeedsPolicy) {
  filters::Ipsec6Import imp = run(spd_, sad_);
  filters::Config cfg = filters::parse_config(imp.yaml, "imported.yaml", dir_);
  ASSERT_EQ(cfg.policies.size(), 2u);
  EXPECT_EQ(cfg.policies[0].action, filters::PolicyAction::protect);
  EXPECT_EQ(cfg.policies[0].ipsec, filters::PolicyIpsec::ah);
  EXPECT_TRUE(cfg.policies[0].mirrored);
  EXPECT_EQ(cfg.policies[1].action, filters::PolicyAction::permit);
  ASSERT_EQ(cfg.sas.size(), 2u);
  EXPECT_EQ(*cfg.sas[0].spi, 3001u);
  EXPECT_EQ(cfg.sas[0].direction, filters::Direction::outbound);
  EXPECT_EQ(cfg.sas[0].integrity, filters::Integrity::hmac_md5_96);
  const std::string key = "This is a test";
  EXPECT_TRUE(
      std::equal(key.begin(), key.end(), cfg.sas[0].auth_key.bytes().begin(), cfg.sas[0].auth_key.bytes().end()));
  EXPECT_EQ(imp.yaml.find("This is a test"), std::string::npos) << "the key stays in its file";
}

TEST_F(Ipsec6, ErrorsNameFileLineAndField) {
  std::string out_of_order = spd_;
  std::swap(out_of_order[out_of_order.find("\n2 -") + 1], out_of_order[out_of_order.find("\n1 +") + 1]);
  EXPECT_NE(error(out_of_order, sad_).find("decreasing numerical order"), std::string::npos);
  std::string no_semicolon = spd_.substr(0, spd_.rfind(';'));
  EXPECT_NE(error(no_semicolon, sad_).find("does not end with a semicolon"), std::string::npos);
  std::string short_entry = spd_;
  short_entry.replace(short_entry.find(" AH TRANSPORT"), 13, " AH");
  EXPECT_NE(error(short_entry, sad_).find("has 12 fields"), std::string::npos);
  std::string inbound = spd_;
  inbound.replace(inbound.find("BIDIRECT APPLY"), 8, "INBOUND");
  EXPECT_NE(error(inbound, sad_).find("Test.spd:5: Direction: 'INBOUND'"), std::string::npos) << error(inbound, sad_);
  std::string missing_key = sad_;
  missing_key.replace(missing_key.find("Test.key"), 8, "None.key");
  EXPECT_NE(error(spd_, missing_key).find("KeyFile"), std::string::npos);
  std::string bad_alg = sad_;
  bad_alg.replace(bad_alg.find("HMAC-MD5"), 8, "HMAC-XYZ");
  EXPECT_NE(error(spd_, bad_alg).find("AuthAlg"), std::string::npos);
  std::string bad_policy = sad_;
  bad_policy.replace(bad_policy.find("OUTBOUND 2"), 10, "OUTBOUND 7");
  EXPECT_NE(error(spd_, bad_policy).find("no policy in the .spd file has this number"), std::string::npos);
}

TEST(Enforcer, ProtectsAndTheOtherSideAcceptsTheSamePacket) {
  Hosts h;
  const auto original = udp4("192.0.2.1", "192.0.2.2", 9000, 100);
  Decision out = h.wa.process(h.a, Hook::output, original, 1500, 1, 1);
  ASSERT_TRUE(out.accept);
  ASSERT_EQ(out.outcome, Outcome::protected_sent);
  ASSERT_GT(out.replacement.size(), original.size());
  EXPECT_EQ(out.replacement[9], 50) << "ESP";
  const std::vector<std::uint8_t> wire(out.replacement.begin(), out.replacement.end());
  Decision in = h.wb.process(h.b, Hook::prerouting, wire, 0, 1, 2);
  ASSERT_TRUE(in.accept);
  EXPECT_EQ(in.outcome, Outcome::decapsulated);
  EXPECT_EQ(in.set_mark, enforce::kMarkDecapsulated);
  EXPECT_EQ(std::vector<std::uint8_t>(in.replacement.begin(), in.replacement.end()), original);
  // The same packet again is a replay.
  Decision again = h.wb.process(h.b, Hook::prerouting, wire, 0, 1, 3);
  EXPECT_FALSE(again.accept);
  EXPECT_EQ(again.outcome, Outcome::ipsec_failed);
  EXPECT_EQ(h.wb.ipsec_counters().packets_with_replay_detection, 1u);
  // A flipped bit in a fresh packet fails authentication (a copy of the old
  // one would be a replay: the window is checked before the ICV).
  Decision next = h.wa.process(h.a, Hook::output, original, 1500, 1, 1);
  std::vector<std::uint8_t> tampered(next.replacement.begin(), next.replacement.end());
  tampered[tampered.size() - 20] ^= 1;
  Decision bad = h.wb.process(h.b, Hook::prerouting, tampered, 0, 1, 4);
  EXPECT_FALSE(bad.accept);
  EXPECT_EQ(h.wb.ipsec_counters().packets_not_authenticated, 1u);
}

TEST(Enforcer, VerifyAndEnforcementAgreeOnTheSamePacket) {
  Hosts h;
  const auto original = udp4("192.0.2.1", "192.0.2.2", 9000, 333);
  Decision out = h.wa.process(h.a, Hook::output, original, 1500, 1, 1);
  const std::vector<std::uint8_t> wire(out.replacement.begin(), out.replacement.end());
  // Offline verification with its own SAD in the same state as b's.
  filters::Config cfg =
      filters::parse_config(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), "v.yaml", ".");
  ipsec::Sad sad(std::move(cfg.sas));
  ipsec::Engine engine;
  dissect::Packet p;
  dissect::dissect_ip(wire, p);
  const ipsec::InboundResult r = engine.inbound(sad, p, 0, true);
  Decision in = h.wb.process(h.b, Hook::prerouting, wire, 0, 1, 2);
  EXPECT_EQ(r.verdict, ipsec::Verdict::ok);
  EXPECT_TRUE(in.accept);
  EXPECT_EQ(std::vector<std::uint8_t>(r.rebuilt.begin(), r.rebuilt.end()),
            std::vector<std::uint8_t>(in.replacement.begin(), in.replacement.end()));
}

TEST(Enforcer, CleartextBlockAndExemptions) {
  Hosts h;
  Decision clear = h.wb.process(h.b, Hook::prerouting, udp4("192.0.2.1", "192.0.2.2", 9000, 10), 0, 1, 1);
  EXPECT_FALSE(clear.accept);
  EXPECT_EQ(clear.outcome, Outcome::cleartext_dropped);
  Decision ike = h.wb.process(h.b, Hook::prerouting, udp4("192.0.2.1", "192.0.2.2", 500, 10), 0, 1, 1);
  EXPECT_TRUE(ike.accept);
  EXPECT_EQ(ike.outcome, Outcome::exempted);
  Decision blocked = h.wa.process(h.a, Hook::output, tcp4("192.0.2.1", "192.0.2.2", 8080), 1500, 1, 1);
  EXPECT_FALSE(blocked.accept);
  EXPECT_EQ(blocked.outcome, Outcome::blocked);
  Decision other = h.wa.process(h.a, Hook::output, udp4("192.0.2.1", "198.51.100.7", 9000, 10), 1500, 1, 1);
  EXPECT_TRUE(other.accept);
  EXPECT_TRUE(other.replacement.empty()) << "traffic no policy covers passes unchanged";
  // "Server, request security": cleartext accepted, replies still protected.
  State req =
      make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB, "", "request"), "192.0.2.2");
  Worker w;
  EXPECT_EQ(w.process(req, Hook::prerouting, udp4("192.0.2.1", "192.0.2.2", 9000, 10), 0, 1, 1).outcome,
            Outcome::cleartext_allowed);
  EXPECT_EQ(w.process(req, Hook::output, udp4("192.0.2.2", "192.0.2.1", 9000, 10), 1500, 1, 1).outcome,
            Outcome::protected_sent);
}

TEST(Enforcer, RespondOnlyProtectsPeersThatSpokeProtectedFirst) {
  Hosts h;
  State resp =
      make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB, "", "respond"), "192.0.2.2");
  Worker w;
  const auto reply = udp4("192.0.2.2", "192.0.2.1", 9000, 10);
  Decision first = w.process(resp, Hook::output, reply, 1500, 1, 1);
  EXPECT_TRUE(first.accept);
  EXPECT_TRUE(first.replacement.empty()) << "nobody spoke protected yet: clear";
  Decision out = h.wa.process(h.a, Hook::output, udp4("192.0.2.1", "192.0.2.2", 9000, 10), 1500, 1, 1);
  const std::vector<std::uint8_t> wire(out.replacement.begin(), out.replacement.end());
  EXPECT_EQ(w.process(resp, Hook::prerouting, wire, 0, 1, 2).outcome, Outcome::decapsulated);
  EXPECT_EQ(w.process(resp, Hook::output, reply, 1500, 1, 3).outcome, Outcome::protected_sent);
}

TEST(Enforcer, HardPacketLifetimeAndSequenceExhaustion) {
  State a = make_state(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA,
                                   "    lifetime: { packets: 3, soft_packets: 2 }\n"),
                       "192.0.2.1");
  Worker w;
  std::vector<std::string> events;
  w.set_events([&](enforce::EventKind, const std::string& t) { events.push_back(t); });
  const auto pkt = udp4("192.0.2.1", "192.0.2.2", 9000, 10);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(w.process(a, Hook::output, pkt, 1500, 1, 1).outcome, Outcome::protected_sent);
  EXPECT_EQ(w.process(a, Hook::output, pkt, 1500, 1, 1).outcome, Outcome::sa_expired);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_NE(events[0].find("soft lifetime"), std::string::npos);
  EXPECT_NE(events[1].find("hard lifetime"), std::string::npos);

  State e = make_state(
      host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA, "    first_seq: 4294967294\n"),
      "192.0.2.1");
  Worker we;
  EXPECT_EQ(we.process(e, Hook::output, pkt, 1500, 1, 1).outcome, Outcome::protected_sent);
  EXPECT_EQ(we.process(e, Hook::output, pkt, 1500, 1, 1).outcome, Outcome::protected_sent);
  EXPECT_EQ(we.process(e, Hook::output, pkt, 1500, 1, 1).outcome, Outcome::seq_exhausted);
  EXPECT_EQ(e.sad().find("out")->last_sent_seq, 0xffffffffu);
}

TEST(Enforcer, TooBigWithDfTellsTheSourceWithoutDfIsSent) {
  Hosts h;
  std::uint32_t told = 0;
  h.wa.set_icmp_sender([&](const dissect::Packet&, std::uint32_t mtu, std::uint32_t) {
    told = mtu;
    return true;
  });
  Decision df = h.wa.process(h.a, Hook::forward, udp4("192.0.2.1", "192.0.2.2", 9000, 1472), 1500, 1, 1);
  EXPECT_FALSE(df.accept);
  EXPECT_EQ(df.outcome, Outcome::too_big);
  EXPECT_EQ(told, 1500u - (8 + 8 + 3 + 2 + 16));
  Decision nodf = h.wa.process(h.a, Hook::forward, udp4("192.0.2.1", "192.0.2.2", 9000, 1472, false), 1500, 1, 1);
  EXPECT_TRUE(nodf.accept);
  EXPECT_GT(nodf.replacement.size(), 1500u) << "the kernel fragments it";
}

TEST(Enforcer, ReloadKeepsUnchangedSas) {
  Hosts h;
  const auto pkt = udp4("192.0.2.1", "192.0.2.2", 9000, 10);
  for (int i = 0; i < 5; ++i) (void)h.wa.process(h.a, Hook::output, pkt, 1500, 1, 1);
  State same = make_state(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "192.0.2.1");
  EXPECT_EQ(same.inherit(h.a), (std::vector<std::string>{"out", "in"}));
  EXPECT_EQ(same.sad().find("out")->last_sent_seq, 5u);
  State rekeyed = make_state(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyBA, "0x1002", kKeyBA), "192.0.2.1");
  EXPECT_EQ(rekeyed.inherit(h.a), (std::vector<std::string>{"in"})) << "a new key starts a new SA";
  EXPECT_EQ(rekeyed.sad().find("out")->last_sent_seq, 0u);
}

TEST(Rules, FailClosedUnlessAskedAndOrdered) {
  filters::Config cfg =
      filters::parse_config(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "t.yaml", ".");
  filters::Spd spd(cfg, filters::LocalAddresses{{ip("192.0.2.1")}, {}});
  enforce::RuleOptions o;
  o.mss_v4 = 1423;
  const std::string r = enforce::render_rules(spd, 4, o, true);
  EXPECT_EQ(r.find("--queue-bypass"), std::string::npos);
  EXPECT_NE(r.find("-I PREROUTING 1 -j IPSENTRY-IN"), std::string::npos);
  EXPECT_NE(r.find("-A IPSENTRY-IN -p esp -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 0"), std::string::npos);
  // The block entry is queued before the protect entry, the clamp before the wrap.
  const auto block = r.find("-A IPSENTRY-OUT -d 192.0.2.2/32 -p 6 --dport 8080 -m addrtype");
  const auto block2 = r.find("-A IPSENTRY-OUT -m addrtype --src-type LOCAL -d 192.0.2.2/32 -p 6 --dport 8080");
  const auto clamp = r.find("-j TCPMSS --set-mss 1423");
  const auto protect = r.find("-A IPSENTRY-OUT -m addrtype --src-type LOCAL -d 192.0.2.2/32 -j NFQUEUE");
  EXPECT_TRUE(block != std::string::npos || block2 != std::string::npos) << r;
  ASSERT_NE(protect, std::string::npos) << r;
  EXPECT_LT(std::min(block, block2), protect);
  EXPECT_LT(clamp, protect);
  EXPECT_EQ(enforce::render_rules(spd, 6, o, true).find("192.0.2.2"), std::string::npos);
  o.fail_open = true;
  o.queues = 2;
  EXPECT_NE(enforce::render_rules(spd, 4, o, false).find("--queue-balance 0:1 --queue-bypass"), std::string::npos);
}

}  // namespace

// --ike-retransmit: charon's three numbers, their ranges, and a total wait
// bounded because DPD and a request policy's fallback take that long.
TEST(IkeRetransmit, ParsesCharonsNumbersAndRefusesOutOfRange) {
  using ipsentry::enforce::parse_ike_retransmit;
  const auto d = parse_ike_retransmit("4,1.8,5");
  EXPECT_DOUBLE_EQ(d.timeout, 4.0);
  EXPECT_DOUBLE_EQ(d.base, 1.8);
  EXPECT_EQ(d.tries, 5u);
  // 4 + 7.2 + 12.96 + 23.328 + 41.9904 + 75.58272: charon's documented 165 s.
  EXPECT_NEAR(d.span(), 165.06, 0.01);
  EXPECT_NEAR(ipsentry::enforce::IkeRetransmit{}.span(), d.span(), 1e-9);
  const auto s = parse_ike_retransmit("0.5,1,0");
  EXPECT_DOUBLE_EQ(s.timeout, 0.5);
  EXPECT_EQ(s.tries, 0u);
  EXPECT_DOUBLE_EQ(s.span(), 0.5);
  const auto refused = [](const char* text, const char* why) {
    try {
      (void)parse_ike_retransmit(text);
      ADD_FAILURE() << text << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << text << ": " << e.what();
    }
  };
  refused("4,1.8", "TIMEOUT,BASE,TRIES");
  refused("4,1.8,5,1", "TIMEOUT,BASE,TRIES");
  refused("", "TIMEOUT,BASE,TRIES");
  refused("0.05,1.8,5", "TIMEOUT (seconds) 0.05 is outside 0.1..120");
  refused("121,1,0", "outside 0.1..120");
  refused("x,1.8,5", "TIMEOUT (seconds) 'x' is not a number");
  refused("4,,5", "BASE '' is not a number");
  refused("4,0.9,5", "BASE 0.9 is outside 1..4");
  refused("4,1.8,-1", "TRIES '-1' is not a whole number");
  refused("4,1.8,2.5", "TRIES '2.5' is not a whole number");
  refused("0.1,1,21", "TRIES 21 is outside 0..20");
  refused("nan,1.8,5", "not a number");
  refused("120,2,5", "waits 7560 s before giving up (at most 3600)");
}

// --save-keys: rewrites run on the writer thread, coalesce, and every row
// added before flush() (or the destructor) is in the files, mode 0600.
TEST(KeyFiles, WriterThreadCoalescesAndFlushLeavesEveryRow) {
  namespace fs = std::filesystem;
  using ipsentry::enforce::KeyFiles;
  const fs::path dir = fs::temp_directory_path() / fmt::format("ipsentry-keyfiles-{}", ::getpid());
  fs::remove_all(dir);
  const auto rows_in = [&](const char* name) {
    std::ifstream in(dir / name);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) n += !line.empty() && line[0] != '#';
    return n;
  };
  std::vector<std::uint8_t> key(16, 0x5a);
  const ipsentry::filters::SecretBytes k{std::span<const std::uint8_t>(key)};
  const ipsentry::filters::KeyedCipher aes128{ipsentry::filters::Cipher::aes_cbc, 16};
  std::atomic<int> ok{0}, failed{0};
  constexpr int kRows = 200;
  // The first rewrite's report waits until every row is added: the rewrites
  // asked for meanwhile must coalesce into one.
  std::promise<void> added;
  std::shared_future<void> all_added = added.get_future().share();
  std::atomic<bool> first{true};
  {
    KeyFiles files(dir, [&](const std::string& error) {
      if (first.exchange(false)) all_added.wait();
      ++(error.empty() ? ok : failed);
    });
    std::string why;
    for (int i = 0; i < kRows; ++i) {
      ASSERT_TRUE(
          files.add_ike(1000 + i, 2000 + i, aes128, ipsentry::filters::Integrity::hmac_sha256_128, k, k, k, k, why))
          << why;
      files.write_later();  // returns at once: the writes (two fsyncs each) are the writer's
    }
    added.set_value();
    files.flush();
    EXPECT_EQ(rows_in(KeyFiles::kIkeFile), static_cast<std::size_t>(kRows));
    EXPECT_EQ(failed.load(), 0);
    EXPECT_GE(files.rewrites(), 1u);
    EXPECT_LE(files.rewrites(), 2u) << "the rewrites asked for while one was pending coalesce";
    EXPECT_EQ(static_cast<std::uint64_t>(ok.load()), files.rewrites());
    EXPECT_EQ(fs::status(dir / KeyFiles::kIkeFile).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
    ASSERT_TRUE(files.add_ike(7, 8, aes128, ipsentry::filters::Integrity::hmac_sha256_128, k, k, k, k, why));
    files.write_later();  // not flushed: the destructor writes it
  }
  EXPECT_EQ(rows_in(KeyFiles::kIkeFile), static_cast<std::size_t>(kRows + 1));
  EXPECT_EQ(rows_in(KeyFiles::kEspFile), 0u);
  // Reopened: the rows are read back and kept.
  {
    KeyFiles again(dir);
    EXPECT_EQ(again.ike_rows(), static_cast<std::size_t>(kRows + 1));
  }
  fs::remove_all(dir);
}
