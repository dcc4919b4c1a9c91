// What the enforcement workers and the IKE driver tell each other.
//
// A worker that finds no negotiated SA for a packet of a `negotiate` policy
// copies the packet into a small bounded buffer (acquire_queue packets per
// (policy, peer), a global cap) and drops it in the kernel; the first such
// packet starts an acquire, which the driver hands to the IKE daemon. Only
// one acquire per (policy, peer) is in flight. The driver takes the held
// packets back when the negotiation ends (sent protected, sent in the
// clear for a request policy whose peer did not answer, or discarded).
// Workers also report byte/packet lifetimes of negotiated SAs here.
//
// Workers never wait on the driver: every call is a short critical section
// on a mutex the driver holds only as briefly, and what does not fit is
// dropped and counted. The driver sleeps on an eventfd that the workers
// write when they post something.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::enforce {

struct IkeChannelLimits {
  std::size_t per_peer = 8;                   // held packets per (policy, peer): the seeds' acquire_queue default
  std::size_t total = 256;                    // held packets over every peer
  std::size_t notices = 1024;                 // acquires and lifetime reports waiting for the driver
  std::size_t max_peers = 128;                // acquires in flight at once
  std::int64_t acquire_ns = 120'000'000'000;  // an acquire the daemon never ends is given up after this
};

/// A packet a worker held for a negotiation.
struct HeldPacket {
  std::vector<std::uint8_t> bytes;  // from the IP header
  bool forwarded = false;           // came through FORWARD (a gateway's traffic)
};

/// Something a worker posted for the driver.
struct IkeNotice {
  enum class Kind : std::uint8_t { acquire, soft_expired, hard_expired, nat_mapping };
  Kind kind = Kind::acquire;
  // acquire
  std::uint64_t acquire = 0;
  std::size_t policy = 0;
  dissect::IpAddr peer;            // the IKE peer: the tunnel endpoint, or the destination in transport mode
  filters::PacketSelector packet;  // the packet that started it (RFC 7296 2.9)
  // soft/hard_expired, nat_mapping (with `peer` and `port`: where its ESP in UDP now comes from)
  std::uint64_t child = 0;
  std::uint16_t port = 0;
};

struct IkeChannelCounters {
  std::uint64_t acquires = 0;          // acquires started
  std::uint64_t held = 0;              // packets held for a negotiation
  std::uint64_t held_dropped = 0;      // packets that found the buffer full
  std::uint64_t notices_dropped = 0;   // notices that found the queue full
  std::uint64_t acquires_expired = 0;  // acquires the daemon never ended
  std::uint64_t held_now = 0;          // packets held at the moment
  std::uint64_t acquires_now = 0;      // acquires in flight at the moment
};

class IkeChannel {
 public:
  explicit IkeChannel(IkeChannelLimits limits = {});
  ~IkeChannel();
  IkeChannel(const IkeChannel&) = delete;
  IkeChannel& operator=(const IkeChannel&) = delete;

  enum class Hold : std::uint8_t {
    started,  // held, and an acquire was posted
    held,     // held; an acquire for the peer is already in flight
    full,     // not held: the peer's share or the global cap is used up (an acquire may be in flight)
  };
  /// Worker: `packet` belongs to `policy` toward `peer` and no SA covers it.
  Hold hold(std::size_t policy, const dissect::IpAddr& peer, const filters::PacketSelector& selector,
            std::span<const std::uint8_t> packet, bool forwarded, std::int64_t now_ns) noexcept;
  /// Worker: a negotiated child reached a byte/packet lifetime. False: the queue was full.
  bool expired(std::uint64_t child, bool hard) noexcept;
  /// Worker: authenticated ESP in UDP of a negotiated child came from a new
  /// NAT mapping. False: the queue was full.
  bool mapping(std::uint64_t child, const dissect::IpAddr& peer, std::uint16_t port) noexcept;

  /// Driver: the eventfd that becomes readable when something was posted (-1 without one).
  [[nodiscard]] int event_fd() const noexcept { return fd_; }
  /// Driver: what was posted since the last call; clears the eventfd.
  [[nodiscard]] std::vector<IkeNotice> drain();
  /// Driver: ends an acquire and hands over its packets (empty when unknown).
  [[nodiscard]] std::vector<HeldPacket> take(std::uint64_t acquire);
  /// Driver: ends the acquires older than the limit; returns their ids.
  std::vector<std::uint64_t> expire(std::int64_t now_ns);
  /// Driver: (policy, peer) of an acquire in flight.
  [[nodiscard]] std::optional<std::pair<std::size_t, dissect::IpAddr>> acquire_of(std::uint64_t acquire) const;

  /// Soft associations (request policies whose peer did not answer): while
  /// one lasts, cleartext to the peer is allowed.
  void set_soft(std::size_t policy, const dissect::IpAddr& peer, bool active);
  [[nodiscard]] bool soft(std::size_t policy, const dissect::IpAddr& peer) const noexcept;
  [[nodiscard]] std::size_t soft_count() const noexcept;
  /// A reload renumbered the policies: `map[old]` is the new index of
  /// policy `old`, nullopt when it is gone (its soft associations end; its
  /// acquires stay until the daemon ends them).
  void remap_policies(const std::vector<std::optional<std::size_t>>& map);

  [[nodiscard]] IkeChannelCounters counters() const noexcept;
  [[nodiscard]] const IkeChannelLimits& limits() const noexcept { return limits_; }

 private:
  struct Acquire {
    std::uint64_t id = 0;
    std::size_t policy = 0;
    dissect::IpAddr peer;
    std::int64_t started_ns = 0;
    std::vector<HeldPacket> packets;
  };
  void post(IkeNotice n) noexcept;           // with mu_ held
  bool notify(const IkeNotice& n) noexcept;  // a worker's notice other than an acquire: posted unless the queue is full
  void wake() noexcept;

  IkeChannelLimits limits_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::vector<Acquire> acquires_;
  std::vector<IkeNotice> notices_;
  std::size_t held_total_ = 0;
  std::uint64_t next_id_ = 1;
  std::vector<std::pair<std::size_t, dissect::IpAddr>> soft_;
  IkeChannelCounters counters_;
};

}  // namespace ipsentry::enforce
