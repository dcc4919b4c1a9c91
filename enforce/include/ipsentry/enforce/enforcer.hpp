// The enforcement pipeline: what happens to one packet the kernel queued.
//
//   outbound (OUTPUT, FORWARD): SPD lookup -> permit | block | protect with
//       ipsec::Engine::outbound (ESP, AH, or ESP then AH)
//   inbound (PREROUTING): ESP/AH -> ipsec::Engine::inbound (ICV, replay,
//       decrypt), repeated for nested SAs, then the inner packet must match
//       a policy that lists the SAs it came on; cleartext that a protect
//       policy requires to be protected is dropped
//   negotiate policies (IKE): the newest installed CHILD_SA whose
//       negotiated traffic selectors cover the packet protects it; without
//       one the packet is held for an acquire (IkeChannel) and dropped in the
//       kernel, or passes in the clear where the policy's inbound setting
//       allows (respond; request with a soft association). Inbound packets
//       of a negotiated SA must lie within its negotiated selectors.
//
// State (configuration, SPD, SAD, lifetimes) is shared by the workers and
// replaced as a whole on reload; SAs whose SPI, addresses and keys did not
// change keep their sequence numbers, replay windows and counters. Each
// Worker owns an ipsec::Engine (its scratch buffers) and its counters;
// process() allocates nothing.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "ipsentry/enforce/ike_channel.hpp"
#include "ipsentry/enforce/natt.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::enforce {

/// Netfilter hook numbers as NFQUEUE reports them.
enum class Hook : std::uint8_t { prerouting = 0, input = 1, forward = 2, output = 3, postrouting = 4 };

/// Marks ipsentry sets on packets (a bit each, OR-ed into the packet's mark).
inline constexpr std::uint32_t kMarkDecapsulated = 0x1;  // inner packet of a verified SA
inline constexpr std::uint32_t kMarkOwn = 0x2;           // sent by ipsentry itself (ICMP errors)
inline constexpr std::uint32_t kMarkPassed = 0x4;        // outbound, accepted by ipsentry (protected or permitted)

/// Why a packet was dropped or what was done with it; indexes Counters::by_reason.
enum class Outcome : std::uint8_t {
  permitted,          // no policy or a permit policy
  exempted,           // an exemption (IKE, Neighbor Discovery, ...) let it pass without a policy
  protected_sent,     // protected and sent
  decapsulated,       // verified inbound IPsec, inner packet accepted
  cleartext_allowed,  // cleartext a request/respond policy accepts
  blocked,            // a block policy
  cleartext_dropped,  // cleartext a require policy says must be protected
  ipsec_failed,       // inbound IPsec that did not verify (see the verdict counters)
  policy_mismatch,    // verified, but the inner packet does not belong on that SA
  dummy,              // verified ESP dummy packet (next header 59): discarded silently
  sa_expired,         // hard lifetime reached
  seq_exhausted,      // the sequence number would wrap
  seq_unrecorded,     // sequence number above what the state file records (writing it did not finish in time)
  too_big,            // would exceed the path MTU; ICMP sent to the source
  not_ip,             // not an IPv4/IPv6 packet, or malformed
  protect_failed,     // the transform failed (unsupported algorithm, OpenSSL error)
  nat_keepalive,      // a NAT keepalive on UDP 4500 (RFC 3948 section 2.3): counted and discarded
  negotiating,        // negotiate policy, no SA yet: held (copied) for the negotiation and dropped in the kernel
  negotiation_full,   // negotiate policy, no SA yet, and no room to hold it: dropped
  count_
};
inline constexpr std::size_t kOutcomeCount = static_cast<std::size_t>(Outcome::count_);
/// The name of an outcome in the statistics (JSON key of "packets").
[[nodiscard]] const char* outcome_key(Outcome o) noexcept;

struct Counters {
  std::array<std::uint64_t, kOutcomeCount> by_outcome{};
  /// Packets user space let pass by an exemption (IKE on UDP 4500 is queued
  /// with the ESP sharing its port), by exemption_index().
  std::array<std::uint64_t, 2 * filters::kExemptionCount> exempted{};
  std::uint64_t icmp_sent = 0;
  Counters& operator+=(const Counters& o) noexcept {
    for (std::size_t i = 0; i < by_outcome.size(); ++i) by_outcome[i] += o.by_outcome[i];
    for (std::size_t i = 0; i < exempted.size(); ++i) exempted[i] += o.exempted[i];
    icmp_sent += o.icmp_sent;
    return *this;
  }
};
/// Where an exemption entry is counted in Counters::exempted.
[[nodiscard]] inline std::size_t exemption_index(const filters::SpdEntry& e) noexcept {
  return 2 * static_cast<std::size_t>(e.exemption_kind) + (e.sense == filters::Sense::inbound ? 0 : 1);
}

/// A traffic selector as IKE negotiated it (RFC 7296 section 3.13.1): an
/// address range, an IP protocol (0: any) and a port range.
struct TsRange {
  std::uint8_t protocol = 0;
  std::uint16_t port_lo = 0;
  std::uint16_t port_hi = 65535;
  dissect::IpAddr start;
  dissect::IpAddr end;
  /// Whether an address, protocol and port (ICMP: the type, as RFC 4301
  /// section 4.4.1.1 puts it in the port fields) lie within it.
  [[nodiscard]] bool covers(const dissect::IpAddr& a, std::uint8_t proto, bool has_port,
                            std::uint16_t port) const noexcept;
  [[nodiscard]] std::string str() const;
};

/// A CHILD_SA the IKE daemon negotiated, as the driver installs it.
struct ChildInstall {
  std::uint64_t id = 0;
  std::uint64_t ike_sa = 0;
  std::size_t policy = 0;  // index in config().policies
  std::string policy_name;
  dissect::IpAddr peer;  // the peer's IKE address (its NAT's, behind one)
  std::uint16_t peer_port = 500;
  filters::SaConfig inbound;
  filters::SaConfig outbound;
  std::vector<TsRange> local_ts;
  std::vector<TsRange> remote_ts;
  std::optional<std::uint64_t> replaces;  // the child this one rekeys
  /// A rekey responder's child: its outbound SA is installed but not used,
  /// and the outbound SA of `replaces` stays in use, until activate_outbound().
  bool outbound_deferred = false;
};

/// An installed negotiated CHILD_SA. Its SAs live in the State's SAD, after
/// every configured SA.
struct NegotiatedChild {
  std::uint64_t id = 0;
  std::uint64_t ike_sa = 0;
  std::size_t policy = 0;
  std::string policy_name;
  dissect::IpAddr peer;
  std::uint16_t peer_port = 500;
  std::vector<TsRange> local_ts;
  std::vector<TsRange> remote_ts;
  ipsec::SecurityAssociation* inbound = nullptr;   // nullptr once removed
  ipsec::SecurityAssociation* outbound = nullptr;  // nullptr once a rekey replaced it, or removed
  std::uint64_t order = 0;                         // installation order: the newest protects
  bool outbound_active = true;                     // false: a deferred outbound SA (ChildInstall), not used yet
  /// Whether a packet from `src` to `dst` may travel on it (local_ts covers
  /// our side, remote_ts the peer's), seen in the outbound sense.
  [[nodiscard]] bool carries(const filters::PacketSelector& p, bool outbound_sense) const noexcept;
};

/// Per-SA lifetime bookkeeping beside the SAD entry.
struct SaLife {
  std::chrono::steady_clock::time_point installed;
  std::atomic<bool> soft_reported{false};
  std::atomic<bool> hard_expired{false};
  std::atomic<bool> exhausted_reported{false};
  NatMapping nat;                    // outbound ESP in UDP: the peers' NAT-mapped ports
  NegotiatedChild* child = nullptr;  // the negotiated child this SA belongs to (nullptr: configured)
};

/// Events worth a log line (never with key material).
enum class EventKind : std::uint8_t {
  sa_installed,
  sa_kept,
  sa_removed,
  soft_expiry,
  hard_expiry,
  seq_exhausted,
  icv_failure,
  replay,
  unknown_spi,
  decrypt_failure,
  cleartext_dropped,
  policy_mismatch,
  too_big,
  warning,          // a configuration or key-memory warning
  rules_restored,   // someone changed our iptables rules; they were put back
  socket_restored,  // someone removed the statistics socket; it was bound again
  nat_mapping,
  ike,  // the IKE daemon: negotiations, rekeys, deletes, DPD, soft associations
  count_
};
inline constexpr std::size_t kEventKindCount = static_cast<std::size_t>(EventKind::count_);
using EventSink = std::function<void(EventKind, const std::string&)>;

class State {
 public:
  /// Compiles `config` (kept inside). Throws filters::ConfigError.
  State(filters::Config config, filters::LocalAddresses local, ipsec::CryptoChoice crypto = ipsec::CryptoChoice::auto_);

  [[nodiscard]] const filters::Config& config() const noexcept { return config_; }
  [[nodiscard]] const filters::Spd& spd() const noexcept { return spd_; }
  [[nodiscard]] ipsec::Sad& sad() noexcept { return sad_; }
  [[nodiscard]] SaLife& life(std::size_t sa_index) noexcept { return *life_[sa_index]; }
  /// Takes over the runtime state of every SA of `old` that is unchanged
  /// (same name, SPI, protocol, addresses, mode, algorithms and keys).
  /// Returns the names of the SAs kept.
  std::vector<std::string> inherit(State& old);
  /// The largest number of bytes protection adds to a packet (outer header,
  /// ESP/AH headers, IV, maximum padding, ICV) over the outbound SAs.
  [[nodiscard]] std::size_t max_overhead(bool ipv6) const noexcept;

  struct EntrySas {
    std::vector<ipsec::SecurityAssociation*> esp_out;
    std::vector<ipsec::SecurityAssociation*> ah_out;
    std::vector<const ipsec::SecurityAssociation*> inbound;  // the SAs the policy accepts
  };
  /// The SAs of an entry of spd().
  [[nodiscard]] const EntrySas& entry_sas(const filters::SpdEntry& e) const noexcept {
    return entry_sas_[static_cast<std::size_t>(&e - spd_.entries().data())];
  }
  /// The outbound ESP-in-UDP SAs whose peer mapping an inbound SA's
  /// packets show: the same peer address, or a policy using both when an
  /// address is left open.
  [[nodiscard]] std::span<const std::size_t> nat_learners(std::size_t inbound_sa) const noexcept {
    if (inbound_sa >= nat_learners_.size()) return {};
    return nat_learners_[inbound_sa];
  }
  /// "Client (respond only)": peers that sent protected traffic on a policy.
  bool respond_peer_known(std::size_t policy, const dissect::IpAddr& peer);
  void respond_peer_add(std::size_t policy, const dissect::IpAddr& peer);

  // ---- negotiated SAs (IKE). The driver changes them only while it holds
  // the state lock exclusively, so workers (which hold it shared) never see
  // a change half made.

  /// The SAs made from the configuration: indices [0, configured_count());
  /// negotiated SAs follow them.
  [[nodiscard]] std::size_t configured_count() const noexcept { return configured_; }
  /// Whether a policy negotiates its SAs (the IKE driver runs).
  [[nodiscard]] bool has_negotiate() const noexcept { return negotiate_; }
  /// Installs a negotiated child (a rekey replaces the outbound SA of the
  /// child it names at once, unless the new one is deferred; the old
  /// inbound SA stays until removed).
  /// Throws std::invalid_argument when the policy or an SA is unusable.
  NegotiatedChild& install_child(ChildInstall c);
  /// A deferred outbound SA is used from now on; the outbound SA of
  /// `replaces` is removed. Returns the number of SAs removed.
  std::size_t activate_outbound(std::uint64_t id, std::optional<std::uint64_t> replaces);
  /// Removes a child's SAs (`inbound_only`: its outbound SA is gone
  /// already). Falls back to the SPIs when the id is unknown. Returns the
  /// number of SAs removed.
  std::size_t remove_child(std::uint64_t id, std::uint32_t inbound_spi, std::uint32_t outbound_spi, bool inbound_only);
  /// The peer of an IKE SA moved (its NAT mapping changed): its children's
  /// ESP goes to `peer`:`port`.
  void update_peer(std::uint64_t ike_sa, const dissect::IpAddr& peer, std::uint16_t port);
  /// The newest child of `policy` whose selectors cover an outbound packet.
  [[nodiscard]] NegotiatedChild* child_for(std::size_t policy, const filters::PacketSelector& p) noexcept;
  [[nodiscard]] NegotiatedChild* find_child(std::uint64_t id) noexcept;
  [[nodiscard]] const std::vector<std::unique_ptr<NegotiatedChild>>& children() const noexcept { return children_; }
  /// Takes over the negotiated children of `old` (a reload) whose policy is
  /// still a negotiate policy of the same name, with their sequence
  /// numbers, replay windows, counters and NAT mappings. Returns, for each
  /// policy index of `old`, its index here (nullopt: gone).
  std::vector<std::optional<std::size_t>> adopt_children(State& old);

 private:
  void pair_nat_sas();
  std::size_t add_runtime_sa(filters::SaConfig c, NegotiatedChild* child);
  /// Removes the outbound SA of child `old_id` now that `fresh` sends (its
  /// NAT mapping carries over). Returns the number of SAs removed.
  std::size_t retire_outbound(NegotiatedChild& fresh, std::uint64_t old_id);
  void remove_sa(std::size_t index);

  filters::Config config_;
  filters::Spd spd_;
  ipsec::Sad sad_;
  std::vector<std::unique_ptr<SaLife>> life_;
  std::vector<EntrySas> entry_sas_;
  std::vector<std::vector<std::size_t>> nat_learners_;
  std::mutex respond_mu_;
  std::vector<std::vector<dissect::IpAddr>> respond_peers_;
  std::size_t configured_ = 0;
  bool negotiate_ = false;
  std::vector<std::unique_ptr<NegotiatedChild>> children_;
  std::uint64_t next_order_ = 1;
};

struct Decision {
  bool accept = false;
  dissect::Bytes replacement;  // non-empty: the packet's new bytes
  std::uint32_t set_mark = 0;  // bits to OR into the mark
  Outcome outcome = Outcome::permitted;
};

/// Sends ICMP "fragmentation needed" / "packet too big" to a packet's source.
using IcmpSender = std::function<bool(const dissect::Packet& offending, std::uint32_t mtu, std::uint32_t ifindex)>;

class Worker {
 public:
  Worker();

  /// Decides about one queued packet. `ip` starts at the IP header;
  /// `mtu` is the MTU of the device it leaves by (0: unknown).
  Decision process(State& state, Hook hook, dissect::Bytes ip, std::uint32_t mtu, std::uint32_t ifindex,
                   std::int64_t now_ns) noexcept;

  void set_events(EventSink sink) { events_ = std::move(sink); }
  void set_icmp_sender(IcmpSender sender) { icmp_ = std::move(sender); }
  /// Where packets of negotiate policies without an SA, and lifetimes of
  /// negotiated SAs, go (nullptr: negotiate policies drop what they cannot protect).
  void set_ike(IkeChannel* channel) noexcept { ike_ = channel; }
  /// Keeps the SAs' sequence-number ceilings ahead of use (the state file).
  void set_seq_recorder(ipsec::SeqRecorder* recorder) noexcept { engine_.set_recorder(recorder); }

  /// Counters, read under the worker's lock (process() runs under it too
  /// when the caller takes it).
  [[nodiscard]] std::mutex& lock() noexcept { return mu_; }
  [[nodiscard]] const Counters& counters() const noexcept { return counters_; }
  [[nodiscard]] const ipsec::GlobalCounters& ipsec_counters() noexcept { return engine_.counters(); }

 private:
  Decision outbound(State& state, const dissect::Packet& p, Hook hook, std::uint32_t mtu, std::uint32_t ifindex,
                    std::int64_t now_ns) noexcept;
  Decision negotiate_out(State& state, const filters::SpdEntry& e, const dissect::Packet& p,
                         const filters::PacketSelector& sel, Hook hook, std::uint32_t mtu, std::uint32_t ifindex,
                         std::int64_t now_ns) noexcept;
  Decision protect(State& state, const dissect::Packet& p, const filters::PacketSelector& sel,
                   ipsec::SecurityAssociation* esp, ipsec::SecurityAssociation* ah, const dissect::IpAddr& target,
                   std::uint32_t mtu, std::uint32_t ifindex, std::int64_t now_ns) noexcept;
  Decision inbound(State& state, const dissect::Packet& p, std::int64_t now_ns) noexcept;
  void learn_nat_mapping(State& state, ipsec::SecurityAssociation& sa, std::uint64_t seq,
                         const dissect::Packet& outer) noexcept;
  bool usable(State& state, ipsec::SecurityAssociation& sa, bool sending) noexcept;
  template <class MakeText>
  void event(EventKind kind, MakeText&& make) noexcept {
    if (!events_) return;
    RateLimit& rl = limits_[static_cast<std::size_t>(kind)];
    const std::int64_t now =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    if (!rl.allow(now)) return;
    try {
      std::string text = make();
      if (rl.suppressed != 0) {
        text += " (" + std::to_string(rl.suppressed) + " more like it were not logged)";
        rl.suppressed = 0;
      }
      events_(kind, text);
    } catch (...) {
      // Logging must never take packet processing down with it.
    }
  }
  struct RateLimit {
    static constexpr std::uint32_t kBurst = 5;
    std::int64_t window_start_ns = 0;
    std::uint32_t used = 0;
    std::uint64_t suppressed = 0;
    bool allow(std::int64_t now_ns) noexcept;
  };
  Decision done(Outcome o, bool accept) noexcept;
  Decision exempt(const filters::SpdEntry& e) noexcept;

  ipsec::Engine engine_;
  std::mutex mu_;
  Counters counters_;
  std::vector<std::uint8_t> stage_;  // ESP result before AH is added
  EventSink events_;
  std::array<RateLimit, kEventKindCount> limits_{};
  IcmpSender icmp_;
  IkeChannel* ike_ = nullptr;
};

}  // namespace ipsentry::enforce
