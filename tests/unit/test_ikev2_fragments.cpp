// IKE fragmentation (RFC 7383): the codec's Encrypted Fragment messages and
// FragmentSet, and two daemons with RSA certificates whose IKE_AUTH does not
// fit in 1280 bytes -- fragmented, a lost fragment retransmitted, forged and
// inconsistent fragments dropped, a peer without support answered whole, and
// the analyzer decrypting what the daemon sent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "ikev2_configs.hpp"
#include "ikev2_net.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/wire.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ike/message.hpp"

namespace {

using namespace ipsentry;
using namespace ipsentry::test_ikev2;
namespace pt = ipsentry::dissect::ike::pt;
namespace xt = ipsentry::dissect::ike::xt;

// ---- the codec -----------------------------------------------------------------

struct Keys {
  ike::IkeSuite suite;
  Buffer ek = Buffer(36, 0x11);
  Buffer ak;
  Keys() {
    suite.encryption = {filters::Cipher::aes_gcm_16, 32};
    suite.integrity = filters::Integrity::none;
  }
  [[nodiscard]] ike::SkCipher cipher() const { return ike::SkCipher(suite, ek, ak); }
};

Message big_auth(std::size_t cert_bytes) {
  Message m;
  m.spi_i = 0x0102030405060708;
  m.spi_r = 0x1112131415161718;
  m.exchange = xt::v2_auth;
  m.initiator = true;
  m.message_id = 1;
  m.encrypted = true;
  m.payloads.push_back({pt::v2_idi, IdPayload{2, Buffer{'g', 'w', '1'}}});
  Buffer cert(cert_bytes);
  for (std::size_t i = 0; i < cert.size(); ++i) cert[i] = static_cast<std::uint8_t>(i * 7);
  m.payloads.push_back({pt::v2_cert, CertPayload{4, cert}});
  m.payloads.push_back({pt::v2_auth, AuthPayload{ike::AuthMethod::digital_signature, Buffer(300, 0x5a)}});
  return m;
}

Fragment open_fragment(const Buffer& bytes, const ike::SkCipher& sk) {
  Message h;
  Fragment f;
  std::string why;
  EXPECT_EQ(decode_fragment(bytes, &sk, h, f, why), DecodeStatus::ok) << why;
  return f;
}

TEST(Ikev2Fragments, EncodedFragmentsReassembleToTheMessage) {
  const Keys k;
  const auto sk = k.cipher();
  SeededRandom random(5);
  const Message m = big_auth(2000);
  const auto frags = encode_fragments(m, sk, random, 1244);
  ASSERT_EQ(frags.size(), 2u);
  FragmentSet set;
  for (std::size_t i = 0; i < frags.size(); ++i) {
    EXPECT_LE(frags[i].size(), 1244u);
    EXPECT_TRUE(is_fragment(frags[i]));
    // RFC 7383 2.5: the first payload's type in fragment 1 only.
    EXPECT_EQ(frags[i][28], i == 0 ? pt::v2_idi : pt::none);
    EXPECT_EQ(dissect::load_be16(frags[i].data() + 32), i + 1);
    EXPECT_EQ(dissect::load_be16(frags[i].data() + 34), frags.size());
  }
  // Each its own IV: the bytes after the fragment fields differ.
  EXPECT_NE(Buffer(frags[0].begin() + 36, frags[0].begin() + 44), Buffer(frags[1].begin() + 36, frags[1].begin() + 44));
  // Out of order, with a duplicate.
  EXPECT_EQ(set.add(1, open_fragment(frags[1], sk)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(1, open_fragment(frags[1], sk)), FragmentSet::Added::duplicate);
  EXPECT_EQ(set.add(1, open_fragment(frags[0], sk)), FragmentSet::Added::complete);
  std::uint8_t first = 0;
  const Buffer plain = set.take(first);
  EXPECT_TRUE(set.empty());
  Message got;
  std::string why;
  Fragment f;
  ASSERT_EQ(decode_fragment(frags[0], &sk, got, f, why), DecodeStatus::ok) << why;
  ASSERT_EQ(decode_reassembled(plain, first, got, why), DecodeStatus::ok) << why;
  EXPECT_EQ(got, m);
  // A message that fits goes whole, as SK.
  const auto one = encode_fragments(big_auth(100), sk, random, 1244);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_FALSE(is_fragment(one[0]));
  Message whole;
  EXPECT_EQ(decode(one[0], &sk, whole, why), DecodeStatus::ok) << why;
}

TEST(Ikev2Fragments, AForgedFragmentDoesNotOpen) {
  const Keys k;
  const auto sk = k.cipher();
  SeededRandom random(6);
  auto frags = encode_fragments(big_auth(2000), sk, random, 1244);
  ASSERT_GE(frags.size(), 2u);
  Message h;
  Fragment f;
  std::string why;
  // A flipped bit in the data, and one in the (authenticated) fragment number.
  Buffer data = frags[1];
  data[60] ^= 1;
  EXPECT_EQ(decode_fragment(data, &sk, h, f, why), DecodeStatus::integrity_failed);
  Buffer number = frags[1];
  number[33] ^= 3;
  EXPECT_EQ(decode_fragment(number, &sk, h, f, why), DecodeStatus::integrity_failed);
  // Fragment number 0, or above the total, is malformed before any key is used.
  Buffer zero = frags[0];
  zero[33] = 0;
  EXPECT_EQ(decode_fragment(zero, &sk, h, f, why), DecodeStatus::malformed);
  Buffer above = frags[0];
  above[33] = 9;
  EXPECT_EQ(decode_fragment(above, &sk, h, f, why), DecodeStatus::malformed);
  // decode() of a fragment says what it is rather than guessing.
  Message m;
  EXPECT_EQ(decode(frags[0], &sk, m, why), DecodeStatus::malformed);
}

TEST(Ikev2Fragments, FragmentSetBoundsAndTotals) {
  auto frag = [](std::uint16_t n, std::uint16_t total, std::size_t size = 10) {
    Fragment f;
    f.number = n;
    f.total = total;
    f.first_payload = n == 1 ? pt::v2_idi : pt::none;
    f.plain.assign(size, static_cast<std::uint8_t>(n));
    return f;
  };
  FragmentSet set;
  // Too many fragments: ignored, whatever the number.
  EXPECT_EQ(set.add(1, frag(1, FragmentSet::kMaxFragments + 1)), FragmentSet::Added::too_many);
  EXPECT_TRUE(set.empty());
  // A smaller total than the stored fragments': ignored; they stay.
  EXPECT_EQ(set.add(1, frag(1, 3)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(1, frag(2, 2)), FragmentSet::Added::inconsistent);
  EXPECT_EQ(set.add(1, frag(2, 3)), FragmentSet::Added::kept);
  // A larger one: the sender re-fragmented smaller, collection starts anew.
  EXPECT_EQ(set.add(1, frag(1, 4)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(1, frag(2, 4)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(1, frag(3, 4)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(1, frag(4, 4)), FragmentSet::Added::complete);
  std::uint8_t first = 0;
  const Buffer all = set.take(first);
  EXPECT_EQ(first, pt::v2_idi);
  EXPECT_EQ(all.size(), 40u);
  EXPECT_EQ(all[0], 1);
  EXPECT_EQ(all[39], 4);
  // Another message ID replaces an unfinished message.
  EXPECT_EQ(set.add(1, frag(1, 2)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(2, frag(2, 2)), FragmentSet::Added::kept);
  EXPECT_EQ(set.message_id(), 2u);
  EXPECT_EQ(set.add(2, frag(1, 2)), FragmentSet::Added::complete);
  (void)set.take(first);
  // Too many bytes altogether: all dropped.
  EXPECT_EQ(set.add(3, frag(1, 3, FragmentSet::kMaxBytes / 2)), FragmentSet::Added::kept);
  EXPECT_EQ(set.add(3, frag(2, 3, FragmentSet::kMaxBytes / 2 + 1)), FragmentSet::Added::too_big);
  EXPECT_TRUE(set.empty());
}

// ---- two daemons ----------------------------------------------------------------

struct Pair {
  Net net;
  Node* a = nullptr;
  Node* b = nullptr;
};

const TestPki& rsa_pki() {
  static const TestPki pki = make_pki("rsa");
  return pki;
}

/// The certificates' directory goes when the tests end.
class RemovePki : public ::testing::Environment {
 public:
  void TearDown() override {
    if (made) std::filesystem::remove_all(rsa_pki().dir);
  }
  static inline bool made = false;
};
[[maybe_unused]] const auto* const kRemovePki = ::testing::AddGlobalTestEnvironment(new RemovePki);

std::unique_ptr<Pair> rsa_pair(Options oa = {}, Options ob = {}) {
  const TestPki& pki = rsa_pki();
  RemovePki::made = true;
  EXPECT_TRUE(pki.ok) << "openssl could not make the test certificates";
  Cfg a = tunnel_a();
  Cfg b = tunnel_b();
  a.auth = cert_auth(pki, "gw1");
  b.auth = cert_auth(pki, "gw2");
  a.local_id = "gw1.example.org";
  a.remote_id = "gw2.example.org";
  b.local_id = "gw2.example.org";
  b.remote_id = "gw1.example.org";
  auto p = std::make_unique<Pair>();
  p->a = &p->net.add("A", a.me.c_str(), a.yaml(), oa, 11);
  p->b = &p->net.add("B", b.me.c_str(), b.yaml(), ob, 22);
  return p;
}

void start(Pair& p, TimeNs run = 60 * kSec) {
  p.net.acquire(*p.a, 1, 0, kB, "192.0.2.10", "192.0.2.200");
  p.net.run(run);
}

void expect_up(const Pair& p) {
  const auto sa = p.a->snap(p.net.now);
  const auto sb = p.b->snap(p.net.now);
  ASSERT_EQ(sa.ike_sas.size(), 1u) << p.a->event_text(EventKind::ike_failed);
  ASSERT_EQ(sb.ike_sas.size(), 1u) << p.b->event_text(EventKind::ike_failed);
  EXPECT_EQ(sa.ike_sas[0].state, "established");
  EXPECT_EQ(sb.ike_sas[0].state, "established");
  EXPECT_EQ(p.a->outbound.size(), 1u);
  EXPECT_EQ(p.b->outbound.size(), 1u);
  expect_keys_agree(*p.a, *p.b);
}

struct Frag {
  bool fragment = false;
  std::uint8_t exchange = 0;
  bool response = false;
  std::uint16_t number = 0, total = 0;
};
Frag frag_of(const Wire& w) {
  Frag f;
  std::string why;
  auto h = decode_header(w.data, why);
  if (!h) return f;
  f.exchange = h->exchange;
  f.response = h->response;
  f.fragment = is_fragment(w.data);
  if (f.fragment && w.data.size() >= 36) {
    f.number = dissect::load_be16(w.data.data() + 32);
    f.total = dissect::load_be16(w.data.data() + 34);
  }
  return f;
}

/// The IKE_AUTH datagrams of one direction.
std::vector<Frag> auth_datagrams(const Pair& p, bool response) {
  std::vector<Frag> r;
  for (const auto& w : p.net.sent) {
    const Frag f = frag_of(w);
    if (f.exchange == xt::v2_auth && f.response == response) r.push_back(f);
  }
  return r;
}

TEST(Ikev2Fragments, CertificateAuthIsFragmentedBothWays) {
  auto p = rsa_pair();
  start(*p);
  expect_up(*p);
  // Both announced support in IKE_SA_INIT.
  for (std::size_t i = 0; i < 2; ++i) {
    Message m;
    std::string why;
    ASSERT_EQ(decode(p->net.sent[i].data, nullptr, m, why), DecodeStatus::ok) << why;
    EXPECT_NE(m.notify(notify::fragmentation_supported), nullptr) << i;
  }
  // The RSA-2048 certificate and signature do not fit in 1280 bytes of IPv4:
  // request and response both go as fragments, none larger than 1280 - 28.
  for (bool response : {false, true}) {
    const auto d = auth_datagrams(*p, response);
    ASSERT_GE(d.size(), 2u) << response;
    for (std::size_t i = 0; i < d.size(); ++i) {
      EXPECT_TRUE(d[i].fragment);
      EXPECT_EQ(d[i].number, i + 1);
      EXPECT_EQ(d[i].total, d.size());
    }
  }
  for (const auto& w : p->net.sent) EXPECT_LE(w.data.size(), 1280u - 20 - 8);
  EXPECT_EQ(p->a->snap(p->net.now).counters.invalid_packets, 0u);
  EXPECT_EQ(p->b->snap(p->net.now).counters.invalid_packets, 0u);
  EXPECT_EQ(p->a->snap(p->net.now).counters.retransmissions, 0u);
}

TEST(Ikev2Fragments, ASmallerFragmentSizeMakesMoreFragments) {
  Options small;
  small.fragment_size = 576;
  auto p = rsa_pair(small, small);
  start(*p);
  expect_up(*p);
  EXPECT_GE(auth_datagrams(*p, false).size(), 3u);
  for (const auto& w : p->net.sent) {
    if (frag_of(w).exchange == xt::v2_auth) {
      EXPECT_LE(w.data.size(), 576u - 28);
    }
  }
}

TEST(Ikev2Fragments, ALostFragmentIsRetransmittedWithTheOthers) {
  for (bool response : {false, true}) {
    auto p = rsa_pair();
    bool dropped = false;
    p->net.drop = [&](const Wire& w) {
      const Frag f = frag_of(w);
      if (!dropped && f.exchange == xt::v2_auth && f.response == response && f.number == 2) {
        dropped = true;
        return true;
      }
      return false;
    };
    start(*p);
    EXPECT_TRUE(dropped);
    expect_up(*p);
    EXPECT_EQ(p->a->snap(p->net.now).counters.retransmissions, 1u) << response;
    // The retransmission carries every fragment again; B answers a
    // retransmitted request on its fragment 1 only, once.
    const auto req = auth_datagrams(*p, false);
    const auto resp = auth_datagrams(*p, true);
    const std::size_t nreq = req.front().total;
    const std::size_t nresp = resp.front().total;
    EXPECT_EQ(req.size(), 2 * nreq) << response;
    EXPECT_EQ(resp.size(), response ? 2 * nresp : nresp) << response;
  }
}

TEST(Ikev2Fragments, OnlyFragmentOneOfAnAnsweredRequestBringsTheResponseAgain) {
  Options keys;
  keys.save_keys = true;
  auto p = rsa_pair(keys, {});
  start(*p, 2 * kSec);  // IKE_AUTH is the last exchange: B's response cache holds it
  expect_up(*p);
  ASSERT_EQ(p->a->keys.size(), 1u);
  const KeysAction& k = p->a->keys[0];
  const ike::SkCipher sk_i(k.suite, k.sk_ei.bytes(), k.sk_ai.bytes());
  // A's IKE_AUTH request, reassembled with its keys and fragmented anew
  // (other sizes, new IVs): what a peer re-fragmenting its retransmission sends.
  FragmentSet set;
  Message request;
  for (const auto& w : p->net.sent) {
    const Frag f = frag_of(w);
    if (f.exchange != xt::v2_auth || f.response) continue;
    Fragment part;
    std::string why;
    ASSERT_EQ(decode_fragment(w.data, &sk_i, request, part, why), DecodeStatus::ok) << why;
    (void)set.add(request.message_id, std::move(part));
  }
  std::uint8_t first = 0;
  const Buffer plain = set.take(first);
  std::string why;
  ASSERT_EQ(decode_reassembled(plain, first, request, why), DecodeStatus::ok) << why;
  SeededRandom random(99);
  const auto again = encode_fragments(request, sk_i, random, 1000);
  ASSERT_GE(again.size(), 2u);
  const std::size_t nresp = auth_datagrams(*p, true).size();
  auto send_to_b = [&](const Buffer& bytes) {
    Wire w;
    w.src = {ip(kA), 500};
    w.dst = {ip(kB), 500};
    w.data = bytes;
    const std::size_t before = p->net.sent.size();
    p->net.deliver(w);
    return p->net.sent.size() - before;
  };
  // Fragment 2: ignored. Fragment 1: the whole response again.
  EXPECT_EQ(send_to_b(again[1]), 0u);
  EXPECT_EQ(send_to_b(again[0]), nresp) << p->b->event_text(EventKind::invalid_message);
  // A forged fragment 1 brings nothing and is counted.
  const auto invalid = p->b->snap(p->net.now).counters.invalid_packets;
  Buffer forged = again[0];
  forged[forged.size() - 5] ^= 1;
  EXPECT_EQ(send_to_b(forged), 0u);
  EXPECT_EQ(p->b->snap(p->net.now).counters.invalid_packets, invalid + 1);
}

TEST(Ikev2Fragments, ForgedFragmentsAreDroppedAndTheRealOnesComplete) {
  auto p = rsa_pair();
  std::size_t forged = 0;
  p->net.drop = [&](const Wire& w) {
    const Frag f = frag_of(w);
    if (f.fragment && forged < 2) {
      // Before each of the first two real fragments, a copy with one bit of
      // its ciphertext changed.
      Wire bad = w;
      bad.data[bad.data.size() - 20] ^= 0x40;
      ++forged;
      p->net.deliver(bad);
    }
    return false;
  };
  start(*p);
  EXPECT_EQ(forged, 2u);
  expect_up(*p);
  const auto sb = p->b->snap(p->net.now);
  EXPECT_EQ(sb.counters.invalid_packets, 2u);
  EXPECT_NE(p->b->event_text(EventKind::invalid_message).find("fragment from 203.0.113.1:500 dropped"),
            std::string::npos)
      << p->b->event_text(EventKind::invalid_message);
  EXPECT_EQ(p->a->snap(p->net.now).counters.retransmissions, 0u);
}

TEST(Ikev2Fragments, APeerWithoutSupportGetsWholeMessages) {
  for (bool a_supports : {false, true}) {
    Options off;
    off.fragmentation = false;
    auto p = a_supports ? rsa_pair({}, off) : rsa_pair(off, {});
    start(*p);
    expect_up(*p);
    Message init_r;
    std::string why;
    ASSERT_EQ(decode(p->net.sent[1].data, nullptr, init_r, why), DecodeStatus::ok) << why;
    EXPECT_EQ(init_r.notify(notify::fragmentation_supported), nullptr);
    bool big = false;
    for (const auto& w : p->net.sent) {
      EXPECT_FALSE(is_fragment(w.data));
      big = big || w.data.size() > 1280u - 28;
    }
    EXPECT_TRUE(big) << "the test's IKE_AUTH should need fragments";
  }
}

// ---- the analyzer reads what the daemon sent ------------------------------------

/// An IPv4/UDP packet around an IKE message (LINKTYPE_RAW).
Buffer raw_ipv4_udp(const Wire& w) {
  Buffer b(28);
  const std::size_t len = 28 + w.data.size();
  b[0] = 0x45;
  dissect::store_be16(b.data() + 2, static_cast<std::uint16_t>(len));
  b[8] = 64;
  b[9] = 17;
  std::memcpy(b.data() + 12, w.src.addr.data(), 4);
  std::memcpy(b.data() + 16, w.dst.addr.data(), 4);
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < 20; i += 2) sum += dissect::load_be16(b.data() + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  dissect::store_be16(b.data() + 10, static_cast<std::uint16_t>(~sum));
  dissect::store_be16(b.data() + 20, w.src.port);
  dissect::store_be16(b.data() + 22, w.dst.port);
  dissect::store_be16(b.data() + 24, static_cast<std::uint16_t>(8 + w.data.size()));
  b.insert(b.end(), w.data.begin(), w.data.end());
  return b;
}

TEST(Ikev2Fragments, TheAnalyzerDecryptsTheDaemonsFragments) {
  Options keys;
  keys.save_keys = true;
  auto p = rsa_pair(keys, {});
  start(*p);
  expect_up(*p);
  ASSERT_EQ(p->a->keys.size(), 1u);
  const KeysAction& k = p->a->keys[0];
  filters::IkeSaConfig cfg;
  cfg.name = "daemon";
  cfg.spi_i = k.spi_i;
  cfg.spi_r = k.spi_r;
  cfg.cipher = k.suite.encryption.cipher;
  cfg.integrity = k.suite.integrity;
  cfg.sk_ei = k.sk_ei.clone();
  cfg.sk_er = k.sk_er.clone();
  cfg.sk_ai = k.sk_ai.clone();
  cfg.sk_ar = k.sk_ar.clone();
  std::vector<filters::IkeSaConfig> table;
  table.push_back(std::move(cfg));
  ike::Analyzer an(std::move(table));
  std::size_t n = 0, reassembled = 0, fragments = 0;
  for (const auto& w : p->net.sent) {
    const Buffer pkt = raw_ipv4_udp(w);
    dissect::Frame f;
    f.number = ++n;
    f.ts_ns = static_cast<std::int64_t>(n) * 1000;
    f.linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
    f.orig_len = static_cast<std::uint32_t>(pkt.size());
    f.data = pkt;
    dissect::Packet dp;
    dissect::dissect_frame(f, dp);
    const ike::MessageRecord* r = an.observe(f, dp);
    ASSERT_NE(r, nullptr) << n;
    if (r->header.exchange == xt::v2_sa_init) continue;
    EXPECT_TRUE(r->status == ike::DecryptStatus::decrypted || r->status == ike::DecryptStatus::fragment)
        << n << ": " << r->detail;
    if (r->status == ike::DecryptStatus::fragment) ++fragments;
    if (r->detail.find("fragments reassembled") != std::string::npos) {
      ++reassembled;
      EXPECT_NE(std::find(r->inner_payloads.begin(), r->inner_payloads.end(), pt::v2_auth), r->inner_payloads.end());
    }
  }
  an.finish();
  EXPECT_EQ(reassembled, 2u);  // IKE_AUTH request and response
  EXPECT_GE(fragments, 2u);
  EXPECT_EQ(an.statistics().invalid_packets, 0u);
  EXPECT_EQ(an.statistics().main_modes, 1u);
  EXPECT_EQ(an.statistics().quick_modes, 1u);
}

}  // namespace
