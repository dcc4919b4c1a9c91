// Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18): new
// SPIs, nonces and a fresh DH, keys from the old SK_d; the children move to
// the new SA, message IDs start again at 0, and the rekey's initiator
// deletes the old SA. Simultaneous rekeys (2.8.2): the exchange with the
// lowest nonce made the redundant SA, which its initiator deletes.
#include <fmt/format.h>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace pt = dissect::ike::pt;
namespace xt = dissect::ike::xt;
using detail::kNever;
using detail::kSecond;
using detail::SaState;

namespace {

Buffer spi64(std::uint64_t spi) {
  Buffer b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(spi >> (56 - 8 * i));
  return b;
}

std::uint64_t spi64(const Buffer& b) {
  std::uint64_t v = 0;
  for (auto x : b) v = (v << 8) | x;
  return b.size() == 8 ? v : 0;
}

}  // namespace

void Daemon::Impl::send_ike_rekey(IkeSa& sa, detail::IkeRekeyWork work, TimeNs now, Actions& out) {
  if (work.spi == 0) work.spi = alloc_ike_spi();
  const filters::DhGroup group = work.group != filters::DhGroup::none ? work.group : sa.suite.dh;
  try {
    work.ke = make_ke(group);
  } catch (const CryptoError& e) {
    by_spi.erase(work.spi);
    event(out, EventKind::ike_failed, fmt::format("IKE SA {}: rekey impossible: {}", sa.id, e.what()));
    sa.rekey_at = now + 60 * kSecond;
    return;
  }
  work.nonce = detail::random_bytes(*random, detail::kNonceLen);
  work.offered = ike_sa_payload(sa.profile->cfg.proposals, spi64(work.spi));
  Message m = request_of(sa, xt::v2_create_child);
  m.payloads.push_back({pt::v2_sa, work.offered});
  m.payloads.push_back({pt::v2_nonce, NoncePayload{work.nonce}});
  m.payloads.push_back({pt::v2_ke, KePayload{static_cast<std::uint16_t>(group), work.ke->public_value()}});
  send_request(sa, std::move(work), std::move(m), now, out);
}

void Daemon::Impl::on_ike_rekey_response(IkeSa& sa, detail::IkeRekeyWork work, const Message& m, TimeNs now,
                                         Actions& out) {
  auto give_up = [&](const std::string& why, TimeNs retry_in) {
    by_spi.erase(work.spi);
    sa.peer_rekey_sa.reset();
    sa.rekey_at = now + retry_in;
    if (!why.empty()) {
      ++counters.negotiation_failures;
      event(out, EventKind::ike_failed,
            fmt::format("IKE SA {}: rekey failed: {}; retrying in {} s", sa.id, why, retry_in / kSecond));
    }
  };
  const auto* sa_p = m.find<SaPayload>(pt::v2_sa);
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  const auto* ke = m.find<KePayload>(pt::v2_ke);
  if (sa_p == nullptr) {
    const auto* e = m.error_notify();
    const std::uint16_t type = e != nullptr ? e->type : 0;
    if (type == notify::invalid_ke_payload && !work.ke_retried && e->data.size() == 2) {
      const auto g = acceptable_ke_group(work.offered, static_cast<std::uint16_t>((e->data[0] << 8) | e->data[1]));
      if (g) {
        work.ke_retried = true;
        work.group = *g;
        work.ke.reset();
        sa.queue.push_front(std::move(work));
        return;
      }
    }
    if (type == notify::temporary_failure) {
      give_up("", kSecond + static_cast<TimeNs>(detail::random_u32(*random) % 4000) * 1'000'000);
      return;
    }
    give_up(type != 0 ? detail::notify_name(type) : "no SA payload in the answer", 60 * kSecond);
    return;
  }
  std::string why;
  auto suite = accept_ike(*sa_p, work.offered, why);
  const std::uint64_t peer_spi = sa_p->proposals.empty() ? 0 : spi64(sa_p->proposals.front().spi);
  std::optional<filters::SecretBytes> shared;
  if (!suite) {
  } else if (peer_spi == 0 || nonce == nullptr || nonce->data.size() < 16 || nonce->data.size() > 256 ||
             ke == nullptr || suite->dh != work.ke->group() || ke->group != static_cast<std::uint16_t>(suite->dh)) {
    why = "SPI, nonce or KE missing or of another group";
  } else {
    shared = work.ke->shared_secret(ke->data, why);
  }
  if (!shared) {
    give_up(why, 60 * kSecond);
    return;
  }
  IkeSa* fresh =
      make_rekeyed_sa(sa, true, work.spi, peer_spi, *suite, shared->bytes(), work.nonce, nonce->data, now, out);
  if (fresh == nullptr) {
    give_up("deriving the keys failed", 60 * kSecond);
    return;
  }
  IkeSa* theirs = sa.peer_rekey_sa ? find_sa(*sa.peer_rekey_sa) : nullptr;
  if (theirs != nullptr && detail::lower_nonce(detail::min_nonce(work.nonce, nonce->data), sa.peer_rekey_lowest)) {
    // We lost the collision: ours is redundant, theirs carries on and the
    // peer deletes the old SA.
    event(out, EventKind::ike_rekeyed,
          fmt::format("IKE SA {}: rekey collision lost, deleting our redundant IKE SA {}", sa.id, fresh->id));
    sa.peer_rekey_sa.reset();
    move_children(sa, *theirs);
    sa.state = SaState::rekeyed;
    sa.replaced = true;
    sa.destroy_at = now + retransmit_span();
    fresh->replaced = true;
    queue_delete_ike(*fresh, now, out);
    return;
  }
  // Won (or no collision): the peer deletes its redundant one, quietly.
  if (theirs != nullptr) theirs->replaced = true;
  sa.peer_rekey_sa.reset();
  ike_rekey_done(sa, *fresh, now, out);
  queue_delete_ike(sa, now, out);
}

void Daemon::Impl::on_ike_rekey_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                        Actions& out) {
  Message resp = response_to(sa, m);
  auto answer = [&](std::uint16_t type, Bytes data = {}) {
    resp.payloads.push_back(detail::notify_payload(type, data));
    send_response(sa, resp, d, hash, out);
  };
  // RFC 7296 2.25.2: not while we close it or run a CHILD_SA exchange on it.
  const bool child_busy = sa.outstanding && (std::holds_alternative<ChildRequest>(sa.outstanding->work) ||
                                             std::holds_alternative<detail::DeleteChildWork>(sa.outstanding->work) ||
                                             std::holds_alternative<detail::DeleteIkeWork>(sa.outstanding->work));
  if (sa.state != SaState::established || child_busy) {
    answer(notify::temporary_failure);
    return;
  }
  const auto* sa_p = m.find<SaPayload>(pt::v2_sa);
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  const auto* ke = m.find<KePayload>(pt::v2_ke);
  if (sa_p == nullptr || nonce == nullptr || ke == nullptr || nonce->data.size() < 16 || nonce->data.size() > 256) {
    answer(notify::invalid_syntax);
    return;
  }
  const std::uint64_t spi = alloc_ike_spi();
  auto choice = detail::choose_ike_for_ke(*sa_p, sa.profile->cfg.proposals, ke->group, spi64(spi));
  std::uint64_t peer_spi = 0;
  if (choice) {
    for (const auto& p : sa_p->proposals) {
      if (p.number == choice->answer.number) peer_spi = spi64(p.spi);
    }
  }
  if (!choice || peer_spi == 0) {
    by_spi.erase(spi);
    answer(choice ? notify::invalid_syntax : notify::no_proposal_chosen);
    return;
  }
  if (static_cast<std::uint16_t>(choice->suite.dh) != ke->group) {
    by_spi.erase(spi);
    const auto g = static_cast<std::uint16_t>(choice->suite.dh);
    const std::uint8_t data[2] = {static_cast<std::uint8_t>(g >> 8), static_cast<std::uint8_t>(g)};
    answer(notify::invalid_ke_payload, data);
    return;
  }
  std::unique_ptr<KeyExchange> ours;
  std::optional<filters::SecretBytes> shared;
  std::string why;
  try {
    ours = make_ke(choice->suite.dh);
    shared = ours->shared_secret(ke->data, why);
  } catch (const CryptoError& e) {
    why = e.what();
  }
  const Buffer nr = detail::random_bytes(*random, detail::kNonceLen);
  IkeSa* fresh =
      shared ? make_rekeyed_sa(sa, false, peer_spi, spi, choice->suite, shared->bytes(), nonce->data, nr, now, out)
             : nullptr;
  if (fresh == nullptr) {
    by_spi.erase(spi);
    answer(notify::invalid_syntax);
    return;
  }
  resp.payloads.push_back({pt::v2_sa, SaPayload{{choice->answer}}});
  resp.payloads.push_back({pt::v2_nonce, NoncePayload{nr}});
  resp.payloads.push_back({pt::v2_ke, KePayload{ke->group, ours->public_value()}});
  send_response(sa, resp, d, hash, out);
  if (sa.outstanding && std::holds_alternative<detail::IkeRekeyWork>(sa.outstanding->work)) {
    // Both ends rekey: decided when our answer comes.
    sa.peer_rekey_sa = fresh->id;
    sa.peer_rekey_lowest = detail::min_nonce(nonce->data, nr);
    return;
  }
  ike_rekey_done(sa, *fresh, now, out);
  sa.destroy_at = now + retransmit_span();  // the peer deletes it; if its Delete never comes, we do
}

IkeSa* Daemon::Impl::make_rekeyed_sa(IkeSa& old_sa, bool initiator, std::uint64_t spi_i, std::uint64_t spi_r,
                                     const IkeSuite& suite, Bytes shared, Bytes ni, Bytes nr, TimeNs now,
                                     Actions& out) {
  const IkeRekeyFrom from{old_sa.suite.prf, old_sa.sk_d.bytes()};
  IkeKeys k;
  std::unique_ptr<SkCipher> ci, cr;
  try {
    k = derive_ike_keys(suite, shared, ni, nr, spi_i, spi_r, &from);
    ci = std::make_unique<SkCipher>(suite, k.sk_ei.bytes(), k.sk_ai.bytes());
    cr = std::make_unique<SkCipher>(suite, k.sk_er.bytes(), k.sk_ar.bytes());
  } catch (const CryptoError&) {
    return nullptr;
  }
  if (options.save_keys) {
    out.emplace_back(
        KeysAction{spi_i, spi_r, suite, k.sk_ei.clone(), k.sk_er.clone(), k.sk_ai.clone(), k.sk_ar.clone()});
  }
  IkeSa& n = new_sa(initiator, now);
  n.spi_i = spi_i;
  n.spi_r = spi_r;
  by_spi[n.our_spi()] = n.id;
  n.local = old_sa.local;
  n.remote = old_sa.remote;
  n.profile = old_sa.profile;
  n.suite = suite;
  n.sk_d = std::move(k.sk_d);
  n.sk_out = initiator ? std::move(ci) : std::move(cr);
  n.sk_in = initiator ? std::move(cr) : std::move(ci);
  n.nat_local = old_sa.nat_local;
  n.nat_remote = old_sa.nat_remote;
  n.fragmentation = old_sa.fragmentation;
  n.local_id = old_sa.local_id;
  n.remote_id = old_sa.remote_id;
  n.state = SaState::established;
  n.established_at = now;
  n.created = old_sa.created;
  const auto& cfg = n.profile->cfg;
  n.rekey_at = cfg.ike_lifetime != 0 ? now + detail::jittered(*random, cfg.ike_lifetime) : kNever;
  n.expire_at = cfg.ike_lifetime != 0 ? now + static_cast<TimeNs>(cfg.ike_lifetime) * kSecond : kNever;
  return &n;
}

void Daemon::Impl::move_children(IkeSa& from, IkeSa& to) {
  for (auto& [id, c] : children) {
    if (c.ike_sa == from.id) c.ike_sa = to.id;
  }
  // Queued work for the children goes along; the old SA only deletes itself.
  for (auto& w : from.queue) {
    if (!std::holds_alternative<detail::DeleteIkeWork>(w) && !std::holds_alternative<detail::DpdWork>(w)) {
      to.queue.push_back(std::move(w));
    }
  }
  from.queue.clear();
}

void Daemon::Impl::ike_rekey_done(IkeSa& old_sa, IkeSa& fresh, TimeNs now, Actions& out) {
  move_children(old_sa, fresh);
  old_sa.state = SaState::rekeyed;
  old_sa.replaced = true;
  old_sa.rekey_at = kNever;
  ++counters.rekeys;
  event(out, EventKind::ike_rekeyed,
        fmt::format("IKE SA {} with {} rekeyed: now IKE SA {} (SPIs {}_i {}_r), {}", old_sa.id, old_sa.remote.str(),
                    fresh.id, detail::hex_spi(fresh.spi_i), detail::hex_spi(fresh.spi_r), fresh.suite.str()));
  start_next(fresh.id, now, out);
}

}  // namespace ipsentry::ike::v2
