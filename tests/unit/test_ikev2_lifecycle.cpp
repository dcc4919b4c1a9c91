// The IKEv2 daemon over time: CHILD_SA rekeying with and without PFS and
// the order of installs and removals (never without an outbound SA, the
// old inbound SA kept until the Delete), collisions, IKE SA rekeying, DPD,
// deletes from either side, peers that restart, NAT traversal and port
// floating, reconfiguration and shutdown.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "ikev2_configs.hpp"
#include "ikev2_net.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/ike/crypto_testing.hpp"
#include "ipsentry/ike/message.hpp"

namespace {

using namespace ipsentry;
using namespace ipsentry::test_ikev2;
namespace xt = ipsentry::dissect::ike::xt;
using R = AcquireDoneAction::Result;

struct Pair {
  Net net;
  Node* a = nullptr;
  Node* b = nullptr;
  Cfg ca, cb;
  bool outbound_gap = false;  // a moment when a node that had a child had no outbound SA
};

std::unique_ptr<Pair> up(Cfg ca, Cfg cb, Options oa = {}, Options ob = {}) {
  auto p = std::make_unique<Pair>();
  p->ca = ca;
  p->cb = cb;
  p->a = &p->net.add("A", ca.me.c_str(), ca.yaml(), oa, 11);
  p->b = &p->net.add("B", cb.me.c_str(), cb.yaml(), ob, 22);
  p->net.acquire(*p->a, 1, 0, cb.me.c_str(), "192.0.2.10", "192.0.2.200");
  p->net.run(5 * kSec);
  Pair* raw = p.get();
  p->net.after_actions = [raw](Node& n) {
    if (n.active(0).empty()) raw->outbound_gap = true;
  };
  return p;
}

std::size_t ike_count(const Node& n, TimeNs now) { return n.snap(now).ike_sas.size(); }

void soft_expire(Net& net, Node& n) {
  ASSERT_FALSE(n.outbound.empty());
  Actions out;
  n.daemon->expired(*n.outbound.begin(), false, net.now, out);
  net.execute(n, out);
}

// ---- CHILD_SA rekeying -------------------------------------------------------------------

void rekey_child_over_time(const std::string& pfs) {
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.extra = b.extra = "lifetime: { ike: 8h, child: 20s }" + (pfs.empty() ? "" : "\n    pfs: " + pfs);
  auto p = up(a, b);
  ASSERT_EQ(p->a->outbound.size(), 1u);
  const std::uint64_t first = *p->a->outbound.begin();
  p->net.run(65 * kSec);
  // 20 s lifetimes rekeyed 10-20 % early: at least three rekeys in 65 s.
  const auto sa = p->a->snap(p->net.now);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_GE(sa.counters.rekeys, 3u);
  EXPECT_EQ(sa.counters.rekeys, sb.counters.rekeys);
  EXPECT_EQ(sa.counters.child_sas_established, sb.counters.child_sas_established);
  EXPECT_FALSE(p->outbound_gap) << "a moment without an outbound SA";
  // One pair left at each end, the old SAs all removed, keys agreeing.
  ASSERT_EQ(sa.ike_sas.size(), 1u);
  EXPECT_EQ(sa.ike_sas[0].children.size(), 1u);
  EXPECT_EQ(sb.ike_sas[0].children.size(), 1u);
  EXPECT_EQ(p->a->outbound.size(), 1u);
  EXPECT_EQ(p->a->inbound.size(), 1u);
  EXPECT_EQ(p->b->inbound.size(), 1u);
  EXPECT_NE(*p->a->outbound.begin(), first);
  expect_keys_agree(*p->a, *p->b);
  const std::string algs = sa.ike_sas[0].children[0].algorithms;
  if (pfs.empty()) {
    EXPECT_EQ(algs.find("pfs"), std::string::npos) << algs;
  } else {
    EXPECT_NE(algs.find("pfs " + pfs), std::string::npos) << algs;
  }
  // Every old child: its outbound replaced by the install of its successor,
  // its inbound removed afterwards, and only then.
  for (const auto* n : {p->a, p->b}) {
    for (std::size_t i = 0; i < n->log.size(); ++i) {
      const std::string& e = n->log[i];
      if (e.rfind("remove ", 0) != 0) continue;
      EXPECT_NE(e.find(" inbound"), std::string::npos) << n->name << ": " << e;
      const std::string id = e.substr(7, e.find(' ', 7) - 7);
      bool replaced_before = false;
      for (std::size_t j = 0; j < i; ++j) {
        if (n->log[j].find("replaces " + id) != std::string::npos) replaced_before = true;
      }
      EXPECT_TRUE(replaced_before) << n->name << ": " << e;
    }
  }
  // The rekey initiator removes its old inbound SA only once the peer
  // answered its Delete, i.e. after the peer removed its own.
  std::size_t deletes_seen = 0;
  for (std::size_t i = 0; i < p->net.log.size(); ++i) {
    if (p->net.log[i].find("remove") != std::string::npos) ++deletes_seen;
  }
  EXPECT_EQ(deletes_seen % 2, 0u);
  EXPECT_EQ(p->a->count(EventKind::child_rekeyed) + p->b->count(EventKind::child_rekeyed), 2 * sa.counters.rekeys);
}

TEST(Ikev2Lifecycle, ChildRekeyWithoutPfs) { rekey_child_over_time(""); }
TEST(Ikev2Lifecycle, ChildRekeyWithPfs) { rekey_child_over_time("ecp256"); }
TEST(Ikev2Lifecycle, ChildRekeyWithPfsCurve25519) { rekey_child_over_time("curve25519"); }

TEST(Ikev2Lifecycle, OldInboundStaysUntilTheDelete) {
  auto p = up(tunnel_a(), tunnel_b());
  const std::uint64_t old_a = *p->a->outbound.begin();
  soft_expire(p->net, *p->a);
  p->net.step();  // B answers the rekey: new pair installed before its answer leaves
  ASSERT_EQ(p->b->inbound.size(), 2u);
  ASSERT_EQ(p->b->outbound.size(), 1u);
  p->net.step();  // A installs, replaces its outbound SA, sends the Delete
  EXPECT_EQ(p->a->inbound.size(), 2u);
  EXPECT_EQ(p->a->outbound.size(), 1u);
  EXPECT_EQ(p->a->outbound.count(old_a), 0u);
  EXPECT_EQ(p->a->inbound.count(old_a), 1u);  // still accepted: B may send on it
  p->net.step();                              // B takes the Delete, removes its old pair, answers
  EXPECT_EQ(p->b->inbound.size(), 1u);
  EXPECT_EQ(p->a->inbound.count(old_a), 1u);
  p->net.step();  // A removes its old inbound SA
  EXPECT_EQ(p->a->inbound.count(old_a), 0u);
  EXPECT_FALSE(p->outbound_gap);
  expect_keys_agree(*p->a, *p->b);
}

/// The SPIs `x` sends on that `y` has no inbound SA for: a packet sent on
/// one of them now is dropped by `y` as an unknown SPI.
std::vector<std::uint32_t> spis_unknown_to_peer(const Node& x, const Node& y) {
  std::vector<std::uint32_t> r;
  for (auto id : x.outbound) {
    const std::uint32_t spi = *x.children.at(id).outbound.spi;
    const bool known = std::any_of(y.inbound.begin(), y.inbound.end(),
                                   [&](std::uint64_t c) { return *y.children.at(c).inbound.spi == spi; });
    if (!known) r.push_back(spi);
  }
  return r;
}

/// After every action batch of either end: each outbound SA in place has
/// its inbound twin at the peer already, and no end is without one.
struct NoUnknownSpi {
  std::vector<std::string> failures;
  void watch(Net& net, Node& a, Node& b) {
    net.after_actions = [this, &net, &a, &b](Node&) {
      for (auto [x, y] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
        if (x->active(0).empty()) failures.push_back(x->name + " has no outbound SA");
        for (auto spi : spis_unknown_to_peer(*x, *y)) {
          failures.push_back(fmt::format("{} sends on SPI {:08x}, which {} has not installed (t={} s)", x->name, spi,
                                         y->name, net.now / kSec));
        }
      }
    };
  }
};

TEST(Ikev2Lifecycle, RekeyResponderKeepsItsOutboundUntilTheDelete) {
  // strongSwan's delayed outbound SA of a rekey responder: B answers A's
  // rekey with the new inbound SA installed, but sends on the old SA until
  // A, which installs the new pair only when the answer arrives, deletes
  // the old one. Switching at the answer lost B's first packets on the new
  // SPI (unknown to A for a round trip).
  auto p = up(tunnel_a(), tunnel_b());
  NoUnknownSpi watch;
  watch.watch(p->net, *p->a, *p->b);
  const std::uint64_t old_b = *p->b->outbound.begin();
  const std::uint32_t old_b_spi = *p->b->children.at(old_b).outbound.spi;
  soft_expire(p->net, *p->a);
  p->net.step();  // B answers: the new inbound SA is in place, the outbound one waits
  ASSERT_EQ(p->b->inbound.size(), 2u);
  ASSERT_EQ(p->b->outbound.size(), 1u);
  EXPECT_EQ(*p->b->outbound.begin(), old_b) << "B switched before A has the new SA";
  p->net.step();  // A installs the new pair, sends on it, and sends the Delete of the old one
  ASSERT_EQ(p->a->outbound.size(), 1u);
  EXPECT_EQ(p->b->outbound.count(old_b), 1u) << "B switched before the Delete";
  EXPECT_EQ(p->b->snap(p->net.now).ike_sas.at(0).children.size(), 2u);
  p->net.step();  // B takes the Delete: now it sends on the new SA and removes the old pair
  ASSERT_EQ(p->b->outbound.size(), 1u);
  const std::uint32_t new_b_spi = *p->b->children.at(*p->b->outbound.begin()).outbound.spi;
  EXPECT_NE(new_b_spi, old_b_spi);
  EXPECT_EQ(p->b->inbound.count(old_b), 0u);
  EXPECT_TRUE(spis_unknown_to_peer(*p->b, *p->a).empty());
  p->net.step();  // A removes its old inbound SA
  EXPECT_EQ(p->a->inbound.size(), 1u);
  EXPECT_EQ(p->b->inbound.size(), 1u);
  expect_keys_agree(*p->a, *p->b);
  for (const auto& f : watch.failures) ADD_FAILURE() << f;
}

TEST(Ikev2Lifecycle, OldInboundGoesAfterTheGraceWhenTheDeleteIsLost) {
  auto p = up(tunnel_a(), tunnel_b());
  const std::uint64_t old_b = *p->b->outbound.begin();
  soft_expire(p->net, *p->a);
  p->net.step();
  p->net.step();
  // A's Delete and all its retransmissions are lost. B, the rekey
  // responder, sends on the old SA meanwhile and switches only after the
  // grace, never without an outbound SA.
  p->net.drop = [](const Wire& w) { return w.from == 0; };
  p->net.run(9 * kSec);
  EXPECT_EQ(p->b->inbound.count(old_b), 1u);
  EXPECT_EQ(p->b->outbound.count(old_b), 1u);
  EXPECT_EQ(p->b->outbound.size(), 1u);
  p->net.run(2 * kSec);
  EXPECT_EQ(p->b->inbound.count(old_b), 0u);  // 10 s grace
  ASSERT_EQ(p->b->outbound.size(), 1u);
  EXPECT_EQ(p->b->outbound.count(old_b), 0u);
  EXPECT_TRUE(spis_unknown_to_peer(*p->b, *p->a).empty());
}

TEST(Ikev2Lifecycle, NoPacketOnAnSpiThePeerHasNotInstalled) {
  // Both ends rekey over time (20 s children, jittered), then collide on
  // purpose with either end losing: at no moment does an end send on an SPI
  // the other has not installed, or lack an outbound SA.
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(seed);
    Cfg ca = tunnel_a();
    Cfg cb = tunnel_b();
    ca.extra = cb.extra = std::string("lifetime: { ike: 8h, child: 20s }") + (seed % 2 == 0 ? "\n    pfs: ecp256" : "");
    Net net;
    Node& a = net.add("A", kA, ca.yaml(), {}, seed);
    Node& b = net.add("B", kB, cb.yaml(), {}, seed * 100);
    net.acquire(a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
    net.run(5 * kSec);
    ASSERT_EQ(a.outbound.size(), 1u);
    NoUnknownSpi watch;
    watch.watch(net, a, b);
    net.run(40 * kSec);
    EXPECT_GE(a.snap(net.now).counters.rekeys, 2u);
    soft_expire(net, a);
    soft_expire(net, b);
    net.run(12 * kSec);
    EXPECT_EQ(a.outbound.size(), 1u);
    EXPECT_EQ(b.outbound.size(), 1u);
    EXPECT_EQ(a.inbound.size(), 1u);
    EXPECT_EQ(b.inbound.size(), 1u);
    expect_keys_agree(a, b);
    for (const auto& f : watch.failures) ADD_FAILURE() << f;
  }
}

/// The nonces of the CREATE_CHILD_SA exchanges on the wire, decrypted with
/// the IKE keys `keys` (A is the original initiator): for each exchange, by
/// its initiator (0: A, 1: B), the lower of its request's and response's.
std::map<std::size_t, Buffer> lowest_nonce_per_exchange(const Net& net, const KeysAction& keys) {
  const ike::SkCipher from_i(keys.suite, keys.sk_ei.bytes(), keys.sk_ai.bytes());
  const ike::SkCipher from_r(keys.suite, keys.sk_er.bytes(), keys.sk_ar.bytes());
  std::map<std::size_t, Buffer> lowest;
  for (const auto& w : net.sent) {
    std::string why;
    const auto h = decode_header(w.data, why);
    if (!h || h->exchange != xt::v2_create_child || h->spi_i != keys.spi_i) continue;
    Message m;
    EXPECT_EQ(decode(w.data, w.from == 0 ? &from_i : &from_r, m, why), DecodeStatus::ok) << why;
    const auto* n = m.find<NoncePayload>(dissect::ike::pt::v2_nonce);
    if (n == nullptr) continue;
    const std::size_t initiator = m.response ? 1 - w.from : w.from;
    auto [it, fresh] = lowest.emplace(initiator, n->data);
    if (!fresh && std::lexicographical_compare(n->data.begin(), n->data.end(), it->second.begin(), it->second.end())) {
      it->second = n->data;
    }
  }
  return lowest;
}

TEST(Ikev2Lifecycle, ChildRekeyCollision) {
  // RFC 7296 2.8.1: of two simultaneous rekeys of one child, the exchange
  // with the lowest of the four nonces made the redundant child, which its
  // initiator deletes. Seeds and PFS vary who that is.
  std::set<std::string> losers;
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(seed);
    Cfg ca = tunnel_a();
    Cfg cb = tunnel_b();
    if (seed % 2 == 0) ca.extra = cb.extra = "pfs: ecp256";
    Options save;
    save.save_keys = true;
    Net net;
    Node& a = net.add("A", kA, ca.yaml(), save, seed);
    Node& b = net.add("B", kB, cb.yaml(), {}, seed * 100);
    net.acquire(a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
    net.run(5 * kSec);
    ASSERT_EQ(a.outbound.size(), 1u);
    // Both ends rekey the same child at the same moment.
    soft_expire(net, a);
    soft_expire(net, b);
    net.run(15 * kSec);
    EXPECT_EQ(a.count(EventKind::child_rekeyed) >= 1, true);
    const std::size_t lost = [&] {
      std::size_t n = 0;
      for (const auto* x : {&a, &b}) {
        for (const auto& e : x->events) n += e.text.find("collision lost") != std::string::npos;
      }
      return n;
    }();
    EXPECT_EQ(lost, 1u);
    ASSERT_EQ(a.keys.size(), 1u);
    const auto lowest = lowest_nonce_per_exchange(net, a.keys[0]);
    ASSERT_EQ(lowest.size(), 2u);
    const bool a_made_the_lowest = std::lexicographical_compare(lowest.at(0).begin(), lowest.at(0).end(),
                                                                lowest.at(1).begin(), lowest.at(1).end());
    const Node& loser = a_made_the_lowest ? a : b;
    EXPECT_NE(loser.event_text(EventKind::child_rekeyed).find("collision lost"), std::string::npos)
        << loser.name << " started the exchange with the lowest nonce";
    losers.insert(loser.name);
    // One pair left, the same at both ends; the redundant and the old ones gone.
    EXPECT_EQ(a.outbound.size(), 1u);
    EXPECT_EQ(b.outbound.size(), 1u);
    EXPECT_EQ(a.inbound.size(), 1u);
    EXPECT_EQ(b.inbound.size(), 1u);
    EXPECT_EQ(a.snap(net.now).ike_sas[0].children.size(), 1u);
    EXPECT_EQ(b.snap(net.now).ike_sas[0].children.size(), 1u);
    expect_keys_agree(a, b);
  }
  EXPECT_EQ(losers.size(), 2u) << "the seeds should let each end lose once";
}

TEST(Ikev2Lifecycle, HardExpiryDeletesAtBothEnds) {
  auto p = up(tunnel_a(), tunnel_b());
  Actions out;
  p->a->daemon->expired(*p->a->outbound.begin(), true, p->net.now, out);
  p->net.execute(*p->a, out);
  EXPECT_TRUE(p->a->outbound.empty());
  p->net.run(2 * kSec);
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_EQ(ike_count(*p->a, p->net.now), 1u);  // the IKE SA stays
  // The next packet negotiates a new child on it.
  p->net.acquire(*p->a, 2, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.run(2 * kSec);
  EXPECT_EQ(p->a->acquires.back().result, R::protect);
  expect_keys_agree(*p->a, *p->b);
}

// ---- IKE SA rekeying ------------------------------------------------------------------------

TEST(Ikev2Lifecycle, IkeSaRekey) {
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.extra = b.extra = "lifetime: { ike: 60s, child: 1h }";
  Options save;
  save.save_keys = true;
  auto p = up(a, b, save, save);
  const auto before = p->a->snap(p->net.now).ike_sas.at(0);
  const std::uint64_t child = *p->a->outbound.begin();
  p->net.run(58 * kSec);
  const auto sa = p->a->snap(p->net.now);
  const auto sb = p->b->snap(p->net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u);
  ASSERT_EQ(sb.ike_sas.size(), 1u);
  EXPECT_NE(sa.ike_sas[0].spi_i, before.spi_i);
  EXPECT_NE(sa.ike_sas[0].id, before.id);
  EXPECT_EQ(sa.ike_sas[0].spi_i, sb.ike_sas[0].spi_i);
  EXPECT_EQ(sa.ike_sas[0].spi_r, sb.ike_sas[0].spi_r);
  EXPECT_EQ(sa.counters.rekeys, 1u);
  EXPECT_EQ(sb.counters.rekeys, 1u);
  // The children moved to the new IKE SA untouched.
  ASSERT_EQ(sa.ike_sas[0].children.size(), 1u);
  EXPECT_EQ(sa.ike_sas[0].children[0].id, child);
  EXPECT_EQ(p->a->removes.size(), 0u);
  EXPECT_EQ(p->a->keys.size(), 2u);
  EXPECT_TRUE(p->a->keys[1].sk_er == p->b->keys[1].sk_er);
  EXPECT_FALSE(p->a->keys[0].sk_er == p->a->keys[1].sk_er);
  EXPECT_EQ(p->a->count(EventKind::ike_rekeyed) + p->b->count(EventKind::ike_rekeyed), 2u);
  EXPECT_EQ(p->a->count(EventKind::ike_deleted) + p->b->count(EventKind::ike_deleted), 0u);
  // The new IKE SA works (its message IDs restarted at 0): rekey the child on it.
  soft_expire(p->net, *p->b);
  p->net.run(2 * kSec);
  EXPECT_EQ(p->b->snap(p->net.now).counters.rekeys, 2u);
  expect_keys_agree(*p->a, *p->b);
}

TEST(Ikev2Lifecycle, IkeSaRekeyCollision) {
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.extra = b.extra = "lifetime: { ike: 60s, child: 1h }";
  auto p = up(a, b);
  // Whoever rekeys first waits on the wire until the other rekeys too.
  std::optional<Wire> held;
  bool released = false;
  p->net.drop = [&](const Wire& w) {
    std::string why;
    auto h = decode_header(w.data, why);
    if (released || !h || h->exchange != xt::v2_create_child || h->response) return false;
    if (!held) {
      held = w;
      return true;
    }
    if (held->from == w.from) return true;  // its retransmissions, held too
    released = true;
    p->net.wire.push_back(*held);
    return false;
  };
  p->net.run(70 * kSec);
  ASSERT_TRUE(released);
  const auto sa = p->a->snap(p->net.now);
  const auto sb = p->b->snap(p->net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u);
  ASSERT_EQ(sb.ike_sas.size(), 1u);
  EXPECT_EQ(sa.ike_sas[0].spi_i, sb.ike_sas[0].spi_i);
  EXPECT_EQ(sa.ike_sas[0].children.size(), 1u);
  EXPECT_EQ(sb.ike_sas[0].children.size(), 1u);
  std::size_t lost = 0;
  for (const auto* x : {p->a, p->b}) {
    for (const auto& e : x->events) lost += e.text.find("collision lost") != std::string::npos;
  }
  EXPECT_EQ(lost, 1u);
  // Still usable: a child rekey over the surviving IKE SA.
  soft_expire(p->net, *p->a);
  p->net.run(2 * kSec);
  expect_keys_agree(*p->a, *p->b);
  EXPECT_EQ(p->a->outbound.size(), 1u);
}

// ---- DPD, deletes, restarts --------------------------------------------------------------------

TEST(Ikev2Lifecycle, DpdRemovesADeadPeer) {
  auto p = up(tunnel_a(), tunnel_b());
  p->net.drop = [](const Wire&) { return true; };  // B is gone
  p->net.run(29 * kSec);
  EXPECT_EQ(ike_count(*p->a, p->net.now), 1u);
  p->net.run(200 * kSec);
  const auto sa = p->a->snap(p->net.now);
  EXPECT_TRUE(sa.ike_sas.empty());
  EXPECT_EQ(sa.counters.dpd_timeouts, 1u);
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_TRUE(p->a->inbound.empty());
  EXPECT_EQ(p->a->count(EventKind::dpd_timeout), 1u);
  // B restarts; A's next packet negotiates afresh.
  p->net.drop = nullptr;
  p->net.restart(*p->b, p->cb.yaml());
  p->net.acquire(*p->a, 2, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.run(5 * kSec);
  EXPECT_EQ(p->a->acquires.back().result, R::protect);
  expect_keys_agree(*p->a, *p->b);
}

TEST(Ikev2Lifecycle, DpdProbesOnlyAfterSilence) {
  auto p = up(tunnel_a(), tunnel_b());
  const std::size_t before = p->net.sent.size();
  p->net.run(24 * kSec);  // up() ran 5 s after the last message: 29 s of silence
  EXPECT_EQ(p->net.sent.size(), before);
  p->net.run(2 * kSec);
  // One empty INFORMATIONAL each way (both ends probe after 30 s), answered.
  ASSERT_GE(p->net.sent.size(), before + 2);
  std::string why;
  EXPECT_EQ(decode_header(p->net.sent[before].data, why)->exchange, xt::v2_informational);
  EXPECT_EQ(ike_count(*p->a, p->net.now), 1u);
  EXPECT_EQ(p->a->snap(p->net.now).counters.dpd_timeouts, 0u);
}

TEST(Ikev2Lifecycle, RestartedPeerWithInitialContactReplacesTheOldSa) {
  auto p = up(tunnel_a(), tunnel_b());
  const std::uint64_t old_child = *p->a->outbound.begin();
  p->net.restart(*p->b, p->cb.yaml());
  p->net.acquire(*p->b, 1, 0, kA, "192.0.2.200", "192.0.2.10");
  p->net.run(5 * kSec);
  const auto sa = p->a->snap(p->net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u);
  EXPECT_FALSE(sa.ike_sas[0].initiator);
  EXPECT_EQ(p->a->outbound.count(old_child), 0u);
  EXPECT_EQ(p->a->outbound.size(), 1u);
  expect_keys_agree(*p->a, *p->b);
}

TEST(Ikev2Lifecycle, ShutdownDeletesEverythingAtThePeer) {
  auto p = up(tunnel_a(), tunnel_b());
  Actions out;
  p->b->daemon->shutdown(p->net.now, out);
  p->net.execute(*p->b, out);
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_TRUE(p->b->snap(p->net.now).ike_sas.empty());
  p->net.run(1 * kSec);
  EXPECT_TRUE(p->a->snap(p->net.now).ike_sas.empty());
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_NE(p->a->event_text(EventKind::ike_deleted).find("deleted by the peer"), std::string::npos);
}

// ---- NAT traversal --------------------------------------------------------------------------------

/// A (192.0.2.200) behind a NAT whose public address is 198.51.100.77, B
/// (203.0.113.2) outside with `b_extra` in its profile; A's first packet
/// starts the negotiation and the network runs for `run`.
std::unique_ptr<Pair> behind_nat(const std::string& b_extra, TimeNs run) {
  Cfg a = make_cfg("192.0.2.200", "203.0.113.2", "192.0.2.0/26", "192.0.2.64/26");
  Cfg b = make_cfg("203.0.113.2", "198.51.100.77", "192.0.2.64/26", "192.0.2.0/26");
  b.extra = b_extra;
  auto p = std::make_unique<Pair>();
  p->net.natted = 0;
  p->net.nat_public = ip("198.51.100.77");
  p->a = &p->net.add("A", a.me.c_str(), a.yaml(), {}, 3);
  p->b = &p->net.add("B", b.me.c_str(), b.yaml(), {}, 4);
  p->net.acquire(*p->a, 1, 0, "203.0.113.2", "192.0.2.10", "192.0.2.70");
  p->net.run(run);
  return p;
}

TEST(Ikev2Lifecycle, NatDetectionFloatAndMappingChange) {
  auto p = behind_nat("", 5 * kSec);
  Net& net = p->net;
  Node& na = *p->a;
  Node& nb = *p->b;
  const auto sa = na.snap(net.now);
  const auto sb = nb.snap(net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u) << na.event_text(EventKind::ike_failed) << nb.event_text(EventKind::auth_failed);
  EXPECT_TRUE(sa.ike_sas[0].nat_local);
  EXPECT_FALSE(sa.ike_sas[0].nat_remote);
  EXPECT_TRUE(sb.ike_sas[0].nat_remote);
  EXPECT_FALSE(sb.ike_sas[0].nat_local);
  EXPECT_EQ(sa.ike_sas[0].local.port, 4500);
  EXPECT_EQ(sa.ike_sas[0].remote.port, 4500);
  EXPECT_EQ(sb.ike_sas[0].remote.port, 30000 + 4500);
  EXPECT_FALSE(na.marker_mismatch);
  EXPECT_FALSE(nb.marker_mismatch);
  // IKE_AUTH went from port 4500 with the non-ESP marker.
  ASSERT_GE(net.sent.size(), 4u);
  EXPECT_EQ(net.sent[2].src.port, 30000 + 4500);
  EXPECT_EQ(net.sent[2].dst.port, 4500);
  EXPECT_TRUE(net.sent[2].marker);
  ASSERT_EQ(na.outbound.size(), 1u);
  const auto& ca = na.children.begin()->second;
  const auto& cb = nb.children.begin()->second;
  ASSERT_TRUE(ca.outbound.encap.has_value());
  ASSERT_TRUE(cb.outbound.encap.has_value());
  EXPECT_EQ(ca.outbound.encap->sport, 4500);
  EXPECT_EQ(ca.outbound.encap->dport, 4500);
  EXPECT_EQ(ca.outbound.encap->keepalive_seconds, 20u);  // keepalives from the side behind the NAT
  EXPECT_EQ(cb.outbound.encap->dport, 34500);
  EXPECT_EQ(cb.outbound.encap->keepalive_seconds, 0u);
  EXPECT_EQ(cb.outbound.dst, ip("198.51.100.77"));
  EXPECT_EQ(cb.peer.port, 34500);
  expect_keys_agree(na, nb, false);

  // A forged datagram from another port moves nothing.
  Wire forged = net.sent[2];
  forged.src.port = 40000;
  forged.data.back() ^= 1;
  net.deliver(forged);
  EXPECT_TRUE(nb.updates.empty());
  // The NAT maps A anew: B follows A's next authenticated message.
  net.nat_port_base = 31000;
  Actions out;
  na.daemon->expired(*na.outbound.begin(), false, net.now, out);
  net.execute(na, out);
  net.run(2 * kSec);
  ASSERT_EQ(nb.updates.size(), 1u);
  EXPECT_EQ(nb.updates[0].peer.port, 35500);
  EXPECT_EQ(nb.updates[0].peer.addr, ip("198.51.100.77"));
  EXPECT_EQ(nb.snap(net.now).ike_sas[0].remote.port, 35500);
  // The rekeyed child already uses the new port.
  EXPECT_EQ(nb.children.at(*nb.outbound.begin()).outbound.encap->dport, 35500);
}

TEST(Ikev2Lifecycle, EspFromANewNatMappingMovesTheIkeSa) {
  // The NAT maps A anew while A sends only ESP: B's data path tells the
  // daemon, and B's next IKE message (here its DPD) goes to the new port.
  auto p = behind_nat("dpd: 5s", 1 * kSec);
  Net& net = p->net;
  Node& nb = *p->b;
  ASSERT_EQ(nb.snap(net.now).ike_sas.size(), 1u);
  ASSERT_EQ(nb.snap(net.now).ike_sas[0].remote.port, 34500);
  const std::uint64_t child = *nb.outbound.begin();
  Actions out;
  // Not the peer's address, or the same port: nothing moves.
  nb.daemon->nat_mapping(child, Endpoint{ip("198.51.100.78"), 35500}, net.now, out);
  nb.daemon->nat_mapping(child, Endpoint{ip("198.51.100.77"), 34500}, net.now, out);
  nb.daemon->nat_mapping(child + 1000, Endpoint{ip("198.51.100.77"), 35500}, net.now, out);
  EXPECT_TRUE(out.empty());
  nb.daemon->nat_mapping(child, Endpoint{ip("198.51.100.77"), 35500}, net.now, out);
  ASSERT_EQ(out.size(), 2u);  // the event and the update
  net.nat_port_base = 31000;
  net.execute(nb, out);
  ASSERT_EQ(nb.updates.size(), 1u);
  EXPECT_EQ(nb.updates[0].peer.port, 35500);
  EXPECT_EQ(nb.snap(net.now).ike_sas[0].remote.port, 35500);
  EXPECT_NE(nb.event_text(EventKind::peer_moved).find("moved from 198.51.100.77:34500 to 198.51.100.77:35500"),
            std::string::npos)
      << nb.event_text(EventKind::peer_moved);
  // B's DPD after A's silence reaches A through the new mapping, and A answers.
  const std::size_t before = net.sent.size();
  net.run(8 * kSec);
  bool dpd_to_new_port = false;
  for (std::size_t i = before; i < net.sent.size(); ++i) {
    if (net.sent[i].dst.addr == ip("198.51.100.77")) dpd_to_new_port |= net.sent[i].dst.port == 35500;
    EXPECT_FALSE(net.sent[i].dst.addr == ip("198.51.100.77") && net.sent[i].dst.port == 34500);
  }
  EXPECT_TRUE(dpd_to_new_port);
  EXPECT_EQ(nb.snap(net.now).ike_sas.size(), 1u);
}

TEST(Ikev2Lifecycle, NoNatNoFloat) {
  auto p = up(tunnel_a(), tunnel_b());
  const auto s = p->a->snap(p->net.now);
  EXPECT_FALSE(s.ike_sas[0].nat_local);
  EXPECT_FALSE(s.ike_sas[0].nat_remote);
  EXPECT_EQ(s.ike_sas[0].local.port, 500);
  for (const auto& w : p->net.sent) EXPECT_FALSE(w.marker);
}

// ---- reconfiguration ---------------------------------------------------------------------------

TEST(Ikev2Lifecycle, ReconfigureKeepsUnchangedAndDeletesChanged) {
  auto p = up(tunnel_a(), tunnel_b());
  const std::size_t before = p->net.sent.size();
  p->net.reconfigure(*p->b, p->cb.yaml());  // the same again
  p->net.run(1 * kSec);
  EXPECT_EQ(p->net.sent.size(), before);
  EXPECT_EQ(ike_count(*p->b, p->net.now), 1u);
  EXPECT_EQ(p->b->outbound.size(), 1u);
  // A changed PSK: B deletes the IKE SA (with a Delete to A).
  Cfg changed = p->cb;
  changed.auth = R"(method: psk, psk: "a new secret for the same peer")";
  p->net.reconfigure(*p->b, changed.yaml());
  p->net.run(2 * kSec);
  EXPECT_EQ(ike_count(*p->b, p->net.now), 0u);
  EXPECT_EQ(ike_count(*p->a, p->net.now), 0u);
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_TRUE(p->b->outbound.empty());
}

TEST(Ikev2Lifecycle, ReconfigureWithTheSameProfileAndAnotherPolicyDeletesTheChild) {
  auto p = up(tunnel_a(), tunnel_b());
  Cfg changed = p->cb;
  changed.from = "192.0.2.192/26";
  p->net.reconfigure(*p->b, changed.yaml());
  p->net.run(2 * kSec);
  EXPECT_EQ(ike_count(*p->b, p->net.now), 1u);  // the profile did not change
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_TRUE(p->a->outbound.empty());
}

// ---- lifetimes ------------------------------------------------------------------------------------

TEST(Ikev2Lifecycle, LifetimesSoftBeforeHardWithJitter) {
  // The child is rekeyed 10-20 % before its 100 s lifetime, at a moment
  // drawn anew for every child (so that two ends rarely rekey at once); the
  // data path gets the hard limits and soft byte/packet limits below them.
  std::set<TimeNs> first_rekeys;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(seed);
    Cfg a = tunnel_a();
    Cfg b = tunnel_b();
    a.extra = b.extra = "lifetime: { ike: 8h, child: 100s, child_bytes: 1G }";
    Net net;
    Node& na = net.add("A", kA, a.yaml(), {}, seed);
    Node& nb = net.add("B", kB, b.yaml(), {}, seed + 1000);
    net.acquire(na, 1, 0, kB, "192.0.2.10", "192.0.2.200");
    net.deliver_all();
    ASSERT_EQ(na.outbound.size(), 1u);
    const TimeNs installed = net.now;
    const auto& sa = na.children.begin()->second.outbound;
    EXPECT_EQ(sa.lifetime.seconds, 100u);
    EXPECT_EQ(sa.lifetime.bytes, std::uint64_t{1} << 30);  // 1G: binary, as the SAD's lifetimes
    EXPECT_GT(sa.lifetime.soft_bytes, 0u);
    EXPECT_LT(sa.lifetime.soft_bytes, sa.lifetime.bytes);
    std::optional<TimeNs> rekeyed;
    net.after_actions = [&](Node&) {
      for (const auto& e : net.log) {
        if (!rekeyed && e.find("replaces") != std::string::npos) rekeyed = net.now - installed;
      }
    };
    net.run(95 * kSec);
    ASSERT_TRUE(rekeyed.has_value());
    EXPECT_GE(*rekeyed, 80 * kSec);
    EXPECT_LE(*rekeyed, 90 * kSec);
    first_rekeys.insert(*rekeyed);
    EXPECT_EQ(na.outbound.size(), 1u);
    EXPECT_EQ(nb.outbound.size(), 1u);
    expect_keys_agree(na, nb);
  }
  EXPECT_GE(first_rekeys.size(), 6u) << "the rekey moment is not jittered";
}

TEST(Ikev2Lifecycle, HardLifetimeEndsAChildThatCouldNotBeRekeyed) {
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.extra = b.extra = "lifetime: { ike: 8h, child: 100s }";
  auto p = up(a, b);
  ASSERT_EQ(p->a->outbound.size(), 1u);
  const TimeNs installed = p->net.now - 5 * kSec;  // up() ran the network for 5 s after the install
  p->net.drop = [](const Wire&) { return true; };  // rekeys go unanswered
  p->net.run(installed + 99 * kSec - p->net.now);
  EXPECT_EQ(p->a->outbound.size(), 1u);
  EXPECT_EQ(p->a->snap(p->net.now).counters.rekeys, 0u);
  p->net.run(2 * kSec);
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_TRUE(p->a->inbound.empty());
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_EQ(ike_count(*p->a, p->net.now), 1u);  // DPD has not given up yet
}

// ---- randomness and key hygiene -------------------------------------------------------------------

TEST(Ikev2Lifecycle, SpisNoncesAndIvsComeFromTheDaemonsRandom) {
  // With the same Options::random the same SPI and nonce go out: nothing
  // random is made anywhere else (the Diffie-Hellman private values come
  // from OpenSSL unless Options::key_exchange says otherwise). Without
  // one the daemon uses system_random() (OpenSSL's CSPRNG): two daemons
  // then differ in every SPI and nonce.
  auto first_init = [](std::optional<std::uint64_t> seed) {
    Net net;
    Options o;
    Node& na = net.add("A", kA, tunnel_a().yaml(), o, seed.value_or(0));
    if (!seed) {
      o.random = nullptr;
      na.options = o;
      net.restart(na, tunnel_a().yaml());
    }
    net.add("B", kB, tunnel_b().yaml(), {}, 7);
    net.acquire(na, 1, 0, kB, "192.0.2.10", "192.0.2.200");
    EXPECT_EQ(net.wire.size(), 1u);
    Message m;
    std::string why;
    EXPECT_EQ(decode(net.wire.front().data, nullptr, m, why), DecodeStatus::ok) << why;
    return m;
  };
  const Message s1 = first_init(5);
  const Message s2 = first_init(5);
  const Message s3 = first_init(6);
  const Message o1 = first_init(std::nullopt);
  const Message o2 = first_init(std::nullopt);
  auto nonce = [](const Message& m) { return m.find<NoncePayload>(dissect::ike::pt::v2_nonce)->data; };
  EXPECT_EQ(s1.spi_i, s2.spi_i);
  EXPECT_EQ(nonce(s1), nonce(s2));
  EXPECT_NE(s1.spi_i, s3.spi_i);
  EXPECT_NE(nonce(s1), nonce(s3));
  EXPECT_NE(o1.spi_i, o2.spi_i);
  EXPECT_NE(nonce(o1), nonce(o2));
  EXPECT_GE(nonce(o1).size(), 32u);  // RFC 7296 2.10: at least half the PRF's key size, 256 bits here
  EXPECT_NE(o1.spi_i, 0u);

  // With the Diffie-Hellman private values drawn from the same Random too,
  // a whole exchange repeats byte for byte, IKE_AUTH's IVs included.
  auto exchange = [](std::uint64_t seed) {
    Options o;
    o.key_exchange = [](filters::DhGroup g, ike::Random& r) {
      ike::Buffer priv(g == filters::DhGroup::ecp384 ? 48 : 32);
      r.fill(priv);
      return ike::testing::key_exchange_with_private(g, priv);
    };
    Net net;
    net.add("A", kA, tunnel_a().yaml(), o, seed);
    net.add("B", kB, tunnel_b().yaml(), o, 7);
    net.acquire(*net.nodes[0], 1, 0, kB, "192.0.2.10", "192.0.2.200");
    net.run(5 * kSec);
    EXPECT_EQ(net.nodes[0]->outbound.size(), 1u);
    std::vector<Buffer> wire;
    for (const auto& w : net.sent) wire.push_back(w.data);
    return wire;
  };
  const auto e1 = exchange(5);
  const auto e2 = exchange(5);
  const auto e3 = exchange(6);
  ASSERT_EQ(e1.size(), 4u);
  EXPECT_EQ(e1, e2);
  ASSERT_EQ(e3.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_NE(e1[i], e3[i]) << i;
}

}  // namespace
