// IKE_SA_INIT (RFC 7296 1.2), both roles: proposals, KE and nonces, NAT
// detection (2.23), INVALID_KE_PAYLOAD (1.2) and COOKIE (2.6) both ways,
// and the responder's DoS gate in front of any state.
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

namespace detail {

std::optional<IkeChoice> choose_ike_for_ke(const SaPayload& offered, const std::vector<filters::IkeProposal>& ours,
                                           std::uint16_t ke_group, Bytes spi) {
  const auto group = filters::dh_group_from_id(ke_group).value_or(filters::DhGroup::none);
  auto first = choose_ike(offered, ours, spi, group);
  if (!first || first->suite.dh == group || group == filters::DhGroup::none) return first;
  // choose_ike() prefers the KE's group within the first acceptable
  // proposal; a later proposal may still hold it, which saves the
  // INVALID_KE_PAYLOAD round trip (charon does the same).
  SaPayload only;
  for (const auto& p : offered.proposals) {
    const bool has = std::any_of(p.transforms.begin(), p.transforms.end(),
                                 [&](const Transform& t) { return t.type == 4 && t.id == ke_group; });
    if (has) only.proposals.push_back(p);
  }
  auto second = only.proposals.empty() ? std::nullopt : choose_ike(only, ours, spi, group);
  return second && second->suite.dh == group ? second : first;
}

Buffer natd_hash(std::uint64_t spi_i, std::uint64_t spi_r, const Endpoint& e) {
  std::uint8_t spis[16];
  for (int i = 0; i < 8; ++i) {
    spis[i] = static_cast<std::uint8_t>(spi_i >> (56 - 8 * i));
    spis[8 + i] = static_cast<std::uint8_t>(spi_r >> (56 - 8 * i));
  }
  const std::uint8_t port[2] = {static_cast<std::uint8_t>(e.port >> 8), static_cast<std::uint8_t>(e.port)};
  // RFC 7296 2.23 fixes SHA-1 here; it is a hash of public values, not a MAC.
  return hash(filters::Prf::hmac_sha1, {Bytes(spis, 16), Bytes(e.addr.data(), e.addr.size()), Bytes(port, 2)});
}

std::vector<SignatureHash> signature_hashes(const Message& m) {
  std::vector<SignatureHash> r;
  if (const auto* n = m.notify(notify::signature_hash_algorithms)) {
    for (std::size_t i = 0; i + 1 < n->data.size(); i += 2) {
      r.push_back(static_cast<SignatureHash>((n->data[i] << 8) | n->data[i + 1]));
    }
  }
  return r;
}

TypedPayload our_signature_hashes() {
  // SHA-256, SHA-384, SHA-512 (RFC 7427 4); SHA-1 is not offered.
  const std::uint8_t data[] = {0, 2, 0, 3, 0, 4};
  return notify_payload(notify::signature_hash_algorithms, data);
}

}  // namespace detail

// ---- responder ----------------------------------------------------------------------------

void Daemon::Impl::on_init_request(const Datagram& d, const Message& h, TimeNs now, Actions& out) {
  Buffer hash = detail::sha256(d.data);
  if (auto it = init_hashes.find(hash); it != init_hashes.end()) {
    // A retransmission: the same answer, no new SPI, no new DH.
    IkeSa* sa = find_sa(it->second);
    if (sa != nullptr && sa->state == SaState::half_open && !sa->init_response.empty()) {
      emit_send(out, d.local, d.remote, sa->init_response);
    }
    return;
  }
  if (h.message_id != 0) {
    invalid(out, now, fmt::format("IKE_SA_INIT request from {} with message ID {}", d.remote.str(), h.message_id));
    return;
  }
  Message m;
  std::string why;
  const DecodeStatus st = decode(d.data, nullptr, m, why);
  if (st == DecodeStatus::unsupported_critical) {
    answer_init_error(d, m, notify::unsupported_critical_payload, Buffer{0}, out);
    invalid(out, now, fmt::format("IKE_SA_INIT from {}: {}", d.remote.str(), why));
    return;
  }
  const auto* sa_p = st == DecodeStatus::ok ? m.find<SaPayload>(pt::v2_sa) : nullptr;
  const auto* ke = m.find<KePayload>(pt::v2_ke);
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  if (sa_p == nullptr || ke == nullptr || nonce == nullptr || nonce->data.size() < 16 || nonce->data.size() > 256) {
    invalid(out, now,
            fmt::format("IKE_SA_INIT from {} dropped: {}", d.remote.str(),
                        st != DecodeStatus::ok ? why : "SA, KE or a 16-256 byte nonce missing"));
    return;
  }
  if (!init_request_admitted(d, m, now, out)) return;
  auto candidates = responder_profiles(d);
  std::optional<IkeChoice> choice;
  for (const auto& p : candidates) {
    choice = detail::choose_ike_for_ke(*sa_p, p->cfg.proposals, ke->group, {});
    if (choice) break;
  }
  if (!choice) {
    ++counters.negotiation_failures;
    // As charon, NO_PROPOSAL_CHOSEN either way; the log says which it was,
    // since an unknown (or spoofed) peer is a different matter from a
    // known one whose algorithms do not match.
    event(out, EventKind::ike_failed,
          fmt::format("IKE_SA_INIT from {}: NO_PROPOSAL_CHOSEN ({})", d.remote.str(),
                      candidates.empty() ? "no IKE profile accepts this peer" : "no profile accepts its proposals"));
    answer_init_error(d, m, notify::no_proposal_chosen, {}, out);
    return;
  }
  if (static_cast<std::uint16_t>(choice->suite.dh) != ke->group) {
    const auto g = static_cast<std::uint16_t>(choice->suite.dh);
    const std::uint8_t data[2] = {static_cast<std::uint8_t>(g >> 8), static_cast<std::uint8_t>(g)};
    answer_init_error(d, m, notify::invalid_ke_payload, data, out);
    return;
  }
  respond_init(d, m, hash, std::move(candidates), *choice, now, out);
}

void Daemon::Impl::answer_init_error(const Datagram& d, const Message& request, std::uint16_t type, Bytes data,
                                     Actions& out) {
  // Stateless (RFC 7296 2.6): no SPI of ours, nothing kept.
  Message m;
  m.spi_i = request.spi_i;
  m.exchange = xt::v2_sa_init;
  m.response = true;
  m.payloads.push_back(detail::notify_payload(type, data));
  emit_send(out, d.local, d.remote, encode(m, nullptr, *random));
}

bool Daemon::Impl::init_request_admitted(const Datagram& d, const Message& m, TimeNs now, Actions& out) {
  if (gate.over_limit()) {
    ++counters.half_open_dropped;
    if (counters.half_open_dropped % 100 == 1) {
      event(out, EventKind::half_open_limit,
            fmt::format("{} half-open IKE SAs: IKE_SA_INIT from {} dropped ({} so far)", gate.half_open(),
                        d.remote.str(), counters.half_open_dropped));
    }
    return false;
  }
  bool turned_on = false;
  if (!gate.cookie_required(d.remote.addr, now, turned_on)) return true;
  if (turned_on) {
    event(out, EventKind::cookies, fmt::format("cookies on: {} half-open IKE SAs", gate.half_open()));
  }
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  // RFC 7296 2.6: the COOKIE is the first payload.
  const NotifyPayload* cookie = nullptr;
  if (!m.payloads.empty()) {
    const auto* n = std::get_if<NotifyPayload>(&m.payloads.front().body);
    if (n != nullptr && n->type == notify::cookie) cookie = n;
  }
  if (cookie != nullptr && gate.check(cookie->data, nonce->data, d.remote.addr, m.spi_i)) return true;
  if (cookie != nullptr) ++counters.invalid_cookies;
  ++counters.cookies_sent;
  answer_init_error(d, m, notify::cookie, gate.make(nonce->data, d.remote.addr, m.spi_i), out);
  return false;
}

std::vector<ProfilePtr> Daemon::Impl::responder_profiles(const Datagram& d) const {
  // Profiles some negotiate policy uses whose peer is this address come
  // first, then those for any peer.
  std::vector<ProfilePtr> exact, any;
  for (const auto& p : profiles) {
    if (p->cfg.version != 2) continue;
    const bool used = std::any_of(config->policies.begin(), config->policies.end(), [&](const auto& pol) {
      return pol.action == filters::PolicyAction::negotiate && pol.ike == p->cfg.name;
    });
    if (!used) continue;
    if (p->cfg.peer && *p->cfg.peer == d.remote.addr) exact.push_back(p);
    if (!p->cfg.peer) any.push_back(p);
  }
  exact.insert(exact.end(), any.begin(), any.end());
  return exact;
}

void Daemon::Impl::respond_init(const Datagram& d, const Message& m, Bytes hash, std::vector<ProfilePtr> candidates,
                                const IkeChoice& choice, TimeNs now, Actions& out) {
  IkeSa& sa = new_sa(false, now);
  sa.spi_i = m.spi_i;
  sa.spi_r = alloc_ike_spi();
  by_spi[sa.spi_r] = sa.id;
  sa.local = d.local;
  sa.remote = d.remote;
  sa.suite = choice.suite;
  // Only the profiles that accept the chosen suite may authenticate the peer.
  SaPayload chosen{{choice.answer}};
  std::erase_if(candidates, [&](const ProfilePtr& p) { return !choose_ike(chosen, p->cfg.proposals); });
  sa.candidates = std::move(candidates);
  sa.profile = sa.candidates.front();
  sa.ni = m.find<NoncePayload>(pt::v2_nonce)->data;
  sa.nr = detail::random_bytes(*random, detail::kNonceLen);
  sa.init_request.assign(d.data.begin(), d.data.end());
  sa.init_hash.assign(hash.begin(), hash.end());
  init_hashes[sa.init_hash] = sa.id;
  sa.half_open_deadline = now + options.half_open_timeout;
  gate.add(sa.remote.addr);
  sa.peer_hashes = detail::signature_hashes(m);
  sa.peer_certreq = m.find<CertReqPayload>(pt::v2_certreq) != nullptr;
  detect_nat(sa, m, d.remote, d.local);

  std::string why;
  std::optional<filters::SecretBytes> shared;
  try {
    sa.ke = make_ke(sa.suite.dh);
    shared = sa.ke->shared_secret(m.find<KePayload>(pt::v2_ke)->data, why);
  } catch (const CryptoError& e) {
    why = e.what();
  }
  if (!shared || !derive_initial_keys(sa, shared->bytes(), out)) {
    invalid(out, now, fmt::format("IKE_SA_INIT from {}: key exchange failed: {}", d.remote.str(), why));
    destroy_sa(sa, now, out, "key exchange failed");
    return;
  }
  Message r;
  r.spi_i = sa.spi_i;
  r.spi_r = sa.spi_r;
  r.exchange = xt::v2_sa_init;
  r.response = true;
  r.payloads.push_back({pt::v2_sa, SaPayload{{choice.answer}}});
  r.payloads.push_back({pt::v2_ke, KePayload{static_cast<std::uint16_t>(sa.suite.dh), sa.ke->public_value()}});
  r.payloads.push_back({pt::v2_nonce, NoncePayload{sa.nr}});
  sa.ke.reset();  // the DH private value is not needed any more
  if (m.notify(notify::nat_detection_source_ip) != nullptr) {
    for (auto& p : natd_payloads(sa)) r.payloads.push_back(std::move(p));
  }
  // RFC 7383 2.3: the responder announces it only to an initiator that did.
  sa.fragmentation = options.fragmentation && m.notify(notify::fragmentation_supported) != nullptr;
  if (sa.fragmentation) r.payloads.push_back(detail::notify_payload(notify::fragmentation_supported, {}));
  const auto cert = std::find_if(sa.candidates.begin(), sa.candidates.end(), [](const auto& p) { return p->cert(); });
  if (cert != sa.candidates.end()) {
    r.payloads.push_back({pt::v2_certreq, CertReqPayload{4, (*cert)->trust->certreq_data()}});
    if (!sa.peer_hashes.empty()) r.payloads.push_back(detail::our_signature_hashes());
  }
  sa.init_response = encode(r, nullptr, *random);
  sa.peer_mid = 1;
  emit_send(out, d.local, d.remote, sa.init_response);
}

// ---- initiator -----------------------------------------------------------------------------

void Daemon::Impl::initiate(IkeSa& sa, TimeNs now, Actions& out) {
  sa.spi_i = alloc_ike_spi();
  by_spi[sa.spi_i] = sa.id;
  sa.ni = detail::random_bytes(*random, detail::kNonceLen);
  sa.offered = ike_sa_payload(sa.profile->cfg.proposals);
  filters::DhGroup group = filters::DhGroup::none;
  for (const auto& p : sa.profile->cfg.proposals) {
    if (!p.dh.empty()) {
      group = p.dh.front();
      break;
    }
  }
  try {
    sa.ke = make_ke(group);
  } catch (const CryptoError& e) {
    initiator_failed(sa, fmt::format("DH group {}: {}", filters::to_string(group), e.what()), now, out);
    return;
  }
  send_init_request(sa, now, out);
}

void Daemon::Impl::send_init_request(IkeSa& sa, TimeNs now, Actions& out) {
  Message m = request_of(sa, xt::v2_sa_init);
  if (!sa.cookie.empty()) m.payloads.push_back(detail::notify_payload(notify::cookie, sa.cookie));
  m.payloads.push_back({pt::v2_sa, sa.offered});
  m.payloads.push_back({pt::v2_ke, KePayload{static_cast<std::uint16_t>(sa.ke->group()), sa.ke->public_value()}});
  m.payloads.push_back({pt::v2_nonce, NoncePayload{sa.ni}});
  for (auto& p : natd_payloads(sa)) m.payloads.push_back(std::move(p));
  // RFC 7383 2.3: announced by both; used only when both do.
  if (options.fragmentation) m.payloads.push_back(detail::notify_payload(notify::fragmentation_supported, {}));
  if (sa.profile->cert()) m.payloads.push_back(detail::our_signature_hashes());
  sa.outstanding.reset();
  sa.next_mid = 0;  // a retry with a cookie or another group is message 0 again
  send_request(sa, detail::InitWork{}, std::move(m), now, out);
  sa.init_request = sa.outstanding->packets.front();
}

void Daemon::Impl::on_init_response(IkeSa& sa, const Datagram& d, const Message& m, TimeNs now, Actions& out) {
  if (init_response_retry(sa, m, now, out)) return;
  if (const auto* e = m.error_notify()) {
    initiator_failed(sa, fmt::format("{} refused IKE_SA_INIT: {}", sa.remote.str(), detail::notify_name(e->type)), now,
                     out);
    return;
  }
  const auto* sa_p = m.find<SaPayload>(pt::v2_sa);
  const auto* ke = m.find<KePayload>(pt::v2_ke);
  const auto* nonce = m.find<NoncePayload>(pt::v2_nonce);
  if (sa_p == nullptr || ke == nullptr || nonce == nullptr || nonce->data.size() < 16 || nonce->data.size() > 256 ||
      m.spi_r == 0) {
    invalid(out, now, fmt::format("IKE SA {}: IKE_SA_INIT response without SA, KE, nonce or SPI", sa.id));
    return;  // keep waiting for a real one
  }
  std::string why;
  auto suite = accept_ike(*sa_p, sa.offered, why);
  if (suite && suite->dh != sa.ke->group()) {
    suite.reset();
    why = "the responder chose another DH group than our KE";
  }
  std::optional<filters::SecretBytes> shared;
  if (suite) shared = sa.ke->shared_secret(ke->data, why);
  if (!suite || !shared) {
    initiator_failed(sa, fmt::format("IKE_SA_INIT response from {}: {}", sa.remote.str(), why), now, out);
    return;
  }
  sa.outstanding.reset();
  sa.spi_r = m.spi_r;
  sa.suite = *suite;
  sa.nr = nonce->data;
  sa.init_response.assign(d.data.begin(), d.data.end());
  sa.peer_hashes = detail::signature_hashes(m);
  sa.peer_certreq = m.find<CertReqPayload>(pt::v2_certreq) != nullptr;
  sa.fragmentation = options.fragmentation && m.notify(notify::fragmentation_supported) != nullptr;
  sa.ke.reset();
  detect_nat(sa, m, d.remote, d.local);
  if (!derive_initial_keys(sa, shared->bytes(), out)) {
    initiator_failed(sa, "deriving the IKE SA keys failed", now, out);
    return;
  }
  if (sa.nat_local || sa.nat_remote) {
    // RFC 7296 2.23: IKE moves to port 4500 once a NAT is detected.
    sa.local.port = 4500;
    sa.remote.port = 4500;
  }
  send_auth_request(sa, now, out);
}

bool Daemon::Impl::init_response_retry(IkeSa& sa, const Message& m, TimeNs now, Actions& out) {
  if (const auto* c = m.notify(notify::cookie)) {
    if (c->data.empty() || c->data.size() > 64) return false;
    if (c->data == sa.cookie) return true;  // a duplicate: ignored, we are already retrying with it
    if (++sa.cookie_retries > detail::kMaxCookieRetries) {
      initiator_failed(sa, fmt::format("{} keeps asking for cookies", sa.remote.str()), now, out);
      return true;
    }
    sa.cookie = c->data;
    send_init_request(sa, now, out);
    return true;
  }
  const auto* n = m.notify(notify::invalid_ke_payload);
  if (n == nullptr) return false;
  const std::uint16_t g = n->data.size() == 2 ? static_cast<std::uint16_t>((n->data[0] << 8) | n->data[1]) : 0;
  auto group = acceptable_ke_group(sa.offered, g);
  if (sa.ke_retried || !group || *group == sa.ke->group()) {
    initiator_failed(sa, fmt::format("{} wants DH group {}, which we cannot use", sa.remote.str(), g), now, out);
    return true;
  }
  sa.ke_retried = true;
  try {
    sa.ke = make_ke(*group);
  } catch (const CryptoError& e) {
    initiator_failed(sa, e.what(), now, out);
    return true;
  }
  send_init_request(sa, now, out);
  return true;
}

bool Daemon::Impl::derive_initial_keys(IkeSa& sa, Bytes shared, Actions& out) {
  try {
    IkeKeys k = derive_ike_keys(sa.suite, shared, sa.ni, sa.nr, sa.spi_i, sa.spi_r);
    if (options.save_keys) {
      out.emplace_back(
          KeysAction{sa.spi_i, sa.spi_r, sa.suite, k.sk_ei.clone(), k.sk_er.clone(), k.sk_ai.clone(), k.sk_ar.clone()});
    }
    auto in_i = std::make_unique<SkCipher>(sa.suite, k.sk_ei.bytes(), k.sk_ai.bytes());
    auto in_r = std::make_unique<SkCipher>(sa.suite, k.sk_er.bytes(), k.sk_ar.bytes());
    sa.sk_out = sa.initiator ? std::move(in_i) : std::move(in_r);
    sa.sk_in = sa.initiator ? std::move(in_r) : std::move(in_i);
    sa.sk_d = std::move(k.sk_d);
    sa.sk_pi = std::move(k.sk_pi);
    sa.sk_pr = std::move(k.sk_pr);
    return true;
  } catch (const CryptoError&) {
    return false;
  }
}

void Daemon::Impl::detect_nat(IkeSa& sa, const Message& m, const Endpoint& peer_seen, const Endpoint& local_seen) {
  const NotifyPayload* dst = m.notify(notify::nat_detection_destination_ip);
  bool any_src = false, src_match = false;
  const Buffer expected_src = detail::natd_hash(m.spi_i, m.spi_r, peer_seen);
  for (const auto& p : m.payloads) {
    const auto* n = std::get_if<NotifyPayload>(&p.body);
    if (n == nullptr || n->type != notify::nat_detection_source_ip) continue;
    any_src = true;
    src_match = src_match || detail::equal_const(n->data, expected_src);
  }
  if (!any_src || dst == nullptr) return;  // the peer does not do NAT-T
  sa.nat_remote = !src_match;
  sa.nat_local = !detail::equal_const(dst->data, detail::natd_hash(m.spi_i, m.spi_r, local_seen));
}

std::vector<TypedPayload> Daemon::Impl::natd_payloads(const IkeSa& sa) const {
  std::vector<TypedPayload> r;
  r.push_back(detail::notify_payload(notify::nat_detection_source_ip, detail::natd_hash(sa.spi_i, sa.spi_r, sa.local)));
  r.push_back(
      detail::notify_payload(notify::nat_detection_destination_ip, detail::natd_hash(sa.spi_i, sa.spi_r, sa.remote)));
  return r;
}

void Daemon::Impl::initiator_failed(IkeSa& sa, const std::string& why, TimeNs now, Actions& out) {
  ++counters.negotiation_failures;
  event(out, EventKind::ike_failed, fmt::format("IKE SA {} to {}: {}", sa.id, sa.remote.str(), why));
  remember_failure(sa, now);
  destroy_sa(sa, now, out, why);
}

}  // namespace ipsentry::ike::v2
