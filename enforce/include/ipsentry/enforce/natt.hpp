// NAT traversal for ESP in UDP (RFC 3948) in enforcement.
//
// A NAT between the peers rewrites the source port (and address) of what
// the peer sends us; our packets must go back to that mapped port, and the
// mapping must be kept alive while the link is idle. With manual keys
// there is no IKE to tell us the mapping (NAT-D, NAT-OA), so it is learned
// from the peer's ESP-in-UDP packets, and only from those that
// authenticated, were the newest on their SA and were accepted by the
// policy (RFC 7296 section 2.23: never from unauthenticated packets). A
// forged packet from another port cannot move it.
//
// NatMapping lives beside each outbound ESP-in-UDP SA (SaLife::nat): the
// peers it sends to, the port each one's NAT mapped it to, and when
// something was last sent to them (a keepalive is only due after an
// interval with nothing sent, RFC 3948 section 4).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include <nlohmann/json_fwd.hpp>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/config.hpp"

namespace ipsentry::enforce {

class State;
struct SaLife;

/// One peer of an outbound ESP-in-UDP SA.
struct NatPeer {
  dissect::IpAddr address;       // the peer as its packets reach us (the NAT's public address)
  std::uint16_t port = 0;        // its NAT-mapped source port; 0: none learned (the configured dport)
  std::int64_t learned_ns = 0;   // steady clock: when a packet last confirmed or moved the port
  std::int64_t last_out_ns = 0;  // steady clock: when ESP or a keepalive last went to it
  std::uint64_t moves = 0;       // times an authenticated packet came from a new port
  bool configured = false;       // the SA's own destination, kept when the table is full
};

/// Where a keepalive goes.
struct KeepaliveTarget {
  dissect::IpAddr address;
  std::uint16_t port = 0;
};

class NatMapping {
 public:
  static constexpr std::size_t kPeers = 8;

  /// The SA's configured destination, if it has one: a peer from the start.
  void seed(const dissect::IpAddr& destination) noexcept;
  /// Outbound: the port to send to `peer` (0: the SA's configured dport),
  /// and notes that something was sent to it now.
  [[nodiscard]] std::uint16_t port_for(const dissect::IpAddr& peer, std::int64_t now_ns) noexcept;

  /// Inbound: an authenticated, accepted, newest packet of the peer came
  /// from `address`:`port`. A full table gives up its least recently
  /// confirmed learned peer. Returns the port learned before (0: none).
  std::uint16_t learn(const dissect::IpAddr& address, std::uint16_t port, std::int64_t now_ns) noexcept;

  /// The peers nothing was sent to for `interval_ns`, each noted as sent to
  /// now; `configured_dport` for those without a learned port. Returns how
  /// many were written to `out`.
  std::size_t due(std::int64_t now_ns, std::int64_t interval_ns, std::uint16_t configured_dport,
                  std::span<KeepaliveTarget, kPeers> out) noexcept;
  void count_keepalives(std::uint64_t n) noexcept;

  /// A copy of the table for statistics (and the keepalives sent).
  [[nodiscard]] std::array<NatPeer, kPeers> peers(std::uint64_t& keepalives_sent) const noexcept;
  /// Takes over another SA's table (a reload that kept the SA).
  void take_over(const NatMapping& old) noexcept;

 private:
  NatPeer* find(const dissect::IpAddr& a) noexcept;
  mutable std::mutex mu_;
  std::array<NatPeer, kPeers> peers_{};
  std::size_t used_ = 0;
  std::uint64_t keepalives_sent_ = 0;
};

/// Builds a NAT-keepalive datagram (RFC 3948 section 2.3: UDP from our
/// NAT-T port to the peer's, one octet 0xFF) with its IP header into
/// `buf`. IPv4 leaves the UDP checksum zero (RFC 3948 section 2.1); IPv6
/// needs one, computed over `src`. Returns the length.
std::size_t build_keepalive(std::span<std::uint8_t, 64> buf, const dissect::IpAddr& src, const dissect::IpAddr& dst,
                            std::uint16_t sport, std::uint16_t dport) noexcept;

/// Sends keepalives through raw sockets that carry ipsentry's own mark, so
/// that its rules do not queue them; no UDP port is bound, so an IKE daemon
/// keeps port 4500 to itself.
class KeepaliveSender {
 public:
  KeepaliveSender();
  ~KeepaliveSender();
  KeepaliveSender(const KeepaliveSender&) = delete;
  KeepaliveSender& operator=(const KeepaliveSender&) = delete;

  /// `src` nullopt: the address the kernel's route to `dst` would use.
  bool send(const std::optional<dissect::IpAddr>& src, std::uint16_t sport, const dissect::IpAddr& dst,
            std::uint16_t dport) noexcept;
  /// Sends what is due on every outbound ESP-in-UDP SA of `state`.
  /// Returns the number sent.
  std::size_t tick(State& state, std::int64_t now_ns) noexcept;

 private:
  int v4_ = -1;
  int v6_ = -1;
};

/// The "nat" member of an SA in the statistics: null when the SA is not
/// UDP-encapsulated.
[[nodiscard]] nlohmann::json nat_json(const filters::SaConfig& sa, filters::Direction direction, const SaLife& life,
                                      std::int64_t now_ns);

/// The steady clock in nanoseconds, the time base of NatMapping.
[[nodiscard]] std::int64_t steady_ns() noexcept;

}  // namespace ipsentry::enforce
