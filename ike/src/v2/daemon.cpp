// The IKEv2 daemon: the IKE SA table, dispatch of datagrams and acquires,
// failures and soft associations, snapshot and reconfiguration.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace xt = dissect::ike::xt;
using detail::kNever;
using detail::kSecond;
using detail::SaState;

// ---- construction -------------------------------------------------------------

Daemon::Impl::Impl(const filters::Config& c, const filters::LocalAddresses& l, Options o)
    : config(&c),
      local(l),
      options(o),
      random(o.random != nullptr ? o.random : &system_random()),
      profiles(load_profiles(c)) {
  for (const auto& sa : c.sas) {
    if (sa.spi) manual_spis.insert(*sa.spi);
  }
  gate.configure(options);
  gate.start(*random, 0);
}

std::vector<ProfilePtr> Daemon::Impl::load_profiles(const filters::Config& c) {
  std::vector<ProfilePtr> out;
  for (const auto& p : c.ike_profiles) {
    auto loaded = std::make_shared<detail::Profile>();
    loaded->cfg = p.clone();
    if (loaded->cert()) {
      try {
        loaded->signer = std::make_unique<Signer>(p.cert, p.key);
        loaded->trust = std::make_unique<TrustStore>(p.ca);
      } catch (const CryptoError& e) {
        throw filters::ConfigError(p.origin.file, p.origin.line_of("auth"), "ike_profiles." + p.name + ".auth",
                                   e.what());
      }
    }
    out.push_back(std::move(loaded));
  }
  return out;
}

ProfilePtr Daemon::Impl::profile_named(const std::string& name) const {
  for (const auto& p : profiles) {
    if (p->cfg.name == name) return p;
  }
  return nullptr;
}

std::int64_t Daemon::Impl::wall_clock() const {
  return options.wall_clock != nullptr ? options.wall_clock() : static_cast<std::int64_t>(std::time(nullptr));
}

std::unique_ptr<KeyExchange> Daemon::Impl::make_ke(filters::DhGroup group) const {
  return options.key_exchange != nullptr ? options.key_exchange(group, *random) : KeyExchange::create(group);
}

// ---- the table ------------------------------------------------------------------

IkeSa& Daemon::Impl::new_sa(bool initiator, TimeNs now) {
  auto sa = std::make_unique<IkeSa>();
  sa->id = next_sa_id++;
  sa->initiator = initiator;
  sa->state = initiator ? SaState::init_sent : SaState::half_open;
  sa->created = now;
  sa->last_received = now;
  IkeSa& ref = *sa;
  sas.emplace(ref.id, std::move(sa));
  return ref;
}

IkeSa* Daemon::Impl::find_sa(std::uint64_t id) {
  auto it = sas.find(id);
  return it == sas.end() ? nullptr : it->second.get();
}

IkeSa* Daemon::Impl::find_by_spi(std::uint64_t our_spi) {
  auto it = by_spi.find(our_spi);
  return it == by_spi.end() ? nullptr : find_sa(it->second);
}

std::uint64_t Daemon::Impl::alloc_ike_spi() {
  for (;;) {
    std::uint64_t spi = detail::random_u64(*random);
    if (spi != 0 && by_spi.emplace(spi, 0).second) return spi;
  }
}

std::uint32_t Daemon::Impl::alloc_child_spi() {
  // RFC 4303 2.1: 1-255 are reserved; configured manual SAs keep theirs.
  for (;;) {
    std::uint32_t spi = detail::random_u32(*random);
    if (spi < 256 || manual_spis.count(spi) != 0) continue;
    if (child_spis.insert(spi).second) return spi;
  }
}

void Daemon::Impl::release_child_spi(std::uint32_t spi) { child_spis.erase(spi); }

std::vector<Child*> Daemon::Impl::children_of(std::uint64_t sa_id) {
  std::vector<Child*> r;
  for (auto& [id, c] : children) {
    if (c.ike_sa == sa_id) r.push_back(&c);
  }
  return r;
}

Child* Daemon::Impl::child_by_spi_out(std::uint64_t sa_id, std::uint32_t spi) {
  for (auto& [id, c] : children) {
    if (c.ike_sa == sa_id && c.spi_out == spi) return &c;
  }
  return nullptr;
}

Child* Daemon::Impl::find_child(std::uint64_t id) {
  auto it = children.find(id);
  return it == children.end() ? nullptr : &it->second;
}

IkeSa* Daemon::Impl::sa_for_peer(const std::string& profile, const dissect::IpAddr& peer) {
  IkeSa* connecting = nullptr;
  for (auto& [id, sa] : sas) {
    if (!sa->profile || sa->profile->cfg.name != profile || sa->remote.addr != peer) continue;
    if (sa->established()) return sa.get();
    if (sa->state == SaState::init_sent || sa->state == SaState::auth_sent) connecting = sa.get();
  }
  return connecting;
}

ChildRequest* Daemon::Impl::pending_request(IkeSa& sa, std::size_t policy) {
  auto fits = [&](Work& w) -> ChildRequest* {
    auto* r = std::get_if<ChildRequest>(&w);
    return r != nullptr && !r->rekeys && r->policy == policy ? r : nullptr;
  };
  if (sa.first_child && sa.first_child->policy == policy) return &*sa.first_child;
  if (sa.outstanding) {
    if (auto* r = fits(sa.outstanding->work)) return r;
  }
  for (auto& w : sa.queue) {
    if (auto* r = fits(w)) return r;
  }
  return nullptr;
}

void Daemon::Impl::destroy_sa(IkeSa& sa, TimeNs now, Actions& out, const std::string& reason) {
  fail_acquires(sa, now, out);
  for (Child* c : children_of(sa.id)) remove_child(*c, reason, out);
  if (sa.established_at != 0 && !sa.replaced) {
    event(out, EventKind::ike_deleted,
          fmt::format("IKE SA {} with {} ({}) deleted: {}", sa.id, sa.remote.str(), sa.remote_id, reason));
  }
  if (sa.half_open_deadline != kNever) gate.remove(sa.remote.addr);
  if (!sa.init_hash.empty()) init_hashes.erase(sa.init_hash);
  if (sa.our_spi() != 0) by_spi.erase(sa.our_spi());
  auto release = [&](Work& w) {
    if (auto* r = std::get_if<ChildRequest>(&w); r != nullptr && r->spi != 0) release_child_spi(r->spi);
    if (auto* d = std::get_if<detail::DeleteChildWork>(&w); d != nullptr && d->child == 0) release_child_spi(d->spi);
    if (auto* k = std::get_if<detail::IkeRekeyWork>(&w); k != nullptr && k->spi != 0) by_spi.erase(k->spi);
  };
  if (sa.outstanding) release(sa.outstanding->work);
  for (auto& w : sa.queue) release(w);
  if (sa.first_child && sa.first_child->spi != 0) release_child_spi(sa.first_child->spi);
  sas.erase(sa.id);
}

void Daemon::Impl::fail_acquires(IkeSa& sa, TimeNs now, Actions& out) {
  auto fail = [&](ChildRequest& r) {
    const bool soft_ok = sa.failed_silent && r.policy != detail::kNoPolicy &&
                         policy(r.policy).inbound == filters::InboundCleartext::request;
    if (soft_ok && !r.acquires.empty()) start_soft_association(r.policy, sa.remote.addr, now, out);
    for (auto id : r.acquires) {
      acquire_done(out, id, soft_ok ? AcquireDoneAction::Result::cleartext : AcquireDoneAction::Result::drop);
    }
    r.acquires.clear();
  };
  if (sa.first_child) fail(*sa.first_child);
  if (sa.outstanding) {
    if (auto* r = std::get_if<ChildRequest>(&sa.outstanding->work)) fail(*r);
  }
  for (auto& w : sa.queue) {
    if (auto* r = std::get_if<ChildRequest>(&w)) fail(*r);
  }
}

void Daemon::Impl::remember_failure(const IkeSa& sa, TimeNs now) {
  if (!sa.profile) return;
  auto& f = failures[{sa.profile->cfg.name, sa.remote.addr}];
  ++f.count;
  // 5 s, 10 s, 20 s, ... up to 5 minutes before the next attempt.
  const unsigned shift = std::min(f.count - 1, 6u);
  f.retry_at = now + std::min<TimeNs>(5 * kSecond << shift, 300 * kSecond);
}

void Daemon::Impl::start_soft_association(std::size_t policy_index, const dissect::IpAddr& peer, TimeNs now,
                                          Actions& out) {
  const auto& pol = policy(policy_index);
  auto prof = profile_named(pol.ike);
  const TimeNs until = now + static_cast<TimeNs>(prof ? prof->cfg.soft_timeout : 300) * kSecond;
  for (auto& s : soft) {
    if (s.policy == policy_index && s.peer == peer) {
      s.until = until;
      return;
    }
  }
  soft.push_back({policy_index, pol.name, peer, until});
  ++counters.soft_associations;
  out.emplace_back(SoftAssociationAction{policy_index, peer, true});
  event(out, EventKind::soft_association,
        fmt::format("policy {}: peer {} did not answer IKE, cleartext allowed for {} s (soft association)", pol.name,
                    peer.str(), (until - now) / kSecond));
}

bool Daemon::Impl::soft_active(std::size_t policy_index, const dissect::IpAddr& peer, TimeNs now) const {
  return std::any_of(soft.begin(), soft.end(),
                     [&](const auto& s) { return s.policy == policy_index && s.peer == peer && now < s.until; });
}

void Daemon::Impl::event(Actions& out, EventKind kind, std::string text) {
  out.emplace_back(EventAction{kind, std::move(text)});
}

void Daemon::Impl::invalid(Actions& out, TimeNs now, const std::string& why) {
  ++counters.invalid_packets;
  // Hostile input must not flood the log: at most 10 events a second.
  if (now - event_window >= kSecond) {
    event_window = now;
    events_in_window = 0;
  }
  if (++events_in_window <= 10) event(out, EventKind::invalid_message, why);
}

void Daemon::Impl::acquire_done(Actions& out, std::uint64_t acquire, AcquireDoneAction::Result r, std::uint64_t child) {
  out.emplace_back(AcquireDoneAction{acquire, r, child});
}

// ---- datagrams ----------------------------------------------------------------------

void Daemon::Impl::on_datagram(const Datagram& d, const Message& h, TimeNs now, Actions& out) {
  if (h.exchange == xt::v2_sa_init && !h.response && h.spi_r == 0) {
    if (!h.initiator || h.spi_i == 0) {
      invalid(out, now, fmt::format("IKE_SA_INIT request from {} with bad flags or SPI", d.remote.str()));
      return;
    }
    on_init_request(d, h, now, out);
    return;
  }
  const std::uint64_t ours = h.initiator ? h.spi_r : h.spi_i;
  IkeSa* sa = find_by_spi(ours);
  if (sa == nullptr || sa->initiator == h.initiator) {
    ++counters.invalid_cookies;
    invalid(out, now,
            fmt::format("{} from {} for unknown IKE SPI {}", h.response ? "response" : "request", d.remote.str(),
                        detail::hex_spi(ours)));
    return;
  }
  on_sa_datagram(*sa, d, h, now, out);
}

// ---- acquires -----------------------------------------------------------------------------

namespace {

/// The child an acquire asks for, with the triggering packet's addresses
/// for the first traffic selectors (RFC 7296 2.9).
ChildRequest request_for(const Acquire& a) {
  ChildRequest req;
  req.policy = a.policy;
  req.acquires.push_back(a.id);
  req.packet_src = a.packet_src;
  req.packet_dst = a.packet_dst;
  req.has_packet = true;
  return req;
}

}  // namespace

void Daemon::Impl::on_acquire(const Acquire& a, TimeNs now, Actions& out) {
  using R = AcquireDoneAction::Result;
  if (a.policy >= config->policies.size() || policy(a.policy).action != filters::PolicyAction::negotiate) {
    acquire_done(out, a.id, R::drop);
    return;
  }
  const auto& pol = policy(a.policy);
  auto prof = profile_named(pol.ike);
  if (!prof || pol.inbound == filters::InboundCleartext::respond) {
    // `respond` never initiates: its traffic to peers that did not negotiate is clear.
    acquire_done(out, a.id, prof ? R::cleartext : R::drop);
    return;
  }
  if (soft_active(a.policy, a.remote.addr, now)) {
    acquire_done(out, a.id, R::cleartext);
    return;
  }
  if (IkeSa* sa = sa_for_peer(prof->cfg.name, a.remote.addr)) {
    if (sa->established()) {
      for (Child* c : children_of(sa->id)) {
        if (c->policy == a.policy && c->state == detail::ChildState::installed &&
            covers(c->local_ts, a.packet_src.start, a.packet_src.ip_protocol, a.packet_src.start_port) &&
            covers(c->remote_ts, a.packet_dst.start, a.packet_dst.ip_protocol, a.packet_dst.start_port)) {
          acquire_done(out, a.id, R::protect, c->id);
          return;
        }
      }
    }
    if (ChildRequest* r = pending_request(*sa, a.policy)) {
      r->acquires.push_back(a.id);
      return;
    }
    queue(*sa, request_for(a), now, out);
    return;
  }
  auto f = failures.find({prof->cfg.name, a.remote.addr});
  if (f != failures.end() && now < f->second.retry_at) {
    acquire_done(out, a.id, R::drop);  // backing off after a failure
    return;
  }
  IkeSa& sa = new_sa(true, now);
  sa.profile = prof;
  sa.local = {a.local.addr, 500};
  sa.remote = {a.remote.addr, 500};
  sa.first_child = request_for(a);
  initiate(sa, now, out);
}

// ---- observation ----------------------------------------------------------------------------

namespace {

std::string join_ts(const std::vector<TrafficSelector>& ts) {
  std::string s;
  for (const auto& t : ts) {
    if (!s.empty()) s += ", ";
    s += t.str();
  }
  return s;
}

std::int64_t seconds_until(TimeNs when, TimeNs now) {
  return when == kNever ? 0 : std::max<TimeNs>(0, when - now) / kSecond;
}

}  // namespace

Snapshot Daemon::Impl::snapshot(TimeNs now) const {
  Snapshot s;
  s.counters = counters;
  s.half_open = gate.half_open();
  s.cookies_on = gate.cookies_on(now);
  for (const auto& [id, sa] : sas) {
    IkeSaInfo i;
    i.id = id;
    i.spi_i = sa->spi_i;
    i.spi_r = sa->spi_r;
    i.initiator = sa->initiator;
    i.local = sa->local;
    i.remote = sa->remote;
    i.local_id = sa->local_id;
    i.remote_id = sa->remote_id;
    i.profile = sa->profile ? sa->profile->cfg.name : std::string();
    if (sa->sk_out) i.algorithms = sa->suite.str();
    i.state = detail::to_string(sa->state);
    if (sa->established() && sa->outstanding && std::holds_alternative<detail::IkeRekeyWork>(sa->outstanding->work)) {
      i.state = "rekeying";
    }
    i.age_seconds = (now - sa->created) / kSecond;
    i.rekey_in_seconds = seconds_until(sa->rekey_at, now);
    i.nat_local = sa->nat_local;
    i.nat_remote = sa->nat_remote;
    for (const auto& [cid, c] : children) {
      if (c.ike_sa != id) continue;
      ChildInfo ci;
      ci.id = cid;
      ci.policy = c.policy_name;
      ci.inbound_spi = c.spi_in;
      ci.outbound_spi = c.spi_out;
      ci.protocol = filters::to_string(c.suite.protocol);
      ci.mode = c.transport ? "transport" : "tunnel";
      ci.algorithms = c.suite.str();
      ci.local_ts = join_ts(c.local_ts);
      ci.remote_ts = join_ts(c.remote_ts);
      ci.age_seconds = (now - c.installed_at) / kSecond;
      ci.rekey_in_seconds = seconds_until(c.rekey_at, now);
      ci.udp_encap = c.udp_encap;
      i.children.push_back(std::move(ci));
    }
    s.ike_sas.push_back(std::move(i));
  }
  return s;
}

// ---- reconfiguration -------------------------------------------------------------------------

namespace {

std::vector<std::string> texts(const auto& proposals) {
  std::vector<std::string> r;
  for (const auto& p : proposals) r.push_back(p.text);
  return r;
}

bool same_profile(const filters::IkeProfile& a, const filters::IkeProfile& b) {
  return a.name == b.name && a.version == b.version && a.method == b.method && a.psk == b.psk && a.cert == b.cert &&
         a.key == b.key && a.ca == b.ca && a.local_id.str() == b.local_id.str() &&
         a.remote_id.str() == b.remote_id.str() && a.peer == b.peer && texts(a.proposals) == texts(b.proposals) &&
         texts(a.esp_proposals) == texts(b.esp_proposals) && texts(a.ah_proposals) == texts(b.ah_proposals) &&
         a.ike_lifetime == b.ike_lifetime && a.child_lifetime == b.child_lifetime &&
         a.child_lifetime_bytes == b.child_lifetime_bytes && a.child_lifetime_packets == b.child_lifetime_packets &&
         a.pfs == b.pfs && a.dpd == b.dpd && a.soft_timeout == b.soft_timeout;
}

bool same_policy(const filters::PolicyConfig& a, const filters::PolicyConfig& b) {
  return a.name == b.name && a.local.str() == b.local.str() && a.remote.str() == b.remote.str() &&
         a.protocol == b.protocol && a.local_ports.low == b.local_ports.low &&
         a.local_ports.high == b.local_ports.high && a.remote_ports.low == b.remote_ports.low &&
         a.remote_ports.high == b.remote_ports.high && a.mirrored == b.mirrored && a.action == b.action &&
         a.ipsec == b.ipsec && a.mode == b.mode && a.peer == b.peer && a.ike == b.ike && a.inbound == b.inbound;
}

/// The index of the same policy in the new configuration, or kNoPolicy.
std::size_t remap_policy(const filters::Config& old_cfg, const filters::Config& new_cfg, std::size_t i) {
  if (i >= old_cfg.policies.size()) return detail::kNoPolicy;
  const auto& p = old_cfg.policies[i];
  for (std::size_t j = 0; j < new_cfg.policies.size(); ++j) {
    if (same_policy(p, new_cfg.policies[j])) return j;
  }
  return detail::kNoPolicy;
}

}  // namespace

void Daemon::Impl::reconfigure(const filters::Config& c, const filters::LocalAddresses& l, TimeNs now, Actions& out) {
  auto fresh = load_profiles(c);  // throws: the old configuration stays
  const filters::Config& old_cfg = *config;
  auto kept = [&](const ProfilePtr& p) {
    return p && std::any_of(fresh.begin(), fresh.end(), [&](const auto& f) { return same_profile(f->cfg, p->cfg); });
  };
  std::vector<std::uint64_t> doomed;
  for (auto& [id, sa] : sas) {
    if (!kept(sa->profile)) doomed.push_back(id);
  }
  for (auto& [id, ch] : children) ch.policy = remap_policy(old_cfg, c, ch.policy);
  for (auto& [id, sa] : sas) {
    auto remap = [&](ChildRequest& r) { r.policy = remap_policy(old_cfg, c, r.policy); };
    if (sa->first_child) remap(*sa->first_child);
    if (sa->outstanding) {
      if (auto* r = std::get_if<ChildRequest>(&sa->outstanding->work)) remap(*r);
    }
    for (auto& w : sa->queue) {
      if (auto* r = std::get_if<ChildRequest>(&w)) remap(*r);
    }
  }
  config = &c;
  local = l;
  profiles = std::move(fresh);
  manual_spis.clear();
  for (const auto& sa : c.sas) {
    if (sa.spi) manual_spis.insert(*sa.spi);
  }
  soft.erase(std::remove_if(soft.begin(), soft.end(),
                            [&](auto& s) {
                              const std::size_t was = s.policy;
                              s.policy = remap_policy(old_cfg, c, s.policy);
                              if (s.policy != detail::kNoPolicy) return false;
                              out.emplace_back(SoftAssociationAction{was, s.peer, false});
                              return true;
                            }),
             soft.end());
  failures.clear();
  for (auto id : doomed) {
    if (IkeSa* sa = find_sa(id)) queue_delete_ike(*sa, now, out);
  }
  std::vector<std::uint64_t> orphans;
  for (auto& [id, ch] : children) {
    if (ch.policy == detail::kNoPolicy && ch.state == detail::ChildState::installed) orphans.push_back(id);
  }
  for (auto id : orphans) {
    Child* ch = find_child(id);
    IkeSa* sa = ch != nullptr ? find_sa(ch->ike_sa) : nullptr;
    if (sa != nullptr && sa->established()) queue_delete_child(*sa, *ch, now, out);
  }
}

void Daemon::Impl::shutdown(TimeNs now, Actions& out) {
  std::vector<std::uint64_t> ids;
  for (auto& [id, sa] : sas) ids.push_back(id);
  for (auto id : ids) {
    IkeSa* sa = find_sa(id);
    if (sa == nullptr) continue;
    if (sa->sk_out && sa->state != SaState::half_open && sa->state != SaState::auth_sent) delete_now(*sa, out);
    destroy_sa(*sa, now, out, "shutdown");
  }
}

// ---- the public face ---------------------------------------------------------------------------

Daemon::Daemon(const filters::Config& config, const filters::LocalAddresses& local, Options options)
    : impl_(std::make_unique<Impl>(config, local, options)) {}

Daemon::~Daemon() = default;

void Daemon::receive(const Datagram& d, TimeNs now, Actions& out) {
  std::string why;
  auto header = decode_header(d.data, why);
  if (!header) {
    impl_->invalid(out, now, fmt::format("datagram from {}: {}", d.remote.str(), why));
    return;
  }
  impl_->on_datagram(d, *header, now, out);
}

void Daemon::acquire(const Acquire& a, TimeNs now, Actions& out) { impl_->on_acquire(a, now, out); }

void Daemon::expired(std::uint64_t child, bool hard, TimeNs now, Actions& out) {
  impl_->child_expired(child, hard, now, out);
}

void Daemon::nat_mapping(std::uint64_t child, const Endpoint& from, TimeNs now, Actions& out) {
  impl_->child_mapping(child, from, now, out);
}

void Daemon::tick(TimeNs now, Actions& out) { impl_->tick(now, out); }

TimeNs Daemon::next_deadline() const noexcept { return impl_->next_deadline(); }

void Daemon::reconfigure(const filters::Config& config, const filters::LocalAddresses& local, TimeNs now,
                         Actions& out) {
  impl_->reconfigure(config, local, now, out);
}

void Daemon::shutdown(TimeNs now, Actions& out) { impl_->shutdown(now, out); }

Snapshot Daemon::snapshot(TimeNs now) const { return impl_->snapshot(now); }

}  // namespace ipsentry::ike::v2
