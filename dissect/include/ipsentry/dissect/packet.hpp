// Dissection of one frame into its layers: link, IP (with IPv4 options and
// the IPv6 extension-header chain), transport, and the IPsec headers.
//
// A Packet is a fixed-size value holding offsets into the frame bytes; it
// allocates nothing and copies no payload, so it can be filled for every
// frame on the hot path. When something does not parse, `malformed` names the
// reason (a static string) and the fields that did parse remain valid.
#pragma once

#include <array>
#include <cstdint>

#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::dissect {

/// IANA protocol numbers used across ipsentry.
namespace proto {
inline constexpr std::uint8_t hop_by_hop = 0;
inline constexpr std::uint8_t icmp = 1;
inline constexpr std::uint8_t igmp = 2;
inline constexpr std::uint8_t ipv4 = 4;
inline constexpr std::uint8_t tcp = 6;
inline constexpr std::uint8_t udp = 17;
inline constexpr std::uint8_t ipv6 = 41;
inline constexpr std::uint8_t routing = 43;
inline constexpr std::uint8_t fragment = 44;
inline constexpr std::uint8_t gre = 47;
inline constexpr std::uint8_t esp = 50;
inline constexpr std::uint8_t ah = 51;
inline constexpr std::uint8_t icmpv6 = 58;
inline constexpr std::uint8_t no_next = 59;
inline constexpr std::uint8_t dest_opts = 60;
inline constexpr std::uint8_t ospf = 89;
inline constexpr std::uint8_t pim = 103;
inline constexpr std::uint8_t vrrp = 112;
inline constexpr std::uint8_t sctp = 132;
inline constexpr std::uint8_t mobility = 135;
}  // namespace proto

/// Returns a short name for an IP protocol number ("TCP", "ESP", ...) or
/// nullptr when ipsentry has no name for it.
[[nodiscard]] const char* ip_protocol_name(std::uint8_t p) noexcept;

inline constexpr std::uint16_t kIkePort = 500;
inline constexpr std::uint16_t kNatTPort = 4500;

enum class Network : std::uint8_t { none, ipv4, ipv6, arp, other };
enum class IpsecKind : std::uint8_t { none, esp, ah };
/// What a UDP datagram on port 500 / 4500 carries (RFC 3948).
enum class UdpEncap : std::uint8_t { none, esp, nat_keepalive, ike_marker, ike };

struct Ipv6Ext {
  std::uint8_t type = 0;     // the header's own protocol number (0, 43, 44, 60, 135)
  std::uint16_t offset = 0;  // from the start of Packet::data
  std::uint16_t length = 0;  // in bytes
};

struct IpLayer {
  std::uint8_t version = 0;      // 4 or 6; 0 when absent
  std::uint16_t offset = 0;      // first byte of the IP header in Packet::data
  std::uint16_t header_len = 0;  // IPv4: IHL*4; IPv6: 40 + extension headers walked
  std::uint32_t total_len = 0;   // the length the header claims (bounded by caplen below)
  std::uint8_t protocol = 0;     // upper-layer protocol after the walked headers
  std::uint8_t ttl = 0;
  IpAddr src;
  IpAddr dst;
  // Where the packet is headed: dst, or the last address of an IPv4 source
  // route or IPv6 type 0/2 routing header that still has hops to go. An SA
  // belongs to the final destination (RFC 4301 section 4.1), so a packet
  // captured before its last hop is looked up by this address.
  IpAddr final_dst;
  bool fragment = false;        // part of a fragmented datagram
  bool first_fragment = false;  // offset 0 (the one that carries the upper headers)
  std::uint32_t fragment_offset = 0;
  std::uint32_t fragment_id = 0;
  std::uint8_t ext_count = 0;  // IPv6 extension headers before `protocol`
  std::array<Ipv6Ext, 8> ext{};
  [[nodiscard]] std::uint32_t payload_offset() const noexcept { return std::uint32_t{offset} + header_len; }
};

struct Transport {
  std::uint8_t protocol = 0;
  bool present = false;  // header fully captured and parsed
  std::uint16_t offset = 0;
  std::uint16_t sport = 0;
  std::uint16_t dport = 0;
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::uint16_t icmp_id = 0;
  std::uint16_t icmp_seq = 0;
  std::uint8_t tcp_flags = 0;
  std::uint32_t payload_len = 0;  // transport payload bytes captured
};

struct IpsecHeader {
  IpsecKind kind = IpsecKind::none;
  bool udp_encap = false;    // ESP inside UDP (RFC 3948)
  std::uint16_t offset = 0;  // first byte of the ESP/AH header in Packet::data
  std::uint32_t length = 0;  // bytes from offset to the end of the IP payload (as captured)
  bool has_spi = false;
  bool has_seq = false;
  std::uint32_t spi = 0;
  std::uint32_t seq = 0;
  // AH only (RFC 4302 section 2).
  std::uint8_t ah_next_header = 0;
  std::uint16_t ah_header_len = 0;  // whole AH header including the ICV, in bytes
  std::uint16_t ah_reserved = 0;
};

struct LinkLayer {
  std::uint32_t linktype = 0;
  std::uint16_t l3_offset = 0;
  std::uint16_t ethertype = 0;
  std::uint8_t vlan_count = 0;
  std::array<std::uint16_t, 4> vlan{};
};

struct Packet {
  Bytes data;                  // the bytes dissected (a frame, or a decrypted buffer)
  std::uint32_t orig_len = 0;  // on-the-wire length of the frame
  LinkLayer link;
  Network network = Network::none;
  IpLayer ip;
  Transport l4;
  UdpEncap encap = UdpEncap::none;
  IpsecHeader ipsec;
  std::uint16_t ike_offset = 0;     // ISAKMP header, when encap is ike / ike_marker
  bool truncated = false;           // the capture holds fewer bytes than the packet had
  const char* malformed = nullptr;  // why the packet does not parse, or nullptr

  [[nodiscard]] bool is_ipsec() const noexcept { return ipsec.kind != IpsecKind::none; }
  [[nodiscard]] bool is_ike() const noexcept { return encap == UdpEncap::ike || encap == UdpEncap::ike_marker; }
  /// The bytes of the IP packet as captured (from the IP header on).
  [[nodiscard]] Bytes ip_bytes() const noexcept;
};

/// Dissects a captured frame starting at its link layer.
void dissect_frame(const Frame& frame, Packet& out) noexcept;

/// Dissects bytes that start with an IPv4 or IPv6 header (link type raw).
void dissect_ip(Bytes ip_packet, Packet& out) noexcept;

/// Dissects a transport-layer payload whose protocol is already known (the
/// decrypted payload of a transport-mode SA). Fills `l4` and the IPsec or
/// encapsulation fields; `ip` is left as the caller set it.
void dissect_payload(std::uint8_t protocol, Bytes payload, Packet& out) noexcept;

}  // namespace ipsentry::dissect
