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

bool is_ipsec(PolicyAction a) noexcept { return a == PolicyAction::protect || a == PolicyAction::negotiate; }

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
  entry_counts_.assign(entries.size(), std::vector<std::uint64_t>(kAuditVerdictCount, 0));
  cleartext_ns_.resize(entries.size());
  counts_.assign(kAuditVerdictCount, 0);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const filters::PolicyConfig* pol = entries[i].policy;
    if (pol == nullptr) continue;
    if (pol->action == PolicyAction::negotiate) {
      negotiates_ = true;
      for (const auto& prof : config_.ike_profiles) {
        if (prof.name == pol->ike) negotiated_lifetime_[i] = prof.child_lifetime;
      }
    }
    for (const auto& name : pol->sas) {
      for (const auto& sa : config_.sas) {
        if (sa.name == name) listed_[i].push_back({sa.protocol, sa.spi, sa.name});
      }
    }
  }
}

std::string PolicyAudit::vantage() const {
  std::string out;
  for (const auto& a : spd_.local().addresses) out += (out.empty() ? "" : ", ") + a.str();
  return out;
}

const SpdEntry* PolicyAudit::first_match(const filters::PacketSelector& sel, Sense sense,
                                         bool forwarded) const noexcept {
  for (const auto& e : spd_.entries()) {
    if (is_ipsec(e.action) && e.sense != sense) continue;
    // Unlike Spd::lookup, an exemption for root's sockets counts: a capture
    // does not show who sent a packet, and the audit gives it the benefit
    // of the doubt rather than calling IKE a leak.
    if (e.exemption && (e.sense != sense || forwarded)) continue;
    if (e.matches(sel, spd_.local())) return &e;
  }
  return nullptr;
}

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
  bool allowed = false;
  if (!out_bound) {
    allowed = pol.inbound != filters::InboundCleartext::require;
  } else if (e->action == PolicyAction::protect) {
    // A respond policy answers in the clear a peer that has not used IPsec.
    allowed = pol.inbound == filters::InboundCleartext::respond;
  } else {
    // Negotiate: request falls back to cleartext when the negotiation
    // fails; respond never starts one.
    allowed = pol.inbound != filters::InboundCleartext::require;
  }
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
  const auto& local = spd_.local();
  const bool from_me = local.contains(out.sel.src);
  const bool to_me = local.contains(out.sel.dst);
  // This host's IKE daemon speaks from and to its ports 500 and 4500.
  auto ike_port = [](std::uint16_t port) { return port == 500 || port == 4500; };
  const bool ike = p.is_ike() && ((from_me && ike_port(out.sel.sport)) || (to_me && ike_port(out.sel.dport)));
  if (from_me || !to_me) {
    verdict_for_clear(first_match(out.sel, Sense::outbound, !from_me), Sense::outbound, ike, out);
    if (from_me || flagged(out.verdict)) return;
  }
  // Arriving at this host, or passing through it: a forwarded packet is
  // judged by both senses (the capture does not say which way it crossed
  // the gateway), and a finding of either counts.
  AuditResult in = out;
  verdict_for_clear(first_match(out.sel, Sense::inbound, !to_me), Sense::inbound, ike, in);
  if (to_me || flagged(in.verdict) || (out.verdict == AuditVerdict::permitted && in.verdict != out.verdict)) {
    out = in;
  }
}

bool PolicyAudit::lists_sa(std::size_t entry, const ipsec::Sad& sad, std::int32_t sa, filters::IpsecProtocol protocol,
                           std::uint32_t spi) const noexcept {
  for (const auto& l : listed_[entry]) {
    if (l.protocol != protocol) continue;
    if (l.spi ? *l.spi == spi : (sa >= 0 && sad.at(static_cast<std::size_t>(sa)).name() == l.name)) return true;
  }
  return false;
}

const SpdEntry* PolicyAudit::owner_of(Sense sense, const ipsec::Sad& sad, std::int32_t sa,
                                      filters::IpsecProtocol protocol, std::uint32_t spi) const noexcept {
  const auto& entries = spd_.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].action == PolicyAction::protect && entries[i].sense == sense &&
        lists_sa(i, sad, sa, protocol, spi)) {
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
  out.sel = filters::selector_of(inner);
  out.sa = l0.sa;
  const SpdEntry* e = spd_.lookup_protected(out.sel, out.sense);
  out.entry = e;
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
        if (!lists_sa(idx, sad, l.sa, l.protocol, l.spi)) why = "came on an SA its policy does not list";
      } else if (owner_of(out.sense, sad, l.sa, l.protocol, l.spi) != nullptr) {
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
  }
  if (why == nullptr) {
    out.verdict = AuditVerdict::conforms;
    return;
  }
  out.verdict = AuditVerdict::policy_mismatch;
  out.why = why;
  const SpdEntry* own = owner_of(out.sense, sad, l0.sa, l0.protocol, l0.spi);
  out.own = own != e ? own : nullptr;
}

void PolicyAudit::account(const FrameResult& f, const ipsec::Sad& sad) {
  const AuditResult& a = f.audit;
  ++counts_[static_cast<std::size_t>(a.verdict)];
  // The verifier resets only the verdict of a frame it did not judge.
  if (a.verdict == AuditVerdict::none) return;
  // A mismatch belongs to the policy whose SA carried it, which is what
  // the operator has to look at, more than what the packet matched.
  const filters::SpdEntry* counted = a.verdict == AuditVerdict::policy_mismatch && a.own != nullptr ? a.own : a.entry;
  if (counted == nullptr) return;
  ++entry_counts_[entry_index(counted)][static_cast<std::size_t>(a.verdict)];
  if (a.entry == nullptr) return;
  const std::size_t idx = entry_index(a.entry);
  if (a.verdict == AuditVerdict::cleartext_leak || a.verdict == AuditVerdict::fallback) {
    cleartext_ns_[idx].push_back(f.ts_ns);
    return;
  }
  if (a.verdict != AuditVerdict::conforms || a.sa < 0) return;
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
      if (prev.successor < 0) prev.successor = a.sa;
    }
    it->newest = a.sa;
  } else if (slots_[static_cast<std::size_t>(slot_of_[sa])].newest != a.sa) {
    ++t.after_successor;
  }
  t.last_ns = f.ts_ns;
  ++t.packets;
  if (t.lifetime_s != 0 && f.ts_ns - t.first_ns > static_cast<std::int64_t>(t.lifetime_s) * 1'000'000'000) {
    ++t.after_lifetime;
  }
}

void PolicyAudit::finish() {
  for (auto& v : cleartext_ns_) std::sort(v.begin(), v.end());
  for (auto& t : timelines_) {
    if (!t.seen || t.successor < 0) continue;
    const SaTimeline& next = timelines_[static_cast<std::size_t>(t.successor)];
    const std::int64_t d = next.first_ns - t.last_ns;
    t.overlap_s = d < 0 ? static_cast<double>(-d) / 1e9 : 0.0;
    t.gap_s = d > 0 ? static_cast<double>(d) / 1e9 : 0.0;
    const auto& clear = cleartext_ns_[t.entry];
    t.cleartext_in_gap = d > 0
                             ? static_cast<std::uint64_t>(std::lower_bound(clear.begin(), clear.end(), next.first_ns) -
                                                          std::upper_bound(clear.begin(), clear.end(), t.last_ns))
                             : 0;
  }
}

}  // namespace ipsentry::capture
