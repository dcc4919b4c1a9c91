// The IKEv2 daemon (ike::v2::Daemon) end to end in memory: two daemons
// with seeded randomness talk through a tiny network with a fake clock.
// Establishment in both roles with PSK and certificates, transport and
// tunnel, the ciphers; what goes wrong (AUTHENTICATION_FAILED, no proposal,
// INVALID_KE_PAYLOAD, cookies); traffic selectors; loss, retransmission,
// replays and forgeries. Rekeying, DPD, NAT and reconfiguration are in
// test_ikev2_lifecycle.cpp.
#include <gtest/gtest.h>

#include "ikev2_configs.hpp"
#include "ikev2_net.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/ike/message.hpp"

namespace {

using namespace ipsentry;
using namespace ipsentry::test_ikev2;
namespace xt = ipsentry::dissect::ike::xt;
using R = AcquireDoneAction::Result;

struct Pair {
  Net net;
  Node* a = nullptr;
  Node* b = nullptr;
};

std::unique_ptr<Pair> make_pair(const Cfg& ca, const Cfg& cb, Options oa = {}, Options ob = {}) {
  auto p = std::make_unique<Pair>();
  p->a = &p->net.add("A", ca.me.c_str(), ca.yaml(), oa, 11);
  p->b = &p->net.add("B", cb.me.c_str(), cb.yaml(), ob, 22);
  return p;
}

/// A's first packet to B's site: an acquire, then the network runs.
void start_tunnel(Pair& p, std::uint64_t acquire = 1) {
  p.net.acquire(*p.a, acquire, 0, kB, "192.0.2.10", "192.0.2.200");
  p.net.run(10 * kSec);
}

/// The IKE exchange type and message ID of a datagram, and its R flag.
struct Seen {
  std::uint8_t exchange;
  bool response;
  std::uint32_t mid;
};
Seen seen(const Wire& w) {
  std::string why;
  auto h = decode_header(w.data, why);
  EXPECT_TRUE(h.has_value()) << why;
  return h ? Seen{h->exchange, h->response, h->message_id} : Seen{0, false, 0};
}

/// Decodes an IKE_SA_INIT message (cleartext).
Message cleartext(const Wire& w) {
  Message m;
  std::string why;
  EXPECT_EQ(decode(w.data, nullptr, m, why), DecodeStatus::ok) << why;
  return m;
}

void expect_up(const Pair& p, std::size_t children = 1) {
  const auto sa = p.a->snap(p.net.now);
  const auto sb = p.b->snap(p.net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u) << p.a->event_text(EventKind::ike_failed);
  ASSERT_EQ(sb.ike_sas.size(), 1u) << p.b->event_text(EventKind::ike_failed);
  EXPECT_EQ(sa.ike_sas[0].state, "established");
  EXPECT_EQ(sb.ike_sas[0].state, "established");
  EXPECT_TRUE(sa.ike_sas[0].initiator);
  EXPECT_FALSE(sb.ike_sas[0].initiator);
  EXPECT_EQ(sa.ike_sas[0].spi_i, sb.ike_sas[0].spi_i);
  EXPECT_EQ(sa.ike_sas[0].spi_r, sb.ike_sas[0].spi_r);
  EXPECT_EQ(sa.ike_sas[0].children.size(), children);
  EXPECT_EQ(sb.ike_sas[0].children.size(), children);
  EXPECT_EQ(p.a->outbound.size(), children);
  EXPECT_EQ(p.b->outbound.size(), children);
  expect_keys_agree(*p.a, *p.b);
  EXPECT_FALSE(p.a->marker_mismatch);
  EXPECT_FALSE(p.b->marker_mismatch);
}

// ---- establishment ----------------------------------------------------------------------

TEST(Ikev2Daemon, PskTunnelAesGcm) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  start_tunnel(*p);
  expect_up(*p);
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].acquire, 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::protect);
  EXPECT_EQ(p->a->acquires[0].child, p->a->children.begin()->first);
  // Exactly four messages: IKE_SA_INIT and IKE_AUTH, nothing else.
  ASSERT_EQ(p->net.sent.size(), 4u);
  EXPECT_EQ(seen(p->net.sent[0]).exchange, xt::v2_sa_init);
  EXPECT_EQ(seen(p->net.sent[2]).exchange, xt::v2_auth);
  const ChildSa& c = p->a->children.begin()->second;
  EXPECT_EQ(c.outbound.cipher, filters::Cipher::aes_gcm_16);
  EXPECT_EQ(c.outbound.enc_key.size(), 20u);  // 16 + 4 salt
  EXPECT_EQ(c.outbound.mode, filters::SaMode::tunnel);
  EXPECT_EQ(c.outbound.dst, ip(kB));
  EXPECT_FALSE(c.outbound.encap.has_value());
  EXPECT_EQ(c.local_ts.front().str(), "192.0.2.0/25");
  EXPECT_EQ(c.remote_ts.front().str(), "192.0.2.128/25");
  const auto s = p->a->snap(p->net.now);
  EXPECT_EQ(s.counters.ike_sas_established, 1u);
  EXPECT_EQ(s.counters.child_sas_established, 1u);
  EXPECT_EQ(s.ike_sas[0].algorithms, "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384");
  EXPECT_EQ(s.ike_sas[0].remote_id, kB);
  EXPECT_EQ(s.ike_sas[0].local_id, kA);
  EXPECT_EQ(p->a->count(EventKind::ike_established), 1u);
  EXPECT_EQ(p->b->count(EventKind::child_established), 1u);
  // No key in any event.
  for (const auto* n : {p->a, p->b}) {
    for (const auto& e : n->events) EXPECT_EQ(e.text.find("shared secret"), std::string::npos);
  }
  EXPECT_TRUE(p->a->keys.empty());  // no KeysAction without save_keys
}

TEST(Ikev2Daemon, PskTransportAesCbcSha256BothRoles) {
  Cfg a = transport_a();
  Cfg b = transport_b();
  a.esp = b.esp = "[aes256-sha256]";
  a.proposals = b.proposals = "[aes128-sha256-modp2048]";
  Options save;
  save.save_keys = true;
  auto p = make_pair(a, b, save, save);
  p->net.acquire(*p->b, 7, 0, kA, kB, kA);  // B initiates this time
  p->net.run(10 * kSec);
  const auto sb = p->b->snap(p->net.now);
  ASSERT_EQ(sb.ike_sas.size(), 1u) << p->b->event_text(EventKind::ike_failed);
  EXPECT_TRUE(sb.ike_sas[0].initiator);
  ASSERT_EQ(p->b->outbound.size(), 1u);
  const ChildSa& c = p->b->children.begin()->second;
  EXPECT_EQ(c.outbound.cipher, filters::Cipher::aes_cbc);
  EXPECT_EQ(c.outbound.enc_key.size(), 32u);
  EXPECT_EQ(c.outbound.integrity, filters::Integrity::hmac_sha256_128);
  EXPECT_EQ(c.outbound.auth_key.size(), 32u);
  EXPECT_EQ(c.outbound.mode, filters::SaMode::transport);
  EXPECT_EQ(sb.ike_sas[0].algorithms.find("AES_CBC-128"), 0u) << sb.ike_sas[0].algorithms;
  expect_keys_agree(*p->a, *p->b);
  // save_keys: both ends saw the same IKE keys.
  ASSERT_EQ(p->a->keys.size(), 1u);
  ASSERT_EQ(p->b->keys.size(), 1u);
  EXPECT_TRUE(p->a->keys[0].sk_ei == p->b->keys[0].sk_ei);
  EXPECT_TRUE(p->a->keys[0].sk_ar == p->b->keys[0].sk_ar);
  EXPECT_EQ(p->a->keys[0].sk_ei.size(), 16u);
  EXPECT_EQ(p->a->keys[0].sk_ai.size(), 32u);
  // Transport mode was asked for and granted.
  EXPECT_NE(p->a->event_text(EventKind::child_established).find("transport mode"), std::string::npos);
}

TEST(Ikev2Daemon, AhTransport) {
  Cfg a = transport_a();
  Cfg b = transport_b();
  a.esp = b.esp = "";
  a.ah = b.ah = "[sha256]";
  auto p = make_pair(a, b);
  p->net.acquire(*p->a, 1, 0, kB, kA, kB);
  p->net.run(10 * kSec);
  expect_up(*p);
  const ChildSa& c = p->a->children.begin()->second;
  EXPECT_EQ(c.outbound.protocol, filters::IpsecProtocol::ah);
  EXPECT_EQ(c.outbound.integrity, filters::Integrity::hmac_sha256_128);
}

void certificate_exchange(const std::string& key) {
  const TestPki pki = make_pki(key);
  ASSERT_TRUE(pki.ok) << "openssl could not make the test certificates";
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.auth = cert_auth(pki, "gw1");
  b.auth = cert_auth(pki, "gw2");
  a.local_id = "gw1.example.org";
  a.remote_id = "gw2.example.org";
  b.local_id = "gw2.example.org";
  b.remote_id = "gw1.example.org";
  auto p = make_pair(a, b);
  start_tunnel(*p);
  expect_up(*p);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.ike_sas[0].remote_id, "gw1.example.org");
  // IKE_SA_INIT announced RFC 7427 and the responder asked for certificates.
  const Message init_r = cleartext(p->net.sent[1]);
  EXPECT_NE(init_r.notify(notify::signature_hash_algorithms), nullptr);
  EXPECT_NE(init_r.find<CertReqPayload>(dissect::ike::pt::v2_certreq), nullptr);

  // A peer whose CA B does not trust is refused, and B's ID default (the
  // certificate's DN) is what A sees.
  Cfg b2 = tunnel_b();
  b2.auth = cert_auth(pki, "gw2", "other");
  b2.remote_id = "gw1.example.org";
  auto q = make_pair(a, b2);
  start_tunnel(*q);
  EXPECT_EQ(q->b->snap(q->net.now).counters.authentication_failures, 1u);
  EXPECT_EQ(q->a->snap(q->net.now).counters.authentication_failures, 1u);
  EXPECT_TRUE(q->a->outbound.empty());
  EXPECT_TRUE(q->b->outbound.empty());
  std::filesystem::remove_all(pki.dir);
}

TEST(Ikev2Daemon, CertificatesEcdsa) { certificate_exchange("ec"); }
TEST(Ikev2Daemon, CertificatesRsa) { certificate_exchange("rsa"); }

TEST(Ikev2Daemon, CertificateMustNameThePeersIdentity) {
  const TestPki pki = make_pki("ec");
  ASSERT_TRUE(pki.ok);
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.auth = cert_auth(pki, "gw1");
  b.auth = cert_auth(pki, "gw2");
  a.local_id = "gw2.example.org";  // claims B's name with its own certificate
  b.local_id = "gw2.example.org";
  auto p = make_pair(a, b);
  start_tunnel(*p);
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_EQ(p->b->snap(p->net.now).counters.authentication_failures, 1u);
  EXPECT_NE(p->b->event_text(EventKind::auth_failed).find("does not name"), std::string::npos)
      << p->b->event_text(EventKind::auth_failed);
  std::filesystem::remove_all(pki.dir);
}

// ---- failures ----------------------------------------------------------------------------

TEST(Ikev2Daemon, WrongPskIsAuthenticationFailedOnceOnEachSide) {
  Cfg b = tunnel_b();
  b.auth = R"(method: psk, psk: "another secret altogether")";
  auto p = make_pair(tunnel_a(), b);
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.deliver_all();  // no time passes: the back-off below is still on
  const auto sa = p->a->snap(p->net.now);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sa.counters.authentication_failures, 1u);
  EXPECT_EQ(sb.counters.authentication_failures, 1u);
  EXPECT_EQ(sa.counters.ike_sas_established, 0u);
  EXPECT_TRUE(sa.ike_sas.empty());
  EXPECT_TRUE(sb.ike_sas.empty());  // the half-open SA went with the refusal
  EXPECT_EQ(sb.half_open, 0u);
  EXPECT_TRUE(p->a->children.empty());
  EXPECT_TRUE(p->b->children.empty());
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::drop);  // require: never cleartext
  EXPECT_NE(p->b->event_text(EventKind::auth_failed).find("AUTHENTICATION_FAILED"), std::string::npos);
  EXPECT_NE(p->a->event_text(EventKind::auth_failed).find("AUTHENTICATION_FAILED"), std::string::npos);
  // A later acquire backs off (5 s after a first failure) instead of
  // hammering the peer.
  p->net.run(4 * kSec);
  p->net.acquire(*p->a, 2, 0, kB, "192.0.2.10", "192.0.2.200");
  ASSERT_EQ(p->a->acquires.size(), 2u);
  EXPECT_EQ(p->a->acquires[1].result, R::drop);
  EXPECT_TRUE(p->a->snap(p->net.now).ike_sas.empty());
  EXPECT_TRUE(p->net.wire.empty());
  // After the back-off it tries again.
  p->net.run(2 * kSec);
  p->net.acquire(*p->a, 3, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.run(5 * kSec);
  EXPECT_EQ(p->a->snap(p->net.now).counters.authentication_failures, 2u);
}

TEST(Ikev2Daemon, ResponderAuthFailureIsToldToTheResponder) {
  // B accepts A, but A does not trust B's CA: A tells B with an
  // INFORMATIONAL AUTHENTICATION_FAILED (RFC 7296 2.21.2) and both delete.
  const TestPki pki = make_pki("ec");
  ASSERT_TRUE(pki.ok);
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.auth = cert_auth(pki, "gw1", "other");
  b.auth = cert_auth(pki, "gw2");
  a.local_id = "gw1.example.org";
  b.local_id = "gw2.example.org";
  auto p = make_pair(a, b);
  start_tunnel(*p);
  EXPECT_EQ(p->a->snap(p->net.now).counters.authentication_failures, 1u);
  EXPECT_EQ(p->b->snap(p->net.now).counters.authentication_failures, 1u);
  EXPECT_TRUE(p->a->snap(p->net.now).ike_sas.empty());
  EXPECT_TRUE(p->b->snap(p->net.now).ike_sas.empty());
  // B installed its child when it answered, and removed it on the notify.
  EXPECT_TRUE(p->b->outbound.empty());
  EXPECT_EQ(p->b->removes.size(), 1u);
  EXPECT_TRUE(p->a->children.empty());
  ASSERT_EQ(p->net.sent.size(), 6u);  // B answers the INFORMATIONAL before it deletes
  EXPECT_EQ(seen(p->net.sent[4]).exchange, xt::v2_informational);
  EXPECT_FALSE(seen(p->net.sent[4]).response);
  std::filesystem::remove_all(pki.dir);
}

TEST(Ikev2Daemon, NoCommonIkeProposal) {
  Cfg b = tunnel_b();
  b.proposals = "[aes128-sha256-modp2048]";
  auto p = make_pair(tunnel_a(), b);
  start_tunnel(*p);
  EXPECT_EQ(p->b->snap(p->net.now).counters.negotiation_failures, 1u);
  EXPECT_EQ(p->a->snap(p->net.now).counters.negotiation_failures, 1u);
  EXPECT_TRUE(p->b->snap(p->net.now).ike_sas.empty());
  ASSERT_GE(p->net.sent.size(), 2u);
  EXPECT_NE(cleartext(p->net.sent[1]).notify(notify::no_proposal_chosen), nullptr);
  EXPECT_NE(p->a->event_text(EventKind::ike_failed).find("NO_PROPOSAL_CHOSEN"), std::string::npos);
  EXPECT_NE(p->b->event_text(EventKind::ike_failed).find("no profile accepts its proposals"), std::string::npos);
}

TEST(Ikev2Daemon, UnknownPeerIsToldApartFromNoCommonProposal) {
  // B knows only A; a request from another address finds no profile.
  Cfg b = tunnel_b();
  Cfg a = tunnel_a();
  a.me = "203.0.113.9";
  auto p = make_pair(a, b);
  start_tunnel(*p);
  EXPECT_TRUE(p->b->snap(p->net.now).ike_sas.empty());
  EXPECT_NE(p->b->event_text(EventKind::ike_failed).find("NO_PROPOSAL_CHOSEN (no IKE profile accepts this peer)"),
            std::string::npos)
      << p->b->event_text(EventKind::ike_failed);
}

TEST(Ikev2Daemon, NoCommonEspProposalLeavesTheIkeSaUp) {
  Cfg b = tunnel_b();
  b.esp = "[aes256-sha512]";
  auto p = make_pair(tunnel_a(), b);
  start_tunnel(*p);
  const auto sa = p->a->snap(p->net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u);
  EXPECT_EQ(sa.ike_sas[0].state, "established");
  EXPECT_TRUE(sa.ike_sas[0].children.empty());
  EXPECT_EQ(sa.counters.negotiation_failures, 1u);
  EXPECT_EQ(p->b->snap(p->net.now).counters.negotiation_failures, 1u);
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::drop);
  EXPECT_NE(p->a->event_text(EventKind::ike_failed).find("NO_PROPOSAL_CHOSEN"), std::string::npos);
}

TEST(Ikev2Daemon, ModeMismatchIsRefused) {
  Cfg a = transport_a();
  Cfg b = transport_b();
  b.mode = "tunnel";
  b.tunnel_peer = kA;
  b.from = "198.51.100.1/32";
  b.to = "203.0.113.1/32";
  auto p = make_pair(a, b);
  p->net.acquire(*p->a, 1, 0, kB, kA, kB);
  p->net.run(10 * kSec);
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_NE(p->b->event_text(EventKind::ike_failed).find("tunnel mode"), std::string::npos)
      << p->b->event_text(EventKind::ike_failed);
}

TEST(Ikev2Daemon, InvalidKeRetryWithTheResponderGroup) {
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.proposals = "[aes128gcm16-prfsha256-curve25519-ecp256]";  // KE for curve25519 first
  b.proposals = "[aes128gcm16-prfsha256-ecp256]";
  auto p = make_pair(a, b);
  start_tunnel(*p);
  expect_up(*p);
  ASSERT_GE(p->net.sent.size(), 6u);
  const Message first = cleartext(p->net.sent[0]);
  const Message answer = cleartext(p->net.sent[1]);
  const Message retry = cleartext(p->net.sent[2]);
  EXPECT_EQ(first.find<KePayload>(dissect::ike::pt::v2_ke)->group, 31);
  const auto* n = answer.notify(notify::invalid_ke_payload);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->data, (Buffer{0, 19}));
  EXPECT_EQ(retry.find<KePayload>(dissect::ike::pt::v2_ke)->group, 19);
  EXPECT_EQ(retry.message_id, 0u);
  EXPECT_EQ(p->a->snap(p->net.now).ike_sas[0].algorithms.find("AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256"), 0u);
}

TEST(Ikev2Daemon, InvalidKeForAGroupWeDidNotOfferFails) {
  // A forged INVALID_KE_PAYLOAD naming a group A never offered ends the attempt.
  auto p = make_pair(tunnel_a(), tunnel_b());
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  ASSERT_EQ(p->net.wire.size(), 1u);
  const Message req = cleartext(p->net.wire.front());
  p->net.wire.clear();
  Message forged;
  forged.spi_i = req.spi_i;
  forged.exchange = xt::v2_sa_init;
  forged.response = true;
  NotifyPayload n;
  n.type = notify::invalid_ke_payload;
  n.data = {0, 14};  // modp2048
  forged.payloads.push_back({dissect::ike::pt::v2_notify, n});
  SeededRandom r(5);
  Wire w;
  w.src = {ip(kB), 500};
  w.dst = {ip(kA), 500};
  w.data = encode(forged, nullptr, r);
  p->net.deliver(w);
  EXPECT_TRUE(p->a->snap(p->net.now).ike_sas.empty());
  EXPECT_EQ(p->a->snap(p->net.now).counters.negotiation_failures, 1u);
}

TEST(Ikev2Daemon, CookiesWhenTheResponderAsks) {
  Options ob;
  ob.cookie_threshold = 0;  // every IKE_SA_INIT must bring a cookie
  auto p = make_pair(tunnel_a(), tunnel_b(), {}, ob);
  start_tunnel(*p);
  expect_up(*p);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.counters.cookies_sent, 1u);
  EXPECT_EQ(sb.counters.invalid_cookies, 0u);
  const Message cookie = cleartext(p->net.sent[1]);
  const auto* n = cookie.notify(notify::cookie);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->data.size(), 33u);
  EXPECT_EQ(cookie.spi_r, 0u);
  const Message retry = cleartext(p->net.sent[2]);
  ASSERT_FALSE(retry.payloads.empty());
  const auto* first = std::get_if<NotifyPayload>(&retry.payloads.front().body);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->type, notify::cookie);
  EXPECT_EQ(first->data, n->data);
  // The AUTH covered the request with the cookie: established anyway.
  EXPECT_EQ(sb.counters.ike_sas_established, 1u);
}

TEST(Ikev2Daemon, ForgedCookieIsRefused) {
  Options ob;
  ob.cookie_threshold = 0;
  auto p = make_pair(tunnel_a(), tunnel_b(), {}, ob);
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.step();  // B answers with a cookie
  ASSERT_EQ(p->net.wire.size(), 1u);
  p->net.step();  // A retries with it
  ASSERT_EQ(p->net.wire.size(), 1u);
  Wire w = p->net.wire.front();
  p->net.wire.clear();
  // The cookie (in the first payload) changed by one bit.
  w.data[28 + 8 + 5] ^= 1;
  p->net.deliver(w);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.counters.invalid_cookies, 1u);
  EXPECT_EQ(sb.half_open, 0u);
  EXPECT_TRUE(sb.ike_sas.empty());
  // From another address the same (valid) cookie is no good either.
  Wire w2 = p->net.sent[2];
  w2.src.addr = ip("203.0.113.99");
  p->net.deliver(w2);
  EXPECT_EQ(p->b->snap(p->net.now).counters.invalid_cookies, 2u);
  EXPECT_TRUE(p->b->snap(p->net.now).ike_sas.empty());
}

// ---- traffic selectors ------------------------------------------------------------------

TEST(Ikev2Daemon, ResponderNarrowsToItsPolicy) {
  Cfg a = tunnel_a();
  a.from = "192.0.2.0/25";
  a.to = "192.0.2.128/25";
  Cfg b = tunnel_b();
  b.from = "192.0.2.192/26";  // B protects only half of what A asks for
  b.to = "192.0.2.0/25";
  auto p = make_pair(a, b);
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.run(10 * kSec);
  expect_up(*p);
  const ChildSa& c = p->a->children.begin()->second;
  std::string remote;
  for (const auto& t : c.remote_ts) remote += t.str() + " ";
  EXPECT_EQ(remote, "192.0.2.192/26 ") << remote;
}

TEST(Ikev2Daemon, DisjointSelectorsAreTsUnacceptable) {
  Cfg b = tunnel_b();
  b.from = "198.51.100.128/25";
  b.to = "198.51.100.0/25";
  auto p = make_pair(tunnel_a(), b);
  start_tunnel(*p);
  ASSERT_EQ(p->a->snap(p->net.now).ike_sas.size(), 1u);  // the IKE SA stays (RFC 7296 2.21.3)
  EXPECT_TRUE(p->a->outbound.empty());
  EXPECT_NE(p->a->event_text(EventKind::ike_failed).find("TS_UNACCEPTABLE"), std::string::npos);
}

// ---- loss, retransmission, replays, forgeries ---------------------------------------------

TEST(Ikev2Daemon, LostMessagesAreRetransmitted) {
  for (std::size_t lost = 0; lost < 4; ++lost) {
    SCOPED_TRACE(lost);
    auto p = make_pair(tunnel_a(), tunnel_b());
    bool dropped = false;
    p->net.drop = [&](const Wire& w) {
      if (w.seq != lost || dropped) return false;
      dropped = true;
      return true;
    };
    start_tunnel(*p);
    p->net.run(20 * kSec);
    expect_up(*p);
    const std::uint64_t retr = p->a->snap(p->net.now).counters.retransmissions;
    EXPECT_EQ(retr, 1u);
    // The responder answered the retransmission from its cache: one SA,
    // one child, one DH.
    EXPECT_EQ(p->b->snap(p->net.now).counters.ike_sas_established, 1u);
    EXPECT_EQ(p->b->snap(p->net.now).counters.child_sas_established, 1u);
  }
}

TEST(Ikev2Daemon, RetransmissionBackOffThenGiveUp) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  p->net.drop = [](const Wire&) { return true; };
  std::vector<TimeNs> times;  // of each send and of the failure, in ms after the first
  const TimeNs t0 = p->net.now;
  std::size_t sends = 0;
  p->net.after_actions = [&](Node& n) {
    if (&n != p->a) return;
    for (; sends < n.log.size(); ++sends) {
      if (n.log[sends] == "send") times.push_back((p->net.now - t0) / 1'000'000);
    }
    if (n.count(EventKind::ike_failed) == 1 && times.size() == 6) times.push_back((p->net.now - t0) / 1'000'000);
  };
  start_tunnel(*p);
  p->net.run(200 * kSec);
  // 4 s x 1.8^n (charon's defaults): resent after 4, 7.2, 12.96, 23.33 and
  // 41.99 s, given up 75.58 s after the fifth retransmission.
  EXPECT_EQ(times, (std::vector<TimeNs>{0, 4000, 11200, 24160, 47488, 89478, 165061}));
  const auto s = p->a->snap(p->net.now);
  EXPECT_EQ(s.counters.retransmissions, 5u);
  EXPECT_EQ(s.counters.negotiation_failures, 1u);
  EXPECT_TRUE(s.ike_sas.empty());
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::drop);  // require
  EXPECT_TRUE(p->a->soft.empty());
}

TEST(Ikev2Daemon, RequestPolicyFallsBackToASoftAssociation) {
  Cfg a = tunnel_a();
  a.inbound = "request";
  a.extra = "soft_timeout: 60s";
  auto p = make_pair(a, tunnel_b());
  p->net.drop = [](const Wire&) { return true; };
  start_tunnel(*p);
  p->net.run(200 * kSec);
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::cleartext);
  ASSERT_EQ(p->a->soft.size(), 1u);
  EXPECT_TRUE(p->a->soft[0].active);
  EXPECT_EQ(p->a->soft[0].peer, ip(kB));
  EXPECT_EQ(p->a->snap(p->net.now).counters.soft_associations, 1u);
  // While it lasts, acquires are answered in the clear at once.
  p->net.acquire(*p->a, 2, 0, kB, "192.0.2.10", "192.0.2.200");
  EXPECT_EQ(p->a->acquires.back().result, R::cleartext);
  // It ends after soft_timeout.
  p->net.run(61 * kSec);
  ASSERT_EQ(p->a->soft.size(), 2u);
  EXPECT_FALSE(p->a->soft[1].active);
}

TEST(Ikev2Daemon, DuplicatedRequestsAreAnsweredFromTheCache) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  // Every datagram A sends arrives twice.
  p->net.drop = [&](const Wire& w) {
    if (w.from == 0 && w.seq < 1000) {
      Wire copy = w;
      copy.seq = w.seq + 100000;
      p->net.wire.push_back(copy);
    }
    return false;
  };
  start_tunnel(*p);
  expect_up(*p);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.counters.ike_sas_established, 1u);
  EXPECT_EQ(sb.counters.child_sas_established, 1u);
  // B answered each copy: the duplicate IKE_SA_INIT by its hash, the
  // duplicate IKE_AUTH from the response cache, with identical bytes.
  std::vector<const Wire*> from_b;
  for (const auto& w : p->net.sent) {
    if (w.from == 1) from_b.push_back(&w);
  }
  ASSERT_EQ(from_b.size(), 4u);
  EXPECT_EQ(from_b[0]->data, from_b[1]->data);
  EXPECT_EQ(from_b[2]->data, from_b[3]->data);
  // A dropped the second copies of the responses (no request outstanding).
  EXPECT_EQ(p->a->snap(p->net.now).counters.invalid_packets, 2u);
}

TEST(Ikev2Daemon, ReplayedAndForgedDatagramsChangeNothing) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  start_tunnel(*p);
  expect_up(*p);
  const auto before_a = p->a->snap(p->net.now);
  const auto before_b = p->b->snap(p->net.now);
  const std::vector<Wire> history = p->net.sent;
  const std::size_t sent_before = p->net.sent.size();
  SeededRandom r(99);
  std::vector<Wire> hostile;
  // Garbage of every length around the header.
  for (std::size_t len : {0, 1, 27, 28, 29, 64, 300}) {
    Wire w;
    w.src = {ip(kA), 500};
    w.dst = {ip(kB), 500};
    w.data.resize(len);
    r.fill(w.data);
    hostile.push_back(w);
  }
  // Every real message with a bit flipped in each of several places, and
  // the encrypted ones re-sent with the next message ID.
  for (const auto& h : history) {
    for (std::size_t at : {std::size_t{1}, std::size_t{17}, std::size_t{30}, h.data.size() / 2, h.data.size() - 1}) {
      Wire w = h;
      w.data[at] ^= 0x40;
      hostile.push_back(w);
    }
    Wire next = h;
    next.data[23] = static_cast<std::uint8_t>(next.data[23] + 1);
    hostile.push_back(next);
    // Truncated: to the header, by one byte (the ICV cut), to half.
    for (std::size_t len : {std::size_t{28}, h.data.size() - 1, h.data.size() / 2}) {
      Wire cut = h;
      cut.data.resize(len);
      hostile.push_back(cut);
    }
    // Another responder SPI (an SA nobody has).
    Wire spi = h;
    spi.data[15] ^= 0x01;
    hostile.push_back(spi);
  }
  for (const auto& w : hostile) p->net.deliver(w);
  // The IKE_AUTH request replayed as is: answered from the cache, once.
  p->net.deliver(history[2]);
  p->net.deliver_all();
  const auto after_a = p->a->snap(p->net.now);
  auto after_b = p->b->snap(p->net.now);
  ASSERT_EQ(after_a.ike_sas.size(), 1u);
  EXPECT_EQ(after_a.ike_sas[0].spi_r, before_a.ike_sas[0].spi_r);
  // B also holds the half-open SAs of the flipped IKE_SA_INIT requests
  // (they look like new initiators); one SA is established, the same one.
  std::erase_if(after_b.ike_sas, [](const IkeSaInfo& i) { return i.state != "established"; });
  ASSERT_EQ(after_b.ike_sas.size(), 1u);
  EXPECT_EQ(after_b.ike_sas[0].spi_r, before_b.ike_sas[0].spi_r);
  EXPECT_GT(after_b.half_open, 0u);
  EXPECT_EQ(after_b.counters.ike_sas_established, 1u);
  EXPECT_EQ(after_b.counters.child_sas_established, 1u);
  EXPECT_EQ(after_a.counters.child_sas_established, 1u);
  EXPECT_GT(after_b.counters.invalid_packets, before_b.counters.invalid_packets + 10);
  EXPECT_EQ(p->b->outbound.size(), 1u);
  EXPECT_EQ(p->a->outbound.size(), 1u);
  // B sent only: answers to the flipped IKE_SA_INIT requests (fresh ones,
  // they look new), and the cached IKE_AUTH response.
  for (std::size_t i = sent_before; i < p->net.sent.size(); ++i) {
    const auto s = seen(p->net.sent[i]);
    EXPECT_TRUE(s.exchange == xt::v2_sa_init || (s.exchange == xt::v2_auth && s.response)) << int(s.exchange);
  }
  // Both ends still work: an exchange after all that succeeds.
  Actions out;
  p->a->daemon->expired(p->a->children.begin()->first, false, p->net.now, out);
  p->net.execute(*p->a, out);
  p->net.run(20 * kSec);
  EXPECT_EQ(p->a->snap(p->net.now).counters.rekeys, 1u);
  expect_keys_agree(*p->a, *p->b);
  // The half-open SAs the flipped IKE_SA_INITs made time out.
  p->net.run(40 * kSec);
  EXPECT_EQ(p->b->snap(p->net.now).half_open, 0u);
  EXPECT_EQ(p->b->snap(p->net.now).ike_sas.size(), 1u);
}

TEST(Ikev2Daemon, UnknownSpiIsCountedAsAnInvalidCookie) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  start_tunnel(*p);
  Wire w = p->net.sent[2];  // IKE_AUTH request, another responder SPI
  w.data[8] ^= 0xff;
  p->net.deliver(w);
  EXPECT_EQ(p->b->snap(p->net.now).counters.invalid_cookies, 1u);
}

TEST(Ikev2Daemon, HalfOpenLimitAndCookiesUnderAFlood) {
  Options ob;
  ob.cookie_threshold = 4;
  ob.cookie_threshold_per_ip = 100;
  ob.half_open_limit = 6;
  // B takes initiators from anywhere (a road-warrior responder): the spoofed
  // sources get as far as the DoS gate.
  Cfg any = tunnel_b();
  any.peer = "any";
  any.tunnel_peer = kA;
  auto p = make_pair(tunnel_a(), any, {}, ob);
  start_tunnel(*p);
  expect_up(*p);
  // A flood of IKE_SA_INITs (A's first request with other SPIs) from
  // spoofed addresses that never answer.
  const Wire init = p->net.sent[0];
  auto flood = [&](int n, int base) {
    for (int i = 0; i < n; ++i) {
      Wire w = init;
      w.data[0] = static_cast<std::uint8_t>(base + i);
      w.src.addr = ip(fmt::format("203.0.113.{}", 10 + base + i).c_str());
      p->net.deliver(w);
    }
  };
  flood(4, 0);
  auto s = p->b->snap(p->net.now);
  EXPECT_EQ(s.half_open, 4u);
  EXPECT_FALSE(s.cookies_on);
  flood(4, 20);  // past the threshold: cookies, no state
  s = p->b->snap(p->net.now);
  EXPECT_EQ(s.half_open, 4u);
  EXPECT_TRUE(s.cookies_on);
  EXPECT_EQ(s.counters.cookies_sent, 4u);
  EXPECT_EQ(p->b->count(EventKind::cookies), 1u);
  // The established SA is not disturbed: a rekey of its child works.
  Actions out;
  p->b->daemon->expired(p->b->children.begin()->first, false, p->net.now, out);
  p->net.execute(*p->b, out);
  p->net.deliver_all();
  EXPECT_EQ(p->b->snap(p->net.now).counters.rekeys, 1u);
  expect_keys_agree(*p->a, *p->b);
  // Cookies go off 10 s after the threshold was last reached; the half-open
  // SAs time out after 30 s.
  p->net.run(31 * kSec);
  s = p->b->snap(p->net.now);
  EXPECT_EQ(s.half_open, 0u);
  EXPECT_FALSE(s.cookies_on);
  EXPECT_EQ(s.ike_sas.size(), 1u);
  // The hard limit: with cookies out of the way, past half_open_limit
  // requests are dropped.
  Options oc;
  oc.cookie_threshold = 100;
  oc.half_open_limit = 3;
  auto q = make_pair(tunnel_a(), any, {}, oc);
  for (int i = 0; i < 5; ++i) {
    Wire w = init;
    w.data[0] = static_cast<std::uint8_t>(i);
    w.src.addr = ip(fmt::format("203.0.113.{}", 50 + i).c_str());
    q->net.deliver(w);
  }
  s = q->b->snap(q->net.now);
  EXPECT_EQ(s.half_open, 3u);
  EXPECT_EQ(s.counters.half_open_dropped, 2u);
  EXPECT_EQ(q->b->count(EventKind::half_open_limit), 1u);
}

TEST(Ikev2Daemon, RetransmittedInitIsRoutedByItsHash) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  const Wire init = p->net.wire.front();
  p->net.step();
  p->net.deliver(init);
  p->net.deliver(init);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.half_open, 1u);
  EXPECT_EQ(sb.ike_sas.size(), 1u);
  ASSERT_EQ(p->net.sent.size(), 4u);
  EXPECT_EQ(p->net.sent[1].data, p->net.sent[2].data);
  EXPECT_EQ(p->net.sent[1].data, p->net.sent[3].data);
}

TEST(Ikev2Daemon, AcquiresWhileConnectingShareTheNegotiation) {
  auto p = make_pair(tunnel_a(), tunnel_b());
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  p->net.acquire(*p->a, 2, 0, kB, "192.0.2.11", "192.0.2.201");
  p->net.run(10 * kSec);
  expect_up(*p);
  ASSERT_EQ(p->a->acquires.size(), 2u);
  EXPECT_EQ(p->a->acquires[0].result, R::protect);
  EXPECT_EQ(p->a->acquires[1].result, R::protect);
  // Once up, an acquire the child covers is answered at once.
  p->net.acquire(*p->a, 3, 0, kB, "192.0.2.12", "192.0.2.202");
  ASSERT_EQ(p->a->acquires.size(), 3u);
  EXPECT_EQ(p->a->acquires[2].result, R::protect);
  EXPECT_EQ(p->net.sent.size(), 4u);
}

TEST(Ikev2Daemon, RespondPolicyNeverInitiates) {
  Cfg a = tunnel_a();
  a.inbound = "respond";
  auto p = make_pair(a, tunnel_b());
  p->net.acquire(*p->a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  EXPECT_TRUE(p->net.wire.empty());
  ASSERT_EQ(p->a->acquires.size(), 1u);
  EXPECT_EQ(p->a->acquires[0].result, R::cleartext);
  // But it answers.
  p->net.acquire(*p->b, 1, 0, kA, "192.0.2.200", "192.0.2.10");
  p->net.run(10 * kSec);
  EXPECT_EQ(p->a->snap(p->net.now).ike_sas.size(), 1u);
  EXPECT_EQ(p->a->outbound.size(), 1u);
}

}  // namespace
