// A running enforcement: the queues and their workers, the iptables rules,
// configuration reloads and the statistics socket.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/nfqueue.hpp"
#include "ipsentry/enforce/rules.hpp"

namespace ipsentry::enforce {

inline constexpr const char* kDefaultSocket = "/run/ipsentry/enforce.sock";

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
};

/// Whether this process may change netfilter rules and bind queues.
[[nodiscard]] bool have_net_admin() noexcept;

class Enforcement {
 public:
  /// Loads and compiles the configuration. Throws filters::ConfigError.
  Enforcement(EnforceOptions options, EventSink log);
  ~Enforcement();
  Enforcement(const Enforcement&) = delete;
  Enforcement& operator=(const Enforcement&) = delete;

  /// Binds the queues, starts the workers, installs the rules, opens the
  /// statistics socket. Throws QueueError, RulesError, std::runtime_error.
  void start();
  /// Re-reads the configuration; on any error the running state is kept and
  /// the error is thrown (filters::ConfigError, RulesError).
  void reload();
  /// Removes the rules, then stops the workers and closes the socket.
  void stop();

  /// The statistics as JSON (no keys).
  [[nodiscard]] std::string snapshot_json();
  [[nodiscard]] std::string describe_policy() const;
  [[nodiscard]] std::size_t sa_count() const;
  [[nodiscard]] const RuleOptions& rule_options() const noexcept { return rule_options_; }

 private:
  std::unique_ptr<State> build_state() const;
  void compute_rule_options();
  void worker_main(std::size_t i);
  void stats_main();
  void restore_state(State& s, const std::vector<std::string>& skip);
  void save_state(State& s, bool force);

  EnforceOptions options_;
  EventSink log_;
  mutable std::shared_mutex state_mu_;
  std::unique_ptr<State> state_;
  RuleOptions rule_options_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  bool rules_installed_ = false;
  int stats_fd_ = -1;
  std::thread stats_thread_;
  std::chrono::system_clock::time_point started_;
  std::atomic<std::uint64_t> key_additions_{0};
  std::atomic<std::uint64_t> key_deletions_{0};
  std::atomic<std::uint64_t> reloads_{0};
  std::atomic<std::uint64_t> worker_failures_{0};
};

/// Reads a snapshot from a running enforcement's socket. Throws
/// std::runtime_error with a message for the user.
[[nodiscard]] std::string fetch_stats(const std::string& socket_path);

}  // namespace ipsentry::enforce
