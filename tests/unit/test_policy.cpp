// What may pass unprotected (exemptions), what may arrive on an SA (RFC 4301
// section 5.2), dummy packets (RFC 4303 section 2.6) and the seeds' gateway
// tunnel written as two one-way rules: the SPD, the kernel rules and the
// enforcement pipeline without the kernel.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/exemption_counters.hpp"
#include "ipsentry/enforce/rules.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/ipsec6.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "test_support.hpp"

namespace {

using namespace ipsentry;
using enforce::Decision;
using enforce::Hook;
using enforce::Outcome;
using enforce::State;
using enforce::Worker;
using filters::Sense;
using test::addr;
namespace fs = std::filesystem;

constexpr const char* kKeyAB = "00112233445566778899aabbccddeeff01020304";
constexpr const char* kKeyBA = "ffeeddccbbaa99887766554433221100a1a2a3a4";

// Host A (192.0.2.1) and host B (192.0.2.2): everything between them ESP,
// cleartext refused ("Secure Server"). `head` goes before policies:.
std::string host_config(const char* me, const char* peer, const char* spi_out, const char* key_out, const char* spi_in,
                        const char* key_in, const std::string& head = "", const std::string& selector = "") {
  return fmt::format(R"(interfaces: {{ local: [{0}] }}
{2}policies:
  - name: host
    from: me
    to: {1}
{3}    mirrored: true
    action: protect
    inbound: require
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out, in]
)",
                     me, peer, head, selector) +
         test::esp_sa_pair(me, peer, spi_out, key_out, spi_in, key_in);
}

// The seeds' gateways (002): NetA 192.0.2.0/25 behind gw1 198.51.100.1,
// NetB 203.0.113.0/24 behind gw2 198.51.100.2. `literal`: the tunnel as the
// seed writes it, two one-way rules, the second naming this gateway itself
// as the tunnel endpoint; otherwise one mirrored rule.
std::string gateway_config(const char* me, const char* peer, const char* net_me, const char* net_peer,
                           const char* spi_out, const char* key_out, const char* spi_in, const char* key_in,
                           bool literal) {
  const std::string rules = literal ? fmt::format(R"(  - name: {2}-to-{3}
    from: {2}
    to: {3}
    action: protect
    ipsec: {{ protocol: esp, mode: tunnel, peer: {1} }}
    sas: [out]
  - name: {3}-to-{2}
    from: {3}
    to: {2}
    action: protect
    ipsec: {{ protocol: esp, mode: tunnel, peer: {0} }}
    sas: [in]
)",
                                                  me, peer, net_me, net_peer)
                                    : fmt::format(R"(  - name: {2}-{3}
    from: {2}
    to: {3}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: tunnel, peer: {1} }}
    sas: [out, in]
)",
                                                  me, peer, net_me, net_peer);
  return "policies:\n" + rules + test::esp_sa_pair(me, peer, spi_out, key_out, spi_in, key_in, "", "tunnel");
}

const std::string kGw1Literal = gateway_config("198.51.100.1", "198.51.100.2", "192.0.2.0/25", "203.0.113.0/24",
                                               "0x2001", kKeyAB, "0x2002", kKeyBA, true);
const std::string kGw2Mirrored = gateway_config("198.51.100.2", "198.51.100.1", "203.0.113.0/24", "192.0.2.0/25",
                                                "0x2002", kKeyBA, "0x2001", kKeyAB, false);

State make_state(const std::string& yaml, std::vector<const char*> me) {
  filters::LocalAddresses local;
  for (const char* a : me) local.addresses.push_back(addr(a));
  return State(filters::parse_config(yaml, "t.yaml", "."), std::move(local));
}

std::string config_error(const std::string& yaml, std::vector<const char*> me) {
  try {
    (void)make_state(yaml, std::move(me));
  } catch (const filters::ConfigError& e) {
    return e.what();
  }
  return "";
}

std::vector<std::uint8_t> udp4(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport) {
  return test::ipv4(src, dst, 17, test::udp(sport, dport, test::ascii("payload")));
}

filters::PacketSelector selector(const std::vector<std::uint8_t>& packet) {
  dissect::Packet p;
  dissect::dissect_ip(packet, p);
  return filters::selector_of(p);
}

// Neighbor solicitation (type 135) with the given hop limit.
std::vector<std::uint8_t> nd6(const char* src, const char* dst, std::uint8_t hop_limit) {
  std::vector<std::uint8_t> ns(24, 0);
  ns[0] = 135;
  return test::ipv6(src, dst, 58, {}, ns, hop_limit);
}

// A peer that protects whatever it is given with the SA `name` of its
// configuration, whatever its policy says: an authentic sender.
class Sender {
 public:
  Sender(const std::string& yaml, const char* name)
      : sad_(filters::parse_config(yaml, "peer.yaml", ".").sas), sa_(*sad_.find(name)) {}
  std::vector<std::uint8_t> protect(const std::vector<std::uint8_t>& packet) {
    const ipsec::OutboundResult r = engine_.outbound(sa_, packet);
    EXPECT_EQ(r.status, ipsec::OutboundStatus::ok);
    return {r.packet.begin(), r.packet.end()};
  }

 private:
  ipsec::Sad sad_;
  ipsec::SecurityAssociation& sa_;
  ipsec::Engine engine_;
};

// ------------------------------------------------------------------ exemptions

TEST(Exemptions, DefaultsAreIkeToOurPortsAndNeighborDiscoveryOnly) {
  const std::string yaml = host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA);
  filters::Config cfg = filters::parse_config(yaml, "t.yaml", ".");
  EXPECT_EQ(cfg.exemptions, filters::ExemptionSet::defaults());
  filters::Spd spd(cfg, filters::LocalAddresses{{addr("192.0.2.1")}, {addr("192.0.2.255")}});
  // The Windows 2000 bypass: source port 88, 500 or 4500 proves nothing.
  for (std::uint16_t sport : {88, 500, 4500}) {
    const auto* e = spd.lookup(selector(udp4("192.0.2.2", "192.0.2.1", sport, 6000)), Sense::inbound);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->name, "host (mirrored)") << "source port " << sport;
  }
  // IKE to this host's IKE ports passes, from any source port (NAT).
  for (std::uint16_t dport : {500, 4500}) {
    const auto* e = spd.lookup(selector(udp4("192.0.2.2", "192.0.2.1", 31234, dport)), Sense::inbound);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->exemption);
    EXPECT_EQ(e->exemption_tag(), "ike-in");
  }
  // ... but not to somebody else's (a gateway forwarding it).
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "192.0.2.9", 500, 500)), Sense::inbound), nullptr);
  // Kerberos, multicast, broadcast and RSVP are opt-in now.
  const auto kdc = udp4("192.0.2.1", "192.0.2.2", 40000, 88);
  EXPECT_EQ(spd.lookup(selector(kdc), Sense::outbound)->name, "host");
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "224.0.0.5", 1, 2)), Sense::inbound), nullptr);
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "192.0.2.255", 1, 2)), Sense::inbound), nullptr);
  // Outbound IKE is exempt only from root's sockets, which only the kernel
  // rule can see: user space judges the packet by the policy.
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.1", "192.0.2.2", 4500, 4500)), Sense::outbound)->name, "host");
  // Neighbor Discovery: only from the link (hop limit 255) and to us or link scope.
  filters::Spd spd6(cfg, filters::LocalAddresses{{addr("2001:db8::1")}, {}});
  const auto* nd = spd6.lookup(selector(nd6("fe80::2", "ff02::1:ff00:1", 255)), Sense::inbound);
  ASSERT_NE(nd, nullptr);
  EXPECT_EQ(nd->exemption_tag(), "neighbor-discovery-in");
  EXPECT_NE(spd6.lookup(selector(nd6("2001:db8::2", "2001:db8::1", 255)), Sense::inbound), nullptr);
  EXPECT_EQ(spd6.lookup(selector(nd6("2001:db8:9::2", "2001:db8::1", 254)), Sense::inbound), nullptr)
      << "a routed packet cannot carry hop limit 255";
  EXPECT_EQ(spd6.lookup(selector(nd6("2001:db8::2", "2001:db8:5::7", 255)), Sense::inbound), nullptr)
      << "not addressed to this host";
  EXPECT_NE(spd6.lookup(selector(nd6("::", "ff02::1:ff00:1", 255)), Sense::outbound), nullptr) << "DAD";
  // Nothing is exempted for forwarded traffic.
  EXPECT_EQ(spd6.lookup(selector(nd6("fe80::2", "ff02::1", 255)), Sense::outbound, /*forwarded=*/true), nullptr);
}

TEST(Exemptions, OptInListAndItsErrors) {
  const std::string yaml = host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA,
                                       "exemptions: [ike, kerberos, multicast, broadcast, rsvp]\n");
  filters::Config cfg = filters::parse_config(yaml, "t.yaml", ".");
  EXPECT_TRUE(cfg.exemptions.has(filters::Exemption::kerberos));
  EXPECT_FALSE(cfg.exemptions.has(filters::Exemption::neighbor_discovery)) << "the list is complete";
  filters::Spd spd(cfg, filters::LocalAddresses{{addr("192.0.2.1")}, {addr("192.0.2.255")}});
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "192.0.2.1", 88, 6000)), Sense::inbound)->exemption_tag(),
            "kerberos-in");
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "192.0.2.9", 88, 6000)), Sense::inbound), nullptr)
      << "even Kerberos is exempt only to this host";
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "224.0.0.5", 1, 2)), Sense::inbound)->exemption_tag(),
            "multicast-in");
  EXPECT_EQ(spd.lookup(selector(udp4("192.0.2.2", "192.0.2.255", 1, 2)), Sense::inbound)->exemption_tag(),
            "broadcast-in");
  EXPECT_EQ(spd.lookup(selector(test::ipv4("192.0.2.2", "192.0.2.1", 46, test::ascii("rsvp"))), Sense::inbound)
                ->exemption_tag(),
            "rsvp-in");
  EXPECT_NE(spd.describe().find("Exemptions: ike, kerberos, rsvp, multicast, broadcast"), std::string::npos)
      << spd.describe();
  EXPECT_NE(spd.describe_exemptions().find("kerberos in: udp any port 88 -> me"), std::string::npos)
      << spd.describe_exemptions();

  auto error = [](const std::string& head) {
    try {
      (void)filters::parse_config(head + "policies: []\n", "x.yaml", ".");
    } catch (const filters::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(
      error("exemptions:\n  - ike\n  - kerberoz\n").find("x.yaml:3: exemptions[1]: 'kerberoz' is not an exemption"),
      std::string::npos)
      << error("exemptions:\n  - ike\n  - kerberoz\n");
  EXPECT_NE(error("exemptions: [ike, ike]\n").find("listed twice"), std::string::npos);
  EXPECT_NE(error("exemptions: ike\n").find("exemptions must be a list"), std::string::npos);
  EXPECT_NE(error("default_exemptions: true\nexemptions: [ike]\n").find("x.yaml:1: default_exemptions: give either"),
            std::string::npos);
  EXPECT_TRUE(filters::parse_config("default_exemptions: false\n", "x.yaml", ".").exemptions.empty());
  EXPECT_TRUE(filters::parse_config("exemptions: []\n", "x.yaml", ".").exemptions.empty());
}

TEST(Exemptions, KernelRulesAreTheHostsOwnAndCounted) {
  const std::string yaml = host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA);
  filters::Config cfg = filters::parse_config(yaml, "t.yaml", ".");
  filters::Spd spd(cfg, filters::LocalAddresses{{addr("192.0.2.1")}, {}});
  const std::string v4 = enforce::render_rules(spd, 4, {}, true);
  const std::string v6 = enforce::render_rules(spd, 6, {}, true);
  EXPECT_NE(v4.find("-A IPSENTRY-IN -m addrtype --dst-type LOCAL -p 17 --dport 500 -m comment --comment "
                    "ipsentry-exempt:ike-in -j RETURN"),
            std::string::npos)
      << v4;
  EXPECT_NE(v4.find("-A IPSENTRY-OUT -m addrtype --src-type LOCAL -p 17 --sport 4500 -m owner --uid-owner 0 -m "
                    "comment --comment ipsentry-exempt:ike-out -j RETURN"),
            std::string::npos)
      << v4;
  EXPECT_NE(v6.find("--icmpv6-type 135 -m hl --hl-eq 255 -m comment --comment ipsentry-exempt:neighbor-discovery-in"),
            std::string::npos)
      << v6;
  for (const std::string& r : {v4, v6}) {
    EXPECT_EQ(r.find("--sport 88"), std::string::npos);
    for (std::size_t at = r.find("-A IPSENTRY-FWD"); at != std::string::npos; at = r.find("-A IPSENTRY-FWD", at + 1)) {
      EXPECT_EQ(r.substr(at, r.find('\n', at) - at).find("exempt"), std::string::npos) << "forwarded traffic";
    }
  }
  std::vector<enforce::ExemptionCount> counts;
  enforce::add_exemption_counters(
      "*raw\n[7:420] -A IPSENTRY-IN -p udp -m udp --dport 500 -m addrtype --dst-type LOCAL -m comment --comment "
      "ipsentry-exempt:ike-in -j RETURN\n[3:180] -A IPSENTRY-IN -p udp -m udp --dport 4500 -m comment --comment "
      "\"ipsentry-exempt:ike-in\" -j RETURN\n[9:9] -A IPSENTRY-IN -p esp -j RETURN\nCOMMIT\n",
      counts);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].tag, "ike-in");
  EXPECT_EQ(counts[0].packets, 10u);
}

TEST(Exemptions, EnforcementCountsWhatItExempts) {
  State b = make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), {"192.0.2.2"});
  Worker w;
  // IKE on 4500 (the non-ESP marker, RFC 3948) is queued with the ESP
  // sharing the port: user space exempts it.
  std::vector<std::uint8_t> ike_msg(32, 0);
  ike_msg[20] = 0x22;  // an IKEv2 header after the marker
  const auto ike4500 = [&](std::uint16_t dport) {
    return test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(4500, dport, ike_msg));
  };
  const Decision ike = w.process(b, Hook::prerouting, ike4500(4500), 0, 1, 1);
  EXPECT_TRUE(ike.accept);
  EXPECT_EQ(ike.outcome, Outcome::exempted);
  const Decision spoof = w.process(b, Hook::prerouting, ike4500(6000), 0, 1, 1);
  EXPECT_FALSE(spoof.accept);
  EXPECT_EQ(spoof.outcome, Outcome::cleartext_dropped);
  const auto& c = w.counters();
  EXPECT_EQ(c.exempted[2 * static_cast<std::size_t>(filters::Exemption::ike)], 1u);
  EXPECT_EQ(c.by_outcome[static_cast<std::size_t>(Outcome::exempted)], 1u);
  // A forwarded packet with hop limit 255 and an ND type is not exempted.
  State gw = make_state(R"(policies:
  - { name: all, from: 2001:db8:1::/48, to: 2001:db8:2::/48, action: block }
)",
                        {"2001:db8::1"});
  EXPECT_EQ(w.process(gw, Hook::forward, nd6("2001:db8:1::5", "2001:db8:2::5", 255), 1500, 1, 1).outcome,
            Outcome::blocked);
}

// ------------------------------------------------------ RFC 4301 section 5.2

TEST(InboundSelectors, TunnelPacketsOutsideTheSasSelectorsAreDropped) {
  State gw1 = make_state(kGw1Literal, {"198.51.100.1", "192.0.2.1"});
  Worker w;
  std::vector<std::string> events;
  w.set_events([&](enforce::EventKind k, const std::string& t) {
    if (k == enforce::EventKind::policy_mismatch) events.push_back(t);
  });
  Sender gw2(kGw2Mirrored, "out");
  auto arrive = [&](const char* inner_src, const char* inner_dst) {
    return w.process(gw1, Hook::prerouting, gw2.protect(udp4(inner_src, inner_dst, 40000, 6000)), 0, 1, 1);
  };
  const Decision good = arrive("203.0.113.10", "192.0.2.10");
  EXPECT_TRUE(good.accept);
  EXPECT_EQ(good.outcome, Outcome::decapsulated);
  EXPECT_EQ(arrive("198.51.100.77", "192.0.2.10").outcome, Outcome::policy_mismatch) << "source outside NetB";
  EXPECT_EQ(arrive("203.0.113.10", "198.51.100.1").outcome, Outcome::policy_mismatch) << "the gateway itself";
  EXPECT_EQ(arrive("203.0.113.10", "192.0.2.200").outcome, Outcome::policy_mismatch) << "outside NetA (/25)";
  EXPECT_EQ(w.counters().by_outcome[static_cast<std::size_t>(Outcome::policy_mismatch)], 3u);
  // The hosts' own IPsec through the tunnel is theirs: forwarded, not opened.
  for (std::uint16_t sport : {4500, 40000}) {
    const auto esp_in_udp = test::ipv4("203.0.113.10", "192.0.2.10", 17,
                                       test::udp(sport, 4500, test::ascii("\x01\x02\x03\x04 ESP of the hosts")));
    const Decision d = w.process(gw1, Hook::prerouting, gw2.protect(esp_in_udp), 0, 1, 1);
    EXPECT_EQ(d.outcome, Outcome::decapsulated) << sport;
    EXPECT_EQ(std::vector<std::uint8_t>(d.replacement.begin(), d.replacement.end()), esp_in_udp);
  }
  const auto esp = test::ipv4("203.0.113.10", "192.0.2.10", 50, test::ascii("\x00\x00\x10\x01\x00\x00\x00\x01xxxx"));
  EXPECT_EQ(w.process(gw1, Hook::prerouting, gw2.protect(esp), 0, 1, 1).outcome, Outcome::decapsulated);
  ASSERT_FALSE(events.empty());
  EXPECT_NE(events[0].find("198.51.100.77 -> 192.0.2.10 protocol 17 port 40000 -> 6000 arrived on SA in (tunnel "
                           "198.51.100.2 -> 198.51.100.1)"),
            std::string::npos)
      << events[0];
}

TEST(InboundSelectors, TransportPacketsMustMatchTheirPolicysProtocolAndPorts) {
  const std::string only_6000 = "    protocol: udp\n    to_port: 6000\n";
  State b = make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB, "", only_6000),
                       {"192.0.2.2"});
  Sender a(host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA), "out");
  Worker w;
  // B's mirrored entry selects UDP from A's port 6000: what A sends from it.
  EXPECT_EQ(w.process(b, Hook::prerouting, a.protect(udp4("192.0.2.1", "192.0.2.2", 6000, 9)), 0, 1, 1).outcome,
            Outcome::decapsulated);
  EXPECT_EQ(w.process(b, Hook::prerouting, a.protect(udp4("192.0.2.1", "192.0.2.2", 7000, 9)), 0, 1, 2).outcome,
            Outcome::policy_mismatch);
  const auto tcp = test::ipv4("192.0.2.1", "192.0.2.2", 6, std::vector<std::uint8_t>(20, 0x50));
  EXPECT_EQ(w.process(b, Hook::prerouting, a.protect(tcp), 0, 1, 3).outcome, Outcome::policy_mismatch);
  // An SA without a mode is used in its transport policy's: IP in IP on it
  // is delivered as the IP-in-IP packet, never unwrapped as a tunnel.
  State all = make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), {"192.0.2.2"});
  const auto ipip = test::ipv4("192.0.2.1", "192.0.2.2", 4, udp4("10.9.9.9", "192.0.2.2", 1, 6000));
  const Decision d = w.process(all, Hook::prerouting, a.protect(ipip), 0, 1, 4);
  EXPECT_EQ(d.outcome, Outcome::decapsulated);
  EXPECT_EQ(std::vector<std::uint8_t>(d.replacement.begin(), d.replacement.end()), ipip);
}

// ------------------------------------------------------- RFC 4303 section 2.6

TEST(DummyPackets, AreVerifiedThenDiscardedSilently) {
  const std::string a = host_config("192.0.2.1", "192.0.2.2", "0x1001", kKeyAB, "0x1002", kKeyBA);
  // Transport mode copies the protocol field into the next header: 59.
  const auto dummy = Sender(a, "out").protect(test::ipv4("192.0.2.1", "192.0.2.2", 59, test::ascii("tfc padding")));
  // Offline verification: a valid packet, reported as a dummy.
  {
    filters::Config cfg =
        filters::parse_config(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), "v.yaml", ".");
    ipsec::Sad sad(std::move(cfg.sas));
    ipsec::Engine engine;
    dissect::Packet p;
    dissect::dissect_ip(dummy, p);
    const ipsec::InboundResult r = engine.inbound(sad, p, 0, /*rebuild=*/true);
    EXPECT_EQ(r.verdict, ipsec::Verdict::ok);
    EXPECT_EQ(r.reason, ipsec::Reason::dummy_packet);
    EXPECT_EQ(r.next_header, 59);
    EXPECT_TRUE(r.rebuilt.empty()) << "nothing to hand on";
  }
  State b = make_state(host_config("192.0.2.2", "192.0.2.1", "0x1002", kKeyBA, "0x1001", kKeyAB), {"192.0.2.2"});
  Worker w;
  std::size_t events = 0;
  w.set_events([&](enforce::EventKind, const std::string&) { ++events; });
  const Decision d = w.process(b, Hook::prerouting, dummy, 0, 1, 1);
  EXPECT_FALSE(d.accept);
  EXPECT_EQ(d.outcome, Outcome::dummy);
  EXPECT_EQ(events, 0u) << "never logged";
  EXPECT_EQ(b.sad().find("in")->replay.top(), 1u) << "its sequence number counts";
  EXPECT_EQ(w.process(b, Hook::prerouting, dummy, 0, 1, 2).outcome, Outcome::ipsec_failed) << "a replay is a replay";
}

// ------------------------------------------- the seeds' gateway tunnel (002)

TEST(GatewayLayout, TheSecondRuleNamingThisGatewayIsTheInboundHalf) {
  State gw1 = make_state(kGw1Literal, {"198.51.100.1"});
  State gw2 = make_state(kGw2Mirrored, {"198.51.100.2"});
  const auto& entries = gw1.spd().entries();
  const auto half = std::find_if(entries.begin(), entries.end(),
                                 [](const auto& e) { return e.name == "203.0.113.0/24-to-192.0.2.0/25"; });
  ASSERT_NE(half, entries.end());
  EXPECT_EQ(half->sense, Sense::inbound);
  EXPECT_NE(gw1.spd().describe().find("endpoint 198.51.100.1 (this gateway"), std::string::npos);
  Worker w1;
  Worker w2;
  // NetA -> NetB leaves gw1 on the first rule and arrives at gw2.
  const auto a_to_b = udp4("192.0.2.10", "203.0.113.10", 40000, 6000);
  const Decision out = w1.process(gw1, Hook::forward, a_to_b, 1500, 1, 1);
  ASSERT_EQ(out.outcome, Outcome::protected_sent);
  const std::vector<std::uint8_t> wire(out.replacement.begin(), out.replacement.end());
  EXPECT_EQ(w2.process(gw2, Hook::prerouting, wire, 0, 1, 1).outcome, Outcome::decapsulated);
  // NetB -> NetA: sent by gw2, accepted by gw1's second rule.
  const Decision back = w2.process(gw2, Hook::forward, udp4("203.0.113.10", "192.0.2.10", 6000, 40000), 1500, 1, 2);
  const std::vector<std::uint8_t> wire2(back.replacement.begin(), back.replacement.end());
  EXPECT_EQ(w1.process(gw1, Hook::prerouting, wire2, 0, 1, 2).outcome, Outcome::decapsulated);
  // Cleartext from NetB to NetA is what the second rule refuses.
  EXPECT_EQ(w1.process(gw1, Hook::prerouting, udp4("203.0.113.10", "192.0.2.10", 88, 6000), 0, 1, 3).outcome,
            Outcome::cleartext_dropped);
  // Not queued as outbound traffic: the first rule alone goes out.
  EXPECT_EQ(w1.process(gw1, Hook::forward, udp4("203.0.113.10", "192.0.2.10", 1, 2), 1500, 1, 4).outcome,
            Outcome::permitted);
}

TEST(GatewayLayout, ErrorsSayHowToWriteIt) {
  // Checked where this gateway's address is not "me": the error explains.
  const std::string elsewhere = config_error(kGw1Literal, {"192.0.2.99"});
  EXPECT_NE(elsewhere.find("lists no outbound esp SA"), std::string::npos) << elsewhere;
  EXPECT_NE(elsewhere.find("inbound half of a gateway tunnel"), std::string::npos) << elsewhere;
  EXPECT_NE(elsewhere.find("set interfaces.local"), std::string::npos) << elsewhere;
  std::string mirrored = kGw1Literal;
  mirrored.insert(mirrored.find("    action: protect\n    ipsec: { protocol: esp, mode: tunnel, peer: 198.51.100.1"),
                  "    mirrored: true\n");
  EXPECT_NE(config_error(mirrored, {"198.51.100.1"}).find("is this host's own address: a mirrored tunnel rule"),
            std::string::npos);
  std::string both = kGw1Literal;
  both.replace(both.find("sas: [in]"), 9, "sas: [in, out]");
  EXPECT_NE(config_error(both, {"198.51.100.1"}).find("SA 'out' is outbound, but this rule is the inbound half"),
            std::string::npos);
}

class Ipsec6Gateway : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ipsentry-gw6-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "Test.key") << "This is a test";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string spd(const char* second_direction, const char* second_gateway) const {
    return fmt::format(
        "Security Policy List\n\nPolicy RemoteIPAddr LocalIPAddr Protocol RemotePort LocalPort IPSecProtocol "
        "IPSecMode RemoteGWIPAddr SABundleIndex Direction Action InterfaceIndex\n____\n"
        "3 - 2001:DB8:B::10 - 2001:DB8:A::10 - * - * - * ESP TUNNEL 2001:DB8::2 NONE OUTBOUND APPLY 0 ;\n"
        "2 - 2001:DB8:B::10 - 2001:DB8:A::10 - * - * - * ESP TUNNEL {} NONE {} APPLY 0 ;\n"
        "1 + * + * + * + * + * NONE NONE * NONE BIDIRECT BYPASS 0 ;\n",
        second_gateway, second_direction);
  }
  const std::string sad_ =
      "Security Association List\n\nSAEntry SPI SADestIPAddr DestIPAddr SrcIPAddr Protocol DestPort SrcPort "
      "AuthAlg KeyFile Direction SecPolicyIndex\n____\n"
      "2 3001 2001:DB8::2 POLICY POLICY POLICY POLICY POLICY HMAC-SHA1 Test.key OUTBOUND 3 ;\n"
      "1 3000 2001:DB8::1 POLICY POLICY POLICY POLICY POLICY HMAC-SHA1 Test.key INBOUND 2 ;\n";
  filters::Ipsec6Import run(const std::string& spd) {
    filters::Ipsec6Options o;
    o.output_dir = dir_;
    o.tunnel_local = addr("2001:db8::1");
    return filters::import_ipsec6_text(spd, "Gw.spd", sad_, "Gw.sad", dir_, o);
  }
  fs::path dir_;
};

TEST_F(Ipsec6Gateway, InboundTunnelRuleEndingAtThisGatewayIsImported) {
  const filters::Ipsec6Import imp = run(spd("INBOUND", "2001:DB8::1"));
  filters::Config cfg = filters::parse_config(imp.yaml, "gw.yaml", dir_);
  ASSERT_EQ(cfg.policies.size(), 3u);
  const auto& half = cfg.policies[1];
  EXPECT_EQ(half.local.str(), "2001:db8:b::10/128") << imp.yaml;
  EXPECT_EQ(half.remote.str(), "2001:db8:a::10/128");
  EXPECT_EQ(half.peer->str(), "2001:db8::1");
  EXPECT_FALSE(half.mirrored);
  ASSERT_EQ(cfg.sas.size(), 2u);
  EXPECT_EQ(cfg.sas[1].src->str(), "2001:db8::2") << "the sending gateway, from the outbound half";
  filters::Spd s(cfg, filters::LocalAddresses::for_config(cfg));
  const auto& entries = s.entries();
  const auto e = std::find_if(entries.begin(), entries.end(), [](const auto& x) { return x.name == "policy-2"; });
  ASSERT_NE(e, entries.end());
  EXPECT_EQ(e->sense, Sense::inbound);
}

TEST_F(Ipsec6Gateway, AnOutboundRuleEndingAtThisGatewaySaysHowToWriteIt) {
  try {
    (void)run(spd("OUTBOUND", "2001:DB8::1"));
    FAIL() << "accepted";
  } catch (const filters::ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Gw.spd:6: RemoteGWIPAddr"), std::string::npos) << m;
    EXPECT_NE(m.find("give it Direction INBOUND"), std::string::npos) << m;
  }
}

}  // namespace
