// A tiny in-memory network for IKEv2 daemons: nodes with addresses, a wire
// that carries their SendActions (optionally through a NAT that maps the
// ports of one node), a fake clock, and a stand-in for the driver that
// keeps what each node installed. Tests drive it message by message or let
// it run; a drop rule loses chosen datagrams.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ike/ikev2.hpp"

namespace ipsentry::test_ikev2 {

using namespace ipsentry::ike::v2;
using ike::Buffer;
using ipsentry::dissect::IpAddr;
using TimeNs = ipsentry::ike::v2::TimeNs;

inline constexpr TimeNs kSec = 1'000'000'000;

inline IpAddr ip(const char* text) { return *IpAddr::parse(text); }

/// Replays exactly: the daemons' nonces, SPIs, IVs and DH values follow the seed.
class SeededRandom : public ike::Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : g_(seed) {}
  void fill(std::span<std::uint8_t> out) override {
    for (auto& b : out) b = static_cast<std::uint8_t>(g_() >> 24);
  }

 private:
  std::mt19937_64 g_;
};

/// One datagram on the wire, as it travels (after NAT on the way out).
struct Wire {
  std::size_t from = 0;
  Endpoint src, dst;
  Buffer data;
  bool marker = false;
  std::size_t seq = 0;  // 0, 1, 2, ... in the order sent
};

struct Node {
  std::string name;
  IpAddr addr;
  std::vector<std::unique_ptr<filters::Config>> configs;  // the daemon's is the last; older ones stay alive
  Options options;
  std::unique_ptr<SeededRandom> random;
  std::unique_ptr<Daemon> daemon;
  // The driver's view.
  std::map<std::uint64_t, ChildSa> children;  // installed, with their keys
  std::set<std::uint64_t> outbound;           // children whose outbound SA is in place
  std::set<std::uint64_t> inbound;
  std::vector<EventAction> events;
  std::vector<AcquireDoneAction> acquires;
  std::vector<RemoveAction> removes;
  std::vector<SoftAssociationAction> soft;
  std::vector<UpdatePeerAction> updates;
  std::vector<KeysAction> keys;
  std::vector<std::string> log;  // "install 3 replaces 1", "remove 1 inbound", "send"
  bool marker_mismatch = false;

  [[nodiscard]] Snapshot snap(TimeNs now) const { return daemon->snapshot(now); }
  [[nodiscard]] std::size_t count(EventKind k) const {
    return static_cast<std::size_t>(
        std::count_if(events.begin(), events.end(), [&](const EventAction& e) { return e.kind == k; }));
  }
  [[nodiscard]] std::string event_text(EventKind k) const {
    std::string s;
    for (const auto& e : events) {
      if (e.kind == k) s += e.text + "\n";
    }
    return s;
  }
  /// The outbound SAs in place for a policy.
  [[nodiscard]] std::vector<const ChildSa*> active(std::size_t policy) const {
    std::vector<const ChildSa*> r;
    for (auto id : outbound) {
      const auto& c = children.at(id);
      if (c.policy == policy) r.push_back(&c);
    }
    return r;
  }
};

class Net {
 public:
  TimeNs now = 1000 * kSec;
  std::vector<std::unique_ptr<Node>> nodes;
  std::deque<Wire> wire;
  std::vector<Wire> sent;  // everything ever put on the wire
  /// Returns true to lose a datagram.
  std::function<bool(const Wire&)> drop;
  /// After each action batch of a node (invariant checks).
  std::function<void(Node&)> after_actions;
  std::size_t seq = 0;
  std::vector<std::string> log;  // every node's installs and removes, in order: "A: install 3 replaces 1"

  // A NAT in front of one node: its datagrams leave from `public_addr`
  // with port `port_base + original port`.
  std::optional<std::size_t> natted;
  IpAddr nat_public;
  std::uint16_t nat_port_base = 30000;

  Node& add(const std::string& name, const char* addr, const std::string& yaml, Options options = {},
            std::uint64_t seed = 1) {
    auto n = std::make_unique<Node>();
    n->name = name;
    n->addr = ip(addr);
    n->random = std::make_unique<SeededRandom>(seed);
    options.random = n->random.get();
    n->options = options;
    nodes.push_back(std::move(n));
    restart(*nodes.back(), yaml);
    return *nodes.back();
  }

  /// A fresh daemon for a node (a restart): nothing of the old one stays.
  void restart(Node& n, const std::string& yaml) {
    n.configs.push_back(std::make_unique<filters::Config>(filters::parse_config(yaml, n.name + ".yaml", ".")));
    n.daemon = std::make_unique<Daemon>(*n.configs.back(), local_of(n), n.options);
    n.children.clear();
    n.outbound.clear();
    n.inbound.clear();
  }

  /// SIGHUP with a new configuration.
  void reconfigure(Node& n, const std::string& yaml) {
    n.configs.push_back(std::make_unique<filters::Config>(filters::parse_config(yaml, n.name + ".yaml", ".")));
    Actions out;
    n.daemon->reconfigure(*n.configs.back(), local_of(n), now, out);
    execute(n, out);
  }

  static filters::LocalAddresses local_of(const Node& n) {
    filters::LocalAddresses local;
    local.addresses = {n.addr};
    return local;
  }

  std::size_t index_of(const Node& n) const {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].get() == &n) return i;
    }
    return SIZE_MAX;
  }

  void execute(Node& n, Actions& actions) {
    for (auto& a : actions) {
      std::visit([&](auto& x) { on(n, x); }, a);
    }
    actions.clear();
    if (after_actions) after_actions(n);
  }

  void acquire(Node& n, std::uint64_t id, std::size_t policy, const char* peer, const char* src, const char* dst) {
    Acquire a;
    a.id = id;
    a.policy = policy;
    a.local = {n.addr, 500};
    a.remote = {ip(peer), 500};
    a.packet_src.start = a.packet_src.end = ip(src);
    a.packet_dst.start = a.packet_dst.end = ip(dst);
    Actions out;
    n.daemon->acquire(a, now, out);
    execute(n, out);
  }

  /// Delivers one datagram; false when the wire is empty.
  bool step() {
    if (wire.empty()) return false;
    Wire w = std::move(wire.front());
    wire.pop_front();
    if (drop && drop(w)) return true;
    deliver(w);
    return true;
  }

  void deliver(const Wire& w) {
    Endpoint dst = w.dst;
    Node* to = nullptr;
    if (natted && w.dst.addr == nat_public) {
      to = nodes[*natted].get();
      dst = {to->addr, static_cast<std::uint16_t>(w.dst.port - nat_port_base)};
    } else {
      for (auto& n : nodes) {
        if (n->addr == w.dst.addr) to = n.get();
      }
    }
    if (to == nullptr) return;
    // The driver strips the marker on 4500; without one there it is ESP.
    if (w.marker != (dst.port == 4500)) to->marker_mismatch = true;
    Datagram d{dst, w.src, w.data};
    Actions out;
    to->daemon->receive(d, now, out);
    execute(*to, out);
  }

  void deliver_all(std::size_t limit = 10000) {
    while (limit-- > 0 && step()) {
    }
  }

  [[nodiscard]] TimeNs next_deadline() const {
    TimeNs d = INT64_MAX;
    for (const auto& n : nodes) d = std::min(d, n->daemon->next_deadline());
    return d;
  }

  void tick_all() {
    for (auto& n : nodes) {
      Actions out;
      n->daemon->tick(now, out);
      execute(*n, out);
    }
  }

  /// Runs the network for `duration`: datagrams arrive at once, timers fire.
  void run(TimeNs duration) {
    const TimeNs until = now + duration;
    for (int guard = 0; guard < 1'000'000; ++guard) {
      deliver_all();
      const TimeNs next = next_deadline();
      if (next > until) break;
      now = std::max(now, next);
      tick_all();
    }
    deliver_all();
    now = until;
  }

 private:
  void on(Node& n, SendAction& s) {
    Wire w;
    w.from = index_of(n);
    w.src = s.local;
    w.dst = s.remote;
    w.data = std::move(s.data);
    w.marker = s.non_esp_marker;
    w.seq = seq++;
    if (natted && *natted == w.from) {
      w.src = {nat_public, static_cast<std::uint16_t>(nat_port_base + s.local.port)};
    }
    n.log.push_back("send");
    sent.push_back(w);
    wire.push_back(std::move(w));
  }
  void on(Node& n, InstallAction& i) {
    const auto id = i.sa.child;
    n.log.push_back("install " + std::to_string(id) +
                    (i.sa.replaces ? " replaces " + std::to_string(*i.sa.replaces) : std::string()));
    log.push_back(n.name + ": " + n.log.back());
    if (i.sa.replaces) n.outbound.erase(*i.sa.replaces);
    n.outbound.insert(id);
    n.inbound.insert(id);
    n.children.emplace(id, std::move(i.sa));
  }
  void on(Node& n, RemoveAction& r) {
    n.log.push_back("remove " + std::to_string(r.child) + (r.inbound_only ? " inbound" : ""));
    log.push_back(n.name + ": " + n.log.back());
    n.removes.push_back(r);
    n.inbound.erase(r.child);
    if (!r.inbound_only) n.outbound.erase(r.child);
    if (n.outbound.count(r.child) == 0) n.children.erase(r.child);
  }
  void on(Node& n, UpdatePeerAction& u) { n.updates.push_back(u); }
  void on(Node& n, AcquireDoneAction& a) { n.acquires.push_back(a); }
  void on(Node& n, SoftAssociationAction& s) { n.soft.push_back(s); }
  void on(Node& n, EventAction& e) { n.events.push_back(std::move(e)); }
  void on(Node& n, KeysAction& k) { n.keys.push_back(std::move(k)); }
};

/// Every outbound SA of `a` has an inbound twin at `b` with the same
/// algorithms and keys (and the other way round): KEYMAT agrees.
inline void expect_keys_agree(const Node& a, const Node& b, bool addresses = true) {
  auto check = [&](const Node& x, const Node& y) {
    for (auto id : x.outbound) {
      const auto& out = x.children.at(id).outbound;
      const filters::SaConfig* in = nullptr;
      for (const auto& [cid, c] : y.children) {
        if (y.inbound.count(cid) != 0 && c.inbound.spi == out.spi) in = &c.inbound;
      }
      ASSERT_NE(in, nullptr) << x.name << "'s outbound SPI " << std::hex << *out.spi << " has no inbound SA at "
                             << y.name;
      EXPECT_EQ(in->cipher, out.cipher);
      EXPECT_EQ(in->integrity, out.integrity);
      EXPECT_TRUE(in->enc_key == out.enc_key) << "encryption keys differ for SPI " << std::hex << *out.spi;
      EXPECT_TRUE(in->auth_key == out.auth_key) << "integrity keys differ for SPI " << std::hex << *out.spi;
      EXPECT_EQ(in->mode, out.mode);
      EXPECT_EQ(in->esn, out.esn);
      if (addresses) {
        EXPECT_EQ(in->src, out.src);
        EXPECT_EQ(in->dst, out.dst);
      }
    }
  };
  check(a, b);
  check(b, a);
}

}  // namespace ipsentry::test_ikev2
