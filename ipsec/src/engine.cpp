#include "ipsentry/ipsec/engine.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::ipsec {

using dissect::Bytes;
using dissect::IpsecKind;
using dissect::load_be16;
using dissect::Packet;
using dissect::store_be16;
using dissect::store_be32;
using filters::IpsecProtocol;
using filters::SaMode;

namespace {

// Large enough for any IP packet plus the headers outbound() adds.
constexpr std::size_t kBuffer = 65536 + 512;

bool is_tunnel_next_header(std::uint8_t nh) { return nh == dissect::proto::ipv4 || nh == dissect::proto::ipv6; }

// RFC 4302 Appendix A.1: the IPv4 options that keep their value in transit.
bool ipv4_option_immutable(std::uint8_t type) {
  switch (type) {
    case 0:    // end of option list
    case 1:    // no operation
    case 130:  // security
    case 133:  // extended security
    case 134:  // commercial security
    case 148:  // router alert
    case 149:  // sender directed multi-destination delivery
      return true;
    default: return false;
  }
}

// Does the decrypted payload look like what its next header announces? A
// wrong key almost never passes the padding check, and this catches the rest.
bool inner_consistent(std::uint8_t nh, Bytes pl) {
  switch (nh) {
    case dissect::proto::ipv4: {
      if (pl.size() < 20 || (pl[0] >> 4) != 4 || (pl[0] & 0x0f) < 5) return false;
      std::size_t total = load_be16(pl.data() + 2);
      // Tunnel mode may carry TFC padding after the inner packet (RFC 4303 2.7).
      return total >= std::size_t{(pl[0] & 0x0fu)} * 4 && total <= pl.size();
    }
    case dissect::proto::ipv6:
      return pl.size() >= 40 && (pl[0] >> 4) == 6 && 40u + load_be16(pl.data() + 4) <= pl.size();
    case dissect::proto::tcp:
      return pl.size() >= 20 && (pl[12] >> 4) >= 5 && static_cast<std::size_t>(pl[12] >> 4) * 4 <= pl.size();
    case dissect::proto::udp: {
      if (pl.size() < 8) return false;
      std::size_t len = load_be16(pl.data() + 4);
      return len >= 8 && len <= pl.size();
    }
    case dissect::proto::icmp:
    case dissect::proto::icmpv6: return pl.size() >= 4;
    case dissect::proto::esp:
    case dissect::proto::ah: return pl.size() >= 8;
    case 255:  // reserved (RFC 5237)
      return false;
    default: return true;
  }
}

// Copies the headers in front of an IPsec (or UDP-encapsulation) header and
// the payload into `buf`, as the cleartext packet the sender started from.
Bytes rebuild_transport(const Packet& p, std::size_t ipsec_start, std::uint8_t nh, Bytes payload,
                        std::vector<std::uint8_t>& buf) {
  const std::size_t prefix = ipsec_start - p.ip.offset;
  const std::size_t total = prefix + payload.size();
  if (total > buf.size() || total > 65535 + 40) return {};
  std::uint8_t* b = buf.data();
  std::memcpy(b, p.data.data() + p.ip.offset, prefix);
  std::memcpy(b + prefix, payload.data(), payload.size());
  if (p.ip.version == 4) {
    b[9] = nh;
    store_be16(b + 2, static_cast<std::uint16_t>(total));
    dissect::ipv4_set_checksum(b, p.ip.header_len);
  } else {
    if (p.ip.ext_count == 0) {
      b[6] = nh;
    } else {
      b[p.ip.ext[p.ip.ext_count - 1].offset - p.ip.offset] = nh;
    }
    store_be16(b + 4, static_cast<std::uint16_t>(total - 40));
  }
  return {b, total};
}

// RFC 3948 section 3.1.2: a NAT rewrote the outer header of a transport-mode
// packet, so the addresses the rebuilt header carries are not those the
// sender's TCP/UDP checksum covered. The peer's real addresses would come
// from IKE's NAT-OA, which manual keying does not have; the section also
// allows recomputing the checksum, and after the ICV verified the
// payload is exactly what the peer sent, so recomputing loses nothing.
// `l4` is where the upper-layer header starts in the rebuilt packet
// `b` of `total` bytes; src/dst are the addresses of its pseudo-header.
void fix_checksum_after_nat(std::uint8_t* b, std::size_t l4, std::size_t total, std::uint8_t nh,
                            const dissect::IpAddr& src, const dissect::IpAddr& dst) noexcept {
  std::size_t field = 0;
  std::size_t len = total - l4;
  switch (nh) {
    case dissect::proto::tcp: field = 16; break;
    case dissect::proto::udp:
      field = 6;
      // A zero UDP checksum over IPv4 means "none computed" and stays so.
      if (len < 8 || (src.is_v4() && load_be16(b + l4 + 6) == 0)) return;
      // TFC padding may follow a UDP datagram in transport mode (RFC 4303
      // section 2.7): the checksum covers what the UDP length says.
      len = std::min<std::size_t>(len, load_be16(b + l4 + 4));
      break;
    case dissect::proto::icmpv6: field = 2; break;  // its checksum has a pseudo-header too
    default: return;
  }
  if (len < field + 2) return;
  store_be16(b + l4 + field, 0);
  std::uint16_t c = dissect::transport_checksum(src, dst, nh, Bytes(b + l4, len));
  // transport_checksum maps 0 to 0xffff, as UDP needs; TCP and ICMPv6 take either.
  store_be16(b + l4 + field, c);
}

std::size_t ip_end(const Packet& p) {
  std::size_t end = std::size_t{p.ip.offset} + p.ip.total_len;
  return std::min(end, p.data.size());
}

void add_bytes(ByteCounters& c, std::uint64_t n, bool confidential, bool authenticated, bool tunnel) {
  ++c.packets;
  c.bytes += n;
  if (confidential) c.confidential_bytes += n;
  if (authenticated) c.authenticated_bytes += n;
  if (tunnel) {
    c.tunnel_bytes += n;
  } else {
    c.transport_bytes += n;
  }
}

}  // namespace

const char* to_string(OutboundStatus s) noexcept {
  switch (s) {
    case OutboundStatus::ok: return "ok";
    case OutboundStatus::seq_exhausted: return "sequence number space exhausted: the SA must be replaced";
    case OutboundStatus::too_big: return "protected packet would exceed 65535 bytes";
    case OutboundStatus::not_ip: return "not a whole IPv4 or IPv6 packet";
    case OutboundStatus::fragment: return "transport mode cannot protect an IP fragment";
    case OutboundStatus::family_mismatch: return "tunnel endpoints are missing or of different address families";
    case OutboundStatus::unsupported: return "the SA's algorithm is not supported";
    case OutboundStatus::no_spi: return "the SA has no fixed SPI, so it cannot protect packets";
    case OutboundStatus::unrecorded: return "the sequence number is not recorded in the state file yet";
    case OutboundStatus::failed: return "cryptographic operation failed";
  }
  return "?";
}

bool is_ipsec_candidate(const Packet& p) noexcept {
  if (p.is_ipsec()) return true;
  return p.ip.fragment && !p.ip.first_fragment &&
         (p.ip.protocol == dissect::proto::esp || p.ip.protocol == dissect::proto::ah);
}

Engine::Engine(bool lock_sas) : lock_sas_(lock_sas) {
  for (auto& s : scratch_) {
    s.plain.resize(kBuffer);
    s.rebuilt.resize(kBuffer);
  }
  ah_buf_.resize(kBuffer);
  out_.resize(kBuffer);
}

void Engine::finish(InboundResult& r, const Packet& p, std::int64_t ts_ns) noexcept {
  r.verdict = verdict_of(r.reason);
  counters_.count(r.verdict);
  if (r.sa == nullptr) return;
  SaCounters& c = r.sa->counters;
  ++c.verdicts[static_cast<std::size_t>(r.verdict)];
  auto ts = static_cast<std::uint64_t>(ts_ns);
  if (c.first_ts_ns == 0 || ts < c.first_ts_ns) c.first_ts_ns = ts;
  if (ts > c.last_ts_ns) c.last_ts_ns = ts;
  if (r.verdict != Verdict::ok) return;
  const auto& cfg = r.sa->config();
  const auto& ci = filters::cipher_info(cfg.cipher);
  const bool confidential = cfg.protocol == IpsecProtocol::esp && ci.confidential();
  const bool authenticated =
      cfg.protocol == IpsecProtocol::ah || ci.aead() ||
      (cfg.integrity != filters::Integrity::none && filters::integrity_info(cfg.integrity).checks);
  const std::uint64_t n = p.ip.total_len;
  const bool tunnel = r.mode == SaMode::tunnel;
  add_bytes(c.received, n, confidential, authenticated, tunnel);
  add_bytes(counters_.received, n, confidential, authenticated, tunnel);
}

bool Engine::recorded(SecurityAssociation& sa, const std::atomic<std::uint64_t>& ceiling, std::uint64_t seq) noexcept {
  if (seq >= sa.record_at.load(std::memory_order_relaxed) && recorder_ != nullptr) recorder_->nearing(sa);
  if (seq <= ceiling.load(std::memory_order_acquire)) return true;
  return recorder_ != nullptr && recorder_->reach(sa, ceiling, seq);
}

SecurityAssociation* Engine::inbound_sa(Sad& sad, const Packet& p) noexcept {
  const auto& h = p.ipsec;
  if (!h.has_spi) return nullptr;
  const IpsecProtocol proto =
      h.kind == IpsecKind::ah || (h.kind == IpsecKind::none && p.ip.protocol == dissect::proto::ah)
          ? IpsecProtocol::ah
          : IpsecProtocol::esp;
  return sad.lookup(h.spi, proto, p.ip.final_dst, p.ip.src);
}

Reason Engine::pre_crypto_reason(const Packet& p, const SecurityAssociation* sa, std::size_t depth) noexcept {
  if (depth >= kMaxNesting) return Reason::nested_too_deep;
  if (p.malformed != nullptr) return p.truncated ? Reason::truncated : Reason::malformed_packet;
  if (p.truncated) return Reason::truncated;
  if (p.ip.fragment) return Reason::fragment;
  if (sa == nullptr) return Reason::no_sa;
  if (sa->unsupported()) return *sa->unsupported();
  return Reason::verified;
}

void Engine::decrypt_prepared(SecurityAssociation& sa, const Packet& p, std::uint64_t top_hint, EspTransform& tr,
                              std::uint8_t* plain, InboundPrepared& out) noexcept {
  const auto& h = p.ipsec;
  out.seq = sa.replay.infer_at(top_hint, h.seq);
  out.status = tr.decrypt(p.data.subspan(h.offset, h.length), out.seq, plain, out.plain_len, &out.icv);
  out.plain = plain;
  out.decrypted = true;
}

InboundResult Engine::inbound(Sad& sad, const Packet& p, std::int64_t ts_ns, bool rebuild, std::size_t depth,
                              const InboundPrepared* prepared) noexcept {
  InboundResult r;
  const auto& h = p.ipsec;
  r.protocol = h.kind == IpsecKind::ah || (h.kind == IpsecKind::none && p.ip.protocol == dissect::proto::ah)
                   ? IpsecProtocol::ah
                   : IpsecProtocol::esp;
  r.has_spi = h.has_spi;
  r.spi = h.spi;
  r.has_seq = h.has_seq;
  r.seq = h.seq;

  SecurityAssociation* sa = prepared != nullptr ? prepared->sa : inbound_sa(sad, p);
  r.sa = sa;
  std::unique_lock<std::mutex> lock;
  if (sa != nullptr && lock_sas_) lock = std::unique_lock(sa->mutex);

  r.reason = pre_crypto_reason(p, sa, depth);
  if (r.reason != Reason::verified) {
    if (r.reason != Reason::nested_too_deep && p.malformed != nullptr) {
      r.detail = p.malformed;
    } else if (sa != nullptr && sa->unsupported() && r.reason == *sa->unsupported()) {
      r.detail = sa->unsupported_detail().c_str();
    }
  } else if (h.kind == IpsecKind::esp) {
    r = inbound_esp(*sa, p, r, rebuild, scratch_[depth], prepared);
  } else {
    r = inbound_ah(*sa, p, r, rebuild, scratch_[depth]);
  }
  finish(r, p, ts_ns);
  return r;
}

InboundResult Engine::inbound_esp(SecurityAssociation& sa, const Packet& p, InboundResult r, bool rebuild, Scratch& s,
                                  const InboundPrepared* prepared) noexcept {
  const auto& h = p.ipsec;
  EspTransform& tr = *sa.esp();
  Bytes esp = p.data.subspan(h.offset, h.length);
  const std::uint64_t seq = sa.replay.infer(h.seq);
  r.seq = seq;
  switch (sa.replay.check(seq)) {
    case ReplayWindow::Check::ok: break;
    case ReplayWindow::Check::duplicate: r.reason = Reason::replay_duplicate; return r;
    case ReplayWindow::Check::too_old: r.reason = Reason::replay_old; return r;
    case ReplayWindow::Check::zero: r.reason = Reason::seq_zero; return r;
  }
  std::size_t n = 0;
  const std::uint8_t* pl = s.plain.data();
  EspTransform::Status status;
  if (prepared != nullptr && prepared->decrypted && prepared->seq == seq) {
    status = prepared->status;
    n = prepared->plain_len;
    pl = prepared->plain;
    r.icv = prepared->icv;
  } else {
    // Not prepared, or prepared with a high half the window no longer gives (an ESN wrap).
    status = tr.decrypt(esp, seq, s.plain.data(), n, &r.icv);
  }
  switch (status) {
    case EspTransform::Status::ok: break;
    case EspTransform::Status::icv_mismatch: r.reason = Reason::icv_mismatch; return r;
    case EspTransform::Status::tag_mismatch: r.reason = Reason::tag_mismatch; return r;
    case EspTransform::Status::too_short: r.reason = Reason::esp_too_short; return r;
    case EspTransform::Status::not_aligned: r.reason = Reason::not_block_aligned; return r;
    case EspTransform::Status::failed: r.reason = Reason::crypto_error; return r;
  }
  const bool authentic = tr.checks_integrity();
  // Only an authentic packet may move the ceiling: forged high numbers
  // would otherwise make a restart refuse the peer's real ones.
  if (!recorded(sa, sa.accept_ceiling, seq)) {
    r.reason = Reason::seq_unrecorded;
    return r;
  }
  // The ICV proves the sender used this sequence number, even if what
  // follows does not decrypt cleanly (RFC 4303 section 3.4.3).
  if (authentic) sa.replay.commit(seq);
  const char* authentic_note = authentic ? "ICV verified" : nullptr;

  const std::uint8_t nh = pl[n - 1];
  const std::uint8_t pad = pl[n - 2];
  r.next_header = nh;
  r.pad_len = pad;
  if (std::size_t{pad} + 2 > n) {
    r.reason = Reason::pad_too_long;
    r.detail = authentic_note;
    return r;
  }
  const std::size_t len = n - 2 - pad;
  // RFC 4303 section 2.4: default padding is 1, 2, 3, ...
  for (std::size_t i = 0; i < pad; ++i) {
    if (pl[len + i] != static_cast<std::uint8_t>(i + 1)) {
      r.reason = Reason::bad_padding;
      r.detail = authentic_note;
      return r;
    }
  }
  Bytes payload(pl, len);
  const auto& cfg = sa.config();
  r.mode =
      cfg.mode != SaMode::unspecified ? cfg.mode : (is_tunnel_next_header(nh) ? SaMode::tunnel : SaMode::transport);
  if (!inner_consistent(nh, payload)) {
    r.reason = Reason::bad_inner_packet;
    r.detail = authentic_note;
    return r;
  }
  if (!authentic) sa.replay.commit(seq);
  r.payload = payload;
  const auto& ii = filters::integrity_info(cfg.integrity);
  if (authentic) {
    r.reason = Reason::verified;
  } else if (cfg.integrity != filters::Integrity::none && !ii.checks) {
    r.reason = Reason::icv_unchecked;
  } else {
    r.reason = Reason::verified_no_integrity;
  }
  if (nh == dissect::proto::no_next && r.reason != Reason::icv_unchecked) {
    // RFC 4303 section 2.6: a dummy packet (traffic flow confidentiality) is
    // valid and must be discarded by the receiver: there is no packet to rebuild.
    r.reason = Reason::dummy_packet;
    return r;
  }
  if (rebuild && r.mode == SaMode::transport) {
    std::size_t start = h.udp_encap ? p.l4.offset : h.offset;
    r.rebuilt = rebuild_transport(p, start, nh, payload, s.rebuilt);
    // Only what authenticated gets a checksum it did not bring: without an
    // ICV the sender's checksum is the one end-to-end check left.
    if (h.udp_encap && authentic && !r.rebuilt.empty()) {
      fix_checksum_after_nat(s.rebuilt.data(), start - p.ip.offset, r.rebuilt.size(), nh, p.ip.src, p.ip.final_dst);
    }
  }
  return r;
}

InboundResult Engine::inbound_ah(SecurityAssociation& sa, const Packet& p, InboundResult r, bool rebuild,
                                 Scratch& s) noexcept {
  const auto& h = p.ipsec;
  const std::size_t icv_field = h.ah_header_len - 12u;
  if (icv_field < sa.ah_icv_len()) {
    r.reason = Reason::ah_icv_length;
    return r;
  }
  const std::uint64_t seq = sa.replay.infer(h.seq);
  r.seq = seq;
  switch (sa.replay.check(seq)) {
    case ReplayWindow::Check::ok: break;
    case ReplayWindow::Check::duplicate: r.reason = Reason::replay_duplicate; return r;
    case ReplayWindow::Check::too_old: r.reason = Reason::replay_old; return r;
    case ReplayWindow::Check::zero: r.reason = Reason::seq_zero; return r;
  }
  const auto& cfg = sa.config();
  if (sa.ah_checks()) {
    std::uint8_t full[64];
    Reason why = ah_compute_icv(p, *sa.ah_mac(), cfg.esn, seq, ah_buf_, full);
    if (why != Reason::verified) {
      r.reason = why;
      return r;
    }
    const std::uint8_t* got = p.data.data() + h.offset + 12;
    const std::size_t icv_len = sa.ah_icv_len();
    if (!crypto::equal_ct(full, got, icv_len)) {
      r.icv.len = static_cast<std::uint8_t>(icv_len);
      r.icv.expected_known = true;
      std::memcpy(r.icv.expected.data(), full, icv_len);
      std::memcpy(r.icv.received.data(), got, icv_len);
      r.reason = Reason::icv_mismatch;
      return r;
    }
  }
  if (!recorded(sa, sa.accept_ceiling, seq)) {
    r.reason = Reason::seq_unrecorded;
    return r;
  }
  sa.replay.commit(seq);
  const std::uint8_t nh = h.ah_next_header;
  r.next_header = nh;
  const std::size_t start = std::size_t{h.offset} + h.ah_header_len;
  Bytes payload = p.data.subspan(start, ip_end(p) - start);
  r.payload = payload;
  r.mode =
      cfg.mode != SaMode::unspecified ? cfg.mode : (is_tunnel_next_header(nh) ? SaMode::tunnel : SaMode::transport);
  r.reason = sa.ah_checks() ? Reason::verified : Reason::icv_unchecked;
  if (rebuild && r.mode == SaMode::transport) r.rebuilt = rebuild_transport(p, h.offset, nh, payload, s.rebuilt);
  return r;
}

Reason ah_compute_icv(const Packet& p, crypto::Mac& mac, bool esn, std::uint64_t seq, std::vector<std::uint8_t>& buf,
                      std::uint8_t* out) noexcept {
  const auto& h = p.ipsec;
  const auto& ip = p.ip;
  const std::size_t hdr_len = h.offset - ip.offset;
  const std::size_t ah_len = h.ah_header_len;
  if (hdr_len + ah_len > buf.size()) return Reason::malformed_packet;
  std::uint8_t* b = buf.data();
  std::memcpy(b, p.data.data() + ip.offset, hdr_len + ah_len);

  if (ip.version == 4) {
    // RFC 4302 section 3.3.3.1.1.1: TOS, flags, fragment offset, TTL and
    // checksum are mutable and count as zero.
    b[1] = 0;
    b[6] = 0;
    b[7] = 0;
    b[8] = 0;
    b[10] = 0;
    b[11] = 0;
    // With a loose or strict source route not yet exhausted, the receiver
    // will see the route's last address as the destination.
    std::memcpy(b + 16, ip.final_dst.data(), 4);
    std::size_t i = 20;
    while (i < ip.header_len) {
      std::uint8_t t = b[i];
      if (t == 0) break;
      if (t == 1) {
        ++i;
        continue;
      }
      std::size_t len = b[i + 1];  // validated by the dissector
      if (!ipv4_option_immutable(t)) std::memset(b + i, 0, len);
      i += len;
    }
  } else {
    // RFC 4302 section 3.3.3.1.2: traffic class, flow label and hop limit.
    b[0] = 0x60;
    b[1] = 0;
    b[2] = 0;
    b[3] = 0;
    b[7] = 0;
    for (std::size_t e = 0; e < ip.ext_count; ++e) {
      const auto& ext = ip.ext[e];
      const std::size_t off = ext.offset - ip.offset;
      const std::size_t end = off + ext.length;
      if (ext.type == dissect::proto::hop_by_hop || ext.type == dissect::proto::dest_opts) {
        std::size_t j = off + 2;
        while (j < end) {
          std::uint8_t t = b[j];
          if (t == 0) {  // Pad1
            ++j;
            continue;
          }
          if (j + 2 > end || j + 2 + b[j + 1] > end) break;
          std::size_t l = b[j + 1];
          // The third-highest bit of the option type marks data that may
          // change en route (RFC 8200 section 4.2).
          if (t & 0x20) std::memset(b + j + 2, 0, l);
          j += 2 + l;
        }
      } else if (ext.type == dissect::proto::routing) {
        const std::uint8_t type = b[off + 2];
        const std::uint8_t left = b[off + 3];
        if (left == 0) continue;
        if (type != 0 && type != 2) return Reason::unsupported_routing;
        const std::size_t n = (ext.length - 8) / 16;
        if (left > n) return Reason::malformed_packet;
        // Present the header as the final destination will see it: the
        // destination is the last address, the addresses visited so far are
        // rotated in, and no segments are left (RFC 4302 section 3.3.3.1.2.2).
        std::uint8_t* addrs = b + off + 8;
        std::uint8_t final_dst[16];
        std::uint8_t current[16];
        std::memcpy(final_dst, addrs + (n - 1) * 16, 16);
        std::memcpy(current, b + 24, 16);
        const std::size_t first = n - left;
        std::memmove(addrs + (first + 1) * 16, addrs + first * 16, (left - 1) * 16);
        std::memcpy(addrs + first * 16, current, 16);
        std::memcpy(b + 24, final_dst, 16);
        b[off + 3] = 0;
      }
    }
  }
  std::memset(b + hdr_len + 12, 0, ah_len - 12);
  mac.begin();
  mac.update(Bytes(b, hdr_len + ah_len));
  const std::size_t start = std::size_t{h.offset} + ah_len;
  mac.update(p.data.subspan(start, ip_end(p) - start));
  if (esn) {
    // RFC 4302 section 3.3.3.1: the ESN high bits follow the packet.
    std::uint8_t hi[4];
    store_be32(hi, static_cast<std::uint32_t>(seq >> 32));
    mac.update(Bytes(hi, 4));
  }
  mac.finish(out);
  return Reason::verified;
}

// ------------------------------------------------------------------ outbound

namespace {

// Writes an outer header for tunnel mode; returns its length or 0.
std::size_t write_outer(std::uint8_t* b, const dissect::IpAddr& src, const dissect::IpAddr& dst, std::uint8_t proto,
                        const Packet& inner, std::uint16_t id) {
  std::uint8_t tc = 0;
  if (inner.ip.version == 4) {
    tc = inner.data[inner.ip.offset + 1];
  } else {
    const std::uint8_t* h = inner.data.data() + inner.ip.offset;
    tc = static_cast<std::uint8_t>(((h[0] & 0x0f) << 4) | (h[1] >> 4));
  }
  if (dst.is_v4()) {
    std::memset(b, 0, 20);
    b[0] = 0x45;
    b[1] = tc;
    store_be16(b + 4, id);
    b[8] = 64;
    b[9] = proto;
    std::memcpy(b + 12, src.data(), 4);
    std::memcpy(b + 16, dst.data(), 4);
    return 20;
  }
  std::memset(b, 0, 40);
  b[0] = static_cast<std::uint8_t>(0x60 | (tc >> 4));
  b[1] = static_cast<std::uint8_t>(tc << 4);
  b[6] = proto;
  b[7] = 64;
  std::memcpy(b + 8, src.data(), 16);
  std::memcpy(b + 24, dst.data(), 16);
  return 40;
}

// Sets the protocol / next-header field in front of the inserted header.
void patch_next_header(std::uint8_t* b, const Packet& in, bool tunnel, std::uint8_t proto) {
  if (tunnel) return;  // write_outer already did
  if (in.ip.version == 4) {
    b[9] = proto;
  } else if (in.ip.ext_count == 0) {
    b[6] = proto;
  } else {
    b[in.ip.ext[in.ip.ext_count - 1].offset - in.ip.offset] = proto;
  }
}

void fix_lengths(std::uint8_t* b, std::size_t total, std::size_t ihl_or_40) {
  if ((b[0] >> 4) == 4) {
    store_be16(b + 2, static_cast<std::uint16_t>(total));
    dissect::ipv4_set_checksum(b, ihl_or_40);
  } else {
    store_be16(b + 4, static_cast<std::uint16_t>(total - 40));
  }
}

}  // namespace

OutboundResult Engine::outbound(SecurityAssociation& sa, Bytes ip_packet, const OutboundOptions& o) {
  OutboundResult r;
  Packet in;
  dissect::dissect_ip(ip_packet, in);
  if (in.ip.version == 0 || in.ip.header_len == 0 || in.truncated ||
      (in.malformed != nullptr && in.ip.protocol == 0 && in.l4.offset == 0)) {
    r.status = OutboundStatus::not_ip;
    return r;
  }
  if (sa.unsupported()) {
    r.status = OutboundStatus::unsupported;
    return r;
  }
  if (!sa.config().spi) {
    r.status = OutboundStatus::no_spi;
    return r;
  }
  std::unique_lock<std::mutex> lock;
  if (lock_sas_) lock = std::unique_lock(sa.mutex);
  const auto& cfg = sa.config();
  const bool tunnel = cfg.mode == SaMode::tunnel;
  if (!tunnel && in.ip.fragment) {
    r.status = OutboundStatus::fragment;
    return r;
  }
  const std::uint64_t next = sa.last_sent_seq + 1;
  if ((!cfg.esn && next > 0xffffffffull) || next == 0) {
    r.status = OutboundStatus::seq_exhausted;
    return r;
  }
  if (!recorded(sa, sa.send_ceiling, next)) {
    r.status = OutboundStatus::unrecorded;
    return r;
  }
  r = cfg.protocol == IpsecProtocol::esp ? outbound_esp(sa, in, o) : outbound_ah(sa, in, o);
  if (r.status == OutboundStatus::ok) {
    sa.last_sent_seq = next;
    r.seq = next;
    const auto& ci = filters::cipher_info(cfg.cipher);
    const bool confidential = cfg.protocol == IpsecProtocol::esp && ci.confidential();
    const bool authenticated =
        cfg.protocol == IpsecProtocol::ah || ci.aead() ||
        (cfg.integrity != filters::Integrity::none && filters::integrity_info(cfg.integrity).checks);
    add_bytes(sa.counters.sent, r.packet.size(), confidential, authenticated, tunnel);
    add_bytes(counters_.sent, r.packet.size(), confidential, authenticated, tunnel);
  }
  return r;
}

OutboundResult Engine::outbound_esp(SecurityAssociation& sa, const Packet& in, const OutboundOptions& o) {
  OutboundResult r;
  const auto& cfg = sa.config();
  EspTransform& tr = *sa.esp();
  const bool tunnel = cfg.mode == SaMode::tunnel;
  const std::uint64_t seq = sa.last_sent_seq + 1;
  const Bytes whole = in.ip_bytes();
  std::uint8_t* b = out_.data();
  std::size_t pos = 0;
  std::size_t hdr = 0;
  Bytes payload;
  std::uint8_t nh;
  const std::uint8_t proto = cfg.encap ? dissect::proto::udp : dissect::proto::esp;
  if (tunnel) {
    if (!cfg.src || !cfg.dst || cfg.src->family() != cfg.dst->family()) {
      r.status = OutboundStatus::family_mismatch;
      return r;
    }
    hdr = write_outer(b, *cfg.src, *cfg.dst, proto, in, ip_id_++);
    payload = whole;
    nh = in.ip.version == 4 ? dissect::proto::ipv4 : dissect::proto::ipv6;
  } else {
    hdr = in.ip.header_len;
    std::memcpy(b, whole.data(), hdr);
    payload = whole.subspan(hdr);
    nh = in.ip.protocol;
  }
  patch_next_header(b, in, tunnel, proto);
  pos = hdr;
  std::size_t udp_at = 0;
  if (cfg.encap) {
    udp_at = pos;
    store_be16(b + pos, cfg.encap->sport);
    store_be16(b + pos + 2, o.encap_dport != 0 ? o.encap_dport : cfg.encap->dport);
    store_be32(b + pos + 4, 0);
    pos += 8;
  }
  const std::size_t align = tr.alignment();
  const std::size_t pad = (align - (payload.size() + 2) % align) % align;
  const std::size_t esp_len = 8 + tr.iv_len() + payload.size() + pad + 2 + tr.icv_len();
  const std::size_t total = pos + esp_len;
  if (total > 65535 + (b[0] >> 4 == 6 ? 40u : 0u) || total > out_.size()) {
    r.status = OutboundStatus::too_big;
    return r;
  }
  std::uint8_t* esp = b + pos;
  store_be32(esp, *cfg.spi);
  store_be32(esp + 4, static_cast<std::uint32_t>(seq));
  std::uint8_t* p = esp + 8 + tr.iv_len();
  std::memcpy(p, payload.data(), payload.size());
  p += payload.size();
  for (std::size_t i = 0; i < pad; ++i) *p++ = static_cast<std::uint8_t>(i + 1);
  *p++ = static_cast<std::uint8_t>(pad);
  *p++ = nh;
  if (!tr.encrypt({esp, esp_len}, seq, o.iv)) {
    r.status = OutboundStatus::failed;
    return r;
  }
  fix_lengths(b, total, hdr >= 20 && (b[0] >> 4) == 4 ? static_cast<std::size_t>(b[0] & 0x0f) * 4 : 40);
  if (cfg.encap) {
    store_be16(b + udp_at + 4, static_cast<std::uint16_t>(total - udp_at));
    if ((b[0] >> 4) == 6) {
      const dissect::IpAddr s = dissect::IpAddr::v6(b + 8);
      const dissect::IpAddr d = dissect::IpAddr::v6(b + 24);
      store_be16(b + udp_at + 6,
                 dissect::transport_checksum(s, d, dissect::proto::udp, Bytes(b + udp_at, total - udp_at)));
    }
  }
  r.status = OutboundStatus::ok;
  r.packet = Bytes(b, total);
  return r;
}

OutboundResult Engine::outbound_ah(SecurityAssociation& sa, const Packet& in, const OutboundOptions&) {
  OutboundResult r;
  const auto& cfg = sa.config();
  const bool tunnel = cfg.mode == SaMode::tunnel;
  const std::uint64_t seq = sa.last_sent_seq + 1;
  const Bytes whole = in.ip_bytes();
  std::uint8_t* b = out_.data();
  std::size_t hdr;
  Bytes payload;
  std::uint8_t nh;
  if (tunnel) {
    if (!cfg.src || !cfg.dst || cfg.src->family() != cfg.dst->family()) {
      r.status = OutboundStatus::family_mismatch;
      return r;
    }
    hdr = write_outer(b, *cfg.src, *cfg.dst, dissect::proto::ah, in, ip_id_++);
    payload = whole;
    nh = in.ip.version == 4 ? dissect::proto::ipv4 : dissect::proto::ipv6;
  } else {
    hdr = in.ip.header_len;
    std::memcpy(b, whole.data(), hdr);
    payload = whole.subspan(hdr);
    nh = in.ip.protocol;
  }
  patch_next_header(b, in, tunnel, dissect::proto::ah);
  const bool v6 = (b[0] >> 4) == 6;
  // RFC 4302 section 2.2: the header is a multiple of 4 bytes over IPv4 and
  // of 8 bytes over IPv6; the ICV field carries the padding.
  std::size_t ah_len = 12 + sa.ah_icv_len();
  const std::size_t align = v6 ? 8 : 4;
  ah_len = (ah_len + align - 1) / align * align;
  const std::size_t total = hdr + ah_len + payload.size();
  if (total > 65535 + (v6 ? 40u : 0u) || total > out_.size()) {
    r.status = OutboundStatus::too_big;
    return r;
  }
  std::uint8_t* ah = b + hdr;
  std::memset(ah, 0, ah_len);
  ah[0] = nh;
  ah[1] = static_cast<std::uint8_t>(ah_len / 4 - 2);
  store_be32(ah + 4, *cfg.spi);
  store_be32(ah + 8, static_cast<std::uint32_t>(seq));
  std::memcpy(ah + ah_len, payload.data(), payload.size());
  fix_lengths(b, total, v6 ? 40 : static_cast<std::size_t>(b[0] & 0x0f) * 4);
  if (sa.ah_checks()) {
    Packet out_pkt;
    dissect::dissect_ip(Bytes(b, total), out_pkt);
    if (out_pkt.ipsec.kind != IpsecKind::ah) {
      r.status = OutboundStatus::failed;
      return r;
    }
    std::uint8_t full[64];
    if (ah_compute_icv(out_pkt, *sa.ah_mac(), cfg.esn, seq, ah_buf_, full) != Reason::verified) {
      r.status = OutboundStatus::failed;
      return r;
    }
    std::memcpy(ah + 12, full, sa.ah_icv_len());
  }
  r.status = OutboundStatus::ok;
  r.packet = Bytes(b, total);
  return r;
}

}  // namespace ipsentry::ipsec
