// The policy audit's judgement of cleartext (what is a leak, what the
// policy allows, what an exemption passes) and its SA timeline (successors,
// overlap, gap, cleartext in the gap, lifetime), without captures.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "ipsentry/capture/policy_audit.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace {

using namespace ipsentry;
using capture::AuditResult;
using capture::AuditVerdict;
using capture::PolicyAudit;
using filters::Sense;
using test::addr;

constexpr const char* kKeyA = "00112233445566778899aabbccddeeff01020304";
constexpr const char* kKeyB = "ffeeddccbbaa99887766554433221100a1a2a3a4";

std::string sa(const char* name, const char* spi, const char* dir, const char* src, const char* dst, const char* key,
               const std::string& extra = "") {
  return fmt::format(R"(  - name: {}
    spi: {}
    direction: {}
    src: {}
    dst: {}
    protocol: esp
    mode: transport
    encryption: aes-gcm-16
    enc_key: 0x{}
{})",
                     name, spi, dir, src, dst, key, extra);
}

// Host 192.0.2.1: 192.0.2.2 require, 192.0.2.3 respond, 192.0.2.4 request
// (protect), 192.0.2.5 negotiate with request, telnet blocked, DNS to
// 198.51.100.53 permitted; a gateway policy for 192.0.2.128/25 <-> 203.0.113.0/24.
std::string host_config(const std::string& exemptions = "") {
  std::string out = "interfaces: { local: [192.0.2.1] }\n" + exemptions + R"(ike_profiles:
  - name: p
    auth: { method: psk, psk: "a test secret of some length" }
    peer: 192.0.2.5
policies:
  - name: dns
    from: me
    to: 198.51.100.53
    protocol: udp
    to_port: 53
    action: permit
  - name: no-telnet
    from: me
    to: any
    protocol: tcp
    to_port: 23
    mirrored: true
    action: block
)";
  const char* peers[] = {"192.0.2.2", "192.0.2.3", "192.0.2.4"};
  const char* inbound[] = {"require", "respond", "request"};
  for (int i = 0; i < 3; ++i) {
    out += fmt::format(R"(  - name: to-{0}
    from: me
    to: {0}
    mirrored: true
    action: protect
    inbound: {1}
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out{2}, in{2}]
)",
                       peers[i], inbound[i], i);
  }
  out += R"(  - name: nego
    from: me
    to: 192.0.2.5
    mirrored: true
    action: negotiate
    ike: p
    inbound: request
  - name: nets
    from: 192.0.2.128/25
    to: 203.0.113.0/24
    mirrored: true
    action: protect
    ipsec: { protocol: esp, mode: tunnel, peer: 198.51.100.9 }
    sas: [gw-out, gw-in]
sas:
)";
  for (int i = 0; i < 3; ++i) {
    const std::string o = fmt::format("0x{:x}", 0x100 + i);
    const std::string n = fmt::format("0x{:x}", 0x200 + i);
    out += sa(fmt::format("out{}", i).c_str(), o.c_str(), "outbound", "192.0.2.1", peers[i], kKeyA);
    out += sa(fmt::format("in{}", i).c_str(), n.c_str(), "inbound", peers[i], "192.0.2.1", kKeyB);
  }
  return out;
}

struct Fixture {
  filters::Config config;
  std::unique_ptr<PolicyAudit> audit;
  explicit Fixture(const std::string& text) : config(filters::parse_config(text, "audit.yaml", ".")) {
    filters::LocalAddresses me;
    me.addresses.push_back(addr("192.0.2.1"));
    audit = std::make_unique<PolicyAudit>(config, me, "audit.yaml");
  }
  AuditResult judge(const std::vector<std::uint8_t>& ip) const {
    dissect::Packet p;
    dissect::dissect_ip(dissect::Bytes(ip.data(), ip.size()), p);
    AuditResult r;
    audit->judge_clear(p, r);
    return r;
  }
};

std::vector<std::uint8_t> tcp(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  std::vector<std::uint8_t> h(20, 0);
  h[0] = static_cast<std::uint8_t>(sport >> 8);
  h[1] = static_cast<std::uint8_t>(sport);
  h[2] = static_cast<std::uint8_t>(dport >> 8);
  h[3] = static_cast<std::uint8_t>(dport);
  h[12] = 0x50;
  h[13] = 0x02;
  return test::ipv4(src, dst, 6, h);
}

std::vector<std::uint8_t> udp(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  return test::ipv4(src, dst, 17, test::udp(sport, dport, std::vector<std::uint8_t>(8, 0)));
}

// An IKEv2 IKE_SA_INIT header (RFC 7296 section 3.1) with no payloads; on
// port 4500 behind the four zero bytes of the non-ESP marker.
std::vector<std::uint8_t> ike(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  std::vector<std::uint8_t> h(28, 0);
  for (int i = 0; i < 8; ++i) h[static_cast<std::size_t>(i)] = 0x11;
  h[17] = 0x20;  // version 2.0
  h[18] = 34;    // IKE_SA_INIT
  h[19] = 0x08;  // initiator
  h[27] = 28;    // length
  if (sport == 4500 || dport == 4500) h.insert(h.begin(), 4, 0);
  return test::ipv4(src, dst, 17, test::udp(sport, dport, h));
}

// host_config with the gateway policy's tunnel SAs.
std::string full_config(const std::string& exemptions = "") {
  return host_config(exemptions) + R"(  - name: gw-out
    spi: 0x300
    direction: outbound
    src: 192.0.2.1
    dst: 198.51.100.9
    protocol: esp
    mode: tunnel
    encryption: aes-gcm-16
    enc_key: 0x00112233445566778899aabbccddeeff01020304
  - name: gw-in
    spi: 0x301
    direction: inbound
    src: 198.51.100.9
    dst: 192.0.2.1
    protocol: esp
    mode: tunnel
    encryption: aes-gcm-16
    enc_key: 0xffeeddccbbaa99887766554433221100a1a2a3a4
)";
}

TEST(PolicyAudit, RequirePolicyCleartextIsALeakBothWays) {
  Fixture f(full_config());
  AuditResult out = f.judge(tcp("192.0.2.1", "192.0.2.2", 40000, 80));
  EXPECT_EQ(out.verdict, AuditVerdict::cleartext_leak);
  EXPECT_EQ(out.sense, Sense::outbound);
  ASSERT_NE(out.entry, nullptr);
  EXPECT_EQ(out.entry->name, "to-192.0.2.2");
  AuditResult in = f.judge(tcp("192.0.2.2", "192.0.2.1", 80, 40000));
  EXPECT_EQ(in.verdict, AuditVerdict::cleartext_leak);
  EXPECT_EQ(in.sense, Sense::inbound);
  EXPECT_EQ(in.entry->name, "to-192.0.2.2 (mirrored)");
}

TEST(PolicyAudit, RespondAndRequestAreTheirDocumentedFallbacks) {
  Fixture f(full_config());
  // respond: cleartext both ways is the policy's own behaviour.
  EXPECT_EQ(f.judge(tcp("192.0.2.1", "192.0.2.3", 40000, 80)).verdict, AuditVerdict::fallback);
  EXPECT_EQ(f.judge(tcp("192.0.2.3", "192.0.2.1", 80, 40000)).verdict, AuditVerdict::fallback);
  // request on a protect policy: accepts cleartext arriving, never sends it.
  EXPECT_EQ(f.judge(tcp("192.0.2.4", "192.0.2.1", 80, 40000)).verdict, AuditVerdict::fallback);
  EXPECT_EQ(f.judge(tcp("192.0.2.1", "192.0.2.4", 40000, 80)).verdict, AuditVerdict::cleartext_leak);
  // request on a negotiate policy: falls back to cleartext when IKE fails.
  EXPECT_EQ(f.judge(tcp("192.0.2.1", "192.0.2.5", 40000, 80)).verdict, AuditVerdict::fallback);
}

TEST(PolicyAudit, ExemptionsPermitsAndBlocks) {
  Fixture f(full_config());
  // IKE from this host: its exemption is for root's sockets, which a
  // capture cannot see; the audit gives it the benefit of the doubt.
  AuditResult mine = f.judge(ike("192.0.2.1", "192.0.2.2", 500, 500));
  EXPECT_EQ(mine.verdict, AuditVerdict::exempt);
  ASSERT_NE(mine.entry, nullptr);
  EXPECT_TRUE(mine.entry->exemption);
  EXPECT_EQ(f.judge(ike("192.0.2.2", "192.0.2.1", 500, 500)).verdict, AuditVerdict::exempt);
  EXPECT_EQ(f.judge(ike("192.0.2.2", "192.0.2.1", 4500, 4500)).verdict, AuditVerdict::exempt);
  // IKE's ports are no pass for other traffic to a peer: from another
  // port, or with a payload that is not IKE.
  EXPECT_EQ(f.judge(ike("192.0.2.1", "192.0.2.2", 501, 500)).verdict, AuditVerdict::cleartext_leak);
  AuditResult fake = f.judge(udp("192.0.2.1", "192.0.2.2", 500, 500));
  EXPECT_EQ(fake.verdict, AuditVerdict::cleartext_leak);
  EXPECT_NE(std::string(fake.why).find("not IKE"), std::string::npos);
  EXPECT_EQ(f.judge(udp("192.0.2.1", "198.51.100.53", 40000, 53)).verdict, AuditVerdict::permitted);
  EXPECT_EQ(f.judge(udp("192.0.2.1", "198.51.100.54", 40000, 53)).verdict, AuditVerdict::permitted);
  AuditResult telnet = f.judge(tcp("192.0.2.1", "192.0.2.2", 40000, 23));
  EXPECT_EQ(telnet.verdict, AuditVerdict::blocked_seen);
  EXPECT_TRUE(capture::flagged(telnet.verdict));
  // The mirrored block entry: a telnet server's answer.
  EXPECT_EQ(f.judge(tcp("192.0.2.9", "192.0.2.1", 23, 40000)).verdict, AuditVerdict::blocked_seen);
}

TEST(PolicyAudit, WithoutTheIkeExemptionANegotiatingHostsIkeIsStillItsOwn) {
  Fixture f(full_config("exemptions: []\n"));
  EXPECT_EQ(f.judge(ike("192.0.2.1", "192.0.2.5", 500, 500)).verdict, AuditVerdict::exempt);
  EXPECT_EQ(f.judge(ike("192.0.2.5", "192.0.2.1", 4500, 4500)).verdict, AuditVerdict::exempt);
  // From another port of this host it is not the daemon's.
  EXPECT_EQ(f.judge(ike("192.0.2.1", "192.0.2.2", 501, 500)).verdict, AuditVerdict::cleartext_leak);
}

TEST(PolicyAudit, ForwardedTrafficIsJudgedInBothSenses) {
  Fixture f(full_config());
  AuditResult out = f.judge(tcp("192.0.2.130", "203.0.113.7", 40000, 80));
  EXPECT_EQ(out.verdict, AuditVerdict::cleartext_leak);
  EXPECT_EQ(out.sense, Sense::outbound);
  AuditResult in = f.judge(tcp("203.0.113.7", "192.0.2.130", 80, 40000));
  EXPECT_EQ(in.verdict, AuditVerdict::cleartext_leak);
  EXPECT_EQ(in.sense, Sense::inbound);
  // Between two hosts no policy covers: nothing to say.
  EXPECT_EQ(f.judge(tcp("198.51.100.7", "198.51.100.8", 1, 2)).verdict, AuditVerdict::permitted);
}

TEST(PolicyAudit, VerdictNamesRoundTrip) {
  for (std::size_t i = 1; i < capture::kAuditVerdictCount; ++i) {
    const auto v = static_cast<AuditVerdict>(i);
    EXPECT_EQ(capture::find_audit_verdict(capture::audit_name(v)), v);
  }
  EXPECT_FALSE(capture::find_audit_verdict("leak"));
  EXPECT_FALSE(capture::flagged(AuditVerdict::fallback));
  EXPECT_TRUE(capture::flagged(AuditVerdict::policy_mismatch));
}

// The timeline: the audit is told of conforming packets on SAs and of
// cleartext, in capture order, as the verifier would.
struct Timeline : Fixture {
  ipsec::Sad sad;
  Timeline() : Fixture(full_config()) {
    std::vector<filters::SaConfig> sas;
    for (const auto& s : config.sas) sas.push_back(s.clone());
    sad = ipsec::Sad(std::move(sas));
  }
  const filters::SpdEntry* entry(const std::string& name) const {
    for (const auto& e : audit->spd().entries()) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
  void esp(const char* sa_name, double t) {
    capture::FrameResult fr;
    fr.ts_ns = static_cast<std::int64_t>(t * 1e9);
    fr.layer_count = 1;
    fr.layers[0].protocol = filters::IpsecProtocol::esp;
    fr.layers[0].src = addr("192.0.2.1");
    fr.layers[0].dst = addr("192.0.2.2");
    fr.audit.verdict = AuditVerdict::conforms;
    fr.audit.entry = entry("to-192.0.2.2");
    fr.audit.sa = static_cast<std::int32_t>(sad.find(sa_name)->index());
    fr.audit.mine = true;
    fr.audit.outer_src = fr.layers[0].src;
    fr.audit.outer_dst = fr.layers[0].dst;
    audit->account(fr, sad);
  }
  void clear(double t) {
    capture::FrameResult fr;
    fr.ts_ns = static_cast<std::int64_t>(t * 1e9);
    fr.audit.verdict = AuditVerdict::cleartext_leak;
    fr.audit.entry = entry("to-192.0.2.2");
    audit->account(fr, sad);
  }
  const capture::SaTimeline& of(const char* sa_name) { return audit->timelines().at(sad.find(sa_name)->index()); }
};

TEST(PolicyAuditTimeline, OverlapAndLatePacketsOfTheOldSa) {
  Timeline t;
  t.esp("out0", 0);
  t.esp("out0", 1);
  t.esp("out1", 1.5);  // out1 carries the same policy between the same endpoints: the successor
  t.esp("out0", 2);    // the old SA after its successor took over
  t.esp("out1", 3);
  t.audit->finish();
  const auto& a = t.of("out0");
  const auto& b = t.of("out1");
  EXPECT_EQ(a.successor, static_cast<std::int32_t>(t.sad.find("out1")->index()));
  EXPECT_EQ(b.predecessor, static_cast<std::int32_t>(t.sad.find("out0")->index()));
  EXPECT_DOUBLE_EQ(a.overlap_s, 0.5);
  EXPECT_DOUBLE_EQ(a.gap_s, 0.5);  // its last packet before the successor (1 s) to the successor's first
  EXPECT_EQ(a.after_successor, 1u);
  EXPECT_EQ(a.packets, 3u);
  EXPECT_EQ(b.successor, -1);
}

TEST(PolicyAuditTimeline, GapWithCleartextIsCounted) {
  Timeline t;
  t.esp("out0", 0);
  t.clear(0.5);  // during the old SA: a leak, not in the gap
  t.esp("out0", 1);
  t.clear(1.2);
  t.clear(1.4);
  t.esp("out1", 2);
  t.clear(2.5);  // after the successor: a leak, not in the gap
  t.audit->finish();
  const auto& a = t.of("out0");
  EXPECT_DOUBLE_EQ(a.gap_s, 1.0);
  EXPECT_DOUBLE_EQ(a.overlap_s, 0);
  EXPECT_EQ(a.cleartext_in_gap, 2u);
  EXPECT_EQ(t.audit->counts()[static_cast<std::size_t>(AuditVerdict::cleartext_leak)], 4u);
}

}  // namespace
