// NAT traversal (RFC 3948) without the kernel: hostA 192.0.2.1 behind a NAT
// whose public address is 198.51.100.254, hostB 198.51.100.2. Packets go
// from one host's Worker through a simulated NAT (source address and port
// rewritten) to the other's.
//
// The expected checksums were computed independently with scapy 2.5
// (`del pkt[TCP].chksum; IP(raw(pkt))[TCP].chksum` on the packet with the
// address the receiver sees), not with ipsentry's own checksum code.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/natt.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace {

using namespace ipsentry;
using dissect::Bytes;
using dissect::IpAddr;
using enforce::Decision;
using enforce::Hook;
using enforce::NatMapping;
using enforce::Outcome;
using enforce::State;
using enforce::Worker;
using Buf = std::vector<std::uint8_t>;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

Buf from_hex(const char* h) {
  Buf b;
  for (std::size_t i = 0; h[i] != 0 && h[i + 1] != 0; i += 2) {
    b.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h + i, 2), nullptr, 16)));
  }
  return b;
}

// scapy: IP(src='192.0.2.1', dst='198.51.100.2', id=7, flags='DF')/TCP(sport=40001, dport=5001,
// seq=1000, ack=2000, flags='PA', window=502)/b'natt-tcp-payload'
constexpr const char* kTcp =
    "450000380007400040064e82c0000201c63364029c411389000003e8000007d0501801f6359500006e6174742d7463702d7061796c6f6164";
constexpr std::uint16_t kTcpSeenFromNat = 0xcc64;  // the same segment from 198.51.100.254
// scapy: IP(src='192.0.2.1', dst='198.51.100.2', id=8, flags='DF')/UDP(sport=40002, dport=6000)/b'natt-udp-payload-odd'
constexpr const char* kUdp =
    "450000300008400040114e7ec0000201c63364029c421770001cfc7f6e6174742d7564702d7061796c6f61642d6f6464";
constexpr std::uint16_t kUdpSeenFromNat = 0x934f;
// scapy: IPv6(src='2001:db8:1::1', dst='2001:db8:2::2')/UDP(sport=40003, dport=6000)/b'natt-udp6'
constexpr const char* kUdp6 =
    "600000000011114020010db800010000000000000000000120010db8000200000000000000000002"
    "9c431770001145e56e6174742d75647036";
constexpr std::uint16_t kUdp6SeenFromNat = 0x44e7;  // from 2001:db8:2::fe

constexpr const char* kKeyAB = "00112233445566778899aabbccddeeff01020304";
constexpr const char* kKeyBA = "ffeeddccbbaa99887766554433221100a1a2a3a4";
constexpr const char* kA = "192.0.2.1";
constexpr const char* kB = "198.51.100.2";
constexpr const char* kNat = "198.51.100.254";

std::string sa_yaml(const char* name, const char* spi, const char* dir, const char* src, const char* dst,
                    const char* key, const std::string& encap, const char* mode = "transport",
                    const char* cipher = "aes-gcm-16") {
  return fmt::format(R"(  - name: {0}
    spi: {1}
    direction: {2}
    src: {3}
    dst: {4}
    protocol: esp
    mode: {7}
    encryption: {8}
    enc_key: 0x{5}
{6})",
                     name, spi, dir, src, dst, key, encap, mode, cipher);
}

std::string encap(const std::string& extra = "") { return "    encap: { sport: 4500, dport: 4500" + extra + " }\n"; }

// A host protecting everything to `peer` with ESP in UDP; `more_sas` are
// listed in the file but not in the policy.
std::string host(const char* me, const char* peer, const char* key_out, const char* key_in,
                 const std::string& out_encap = encap(), const std::string& more_sas = "") {
  return fmt::format(
      R"(interfaces: {{ local: [{0}] }}
policies:
  - name: natt
    from: me
    to: {1}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out, in]
sas:
{2}{3}{4})",
      me, peer, sa_yaml("out", me == std::string(kA) ? "0x1001" : "0x1002", "outbound", me, peer, key_out, out_encap),
      sa_yaml("in", me == std::string(kA) ? "0x1002" : "0x1001", "inbound", peer, me, key_in, encap()), more_sas);
}

State make_state(const std::string& yaml, const char* me) {
  filters::Config cfg = filters::parse_config(yaml, "natt.yaml", ".");
  return State(std::move(cfg), filters::LocalAddresses{{ip(me)}, {}});
}

// What the NAT does to A's datagram on its way out: the source becomes the
// NAT's public address and `port`.
Buf nat_out(Bytes pkt, std::uint16_t port, const char* public_addr = kNat) {
  Buf b(pkt.begin(), pkt.end());
  std::memcpy(&b[12], ip(public_addr).data(), 4);
  dissect::ipv4_set_checksum(b.data(), 20);
  dissect::store_be16(&b[20], port);
  return b;
}

// ... and to B's reply on its way in: the destination becomes A and 4500.
Buf nat_in(Bytes pkt) {
  Buf b(pkt.begin(), pkt.end());
  std::memcpy(&b[16], ip(kA).data(), 4);
  dissect::ipv4_set_checksum(b.data(), 20);
  dissect::store_be16(&b[22], 4500);
  return b;
}

std::uint16_t be16(Bytes b, std::size_t at) { return dissect::load_be16(b.data() + at); }

bool transport_checksum_ok(Bytes pkt) {
  dissect::Packet p;
  dissect::dissect_ip(pkt, p);
  const std::size_t l4 = p.ip.payload_offset();
  std::uint16_t len = static_cast<std::uint16_t>(pkt.size() - l4);
  std::uint32_t sum = dissect::checksum_add(0, Bytes(p.ip.src.data(), p.ip.src.size()));
  sum = dissect::checksum_add(sum, Bytes(p.ip.dst.data(), p.ip.dst.size()));
  sum += p.ip.protocol;
  sum += len;
  sum = dissect::checksum_add(sum, pkt.subspan(l4));
  return dissect::checksum_fold(sum) == 0;
}

struct Hosts {
  State a = make_state(host(kA, kB, kKeyAB, kKeyBA), kA);
  State b = make_state(host(kB, kNat, kKeyBA, kKeyAB), kB);
  Worker wa;
  Worker wb;
  std::vector<std::string> events;
  Hosts() {
    wb.set_events([this](enforce::EventKind, const std::string& t) { events.push_back(t); });
  }
  // A protects `inner`; the NAT maps it to `port`; B decides.
  Decision a_to_b(const Buf& inner, std::uint16_t port, Buf* wire = nullptr) {
    Decision out = wa.process(a, Hook::output, inner, 1500, 1, 1);
    EXPECT_EQ(out.outcome, Outcome::protected_sent);
    Buf w = nat_out(out.replacement, port);
    if (wire != nullptr) *wire = w;
    return wb.process(b, Hook::prerouting, w, 0, 1, 2);
  }
  std::uint16_t b_learned() {
    std::uint64_t k = 0;
    for (const auto& p : b.life(b.sad().find("out")->index()).nat.peers(k)) {
      if (p.address == ip(kNat)) return p.port;
    }
    return 0;
  }
};

Buf udp_b_to_nat() {
  Buf p = from_hex(kUdp);
  std::memcpy(&p[12], ip(kB).data(), 4);
  std::memcpy(&p[16], ip(kNat).data(), 4);
  dissect::ipv4_set_checksum(p.data(), 20);
  dissect::store_be16(&p[26], 0);
  dissect::store_be16(&p[26], dissect::transport_checksum(ip(kB), ip(kNat), 17, Bytes(p).subspan(20)));
  return p;
}

TEST(NatTraversal, TransportChecksumsAreFixedAfterARealNat) {
  Hosts h;
  for (auto [hex, sum, field] : {std::tuple{kTcp, kTcpSeenFromNat, 36}, std::tuple{kUdp, kUdpSeenFromNat, 26}}) {
    const Buf original = from_hex(hex);
    const Decision in = h.a_to_b(original, 40000);
    ASSERT_EQ(in.outcome, Outcome::decapsulated);
    ASSERT_EQ(in.replacement.size(), original.size());
    EXPECT_EQ(IpAddr::v4(in.replacement.data() + 12), ip(kNat)) << "the rebuilt header is the one that arrived";
    EXPECT_EQ(be16(in.replacement, static_cast<std::size_t>(field)), sum) << "scapy's checksum for the NAT's address";
    // Everything but the addresses, the IP checksum and the L4 checksum is the sender's.
    EXPECT_TRUE(std::equal(original.begin() + 20, original.begin() + field, in.replacement.begin() + 20));
    EXPECT_TRUE(std::equal(original.begin() + field + 2, original.end(), in.replacement.begin() + field + 2));
  }
  // B's reply comes back through the NAT to A, whose stack sees B's source.
  Decision reply = h.wb.process(h.b, Hook::output, udp_b_to_nat(), 1500, 1, 3);
  ASSERT_EQ(reply.outcome, Outcome::protected_sent);
  Decision at_a = h.wa.process(h.a, Hook::prerouting, nat_in(reply.replacement), 0, 1, 4);
  ASSERT_EQ(at_a.outcome, Outcome::decapsulated);
  EXPECT_EQ(IpAddr::v4(at_a.replacement.data() + 16), ip(kA));
  EXPECT_TRUE(transport_checksum_ok(at_a.replacement));
}

// The engine directly (what `verify -w` writes): IPv6, zero UDP checksums,
// SAs without integrity, tunnel mode and plain ESP. The sender's SA has its
// real address, the receiver's the address the NAT gave it.
struct EngineCase {
  ipsec::Sad sender;
  ipsec::Sad receiver;
  ipsec::Engine engine;
  EngineCase(const char* src, const char* seen_src, const char* dst, const char* key, const std::string& encap,
             const char* mode = "transport", const char* cipher = "aes-gcm-16")
      : sender(load(src, dst, key, encap, mode, cipher)), receiver(load(seen_src, dst, key, encap, mode, cipher)) {}
  static std::vector<filters::SaConfig> load(const char* src, const char* dst, const char* key,
                                             const std::string& encap, const char* mode, const char* cipher) {
    return filters::parse_config("sas:\n" + sa_yaml("e", "0x61", "inbound", src, dst, key, encap, mode, cipher),
                                 "e.yaml", ".")
        .sas;
  }
  ipsec::InboundResult roundtrip(const Buf& inner, const IpAddr& seen_src, Buf& keep) {
    ipsec::OutboundResult o = engine.outbound(sender.at(0), inner);
    EXPECT_EQ(o.status, ipsec::OutboundStatus::ok);
    keep.assign(o.packet.begin(), o.packet.end());
    if (keep[0] >> 4 == 4) {
      std::memcpy(&keep[12], seen_src.data(), 4);
      dissect::ipv4_set_checksum(keep.data(), 20);
    } else {
      std::memcpy(&keep[8], seen_src.data(), 16);
      if (keep[6] == 17) {  // the NAT fixes the outer UDP checksum it changed
        dissect::store_be16(&keep[46], 0);
        dissect::store_be16(&keep[46],
                            dissect::transport_checksum(seen_src, IpAddr::v6(&keep[24]), 17, Bytes(keep).subspan(40)));
      }
    }
    dissect::Packet p;
    dissect::dissect_ip(keep, p);
    return engine.inbound(receiver, p, 0, true);
  }
};

TEST(NatTraversal, EngineFixesOnlyWhatAuthenticatedAndWasUdpEncapsulated) {
  {
    EngineCase e("2001:db8:1::1", "2001:db8:2::fe", "2001:db8:2::2", kKeyAB, encap());
    Buf wire;
    const Buf inner = from_hex(kUdp6);
    const auto r = e.roundtrip(inner, ip("2001:db8:2::fe"), wire);
    ASSERT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(be16(r.rebuilt, 46), kUdp6SeenFromNat) << "IPv6 behind a NAT66";
  }
  {
    EngineCase e(kA, kNat, kB, kKeyAB, encap());
    Buf inner = from_hex(kUdp);
    dissect::store_be16(&inner[26], 0);  // IPv4 UDP without a checksum
    Buf wire;
    const auto r = e.roundtrip(inner, ip(kNat), wire);
    ASSERT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(be16(r.rebuilt, 26), 0) << "no checksum stays no checksum";
  }
  {
    // aes-cbc without integrity: nothing authenticates the payload, so the
    // sender's checksum is left to catch what the receiver's stack can.
    EngineCase e(kA, kNat, kB, "00112233445566778899aabbccddeeff", encap(), "transport", "aes-cbc");
    const Buf inner = from_hex(kTcp);
    Buf wire;
    const auto r = e.roundtrip(inner, ip(kNat), wire);
    ASSERT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(be16(r.rebuilt, 36), be16(inner, 36));
  }
  {
    // Plain ESP carries no NAT-T: the packet is the sender's.
    EngineCase e(kA, kA, kB, kKeyAB, "");
    const Buf inner = from_hex(kTcp);
    Buf wire;
    const auto r = e.roundtrip(inner, ip(kA), wire);
    ASSERT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(Buf(r.rebuilt.begin(), r.rebuilt.end()), inner);
  }
  {
    // Tunnel mode: the NAT changed only the outer header; the inner packet,
    // checksums and all, arrives as it was sent (RFC 3948 section 3.1.3).
    EngineCase e(kA, kNat, kB, kKeyAB, encap(), "tunnel");
    const Buf inner = from_hex(kTcp);
    Buf wire;
    const auto r = e.roundtrip(inner, ip(kNat), wire);
    ASSERT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(Buf(r.payload.begin(), r.payload.end()), inner);
  }
}

TEST(NatTraversal, RepliesGoToThePortTheNatMapped) {
  Hosts h;
  // Before B heard from A it can only use the configured port.
  Decision early = h.wb.process(h.b, Hook::output, udp_b_to_nat(), 1500, 1, 1);
  ASSERT_EQ(early.outcome, Outcome::protected_sent);
  EXPECT_EQ(be16(early.replacement, 22), 4500);
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 40000).outcome, Outcome::decapsulated);
  EXPECT_EQ(h.b_learned(), 40000);
  Decision reply = h.wb.process(h.b, Hook::output, udp_b_to_nat(), 1500, 1, 3);
  ASSERT_EQ(reply.outcome, Outcome::protected_sent);
  EXPECT_EQ(be16(reply.replacement, 20), 4500) << "from our NAT-T port";
  EXPECT_EQ(be16(reply.replacement, 22), 40000) << "to the peer's mapped port";
  ASSERT_EQ(h.events.size(), 1u);
  EXPECT_NE(h.events[0].find("port 40000"), std::string::npos) << h.events[0];
}

TEST(NatTraversal, OnlyAuthenticNewestAcceptedPacketsMoveTheMapping) {
  Hosts h;
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 40000).outcome, Outcome::decapsulated);
  ASSERT_EQ(h.b_learned(), 40000);

  // A forged packet (a flipped bit, a fresh sequence number) from another port.
  Decision fresh = h.wa.process(h.a, Hook::output, from_hex(kUdp), 1500, 1, 1);
  Buf forged = nat_out(fresh.replacement, 41000);
  forged[forged.size() - 3] ^= 0x01;
  EXPECT_EQ(h.wb.process(h.b, Hook::prerouting, forged, 0, 1, 2).outcome, Outcome::ipsec_failed);
  EXPECT_EQ(h.b_learned(), 40000) << "an unauthenticated packet never moves the mapping";
  // A replay of a genuine packet from another port.
  Buf genuine;
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 40000, &genuine).outcome, Outcome::decapsulated);
  Buf replayed = genuine;
  dissect::store_be16(&replayed[20], 41001);
  EXPECT_EQ(h.wb.process(h.b, Hook::prerouting, replayed, 0, 1, 3).outcome, Outcome::ipsec_failed);
  EXPECT_EQ(h.b_learned(), 40000);
  // A NAT keepalive from another port: nothing in it is authenticated.
  std::array<std::uint8_t, 64> kb{};
  const std::size_t kn = enforce::build_keepalive(kb, ip(kNat), ip(kB), 41002, 4500);
  const Buf keepalive(kb.begin(), kb.begin() + static_cast<std::ptrdiff_t>(kn));
  EXPECT_EQ(h.wb.process(h.b, Hook::prerouting, keepalive, 0, 1, 4).outcome, Outcome::nat_keepalive);
  EXPECT_EQ(h.b_learned(), 40000);

  // Authentic, but older than one already received: a late packet from a
  // mapping the NAT has since replaced must not move it back.
  const Buf older = nat_out(h.wa.process(h.a, Hook::output, from_hex(kUdp), 1500, 1, 1).replacement, 42000);
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 40000).outcome, Outcome::decapsulated);
  EXPECT_EQ(h.wb.process(h.b, Hook::prerouting, older, 0, 1, 5).outcome, Outcome::decapsulated)
      << "still inside the replay window, so delivered";
  EXPECT_EQ(h.b_learned(), 40000);

  // Authentic and accepted but not allowed on its SA: the policy refuses
  // it, so it proves nothing about where the peer is.
  State b2 = make_state(
      host(kB, kNat, kKeyBA, kKeyAB, encap(), sa_yaml("stray", "0x2001", "inbound", kNat, kB, kKeyAB, encap())), kB);
  ipsec::Engine stray_engine;
  filters::Config stray_cfg =
      filters::parse_config("sas:\n" + sa_yaml("stray", "0x2001", "outbound", kA, kB, kKeyAB, encap()), "s.yaml", ".");
  ipsec::Sad stray_sad(std::move(stray_cfg.sas));
  const auto stray = stray_engine.outbound(stray_sad.at(0), from_hex(kUdp));
  ASSERT_EQ(stray.status, ipsec::OutboundStatus::ok);
  ASSERT_EQ(b2.nat_learners(b2.sad().find("stray")->index()).size(), 1u) << "paired with out by the peer's address";
  Worker w2;
  EXPECT_EQ(w2.process(b2, Hook::prerouting, nat_out(stray.packet, 44000), 0, 1, 1).outcome, Outcome::policy_mismatch);
  std::uint64_t k = 0;
  EXPECT_EQ(b2.life(b2.sad().find("out")->index()).nat.peers(k)[0].port, 0);

  // The newest authentic packet from a new port: the NAT rebound, follow it.
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 43000).outcome, Outcome::decapsulated);
  EXPECT_EQ(h.b_learned(), 43000);
  EXPECT_EQ(h.b.life(h.b.sad().find("out")->index()).nat.peers(k)[0].moves, 1u);
  EXPECT_NE(h.events.back().find("moved from port 40000 to 43000"), std::string::npos) << h.events.back();
}

TEST(NatTraversal, WithoutIntegrityOrReplayWindowNothingIsLearned) {
  const char* key = "00112233445566778899aabbccddeeff";
  auto cfg = [&](const char* me, const char* peer) {
    return fmt::format(R"(interfaces: {{ local: [{0}] }}
policies:
  - {{ name: p, from: me, to: {1}, mirrored: true, action: protect, ipsec: {{ protocol: esp, mode: transport }}, sas: [out, in] }}
sas:
{2}{3})",
                       me, peer,
                       sa_yaml("out", me == std::string(kA) ? "0x1001" : "0x1002", "outbound", me, peer, key, encap(),
                               "transport", "aes-cbc"),
                       sa_yaml("in", me == std::string(kA) ? "0x1002" : "0x1001", "inbound", peer, me, key, encap(),
                               "transport", "aes-cbc"));
  };
  State a = make_state(cfg(kA, kB), kA);
  State b = make_state(cfg(kB, kNat), kB);
  Worker wa;
  Worker wb;
  Decision out = wa.process(a, Hook::output, from_hex(kUdp), 1500, 1, 1);
  ASSERT_EQ(out.outcome, Outcome::protected_sent);
  ASSERT_EQ(wb.process(b, Hook::prerouting, nat_out(out.replacement, 40000), 0, 1, 1).outcome, Outcome::decapsulated);
  std::uint64_t k = 0;
  EXPECT_EQ(b.life(b.sad().find("out")->index()).nat.peers(k)[0].port, 0) << "anyone could have sent that";

  // With the replay window off, a copy of the newest packet resent from
  // elsewhere would look new.
  std::string yaml = host(kB, kNat, kKeyBA, kKeyAB);
  const std::string in_at = "  - name: in\n";
  yaml.insert(yaml.find(in_at) + in_at.size(), "    replay_window: 0\n");
  State b0 = make_state(yaml, kB);
  State a0 = make_state(host(kA, kB, kKeyAB, kKeyBA), kA);
  Worker w0;
  Worker wa0;
  const Buf wire = nat_out(wa0.process(a0, Hook::output, from_hex(kUdp), 1500, 1, 1).replacement, 40000);
  ASSERT_EQ(w0.process(b0, Hook::prerouting, wire, 0, 1, 1).outcome, Outcome::decapsulated);
  EXPECT_EQ(b0.life(b0.sad().find("out")->index()).nat.peers(k)[0].port, 0);
}

TEST(NatTraversal, ReloadKeepsTheMappingOfAnUnchangedSa) {
  Hosts h;
  ASSERT_EQ(h.a_to_b(from_hex(kUdp), 40000).outcome, Outcome::decapsulated);
  State same = make_state(host(kB, kNat, kKeyBA, kKeyAB), kB);
  (void)same.inherit(h.b);
  std::uint64_t k = 0;
  EXPECT_EQ(same.life(same.sad().find("out")->index()).nat.peers(k)[0].port, 40000);
  State other_port = make_state(host(kB, kNat, kKeyBA, kKeyAB, "    encap: { sport: 4500, dport: 4501 }\n"), kB);
  (void)other_port.inherit(h.b);
  EXPECT_EQ(other_port.life(other_port.sad().find("out")->index()).nat.peers(k)[0].port, 0)
      << "a mapping learned for other ports is not carried over";
}

TEST(NatTraversal, KeepalivesOnlyAfterAnIdleInterval) {
  NatMapping m;
  const IpAddr peer = ip(kNat);
  m.seed(peer);
  std::array<enforce::KeepaliveTarget, NatMapping::kPeers> t{};
  constexpr std::int64_t s = 1'000'000'000;
  ASSERT_EQ(m.due(100 * s, 20 * s, 4500, t), 1u) << "nothing sent yet: one at once opens the mapping";
  EXPECT_EQ(t[0].address, peer);
  EXPECT_EQ(t[0].port, 4500) << "the configured port until one is learned";
  EXPECT_EQ(m.due(110 * s, 20 * s, 4500, t), 0u);
  EXPECT_EQ(m.due(120 * s, 20 * s, 4500, t), 1u);
  (void)m.port_for(peer, 135 * s);  // traffic went out: no keepalive is needed for 20 s
  EXPECT_EQ(m.due(141 * s, 20 * s, 4500, t), 0u);
  EXPECT_EQ(m.learn(peer, 40000, 150 * s), 0);
  EXPECT_EQ(m.due(155 * s, 20 * s, 4500, t), 1u);
  EXPECT_EQ(t[0].port, 40000) << "to the mapped port";
  // A learned peer more than the table holds replaces the least recently heard one.
  for (int i = 1; i <= 8; ++i) (void)m.learn(ip(fmt::format("203.0.113.{}", i).c_str()), 5000, (200 + i) * s);
  std::uint64_t k = 0;
  const auto peers = m.peers(k);
  EXPECT_EQ(peers[0].address, peer) << "the configured destination stays";
  EXPECT_EQ(peers[1].address, ip("203.0.113.8")) << "203.0.113.1 gave way";
}

TEST(NatTraversal, KeepaliveDatagramIsTheRfcsOneOctet) {
  std::array<std::uint8_t, 64> b{};
  const std::size_t n4 = enforce::build_keepalive(b, ip(kA), ip(kB), 4500, 40000);
  ASSERT_EQ(n4, 29u);
  dissect::Packet p;
  dissect::dissect_ip(Bytes(b.data(), n4), p);
  EXPECT_EQ(p.encap, dissect::UdpEncap::nat_keepalive);
  EXPECT_EQ(p.l4.sport, 4500);
  EXPECT_EQ(p.l4.dport, 40000);
  EXPECT_EQ(be16(Bytes(b.data(), n4), 26), 0) << "IPv4: UDP checksum zero (RFC 3948 section 2.1)";
  const std::size_t n6 = enforce::build_keepalive(b, ip("2001:db8:1::1"), ip("2001:db8:2::2"), 4500, 40000);
  ASSERT_EQ(n6, 49u);
  EXPECT_EQ(b[48], 0xff);
  EXPECT_EQ(be16(Bytes(b.data(), n6), 46), 0xf78e) << "scapy's checksum";
}

TEST(NatTraversal, EncapConfiguration) {
  auto load = [](const std::string& e) {
    // `e` is the whole encap line, or what follows sport and dport in it.
    const std::string line = e.rfind("    encap:", 0) == 0 ? e : encap(e);
    return filters::parse_config("sas:\n" + sa_yaml("s", "0x1", "outbound", kA, kB, kKeyAB, line), "c.yaml", ".");
  };
  EXPECT_EQ(load("    encap: udp\n").sas[0].encap->keepalive_seconds, 20u) << "RFC 3948's 20 s by default";
  EXPECT_EQ(load(", keepalive: 5").sas[0].encap->keepalive_seconds, 5u);
  EXPECT_EQ(load(", keepalive: off").sas[0].encap->keepalive_seconds, 0u);
  EXPECT_EQ(load(", keepalive: 0").sas[0].encap->keepalive_seconds, 0u);
  for (const auto& [bad, says] :
       {std::pair{", keepalive: often", "encap.keepalive: 'often' is not"},
        std::pair{", keepalive: 7200", "'7200' is not a number of seconds from 0 to 3600, or off"},
        std::pair{"    encap: { dport: 0 }\n", "encap.dport: a UDP port is 1 to 65535"},
        std::pair{", every: 5", "unknown setting 'every'"}}) {
    try {
      (void)load(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const filters::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("c.yaml:"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
