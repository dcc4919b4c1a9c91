#include "ipsentry/enforce/enforcer.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "ipsentry/dissect/packet.hpp"

namespace ipsentry::enforce {

using dissect::Bytes;
using dissect::Packet;
using filters::Direction;
using filters::IpsecProtocol;
using filters::PolicyAction;
using filters::Sense;
using ipsec::SecurityAssociation;

const char* outcome_key(Outcome o) noexcept {
  switch (o) {
    case Outcome::permitted: return "permitted";
    case Outcome::exempted: return "exempted";
    case Outcome::protected_sent: return "protected";
    case Outcome::decapsulated: return "decapsulated";
    case Outcome::cleartext_allowed: return "cleartext_allowed";
    case Outcome::blocked: return "blocked";
    case Outcome::cleartext_dropped: return "cleartext_dropped";
    case Outcome::ipsec_failed: return "ipsec_failed";
    case Outcome::policy_mismatch: return "policy_mismatch";
    case Outcome::dummy: return "dummy";
    case Outcome::sa_expired: return "sa_expired";
    case Outcome::seq_exhausted: return "seq_exhausted";
    case Outcome::seq_unrecorded: return "seq_unrecorded";
    case Outcome::too_big: return "too_big";
    case Outcome::not_ip: return "not_ip";
    case Outcome::protect_failed: return "protect_failed";
    case Outcome::nat_keepalive: return "nat_keepalive";
    case Outcome::count_: break;
  }
  return "?";
}

namespace {

bool same_sa(const filters::SaConfig& a, const filters::SaConfig& b) {
  return a.name == b.name && a.spi == b.spi && a.protocol == b.protocol && a.src == b.src && a.dst == b.dst &&
         a.mode == b.mode && a.cipher == b.cipher && a.integrity == b.integrity && a.enc_key == b.enc_key &&
         a.auth_key == b.auth_key && a.esn == b.esn && a.replay_window == b.replay_window &&
         a.encap.has_value() == b.encap.has_value();
}

std::size_t sa_overhead(const SecurityAssociation& sa, bool ipv6) {
  const auto& c = sa.config();
  std::size_t n = 0;
  if (c.mode == filters::SaMode::tunnel) n += (c.dst && c.dst->is_v6()) || ipv6 ? 40 : 20;
  if (c.protocol == IpsecProtocol::ah) {
    const std::size_t align = ipv6 ? 8 : 4;
    n += (12 + sa.ah_icv_len() + align - 1) / align * align;
  } else if (const auto* esp = sa.esp()) {
    n += 8 + esp->iv_len() + (esp->alignment() - 1) + 2 + esp->icv_len();
    if (c.encap) n += 8;
  } else {
    n += 8 + 16 + 15 + 2 + 32;  // unsupported SA: a generous bound
  }
  return n;
}

}  // namespace

State::State(filters::Config config, filters::LocalAddresses local)
    : config_(std::move(config)), spd_(config_, std::move(local)) {
  std::vector<filters::SaConfig> copies;
  copies.reserve(config_.sas.size());
  for (const auto& sa : config_.sas) {
    copies.push_back(sa.clone());
    // An SA given without a mode works in its policy's: the engine must not
    // guess tunnel from the next header of what a transport SA carries.
    copies.back().mode = spd_.sa_mode(sa);
  }
  sad_ = ipsec::Sad(std::move(copies));
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < sad_.size(); ++i) {
    life_.push_back(std::make_unique<SaLife>());
    life_.back()->installed = now;
  }
  entry_sas_.resize(spd_.entries().size());
  for (std::size_t e = 0; e < spd_.entries().size(); ++e) {
    const auto& entry = spd_.entries()[e];
    if (entry.action != PolicyAction::protect) continue;
    for (const auto& name : entry.policy->sas) {
      SecurityAssociation* sa = sad_.find(name);
      if (sa == nullptr) continue;  // Spd already refused unknown names
      if (spd_.sa_direction(sa->config()) == Direction::outbound) {
        (sa->config().protocol == IpsecProtocol::esp ? entry_sas_[e].esp_out : entry_sas_[e].ah_out).push_back(sa);
      } else {
        entry_sas_[e].inbound.push_back(sa);
      }
    }
  }
  respond_peers_.resize(config_.policies.size());
  pair_nat_sas();
}

void State::pair_nat_sas() {
  // Which outbound ESP-in-UDP SA sends to the peer an inbound one hears from.
  nat_learners_.resize(sad_.size());
  auto share_policy = [&](const std::string& a, const std::string& b) {
    return std::any_of(config_.policies.begin(), config_.policies.end(), [&](const filters::PolicyConfig& p) {
      return std::find(p.sas.begin(), p.sas.end(), a) != p.sas.end() &&
             std::find(p.sas.begin(), p.sas.end(), b) != p.sas.end();
    });
  };
  for (std::size_t o = 0; o < sad_.size(); ++o) {
    const filters::SaConfig& out = sad_.at(o).config();
    if (!out.encap || spd_.sa_direction(out) != Direction::outbound) continue;
    if (out.dst) life_[o]->nat.seed(*out.dst);
    for (std::size_t i = 0; i < sad_.size(); ++i) {
      const filters::SaConfig& in = sad_.at(i).config();
      if (!in.encap || spd_.sa_direction(in) != Direction::inbound) continue;
      const bool paired = in.src && out.dst ? *in.src == *out.dst : share_policy(in.name, out.name);
      if (paired) nat_learners_[i].push_back(o);
    }
  }
}

std::vector<std::string> State::inherit(State& old) {
  std::vector<std::string> kept;
  for (std::size_t i = 0; i < sad_.size(); ++i) {
    SecurityAssociation& sa = sad_.at(i);
    SecurityAssociation* prev = old.sad_.find(sa.name());
    if (prev == nullptr || !same_sa(sa.config(), prev->config())) continue;
    std::scoped_lock lock(prev->mutex);
    sa.replay = prev->replay;
    sa.last_sent_seq = prev->last_sent_seq;
    sa.counters = prev->counters;
    SaLife& was = old.life(prev->index());
    SaLife& now = life(i);
    now.installed = was.installed;
    now.soft_reported = was.soft_reported.load();
    now.hard_expired = was.hard_expired.load();
    now.exhausted_reported = was.exhausted_reported.load();
    sa.send_ceiling = prev->send_ceiling.load();
    sa.accept_ceiling = prev->accept_ceiling.load();
    sa.record_at = prev->record_at.load();
    // The peers' NAT mappings hold as long as the ports they were learned for.
    if (sa.config().encap && prev->config().encap && *sa.config().encap == *prev->config().encap) {
      now.nat.take_over(was.nat);
    }
    kept.push_back(sa.name());
  }
  return kept;
}

std::size_t State::max_overhead(bool ipv6) const noexcept {
  std::size_t worst = 0;
  for (const auto& es : entry_sas_) {
    std::size_t esp = 0;
    std::size_t ah = 0;
    for (const auto* sa : es.esp_out) esp = std::max(esp, sa_overhead(*sa, ipv6));
    for (const auto* sa : es.ah_out) ah = std::max(ah, sa_overhead(*sa, ipv6));
    worst = std::max(worst, esp + ah);
  }
  return worst;
}

bool State::respond_peer_known(std::size_t policy, const dissect::IpAddr& peer) {
  std::scoped_lock lock(respond_mu_);
  const auto& v = respond_peers_[policy];
  return std::find(v.begin(), v.end(), peer) != v.end();
}

void State::respond_peer_add(std::size_t policy, const dissect::IpAddr& peer) {
  std::scoped_lock lock(respond_mu_);
  auto& v = respond_peers_[policy];
  if (std::find(v.begin(), v.end(), peer) == v.end()) v.push_back(peer);
}

Worker::Worker() : engine_(/*lock_sas=*/true), stage_(65535 + 1024) {}

bool Worker::RateLimit::allow(std::int64_t now_ns) noexcept {
  // A burst of kBurst lines, then one per second: an attacker flooding
  // forged packets must not turn the log into the bottleneck.
  if (now_ns - window_start_ns >= 1'000'000'000) {
    window_start_ns = now_ns;
    used = 0;
  }
  if (used < kBurst) {
    ++used;
    return true;
  }
  ++suppressed;
  return false;
}

Decision Worker::done(Outcome o, bool accept) noexcept {
  ++counters_.by_outcome[static_cast<std::size_t>(o)];
  Decision d;
  d.accept = accept;
  d.outcome = o;
  return d;
}

Decision Worker::exempt(const filters::SpdEntry& e) noexcept {
  ++counters_.exempted[exemption_index(e)];
  return done(Outcome::exempted, true);
}

bool Worker::usable(State& state, SecurityAssociation& sa, bool sending) noexcept {
  SaLife& life = state.life(sa.index());
  if (life.hard_expired.load(std::memory_order_relaxed)) return false;
  const auto& lt = sa.config().lifetime;
  const auto& c = sending ? sa.counters.sent : sa.counters.received;
  const auto age = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - life.installed).count());
  const bool hard = (lt.seconds != 0 && age >= lt.seconds) || (lt.bytes != 0 && c.bytes >= lt.bytes) ||
                    (lt.packets != 0 && c.packets >= lt.packets);
  if (hard) {
    if (!life.hard_expired.exchange(true)) {
      event(EventKind::hard_expiry, [&] {
        return fmt::format(
            "SA {} ({}) reached its hard lifetime after {} s, {} packets, {} "
            "bytes: no longer used",
            sa.name(), sa.config().describe(), age, c.packets, c.bytes);
      });
    }
    return false;
  }
  const bool soft = (lt.soft_seconds != 0 && age >= lt.soft_seconds) ||
                    (lt.soft_bytes != 0 && c.bytes >= lt.soft_bytes) ||
                    (lt.soft_packets != 0 && c.packets >= lt.soft_packets);
  if (soft && !life.soft_reported.exchange(true)) {
    event(EventKind::soft_expiry, [&] {
      return fmt::format(
          "SA {} ({}) reached its soft lifetime ({} s, {} packets, {} bytes): "
          "replace it before the hard limit",
          sa.name(), sa.config().describe(), age, c.packets, c.bytes);
    });
  }
  return true;
}

Decision Worker::process(State& state, Hook hook, Bytes ip, std::uint32_t mtu, std::uint32_t ifindex,
                         std::int64_t now_ns) noexcept {
  Packet p;
  dissect::dissect_ip(ip, p);
  if (p.ip.version == 0 || p.ip.header_len == 0) return done(Outcome::not_ip, false);
  if (hook == Hook::prerouting || hook == Hook::input) return inbound(state, p, now_ns);
  return outbound(state, p, hook == Hook::forward, mtu, ifindex, now_ns);
}

Decision Worker::outbound(State& state, const Packet& p, bool forwarded, std::uint32_t mtu, std::uint32_t ifindex,
                          std::int64_t now_ns) noexcept {
  const filters::PacketSelector sel = filters::selector_of(p);
  const filters::SpdEntry* e = state.spd().lookup(sel, Sense::outbound, forwarded);
  if (e != nullptr && e->exemption) return exempt(*e);
  if (e == nullptr || e->action == PolicyAction::permit) return done(Outcome::permitted, true);
  if (e->action == PolicyAction::block) return done(Outcome::blocked, false);
  const filters::PolicyConfig& pol = *e->policy;
  if (pol.inbound == filters::InboundCleartext::respond && !state.respond_peer_known(e->policy_index, sel.dst)) {
    return done(Outcome::cleartext_allowed, true);
  }
  const auto& es = state.entry_sas(*e);
  const dissect::IpAddr& target = pol.mode == filters::SaMode::tunnel ? *pol.peer : sel.dst;
  auto pick = [&](const std::vector<SecurityAssociation*>& v) -> SecurityAssociation* {
    for (auto* sa : v) {
      if (!sa->config().dst || *sa->config().dst == target) return sa;
    }
    return nullptr;
  };
  SecurityAssociation* esp = pol.ipsec != filters::PolicyIpsec::ah ? pick(es.esp_out) : nullptr;
  SecurityAssociation* ah = pol.ipsec != filters::PolicyIpsec::esp ? pick(es.ah_out) : nullptr;
  if ((pol.ipsec != filters::PolicyIpsec::ah && esp == nullptr) ||
      (pol.ipsec != filters::PolicyIpsec::esp && ah == nullptr)) {
    // The policy lists no SA towards this destination: never send in clear.
    return done(Outcome::protect_failed, false);
  }
  for (SecurityAssociation* sa : {esp, ah}) {
    if (sa == nullptr) continue;
    if (!usable(state, *sa, true)) return done(Outcome::sa_expired, false);
  }
  // Path MTU: a packet that may be fragmented (IPv4 without DF) is sent
  // and the kernel fragments the outer packet (our outer header has DF
  // clear; in transport mode it is the packet's own). Otherwise the source
  // is told the MTU that leaves room for the protection.
  if (mtu != 0) {
    std::size_t overhead = 0;
    for (SecurityAssociation* sa : {esp, ah}) {
      if (sa != nullptr) overhead += sa_overhead(*sa, p.ip.version == 6);
    }
    const std::size_t len = p.ip_bytes().size();
    const bool df = p.ip.version == 6 || (p.data[p.ip.offset + 6] & 0x40) != 0;
    if (len + overhead > mtu && df) {
      const auto room = static_cast<std::uint32_t>(mtu > overhead ? mtu - overhead : 0);
      bool sent = icmp_ && icmp_(p, room, ifindex);
      if (sent) ++counters_.icmp_sent;
      event(EventKind::too_big, [&] {
        return fmt::format(
            "{} -> {}: {} bytes + {} of protection exceed the MTU {}; {} the "
            "source to use {}",
            sel.src.str(), sel.dst.str(), len, overhead, mtu, sent ? "told" : "could not tell", room);
      });
      return done(Outcome::too_big, false);
    }
  }
  Bytes out = p.ip_bytes();
  for (SecurityAssociation* sa : {esp, ah}) {
    if (sa == nullptr) continue;
    ipsec::OutboundOptions o;
    o.ts_ns = now_ns;
    if (sa->config().encap) o.encap_dport = state.life(sa->index()).nat.port_for(target, steady_ns());
    ipsec::OutboundResult r = engine_.outbound(*sa, out, o);
    if (r.status == ipsec::OutboundStatus::seq_exhausted) {
      SaLife& life = state.life(sa->index());
      if (!life.exhausted_reported.exchange(true)) {
        event(EventKind::seq_exhausted, [&] {
          return fmt::format(
              "SA {} ({}): sequence number {} was the last one; outbound traffic on it is dropped "
              "until it is replaced (RFC 4303 section 3.3.3)",
              sa->name(), sa->config().describe(), sa->last_sent_seq);
        });
      }
      return done(Outcome::seq_exhausted, false);
    }
    if (r.status == ipsec::OutboundStatus::unrecorded) return done(Outcome::seq_unrecorded, false);
    if (r.status != ipsec::OutboundStatus::ok) return done(Outcome::protect_failed, false);
    if (sa == esp && ah != nullptr) {
      // AH goes around ESP: the engine's buffer is reused by the next call.
      std::memcpy(stage_.data(), r.packet.data(), r.packet.size());
      out = Bytes(stage_.data(), r.packet.size());
    } else {
      out = r.packet;
    }
  }
  Decision d = done(Outcome::protected_sent, true);
  d.replacement = out;
  return d;
}

Decision Worker::inbound(State& state, const Packet& outer, std::int64_t now_ns) noexcept {
  // A NAT keepalive only keeps the NAT's mapping open and "SHOULD be ignored"
  // (RFC 3948 section 2.3): passed on, it would meet a closed port and draw an
  // ICMP error back through the NAT. It moves no mapping: nothing
  // authenticates it. IKE sharing UDP 4500 is judged below like other
  // cleartext (the ike exemption passes it).
  if (outer.encap == dissect::UdpEncap::nat_keepalive) return done(Outcome::nat_keepalive, false);
  if (!outer.is_ipsec()) {
    // Cleartext arriving (IKE on UDP 4500 included: only the ESP sharing
    // that port is IPsec): what does the policy say?
    const filters::PacketSelector sel = filters::selector_of(outer);
    const filters::SpdEntry* e = state.spd().lookup(sel, Sense::inbound);
    if (e != nullptr && e->exemption) return exempt(*e);
    if (e == nullptr || e->action == PolicyAction::permit) return done(Outcome::permitted, true);
    if (e->action == PolicyAction::block) return done(Outcome::blocked, false);
    if (e->policy->inbound != filters::InboundCleartext::require) return done(Outcome::cleartext_allowed, true);
    event(EventKind::cleartext_dropped, [&] {
      return fmt::format("cleartext {} -> {} protocol {} dropped: policy '{}' requires IPsec", sel.src.str(),
                         sel.dst.str(), sel.protocol, e->policy->name);
    });
    return done(Outcome::cleartext_dropped, false);
  }
  // Peel the IPsec layers (AH around ESP, or one of them).
  std::array<const SecurityAssociation*, ipsec::kMaxNesting> used{};
  std::array<filters::SaMode, ipsec::kMaxNesting> modes{};
  std::size_t n_used = 0;
  SecurityAssociation* outer_sa = nullptr;
  bool outer_authenticated = false;  // the ICV (or AEAD tag) of the outermost layer verified
  std::uint64_t outer_seq = 0;
  Packet layers[2];
  const Packet* cur = &outer;
  for (std::size_t depth = 0;; ++depth) {
    if (depth >= ipsec::kMaxNesting) return done(Outcome::policy_mismatch, false);
    ipsec::InboundResult r = engine_.inbound(state.sad(), *cur, now_ns, /*rebuild=*/true, depth);
    if (r.reason == ipsec::Reason::seq_unrecorded) return done(Outcome::seq_unrecorded, false);
    if (r.verdict != ipsec::Verdict::ok || r.sa == nullptr) {
      EventKind k = EventKind::decrypt_failure;
      switch (r.verdict) {
        case ipsec::Verdict::icv_fail: k = EventKind::icv_failure; break;
        case ipsec::Verdict::replay: k = EventKind::replay; break;
        case ipsec::Verdict::unknown_spi: k = EventKind::unknown_spi; break;
        default: break;
      }
      event(k, [&] {
        return fmt::format("{} {} -> {} spi 0x{:08x} seq {} dropped: {}", to_string(r.protocol), cur->ip.src.str(),
                           cur->ip.dst.str(), r.spi, r.seq, ipsec::verdict_name(r.verdict));
      });
      return done(Outcome::ipsec_failed, false);
    }
    if (!usable(state, *r.sa, false)) return done(Outcome::sa_expired, false);
    if (depth == 0) {
      outer_sa = r.sa;
      outer_authenticated = r.reason == ipsec::Reason::verified;
      outer_seq = r.seq;
    }
    // Traffic flow confidentiality padding: counted, never logged, never delivered.
    if (r.reason == ipsec::Reason::dummy_packet) return done(Outcome::dummy, false);
    used[n_used] = r.sa;
    modes[n_used++] = r.mode;
    const Bytes inner = r.mode == filters::SaMode::tunnel ? r.payload : r.rebuilt;
    if (inner.empty()) return done(Outcome::policy_mismatch, false);
    Packet& next = layers[depth % 2];
    next = Packet{};
    dissect::dissect_ip(inner, next);
    if (next.ip.version == 0) return done(Outcome::not_ip, false);
    cur = &next;
    // A tunnel may carry somebody else's IPsec (hosts behind the gateways
    // protecting their own traffic, ESP in UDP 4500 included): that is
    // forwarded, not opened here. Only what is addressed to us is.
    if (!next.is_ipsec() || (r.mode == filters::SaMode::tunnel && !state.spd().local().contains(next.ip.dst))) break;
  }
  // RFC 4301 section 5.2: the inner packet must be one its SAs may carry. The
  // first entry selecting it (exemptions aside: they are about cleartext)
  // must be a protect entry that lists every SA it came on, in that entry's
  // mode and, for a tunnel, between the entry's endpoints. Anything else -
  // an inner source outside the peer's network, a destination outside ours
  // or this gateway itself, another protocol or port - is dropped.
  const filters::PacketSelector sel = filters::selector_of(*cur);
  const filters::SpdEntry* e = state.spd().lookup_protected(sel);
  const char* why = nullptr;
  if (e == nullptr || e->action != PolicyAction::protect) {
    why = "is outside what that SA may carry";
  } else {
    const auto& es = state.entry_sas(*e);
    const filters::PolicyConfig& pol = *e->policy;
    bool esp = false;
    bool ah = false;
    for (std::size_t i = 0; i < n_used; ++i) {
      if (std::find(es.inbound.begin(), es.inbound.end(), used[i]) == es.inbound.end()) {
        why = "belongs to a policy that does not list that SA";
      } else if (modes[i] != pol.mode) {
        why = "arrived in another mode than its policy's";
      }
      (used[i]->config().protocol == IpsecProtocol::esp ? esp : ah) = true;
    }
    if ((pol.ipsec != filters::PolicyIpsec::ah && !esp) || (pol.ipsec != filters::PolicyIpsec::esp && !ah)) {
      why = "lacks the IPsec protocol its policy requires";
    }
    if ((e->outer_src && outer.ip.src != *e->outer_src) || (e->outer_dst && outer.ip.dst != *e->outer_dst)) {
      why = "came through another tunnel than its policy's";
    }
    if (why == nullptr && pol.inbound == filters::InboundCleartext::respond) {
      state.respond_peer_add(e->policy_index, sel.src);
    }
  }
  if (why != nullptr) {
    event(EventKind::policy_mismatch, [&] {
      std::string text = fmt::format("{} -> {} protocol {}", sel.src.str(), sel.dst.str(), sel.protocol);
      if (sel.has_ports) text += fmt::format(" port {} -> {}", sel.sport, sel.dport);
      text += fmt::format(" arrived on SA {} ({}", used[0]->name(), to_string(modes[0]));
      if (modes[0] == filters::SaMode::tunnel) text += fmt::format(" {} -> {}", outer.ip.src.str(), outer.ip.dst.str());
      text += fmt::format(") but {}", why);
      // Name what the SA may carry and what matched instead, so that the
      // operator sees which side is wrong.
      const filters::SpdEntry* own = nullptr;
      for (const auto& x : state.spd().entries()) {
        const auto& in = state.entry_sas(x).inbound;
        if (x.action == PolicyAction::protect && x.sense == Sense::inbound &&
            std::find(in.begin(), in.end(), used[0]) != in.end()) {
          own = &x;
          break;
        }
      }
      if (own != nullptr) text += fmt::format(" (policy '{}': {} -> {})", own->name, own->src.str(), own->dst.str());
      if (e != nullptr && e != own) text += fmt::format(" (it matches '{}' first)", e->name);
      return text + ": dropped";
    });
    return done(Outcome::policy_mismatch, false);
  }
  if (outer.ipsec.udp_encap && outer_authenticated) learn_nat_mapping(state, *outer_sa, outer_seq, outer);
  Decision d = done(Outcome::decapsulated, true);
  d.replacement = cur->ip_bytes();
  d.set_mark = kMarkDecapsulated;
  return d;
}

void Worker::learn_nat_mapping(State& state, SecurityAssociation& sa, std::uint64_t seq, const Packet& outer) noexcept {
  // RFC 7296 section 2.23: the mapping follows authenticated packets only,
  // and only the newest: a delayed packet from an old mapping, or a copy an
  // attacker resends from elsewhere before the original arrives late,
  // must not move it back or away. Without a replay window a resent copy
  // of the newest packet would pass as new, so such an SA teaches nothing.
  {
    std::scoped_lock lock(sa.mutex);
    if (sa.replay.size() == 0 || seq != sa.replay.top()) return;
  }
  const std::int64_t now = steady_ns();
  for (std::size_t o : state.nat_learners(sa.index())) {
    const SecurityAssociation& out = state.sad().at(o);
    const std::uint16_t was = state.life(o).nat.learn(outer.ip.src, outer.l4.sport, now);
    const std::uint16_t configured = out.config().encap->dport;
    if (was == outer.l4.sport || (was == 0 && outer.l4.sport == configured)) continue;
    event(EventKind::nat_mapping, [&] {
      if (was == 0) {
        return fmt::format("SA {}: {} arrives from port {} (a NAT mapped it), not {}: sending there", out.name(),
                           outer.ip.src.str(), outer.l4.sport, configured);
      }
      return fmt::format("SA {}: {}'s NAT mapping moved from port {} to {} (authenticated packet on SA {})", out.name(),
                         outer.ip.src.str(), was, outer.l4.sport, sa.name());
    });
  }
}

}  // namespace ipsentry::enforce
