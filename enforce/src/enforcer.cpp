#include "ipsentry/enforce/enforcer.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

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
    case Outcome::negotiating: return "negotiating";
    case Outcome::negotiation_full: return "negotiation_full";
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

State::State(filters::Config config, filters::LocalAddresses local, ipsec::CryptoChoice crypto)
    : config_(std::move(config)), spd_(config_, std::move(local)) {
  std::vector<filters::SaConfig> copies;
  copies.reserve(config_.sas.size());
  for (const auto& sa : config_.sas) {
    copies.push_back(sa.clone());
    // An SA given without a mode works in its policy's: the engine must not
    // guess tunnel from the next header of what a transport SA carries.
    copies.back().mode = spd_.sa_mode(sa);
  }
  sad_ = ipsec::Sad(std::move(copies), crypto);
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
  configured_ = sad_.size();
  negotiate_ = std::any_of(config_.policies.begin(), config_.policies.end(),
                           [](const filters::PolicyConfig& p) { return p.action == PolicyAction::negotiate; });
}

bool TsRange::covers(const dissect::IpAddr& a, std::uint8_t proto, bool has_port, std::uint16_t port) const noexcept {
  if (a.is_v4() != start.is_v4() || a < start || end < a) return false;
  if (protocol != 0 && protocol != proto) return false;
  if (port_lo == 0 && port_hi == 65535) return true;
  // A selector narrower than every port needs the port (RFC 4301 4.4.1: a
  // non-first fragment, which has none, matches only "any").
  return has_port && port >= port_lo && port <= port_hi;
}

std::string TsRange::str() const {
  std::string out = start == end ? start.str() : start.str() + "-" + end.str();
  if (protocol != 0 || port_lo != 0 || port_hi != 65535) {
    out += fmt::format("[{}", protocol);
    if (port_lo != 0 || port_hi != 65535) {
      out += port_lo == port_hi ? fmt::format("/{}", port_lo) : fmt::format("/{}-{}", port_lo, port_hi);
    }
    out += "]";
  }
  return out;
}

bool NegotiatedChild::carries(const filters::PacketSelector& p, bool outbound_sense) const noexcept {
  // The packet's ports: ICMP's type and code stand in for them (RFC 4301
  // section 4.4.1.1), as the SPD selector does.
  const bool has_port = p.has_ports || p.has_icmp_type;
  const dissect::IpAddr& ours = outbound_sense ? p.src : p.dst;
  const dissect::IpAddr& theirs = outbound_sense ? p.dst : p.src;
  const std::uint16_t our_port = outbound_sense ? p.sport : p.dport;
  const std::uint16_t their_port = outbound_sense ? p.dport : p.sport;
  // ICMP: the type is in the source "port", the code in the destination.
  const bool icmp = p.has_icmp_type;
  const std::uint16_t lp = icmp ? (outbound_sense ? p.sport : p.dport) : our_port;
  const std::uint16_t rp = icmp ? (outbound_sense ? p.dport : p.sport) : their_port;
  const bool local = std::any_of(local_ts.begin(), local_ts.end(),
                                 [&](const TsRange& t) { return t.covers(ours, p.protocol, has_port, lp); });
  if (!local) return false;
  return std::any_of(remote_ts.begin(), remote_ts.end(),
                     [&](const TsRange& t) { return t.covers(theirs, p.protocol, has_port, rp); });
}

std::size_t State::add_runtime_sa(filters::SaConfig c, NegotiatedChild* child) {
  SecurityAssociation& sa = sad_.add(std::move(c));
  auto life = std::make_unique<SaLife>();
  life->installed = std::chrono::steady_clock::now();
  life->child = child;
  if (sa.config().encap && sa.config().dst && spd_.sa_direction(sa.config()) == Direction::outbound) {
    life->nat.seed(*sa.config().dst);
  }
  life_.push_back(std::move(life));
  nat_learners_.resize(sad_.size());
  // Negotiated SAs keep no state-file record: their keys are new with
  // every negotiation (fresh nonces and, with PFS, a fresh DH secret), so
  // no (key, sequence number) pair can come back after a restart. Their
  // ceilings stay unlimited; the sequence space still ends at its end
  // (the engine refuses to wrap) and the daemon rekeys well before.
  return sa.index();
}

void State::remove_sa(std::size_t index) {
  sad_.remove(index);
  life_.erase(life_.begin() + static_cast<std::ptrdiff_t>(index));
  nat_learners_.erase(nat_learners_.begin() + static_cast<std::ptrdiff_t>(index));
}

NegotiatedChild& State::install_child(ChildInstall c) {
  if (c.policy >= config_.policies.size() || config_.policies[c.policy].action != PolicyAction::negotiate) {
    throw std::invalid_argument(fmt::format("child {}: policy #{} is not a negotiate policy", c.id, c.policy));
  }
  const filters::PolicyConfig& pol = config_.policies[c.policy];
  for (filters::SaConfig* sc : {&c.inbound, &c.outbound}) {
    if (!sc->spi) throw std::invalid_argument(fmt::format("child {}: an SA without an SPI", c.id));
    if (sc->mode == filters::SaMode::unspecified) sc->mode = pol.mode;
  }
  c.inbound.direction = Direction::inbound;
  c.outbound.direction = Direction::outbound;
  if (c.inbound.name.empty()) c.inbound.name = fmt::format("{}/in/0x{:08x}", pol.name, *c.inbound.spi);
  if (c.outbound.name.empty()) c.outbound.name = fmt::format("{}/out/0x{:08x}", pol.name, *c.outbound.spi);
  auto child = std::make_unique<NegotiatedChild>();
  child->id = c.id;
  child->ike_sa = c.ike_sa;
  child->policy = c.policy;
  child->policy_name = pol.name;
  child->peer = c.peer;
  child->peer_port = c.peer_port;
  child->local_ts = std::move(c.local_ts);
  child->remote_ts = std::move(c.remote_ts);
  child->order = next_order_++;
  NegotiatedChild* ch = child.get();
  const std::size_t in = add_runtime_sa(std::move(c.inbound), ch);
  std::size_t out = 0;
  try {
    out = add_runtime_sa(std::move(c.outbound), ch);
  } catch (...) {
    remove_sa(in);
    throw;
  }
  ch->inbound = &sad_.at(in);
  ch->outbound = &sad_.at(out);
  for (SecurityAssociation* sa : {ch->inbound, ch->outbound}) {
    if (sa->unsupported()) {
      const std::string why = sa->unsupported_detail();
      remove_sa(out);
      remove_sa(in);
      throw std::invalid_argument(fmt::format("child {}: {}", c.id, why));
    }
  }
  ch->outbound_active = !c.outbound_deferred;
  children_.push_back(std::move(child));
  // RFC 7296 section 2.8: the new outbound SA is used at once (rekey
  // initiator), or once the peer deleted the old child (rekey responder:
  // activate_outbound); the old inbound one stays until the peer has
  // switched (its DELETE, or the daemon's timeout).
  if (c.replaces && ch->outbound_active) (void)retire_outbound(*ch, *c.replaces);
  return *ch;
}

std::size_t State::retire_outbound(NegotiatedChild& fresh, std::uint64_t old_id) {
  NegotiatedChild* old = find_child(old_id);
  if (old == nullptr || old == &fresh || old->outbound == nullptr || fresh.outbound == nullptr) return 0;
  // Its NAT mapping is the peer's, not the SA's: it carries over.
  if (fresh.outbound->config().encap && old->outbound->config().encap) {
    life(fresh.outbound->index()).nat.take_over(life(old->outbound->index()).nat);
  }
  const std::size_t i = old->outbound->index();
  old->outbound = nullptr;
  remove_sa(i);
  return 1;
}

std::size_t State::activate_outbound(std::uint64_t id, std::optional<std::uint64_t> replaces) {
  NegotiatedChild* ch = find_child(id);
  if (ch == nullptr || ch->outbound == nullptr) return 0;
  ch->outbound_active = true;
  return replaces ? retire_outbound(*ch, *replaces) : 0;
}

NegotiatedChild* State::find_child(std::uint64_t id) noexcept {
  for (auto& c : children_) {
    if (c->id == id) return c.get();
  }
  return nullptr;
}

std::size_t State::remove_child(std::uint64_t id, std::uint32_t inbound_spi, std::uint32_t outbound_spi,
                                bool inbound_only) {
  NegotiatedChild* ch = find_child(id);
  if (ch == nullptr) {
    auto spi_is = [](const SecurityAssociation* sa, std::uint32_t spi) {
      return sa != nullptr && sa->config().spi && *sa->config().spi == spi;
    };
    for (auto& c : children_) {
      if (spi_is(c->inbound, inbound_spi) || spi_is(c->outbound, outbound_spi)) ch = c.get();
    }
  }
  if (ch == nullptr) return 0;
  std::size_t removed = 0;
  // Both when asked for the inbound one alone: an outbound SA left behind
  // would be one nothing can remove any more.
  (void)inbound_only;
  for (SecurityAssociation** sa : {&ch->inbound, &ch->outbound}) {
    if (*sa == nullptr) continue;
    const std::size_t i = (*sa)->index();
    *sa = nullptr;
    remove_sa(i);
    ++removed;
  }
  std::erase_if(children_, [&](const auto& c) { return c.get() == ch; });
  return removed;
}

void State::update_peer(std::uint64_t ike_sa, const dissect::IpAddr& peer, std::uint16_t port) {
  for (auto& c : children_) {
    if (c->ike_sa != ike_sa) continue;
    const bool moved = !(c->peer == peer);
    c->peer = peer;
    c->peer_port = port;
    if (moved) {
      // The address is part of the SAs (tunnel endpoints, the SAD lookup by
      // source): rebuild them with the new one, runtime state carried over.
      for (SecurityAssociation** slot : {&c->inbound, &c->outbound}) {
        SecurityAssociation* sa = *slot;
        if (sa == nullptr) continue;
        filters::SaConfig cfg = sa->config().clone();
        const bool outbound = cfg.direction == Direction::outbound;
        (outbound ? cfg.dst : cfg.src) = peer;
        if (cfg.encap && outbound) cfg.encap->dport = port;
        if (cfg.encap && !outbound) cfg.encap->sport = port;
        const std::size_t old_index = sa->index();
        const std::size_t n = add_runtime_sa(std::move(cfg), c.get());
        SecurityAssociation& fresh = sad_.at(n);
        {
          std::scoped_lock lock(sa->mutex);
          fresh.replay = sa->replay;
          fresh.last_sent_seq = sa->last_sent_seq;
          fresh.counters = sa->counters;
        }
        SaLife& was = life(old_index);
        SaLife& now = life(n);
        now.installed = was.installed;
        now.soft_reported = was.soft_reported.load();
        now.hard_expired = was.hard_expired.load();
        now.exhausted_reported = was.exhausted_reported.load();
        *slot = &fresh;
        remove_sa(old_index);
      }
      continue;
    }
    if (c->outbound != nullptr && c->outbound->config().encap) {
      (void)life(c->outbound->index()).nat.learn(peer, port, steady_ns());
    }
  }
}

NegotiatedChild* State::child_for(std::size_t policy, const filters::PacketSelector& p) noexcept {
  NegotiatedChild* best = nullptr;
  for (auto& c : children_) {
    if (c->policy != policy || c->outbound == nullptr || !c->outbound_active) continue;
    if (life(c->outbound->index()).hard_expired.load(std::memory_order_relaxed)) continue;
    if (best != nullptr && best->order > c->order) continue;
    if (c->carries(p, true)) best = c.get();
  }
  return best;
}

std::vector<std::optional<std::size_t>> State::adopt_children(State& old) {
  std::vector<std::optional<std::size_t>> map(old.config_.policies.size());
  for (std::size_t i = 0; i < map.size(); ++i) {
    const auto& op = old.config_.policies[i];
    for (std::size_t j = 0; j < config_.policies.size(); ++j) {
      const auto& np = config_.policies[j];
      if (np.name == op.name && np.action == op.action) map[i] = j;
    }
  }
  for (auto& oc : old.children_) {
    if (oc->policy >= map.size() || !map[oc->policy] ||
        config_.policies[*map[oc->policy]].action != PolicyAction::negotiate) {
      continue;
    }
    auto child = std::make_unique<NegotiatedChild>(*oc);
    child->policy = *map[oc->policy];
    child->inbound = child->outbound = nullptr;
    child->order = next_order_++;
    NegotiatedChild* ch = child.get();
    for (auto [from, to] : {std::pair{oc->inbound, &ch->inbound}, std::pair{oc->outbound, &ch->outbound}}) {
      if (from == nullptr) continue;
      const std::size_t n = add_runtime_sa(from->config().clone(), ch);
      SecurityAssociation& sa = sad_.at(n);
      {
        std::scoped_lock lock(from->mutex);
        sa.replay = from->replay;
        sa.last_sent_seq = from->last_sent_seq;
        sa.counters = from->counters;
      }
      SaLife& was = old.life(from->index());
      SaLife& now = life(n);
      now.installed = was.installed;
      now.soft_reported = was.soft_reported.load();
      now.hard_expired = was.hard_expired.load();
      now.exhausted_reported = was.exhausted_reported.load();
      if (sa.config().encap) now.nat.take_over(was.nat);
      *to = &sa;
    }
    children_.push_back(std::move(child));
  }
  return map;
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
  for (std::size_t i = 0; i < configured_; ++i) {
    SecurityAssociation& sa = sad_.at(i);
    SecurityAssociation* prev = old.sad_.find(sa.name());
    // Negotiated SAs are carried by adopt_children().
    if (prev == nullptr || prev->index() >= old.configured_ || !same_sa(sa.config(), prev->config())) continue;
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
  for (const auto& p : config_.policies) {
    if (p.action != PolicyAction::negotiate) continue;
    // Not known before the negotiation: the most any ESP SA the SAD
    // supports adds (8-byte header, 16-byte IV, 15 of padding, pad length
    // and next header, a 32-byte ICV, and 8 of UDP when a NAT is found),
    // with the outer header in tunnel mode. Negotiated SAs have the same
    // MTU handling per packet; this bound only sets the MSS clamp.
    std::size_t n = 8 + 16 + 15 + 2 + 32 + 8;
    if (p.mode == filters::SaMode::tunnel) n += (p.peer && p.peer->is_v6()) || ipv6 ? 40 : 20;
    worst = std::max(worst, n);
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
      // The daemon deletes the child and negotiates afresh on demand.
      if (life.child != nullptr && ike_ != nullptr) (void)ike_->expired(life.child->id, true);
    }
    return false;
  }
  // A negotiated SA is rekeyed before its hard limits: without a soft one
  // of its own, at 90 % of them, and before the 32-bit sequence space ends
  // (RFC 4303 section 3.3.3: it must never wrap).
  const bool negotiated = life.child != nullptr;
  auto soft_of = [&](std::uint64_t soft_limit, std::uint64_t hard_limit) {
    return soft_limit != 0 || !negotiated ? soft_limit : hard_limit - hard_limit / 10;
  };
  const std::uint64_t soft_bytes = soft_of(lt.soft_bytes, lt.bytes);
  const std::uint64_t soft_packets = soft_of(lt.soft_packets, lt.packets);
  const bool seq_late = negotiated && sending && !sa.config().esn && sa.last_sent_seq >= 0xf0000000ull;
  const bool soft = (lt.soft_seconds != 0 && age >= lt.soft_seconds) || (soft_bytes != 0 && c.bytes >= soft_bytes) ||
                    (soft_packets != 0 && c.packets >= soft_packets) || seq_late;
  if (soft && !life.soft_reported.exchange(true)) {
    if (negotiated && ike_ != nullptr) (void)ike_->expired(life.child->id, false);
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
  return outbound(state, p, hook, mtu, ifindex, now_ns);
}

namespace {

// The SPD's first match, passing over the IKE exemptions: what a packet
// to or from UDP 500/4500 is subject to when it is not ipsentry's own IKE.
const filters::SpdEntry* lookup_past_ike(const filters::Spd& spd, const filters::PacketSelector& sel,
                                         Sense sense) noexcept {
  for (const auto& e : spd.entries()) {
    // As lookup(): root's exemptions are the kernel rule's to judge.
    if (e.is_ike_exemption() || e.root_only) continue;
    if (filters::is_ipsec_action(e.action) && e.sense != sense) continue;
    if (e.matches(sel, spd.local())) return &e;
  }
  return nullptr;
}

}  // namespace

Decision Worker::outbound(State& state, const Packet& p, Hook hook, std::uint32_t mtu, std::uint32_t ifindex,
                          std::int64_t now_ns) noexcept {
  const filters::PacketSelector sel = filters::selector_of(p);
  const filters::SpdEntry* e = state.spd().lookup(sel, Sense::outbound, hook == Hook::forward);
  // Where ipsentry negotiates, its own IKE leaves with its mark and is never
  // queued: a local packet on the IKE ports that reaches this point is some
  // other program's, and the exemption must not carry it out in the clear.
  if (e != nullptr && hook == Hook::output && state.has_negotiate() && e->is_ike_exemption()) {
    e = lookup_past_ike(state.spd(), sel, Sense::outbound);
  }
  if (e != nullptr && e->exemption) return exempt(*e);
  if (e == nullptr || e->action == PolicyAction::permit) return done(Outcome::permitted, true);
  if (e->action == PolicyAction::block) return done(Outcome::blocked, false);
  if (e->action == PolicyAction::negotiate) return negotiate_out(state, *e, p, sel, hook, mtu, ifindex, now_ns);
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
  return protect(state, p, sel, esp, ah, target, mtu, ifindex, now_ns);
}

Decision Worker::negotiate_out(State& state, const filters::SpdEntry& e, const Packet& p,
                               const filters::PacketSelector& sel, Hook hook, std::uint32_t mtu, std::uint32_t ifindex,
                               std::int64_t now_ns) noexcept {
  const filters::PolicyConfig& pol = *e.policy;
  if (NegotiatedChild* child = state.child_for(e.policy_index, sel); child != nullptr) {
    SecurityAssociation* sa = child->outbound;
    const bool esp = sa->config().protocol == IpsecProtocol::esp;
    // The SA's own destination: the tunnel endpoint, or the peer's address.
    const dissect::IpAddr target = sa->config().dst ? *sa->config().dst : sel.dst;
    return protect(state, p, sel, esp ? sa : nullptr, esp ? nullptr : sa, target, mtu, ifindex, now_ns);
  }
  // No SA yet. The IKE peer: the tunnel endpoint, or the destination itself.
  const dissect::IpAddr peer = pol.mode == filters::SaMode::tunnel && pol.peer ? *pol.peer : sel.dst;
  switch (pol.inbound) {
    case filters::InboundCleartext::respond:
      // Never initiates: in the clear until the peer negotiates.
      return done(Outcome::cleartext_allowed, true);
    case filters::InboundCleartext::request:
      if (ike_ != nullptr && ike_->soft(e.policy_index, peer)) return done(Outcome::cleartext_allowed, true);
      break;
    case filters::InboundCleartext::require: break;
  }
  if (ike_ == nullptr) return done(Outcome::protect_failed, false);  // never in the clear
  const IkeChannel::Hold h = ike_->hold(e.policy_index, peer, sel, p.ip_bytes(), hook == Hook::forward, now_ns);
  return done(h == IkeChannel::Hold::full ? Outcome::negotiation_full : Outcome::negotiating, false);
}

Decision Worker::protect(State& state, const Packet& p, const filters::PacketSelector& sel, SecurityAssociation* esp,
                         SecurityAssociation* ah, const dissect::IpAddr& target, std::uint32_t mtu,
                         std::uint32_t ifindex, std::int64_t now_ns) noexcept {
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
  // IKE to this host's own daemon (UDP 500, or 4500 with or without the
  // non-ESP marker): the daemon authenticates it, and a require policy
  // covering the peer must not drop the negotiation that would protect it.
  // Only what is addressed to us: forwarded IKE is judged as cleartext.
  if (state.has_negotiate() && !outer.is_ipsec() && outer.ip.protocol == 17 && outer.l4.present &&
      (outer.l4.dport == 500 || outer.l4.dport == 4500) && state.spd().local().contains(outer.ip.dst)) {
    return done(Outcome::permitted, true);
  }
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
  const NegotiatedChild* child = state.life(used[0]->index()).child;
  if (child != nullptr) {
    // A negotiated SA carries what its negotiated selectors say (narrowed
    // by the responder, RFC 7296 section 2.9), and nothing the SPD would
    // treat otherwise: a block, or another IPsec policy.
    if (n_used != 1) {
      why = "came in a bundle, which IKEv2 never negotiates";
    } else if (!child->carries(sel, false)) {
      why = "is outside its negotiated traffic selectors";
    } else if (e != nullptr && e->action != PolicyAction::permit &&
               !(e->action == PolicyAction::negotiate && e->policy_index == child->policy)) {
      why = "belongs to another policy than the one it was negotiated for";
    }
  } else if (e == nullptr || e->action != PolicyAction::protect) {
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
      if (child != nullptr) text += fmt::format(" (negotiated for policy '{}')", child->policy_name);
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
  if (const NegotiatedChild* child = state.life(sa.index()).child; child != nullptr) {
    if (child->outbound != nullptr && child->outbound->config().encap) {
      const std::uint16_t was = state.life(child->outbound->index()).nat.learn(outer.ip.src, outer.l4.sport, now);
      if (was != outer.l4.sport && was != 0) {
        event(EventKind::nat_mapping, [&] {
          return fmt::format("SA {}: {}'s NAT mapping moved from port {} to {} (authenticated packet on SA {})",
                             child->outbound->name(), outer.ip.src.str(), was, outer.l4.sport, sa.name());
        });
        // Its IKE SA must follow too, or DPD, rekeys and Deletes go to a
        // mapping that no longer exists.
        if (ike_ != nullptr) (void)ike_->mapping(child->id, outer.ip.src, outer.l4.sport);
      }
    }
    return;
  }
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
