// ipsec::Engine: outbound then inbound for every algorithm, mode and address
// family, and the verdicts for tampered, replayed, truncated and unknown
// packets. Interoperability with independent implementations is covered by
// tests/interop (scapy, tshark, Python cryptography).
#include <gtest/gtest.h>

#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace ipsentry {
namespace {

using dissect::Bytes;
using filters::Cipher;
using filters::Integrity;
using filters::IpsecProtocol;
using filters::SaMode;
using ipsec::Reason;
using ipsec::Verdict;
using test::hex;

using test::key_of;
using test::make_sa;

/// A sender and a receiver sharing one SA configuration.
struct Pair {
  explicit Pair(const filters::SaConfig& cfg) {
    std::vector<filters::SaConfig> a;
    a.push_back(cfg.clone());
    tx = ipsec::Sad(std::move(a));
    std::vector<filters::SaConfig> b;
    b.push_back(cfg.clone());
    rx = ipsec::Sad(std::move(b));
  }
  std::vector<std::uint8_t> protect(const std::vector<std::uint8_t>& clear) {
    auto r = sender.outbound(tx.at(0), clear);
    EXPECT_EQ(r.status, ipsec::OutboundStatus::ok) << ipsec::to_string(r.status);
    return {r.packet.begin(), r.packet.end()};
  }
  ipsec::InboundResult receive(const std::vector<std::uint8_t>& wire) {
    dissect::dissect_ip(wire, pkt);
    return receiver.inbound(rx, pkt, 1, true);
  }
  ipsec::Sad tx;
  ipsec::Sad rx;
  ipsec::Engine sender;
  ipsec::Engine receiver;
  dissect::Packet pkt;
};

struct Case {
  Cipher c;
  Integrity i;
};

std::vector<Case> esp_cases() {
  std::vector<Case> out;
  for (const auto& ci : filters::all_ciphers()) {
    if (!ci.supported) continue;
    if (ci.aead()) {
      out.push_back({ci.id, Integrity::none});
    } else {
      out.push_back({ci.id, Integrity::hmac_sha256_128});
    }
  }
  for (Integrity i : {Integrity::hmac_md5_96, Integrity::hmac_sha1_96, Integrity::hmac_sha384_192,
                      Integrity::hmac_sha512_256, Integrity::aes_xcbc_96, Integrity::hmac_sha256_96}) {
    out.push_back({Cipher::aes_cbc, i});
  }
  out.push_back({Cipher::aes_cbc, Integrity::none});
  return out;
}

struct Topology {
  const char* outer_src;
  const char* outer_dst;
  const char* inner_src;
  const char* inner_dst;
  bool inner_v6;
};

const Topology kTopologies[] = {
    {"192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2", false},
    {"2001:db8::1", "2001:db8::2", "2001:db8::1", "2001:db8::2", true},
    {"203.0.113.1", "198.51.100.1", "2001:db8:a::1", "2001:db8:b::1", true},  // IPv6 inside IPv4
    {"2001:db8::1", "2001:db8::2", "192.0.2.10", "192.0.2.130", false},       // IPv4 inside IPv6
};

std::vector<std::uint8_t> clear_packet(const Topology& t, std::size_t n, std::uint16_t seq) {
  auto icmp = test::icmp_echo(0x77, seq, n, t.inner_v6);
  if (t.inner_v6) return test::ipv6(t.inner_src, t.inner_dst, 58, {}, icmp);
  return test::ipv4(t.inner_src, t.inner_dst, 1, icmp);
}

TEST(Engine, EspRoundTripEveryAlgorithmModeAndFamily) {
  int checked = 0;
  for (const auto& c : esp_cases()) {
    for (SaMode mode : {SaMode::transport, SaMode::tunnel}) {
      for (const auto& t : kTopologies) {
        const bool same_family =
            dissect::IpAddr::parse(t.outer_src)->family() == dissect::IpAddr::parse(t.inner_src)->family();
        if (mode == SaMode::transport && (!same_family || std::string(t.outer_src) != t.inner_src)) continue;
        for (bool esn : {false, true}) {
          SCOPED_TRACE(std::string(filters::cipher_info(c.c).name) + "/" +
                       std::string(filters::integrity_info(c.i).name) + " " + filters::to_string(mode) + " " +
                       t.outer_src + " inner " + t.inner_src + (esn ? " esn" : ""));
          Pair p(make_sa(IpsecProtocol::esp, c.c, c.i, mode, t.outer_src, t.outer_dst, esn));
          std::vector<std::vector<std::uint8_t>> sent;
          for (std::uint16_t n = 0; n < 3; ++n) {
            auto clear = clear_packet(t, 17 + n * 211, n);
            auto wire = p.protect(clear);
            sent.push_back(wire);
            auto r = p.receive(wire);
            ASSERT_EQ(r.verdict, Verdict::ok) << ipsec::reason_description(r.reason);
            EXPECT_EQ(r.seq, n + 1u);
            if (mode == SaMode::tunnel) {
              EXPECT_EQ(std::vector<std::uint8_t>(r.payload.begin(), r.payload.end()), clear);
            } else {
              EXPECT_EQ(std::vector<std::uint8_t>(r.rebuilt.begin(), r.rebuilt.end()), clear);
            }
          }
          // A packet sent again is a replay.
          EXPECT_EQ(p.receive(sent[1]).reason, Reason::replay_duplicate);
          // A changed byte anywhere after the SPI is caught by the ICV.
          if (c.i != Integrity::none || filters::cipher_info(c.c).aead()) {
            const auto& w = sent[2];
            const std::size_t esp_at = w.size() - (p.pkt.ipsec.length);
            for (std::size_t off : {esp_at + 4, esp_at + 9, w.size() / 2 + esp_at / 2, w.size() - 1}) {
              Pair fresh(make_sa(IpsecProtocol::esp, c.c, c.i, mode, t.outer_src, t.outer_dst, esn));
              auto bad = w;
              bad[off] ^= 0x20;
              auto r = fresh.receive(bad);
              EXPECT_EQ(r.verdict, Verdict::icv_fail)
                  << "offset " << off << ": " << ipsec::reason_description(r.reason);
            }
          }
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 60);
}

TEST(Engine, UdpEncapsulatedEspRoundTrip) {
  for (const auto& t : {kTopologies[0], kTopologies[1]}) {
    auto cfg =
        make_sa(IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::tunnel, t.outer_src, t.outer_dst);
    cfg.encap = filters::UdpEncapConfig{4500, 4500};
    Pair p(cfg);
    auto clear = clear_packet(t, 100, 1);
    auto wire = p.protect(clear);
    auto r = p.receive(wire);
    EXPECT_TRUE(p.pkt.ipsec.udp_encap);
    ASSERT_EQ(r.verdict, Verdict::ok) << ipsec::reason_description(r.reason);
    EXPECT_EQ(std::vector<std::uint8_t>(r.payload.begin(), r.payload.end()), clear);
    if (!t.inner_v6) continue;
    // The UDP checksum is mandatory over IPv6 and must be correct.
    const auto* u = wire.data() + 40;
    EXPECT_NE(dissect::load_be16(u + 6), 0);
    EXPECT_EQ(
        dissect::transport_checksum(test::addr(t.outer_src), test::addr(t.outer_dst), 17, Bytes(u, wire.size() - 40)),
        0xffff);
  }
}

TEST(Engine, UnknownSpiAndWrongKeys) {
  auto cfg = make_sa(IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha1_96, SaMode::transport, "192.0.2.1",
                     "192.0.2.2");
  Pair p(cfg);
  auto wire = p.protect(test::ipv4("192.0.2.1", "192.0.2.2", 1, test::icmp_echo(1, 1, 32, false)));

  // Another SPI.
  auto other = cfg.clone();
  other.spi = 0x9999;
  Pair q(other);
  EXPECT_EQ(q.receive(wire).verdict, Verdict::unknown_spi);
  EXPECT_EQ(q.receiver.counters().bad_spi_packets, 1u);

  // Right integrity key, wrong encryption key: ICV good, plaintext garbage.
  auto wrong_enc = cfg.clone();
  wrong_enc.enc_key = filters::SecretBytes(key_of(16, 200));
  Pair w(wrong_enc);
  auto r = w.receive(wire);
  EXPECT_EQ(r.verdict, Verdict::decrypt_fail);
  ASSERT_NE(r.detail, nullptr);
  EXPECT_STREQ(r.detail, "ICV verified");
  EXPECT_EQ(w.receiver.counters().packets_not_decrypted, 1u);

  // Wrong integrity key: ICV fails, with both values for the report.
  auto wrong_auth = cfg.clone();
  wrong_auth.auth_key = filters::SecretBytes(key_of(20, 3));
  Pair a(wrong_auth);
  r = a.receive(wire);
  EXPECT_EQ(r.reason, Reason::icv_mismatch);
  EXPECT_EQ(r.icv.len, 12);
  EXPECT_TRUE(r.icv.expected_known);
  EXPECT_NE(r.icv.expected, r.icv.received);
  EXPECT_EQ(a.receiver.counters().packets_not_authenticated, 1u);
}

TEST(Engine, TruncatedAndShortPacketsAreMalformed) {
  auto cfg =
      make_sa(IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::transport, "192.0.2.1", "192.0.2.2");
  Pair p(cfg);
  auto wire =
      p.protect(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(53, 5353, std::vector<std::uint8_t>(40, 7))));
  for (std::size_t cut : {std::size_t{22}, std::size_t{27}, std::size_t{40}, wire.size() - 1}) {
    auto shortened = std::vector<std::uint8_t>(wire.begin(), wire.begin() + static_cast<long>(cut));
    auto r = p.receive(shortened);
    EXPECT_EQ(r.verdict, Verdict::malformed) << cut << " " << ipsec::reason_description(r.reason);
  }
  // A consistent but too short ESP packet (IP length fixed up).
  auto tiny = test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("00004242 00000001 0102030405060708"));
  EXPECT_EQ(p.receive(tiny).reason, Reason::esp_too_short);
}

TEST(Engine, SequenceNumberNeverWraps) {
  auto cfg =
      make_sa(IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::transport, "192.0.2.1", "192.0.2.2");
  cfg.initial_seq = 0xfffffffe;
  Pair p(cfg);
  auto clear = test::ipv4("192.0.2.1", "192.0.2.2", 1, test::icmp_echo(1, 1, 8, false));
  auto r = p.sender.outbound(p.tx.at(0), clear);
  ASSERT_EQ(r.status, ipsec::OutboundStatus::ok);
  EXPECT_EQ(r.seq, 0xffffffffu);
  r = p.sender.outbound(p.tx.at(0), clear);
  EXPECT_EQ(r.status, ipsec::OutboundStatus::seq_exhausted);
}

TEST(Engine, EsnCarriesOnPastTwoToTheThirtyTwo) {
  auto cfg = make_sa(IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1",
                     "192.0.2.2", true);
  cfg.initial_seq = 0xfffffff0;
  Pair p(cfg);
  auto clear = test::ipv4("192.0.2.1", "192.0.2.2", 1, test::icmp_echo(1, 1, 8, false));
  for (int i = 0; i < 40; ++i) {
    auto r = p.receive(p.protect(clear));
    ASSERT_EQ(r.verdict, Verdict::ok) << i;
    EXPECT_EQ(r.seq, 0xfffffff0ull + 1 + static_cast<unsigned>(i));
  }
}

// ---------------------------------------------------------------- AH

TEST(Engine, AhRoundTripEveryIntegrityAlgorithm) {
  for (Integrity i : {Integrity::hmac_md5_96, Integrity::hmac_sha1_96, Integrity::hmac_sha256_128,
                      Integrity::hmac_sha384_192, Integrity::hmac_sha512_256, Integrity::aes_xcbc_96}) {
    for (SaMode mode : {SaMode::transport, SaMode::tunnel}) {
      for (const auto& t : {kTopologies[0], kTopologies[1]}) {
        SCOPED_TRACE(std::string(filters::integrity_info(i).name) + " " + filters::to_string(mode) + " " + t.outer_src);
        Pair p(make_sa(IpsecProtocol::ah, Cipher::null, i, mode, t.outer_src, t.outer_dst));
        auto clear = clear_packet(t, 64, 1);
        auto wire = p.protect(clear);
        auto r = p.receive(wire);
        ASSERT_EQ(r.verdict, Verdict::ok) << ipsec::reason_description(r.reason);
        auto got = mode == SaMode::tunnel ? r.payload : r.rebuilt;
        EXPECT_EQ(std::vector<std::uint8_t>(got.begin(), got.end()), clear);
        EXPECT_EQ(p.pkt.ipsec.ah_header_len % (t.inner_v6 ? 8u : 4u), 0u);
        auto bad = wire;
        bad.back() ^= 1;
        Pair fresh(make_sa(IpsecProtocol::ah, Cipher::null, i, mode, t.outer_src, t.outer_dst));
        EXPECT_EQ(fresh.receive(bad).verdict, Verdict::icv_fail);
      }
    }
  }
}

std::vector<std::uint8_t> with_ipv4_change(std::vector<std::uint8_t> p, std::size_t off, std::uint8_t x) {
  p[off] ^= x;
  dissect::ipv4_set_checksum(p.data(), static_cast<std::size_t>(p[0] & 0x0f) * 4);
  return p;
}

/// Protects `clear` once with a sender of its own.
std::vector<std::uint8_t> protect_once(const filters::SaConfig& cfg, const std::vector<std::uint8_t>& clear) {
  Pair p(cfg);
  return p.protect(clear);
}

/// Verifies `wire` at a receiver that has seen nothing yet, so that variants
/// of one packet are not replays of each other.
Verdict verify_fresh(const filters::SaConfig& cfg, const std::vector<std::uint8_t>& wire) {
  Pair p(cfg);
  return p.receive(wire).verdict;
}

TEST(Engine, AhIpv4MutableFieldsAndOptions) {
  // Options: Router Alert (148, immutable), Record Route (7, mutable), NOP, EOL.
  const auto options = hex("94040000 07070400000000 01");
  ASSERT_EQ(options.size() % 4, 0u);
  auto cfg =
      make_sa(IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha1_96, SaMode::transport, "192.0.2.1", "192.0.2.2");
  cfg.src.reset();  // so that a changed source address reaches the ICV check
  auto clear = test::ipv4("192.0.2.1", "192.0.2.2", 1, test::icmp_echo(3, 4, 20, false), options, 0x10, 64);
  const auto wire = protect_once(cfg, clear);
  auto verify = [&](const std::vector<std::uint8_t>& w) { return verify_fresh(cfg, w); };
  EXPECT_EQ(verify(wire), Verdict::ok);
  // Mutable in transit: TOS, TTL, flags/offset, checksum, record-route data.
  EXPECT_EQ(verify(with_ipv4_change(wire, 1, 0xfc)), Verdict::ok);   // DSCP/ECN
  EXPECT_EQ(verify(with_ipv4_change(wire, 8, 0x0f)), Verdict::ok);   // TTL
  EXPECT_EQ(verify(with_ipv4_change(wire, 6, 0x40)), Verdict::ok);   // DF
  EXPECT_EQ(verify(with_ipv4_change(wire, 27, 0xff)), Verdict::ok);  // record route data
  // Immutable: identification, addresses, the router-alert value, payload.
  EXPECT_EQ(verify(with_ipv4_change(wire, 4, 0x01)), Verdict::icv_fail);
  EXPECT_EQ(verify(with_ipv4_change(wire, 15, 0x01)), Verdict::icv_fail);
  EXPECT_EQ(verify(with_ipv4_change(wire, 22, 0x01)), Verdict::icv_fail);
  EXPECT_EQ(verify(with_ipv4_change(wire, wire.size() - 1, 0x01)), Verdict::icv_fail);
}

TEST(Engine, AhIpv4LooseSourceRouteUsesTheFinalDestination) {
  // Sent to the first hop 192.0.2.50 with a loose source route whose last
  // (and only) address is the final destination 192.0.2.2, the SA's.
  const auto options = hex("01 83 07 04 c0000202");
  auto cfg =
      make_sa(IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1", "192.0.2.2");
  auto clear = test::ipv4("192.0.2.1", "192.0.2.50", 1, test::icmp_echo(5, 6, 12, false), options);
  const auto wire = protect_once(cfg, clear);
  EXPECT_EQ(verify_fresh(cfg, wire), Verdict::ok);  // captured before the first hop
  // As delivered: the destination is final, the route recorded the hop.
  auto delivered = wire;
  std::memcpy(delivered.data() + 16, test::addr("192.0.2.2").data(), 4);
  std::memcpy(delivered.data() + 24, test::addr("192.0.2.50").data(), 4);
  delivered[23] = 8;  // pointer past the route: exhausted
  dissect::ipv4_set_checksum(delivered.data(), 28);
  EXPECT_EQ(verify_fresh(cfg, delivered), Verdict::ok);
  // Another final destination has no SA; the same one with changed payload fails.
  auto elsewhere = wire;
  elsewhere[27] ^= 1;
  dissect::ipv4_set_checksum(elsewhere.data(), 28);
  EXPECT_EQ(verify_fresh(cfg, elsewhere), Verdict::unknown_spi);
  auto tampered = wire;
  tampered.back() ^= 1;
  EXPECT_EQ(verify_fresh(cfg, tampered), Verdict::icv_fail);
}

TEST(Engine, AhIpv6ExtensionHeaders) {
  // Hop-by-hop with a mutable option (type 0x3e: bit 0x20 set) and a
  // destination-options header with an immutable option (type 0x1e).
  const auto hbh = hex("3c00 3e04 01020304");  // next: dest opts (60)
  const auto dst = hex("3300 1e04 05060708");  // next: AH (51)
  auto cfg = make_sa(IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128, SaMode::transport, "2001:db8::1",
                     "2001:db8::2");
  cfg.src.reset();  // so that a changed source address reaches the ICV check
  auto ext = hbh;
  ext.insert(ext.end(), dst.begin(), dst.end());
  // Built with an upper layer and the IPsec code inserting AH after the chain.
  auto clear_ext = ext;
  clear_ext[8] = 58;  // the destination options header points at ICMPv6 before AH is added
  auto clear = test::ipv6("2001:db8::1", "2001:db8::2", 0, clear_ext, test::icmp_echo(9, 9, 16, true));
  const auto wire = protect_once(cfg, clear);
  auto verify = [&](const std::vector<std::uint8_t>& w) { return verify_fresh(cfg, w); };
  ASSERT_EQ(verify(wire), Verdict::ok);
  auto change = [&](std::size_t off) {
    auto w = wire;
    w[off] ^= 0x11;
    return verify(w);
  };
  EXPECT_EQ(change(1), Verdict::ok);             // traffic class / flow label
  EXPECT_EQ(change(3), Verdict::ok);             // flow label
  EXPECT_EQ(change(7), Verdict::ok);             // hop limit
  EXPECT_EQ(change(40 + 4), Verdict::ok);        // mutable hop-by-hop option data
  EXPECT_EQ(change(8), Verdict::icv_fail);       // source address
  EXPECT_EQ(change(48 + 4), Verdict::icv_fail);  // immutable destination option data
  EXPECT_EQ(change(wire.size() - 1), Verdict::icv_fail);
}

TEST(Engine, AhIpv6RoutingHeaderVerifiesAtEveryHop) {
  // A type 0 routing header with three addresses: the source sends to the
  // first hop with segments left 3; each hop swaps in the next address. The
  // ICV must verify wherever the packet is captured (RFC 4302 3.3.3.1.2.2).
  const char* hops[] = {"2001:db8::a", "2001:db8::b", "2001:db8::c", "2001:db8::d"};
  std::vector<std::uint8_t> rh = {58, 6, 0, 3, 0, 0, 0, 0};
  for (int i = 1; i <= 3; ++i) {
    auto a = test::addr(hops[i]);
    rh.insert(rh.end(), a.data(), a.data() + 16);
  }
  auto clear = test::ipv6("2001:db8::1", hops[0], 43, rh, test::icmp_echo(1, 2, 8, true));
  auto cfg = make_sa(IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha1_96, SaMode::transport, "2001:db8::1",
                     "2001:db8::d");
  cfg.dst.reset();  // the destination changes on the way
  auto wire = protect_once(cfg, clear);
  for (int hop = 0; hop <= 3; ++hop) {
    SCOPED_TRACE(hop);
    EXPECT_EQ(verify_fresh(cfg, wire), Verdict::ok);
    if (hop == 3) break;
    // RFC 8200 section 4.4 processing at the current destination.
    std::uint8_t* h = wire.data();
    std::uint8_t* r = h + 40;
    std::size_t n = r[1] / 2;
    std::size_t left = r[3];
    std::size_t i = n - left;
    std::uint8_t tmp[16];
    std::memcpy(tmp, h + 24, 16);
    std::memcpy(h + 24, r + 8 + i * 16, 16);
    std::memcpy(r + 8 + i * 16, tmp, 16);
    r[3] = static_cast<std::uint8_t>(left - 1);
    h[7] = static_cast<std::uint8_t>(h[7] - 1);
  }
}

TEST(Engine, CountersUseIpSecurityMonitorMeanings) {
  auto cfg = make_sa(IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::tunnel, "192.0.2.1", "192.0.2.2");
  Pair p(cfg);
  auto clear = test::ipv4("198.51.100.1", "198.51.100.2", 1, test::icmp_echo(1, 1, 56, false));
  auto w1 = p.protect(clear);
  auto w2 = p.protect(clear);
  p.receive(w1);
  p.receive(w2);
  p.receive(w2);  // replay
  auto bad = w1;
  bad.back() ^= 1;
  auto w3 = p.protect(clear);
  w3.back() ^= 1;
  p.receive(w3);  // tag mismatch
  const auto& g = p.receiver.counters();
  EXPECT_EQ(g.received.packets, 2u);
  EXPECT_EQ(g.received.confidential_bytes, w1.size() + w2.size());
  EXPECT_EQ(g.received.authenticated_bytes, w1.size() + w2.size());
  EXPECT_EQ(g.received.tunnel_bytes, w1.size() + w2.size());
  EXPECT_EQ(g.received.transport_bytes, 0u);
  EXPECT_EQ(g.packets_with_replay_detection, 1u);
  EXPECT_EQ(g.packets_not_authenticated, 1u);
  EXPECT_EQ(p.rx.at(0).counters.verdicts[0], 2u);
  EXPECT_EQ(p.sender.counters().sent.packets, 3u);
}

}  // namespace
}  // namespace ipsentry
