#include "ipsentry/dissect/summary.hpp"

#include <fmt/format.h>

#include <iterator>

namespace ipsentry::dissect {

namespace {

class Out {
 public:
  explicit Out(SummaryText& s) : s_(s) { s_.size = 0; }
  template <typename... Args>
  void put(fmt::format_string<Args...> f, Args&&... args) {
    std::size_t cap = sizeof(s_.text) - 1;
    if (s_.size >= cap) return;
    auto r = fmt::format_to_n(s_.text + s_.size, cap - s_.size, f, std::forward<Args>(args)...);
    s_.size += std::min<std::size_t>(r.size, cap - s_.size);
  }
  void finish() { s_.text[s_.size] = '\0'; }

 private:
  SummaryText& s_;
};

const char* tcp_flag_names[] = {"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"};

const char* ospf_type_name(std::uint8_t t) {
  switch (t) {
    case 1: return "Hello";
    case 2: return "DB Description";
    case 3: return "LS Request";
    case 4: return "LS Update";
    case 5: return "LS Acknowledge";
    default: return nullptr;
  }
}

const char* icmp_unreach_name(std::uint8_t code) {
  switch (code) {
    case 0: return "net unreachable";
    case 1: return "host unreachable";
    case 2: return "protocol unreachable";
    case 3: return "port unreachable";
    case 4: return "fragmentation needed";
    case 13: return "administratively prohibited";
    default: return nullptr;
  }
}

}  // namespace

const char* icmp_type_name(std::uint8_t type, bool v6) noexcept {
  if (!v6) {
    switch (type) {
      case 0: return "echo reply";
      case 3: return "destination unreachable";
      case 4: return "source quench";
      case 5: return "redirect";
      case 8: return "echo request";
      case 11: return "time exceeded";
      case 12: return "parameter problem";
      case 13: return "timestamp request";
      case 14: return "timestamp reply";
      default: return nullptr;
    }
  }
  switch (type) {
    case 1: return "destination unreachable";
    case 2: return "packet too big";
    case 3: return "time exceeded";
    case 4: return "parameter problem";
    case 128: return "echo request";
    case 129: return "echo reply";
    case 130: return "multicast listener query";
    case 131: return "multicast listener report";
    case 132: return "multicast listener done";
    case 133: return "router solicitation";
    case 134: return "router advertisement";
    case 135: return "neighbor solicitation";
    case 136: return "neighbor advertisement";
    case 137: return "redirect";
    case 143: return "multicast listener report v2";
    default: return nullptr;
  }
}

namespace {

// What the packet carries above IP, without addresses.
void summarize_upper(const Packet& p, Out& o) {
  if (p.ip.fragment && !p.ip.first_fragment) {
    o.put("IPv{} fragment id=0x{:x} offset={} ({})", p.ip.version, p.ip.fragment_id, p.ip.fragment_offset,
          ip_protocol_name(p.ip.protocol) ? ip_protocol_name(p.ip.protocol) : "?");
    return;
  }
  if (p.ipsec.kind == IpsecKind::esp) {
    if (p.ipsec.has_spi) {
      o.put("ESP{} spi 0x{:08x}", p.ipsec.udp_encap ? " (UDP-encap)" : "", p.ipsec.spi);
    } else {
      o.put("ESP{} (no SPI)", p.ipsec.udp_encap ? " (UDP-encap)" : "");
    }
    if (p.ipsec.has_seq) o.put(" seq {}", p.ipsec.seq);
    return;
  }
  if (p.ipsec.kind == IpsecKind::ah) {
    o.put("AH spi 0x{:08x}", p.ipsec.spi);
    if (p.ipsec.has_seq) o.put(" seq {}", p.ipsec.seq);
    if (p.ipsec.ah_header_len >= 12) {
      const char* n = ip_protocol_name(p.l4.protocol);
      if (n != nullptr) o.put(" / {}", n);
    }
    return;
  }
  const Transport& t = p.l4;
  const bool v6 = p.ip.version == 6;
  switch (t.protocol) {
    case proto::udp:
      if (!t.present) {
        o.put("UDP (truncated)");
        break;
      }
      o.put("UDP {} → {}", t.sport, t.dport);
      switch (p.encap) {
        case UdpEncap::ike:
        case UdpEncap::ike_marker: o.put(" ISAKMP"); break;
        case UdpEncap::nat_keepalive: o.put(" NAT-keepalive"); break;
        default:
          if (t.sport == 53 || t.dport == 53) o.put(" DNS");
          break;
      }
      o.put(" len={}", t.payload_len);
      break;
    case proto::tcp: {
      if (!t.present) {
        o.put("TCP (truncated)");
        break;
      }
      o.put("TCP {} → {} [", t.sport, t.dport);
      bool first = true;
      for (int i = 0; i < 8; ++i) {
        if (t.tcp_flags & (1 << i)) {
          o.put("{}{}", first ? "" : ",", tcp_flag_names[i]);
          first = false;
        }
      }
      o.put("] len={}", t.payload_len);
      break;
    }
    case proto::icmp:
    case proto::icmpv6: {
      const char* family = v6 ? "ICMPv6" : "ICMP";
      if (!t.present) {
        o.put("{} (truncated)", family);
        break;
      }
      const char* name = icmp_type_name(t.icmp_type, v6);
      if (name == nullptr) {
        o.put("{} type {} code {}", family, t.icmp_type, t.icmp_code);
        break;
      }
      o.put("{} {}", family, name);
      bool echo = v6 ? (t.icmp_type == 128 || t.icmp_type == 129) : (t.icmp_type == 0 || t.icmp_type == 8);
      if (echo) {
        o.put(" id=0x{:04x} seq={}", t.icmp_id, t.icmp_seq);
      } else if (!v6 && t.icmp_type == 3) {
        const char* c = icmp_unreach_name(t.icmp_code);
        if (c) o.put(" ({})", c);
      }
      break;
    }
    case proto::ospf: {
      const char* n = nullptr;
      if (t.present && t.offset + 2u <= p.data.size()) n = ospf_type_name(p.data[t.offset + 1]);
      o.put("{}{}{}", v6 ? "OSPFv3" : "OSPF", n ? " " : "", n ? n : "");
      break;
    }
    case proto::no_next: o.put("no next header (dummy packet)"); break;
    default: {
      const char* n = ip_protocol_name(t.protocol);
      if (n) {
        o.put("{}", n);
      } else {
        o.put("IP protocol {}", t.protocol);
      }
      break;
    }
  }
}

}  // namespace

void summarize(const Packet& p, bool with_addresses, SummaryText& s) noexcept {
  Out o(s);
  if (p.network == Network::arp) {
    o.put("ARP");
    o.finish();
    return;
  }
  if (p.ip.version == 0) {
    o.put("{}", p.malformed ? p.malformed : "non-IP frame");
    o.finish();
    return;
  }
  if (p.ip.src.empty()) {
    // The IP header itself does not parse: no addresses, no upper layer.
    o.put("IPv{} [malformed: {}]", p.ip.version, p.malformed != nullptr ? p.malformed : "no addresses");
    o.finish();
    return;
  }
  if (with_addresses) {
    char a[64];
    char b[64];
    p.ip.src.format(a, sizeof a);
    p.ip.dst.format(b, sizeof b);
    o.put("{} → {} ", a, b);
  }
  summarize_upper(p, o);
  // Said once, whatever the layer that did not parse.
  if (p.malformed) o.put(" [malformed: {}]", p.malformed);
  o.finish();
}

}  // namespace ipsentry::dissect
