#include "ipsentry/tui/index.hpp"

namespace ipsentry::tui {

using ipsec::Verdict;

std::uint32_t AddressTable::intern(const dissect::IpAddr& a) {
  if (a.empty()) return 0;
  auto it = ids_.find(a);
  if (it != ids_.end()) return it->second;
  log_.append() = a;
  log_.publish();
  const auto id = static_cast<std::uint32_t>(log_.size());
  ids_.emplace(a, id);
  return id;
}

void fill_row(Row& row, const dissect::Frame& frame, const dissect::Packet& p, const capture::FrameResult& r,
              const dissect::Packet* inner, const ike::MessageRecord* ike, AddressTable& addresses) {
  row.data = frame.data.data();
  row.caplen = static_cast<std::uint32_t>(frame.data.size());
  row.orig_len = frame.orig_len;
  row.ts_ns = frame.ts_ns;
  row.linktype = static_cast<std::uint16_t>(frame.linktype);
  row.audit = static_cast<std::uint8_t>(r.audit.verdict);
  if (p.ip.version == 4) row.flags |= row_flag::ipv4;
  if (p.ip.version == 6) row.flags |= row_flag::ipv6;
  if (p.ip.version != 0) {
    row.addr[0] = addresses.intern(p.ip.src);
    row.addr[1] = addresses.intern(p.ip.dst);
    row.l4 = p.ip.protocol;
    if (p.l4.present) {
      row.port[0] = p.l4.sport;
      row.port[1] = p.l4.dport;
    }
  }
  if (r.ipsec) {
    const capture::LayerRecord& outer = r.layers[0];
    row.kind = outer.protocol == filters::IpsecProtocol::ah ? FrameKind::ah : FrameKind::esp;
    if (outer.has_spi) row.flags |= row_flag::has_spi;
    if (outer.has_seq) row.flags |= row_flag::has_seq;
    if (outer.udp_encap) row.flags |= row_flag::udp_encap;
    row.spi = outer.spi;
    row.seq = outer.seq;
    row.verdict = static_cast<std::uint8_t>(Verdict::ok);
    row.reason = static_cast<std::uint8_t>(outer.reason);
    for (std::size_t i = 0; i < r.layer_count; ++i) {
      if (r.layers[i].verdict != Verdict::ok) {
        row.verdict = static_cast<std::uint8_t>(r.layers[i].verdict);
        row.reason = static_cast<std::uint8_t>(r.layers[i].reason);
        row.fail_layer = static_cast<std::uint8_t>(i);
        break;
      }
    }
    if (inner != nullptr && inner->ip.version != 0) {
      row.flags |= row_flag::decrypted;
      row.addr[2] = addresses.intern(inner->ip.src);
      row.addr[3] = addresses.intern(inner->ip.dst);
      row.inner_l4 = inner->ip.protocol;
      if (inner->l4.present) {
        row.port[2] = inner->l4.sport;
        row.port[3] = inner->l4.dport;
      }
    }
  } else if (ike != nullptr) {
    row.kind = FrameKind::ike;
    row.exchange = ike->header.exchange;
    if (ike->header.v2()) row.flags |= row_flag::ike_v2;
    row.verdict = static_cast<std::uint8_t>(ike::verdict(*ike));
  } else if (r.ike) {
    row.kind = FrameKind::ike;
  } else if (r.nat_keepalive) {
    row.kind = FrameKind::nat_keepalive;
  } else if (r.malformed != nullptr) {
    row.kind = FrameKind::malformed;
  } else if (r.ip) {
    row.kind = FrameKind::cleartext;
  } else {
    row.kind = FrameKind::non_ip;
  }
}

}  // namespace ipsentry::tui
