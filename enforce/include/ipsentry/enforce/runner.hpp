// A running enforcement: the queues and their workers, the iptables rules,
// configuration reloads and the statistics socket.
//
// Threads: one worker per queue; the saver, which keeps every SA's
// sequence-number ceiling recorded in the state file ahead of use (woken
// early by the workers when use nears it); the guard, which checks the
// iptables rules against what was installed, on every nftables change
// event and at least once a second, and reinstalls them; the statistics
// thread, which answers `ipsentry stats` and rebinds the socket if someone
// removed it. With negotiate policies, the IKE driver (ike_driver.hpp)
// runs the IKEv2 daemon on a thread of its own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/ike_channel.hpp"
#include "ipsentry/enforce/ike_driver.hpp"
#include "ipsentry/enforce/instance_lock.hpp"
#include "ipsentry/enforce/nfqueue.hpp"
#include "ipsentry/enforce/rules.hpp"
#include "ipsentry/enforce/sa_state.hpp"
#include "ipsentry/ipsec/crypto_backend.hpp"

namespace ipsentry::enforce {

inline constexpr const char* kDefaultSocket = "/run/ipsentry/enforce.sock";

/// IKE retransmission (RFC 7296 2.4; charon's strongswan.conf
/// retransmit_timeout, retransmit_base, retransmit_tries): a request is sent
/// again after timeout x base^n seconds for n = 0..tries-1, and the IKE SA
/// is given up timeout x base^tries seconds after the last try. Its total
/// is also how long DPD takes to declare a silent peer dead and how long a
/// request policy holds packets before its soft association.
struct IkeRetransmit {
  double timeout = 4.0;  // seconds
  double base = 1.8;
  unsigned tries = 5;
  [[nodiscard]] double span() const noexcept;  // seconds from the first send to giving up
};
/// Limits of --ike-retransmit (and the reasons for them in parse_ike_retransmit).
inline constexpr double kRetransmitTimeoutMin = 0.1, kRetransmitTimeoutMax = 120.0;
inline constexpr double kRetransmitBaseMin = 1.0, kRetransmitBaseMax = 4.0;
inline constexpr unsigned kRetransmitTriesMax = 20;
inline constexpr double kRetransmitSpanMax = 3600.0;
/// "TIMEOUT,BASE,TRIES" (e.g. "4,1.8,5"): throws std::invalid_argument
/// naming the field and its range.
[[nodiscard]] IkeRetransmit parse_ike_retransmit(std::string_view text);

struct EnforceOptions {
  std::string config;
  std::uint16_t queue = 0;
  std::uint16_t queues = 1;
  bool fail_open = false;
  std::string socket = kDefaultSocket;
  std::uint32_t mtu = 0;  // for the MSS clamp; 0: the smallest MTU of the host's interfaces
  bool mss_clamp = true;
  /// Where sequence-number reservations and replay tops survive restarts.
  std::string state_dir = "/var/lib/ipsentry";
  /// Where the per-network-namespace lock lives (root's, closed to others).
  std::string run_dir = "/run/ipsentry";
  /// --save-keys DIR: the negotiated IKE and ESP keys as Wireshark's UAT
  /// files. Empty: no key is written anywhere.
  std::string save_keys;
  /// The IKE ports (tests move them); the held-packet limits.
  std::uint16_t ike_port = 500;
  std::uint16_t ike_natt_port = 4500;
  /// IKE fragmentation (RFC 7383): the largest IP datagram of an IKE message;
  /// 0 turns it off (not announced, never sent).
  std::uint32_t ike_fragment_size = 1280;
  /// --ike-retransmit: how long an IKE request waits for its answer.
  IkeRetransmit ike_retransmit;
  IkeChannelLimits acquire_limits;
  /// --crypto: the ESP crypto backend of every SA.
  ipsec::CryptoChoice crypto = ipsec::CryptoChoice::auto_;
};

/// Sequence numbers recorded ahead of use: `time` of traffic at the
/// current rate, never fewer than `minimum` nor more than kMaxReserve; the
/// record is renewed when half of it is used. A crash (kill -9) skips at
/// most that many outbound sequence numbers, which costs nothing but
/// numbers, and refuses at most that many of the peer's packets after the
/// restart, which costs traffic: hence a small reserve inbound. A clean stop
/// records the exact numbers and loses nothing.
struct ReservePolicy {
  std::chrono::milliseconds time;
  std::uint64_t minimum;
};
inline constexpr ReservePolicy kSentReserve{std::chrono::milliseconds(1000), 1024};
inline constexpr ReservePolicy kAcceptedReserve{std::chrono::milliseconds(500), 8};
inline constexpr std::uint64_t kMaxReserve = 1u << 22;
/// How long a worker whose SA reached its ceiling waits for the saver
/// (a durable write takes ~15 ms here, more on a busy disk).
inline constexpr std::chrono::milliseconds kCeilingWait{250};

/// Whether this process may change netfilter rules and bind queues.
[[nodiscard]] bool have_net_admin() noexcept;

class Enforcement {
 public:
  /// Loads and compiles the configuration. Throws filters::ConfigError.
  Enforcement(EnforceOptions options, EventSink log);
  ~Enforcement();
  Enforcement(const Enforcement&) = delete;
  Enforcement& operator=(const Enforcement&) = delete;

  /// Takes the network-namespace and state-directory locks (LockBusy
  /// naming the holder), loads the state file (StateError), binds the
  /// queues, starts the workers, installs the rules, opens the statistics
  /// socket. Throws QueueError, RulesError, std::runtime_error.
  void start();
  /// Re-reads the configuration; on any error the running state is kept and
  /// the error is thrown (filters::ConfigError, RulesError, StateError).
  /// An SA whose keys are unchanged keeps its sequence numbers and replay
  /// window whatever its new name.
  void reload();
  /// Removes the rules, then stops the workers, records the exact sequence
  /// numbers used and closes the socket.
  void stop();
  /// Checks the rules now (the guard does it by itself); returns whether
  /// they had to be reinstalled.
  bool check_rules(const char* why);

  /// The statistics as JSON (no keys).
  [[nodiscard]] std::string snapshot_json();
  [[nodiscard]] std::string describe_policy() const;
  /// Every exemption and its selectors, on one line.
  [[nodiscard]] std::string describe_exemptions() const;
  [[nodiscard]] std::size_t sa_count() const;
  [[nodiscard]] const RuleOptions& rule_options() const noexcept { return rule_options_; }
  /// Configuration warnings (file modes, deprecated algorithms, ...).
  [[nodiscard]] std::vector<std::string> warnings() const;

 private:
  // Per SA of the running State (same index): its state-file records and
  // the rate its sequence numbers are used at.
  struct Track {
    std::vector<std::string> ids;
    SeqSide side = SeqSide::sent;
    std::uint64_t last_use = 0;
    std::uint64_t last_packets = 0;
    std::chrono::steady_clock::time_point when;
    std::uint64_t reserve = 0;
  };
  class Recorder : public ipsec::SeqRecorder {
   public:
    explicit Recorder(Enforcement& e) : e_(e) {}
    void nearing(ipsec::SecurityAssociation& sa) noexcept override;
    bool reach(ipsec::SecurityAssociation& sa, const std::atomic<std::uint64_t>& ceiling,
               std::uint64_t seq) noexcept override;

   private:
    Enforcement& e_;
  };

  std::unique_ptr<State> build_state() const;
  void compute_rule_options();
  void worker_main(std::size_t i);
  void stats_main();
  void saver_main();
  void guard_main();
  std::vector<Track> make_tracks(State& s) const;
  void restore_state(State& s, const std::vector<Track>& tracks, const std::vector<bool>& skip);
  /// Records ceilings ahead of use (or, `settle`, the exact use) and
  /// publishes them to the SAs once the file is on disk. Throws StateError.
  void persist(State& s, std::vector<Track>& tracks, bool force, bool settle);
  void take_rules_baseline();
  void start_ike();
  void check_socket_free() const;
  void bind_stats_socket();
  void wake_saver() noexcept;

  EnforceOptions options_;
  EventSink log_;
  std::optional<InstanceLock> netns_lock_;
  std::optional<InstanceLock> state_lock_;
  mutable std::shared_mutex state_mu_;
  std::unique_ptr<State> state_;
  std::vector<Track> tracks_;  // with state_, under state_mu_
  RuleOptions rule_options_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};

  // The state file, written by one thread at a time.
  std::mutex save_mu_;
  std::optional<SaStateFile> file_;
  Recorder recorder_{*this};
  std::thread saver_thread_;
  std::atomic<bool> saver_stop_{false};
  std::atomic<bool> saver_wake_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;  // the saver waits here
  std::mutex saved_mu_;
  std::condition_variable saved_cv_;  // workers at a ceiling wait here
  std::chrono::steady_clock::time_point last_state_error_;
  std::atomic<bool> state_failing_{false};

  // The rules and what they looked like when installed.
  std::mutex rules_mu_;
  bool rules_installed_ = false;
  std::vector<std::string> rules_baseline_[2];  // IPv4, IPv6
  std::thread guard_thread_;
  std::atomic<bool> guard_stop_{false};
  int guard_wake_fd_ = -1;

  // IKE (negotiate policies): the workers' channel to the driver, and the driver.
  std::unique_ptr<IkeChannel> ike_channel_;
  std::unique_ptr<IkeDriver> ike_;

  int stats_fd_ = -1;
  std::uint64_t stats_ino_ = 0;  // inode of the socket file we bound
  std::thread stats_thread_;
  std::chrono::system_clock::time_point started_;
  std::atomic<std::uint64_t> key_additions_{0};
  std::atomic<std::uint64_t> key_deletions_{0};
  std::atomic<std::uint64_t> reloads_{0};
  std::atomic<std::uint64_t> worker_failures_{0};
  std::atomic<std::uint64_t> rules_restored_{0};
  std::atomic<std::uint64_t> rules_restore_failures_{0};
  std::atomic<std::uint64_t> socket_restored_{0};
  std::atomic<std::uint64_t> state_writes_{0};
  std::atomic<std::uint64_t> state_write_failures_{0};
};

/// Reads a snapshot from a running enforcement's socket. Throws
/// std::runtime_error with a message for the user.
[[nodiscard]] std::string fetch_stats(const std::string& socket_path);

}  // namespace ipsentry::enforce
