#include "ipsentry/capture/policy_audit.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::capture {

using filters::PolicyAction;
using filters::Sense;
using filters::SpdEntry;

namespace {

struct VerdictInfo {
  std::string_view name;
  bool flagged;
};

constexpr std::array<VerdictInfo, kAuditVerdictCount> kVerdicts{{
#define IPSENTRY_AUDIT_INFO(name, text, flag) {text, flag},
    IPSENTRY_AUDIT_VERDICTS(IPSENTRY_AUDIT_INFO)
#undef IPSENTRY_AUDIT_INFO
}};

}  // namespace

std::string_view audit_name(AuditVerdict v) noexcept { return kVerdicts[static_cast<std::size_t>(v)].name; }

bool flagged(AuditVerdict v) noexcept { return kVerdicts[static_cast<std::size_t>(v)].flagged; }

std::optional<AuditVerdict> find_audit_verdict(std::string_view name) noexcept {
  for (std::size_t i = 1; i < kVerdicts.size(); ++i) {
    if (kVerdicts[i].name == name) return static_cast<AuditVerdict>(i);
  }
  return std::nullopt;
}

PolicyAudit::PolicyAudit(const filters::Config& config, filters::LocalAddresses vantage, std::string source)
    : config_(config), spd_(config, std::move(vantage)), source_(std::move(source)) {
  const auto& entries = spd_.entries();
  listed_.resize(entries.size());
  negotiated_lifetime_.assign(entries.size(), 0);
  negotiated_peer_.resize(entries.size());
  entry_counts_.assign(entries.size(), std::vector<std::uint64_t>(kAuditVerdictCount, 0));
  clear_count_.assign(entries.size(), 0);
  counts_.assign(kAuditVerdictCount, 0);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const filters::PolicyConfig* pol = entries[i].policy;
    if (pol == nullptr) continue;
    if (pol->action == PolicyAction::negotiate) {
      negotiates_ = true;
      const filters::IkeProfile* prof = config_.find_ike_profile(pol->ike);
      if (prof != nullptr) negotiated_lifetime_[i] = prof->child_lifetime;
      if (pol->mode == filters::SaMode::tunnel)
        negotiated_peer_[i] = pol->peer ? pol->peer : prof ? prof->peer : std::nullopt;
    }
    for (const auto& name : pol->sas) {
      for (const auto& sa : config_.sas) {
        if (sa.name == name) listed_[i].push_back({sa.protocol, sa.spi, sa.dst, sa.name});
      }
    }
  }
}

namespace {

// A UDP payload on port 500 or 4500 that is an ISAKMP message: a non-zero
// initiator SPI, version 1 or 2, an exchange type of that version, and a
// length that is the payload's (RFC 2408 section 3.1, RFC 7296 section
// 3.1). What merely uses the port is not IKE, and its exemption must not
// carry it.
bool looks_like_ike(const dissect::Packet& p) noexcept {
  if (!p.is_ike()) return false;
  const std::size_t at = p.ike_offset;
  if (at + 28 > p.data.size()) return false;
  const std::uint8_t* h = p.data.data() + at;
  bool spi = false;
  for (int i = 0; i < 8; ++i) spi = spi || h[i] != 0;
  const std::uint8_t major = h[17] >> 4;
  const std::uint8_t exchange = h[18];
  const bool v1 = major == 1 && ((exchange >= 1 && exchange <= 5) || exchange == 32 || exchange == 33);
  const bool v2 = major == 2 && ((exchange >= 34 && exchange <= 37) || exchange == 43 || exchange == 44);
  const std::uint32_t len =
      (std::uint32_t{h[24]} << 24) | (std::uint32_t{h[25]} << 16) | (std::uint32_t{h[26]} << 8) | h[27];
  // The UDP payload ends where the IP packet says; a capture may hold less.
  const std::size_t udp_end = p.l4.offset + 8u + p.l4.payload_len;
  const std::size_t message = udp_end > at ? udp_end - at : 0;
  const bool length_ok = len == message || (p.truncated && len > message);
  return spi && (v1 || v2) && length_ok;
}

}  // namespace

bool PolicyAudit::addressed_to_me(const dissect::IpAddr& dst) const noexcept {
  // What this host listens on: its addresses, multicast groups and
  // broadcast addresses (the inbound exemptions are written for them).
  static const dissect::IpAddr kAllOnes = *dissect::IpAddr::parse("255.255.255.255");
  const auto& local = spd_.local();
  return local.contains(dst) || dst.is_multicast() || dst == kAllOnes ||
         std::find(local.broadcasts.begin(), local.broadcasts.end(), dst) != local.broadcasts.end();
}

std::string PolicyAudit::vantage() const { return spd_.local_list(); }

void PolicyAudit::verdict_for_clear(const SpdEntry* e, Sense sense, bool ike, AuditResult& out) const noexcept {
  out.sense = sense;
  out.entry = e;
  out.why = nullptr;
  if (e != nullptr && e->exemption) {  // exemptions are permit entries: ask first
    out.verdict = AuditVerdict::exempt;
    return;
  }
  if (e == nullptr || e->action == PolicyAction::permit) {
    out.verdict = AuditVerdict::permitted;
    return;
  }
  const bool out_bound = sense == Sense::outbound;
  if (e->action == PolicyAction::block) {
    out.verdict = AuditVerdict::blocked_seen;
    out.why = out_bound ? "left although a block policy selects it" : "arrived although a block policy selects it";
    return;
  }
  // This host's own IKE (the negotiation that protects the rest) passes
  // as enforcement lets it pass, exemption or not.
  if (ike && negotiates_) {
    out.verdict = AuditVerdict::exempt;
    out.why = "IKE of this host's negotiation";
    return;
  }
  const filters::PolicyConfig& pol = *e->policy;
  // Arriving, request and respond accept cleartext. Leaving, a protect
  // policy sends it only under respond (to a peer that has not used IPsec);
  // a negotiate policy under request (when the negotiation fails) and
  // respond (it never starts one).
  const bool allowed = out_bound && e->action == PolicyAction::protect
                           ? pol.inbound == filters::InboundCleartext::respond
                           : pol.inbound != filters::InboundCleartext::require;
  if (allowed) {
    out.verdict = AuditVerdict::fallback;
    out.why = out_bound ? "the policy's documented cleartext fallback (inbound: request/respond)"
                        : "the policy accepts cleartext (inbound: request/respond)";
    return;
  }
  out.verdict = AuditVerdict::cleartext_leak;
  out.why = out_bound ? "left in the clear although its policy requires IPsec"
                      : "arrived in the clear although its policy requires IPsec";
}

void PolicyAudit::judge_clear(const dissect::Packet& p, AuditResult& out) const noexcept {
  out = AuditResult{};
  out.sel = filters::selector_of(p);
  out.fragment = p.ip.fragment;
  out.first_fragment = p.ip.first_fragment;
  out.fragment_id = p.ip.fragment_id;
  const auto& local = spd_.local();
  const bool from_me = local.contains(out.sel.src);
  const bool to_me = addressed_to_me(out.sel.dst);
  out.mine = from_me || to_me;
  // This host's IKE daemon speaks from and to its ports 500 and 4500.
  auto ike_port = [](std::uint16_t port) { return port == 500 || port == 4500; };
  const bool ike_ports = (from_me && ike_port(out.sel.sport)) || (to_me && ike_port(out.sel.dport));
  // ESP in UDP whose SA the audit has no key for also uses them.
  const bool ike = ike_ports && (looks_like_ike(p) || p.ipsec.udp_encap);
  // Unlike enforcement, an exemption for root's sockets counts: a capture
  // does not show who sent a packet, and the audit gives it the benefit of
  // the doubt rather than calling IKE a leak.
  auto judge = [&](Sense sense, bool forwarded, AuditResult& r) {
    filters::LookupScope scope{forwarded, true};
    const SpdEntry* e = spd_.lookup(r.sel, sense, scope);
    if (e != nullptr && e->is_ike_exemption() && !ike) {
      scope.past_ike = true;
      verdict_for_clear(spd_.lookup(r.sel, sense, scope), sense, false, r);
      if (flagged(r.verdict)) r.why = "uses IKE's port but is not IKE: the IKE exemption does not cover it";
      return;
    }
    verdict_for_clear(e, sense, ike, r);
  };
  if (from_me || !to_me) {
    judge(Sense::outbound, !from_me, out);
    if (from_me || flagged(out.verdict)) return;
  }
  // Arriving at this host, or passing through it: a forwarded packet is
  // judged by both senses (the capture does not say which way it crossed
  // the gateway), and a finding of either counts.
  AuditResult in = out;
  judge(Sense::inbound, !to_me, in);
  if (to_me || flagged(in.verdict) || (out.verdict == AuditVerdict::permitted && in.verdict != out.verdict)) {
    out = in;
  }
}

bool PolicyAudit::lists_sa(std::size_t entry, const ipsec::Sad& sad, const LayerRecord& l) const noexcept {
  for (const auto& x : listed_[entry]) {
    if (x.protocol != l.protocol) continue;
    if (l.sa >= 0 && sad.at(static_cast<std::size_t>(l.sa)).name() == x.name) return true;
    if (x.spi && l.has_spi && *x.spi == l.spi && (!x.dst || *x.dst == l.dst)) return true;
  }
  return false;
}

const SpdEntry* PolicyAudit::owner_of(Sense sense, const ipsec::Sad& sad, const LayerRecord& l) const noexcept {
  const auto& entries = spd_.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].action == PolicyAction::protect && entries[i].sense == sense && lists_sa(i, sad, l)) {
      return &entries[i];
    }
  }
  return nullptr;
}

void PolicyAudit::judge_protected(const dissect::Packet& inner, const FrameResult& f, std::size_t layers,
                                  const ipsec::Sad& sad, AuditResult& out) const noexcept {
  out = AuditResult{};
  const LayerRecord& l0 = f.layers[0];
  out.outer_src = l0.src;
  out.outer_dst = l0.dst;
  const auto& local = spd_.local();
  if (local.contains(l0.dst)) {
    out.sense = Sense::inbound;
  } else if (local.contains(l0.src)) {
    out.sense = Sense::outbound;
  } else {
    return;  // somebody else's SA passing by: not this host's to judge
  }
  out.mine = true;
  out.sel = filters::selector_of(inner);
  out.sa = l0.sa;
  const SpdEntry* e = spd_.lookup_protected(out.sel, out.sense);
  out.entry = e;
  const SpdEntry* own = owner_of(out.sense, sad, l0);
  const char* why = nullptr;
  if (e == nullptr || e->action == PolicyAction::permit) {
    why = "carries traffic that no IPsec policy selects";
  } else if (e->action == PolicyAction::block) {
    why = "carries traffic that a block policy selects";
  } else {
    const filters::PolicyConfig& pol = *e->policy;
    const std::size_t idx = entry_index(e);
    bool esp = false;
    bool ah = false;
    for (std::size_t i = 0; i < layers; ++i) {
      const LayerRecord& l = f.layers[i];
      (l.protocol == filters::IpsecProtocol::esp ? esp : ah) = true;
      if (e->action == PolicyAction::protect) {
        if (!lists_sa(idx, sad, l)) why = "came on an SA its policy does not list";
      } else if (owner_of(out.sense, sad, l) != nullptr) {
        why = "came on a manually keyed SA of another policy";
      }
      if (l.mode != filters::SaMode::unspecified && l.mode != pol.mode) why = "came in another mode than its policy's";
    }
    if ((pol.ipsec != filters::PolicyIpsec::ah && !esp) || (pol.ipsec != filters::PolicyIpsec::esp && !ah)) {
      why = "lacks the IPsec protocol its policy requires";
    }
    if ((e->outer_src && *e->outer_src != l0.src) || (e->outer_dst && *e->outer_dst != l0.dst)) {
      why = "came through another tunnel than its policy's";
    }
    // A negotiated tunnel ends at the policy's peer, whatever SA it uses.
    if (const auto& peer = negotiated_peer_[idx]; peer && *peer != (out.sense == Sense::outbound ? l0.dst : l0.src)) {
      why = "came through another tunnel than its policy's";
    }
  }
  out.own = own;
  if (why == nullptr) {
    out.verdict = AuditVerdict::conforms;
    return;
  }
  out.verdict = AuditVerdict::policy_mismatch;
  out.why = why;
}

void PolicyAudit::account(FrameResult& f, const ipsec::Sad& sad) {
  AuditResult& a = f.audit;
  // The verifier resets only the verdict of a frame it did not judge.
  if (a.verdict == AuditVerdict::none) {
    ++counts_[0];
    return;
  }
  if (a.fragment && f.layer_count == 0) {
    // RFC 4301 section 7: a non-first fragment has no ports to select on.
    // It belongs to its first fragment's datagram, and shares its finding.
    auto same = [&](const FirstFragment& x) {
      return x.id == a.fragment_id && x.protocol == a.sel.protocol && x.src == a.sel.src && x.dst == a.sel.dst;
    };
    if (a.first_fragment && flagged(a.verdict)) {
      const FirstFragment first{a.sel.src, a.sel.dst, a.fragment_id, a.sel.protocol, a.verdict, a.entry, a.why};
      if (fragments_.size() < 256) {
        fragments_.push_back(first);
      } else {
        fragments_[fragment_next_++ % fragments_.size()] = first;
      }
    } else if (!a.first_fragment && !flagged(a.verdict)) {
      if (auto it = std::find_if(fragments_.begin(), fragments_.end(), same); it != fragments_.end()) {
        a.verdict = it->verdict;
        a.entry = it->entry;
        a.why = "a later fragment of a datagram whose first fragment was flagged";
      }
    }
  }
  ++counts_[static_cast<std::size_t>(a.verdict)];
  if (a.mine) ++vantage_frames_;
  // A mismatch belongs to the policy whose SA carried it, which is what
  // the operator has to look at, more than what the packet matched.
  const SpdEntry* counted = a.verdict == AuditVerdict::policy_mismatch && a.own != nullptr ? a.own : a.entry;
  if (counted == nullptr) return;
  ++entry_counts_[entry_index(counted)][static_cast<std::size_t>(a.verdict)];
  if (a.entry == nullptr) return;
  if (a.verdict == AuditVerdict::cleartext_leak || a.verdict == AuditVerdict::fallback) {
    ++clear_count_[entry_index(a.entry)];
    return;
  }
  if (a.verdict != AuditVerdict::conforms || a.sa < 0) return;
  // The SAs of one policy between the same endpoints succeed each other. A
  // manually keyed SA belongs to the policy that lists it, whichever of its
  // policies' traffic it happens to carry first (one SA pair often serves
  // an IPv4 and an IPv6 policy).
  const std::size_t idx = entry_index(a.own != nullptr ? a.own : a.entry);
  const auto sa = static_cast<std::size_t>(a.sa);
  if (timelines_.size() <= sa) {
    timelines_.resize(sa + 1);
    slot_of_.resize(sa + 1, -1);
  }
  SaTimeline& t = timelines_[sa];
  if (!t.seen) {
    t.seen = true;
    t.entry = idx;
    t.first_ns = f.ts_ns;
    t.lifetime_s = sad.at(sa).config().lifetime.seconds;
    if (t.lifetime_s == 0) t.lifetime_s = negotiated_lifetime_[idx];
    const filters::IpsecProtocol proto = f.layers[0].protocol;
    auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) {
      return s.entry == idx && s.src == a.outer_src && s.dst == a.outer_dst && s.protocol == proto;
    });
    if (it == slots_.end()) it = slots_.insert(slots_.end(), Slot{idx, a.outer_src, a.outer_dst, proto});
    slot_of_[sa] = static_cast<std::int32_t>(it - slots_.begin());
    if (it->newest >= 0) {
      t.predecessor = it->newest;
      SaTimeline& prev = timelines_[static_cast<std::size_t>(it->newest)];
      if (prev.successor < 0) {
        prev.successor = a.sa;
        // The handover: from the old SA's last packet to the new one's
        // first, and the policy's cleartext in between.
        prev.last_before_successor_ns = prev.last_ns;
        prev.gap_s = static_cast<double>(std::max<std::int64_t>(0, f.ts_ns - prev.last_ns)) / 1e9;
        prev.cleartext_in_gap = clear_count_[prev.entry] - prev.clear_mark;
      }
    }
    it->newest = a.sa;
  } else if (slots_[static_cast<std::size_t>(slot_of_[sa])].newest != a.sa) {
    ++t.after_successor;
  }
  if (t.successor < 0) t.clear_mark = clear_count_[t.entry];
  t.last_ns = f.ts_ns;
  ++t.packets;
  if (t.lifetime_s != 0 && f.ts_ns - t.first_ns > static_cast<std::int64_t>(t.lifetime_s) * 1'000'000'000) {
    ++t.after_lifetime;
  }
}

void PolicyAudit::finish() {
  for (auto& t : timelines_) {
    if (!t.seen || t.successor < 0) continue;
    const SaTimeline& next = timelines_[static_cast<std::size_t>(t.successor)];
    t.overlap_s = static_cast<double>(std::max<std::int64_t>(0, t.last_ns - next.first_ns)) / 1e9;
  }
}

}  // namespace ipsentry::capture
