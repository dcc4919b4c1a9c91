// The IKEv2 responder (ike::v2::Daemon) under hostile sequences.
//
// Once per process an initiator and a responder, both with seeded
// randomness (nonces, SPIs, IVs and the Diffie-Hellman private values),
// run a real exchange: IKE_SA_INIT, IKE_AUTH, a CHILD_SA rekey with its
// Delete, a new CHILD_SA, DPD, an IKE SA rekey and its Delete. The
// initiator's datagrams are recorded. Each input then drives a fresh
// responder made with the same seed through a sequence of operations:
// recorded datagrams as they were (so the exchange replays and reaches
// deep states, integrity and all), with bytes flipped, with header fields
// changed, cut or extended, raw bytes from the input, and clock ticks.
//
// Input: a sequence of operations, each a selector byte and its arguments
// (see run()). Everything the responder sends must parse as IKEv2.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ike/crypto_testing.hpp"
#include "ipsentry/ike/ikev2.hpp"

namespace {

using namespace ipsentry;
using namespace ipsentry::ike::v2;

constexpr TimeNs kSec = 1'000'000'000;
constexpr TimeNs kStart = 1000 * kSec;

const char* const kInitiator = R"(interfaces: { local: [203.0.113.1] }
ike_profiles:
  - name: p
    version: 2
    auth: { method: psk, psk: "fuzzing is believing" }
    peer: 198.51.100.1
    proposals: [aes128gcm16-prfsha256-curve25519, aes256-sha256-ecp256]
    esp_proposals: [aes128gcm16, aes256-sha256]
    pfs: curve25519
policies:
  - name: site
    from: 192.0.2.0/25
    to: 192.0.2.128/25
    mirrored: true
    action: negotiate
    ike: p
    ipsec: { protocol: esp, mode: tunnel, peer: 198.51.100.1 }
)";

const char* const kResponder = R"(interfaces: { local: [198.51.100.1] }
ike_profiles:
  - name: p
    version: 2
    auth: { method: psk, psk: "fuzzing is believing" }
    peer: 203.0.113.1
    proposals: [aes256-sha256-ecp256, aes128gcm16-prfsha256-curve25519]
    esp_proposals: [aes256-sha256, aes128gcm16]
    pfs: curve25519
policies:
  - name: site
    from: 192.0.2.128/25
    to: 192.0.2.0/25
    mirrored: true
    action: negotiate
    ike: p
    ipsec: { protocol: esp, mode: tunnel, peer: 203.0.113.1 }
)";

class Seeded : public ike::Random {
 public:
  explicit Seeded(std::uint64_t s) : s_(s) {}
  void fill(std::span<std::uint8_t> out) override {
    for (auto& b : out) {
      // splitmix64
      std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      b = static_cast<std::uint8_t>(z ^ (z >> 31));
    }
  }

 private:
  std::uint64_t s_;
};

std::unique_ptr<ike::KeyExchange> seeded_key_exchange(filters::DhGroup g, ike::Random& r) {
  for (;;) {
    ike::Buffer priv(g == filters::DhGroup::ecp384 ? 48 : 32);
    r.fill(priv);
    try {
      return ike::testing::key_exchange_with_private(g, priv);
    } catch (const ike::CryptoError&) {
      // a scalar out of range: draw again
    }
  }
}

filters::LocalAddresses local_of(const char* a) {
  filters::LocalAddresses l;
  l.addresses = {*dissect::IpAddr::parse(a)};
  return l;
}

const Endpoint kA{*dissect::IpAddr::parse("203.0.113.1"), 500};
const Endpoint kB{*dissect::IpAddr::parse("198.51.100.1"), 500};

struct Responder {
  Seeded random{2};
  std::unique_ptr<Daemon> daemon;
  explicit Responder(const filters::Config& c) {
    Options o;
    o.random = &random;
    o.key_exchange = seeded_key_exchange;
    o.half_open_limit = 8;
    o.cookie_threshold = 5;
    daemon = std::make_unique<Daemon>(c, local_of("198.51.100.1"), o);
  }
};

struct Recorded {
  Endpoint src, dst;
  ike::Buffer data;
};

struct World {
  filters::Config initiator_cfg = filters::parse_config(kInitiator, "initiator.yaml", ".");
  filters::Config responder_cfg = filters::parse_config(kResponder, "responder.yaml", ".");
  std::vector<Recorded> recorded;  // the initiator's datagrams, in order

  World() { record(); }

  void record() {
    Seeded ra(1);
    Options oa;
    oa.random = &ra;
    oa.key_exchange = seeded_key_exchange;
    Daemon a(initiator_cfg, local_of("203.0.113.1"), oa);
    Responder b(responder_cfg);
    TimeNs now = kStart;
    std::vector<std::uint64_t> installed;
    auto pump = [&](Actions& first_from_a) {
      std::vector<std::pair<bool, Recorded>> wire;  // (to_b, datagram)
      auto take = [&](Actions& acts, bool from_a) {
        for (auto& act : acts) {
          if (auto* s = std::get_if<SendAction>(&act)) {
            Recorded r{s->local, s->remote, s->data};
            if (from_a) recorded.push_back(r);
            wire.emplace_back(from_a, std::move(r));
          } else if (auto* i = std::get_if<InstallAction>(&act); i != nullptr && from_a) {
            installed.push_back(i->sa.child);
          }
        }
        acts.clear();
      };
      take(first_from_a, true);
      for (std::size_t i = 0; i < wire.size() && i < 100; ++i) {
        const auto [to_b, r] = wire[i];
        Actions out;
        Datagram d{r.dst, r.src, r.data};
        if (to_b) {
          b.daemon->receive(d, now, out);
        } else {
          a.receive(d, now, out);
        }
        take(out, !to_b);
      }
    };
    Actions out;
    Acquire acq;
    acq.id = 1;
    acq.local = kA;
    acq.remote = kB;
    acq.packet_src.start = acq.packet_src.end = *dissect::IpAddr::parse("192.0.2.10");
    acq.packet_dst.start = acq.packet_dst.end = *dissect::IpAddr::parse("192.0.2.200");
    a.acquire(acq, now, out);
    pump(out);  // IKE_SA_INIT, IKE_AUTH
    if (!installed.empty()) {
      a.expired(installed.back(), false, now, out);
      pump(out);  // CREATE_CHILD_SA rekey with PFS, then the Delete of the old child
      a.expired(installed.back(), true, now, out);
      pump(out);  // hard expiry: Delete
      acq.id = 2;
      a.acquire(acq, now, out);
      pump(out);  // a new CREATE_CHILD_SA
    }
    now += 31 * kSec;
    a.tick(now, out);
    pump(out);  // DPD
    now += 7 * 3600 * kSec + 1800 * kSec;
    a.tick(now, out);
    pump(out);  // past the IKE SA's soft lifetime: rekey, the old SA's Delete, expired children
    Actions bye;
    a.shutdown(now, bye);
    pump(bye);
  }
};

World& world() {
  static World w;
  return w;
}

class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  [[nodiscard]] bool empty() const { return i_ >= n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>((byte() << 8) | byte()); }
  ike::Buffer bytes(std::size_t want) {
    const std::size_t k = std::min(want, n_ - std::min(i_, n_));
    ike::Buffer b(d_ + i_, d_ + i_ + k);
    i_ += k;
    return b;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

void check(const Actions& out) {
  for (const auto& act : out) {
    if (const auto* s = std::get_if<SendAction>(&act)) {
      std::string why;
      if (!decode_header(s->data, why)) __builtin_trap();  // we must only send IKEv2
    }
  }
}

void run(Input& in) {
  World& w = world();
  if (w.recorded.empty()) return;
  Responder b(w.responder_cfg);
  TimeNs now = kStart;
  for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
    const std::uint8_t op = in.byte();
    const Recorded& r = w.recorded[in.byte() % w.recorded.size()];
    ike::Buffer data = r.data;  // Datagram::data only views it
    Endpoint remote = r.src;
    Actions out;
    switch (op % 8) {
      case 0:  // as recorded
        break;
      case 1:  // bytes flipped
        for (int k = in.byte() % 4 + 1; k > 0 && !data.empty(); --k) {
          data[in.u16() % data.size()] ^= static_cast<std::uint8_t>(in.byte() | 1);
        }
        break;
      case 2:  // a header field replaced: SPIs, next payload, version, exchange, flags, message ID, length
        if (data.size() >= 28) data[in.byte() % 28] = in.byte();
        break;
      case 3:  // cut, or extended with input bytes
        if (const std::uint16_t n = in.u16(); n < data.size()) {
          data.resize(n);
        } else {
          auto more = in.bytes(n % 64);
          data.insert(data.end(), more.begin(), more.end());
        }
        break;
      case 4:  // raw bytes from the input
        data = in.bytes(in.u16() % 1500);
        break;
      case 5:  // from another address or port (spoofed, or a NAT mapping)
        remote.port = in.u16();
        if (in.byte() & 1) remote.addr = *dissect::IpAddr::parse("203.0.113.99");
        break;
      case 6:  // time passes
        now += static_cast<TimeNs>(in.u16()) * 100'000'000;
        b.daemon->tick(now, out);
        check(out);
        continue;
      default: {  // an acquire for the responder's policy (it may initiate too)
        Acquire a;
        a.id = in.byte();
        a.policy = in.byte() % 2;
        a.local = kB;
        a.remote = kA;
        a.packet_src.start = a.packet_src.end = *dissect::IpAddr::parse("192.0.2.200");
        a.packet_dst.start = a.packet_dst.end = *dissect::IpAddr::parse("192.0.2.10");
        b.daemon->acquire(a, now, out);
        check(out);
        continue;
      }
    }
    b.daemon->receive(Datagram{r.dst, remote, data}, now, out);
    check(out);
    (void)b.daemon->next_deadline();
    const Snapshot s = b.daemon->snapshot(now);
    if (s.half_open > 8) __builtin_trap();  // the half-open limit holds
  }
  Actions out;
  b.daemon->shutdown(now, out);
  check(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  run(in);
  return 0;
}
