// The IKEv2 protocol (RFC 7296) as enforcement runs it: initiator and
// responder, without I/O.
//
// Every input is a call and every effect is an Action the caller carries
// out, in order (fizz's shape): the driver in enforce/ owns the sockets,
// the clock and the data path; unit tests and the fuzz target call the
// same functions with made-up datagrams and times. Not thread-safe: one
// thread drives a Daemon.
//
// See docs/ike-keying.md for the design: states, message-ID windows,
// retransmission, cookies and the half-open limit, NAT detection, rekeying
// and collisions, DPD, and what `require`, `request` and `respond` do.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/message.hpp"

namespace ipsentry::ike::v2 {

/// Monotonic time in nanoseconds (the driver's steady clock).
using TimeNs = std::int64_t;

struct Endpoint {
  dissect::IpAddr addr;
  std::uint16_t port = 500;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  [[nodiscard]] std::string str() const;  // "192.0.2.1:500", "[2001:db8::1]:4500"
};

/// A UDP datagram that arrived on port 500, or on 4500 with the non-ESP
/// marker already removed.
struct Datagram {
  Endpoint local;   // the address and port it was sent to
  Endpoint remote;  // where it came from
  Bytes data;
};

/// The data path saw a packet for a negotiate policy and has no SA for it.
struct Acquire {
  std::uint64_t id = 0;        // the driver's handle for the packets it holds
  std::size_t policy = 0;      // index in Config::policies (action negotiate)
  Endpoint local;              // our address toward the peer (port 500)
  Endpoint remote;             // the peer: the tunnel endpoint, or the packet's destination in transport mode
  TrafficSelector packet_src;  // the triggering packet's source and destination (RFC 7296 2.9)
  TrafficSelector packet_dst;
};

// ---- actions ---------------------------------------------------------------

struct SendAction {
  Endpoint local;
  Endpoint remote;
  Buffer data;
  bool non_esp_marker = false;  // port 4500: prepend four zero bytes (RFC 3948)
};

/// A CHILD_SA pair to install. Both SaConfigs are complete: SPI, protocol,
/// direction, addresses (tunnel endpoints in tunnel mode), mode, keys,
/// ESN, replay window, UDP encapsulation, lifetime (hard limits; the
/// daemon rekeys before them).
struct ChildSa {
  std::uint64_t ike_sa = 0;  // the daemon's id of the IKE SA (not an SPI)
  std::uint64_t child = 0;   // the daemon's id of this child
  std::size_t policy = 0;    // index in Config::policies
  std::string policy_name;
  Endpoint peer;  // the peer's IKE endpoint (for NAT-T: its mapped address and port)
  filters::SaConfig inbound;
  filters::SaConfig outbound;
  std::vector<TrafficSelector> local_ts;  // as negotiated (narrowed)
  std::vector<TrafficSelector> remote_ts;
  std::optional<std::uint64_t> replaces;  // the child this one rekeys
  /// Only the inbound SA is used for now; the outbound one waits for an
  /// ActivateOutboundAction, and the outbound SA of `replaces` stays in
  /// use until then. A rekey responder's child (strongSwan's delayed
  /// outbound SA): the peer installs the pair only when our answer reaches
  /// it, so our first packets on the new SPI would find nothing there.
  bool outbound_deferred = false;
};
struct InstallAction {
  ChildSa sa;
};
/// The deferred outbound SA of `child` is used from now on (the peer
/// deleted the child it rekeyed, or the grace for that ended); the outbound
/// SA of `replaces`, if still there, no longer is.
struct ActivateOutboundAction {
  std::uint64_t child = 0;
  std::optional<std::uint64_t> replaces;
};
/// Removes a child's SAs. `inbound_only`: the outbound SA was already
/// replaced by a rekey; the inbound one goes now.
struct RemoveAction {
  std::uint64_t child = 0;
  std::uint32_t inbound_spi = 0;
  std::uint32_t outbound_spi = 0;
  bool inbound_only = false;
  std::string reason;  // "deleted by the peer", "rekeyed", "DPD timeout", ...
};
/// The peer's NAT mapping changed (learned from an authenticated message):
/// ESP in UDP for its children now goes to `peer`.
struct UpdatePeerAction {
  std::uint64_t ike_sa = 0;
  Endpoint peer;
};
/// What becomes of the packets an acquire holds.
struct AcquireDoneAction {
  enum class Result : std::uint8_t {
    protect,    // an SA is installed: send them protected
    drop,       // the negotiation failed (require): discard them
    cleartext,  // request policy, the peer did not answer: a soft association, send them in the clear
  };
  std::uint64_t acquire = 0;
  Result result = Result::drop;
  std::uint64_t child = 0;  // with protect
};
/// A soft association (request policy, peer silent) starts or ends: while
/// it lasts, cleartext to and from the peer on that policy is allowed.
struct SoftAssociationAction {
  std::size_t policy = 0;
  dissect::IpAddr peer;
  bool active = true;
};

enum class EventKind : std::uint8_t {
  ike_established,
  ike_failed,  // with the Notify or the reason
  ike_rekeyed,
  ike_deleted,
  child_established,
  child_rekeyed,
  child_deleted,
  auth_failed,
  dpd_timeout,
  retransmit,
  invalid_message,  // dropped: malformed, failed integrity, unexpected
  cookies,          // cookies turned on or off
  half_open_limit,
  soft_association,
  peer_moved,  // a peer behind a NAT came from a new address or port (RFC 7296 2.23)
  count_
};
[[nodiscard]] const char* to_string(EventKind k) noexcept;  // "ike-established", ...

struct EventAction {
  EventKind kind = EventKind::invalid_message;
  std::string text;  // never a key
};

/// The keys of a new or rekeyed IKE SA, produced only when Options::save_keys.
struct KeysAction {
  std::uint64_t spi_i = 0;
  std::uint64_t spi_r = 0;
  IkeSuite suite;
  filters::SecretBytes sk_ei, sk_er, sk_ai, sk_ar;
};

using Action = std::variant<SendAction, InstallAction, ActivateOutboundAction, RemoveAction, UpdatePeerAction,
                            AcquireDoneAction, SoftAssociationAction, EventAction, KeysAction>;
using Actions = std::vector<Action>;

// ---- observation -----------------------------------------------------------

/// The IP Security Monitor's Main Mode table, counted live.
struct MainModeCounters {
  std::uint64_t ike_sas_established = 0;    // "Main Modes"
  std::uint64_t child_sas_established = 0;  // "Quick Modes"
  std::uint64_t negotiation_failures = 0;
  std::uint64_t authentication_failures = 0;
  std::uint64_t invalid_cookies = 0;  // unknown SPIs, bad COOKIE
  std::uint64_t invalid_packets = 0;  // malformed, failed integrity, unexpected, replayed
  std::uint64_t soft_associations = 0;
  std::uint64_t retransmissions = 0;
  std::uint64_t cookies_sent = 0;
  std::uint64_t half_open_dropped = 0;
  std::uint64_t rekeys = 0;
  std::uint64_t dpd_timeouts = 0;
};

struct ChildInfo {
  std::uint64_t id = 0;
  std::string policy;
  std::uint32_t inbound_spi = 0;
  std::uint32_t outbound_spi = 0;
  std::string protocol;  // "esp", "ah"
  std::string mode;
  std::string algorithms;  // "aes-gcm-16 (128-bit)"
  std::string local_ts, remote_ts;
  std::int64_t age_seconds = 0;
  std::int64_t rekey_in_seconds = 0;
  bool udp_encap = false;
};

struct IkeSaInfo {
  std::uint64_t id = 0;
  std::uint64_t spi_i = 0;
  std::uint64_t spi_r = 0;
  bool initiator = false;
  Endpoint local;
  Endpoint remote;
  std::string local_id, remote_id;
  std::string profile;
  std::string algorithms;  // IkeSuite::str()
  std::string state;       // "connecting", "established", "rekeying", "deleting"
  std::int64_t age_seconds = 0;
  std::int64_t rekey_in_seconds = 0;
  bool nat_local = false;  // we are behind a NAT
  bool nat_remote = false;
  std::vector<ChildInfo> children;
};

struct Snapshot {
  MainModeCounters counters;
  std::vector<IkeSaInfo> ike_sas;
  std::size_t half_open = 0;
  bool cookies_on = false;
};

// ---- the daemon --------------------------------------------------------------

struct Options {
  Random* random = nullptr;  // nullptr: system_random()
  bool save_keys = false;    // produce KeysAction
  // RFC 7296 2.4 / charon's defaults.
  TimeNs retransmit_timeout = 4'000'000'000;
  double retransmit_base = 1.8;
  unsigned retransmit_tries = 5;
  // Responder DoS gate (RFC 7296 2.6).
  std::size_t cookie_threshold = 30;  // half-open IKE SAs in total before cookies are required
  std::size_t cookie_threshold_per_ip = 3;
  std::size_t half_open_limit = 1000;  // above this, new IKE_SA_INITs are dropped
  TimeNs half_open_timeout = 30'000'000'000;
  /// Wall clock for certificate validity (seconds since the epoch); the
  /// monotonic TimeNs of the calls is used for everything else.
  std::int64_t (*wall_clock)() = nullptr;  // nullptr: time(nullptr)
  /// Makes the Diffie-Hellman private values. nullptr: KeyExchange::create()
  /// (OpenSSL's generator), always in production. The fuzz target draws
  /// them from its seeded `random` instead, so that a recorded exchange
  /// replays byte for byte.
  std::unique_ptr<KeyExchange> (*key_exchange)(filters::DhGroup group, Random& random) = nullptr;
  /// IKE fragmentation (RFC 7383): announced in IKE_SA_INIT when true; once
  /// both peers announce it, encrypted messages whose IP datagram would be
  /// larger than `fragment_size` bytes (charon's default, IPv4 and IPv6)
  /// go as Encrypted Fragment messages.
  bool fragmentation = true;
  std::size_t fragment_size = 1280;
};

class Daemon {
 public:
  /// Builds the daemon for the negotiate policies of `config` (which must
  /// outlive it, or be replaced with reconfigure()). Loads certificates and
  /// keys: throws filters::ConfigError naming the profile and file.
  Daemon(const filters::Config& config, const filters::LocalAddresses& local, Options options = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  void receive(const Datagram& d, TimeNs now, Actions& out);
  void acquire(const Acquire& a, TimeNs now, Actions& out);
  /// The data path counted a child's soft (rekey now) or hard byte/packet
  /// lifetime (its SAs are gone: delete it and renegotiate on demand).
  void expired(std::uint64_t child, bool hard, TimeNs now, Actions& out);
  /// The data path authenticated ESP in UDP of `child` arriving from a new
  /// NAT mapping, `from` (what the kernel's XFRM mapping event tells
  /// charon). A peer behind a NAT whose mapping changed while it sent no IKE
  /// would otherwise get our DPD, rekeys and Deletes at its old port.
  void nat_mapping(std::uint64_t child, const Endpoint& from, TimeNs now, Actions& out);
  /// Runs what is due at `now`.
  void tick(TimeNs now, Actions& out);
  /// When tick() next has something to do (INT64_MAX: nothing scheduled).
  [[nodiscard]] TimeNs next_deadline() const noexcept;
  /// A new configuration (SIGHUP): IKE SAs whose policy and profile are
  /// unchanged stay; the others are deleted (with a Delete to the peer).
  /// Throws filters::ConfigError and keeps the old configuration then.
  void reconfigure(const filters::Config& config, const filters::LocalAddresses& local, TimeNs now, Actions& out);
  /// Deletes every IKE SA (Delete sent to each peer), for a clean stop.
  void shutdown(TimeNs now, Actions& out);

  [[nodiscard]] Snapshot snapshot(TimeNs now) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsentry::ike::v2
