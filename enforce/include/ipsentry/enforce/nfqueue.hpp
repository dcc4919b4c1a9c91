// One NFQUEUE queue bound over netlink (libmnl + libnetfilter_queue's
// message helpers).
//
// Verdicts that carry a new payload cannot be batched by the kernel
// (NFQUEUE.md Q7), so every packet gets its own VERDICT message; the
// messages of one receive burst are packed into one buffer and sent with a
// single send(). F_GSO is never requested: rewritten GSO super-packets are
// dropped by the kernel (Q5 D).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipsentry/dissect/wire.hpp"

struct mnl_socket;

namespace ipsentry::enforce {

class QueueError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct QueuedPacket {
  std::uint32_t id = 0;
  std::uint8_t hook = 0;
  std::uint32_t mark = 0;
  std::uint32_t indev = 0;
  std::uint32_t outdev = 0;
  dissect::Bytes payload;  // from the IP header
};

struct Verdict {
  bool accept = false;
  dissect::Bytes replacement;  // non-empty: new packet bytes
  std::uint32_t mark = 0;      // the whole mark to set (ignored when set_mark is false)
  bool set_mark = false;
};

/// Who holds queue `num` in this network namespace (from
/// /proc/net/netfilter/nfnetlink_queue), or nullopt when it is free.
[[nodiscard]] std::optional<std::string> queue_holder(std::uint16_t num);

class Queue {
 public:
  /// Binds queue `num`. `fail_open`: packets over the queue limit pass
  /// instead of being dropped (NFQA_CFG_F_FAIL_OPEN). Throws QueueError,
  /// naming the process that holds the queue, or a missing privilege.
  Queue(std::uint16_t num, bool fail_open, std::uint32_t max_len = 4096);
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  /// Processes packets until `stop` is set: waits up to 100 ms for the
  /// first packet of a burst, takes up to `burst` more without waiting,
  /// then sends all their verdicts at once.
  void run(const std::atomic<bool>& stop, const std::function<Verdict(const QueuedPacket&)>& handle,
           std::size_t burst = 64);

  [[nodiscard]] std::uint16_t number() const noexcept { return num_; }
  /// Verdicts the kernel refused (netlink errors), and receive overruns.
  [[nodiscard]] std::uint64_t verdict_errors() const noexcept { return verdict_errors_.load(); }
  [[nodiscard]] std::uint64_t overruns() const noexcept { return overruns_.load(); }

 private:
  void send_config(std::uint8_t cmd, std::uint16_t pf);
  void flush();

  mnl_socket* nl_ = nullptr;
  std::uint16_t num_;
  unsigned portid_ = 0;
  std::vector<char> rx_;
  std::vector<char> tx_;
  std::size_t tx_len_ = 0;
  std::atomic<std::uint64_t> verdict_errors_{0};
  std::atomic<std::uint64_t> overruns_{0};
};

}  // namespace ipsentry::enforce
