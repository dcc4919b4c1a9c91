// Timers: retransmission, half-open timeouts, IKE SA and CHILD_SA rekeying
// at their soft lifetimes and removal at the hard ones, DPD, the grace of
// rekeyed children, soft associations, and the cookie secret.
#include <fmt/format.h>

#include <algorithm>

#include "state.hpp"

namespace ipsentry::ike::v2 {

using detail::ChildState;
using detail::kNever;
using detail::kSecond;
using detail::SaState;

void Daemon::Impl::tick(TimeNs now, Actions& out) {
  if (gate.tick(*random, now)) event(out, EventKind::cookies, "cookies off");
  std::vector<std::uint64_t> ids;
  ids.reserve(sas.size());
  for (const auto& [id, sa] : sas) ids.push_back(id);
  for (auto id : ids) tick_sa(id, now, out);
  tick_children(now, out);
  tick_soft(now, out);
}

void Daemon::Impl::tick_sa(std::uint64_t id, TimeNs now, Actions& out) {
  IkeSa* sa = find_sa(id);
  if (sa == nullptr) return;
  if (sa->outstanding && now >= sa->outstanding->deadline) {
    retransmit(*sa, now, out);
    sa = find_sa(id);
    if (sa == nullptr) return;
  }
  if (now >= sa->half_open_deadline) {
    event(out, EventKind::ike_failed,
          fmt::format("half-open IKE SA {} from {} timed out waiting for IKE_AUTH", sa->id, sa->remote.str()));
    destroy_sa(*sa, now, out, "half-open timeout");
    return;
  }
  if (now >= sa->destroy_at) {
    destroy_sa(*sa, now, out, "replaced by a rekey");
    return;
  }
  if (sa->established()) tick_established(*sa, now, out);
  start_next(id, now, out);
}

void Daemon::Impl::tick_established(IkeSa& sa, TimeNs now, Actions& out) {
  if (now >= sa.expire_at) {
    // The hard lifetime: no rekey succeeded in time.
    delete_now(sa, out);
    destroy_sa(sa, now, out, "IKE SA lifetime reached");
    return;
  }
  if (now >= sa.rekey_at) {
    sa.rekey_at = kNever;
    queue(sa, detail::IkeRekeyWork{}, now, out);
    return;
  }
  const TimeNs dpd = static_cast<TimeNs>(sa.profile->cfg.dpd) * kSecond;
  if (dpd > 0 && !sa.outstanding && sa.queue.empty() && now - sa.last_received >= dpd) {
    queue(sa, detail::DpdWork{}, now, out);
  }
}

void Daemon::Impl::tick_children(TimeNs now, Actions& out) {
  std::vector<std::uint64_t> ids;
  for (const auto& [id, c] : children) ids.push_back(id);
  for (auto id : ids) {
    Child* c = find_child(id);
    if (c == nullptr) continue;
    IkeSa* sa = find_sa(c->ike_sa);
    if ((c->outbound_replaced || c->successor) && now >= c->remove_at) {
      remove_child(*c, c->outbound_replaced ? "rekeyed" : "rekeyed (the peer's Delete did not come)", out);
    } else if (c->state == ChildState::installed && now >= c->expire_at) {
      child_expired(id, true, now, out);
    } else if (c->state == ChildState::installed && !c->rekey_queued && now >= c->rekey_at) {
      if (sa != nullptr && sa->established()) {
        queue_child_rekey(*sa, *c, now, out);
      } else {
        c->rekey_at = kNever;  // its IKE SA is going away; the hard lifetime still applies
      }
    }
  }
}

void Daemon::Impl::tick_soft(TimeNs now, Actions& out) {
  std::erase_if(soft, [&](const detail::SoftAssociation& s) {
    if (now < s.until) return false;
    out.emplace_back(SoftAssociationAction{s.policy, s.peer, false});
    event(out, EventKind::soft_association,
          fmt::format("policy {}: soft association with {} ended", s.policy_name, s.peer.str()));
    return true;
  });
}

TimeNs Daemon::Impl::sa_deadline(const IkeSa& sa) const noexcept {
  TimeNs d = std::min(sa.half_open_deadline, sa.destroy_at);
  if (sa.outstanding) d = std::min(d, sa.outstanding->deadline);
  if (!sa.established()) return d;
  d = std::min({d, sa.expire_at, sa.rekey_at});
  const TimeNs dpd = static_cast<TimeNs>(sa.profile->cfg.dpd) * kSecond;
  if (dpd > 0 && !sa.outstanding && sa.queue.empty()) d = std::min(d, sa.last_received + dpd);
  if (!sa.outstanding) {
    for (const auto& w : sa.queue) {
      if (const auto* r = std::get_if<ChildRequest>(&w)) d = std::min(d, r->not_before);
    }
  }
  return d;
}

TimeNs Daemon::Impl::next_deadline() const noexcept {
  TimeNs d = gate.next_deadline();
  for (const auto& [id, sa] : sas) d = std::min(d, sa_deadline(*sa));
  for (const auto& [id, c] : children) {
    if (c.outbound_replaced || c.successor) d = std::min(d, c.remove_at);
    if (c.state != ChildState::installed) continue;
    d = std::min(d, c.expire_at);
    if (!c.rekey_queued) d = std::min(d, c.rekey_at);
  }
  for (const auto& s : soft) d = std::min(d, s.until);
  return d;
}

TimeNs Daemon::Impl::retransmit_span() const noexcept {
  TimeNs total = 0;
  for (unsigned i = 0; i <= options.retransmit_tries; ++i) total += retransmit_delay(i);
  return total;
}

}  // namespace ipsentry::ike::v2
