// CHILD_SAs (RFC 7296 1.3, 2.8, 2.9, 2.17): proposals, traffic selectors,
// transport mode, KEYMAT, installation, creation and rekeying with
// CREATE_CHILD_SA (with PFS when the profile asks), rekey collisions
// (2.8.1), and expiry.
#include <fmt/format.h>

#include <algorithm>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace pt = dissect::ike::pt;
namespace xt = dissect::ike::xt;
using detail::ChildState;
using detail::kNever;
using detail::kNoPolicy;
using detail::kSecond;
using detail::SaState;

namespace {

ProtocolId protocol_id(filters::IpsecProtocol p) {
  return p == filters::IpsecProtocol::ah ? ProtocolId::ah : ProtocolId::esp;
}

Buffer spi_bytes(std::uint32_t spi) {
  return {static_cast<std::uint8_t>(spi >> 24), static_cast<std::uint8_t>(spi >> 16),
          static_cast<std::uint8_t>(spi >> 8), static_cast<std::uint8_t>(spi)};
}

/// IKE_AUTH carries no KE, so DH transforms in its SA payload mean nothing
/// (RFC 7296 1.2); some peers send them anyway.
SaPayload without_dh(SaPayload sa) {
  for (auto& p : sa.proposals) {
    std::erase_if(p.transforms, [](const Transform& t) { return t.type == 4; });
  }
  return sa;
}

std::vector<filters::DhGroup> groups_of(const std::vector<filters::ChildProposal>& ps) {
  std::vector<filters::DhGroup> r;
  for (const auto& p : ps) {
    for (auto g : p.dh) {
      if (g != filters::DhGroup::none && std::find(r.begin(), r.end(), g) == r.end()) r.push_back(g);
    }
  }
  return r;
}

TsPayload ts_payload(const std::vector<TrafficSelector>& ts) { return TsPayload{ts}; }

std::string ts_text(const std::vector<TrafficSelector>& ts) {
  std::string s;
  for (const auto& t : ts) s += (s.empty() ? "" : ", ") + t.str();
  return s;
}

}  // namespace

// ---- proposals and requests ---------------------------------------------------------------

std::vector<filters::ChildProposal> Daemon::Impl::child_proposals(const detail::Profile& p, std::size_t policy_index,
                                                                  bool with_pfs) const {
  const auto& pol = policy(policy_index);
  if (pol.ipsec == filters::PolicyIpsec::ah_esp) return {};  // AH+ESP bundles are not negotiated
  auto r = pol.ipsec == filters::PolicyIpsec::ah ? p.cfg.ah_proposals : p.cfg.esp_proposals;
  for (auto& cp : r) {
    if (!with_pfs) {
      cp.dh.clear();
    } else if (cp.dh.empty() && p.cfg.pfs != filters::DhGroup::none) {
      cp.dh = {p.cfg.pfs};
    }
  }
  return r;
}

void Daemon::Impl::prepare_child_request(IkeSa& sa, ChildRequest& req, bool create_child) {
  const auto props = child_proposals(*sa.profile, req.policy, create_child);
  if (req.spi == 0) req.spi = alloc_child_spi();
  if (create_child && req.group == filters::DhGroup::none) {
    const auto groups = groups_of(props);
    if (!groups.empty()) req.group = groups.front();
  }
  req.offered = child_sa_payload(props, req.spi, create_child ? req.group : filters::DhGroup::none);
  const auto& pol = policy(req.policy);
  req.transport = pol.mode == filters::SaMode::transport;
  const Child* old = req.rekeys ? find_child(*req.rekeys) : nullptr;
  if (old != nullptr) {
    // A rekey keeps what was negotiated.
    req.tsi = old->local_ts;
    req.tsr = old->remote_ts;
  } else {
    auto sel = policy_selectors(pol, sa.local.addr, sa.remote.addr);
    req.tsi = std::move(sel.local);
    req.tsr = std::move(sel.remote);
    if (req.has_packet) {
      // RFC 7296 2.9: the triggering packet's selectors first, so that a
      // narrowing responder picks the range that holds it.
      if (req.tsi.empty() || !(req.tsi.front() == req.packet_src)) req.tsi.insert(req.tsi.begin(), req.packet_src);
      if (req.tsr.empty() || !(req.tsr.front() == req.packet_dst)) req.tsr.insert(req.tsr.begin(), req.packet_dst);
    }
  }
  if (create_child) {
    req.nonce = detail::random_bytes(*random, detail::kNonceLen);
    req.ke = req.group != filters::DhGroup::none ? make_ke(req.group) : nullptr;
  }
}

void Daemon::Impl::add_child_payloads(const ChildRequest& req, Message& m) const {
  if (req.transport) m.payloads.push_back(detail::notify_payload(notify::use_transport_mode));
  m.payloads.push_back({pt::v2_sa, req.offered});
  m.payloads.push_back({pt::v2_tsi, ts_payload(req.tsi)});
  m.payloads.push_back({pt::v2_tsr, ts_payload(req.tsr)});
}

void Daemon::Impl::send_create_child(IkeSa& sa, ChildRequest req, TimeNs now, Actions& out) {
  if (req.policy == kNoPolicy) {
    child_request_failed(sa, req, "its policy was removed", now, out);
    return;
  }
  Child* old = req.rekeys ? find_child(*req.rekeys) : nullptr;
  if (req.rekeys && (old == nullptr || old->state != ChildState::installed || old->ike_sa != sa.id)) {
    if (req.spi != 0) release_child_spi(req.spi);  // already rekeyed or deleted meanwhile
    return;
  }
  if (child_proposals(*sa.profile, req.policy, true).empty()) {
    child_request_failed(sa, req, "no proposals for its protocol (AH+ESP bundles are not negotiated)", now, out);
    return;
  }
  try {
    prepare_child_request(sa, req, true);
  } catch (const CryptoError& e) {
    child_request_failed(sa, req, e.what(), now, out);
    return;
  }
  Message m = request_of(sa, xt::v2_create_child);
  if (old != nullptr) {
    NotifyPayload n;
    n.protocol = protocol_id(old->suite.protocol);
    n.spi = spi_bytes(old->spi_in);  // the SPI we receive on (RFC 7296 1.3.3)
    n.type = notify::rekey_sa;
    m.payloads.push_back({pt::v2_notify, std::move(n)});
  }
  if (req.transport) m.payloads.push_back(detail::notify_payload(notify::use_transport_mode));
  m.payloads.push_back({pt::v2_sa, req.offered});
  m.payloads.push_back({pt::v2_nonce, NoncePayload{req.nonce}});
  if (req.ke)
    m.payloads.push_back({pt::v2_ke, KePayload{static_cast<std::uint16_t>(req.group), req.ke->public_value()}});
  m.payloads.push_back({pt::v2_tsi, ts_payload(req.tsi)});
  m.payloads.push_back({pt::v2_tsr, ts_payload(req.tsr)});
  send_request(sa, std::move(req), std::move(m), now, out);
}

// ---- initiator: answers ----------------------------------------------------------------------

Child* Daemon::Impl::accept_child_response(IkeSa& sa, ChildRequest& req, const Message& m, Bytes pfs_shared, Bytes ni,
                                           Bytes nr, std::optional<std::uint64_t> replaces, TimeNs now, Actions& out,
                                           bool defer_outbound) {
  const auto* sa_p = m.find<SaPayload>(pt::v2_sa);
  const auto* tsi = m.find<TsPayload>(pt::v2_tsi);
  const auto* tsr = m.find<TsPayload>(pt::v2_tsr);
  if (sa_p == nullptr || tsi == nullptr || tsr == nullptr) {
    const auto* e = m.error_notify();
    child_request_failed(sa, req, e != nullptr ? detail::notify_name(e->type) : "no SA or traffic selectors", now, out);
    return nullptr;
  }
  std::string why;
  auto choice = accept_child(*sa_p, req.offered, why);
  if (choice && (!within(tsi->selectors, req.tsi) || !within(tsr->selectors, req.tsr))) {
    why = "the responder widened the traffic selectors";
  } else if (choice && (m.notify(notify::use_transport_mode) != nullptr) != req.transport) {
    why = req.transport ? "the responder refused transport mode" : "the responder wants transport mode";
  } else if (choice && choice->suite.dh != (req.ke ? req.ke->group() : filters::DhGroup::none)) {
    why = "the responder chose another PFS group";
  } else if (choice && req.policy == kNoPolicy) {
    why = "its policy was removed";
  } else if (choice) {
    why.clear();
  }
  if (!choice || !why.empty()) {
    if (choice) {
      // The responder installed it: delete it there (our SPI names it).
      sa.queue.push_back(detail::DeleteChildWork{0, req.spi, protocol_id(choice->suite.protocol)});
      req.spi = 0;
    }
    child_request_failed(sa, req, why, now, out);
    return nullptr;
  }
  const ChildKeys keys = derive_child_keys(sa.suite.prf, sa.sk_d.bytes(), pfs_shared, ni, nr,
                                           choice->suite.encryption_key_len(), choice->suite.integrity_key_len());
  Installed what{choice->suite,  req.transport,  req.spi, choice->peer_spi,
                 tsi->selectors, tsr->selectors, true,    defer_outbound};
  Child& c = install_child(sa, req.policy, std::move(what), keys, replaces, now, out);
  req.spi = 0;
  for (auto id : req.acquires) acquire_done(out, id, AcquireDoneAction::Result::protect, c.id);
  req.acquires.clear();
  return &c;
}

void Daemon::Impl::on_create_child_response(IkeSa& sa, ChildRequest req, const Message& m, TimeNs now, Actions& out) {
  if (child_error_response(sa, req, m, now, out)) return;
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  const auto* ke = m.find<KePayload>(pt::v2_ke);
  std::optional<filters::SecretBytes> shared;
  std::string why = "no nonce in the answer";
  if (nonce != nullptr && nonce->data.size() >= 16 && nonce->data.size() <= 256) {
    if (!req.ke) {
      shared.emplace();
    } else if (ke == nullptr || ke->group != static_cast<std::uint16_t>(req.ke->group())) {
      why = "no KE of our PFS group in the answer";
    } else {
      shared = req.ke->shared_secret(ke->data, why);
    }
  }
  if (!shared) {
    child_request_failed(sa, req, why, now, out);
    return;
  }
  // A rekey collision (RFC 7296 2.8.1): the exchange with the lowest of
  // the four nonces made the redundant child; its initiator deletes it.
  // Won: ours replaces the old child at once (the peer's, made when we
  // answered it, never sent: its outbound SA waited). Lost: ours is
  // redundant and never sends; the peer's takes over when the peer
  // deletes the old child (as charon concludes a lost collision).
  Child* old = req.rekeys ? find_child(*req.rekeys) : nullptr;
  if (old != nullptr && old->ike_sa != sa.id) old = nullptr;
  const bool lost = old != nullptr && old->peer_rekey_child &&
                    detail::lower_nonce(detail::min_nonce(req.nonce, nonce->data), old->peer_rekey_lowest);
  std::optional<std::uint64_t> replaces;
  if (old != nullptr && !lost) replaces = old->id;
  const std::uint64_t old_id = old != nullptr ? old->id : 0;  // child ids start at 1
  Child* fresh = accept_child_response(sa, req, m, shared->bytes(), req.nonce, nonce->data, replaces, now, out, lost);
  req.ke.reset();
  if (fresh == nullptr || old_id == 0) return;
  Child* o = find_child(old_id);
  if (lost) {
    event(out, EventKind::child_rekeyed,
          fmt::format("CHILD_SA {}: rekey collision lost, deleting our redundant CHILD_SA {}", old_id, fresh->id));
    queue_delete_child(sa, *fresh, now, out);
    return;
  }
  if (o != nullptr && o->peer_rekey_child) {
    // We won: the peer deletes its redundant child, whose outbound SA was
    // never used.
    if (Child* theirs = find_child(*o->peer_rekey_child)) theirs->outbound_replaced = true;
    o->peer_rekey_child.reset();
  }
  if (o != nullptr) queue_delete_child(sa, *o, now, out);
}

bool Daemon::Impl::child_error_response(IkeSa& sa, ChildRequest& req, const Message& m, TimeNs now, Actions& out) {
  if (m.find<SaPayload>(pt::v2_sa) != nullptr) return false;
  const auto* e = m.error_notify();
  const std::uint16_t type = e != nullptr ? e->type : 0;
  if (type == notify::temporary_failure && req.temporary_failures < 5) {
    // RFC 7296 2.25: the peer is busy rekeying or deleting; retry soon.
    ++req.temporary_failures;
    req.ke.reset();
    req.not_before = now + kSecond + static_cast<TimeNs>(detail::random_u32(*random) % 2000) * 1'000'000;
    sa.queue.push_back(std::move(req));
    return true;
  }
  if (type == notify::invalid_ke_payload && !req.ke_retried && e->data.size() == 2) {
    const auto g = filters::dh_group_from_id(static_cast<std::uint16_t>((e->data[0] << 8) | e->data[1]));
    const auto ours = groups_of(child_proposals(*sa.profile, req.policy, true));
    if (g && std::find(ours.begin(), ours.end(), *g) != ours.end()) {
      req.ke_retried = true;
      req.group = *g;
      req.ke.reset();
      sa.queue.push_front(std::move(req));
      return true;
    }
  }
  if (type == notify::child_sa_not_found && req.rekeys) {
    if (req.spi != 0) release_child_spi(req.spi);
    if (Child* old = find_child(*req.rekeys)) remove_child(*old, "the peer does not know it (CHILD_SA_NOT_FOUND)", out);
    return true;
  }
  child_request_failed(sa, req, type != 0 ? detail::notify_name(type) : "no SA payload in the answer", now, out);
  return true;
}

void Daemon::Impl::child_request_failed(IkeSa& sa, ChildRequest& req, const std::string& why, TimeNs now,
                                        Actions& out) {
  ++counters.negotiation_failures;
  const std::string pol = req.policy != kNoPolicy ? policy(req.policy).name : std::string("(removed)");
  event(out, EventKind::ike_failed,
        fmt::format("IKE SA {}: CHILD_SA {}for policy {} failed: {} (the IKE SA stays up)", sa.id,
                    req.rekeys ? "rekey " : "", pol, why));
  for (auto id : req.acquires) acquire_done(out, id, AcquireDoneAction::Result::drop);
  req.acquires.clear();
  if (req.spi != 0) release_child_spi(req.spi);
  req.spi = 0;
  if (req.rekeys) {
    if (Child* old = find_child(*req.rekeys)) {
      // Try again later; the hard lifetime still ends it.
      old->rekey_queued = false;
      old->rekey_at = now + 30 * kSecond;
    }
  }
}

// ---- responder ---------------------------------------------------------------------------------

std::optional<std::size_t> Daemon::Impl::select_policy(const IkeSa& sa, const Message& m, Narrowed& narrowed,
                                                       std::optional<std::size_t> only) const {
  const auto* tsi = m.find<TsPayload>(pt::v2_tsi);
  const auto* tsr = m.find<TsPayload>(pt::v2_tsr);
  if (tsi == nullptr || tsr == nullptr) return std::nullopt;
  for (std::size_t i = 0; i < config->policies.size(); ++i) {
    if (only && i != *only) continue;
    const auto& pol = config->policies[i];
    if (pol.action != filters::PolicyAction::negotiate || pol.ike != sa.profile->cfg.name) continue;
    if (auto n = narrow(tsi->selectors, tsr->selectors, policy_selectors(pol, sa.local.addr, sa.remote.addr))) {
      narrowed = std::move(*n);
      return i;
    }
  }
  return std::nullopt;
}

Child* Daemon::Impl::answer_child(IkeSa& sa, const Message& m, std::optional<std::uint64_t> rekeys, bool create_child,
                                  Message& resp, Buffer& nr, TimeNs now, Actions& out) {
  auto refuse = [&](std::uint16_t type, const std::string& why, Bytes data = {}) -> Child* {
    if (type != notify::invalid_ke_payload) {
      ++counters.negotiation_failures;
      event(out, EventKind::ike_failed,
            fmt::format("IKE SA {}: CHILD_SA request from {} refused: {}: {}", sa.id, sa.remote.str(),
                        detail::notify_name(type), why));
    }
    resp.payloads.push_back(detail::notify_payload(type, data));
    return nullptr;
  };
  const auto* sa_p = m.find<SaPayload>(pt::v2_sa);
  if (sa_p == nullptr) return refuse(notify::invalid_syntax, "no SA payload");
  std::optional<std::size_t> only;
  if (rekeys) only = find_child(*rekeys)->policy;
  Narrowed nar;
  const auto pol = select_policy(sa, m, nar, only);
  if (!pol) return refuse(notify::ts_unacceptable, "no negotiate policy of this profile covers its selectors");
  const bool transport = m.notify(notify::use_transport_mode) != nullptr;
  if (transport != (policy(*pol).mode == filters::SaMode::transport)) {
    return refuse(notify::no_proposal_chosen,
                  fmt::format("policy {} is in {} mode", policy(*pol).name, filters::to_string(policy(*pol).mode)));
  }
  const auto ours = child_proposals(*sa.profile, *pol, create_child);
  const SaPayload offered = create_child ? *sa_p : without_dh(*sa_p);
  const auto* ke = create_child ? m.find<KePayload>(pt::v2_ke) : nullptr;
  const auto group = ke != nullptr ? filters::dh_group_from_id(ke->group) : std::optional(filters::DhGroup::none);
  const std::uint32_t spi = alloc_child_spi();
  auto choice = group ? choose_child(offered, ours, *group, spi) : std::nullopt;
  // Our profile demands PFS when every proposal of ours names a group.
  const bool pfs_required = create_child && !ours.empty() &&
                            std::all_of(ours.begin(), ours.end(), [](const auto& p) { return !p.dh.empty(); });
  const bool wrong_group =
      choice && ((ke != nullptr && choice->suite.dh != filters::DhGroup::none && choice->suite.dh != *group) ||
                 (pfs_required && choice->suite.dh == filters::DhGroup::none));
  if (!choice || wrong_group) {
    release_child_spi(spi);
    std::optional<filters::DhGroup> want;
    if (wrong_group && choice->suite.dh != filters::DhGroup::none) want = choice->suite.dh;
    for (auto g : create_child && !want ? groups_of(ours) : std::vector<filters::DhGroup>{}) {
      if ((!group || g != *group) && choose_child(offered, ours, g, 0)) {
        want = g;
        break;
      }
    }
    if (want) {
      const auto id = static_cast<std::uint16_t>(*want);
      const std::uint8_t data[2] = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)};
      return refuse(notify::invalid_ke_payload, "another PFS group", data);
    }
    return refuse(notify::no_proposal_chosen, "no common ESP/AH proposal");
  }
  Buffer ni = sa.ni;
  if (create_child) {
    const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
    if (nonce == nullptr || nonce->data.size() < 16 || nonce->data.size() > 256) {
      release_child_spi(spi);
      return refuse(notify::invalid_syntax, "no nonce");
    }
    ni = nonce->data;
    nr = detail::random_bytes(*random, detail::kNonceLen);
  }
  std::unique_ptr<KeyExchange> our_ke;
  std::optional<filters::SecretBytes> shared;
  std::string why;
  if (choice->suite.dh != filters::DhGroup::none && ke != nullptr) {
    try {
      our_ke = make_ke(choice->suite.dh);
      shared = our_ke->shared_secret(ke->data, why);
    } catch (const CryptoError& e) {
      why = e.what();
    }
  } else if (choice->suite.dh == filters::DhGroup::none) {
    shared.emplace();
  }
  if (!shared) {
    release_child_spi(spi);
    return refuse(notify::invalid_syntax, "PFS key exchange failed: " + why);
  }
  const ChildKeys keys = derive_child_keys(sa.suite.prf, sa.sk_d.bytes(), shared->bytes(), ni, nr,
                                           choice->suite.encryption_key_len(), choice->suite.integrity_key_len());
  // A rekey: the initiator installs the new pair only when this answer
  // reaches it, so we keep sending on the old SA until it deletes it.
  Installed what{choice->suite, transport,     spi,   choice->peer_spi,
                 nar.responder, nar.initiator, false, rekeys.has_value()};
  Child& c = install_child(sa, *pol, std::move(what), keys, rekeys, now, out);
  if (transport) resp.payloads.push_back(detail::notify_payload(notify::use_transport_mode));
  resp.payloads.push_back({pt::v2_sa, SaPayload{{choice->answer}}});
  if (create_child) resp.payloads.push_back({pt::v2_nonce, NoncePayload{nr}});
  if (our_ke)
    resp.payloads.push_back(
        {pt::v2_ke, KePayload{static_cast<std::uint16_t>(choice->suite.dh), our_ke->public_value()}});
  resp.payloads.push_back({pt::v2_tsi, ts_payload(nar.initiator)});
  resp.payloads.push_back({pt::v2_tsr, ts_payload(nar.responder)});
  return &c;
}

void Daemon::Impl::on_create_child_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                           Actions& out) {
  if (m.find<TsPayload>(pt::v2_tsi) == nullptr || m.find<TsPayload>(pt::v2_tsr) == nullptr) {
    on_ike_rekey_request(sa, d, m, hash, now, out);
    return;
  }
  Message resp = response_to(sa, m);
  // RFC 7296 2.25.2: no new or rekeyed child while the IKE SA is being rekeyed or deleted.
  const bool ike_busy = sa.outstanding && (std::holds_alternative<detail::IkeRekeyWork>(sa.outstanding->work) ||
                                           std::holds_alternative<detail::DeleteIkeWork>(sa.outstanding->work));
  if (sa.state != SaState::established || ike_busy) {
    resp.payloads.push_back(detail::notify_payload(notify::temporary_failure));
    send_response(sa, resp, d, hash, out);
    return;
  }
  if (m.notify(notify::rekey_sa) != nullptr) {
    on_child_rekey_request(sa, d, m, hash, now, out);
    return;
  }
  Buffer nr;
  answer_child(sa, m, std::nullopt, true, resp, nr, now, out);
  send_response(sa, resp, d, hash, out);
}

void Daemon::Impl::on_child_rekey_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                          Actions& out) {
  Message resp = response_to(sa, m);
  const auto* n = m.notify(notify::rekey_sa);
  Child* old = nullptr;
  if (n->spi.size() == 4) {
    const std::uint32_t spi =
        (static_cast<std::uint32_t>(n->spi[0]) << 24) | (n->spi[1] << 16) | (n->spi[2] << 8) | n->spi[3];
    old = child_by_spi_out(sa.id, spi);  // the SPI the peer receives on is our outbound one
  }
  if (old == nullptr) {
    NotifyPayload nf = *n;
    nf.type = notify::child_sa_not_found;
    nf.data.clear();
    resp.payloads.push_back({pt::v2_notify, std::move(nf)});
    send_response(sa, resp, d, hash, out);
    return;
  }
  if (old->state != ChildState::installed) {
    // RFC 7296 2.25.1: we are closing it, or already rekeyed it.
    resp.payloads.push_back(detail::notify_payload(notify::temporary_failure));
    send_response(sa, resp, d, hash, out);
    return;
  }
  const std::uint64_t old_id = old->id;
  Buffer nr;
  Child* fresh = answer_child(sa, m, old_id, true, resp, nr, now, out);
  send_response(sa, resp, d, hash, out);
  if (fresh == nullptr) return;
  const auto* ours = sa.outstanding ? std::get_if<ChildRequest>(&sa.outstanding->work) : nullptr;
  if (ours != nullptr && ours->rekeys == old_id) {
    // Both ends rekey this child: decided when our answer comes.
    Child* o = find_child(old_id);
    o->peer_rekey_child = fresh->id;
    o->peer_rekey_lowest = detail::min_nonce(m.find<NoncePayload>(pt::v2_nonce)->data, nr);
  }
}

// ---- installation ----------------------------------------------------------------------------

filters::SaConfig Daemon::Impl::sa_config(const IkeSa& sa, const Child& c, bool inbound, const ChildKeys& keys,
                                          bool exchange_initiator) const {
  const auto& prof = sa.profile->cfg;
  filters::SaConfig s;
  s.spi = inbound ? c.spi_in : c.spi_out;
  s.name = fmt::format("{}-{:08x}", c.policy_name, *s.spi);
  s.protocol = c.suite.protocol;
  s.direction = inbound ? filters::Direction::inbound : filters::Direction::outbound;
  s.src = inbound ? sa.remote.addr : sa.local.addr;
  s.dst = inbound ? sa.local.addr : sa.remote.addr;
  s.mode = c.transport ? filters::SaMode::transport : filters::SaMode::tunnel;
  // The exchange initiator's keys come first in KEYMAT (RFC 7296 2.17).
  const bool initiator_keys = inbound != exchange_initiator;
  s.cipher = c.suite.protocol == filters::IpsecProtocol::esp ? c.suite.encryption.cipher : filters::Cipher::null;
  s.enc_key = (initiator_keys ? keys.encr_i : keys.encr_r).clone();
  s.integrity = c.suite.integrity;
  s.auth_key = (initiator_keys ? keys.integ_i : keys.integ_r).clone();
  s.esn = c.suite.esn;
  s.replay_window = inbound ? 64 : 0;
  if (c.udp_encap) {
    // RFC 3948: keepalives only from the side behind the NAT.
    s.encap = filters::UdpEncapConfig{sa.local.port, sa.remote.port, sa.nat_local ? 20u : 0u};
  }
  s.lifetime.seconds = prof.child_lifetime;
  s.lifetime.bytes = prof.child_lifetime_bytes;
  s.lifetime.packets = prof.child_lifetime_packets;
  // The data path reports the soft limits (expired(hard=false)) so the
  // child is rekeyed before the hard ones.
  s.lifetime.soft_bytes = prof.child_lifetime_bytes - prof.child_lifetime_bytes / 100 * 15;
  s.lifetime.soft_packets = prof.child_lifetime_packets - prof.child_lifetime_packets / 100 * 15;
  return s;
}

Child& Daemon::Impl::install_child(IkeSa& sa, std::size_t policy_index, Installed what, const ChildKeys& keys,
                                   std::optional<std::uint64_t> replaces, TimeNs now, Actions& out) {
  const auto& prof = sa.profile->cfg;
  Child c;
  c.id = next_child_id++;
  c.ike_sa = sa.id;
  c.policy = policy_index;
  c.policy_name = policy(policy_index).name;
  c.suite = what.suite;
  c.transport = what.transport;
  c.udp_encap = sa.nat_local || sa.nat_remote;
  c.spi_in = what.spi_in;
  c.spi_out = what.spi_out;
  c.local_ts = std::move(what.local_ts);
  c.remote_ts = std::move(what.remote_ts);
  c.installed_at = now;
  c.outbound_pending = what.defer_outbound;
  c.rekey_at = prof.child_lifetime != 0 ? now + detail::jittered(*random, prof.child_lifetime) : kNever;
  c.expire_at = prof.child_lifetime != 0 ? now + static_cast<TimeNs>(prof.child_lifetime) * kSecond : kNever;
  child_spis.insert(c.spi_in);
  ChildSa cs;
  cs.ike_sa = sa.id;
  cs.child = c.id;
  cs.policy = policy_index;
  cs.policy_name = c.policy_name;
  cs.peer = sa.remote;
  cs.inbound = sa_config(sa, c, true, keys, what.exchange_initiator);
  cs.outbound = sa_config(sa, c, false, keys, what.exchange_initiator);
  cs.local_ts = c.local_ts;
  cs.remote_ts = c.remote_ts;
  cs.replaces = replaces;
  cs.outbound_deferred = what.defer_outbound;
  Child* old = replaces ? find_child(*replaces) : nullptr;
  if (old != nullptr) {
    // Its inbound SA stays until the Delete exchange (or the grace) so that
    // nothing in flight is lost. Its outbound SA is replaced now, or, when
    // ours waits (rekey responder), when it goes: the peer's Delete, the
    // grace, or its hard lifetime, whichever comes first.
    if (old->state == ChildState::installed) old->state = ChildState::rekeyed;
    old->rekey_at = kNever;
    old->remove_at = std::min({old->remove_at, now + detail::kRekeyGrace, old->expire_at});
    if (what.defer_outbound) {
      old->successor = c.id;
    } else {
      old->outbound_replaced = true;
      old->successor.reset();  // a collision we won: the peer's child never sends
    }
  }
  ++counters.child_sas_established;
  const std::string text =
      fmt::format("CHILD_SA {} ({}) {}: SPIs {:08x} in / {:08x} out{}, {}, {} mode{}, {} === {}", c.id, c.policy_name,
                  old != nullptr ? fmt::format("rekeyed CHILD_SA {}", old->id) : std::string("established"), c.spi_in,
                  c.spi_out, c.outbound_pending ? " (outbound once the old SA is deleted)" : "", c.suite.str(),
                  c.transport ? "transport" : "tunnel", c.udp_encap ? ", UDP-encapsulated" : "", ts_text(c.local_ts),
                  ts_text(c.remote_ts));
  if (old != nullptr) ++counters.rekeys;
  out.emplace_back(InstallAction{std::move(cs)});
  event(out, old != nullptr ? EventKind::child_rekeyed : EventKind::child_established, text);
  return children.emplace(c.id, std::move(c)).first->second;
}

void Daemon::Impl::queue_child_rekey(IkeSa& sa, Child& c, TimeNs now, Actions& out) {
  if (c.rekey_queued || c.state != ChildState::installed) return;
  if (c.policy == kNoPolicy) {
    queue_delete_child(sa, c, now, out);
    return;
  }
  c.rekey_queued = true;
  ChildRequest req;
  req.policy = c.policy;
  req.rekeys = c.id;
  queue(sa, std::move(req), now, out);
}

void Daemon::Impl::remove_child(Child& c, const std::string& reason, Actions& out) {
  if (c.successor) {
    // Rekeyed as responder: the new outbound SA takes over before the old
    // one goes (by now the peer has the new pair, or had the grace for it).
    if (Child* s = find_child(*c.successor); s != nullptr && s->outbound_pending) {
      s->outbound_pending = false;
      out.emplace_back(ActivateOutboundAction{s->id, c.id});
      c.outbound_replaced = true;
    }
    c.successor.reset();
  }
  out.emplace_back(RemoveAction{c.id, c.spi_in, c.spi_out, c.outbound_replaced, reason});
  event(
      out, EventKind::child_deleted,
      fmt::format("CHILD_SA {} ({}) SPIs {:08x}/{:08x} removed: {}", c.id, c.policy_name, c.spi_in, c.spi_out, reason));
  release_child_spi(c.spi_in);
  for (auto& [id, other] : children) {
    if (other.peer_rekey_child == c.id) other.peer_rekey_child.reset();
  }
  children.erase(c.id);
}

void Daemon::Impl::child_expired(std::uint64_t child, bool hard, TimeNs now, Actions& out) {
  Child* c = find_child(child);
  if (c == nullptr) return;
  IkeSa* sa = find_sa(c->ike_sa);
  const bool usable = sa != nullptr && sa->established();
  if (!hard) {
    if (usable) queue_child_rekey(*sa, *c, now, out);
    return;
  }
  // Its SAs are spent: remove them now and tell the peer (our SPI stays
  // reserved until that Delete is out).
  const std::uint32_t spi = c->spi_in;
  const ProtocolId proto = protocol_id(c->suite.protocol);
  const bool tell = usable && c->state == ChildState::installed;
  remove_child(*c, "hard lifetime reached", out);
  if (tell) {
    child_spis.insert(spi);
    queue(*sa, detail::DeleteChildWork{0, spi, proto}, now, out);
  }
}

}  // namespace ipsentry::ike::v2
