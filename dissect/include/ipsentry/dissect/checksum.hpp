// The Internet checksum (RFC 1071) for IPv4 headers and UDP.
#pragma once

#include <cstdint>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::dissect {

/// One's-complement sum of 16-bit words, not yet folded or inverted.
[[nodiscard]] inline std::uint32_t checksum_add(std::uint32_t sum, Bytes data) noexcept {
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += load_be16(data.data() + i);
  if (i < data.size()) sum += std::uint32_t{data[i]} << 8;
  return sum;
}

[[nodiscard]] inline std::uint16_t checksum_fold(std::uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

/// Recomputes the header checksum of the IPv4 header at `h` (ihl bytes).
inline void ipv4_set_checksum(std::uint8_t* h, std::size_t ihl) noexcept {
  h[10] = 0;
  h[11] = 0;
  store_be16(h + 10, checksum_fold(checksum_add(0, Bytes(h, ihl))));
}

/// Checksum of a transport segment with the IPv4/IPv6 pseudo-header.
[[nodiscard]] inline std::uint16_t transport_checksum(const IpAddr& src, const IpAddr& dst, std::uint8_t proto,
                                                      Bytes segment) noexcept {
  std::uint32_t sum = 0;
  sum = checksum_add(sum, Bytes(src.data(), src.size()));
  sum = checksum_add(sum, Bytes(dst.data(), dst.size()));
  sum += proto;
  sum += static_cast<std::uint32_t>(segment.size() & 0xffff) + static_cast<std::uint32_t>(segment.size() >> 16);
  sum = checksum_add(sum, segment);
  std::uint16_t c = checksum_fold(sum);
  return c == 0 ? 0xffff : c;
}

}  // namespace ipsentry::dissect
