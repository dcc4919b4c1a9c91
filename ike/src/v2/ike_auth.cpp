// IKE_AUTH (RFC 7296 1.2, 2.15), both roles: identities, AUTH with a
// pre-shared key (compared in constant time) or a signature (RFC 7427,
// certificates checked against the profile's trust anchors and the peer's
// identity), AUTHENTICATION_FAILED both ways (2.21.2), and the first
// CHILD_SA, whose failure leaves the IKE SA up (2.21.3).
#include <fmt/format.h>

#include <algorithm>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace pt = dissect::ike::pt;
namespace xt = dissect::ike::xt;
using detail::kNever;
using detail::kSecond;
using detail::SaState;

// ---- AUTH ---------------------------------------------------------------------------------

Buffer Daemon::Impl::auth_octets(const IkeSa& sa, bool of_initiator, const IdPayload& id) const {
  // The initiator signs its IKE_SA_INIT request and the responder's nonce,
  // the responder its response and the initiator's nonce.
  const Buffer& real = of_initiator ? sa.init_request : sa.init_response;
  const Buffer& nonce = of_initiator ? sa.nr : sa.ni;
  const filters::SecretBytes& sk_p = of_initiator ? sa.sk_pi : sa.sk_pr;
  return signed_octets(sa.suite.prf, real, nonce, sk_p.bytes(), id.body());
}

bool Daemon::Impl::make_auth(IkeSa& sa, const detail::Profile& p, const IdPayload& id, AuthPayload& auth,
                             std::string& why) {
  const Buffer octets = auth_octets(sa, sa.initiator, id);
  if (!p.cert()) {
    auth.method = AuthMethod::psk;
    auth.data = psk_auth(sa.suite.prf, p.cfg.psk.bytes(), octets);
    return true;
  }
  std::vector<std::string> warnings;
  try {
    auto [method, data] = p.signer->sign(octets, sa.peer_hashes, warnings);
    auth.method = method;
    auth.data = std::move(data);
  } catch (const CryptoError& e) {
    why = e.what();
    return false;
  }
  return true;
}

bool Daemon::Impl::verify_peer(IkeSa& sa, const detail::Profile& p, const Message& m, std::string& why) {
  const auto* id = m.find<IdPayload>(sa.initiator ? pt::v2_idr : pt::v2_idi);
  const auto* auth = m.find<AuthPayload>(pt::v2_auth);
  if (id == nullptr || auth == nullptr) {
    why = "no identity or AUTH payload";
    return false;
  }
  if (!p.cfg.remote_id.matches(id->id_type, id->data)) {
    why =
        fmt::format("identity {} is not the profile's remote_id {}", detail::identity_text(*id), p.cfg.remote_id.str());
    return false;
  }
  const Buffer octets = auth_octets(sa, !sa.initiator, *id);
  if (!p.cert()) {
    if (auth->method != AuthMethod::psk) {
      why = fmt::format("the peer signs (AUTH method {}); profile {} expects a pre-shared key",
                        static_cast<int>(auth->method), p.cfg.name);
      return false;
    }
    if (!detail::equal_const(psk_auth(sa.suite.prf, p.cfg.psk.bytes(), octets), auth->data)) {
      why = "the pre-shared key AUTH does not verify (a different key?)";
      return false;
    }
    sa.remote_id = detail::identity_text(*id);
    return true;
  }
  if (auth->method == AuthMethod::psk) {
    why = fmt::format("the peer uses a pre-shared key; profile {} expects a certificate", p.cfg.name);
    return false;
  }
  std::vector<Certificate> certs;
  for (const auto& tp : m.payloads) {
    const auto* c = std::get_if<CertPayload>(&tp.body);
    if (tp.type != pt::v2_cert || c == nullptr || c->encoding != 4) continue;
    auto cert = Certificate::from_der(c->data, why);
    if (!cert) return false;
    certs.push_back(std::move(*cert));
  }
  if (certs.empty()) {
    why = "no X.509 certificate from the peer";
    return false;
  }
  const Certificate end = std::move(certs.front());
  certs.erase(certs.begin());
  if (!p.trust->verify(end, certs, wall_clock(), why)) return false;
  if (!end.has_identity(id->id_type, id->data)) {
    why = fmt::format("the certificate of {} does not name identity {}", end.subject(), detail::identity_text(*id));
    return false;
  }
  std::vector<std::string> warnings;
  if (!verify_auth(auth->method, auth->data, octets, end, why, warnings)) return false;
  sa.remote_id = id->id_type == 9 ? end.subject() : detail::identity_text(*id);
  return true;
}

bool Daemon::Impl::identity_is_ours(const detail::Profile& p, const IkeSa& sa, const IdPayload& id) const {
  const IdPayload ours = detail::our_identity(p, sa.local.addr);
  if (ours.id_type == id.id_type && ours.data == id.data) return true;
  return p.cert() && p.signer->certificate().has_identity(id.id_type, id.data);
}

// ---- initiator ------------------------------------------------------------------------------

void Daemon::Impl::send_auth_request(IkeSa& sa, TimeNs now, Actions& out) {
  const detail::Profile& p = *sa.profile;
  const IdPayload idi = detail::our_identity(p, sa.local.addr);
  sa.local_id = p.cert() && idi.id_type == 9 ? p.signer->certificate().subject() : detail::identity_text(idi);
  AuthPayload auth;
  std::string why;
  if (!make_auth(sa, p, idi, auth, why)) {
    initiator_failed(sa, "signing AUTH failed: " + why, now, out);
    return;
  }
  Message m = request_of(sa, xt::v2_auth);
  m.payloads.push_back({pt::v2_idi, idi});
  if (p.cert()) {
    m.payloads.push_back({pt::v2_cert, CertPayload{4, p.signer->certificate().der()}});
    for (const auto& c : p.signer->chain()) m.payloads.push_back({pt::v2_cert, CertPayload{4, c.der()}});
    // charon sends its certificate only when asked (send_cert = ifasked).
    m.payloads.push_back({pt::v2_certreq, CertReqPayload{4, p.trust->certreq_data()}});
  }
  if (p.cfg.remote_id.kind != filters::IkeIdentity::Kind::any) {
    m.payloads.push_back({pt::v2_idr, IdPayload{p.cfg.remote_id.id_type(), p.cfg.remote_id.id_data()}});
  }
  m.payloads.push_back({pt::v2_auth, std::move(auth)});
  const bool first_contact = std::none_of(sas.begin(), sas.end(), [&](const auto& e) {
    return e.second->id != sa.id && e.second->established() && e.second->remote.addr == sa.remote.addr;
  });
  if (first_contact) m.payloads.push_back(detail::notify_payload(notify::initial_contact));
  if (sa.first_child) {
    prepare_child_request(sa, *sa.first_child, false);
    add_child_payloads(*sa.first_child, m);
  }
  sa.state = SaState::auth_sent;
  send_request(sa, detail::AuthWork{}, std::move(m), now, out);
}

void Daemon::Impl::on_auth_response(IkeSa& sa, const Message& m, TimeNs now, Actions& out) {
  if (m.find<AuthPayload>(pt::v2_auth) == nullptr) {
    const auto* e = m.error_notify();
    if (e != nullptr && e->type == notify::authentication_failed) {
      // As the IP Security Monitor counts them: every authentication failure is
      // also a failed negotiation.
      ++counters.authentication_failures;
      ++counters.negotiation_failures;
      event(out, EventKind::auth_failed,
            fmt::format("IKE SA {}: {} refused our authentication: AUTHENTICATION_FAILED", sa.id, sa.remote.str()));
      remember_failure(sa, now);
      destroy_sa(sa, now, out, "AUTHENTICATION_FAILED");
      return;
    }
    initiator_failed(sa,
                     fmt::format("IKE_AUTH refused by {}: {}", sa.remote.str(),
                                 e != nullptr ? detail::notify_name(e->type) : "no AUTH payload"),
                     now, out);
    return;
  }
  std::string why;
  if (!verify_peer(sa, *sa.profile, m, why)) {
    initiator_auth_failed(sa, why, now, out);
    return;
  }
  established(sa, now, out);
  if (sa.first_child) {
    ChildRequest req = std::move(*sa.first_child);
    sa.first_child.reset();
    accept_child_response(sa, req, m, {}, sa.ni, sa.nr, std::nullopt, now, out);
  }
  clear_init_state(sa);
}

void Daemon::Impl::initiator_auth_failed(IkeSa& sa, const std::string& why, TimeNs now, Actions& out) {
  // As the IP Security Monitor counts them: every authentication failure is
  // also a failed negotiation.
  ++counters.authentication_failures;
  ++counters.negotiation_failures;
  event(out, EventKind::auth_failed,
        fmt::format("IKE SA {}: {} failed authentication: {}: AUTHENTICATION_FAILED", sa.id, sa.remote.str(), why));
  // RFC 7296 2.21.2: tell the responder in an INFORMATIONAL (sent once,
  // the SA goes now), then delete.
  Message m = request_of(sa, xt::v2_informational);
  m.message_id = sa.next_mid++;
  m.payloads.push_back(detail::notify_payload(notify::authentication_failed));
  emit_send(out, sa.local, sa.remote, encode(m, sa.sk_out.get(), *random));
  remember_failure(sa, now);
  destroy_sa(sa, now, out, "AUTHENTICATION_FAILED");
}

// ---- responder ------------------------------------------------------------------------------

void Daemon::Impl::on_auth_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                   Actions& out) {
  const auto* idr = m.find<IdPayload>(pt::v2_idr);
  std::string why =
      m.find<AuthPayload>(pt::v2_auth) == nullptr ? "no AUTH payload (EAP is not supported)" : "no profile matches";
  ProfilePtr chosen;
  if (m.find<AuthPayload>(pt::v2_auth) != nullptr) {
    for (const auto& p : sa.candidates) {
      if (idr != nullptr && !identity_is_ours(*p, sa, *idr)) continue;
      if (verify_peer(sa, *p, m, why)) {
        chosen = p;
        break;
      }
    }
  }
  if (!chosen) {
    responder_auth_failed(sa, d, m, hash, why, now, out);
    return;
  }
  sa.profile = chosen;
  sa.local = d.local;
  sa.remote = d.remote;
  const IdPayload idr_ours = detail::our_identity(*chosen, sa.local.addr);
  sa.local_id = chosen->cert() && idr_ours.id_type == 9 ? chosen->signer->certificate().subject()
                                                        : detail::identity_text(idr_ours);
  AuthPayload auth;
  if (!make_auth(sa, *chosen, idr_ours, auth, why)) {
    responder_auth_failed(sa, d, m, hash, "signing our AUTH failed: " + why, now, out);
    return;
  }
  Message resp = response_to(sa, m);
  resp.payloads.push_back({pt::v2_idr, idr_ours});
  if (chosen->cert()) {
    resp.payloads.push_back({pt::v2_cert, CertPayload{4, chosen->signer->certificate().der()}});
    for (const auto& c : chosen->signer->chain()) resp.payloads.push_back({pt::v2_cert, CertPayload{4, c.der()}});
  }
  resp.payloads.push_back({pt::v2_auth, std::move(auth)});
  established(sa, now, out);
  if (m.find<SaPayload>(pt::v2_sa) != nullptr) {
    Buffer nr = sa.nr;
    answer_child(sa, m, std::nullopt, false, resp, nr, now, out);  // installed before the answer leaves
  }
  send_response(sa, resp, d, hash, out);
  clear_init_state(sa);
  if (m.notify(notify::initial_contact) != nullptr) initial_contact(sa, now, out);
}

void Daemon::Impl::responder_auth_failed(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash,
                                         const std::string& why, TimeNs now, Actions& out) {
  // As the IP Security Monitor counts them: every authentication failure is
  // also a failed negotiation.
  ++counters.authentication_failures;
  ++counters.negotiation_failures;
  event(out, EventKind::auth_failed, fmt::format("IKE_AUTH from {}: {}: AUTHENTICATION_FAILED", d.remote.str(), why));
  Message resp = response_to(sa, m);
  resp.payloads.push_back(detail::notify_payload(notify::authentication_failed));
  send_response(sa, resp, d, hash, out);
  destroy_sa(sa, now, out, "AUTHENTICATION_FAILED");
}

// ---- both -------------------------------------------------------------------------------------

void Daemon::Impl::established(IkeSa& sa, TimeNs now, Actions& out) {
  sa.state = SaState::established;
  sa.established_at = now;
  sa.last_received = now;
  const auto& cfg = sa.profile->cfg;
  sa.rekey_at = cfg.ike_lifetime != 0 ? now + detail::jittered(*random, cfg.ike_lifetime) : kNever;
  sa.expire_at = cfg.ike_lifetime != 0 ? now + static_cast<TimeNs>(cfg.ike_lifetime) * kSecond : kNever;
  if (sa.half_open_deadline != kNever) {
    gate.remove(sa.remote.addr);
    sa.half_open_deadline = kNever;
  }
  if (!sa.init_hash.empty()) {
    init_hashes.erase(sa.init_hash);
    sa.init_hash.clear();
  }
  sa.candidates.clear();
  failures.erase({cfg.name, sa.remote.addr});
  ++counters.ike_sas_established;
  std::string nat;
  if (sa.nat_local) nat += ", we are behind a NAT";
  if (sa.nat_remote) nat += ", the peer is behind a NAT";
  event(
      out, EventKind::ike_established,
      fmt::format("IKE SA {} {} {} established: {} <-> {} ({}), {}, profile {}{}", sa.id, sa.initiator ? "to" : "from",
                  sa.remote.str(), sa.local_id, sa.remote_id, sa.remote.str(), sa.suite.str(), cfg.name, nat));
}

void Daemon::Impl::clear_init_state(IkeSa& sa) {
  // What only IKE_AUTH needed: nonces, the IKE_SA_INIT messages, SK_pi/pr.
  sa.ni.clear();
  sa.nr.clear();
  sa.init_request.clear();
  sa.init_response.clear();
  sa.sk_pi = {};
  sa.sk_pr = {};
  sa.ke.reset();
  sa.cookie.clear();
  sa.offered = {};
}

void Daemon::Impl::initial_contact(const IkeSa& sa, TimeNs now, Actions& out) {
  // RFC 7296 2.4: the peer has no other IKE SA with us any more (it
  // restarted): ours with it are stale and go without a Delete.
  std::vector<std::uint64_t> stale;
  for (const auto& [id, other] : sas) {
    const bool up =
        other->state == SaState::established || other->state == SaState::rekeyed || other->state == SaState::deleting;
    if (id != sa.id && up && other->profile->cfg.name == sa.profile->cfg.name && other->remote.addr == sa.remote.addr &&
        other->remote_id == sa.remote_id) {
      stale.push_back(id);
    }
  }
  for (auto id : stale) {
    if (IkeSa* other = find_sa(id)) destroy_sa(*other, now, out, "the peer restarted (INITIAL_CONTACT)");
  }
}

}  // namespace ipsentry::ike::v2
