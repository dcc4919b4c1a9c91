// The IKE driver: the I/O around the I/O-free IKEv2 daemon (ike::v2::Daemon)
// in a running enforcement (docs/ike-keying.md, "Data path").
//
// One thread owns the daemon, its UDP sockets (ports 500 and 4500, IPv4
// and IPv6, bound to the wildcard address with IP_PKTINFO/IPV6_RECVPKTINFO
// so that each reply leaves from the address its request came to, and
// marked as ipsentry's own so that its rules never queue them), its timers
// (a poll timeout from Daemon::next_deadline) and the IkeChannel the
// workers post acquires and lifetimes to. It carries out every Action:
// Send; Install and Remove (into and out of the running State's SAD, under
// the state lock held exclusively); UpdatePeer; AcquireDone (held packets
// protected and sent through a raw socket marked as ours, so that they are
// routed by their outer destination, on a gateway too; or discarded; or,
// for a request policy whose peer did not answer, sent in the clear);
// SoftAssociation; Event (logged, rate-limited as enforcement events are);
// Keys (written only with --save-keys).
//
// Other threads reach the daemon only through call(), which runs a job on
// the driver thread between two inputs and waits for it: a reload swaps
// the State and reconfigures the daemon there, so that no action refers to
// a policy of the other configuration. The statistics read the snapshot
// the driver thread publishes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/ike_channel.hpp"
#include "ipsentry/enforce/save_keys.hpp"
#include "ipsentry/ike/ikev2.hpp"
#include "ipsentry/ipsec/engine.hpp"

namespace ipsentry::enforce {

/// The IKE daemon as the driver drives it: ike::v2::Daemon in production
/// (make_ike_daemon); tests substitute a scripted one.
class IkeProtocol {
 public:
  virtual ~IkeProtocol() = default;
  virtual void receive(const ike::v2::Datagram& d, ike::v2::TimeNs now, ike::v2::Actions& out) = 0;
  virtual void acquire(const ike::v2::Acquire& a, ike::v2::TimeNs now, ike::v2::Actions& out) = 0;
  virtual void expired(std::uint64_t child, bool hard, ike::v2::TimeNs now, ike::v2::Actions& out) = 0;
  virtual void nat_mapping(std::uint64_t child, const ike::v2::Endpoint& from, ike::v2::TimeNs now,
                           ike::v2::Actions& out) = 0;
  virtual void tick(ike::v2::TimeNs now, ike::v2::Actions& out) = 0;
  [[nodiscard]] virtual ike::v2::TimeNs next_deadline() const noexcept = 0;
  virtual void reconfigure(const filters::Config& config, const filters::LocalAddresses& local, ike::v2::TimeNs now,
                           ike::v2::Actions& out) = 0;
  virtual void shutdown(ike::v2::TimeNs now, ike::v2::Actions& out) = 0;
  [[nodiscard]] virtual ike::v2::Snapshot snapshot(ike::v2::TimeNs now) const = 0;
};

/// The production daemon for the negotiate policies of `config` (which
/// must outlive it or be replaced through reconfigure). Throws
/// filters::ConfigError (a certificate or key that cannot be loaded).
[[nodiscard]] std::unique_ptr<IkeProtocol> make_ike_daemon(const filters::Config& config,
                                                           const filters::LocalAddresses& local,
                                                           ike::v2::Options options);

/// A port the driver needs is taken (another IKE daemon runs).
class IkeSocketError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Who holds UDP `port` in this network namespace ("charon (pid 812)"),
/// empty when it cannot be told.
[[nodiscard]] std::string udp_port_holder(std::uint16_t port);

/// What the driver needs of the running enforcement.
struct IkeHost {
  /// Runs `fn` on the running State under the state lock, held
  /// exclusively when `exclusive` (the SAD changes) and shared otherwise.
  std::function<void(bool exclusive, const std::function<void(State&)>& fn)> with_state;
  /// Negotiated SAs installed and removed (the Quick Mode key counters).
  std::function<void(std::size_t added, std::size_t removed)> counted;
  EventSink log;
};

struct IkeDriverOptions {
  std::uint16_t port = 500;
  std::uint16_t natt_port = 4500;
  bool ipv6 = true;       // also bind the IPv6 sockets (skipped with a warning where IPv6 is off)
  std::string save_keys;  // --save-keys DIR; empty: no key is written anywhere
};

struct IkeDriverCounters {
  std::uint64_t datagrams_received = 0;
  std::uint64_t datagrams_sent = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t receive_errors = 0;
  std::uint64_t stray_esp = 0;            // ESP in UDP that reached the IKE socket (not through the queue)
  std::uint64_t keepalives_received = 0;  // NAT keepalives that reached the IKE socket
  std::uint64_t held_sent_protected = 0;
  std::uint64_t held_sent_cleartext = 0;
  std::uint64_t held_discarded = 0;
  std::uint64_t held_send_errors = 0;
  std::uint64_t installs = 0;
  std::uint64_t install_failures = 0;
  std::uint64_t removes = 0;
  std::uint64_t peer_updates = 0;
  std::uint64_t key_file_writes = 0;
  std::uint64_t key_file_errors = 0;
  std::uint64_t events_suppressed = 0;
};

class IkeDriver {
 public:
  IkeDriver(IkeHost host, IkeChannel& channel, std::unique_ptr<IkeProtocol> protocol, IkeDriverOptions options);
  ~IkeDriver();
  IkeDriver(const IkeDriver&) = delete;
  IkeDriver& operator=(const IkeDriver&) = delete;

  /// Opens --save-keys DIR (with a warning that keys are written), binds
  /// the sockets and starts the thread. Throws IkeSocketError naming the
  /// program that holds a port, std::runtime_error otherwise.
  void start();
  /// Deletes every IKE SA (the Deletes are sent before the sockets close),
  /// discards the held packets and joins the thread.
  void stop();
  /// Runs `job` on the driver thread and waits for it; an exception it
  /// throws is rethrown here. The job may call the protocol and append to
  /// the actions, which are carried out after it.
  using Job = std::function<void(IkeProtocol& protocol, ike::v2::TimeNs now, ike::v2::Actions& out)>;
  void call(const Job& job);
  /// Carries out actions (the driver thread, or a test without a thread).
  void execute(ike::v2::Actions& actions, ike::v2::TimeNs now);

  /// The daemon's latest snapshot and the driver's counters, as the
  /// statistics' "ike" member (no keys).
  [[nodiscard]] nlohmann::json snapshot_json() const;
  [[nodiscard]] IkeDriverCounters counters() const;
  /// The local ports bound (after start; tests bind port 0).
  [[nodiscard]] std::uint16_t bound_port(bool natt) const noexcept { return natt ? bound_natt_ : bound_ike_; }

  /// The monotonic clock the daemon runs on.
  [[nodiscard]] static ike::v2::TimeNs now() noexcept;

 private:
  struct Socket {
    int fd = -1;
    bool v6 = false;
    bool natt = false;
  };
  struct RateLimit {
    std::int64_t window_ns = 0;
    std::uint32_t used = 0;
    std::uint64_t suppressed = 0;
  };

  void bind_sockets();
  void run();
  void receive(const Socket& s, ike::v2::TimeNs now, ike::v2::Actions& out);
  void notices(ike::v2::TimeNs now, ike::v2::Actions& out);
  void publish(ike::v2::TimeNs now);
  void send(const ike::v2::SendAction& a);
  void install(const ike::v2::InstallAction& a);
  void activate_outbound(const ike::v2::ActivateOutboundAction& a);
  void remove(const ike::v2::RemoveAction& a);
  void acquire_done(const ike::v2::AcquireDoneAction& a);
  void event(const ike::v2::EventAction& a, ike::v2::TimeNs now);
  void keys(const ike::v2::KeysAction& a);
  void write_key_files();  // --save-keys: both files rewritten on the key files' writer thread
  bool raw_send(std::span<const std::uint8_t> ip_packet) noexcept;
  void log(EventKind kind, const std::string& text) const;
  void wake() noexcept;

  IkeHost host_;
  IkeChannel& channel_;
  std::unique_ptr<IkeProtocol> protocol_;
  IkeDriverOptions options_;
  std::optional<KeyFiles> key_files_;
  std::vector<Socket> sockets_;
  std::uint16_t bound_ike_ = 0;
  std::uint16_t bound_natt_ = 0;
  int raw4_ = -1;
  int raw6_ = -1;
  int wake_fd_ = -1;
  ipsec::Engine engine_{/*lock_sas=*/true};  // protects held packets
  std::array<RateLimit, static_cast<std::size_t>(ike::v2::EventKind::count_)> limits_{};

  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};

  // Jobs from other threads, one at a time.
  std::mutex job_mu_;
  std::condition_variable job_cv_;
  const Job* job_ = nullptr;
  bool job_done_ = false;
  std::exception_ptr job_error_;
  std::mutex call_mu_;  // callers queue here

  mutable std::mutex snap_mu_;
  ike::v2::Snapshot snap_;
  IkeDriverCounters counters_;  // under snap_mu_
  ike::v2::TimeNs last_publish_ = 0;
  ike::v2::TimeNs last_send_error_log_ = 0;
};

}  // namespace ipsentry::enforce
