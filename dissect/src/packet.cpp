#include "ipsentry/dissect/packet.hpp"

#include <optional>

namespace ipsentry::dissect {

namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::uint16_t kEtherVlan = 0x8100;
constexpr std::uint16_t kEtherQinQ = 0x88a8;
constexpr std::uint16_t kEtherVlanOld = 0x9100;
constexpr std::uint16_t kEtherIpv6 = 0x86dd;

void set_malformed(Packet& p, const char* why) noexcept {
  if (p.malformed == nullptr) p.malformed = why;
}

void dissect_l3(std::uint16_t ethertype, std::size_t offset, Packet& p) noexcept;
void dissect_ipv4(std::size_t offset, Packet& p) noexcept;
void dissect_ipv6(std::size_t offset, Packet& p) noexcept;
void dissect_upper(std::uint8_t protocol, std::size_t offset, std::size_t end, Packet& p) noexcept;
void dissect_transport(std::uint8_t protocol, std::size_t off, std::size_t end, Packet& p) noexcept;

// Network-family values found in BSD loopback / NULL headers.
bool family_to_ethertype(std::uint32_t family, std::uint16_t& ethertype) noexcept {
  switch (family) {
    case 2: ethertype = kEtherIpv4; return true;
    case 10:  // Linux AF_INET6
    case 24:  // NetBSD, OpenBSD, BSD/OS
    case 28:  // FreeBSD
    case 30:  // macOS
      ethertype = kEtherIpv6;
      return true;
    default: return false;
  }
}

void dissect_link(std::uint32_t linktype, Packet& p) noexcept {
  const Bytes d = p.data;
  p.link.linktype = linktype;
  std::size_t off = 0;
  std::uint16_t ethertype = 0;
  switch (static_cast<LinkType>(linktype)) {
    case LinkType::ethernet: {
      if (d.size() < 14) return set_malformed(p, "Ethernet header truncated");
      ethertype = load_be16(d.data() + 12);
      off = 14;
      while (ethertype == kEtherVlan || ethertype == kEtherQinQ || ethertype == kEtherVlanOld) {
        if (d.size() < off + 4) return set_malformed(p, "802.1Q VLAN tag truncated");
        if (p.link.vlan_count < p.link.vlan.size()) {
          p.link.vlan[p.link.vlan_count++] = load_be16(d.data() + off) & 0x0fff;
        } else {
          return set_malformed(p, "too many stacked VLAN tags");
        }
        ethertype = load_be16(d.data() + off + 2);
        off += 4;
      }
      break;
    }
    case LinkType::linux_sll:
      if (d.size() < 16) return set_malformed(p, "Linux cooked (SLL) header truncated");
      ethertype = load_be16(d.data() + 14);
      off = 16;
      break;
    case LinkType::linux_sll2:
      if (d.size() < 20) return set_malformed(p, "Linux cooked v2 (SLL2) header truncated");
      ethertype = load_be16(d.data());
      off = 20;
      break;
    case LinkType::null_bsd: {
      if (d.size() < 4) return set_malformed(p, "loopback header truncated");
      // Host byte order of the capturing machine: accept either.
      std::uint32_t fam = load_le32(d.data());
      if (fam > 0xffff) fam = __builtin_bswap32(fam);
      if (!family_to_ethertype(fam, ethertype)) {
        p.network = Network::other;
        return;
      }
      off = 4;
      break;
    }
    case LinkType::loop: {
      if (d.size() < 4) return set_malformed(p, "loopback header truncated");
      if (!family_to_ethertype(load_be32(d.data()), ethertype)) {
        p.network = Network::other;
        return;
      }
      off = 4;
      break;
    }
    case LinkType::raw:
    case LinkType::ipv4:
    case LinkType::ipv6:
      if (d.empty()) return set_malformed(p, "empty raw IP frame");
      ethertype = (d[0] >> 4) == 6 ? kEtherIpv6 : kEtherIpv4;
      off = 0;
      break;
    default: p.network = Network::other; return;
  }
  p.link.ethertype = ethertype;
  p.link.l3_offset = static_cast<std::uint16_t>(off);
  dissect_l3(ethertype, off, p);
}

void dissect_l3(std::uint16_t ethertype, std::size_t offset, Packet& p) noexcept {
  switch (ethertype) {
    case kEtherIpv4: dissect_ipv4(offset, p); break;
    case kEtherIpv6: dissect_ipv6(offset, p); break;
    case kEtherArp: p.network = Network::arp; break;
    default: p.network = Network::other; break;
  }
}

// Checks the IPv4 option list for structural validity (RFC 791 section 3.1).
bool ipv4_options_valid(Bytes opts) noexcept {
  std::size_t i = 0;
  while (i < opts.size()) {
    std::uint8_t type = opts[i];
    if (type == 0) return true;  // end of option list
    if (type == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= opts.size()) return false;
    std::uint8_t len = opts[i + 1];
    if (len < 2 || i + len > opts.size()) return false;
    i += len;
  }
  return true;
}

// The last address of a loose or strict source route that still has hops to
// go (its pointer is not past the end). Options must have been validated.
std::optional<IpAddr> ipv4_route_end(Bytes opts) noexcept {
  std::size_t i = 0;
  while (i < opts.size() && opts[i] != 0) {
    if (opts[i] == 1) {
      ++i;
      continue;
    }
    const std::uint8_t type = opts[i];
    const std::uint8_t len = opts[i + 1];
    if ((type == 131 || type == 137) && len >= 7 && opts[i + 2] <= len) {
      return IpAddr::v4(opts.data() + i + len - 4);
    }
    i += len;
  }
  return std::nullopt;
}

void dissect_ipv4(std::size_t off, Packet& p) noexcept {
  const Bytes d = p.data;
  p.network = Network::ipv4;
  IpLayer& ip = p.ip;
  ip.version = 4;
  ip.offset = static_cast<std::uint16_t>(off);
  if (d.size() < off + 20) return set_malformed(p, "IPv4 header truncated");
  const std::uint8_t* h = d.data() + off;
  if ((h[0] >> 4) != 4) return set_malformed(p, "IP version is not 4");
  std::size_t ihl = static_cast<std::size_t>(h[0] & 0x0f) * 4;
  if (ihl < 20) return set_malformed(p, "IPv4 header length below 20 bytes");
  if (d.size() < off + ihl) return set_malformed(p, "IPv4 options truncated");
  ip.header_len = static_cast<std::uint16_t>(ihl);
  std::uint32_t total = load_be16(h + 2);
  const std::size_t captured = d.size() - off;
  if (total == 0) total = static_cast<std::uint32_t>(captured);  // TSO on the capturing host
  if (total < ihl) return set_malformed(p, "IPv4 total length shorter than its header");
  ip.total_len = total;
  ip.fragment_id = load_be16(h + 4);
  std::uint16_t frag = load_be16(h + 6);
  ip.fragment_offset = std::uint32_t{frag & 0x1fffu} * 8;
  bool more = (frag & 0x2000) != 0;
  ip.fragment = more || ip.fragment_offset != 0;
  ip.first_fragment = ip.fragment && ip.fragment_offset == 0;
  ip.ttl = h[8];
  ip.protocol = h[9];
  ip.src = IpAddr::v4(h + 12);
  ip.dst = IpAddr::v4(h + 16);
  ip.final_dst = ip.dst;
  if (!ipv4_options_valid(d.subspan(off + 20, ihl - 20))) {
    return set_malformed(p, "IPv4 options are malformed");
  }
  ip.final_dst = ipv4_route_end(d.subspan(off + 20, ihl - 20)).value_or(ip.dst);
  std::size_t end = off + total;
  if (end > d.size()) {
    p.truncated = true;
    end = d.size();
  }
  if (ip.fragment && !ip.first_fragment) return;  // upper headers are in the first fragment
  dissect_upper(ip.protocol, off + ihl, end, p);
}

void dissect_ipv6(std::size_t off, Packet& p) noexcept {
  const Bytes d = p.data;
  p.network = Network::ipv6;
  IpLayer& ip = p.ip;
  ip.version = 6;
  ip.offset = static_cast<std::uint16_t>(off);
  if (d.size() < off + 40) return set_malformed(p, "IPv6 header truncated");
  const std::uint8_t* h = d.data() + off;
  if ((h[0] >> 4) != 6) return set_malformed(p, "IP version is not 6");
  std::uint32_t payload = load_be16(h + 4);
  std::uint8_t next = h[6];
  ip.ttl = h[7];
  ip.src = IpAddr::v6(h + 8);
  ip.dst = IpAddr::v6(h + 24);
  ip.final_dst = ip.dst;
  const std::size_t captured = d.size() - off;
  if (payload == 0 && next != proto::no_next) {
    payload = static_cast<std::uint32_t>(captured - 40);  // jumbogram or TSO: trust the capture
  }
  ip.total_len = payload + 40;
  std::size_t end = off + 40 + payload;
  if (end > d.size()) {
    p.truncated = true;
    end = d.size();
  }
  std::size_t cur = off + 40;
  // Walk the extension-header chain (RFC 8200 section 4) up to the upper
  // layer, ESP or AH. AH is left to the IPsec layer because its ICV covers the
  // headers before it.
  for (;;) {
    bool ext = next == proto::hop_by_hop || next == proto::routing || next == proto::fragment ||
               next == proto::dest_opts || next == proto::mobility;
    if (!ext) break;
    if (next == proto::hop_by_hop && cur != off + 40) {
      ip.header_len = static_cast<std::uint16_t>(cur - off);
      ip.protocol = next;
      return set_malformed(p, "IPv6 hop-by-hop header not directly after the IPv6 header");
    }
    if (end < cur + 8) {
      ip.header_len = static_cast<std::uint16_t>(cur - off);
      ip.protocol = next;
      if (p.truncated) return set_malformed(p, "IPv6 extension header not captured (truncated)");
      return set_malformed(p, "IPv6 extension header truncated");
    }
    std::size_t len = next == proto::fragment ? 8 : (std::size_t{d[cur + 1]} + 1) * 8;
    if (end < cur + len) {
      ip.header_len = static_cast<std::uint16_t>(cur - off);
      ip.protocol = next;
      return set_malformed(p, "IPv6 extension header runs past the end of the packet");
    }
    if (ip.ext_count == ip.ext.size()) {
      return set_malformed(p, "more than 8 IPv6 extension headers");
    }
    ip.ext[ip.ext_count++] = Ipv6Ext{next, static_cast<std::uint16_t>(cur), static_cast<std::uint16_t>(len)};
    if (next == proto::fragment) {
      std::uint16_t fo = load_be16(d.data() + cur + 2);
      ip.fragment = true;
      ip.fragment_offset = std::uint32_t{fo & 0xfff8u};
      ip.first_fragment = ip.fragment_offset == 0;
      ip.fragment_id = load_be32(d.data() + cur + 4);
      if ((fo & 1) == 0 && ip.fragment_offset == 0) {
        ip.fragment = false;  // atomic fragment (RFC 6946): a whole datagram
        ip.first_fragment = false;
      }
    }
    if (next == proto::routing && (d[cur + 2] == 0 || d[cur + 2] == 2) && d[cur + 3] != 0 && len >= 24) {
      ip.final_dst = IpAddr::v6(d.data() + cur + len - 16);
    }
    next = d[cur];
    cur += len;
  }
  ip.header_len = static_cast<std::uint16_t>(cur - off);
  ip.protocol = next;
  if (ip.fragment && !ip.first_fragment) return;
  dissect_upper(next, cur, end, p);
}

void dissect_esp(std::size_t off, std::size_t end, Packet& p) noexcept {
  const Bytes d = p.data;
  IpsecHeader& s = p.ipsec;
  s.kind = IpsecKind::esp;
  s.offset = static_cast<std::uint16_t>(off);
  s.length = static_cast<std::uint32_t>(end - off);
  if (end >= off + 4) {
    s.has_spi = true;
    s.spi = load_be32(d.data() + off);
  }
  if (end >= off + 8) {
    s.has_seq = true;
    s.seq = load_be32(d.data() + off + 4);
  }
  if (!s.has_seq) {
    set_malformed(p, p.truncated ? "ESP header not fully captured (truncated by snaplen)"
                                 : "ESP header truncated (fewer than 8 bytes)");
  }
}

void dissect_ah(std::size_t off, std::size_t end, Packet& p) noexcept {
  const Bytes d = p.data;
  IpsecHeader& s = p.ipsec;
  s.kind = IpsecKind::ah;
  s.offset = static_cast<std::uint16_t>(off);
  s.length = static_cast<std::uint32_t>(end - off);
  if (end < off + 12) {
    if (end >= off + 8) {
      s.has_spi = true;
      s.spi = load_be32(d.data() + off + 4);
    }
    return set_malformed(p, p.truncated ? "AH header not fully captured (truncated by snaplen)"
                                        : "AH header truncated (fewer than 12 bytes)");
  }
  s.ah_next_header = d[off];
  s.ah_header_len = static_cast<std::uint16_t>((std::size_t{d[off + 1]} + 2) * 4);
  s.ah_reserved = load_be16(d.data() + off + 2);
  s.has_spi = true;
  s.spi = load_be32(d.data() + off + 4);
  s.has_seq = true;
  s.seq = load_be32(d.data() + off + 8);
  if (s.ah_header_len < 12) return set_malformed(p, "AH payload length field is below the minimum");
  if (end < off + s.ah_header_len) {
    return set_malformed(p, p.truncated ? "AH header not fully captured (truncated by snaplen)"
                                        : "AH length runs past the end of the packet");
  }
  if (p.ip.version == 6 && (s.ah_header_len % 8) != 0) {
    return set_malformed(p, "AH length is not a multiple of 8 bytes (required over IPv6)");
  }
  // Upper layer after AH, for summaries (the ICV check is the IPsec module's).
  std::size_t after = off + s.ah_header_len;
  std::uint8_t next = s.ah_next_header;
  if (next == proto::dest_opts && end >= after + 8) {
    std::size_t len = (std::size_t{d[after + 1]} + 1) * 8;
    if (end >= after + len) {
      next = d[after];
      after += len;
    }
  }
  if (next != proto::esp && next != proto::ah) dissect_transport(next, after, end, p);
}

void dissect_transport(std::uint8_t protocol, std::size_t off, std::size_t end, Packet& p) noexcept {
  const Bytes d = p.data;
  Transport& t = p.l4;
  t.protocol = protocol;
  t.offset = static_cast<std::uint16_t>(off);
  switch (protocol) {
    case proto::udp: {
      if (end < off + 8) {
        if (!p.truncated) set_malformed(p, "UDP header truncated");
        return;
      }
      t.present = true;
      t.sport = load_be16(d.data() + off);
      t.dport = load_be16(d.data() + off + 2);
      std::uint16_t ulen = load_be16(d.data() + off + 4);
      std::size_t payload_end = end;
      if (ulen >= 8 && off + ulen <= end) payload_end = off + ulen;
      if (ulen != 0 && ulen < 8) set_malformed(p, "UDP length field below 8");
      t.payload_len = static_cast<std::uint32_t>(payload_end - off - 8);
      std::size_t pl = off + 8;
      const bool natt = t.sport == kNatTPort || t.dport == kNatTPort;
      const bool ike = t.sport == kIkePort || t.dport == kIkePort;
      if (natt && p.ipsec.kind == IpsecKind::none) {
        std::size_t n = payload_end - pl;
        if (n == 1 && d[pl] == 0xff) {
          p.encap = UdpEncap::nat_keepalive;
        } else if (n >= 4 && load_be32(d.data() + pl) == 0) {
          p.encap = UdpEncap::ike_marker;
          p.ike_offset = static_cast<std::uint16_t>(pl + 4);
        } else if (n == 0) {
          // An empty datagram carries nothing.
        } else if (n < 4) {
          if (p.truncated) {
            // Not enough captured to tell; report what we can see.
            p.encap = UdpEncap::esp;
            p.ipsec.udp_encap = true;
            dissect_esp(pl, payload_end, p);
          } else {
            set_malformed(p, "UDP-encapsulated payload on port 4500 is shorter than an ESP SPI");
          }
        } else {
          p.encap = UdpEncap::esp;
          p.ipsec.udp_encap = true;
          dissect_esp(pl, payload_end, p);
        }
      } else if (ike) {
        p.encap = UdpEncap::ike;
        p.ike_offset = static_cast<std::uint16_t>(pl);
      }
      return;
    }
    case proto::tcp: {
      if (end < off + 20) {
        if (!p.truncated) set_malformed(p, "TCP header truncated");
        return;
      }
      std::size_t hl = static_cast<std::size_t>(d[off + 12] >> 4) * 4;
      t.sport = load_be16(d.data() + off);
      t.dport = load_be16(d.data() + off + 2);
      t.tcp_flags = d[off + 13];
      if (hl < 20) return set_malformed(p, "TCP data offset below 20 bytes");
      if (end < off + hl) {
        if (!p.truncated) set_malformed(p, "TCP options truncated");
        return;
      }
      t.present = true;
      t.payload_len = static_cast<std::uint32_t>(end - off - hl);
      return;
    }
    case proto::icmp:
    case proto::icmpv6: {
      if (end < off + 4) {
        if (!p.truncated) set_malformed(p, "ICMP header truncated");
        return;
      }
      t.present = true;
      t.icmp_type = d[off];
      t.icmp_code = d[off + 1];
      if (end >= off + 8) {
        t.icmp_id = load_be16(d.data() + off + 4);
        t.icmp_seq = load_be16(d.data() + off + 6);
      }
      t.payload_len = static_cast<std::uint32_t>(end - off - 4);
      return;
    }
    default:
      t.present = end >= off;
      t.payload_len = static_cast<std::uint32_t>(end - off);
      return;
  }
}

void dissect_upper(std::uint8_t protocol, std::size_t off, std::size_t end, Packet& p) noexcept {
  if (off > end) return set_malformed(p, "IP header longer than the packet");
  switch (protocol) {
    case proto::esp: dissect_esp(off, end, p); return;
    case proto::ah: dissect_ah(off, end, p); return;
    default: dissect_transport(protocol, off, end, p); return;
  }
}

void reset(Packet& p, Bytes data, std::uint32_t orig_len) noexcept {
  p = Packet{};
  p.data = data;
  p.orig_len = orig_len;
}

}  // namespace

const char* ip_protocol_name(std::uint8_t p) noexcept {
  switch (p) {
    case proto::hop_by_hop: return "HOPOPT";
    case proto::icmp: return "ICMP";
    case proto::igmp: return "IGMP";
    case proto::ipv4: return "IPv4";
    case proto::tcp: return "TCP";
    case proto::udp: return "UDP";
    case proto::ipv6: return "IPv6";
    case proto::routing: return "IPv6-Route";
    case proto::fragment: return "IPv6-Frag";
    case proto::gre: return "GRE";
    case proto::esp: return "ESP";
    case proto::ah: return "AH";
    case proto::icmpv6: return "ICMPv6";
    case proto::no_next: return "IPv6-NoNxt";
    case proto::dest_opts: return "IPv6-Opts";
    case proto::ospf: return "OSPF";
    case proto::pim: return "PIM";
    case proto::vrrp: return "VRRP";
    case proto::sctp: return "SCTP";
    case proto::mobility: return "Mobility";
    default: return nullptr;
  }
}

Bytes Packet::ip_bytes() const noexcept {
  if (ip.version == 0 || ip.offset > data.size()) return {};
  std::size_t end = std::size_t{ip.offset} + ip.total_len;
  if (end > data.size()) end = data.size();
  return data.subspan(ip.offset, end - ip.offset);
}

void dissect_frame(const Frame& frame, Packet& out) noexcept {
  reset(out, frame.data, frame.orig_len);
  if (frame.orig_len > frame.data.size()) out.truncated = true;
  dissect_link(frame.linktype, out);
}

void dissect_ip(Bytes ip_packet, Packet& out) noexcept {
  reset(out, ip_packet, static_cast<std::uint32_t>(ip_packet.size()));
  out.link.linktype = static_cast<std::uint32_t>(LinkType::raw);
  if (ip_packet.empty()) return set_malformed(out, "empty IP packet");
  std::uint8_t v = ip_packet[0] >> 4;
  if (v == 4) {
    out.link.ethertype = kEtherIpv4;
    dissect_ipv4(0, out);
  } else if (v == 6) {
    out.link.ethertype = kEtherIpv6;
    dissect_ipv6(0, out);
  } else {
    set_malformed(out, "inner packet is neither IPv4 nor IPv6");
  }
}

void dissect_payload(std::uint8_t protocol, Bytes payload, Packet& out) noexcept {
  IpLayer ip = out.ip;
  Network net = out.network;
  reset(out, payload, static_cast<std::uint32_t>(payload.size()));
  out.ip = ip;
  out.network = net;
  dissect_upper(protocol, 0, payload.size(), out);
}

}  // namespace ipsentry::dissect
