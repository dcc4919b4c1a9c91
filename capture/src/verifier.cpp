#include "ipsentry/capture/verifier.hpp"

namespace ipsentry::capture {

using dissect::Packet;
using ipsec::Verdict;

Verifier::Verifier(ipsec::Sad& sad, bool want_decrypted, bool lock_sas)
    : sad_(sad), engine_(lock_sas), want_decrypted_(want_decrypted) {}

namespace {

bool same_selector(const filters::PacketSelector& a, const filters::PacketSelector& b) noexcept {
  // The hop limit is left out: only exemptions select on it, and the
  // judgement of IPsec passes them over.
  return a.protocol == b.protocol && a.sport == b.sport && a.dport == b.dport && a.has_ports == b.has_ports &&
         a.has_icmp_type == b.has_icmp_type && a.src == b.src && a.dst == b.dst;
}

}  // namespace

void Verifier::judge_protected(const dissect::Packet& inner, FrameResult& out, std::size_t layers) noexcept {
  const LayerRecord& l0 = out.layers[0];
  // Bundles (AH around ESP) are judged afresh: their key would be every layer's SA.
  if (layers != 1 || l0.sa < 0) {
    audit_->judge_protected(inner, out, layers, sad_, out.audit);
    return;
  }
  const filters::PacketSelector sel = filters::selector_of(inner);
  const std::uint64_t last = sel.dst.size() != 0 ? sel.dst.data()[sel.dst.size() - 1] : 0;
  std::uint64_t h = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l0.sa)) << 32) ^
                    (std::uint64_t{sel.sport} << 16) ^ sel.dport ^ (std::uint64_t{sel.protocol} << 40) ^ (last << 48);
  h *= 0x9E3779B97F4A7C15ull;  // Fibonacci hashing: the top bits mix every input bit
  AuditMemo& m = audit_memo_[h >> 58];
  if (m.sa == l0.sa && m.mode == l0.mode && m.spi == l0.spi && m.outer_src == l0.src && m.outer_dst == l0.dst &&
      same_selector(m.result.sel, sel)) {
    out.audit = m.result;
    return;
  }
  audit_->judge_protected(inner, out, layers, sad_, out.audit);
  m.sa = l0.sa;
  m.mode = l0.mode;
  m.spi = l0.spi;
  m.outer_src = l0.src;
  m.outer_dst = l0.dst;
  m.result = out.audit;
}

void Verifier::process(const dissect::Frame& frame, FrameResult& out) noexcept {
  dissect::dissect_frame(frame, packets_[0]);
  process_prepared(frame, packets_[0], nullptr, out);
}

void Verifier::process_prepared(const dissect::Frame& frame, const dissect::Packet& outer,
                                const ipsec::InboundPrepared* prepared, FrameResult& out) noexcept {
  out.number = frame.number;
  out.ts_ns = frame.ts_ns;
  out.ipsec = false;
  out.ike = false;
  out.nat_keepalive = false;
  out.malformed = nullptr;
  out.layer_count = 0;
  out.decrypted = {};
  out.audit.verdict = AuditVerdict::none;
  ++frames_.frames;
  frames_.bytes += frame.orig_len;

  outer_ = &outer;
  const Packet* p = &outer;
  out.ip = p->ip.version != 0;
  if (!ipsec::is_ipsec_candidate(*p)) {
    // A frame whose upper layer does not parse (cut by the snap length, say)
    // is judged by what its IP header says: a leak stays a leak.
    if (audit_ != nullptr && out.ip && p->encap != dissect::UdpEncap::nat_keepalive) {
      audit_->judge_clear(*p, out.audit);
    }
    if (p->is_ike()) {
      out.ike = true;
      ++frames_.ike_frames;
    } else if (p->encap == dissect::UdpEncap::nat_keepalive) {
      out.nat_keepalive = true;
      ++frames_.nat_keepalives;
    } else if (p->malformed != nullptr) {
      out.malformed = p->malformed;
      ++frames_.malformed;
    } else if (out.ip) {
      ++frames_.other_ip;
    } else {
      ++frames_.non_ip;
    }
    return;
  }
  out.ipsec = true;
  ++frames_.ipsec_frames;

  bool transport_chain = false;  // a transport-mode layer was peeled: offsets refer to an outer buffer
  for (std::size_t depth = 0; depth < ipsec::kMaxNesting + 1; ++depth) {
    if (out.layer_count == out.layers.size()) break;
    LayerRecord& rec = out.layers[out.layer_count++];
    ++frames_.ipsec_layers;
    const bool rebuild = want_decrypted_ && !transport_chain;
    ipsec::InboundResult r = engine_.inbound(sad_, *p, frame.ts_ns, rebuild, depth, depth == 0 ? prepared : nullptr);
    rec = LayerRecord{};
    rec.depth = static_cast<std::uint8_t>(depth);
    rec.src = p->ip.src;
    rec.dst = p->ip.dst;
    rec.protocol = r.protocol;
    rec.udp_encap = p->ipsec.udp_encap;
    rec.has_spi = r.has_spi;
    rec.has_seq = r.has_seq;
    rec.spi = r.spi;
    rec.seq = r.seq;
    rec.verdict = r.verdict;
    rec.reason = r.reason;
    rec.detail = r.detail;
    rec.sa = r.sa != nullptr ? static_cast<std::int32_t>(r.sa->index()) : -1;
    rec.mode = r.mode;
    rec.next_header = r.next_header;
    rec.pad_len = r.pad_len;
    rec.ip_length = p->ip.total_len;
    rec.icv = r.icv;
    rec.inner.size = 0;
    rec.inner.text[0] = '\0';

    const bool opened = r.verdict == Verdict::ok || r.reason == ipsec::Reason::icv_unchecked;
    if (!opened) {
      if (audit_ != nullptr) {
        if (depth != 0) {
          // Somebody else's IPsec inside a tunnel we opened (hosts protecting
          // their own traffic end to end): the tunnel's policy judges it.
          judge_protected(*p, out, depth);
        } else if (p->ipsec.udp_encap && r.verdict == Verdict::unknown_spi) {
          // UDP to or from port 4500 that no SA knows may be ESP whose key
          // is missing, or cleartext on that port: the policy judges it as
          // UDP (this host's own NAT-T passes as its IKE does).
          audit_->judge_clear(*p, out.audit);
        }
      }
      return;
    }
    if (depth + 1 >= packets_.size()) return;
    Packet* inner = &packets_[depth + 1];
    const bool tunnel = r.mode == filters::SaMode::tunnel &&
                        (r.next_header == dissect::proto::ipv4 || r.next_header == dissect::proto::ipv6);
    if (tunnel) {
      dissect::dissect_ip(r.payload, *inner);
      transport_chain = false;
    } else {
      *inner = *p;
      dissect::dissect_payload(r.next_header, r.payload, *inner);
      // The rebuilt packet carries the upper layer itself (what a policy
      // selects on), no longer the IPsec header.
      inner->ip.protocol = r.next_header;
      transport_chain = true;
    }
    if (summaries_) dissect::summarize(*inner, tunnel, rec.inner);
    if (ipsec::is_ipsec_candidate(*inner)) {
      p = inner;
      continue;
    }
    if (want_decrypted_) out.decrypted = tunnel ? r.payload : r.rebuilt;
    // A dummy packet carries nothing a policy selects.
    if (audit_ != nullptr && r.reason != ipsec::Reason::dummy_packet) {
      judge_protected(*inner, out, out.layer_count);
    }
    return;
  }
}

}  // namespace ipsentry::capture
