// One-line, human-readable summaries of dissected packets, such as
// "ICMP echo request id=0x6f00 seq=1280" or "UDP 53 → 5353".
#pragma once

#include <cstddef>
#include <string>

#include "ipsentry/dissect/packet.hpp"

namespace ipsentry::dissect {

/// A fixed buffer for summaries, so the per-packet path does not allocate.
struct SummaryText {
  char text[192];
  std::size_t size = 0;
  [[nodiscard]] std::string_view view() const noexcept { return {text, size}; }
};

/// Summarises the upper layer of `p` (transport, or the IPsec header when
/// one is present). With `with_addresses`, the IP source and destination are
/// prefixed ("192.0.2.1 → 192.0.1.1 ICMP echo request ...").
void summarize(const Packet& p, bool with_addresses, SummaryText& out) noexcept;

/// The name of an ICMP / ICMPv6 message type, or nullptr.
[[nodiscard]] const char* icmp_type_name(std::uint8_t type, bool v6) noexcept;

}  // namespace ipsentry::dissect
