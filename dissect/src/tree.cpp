#include "ipsentry/dissect/tree.hpp"

#include <fmt/format.h>

#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/summary.hpp"

namespace ipsentry::dissect {

Node& Node::add(std::string child_text, std::uint32_t child_offset, std::uint32_t child_length) {
  Node n;
  n.text = std::move(child_text);
  n.offset = child_offset;
  n.length = child_length;
  children.push_back(std::move(n));
  return children.back();
}

std::uint16_t Tree::add_buffer(Bytes bytes) {
  buffers.emplace_back(bytes.begin(), bytes.end());
  return static_cast<std::uint16_t>(buffers.size());
}

std::string hex_string(Bytes b, std::size_t max) {
  std::string s;
  s.reserve(std::min(b.size(), max) * 2 + 3);
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < b.size() && i < max; ++i) {
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 15];
  }
  if (b.size() > max) s += "…";
  return s;
}

Node* find_role(Node& root, NodeRole role, std::uint16_t buffer) {
  if (root.role == role && root.buffer == buffer) return &root;
  for (auto& c : root.children) {
    if (Node* n = find_role(c, role, buffer)) return n;
  }
  return nullptr;
}

std::string render_tree(const Node& root, int indent) {
  std::string out;
  out.append(static_cast<std::size_t>(indent) * 2, ' ');
  out += root.text;
  out += '\n';
  for (const auto& c : root.children) out += render_tree(c, indent + 1);
  return out;
}

namespace {

std::string proto_name(std::uint8_t p) {
  const char* n = ip_protocol_name(p);
  return n != nullptr ? fmt::format("{} ({})", n, p) : fmt::format("{}", p);
}

void add_link(const Packet& p, Node& parent) {
  const auto lt = static_cast<LinkType>(p.link.linktype);
  const std::uint32_t l3 = p.link.l3_offset;
  switch (lt) {
    case LinkType::ethernet: {
      if (p.data.size() < 14) return;
      auto mac = [&](std::size_t off) {
        return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", p.data[off], p.data[off + 1],
                           p.data[off + 2], p.data[off + 3], p.data[off + 4], p.data[off + 5]);
      };
      Node& n = parent.add_here(fmt::format("Ethernet II, {} → {}", mac(6), mac(0)), 0, l3);
      n.add_here("Destination: " + mac(0), 0, 6);
      n.add_here("Source: " + mac(6), 6, 6);
      for (unsigned i = 0; i < p.link.vlan_count && i < p.link.vlan.size(); ++i) {
        n.add_here(fmt::format("802.1Q VLAN ID {}", p.link.vlan[i] & 0x0fff), 12 + 4 * i, 4);
      }
      n.add_here(fmt::format("Type: 0x{:04x}", p.link.ethertype), l3 - 2, 2);
      break;
    }
    case LinkType::linux_sll:
    case LinkType::linux_sll2:
      parent.add_here(fmt::format("Linux cooked capture{}, protocol 0x{:04x}",
                                  lt == LinkType::linux_sll2 ? " v2" : "", p.link.ethertype),
                      0, l3);
      break;
    case LinkType::null_bsd:
    case LinkType::loop: parent.add_here("Loopback (address family header)", 0, l3); break;
    case LinkType::raw: break;
    default: parent.add_here(fmt::format("Link type {}", p.link.linktype), 0, l3); break;
  }
}

void add_ip(const Packet& p, Node& parent) {
  const IpLayer& ip = p.ip;
  const std::uint32_t off = ip.offset;
  if (ip.version == 4) {
    Node& n = parent.add_here(fmt::format("Internet Protocol Version 4, {} → {}", ip.src.str(), ip.dst.str()), off,
                              ip.header_len);
    n.add_here(fmt::format("Header length: {} bytes", ip.header_len), off, 1);
    n.add_here(fmt::format("Total length: {}", ip.total_len), off + 2, 2);
    n.add_here(fmt::format("Identification: 0x{:04x}", ip.fragment_id), off + 4, 2);
    if (ip.fragment) {
      n.add_here(fmt::format("Fragment offset: {}{}", ip.fragment_offset, ip.first_fragment ? " (first fragment)" : ""),
                 off + 6, 2);
    }
    n.add_here(fmt::format("Time to live: {}", ip.ttl), off + 8, 1);
    n.add_here("Protocol: " + proto_name(p.data.size() > off + 9 ? p.data[off + 9] : ip.protocol), off + 9, 1);
    n.add_here("Source: " + ip.src.str(), off + 12, 4);
    n.add_here("Destination: " + ip.dst.str(), off + 16, 4);
    if (ip.header_len > 20) n.add_here(fmt::format("Options ({} bytes)", ip.header_len - 20), off + 20, ip.header_len - 20u);
    if (!(ip.final_dst == ip.dst) && !ip.final_dst.empty()) n.add_here("Final destination (source route): " + ip.final_dst.str(), off, 0);
  } else if (ip.version == 6) {
    Node& n = parent.add_here(fmt::format("Internet Protocol Version 6, {} → {}", ip.src.str(), ip.dst.str()), off,
                              ip.header_len);
    n.add_here(fmt::format("Payload length: {}", ip.total_len > 40 ? ip.total_len - 40 : 0), off + 4, 2);
    n.add_here(fmt::format("Hop limit: {}", ip.ttl), off + 7, 1);
    n.add_here("Source: " + ip.src.str(), off + 8, 16);
    n.add_here("Destination: " + ip.dst.str(), off + 24, 16);
    for (unsigned i = 0; i < ip.ext_count && i < ip.ext.size(); ++i) {
      static constexpr const char* kNames[] = {"Hop-by-Hop Options", "Routing", "Fragment", "Destination Options",
                                               "Mobility"};
      const std::uint8_t t = ip.ext[i].type;
      const char* name = t == 0 ? kNames[0] : t == 43 ? kNames[1] : t == 44 ? kNames[2] : t == 60 ? kNames[3] : kNames[4];
      n.add_here(fmt::format("{} header ({} bytes)", name, ip.ext[i].length), ip.ext[i].offset, ip.ext[i].length);
    }
    if (!(ip.final_dst == ip.dst) && !ip.final_dst.empty()) n.add_here("Final destination (routing header): " + ip.final_dst.str(), off, 0);
  }
}

void add_transport(const Packet& p, Node& parent) {
  const Transport& t = p.l4;
  if (!t.present) return;
  const std::uint32_t off = t.offset;
  switch (t.protocol) {
    case proto::udp: {
      Node& n = parent.add_here(fmt::format("User Datagram Protocol, {} → {}", t.sport, t.dport), off, 8);
      n.add_here(fmt::format("Source port: {}", t.sport), off, 2);
      n.add_here(fmt::format("Destination port: {}", t.dport), off + 2, 2);
      n.add_here(fmt::format("Length: {}", t.payload_len + 8), off + 4, 2);
      break;
    }
    case proto::tcp: {
      Node& n = parent.add_here(fmt::format("Transmission Control Protocol, {} → {}", t.sport, t.dport), off, 20);
      n.add_here(fmt::format("Flags: 0x{:02x}", t.tcp_flags), off + 13, 1);
      n.add_here(fmt::format("Payload: {} bytes", t.payload_len), off, 0);
      break;
    }
    case proto::icmp:
    case proto::icmpv6: {
      const char* tn = icmp_type_name(t.icmp_type, t.protocol == proto::icmpv6);
      Node& n = parent.add_here(
          fmt::format("{}, {}", t.protocol == proto::icmp ? "Internet Control Message Protocol" : "ICMPv6",
                      tn != nullptr ? tn : fmt::format("type {}", t.icmp_type)),
          off, 8);
      n.add_here(fmt::format("Type: {} ({})", tn != nullptr ? tn : "?", t.icmp_type), off, 1);
      n.add_here(fmt::format("Code: {}", t.icmp_code), off + 1, 1);
      n.add_here(fmt::format("Identifier: 0x{:04x}, sequence: {}", t.icmp_id, t.icmp_seq), off + 4, 4);
      break;
    }
    default: break;
  }
}

void add_ipsec(const Packet& p, Node& parent) {
  const IpsecHeader& h = p.ipsec;
  const std::uint32_t off = h.offset;
  if (h.kind == IpsecKind::esp) {
    Node& n = parent.add_here(
        fmt::format("Encapsulating Security Payload{}{}", h.udp_encap ? " (UDP-encapsulated)" : "",
                    h.has_spi ? fmt::format(", SPI 0x{:08x}", h.spi) : std::string(", truncated")),
        off, h.length);
    n.role = NodeRole::ipsec_header;
    if (h.has_spi) n.add_here(fmt::format("SPI: 0x{:08x}", h.spi), off, 4).role = NodeRole::spi;
    if (h.has_seq) n.add_here(fmt::format("Sequence number: {}", h.seq), off + 4, 4).role = NodeRole::sequence;
    if (h.length > 8) n.add_here(fmt::format("Payload, padding, trailer and ICV ({} bytes)", h.length - 8), off + 8, h.length - 8);
  } else if (h.kind == IpsecKind::ah) {
    Node& n = parent.add_here(fmt::format("Authentication Header, SPI 0x{:08x}", h.spi), off, h.ah_header_len);
    n.add_here("Next header: " + proto_name(h.ah_next_header), off, 1);
    n.add_here(fmt::format("Length: {} bytes", h.ah_header_len), off + 1, 1);
    n.role = NodeRole::ipsec_header;
    n.add_here(fmt::format("SPI: 0x{:08x}", h.spi), off + 4, 4).role = NodeRole::spi;
    n.add_here(fmt::format("Sequence number: {}", h.seq), off + 8, 4).role = NodeRole::sequence;
    if (h.ah_header_len > 12) {
      n.add_here(fmt::format("ICV: {}", hex_string(p.data.subspan(off + 12, std::min<std::size_t>(h.ah_header_len - 12u, p.data.size() - off - 12)))), off + 12,
                 h.ah_header_len - 12u);
    }
  }
}

}  // namespace

void add_packet_layers(const Packet& p, Node& parent, std::uint16_t buffer) {
  // Children of `parent` refer to `buffer`; set it once on a scratch node.
  Node scratch;
  scratch.buffer = buffer;
  add_link(p, scratch);
  add_ip(p, scratch);
  if (p.is_ipsec() && !p.ipsec.udp_encap) {
    add_ipsec(p, scratch);
  } else {
    add_transport(p, scratch);
    if (p.encap == UdpEncap::nat_keepalive) scratch.add_here("NAT-keepalive (RFC 3948)", p.l4.offset + 8, 1);
    if (p.encap == UdpEncap::ike_marker) scratch.add_here("Non-ESP marker (RFC 3948)", p.ike_offset - 4u, 4);
    if (p.is_ipsec()) add_ipsec(p, scratch);
    if (p.is_ike() && p.ike_offset < p.data.size()) {
      ike::add_message(p.data.subspan(p.ike_offset), p.ike_offset, scratch);
    }
  }
  if (p.malformed != nullptr) scratch.add_here(fmt::format("[malformed: {}]", p.malformed), 0, 0);
  else if (p.truncated) scratch.add_here("[truncated by the capture's snapshot length]", 0, 0);
  for (auto& c : scratch.children) parent.children.push_back(std::move(c));
}

void build_frame_tree(const Frame& frame, const Packet& p, Tree& out) {
  out.root = Node{};
  out.buffers.clear();
  out.root.text = fmt::format("Frame {}: {} bytes on wire, {} captured", frame.number, frame.orig_len,
                              frame.data.size());
  out.root.offset = 0;
  out.root.length = static_cast<std::uint32_t>(frame.data.size());
  add_packet_layers(p, out.root, 0);
}

}  // namespace ipsentry::dissect
