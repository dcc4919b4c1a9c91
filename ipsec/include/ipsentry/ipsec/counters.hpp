// Counters named as the Windows IP Security Monitor names them.
#pragma once

#include <array>
#include <cstdint>

#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::ipsec {

/// Traffic of one direction ("sent" is what outbound() protected,
/// "received" what inbound() verified).
struct ByteCounters {
  std::uint64_t packets = 0;             // processed successfully
  std::uint64_t bytes = 0;               // IP bytes of those IPsec packets
  std::uint64_t confidential_bytes = 0;  // ESP with encryption
  std::uint64_t authenticated_bytes = 0; // AH, or ESP with integrity / AEAD
  std::uint64_t transport_bytes = 0;
  std::uint64_t tunnel_bytes = 0;

  ByteCounters& operator+=(const ByteCounters& o) noexcept {
    packets += o.packets;
    bytes += o.bytes;
    confidential_bytes += o.confidential_bytes;
    authenticated_bytes += o.authenticated_bytes;
    transport_bytes += o.transport_bytes;
    tunnel_bytes += o.tunnel_bytes;
    return *this;
  }
};

struct SaCounters {
  ByteCounters received;
  ByteCounters sent;
  std::array<std::uint64_t, kVerdictCount> verdicts{};  // inbound verdicts on this SA
  std::uint64_t first_ts_ns = 0;
  std::uint64_t last_ts_ns = 0;

  SaCounters& operator+=(const SaCounters& o) noexcept {
    received += o.received;
    sent += o.sent;
    for (std::size_t i = 0; i < verdicts.size(); ++i) verdicts[i] += o.verdicts[i];
    if (o.first_ts_ns != 0 && (first_ts_ns == 0 || o.first_ts_ns < first_ts_ns)) first_ts_ns = o.first_ts_ns;
    if (o.last_ts_ns > last_ts_ns) last_ts_ns = o.last_ts_ns;
    return *this;
  }
};

/// Totals over all SAs, with the IP Security Monitor's Quick Mode names.
struct GlobalCounters {
  ByteCounters received;
  ByteCounters sent;
  std::array<std::uint64_t, kVerdictCount> verdicts{};
  std::uint64_t bad_spi_packets = 0;                // unknown-spi
  std::uint64_t packets_not_decrypted = 0;          // decrypt-fail
  std::uint64_t packets_not_authenticated = 0;      // icv-fail
  std::uint64_t packets_with_replay_detection = 0;  // replay

  void count(Verdict v) noexcept {
    ++verdicts[static_cast<std::size_t>(v)];
    switch (v) {
      case Verdict::unknown_spi: ++bad_spi_packets; break;
      case Verdict::decrypt_fail: ++packets_not_decrypted; break;
      case Verdict::icv_fail: ++packets_not_authenticated; break;
      case Verdict::replay: ++packets_with_replay_detection; break;
      default: break;
    }
  }
  GlobalCounters& operator+=(const GlobalCounters& o) noexcept {
    received += o.received;
    sent += o.sent;
    for (std::size_t i = 0; i < verdicts.size(); ++i) verdicts[i] += o.verdicts[i];
    bad_spi_packets += o.bad_spi_packets;
    packets_not_decrypted += o.packets_not_decrypted;
    packets_not_authenticated += o.packets_not_authenticated;
    packets_with_replay_detection += o.packets_with_replay_detection;
    return *this;
  }
};

}  // namespace ipsentry::ipsec
