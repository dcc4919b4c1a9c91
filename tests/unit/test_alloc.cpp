// The per-packet paths allocate nothing once an SA is keyed: outbound
// protection, inbound verification through the engine, and the whole frame
// path of capture::Verifier (dissection, SAD lookup, replay, ICV, decryption,
// the rebuilt cleartext), for good, tampered, replayed, unknown and cut
// packets. Both C++ allocations (operator new) and OpenSSL's own
// (CRYPTO_set_mem_functions) are counted.
#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<std::uint64_t> g_allocations{0};

void note_allocation() noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}

void* ossl_malloc(std::size_t n, const char*, int) {
  note_allocation();
  return std::malloc(n);
}
void* ossl_realloc(void* p, std::size_t n, const char*, int) {
  note_allocation();
  return std::realloc(p, n);
}
void ossl_free(void* p, const char*, int) { std::free(p); }

// Must run before OpenSSL allocates anything, hence a static initialiser.
const bool g_ossl_hooked = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) == 1;

/// Counts the allocations made while it is alive.
class AllocationCounter {
 public:
  AllocationCounter() {
    g_allocations = 0;
    g_counting = true;
  }
  ~AllocationCounter() { g_counting = false; }
  AllocationCounter(const AllocationCounter&) = delete;
  AllocationCounter& operator=(const AllocationCounter&) = delete;
  [[nodiscard]] std::uint64_t count() const noexcept { return g_allocations.load(); }
};

}  // namespace

// These replacements pair malloc with free; GCC, seeing the standard operator
// new inlined at a call site, cannot tell and warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  note_allocation();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  note_allocation();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  note_allocation();
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  note_allocation();
  return std::malloc(n == 0 ? 1 : n);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace ipsentry {
namespace {

using filters::Cipher;
using filters::Integrity;
using filters::IpsecProtocol;
using filters::SaMode;

struct Suite {
  IpsecProtocol proto;
  Cipher c;
  Integrity i;
  SaMode mode;
  bool v6;
  bool esn;
};

const Suite kSuites[] = {
    {IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::tunnel, false, false},
    {IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha1_96, SaMode::tunnel, false, false},
    {IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, SaMode::transport, true, true},
    {IpsecProtocol::esp, Cipher::aes_ctr, Integrity::hmac_sha512_256, SaMode::transport, false, false},
    {IpsecProtocol::esp, Cipher::aes_ccm_16, Integrity::none, SaMode::tunnel, true, false},
    {IpsecProtocol::esp, Cipher::aes_gmac, Integrity::none, SaMode::transport, false, false},
    {IpsecProtocol::esp, Cipher::chacha20_poly1305, Integrity::none, SaMode::tunnel, false, true},
    {IpsecProtocol::esp, Cipher::chacha20_poly1305_iiv, Integrity::none, SaMode::transport, true, false},
    {IpsecProtocol::esp, Cipher::tdes_cbc, Integrity::hmac_md5_96, SaMode::tunnel, false, false},
    {IpsecProtocol::esp, Cipher::aes_cbc, Integrity::aes_xcbc_96, SaMode::tunnel, false, false},
    {IpsecProtocol::esp, Cipher::null, Integrity::hmac_sha384_192, SaMode::transport, false, false},
    {IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128, SaMode::transport, true, false},
    {IpsecProtocol::ah, Cipher::null, Integrity::hmac_md5_96, SaMode::tunnel, false, true},
};

filters::SaConfig config_of(const Suite& s) {
  auto sa = test::make_sa(s.proto, s.c, s.i, s.mode, s.v6 ? "2001:db8::1" : "192.0.2.1",
                          s.v6 ? "2001:db8::2" : "192.0.2.2", s.esn);
  sa.replay_window = 1024;
  return sa;
}

std::vector<std::uint8_t> clear_packet(const Suite& s, std::size_t n, std::uint16_t seq) {
  auto icmp = test::icmp_echo(0x11, seq, n, s.v6);
  if (s.v6) return test::ipv6("2001:db8::1", "2001:db8::2", 58, {}, icmp);
  return test::ipv4("192.0.2.1", "192.0.2.2", 1, icmp);
}

ipsec::Sad sad_of(const Suite& s, ipsec::CryptoChoice crypto) {
  std::vector<filters::SaConfig> v;
  v.push_back(config_of(s));
  return ipsec::Sad(std::move(v), crypto);
}

// Each backend this build has, by name, so that the suites it can do run on it.
std::vector<ipsec::CryptoChoice> backends() {
  std::vector<ipsec::CryptoChoice> v{ipsec::CryptoChoice::openssl};
  if (ipsec::crypto_availability().ipsec_mb_usable) v.push_back(ipsec::CryptoChoice::ipsec_mb);
  return v;
}

std::string name_of(const Suite& s) {
  return std::string(filters::to_string(s.proto)) + " " + std::string(filters::cipher_info(s.c).name) + "/" +
         std::string(filters::integrity_info(s.i).name) + " " + filters::to_string(s.mode) + (s.v6 ? " v6" : " v4") +
         (s.esn ? " esn" : "");
}

TEST(Allocations, OpenSslAllocationsAreCounted) {
  ASSERT_TRUE(g_ossl_hooked) << "OpenSSL allocated before the test could hook its allocator";
  AllocationCounter counter;
  void* p = OPENSSL_malloc(16);
  OPENSSL_free(p);
  auto* q = new int(1);  // NOLINT(cppcoreguidelines-owning-memory): the counter's own check
  // Keeps the compiler from eliding the allocation.
  asm volatile("" : : "g"(q) : "memory");
  delete q;  // NOLINT(cppcoreguidelines-owning-memory)
  EXPECT_EQ(counter.count(), 2u);
}

class AllocationsPerBackend : public testing::TestWithParam<ipsec::CryptoChoice> {};

TEST_P(AllocationsPerBackend, NonePerPacketOnceKeyed) {
  constexpr int kPackets = 300;
  std::size_t on_ipsec_mb = 0;
  for (const auto& s : kSuites) {
    SCOPED_TRACE(name_of(s));
    ipsec::Sad tx = sad_of(s, GetParam());
    ipsec::Sad rx = sad_of(s, GetParam());
    if (rx.at(0).esp() != nullptr && rx.at(0).esp()->backend() == ipsec::CryptoBackend::ipsec_mb) ++on_ipsec_mb;
    ipsec::Engine sender;
    std::vector<std::vector<std::uint8_t>> clear;
    for (int n = 0; n < kPackets + 8; ++n) {
      clear.push_back(clear_packet(s, 16 + static_cast<std::size_t>(n * 37) % 1400, static_cast<std::uint16_t>(n)));
    }
    // Warm-up: the first packets may size the engines' buffers.
    std::vector<std::vector<std::uint8_t>> wire;
    for (int n = 0; n < 8; ++n) {
      auto r = sender.outbound(tx.at(0), clear[static_cast<std::size_t>(n)]);
      ASSERT_EQ(r.status, ipsec::OutboundStatus::ok);
      wire.emplace_back(r.packet.begin(), r.packet.end());
    }
    wire.reserve(wire.size() + kPackets);
    std::vector<std::vector<std::uint8_t>> out(kPackets);
    for (auto& o : out) o.resize(2048);
    {
      AllocationCounter counter;
      for (int n = 0; n < kPackets; ++n) {
        auto r = sender.outbound(tx.at(0), clear[static_cast<std::size_t>(n) + 8]);
        if (r.status != ipsec::OutboundStatus::ok) break;
        auto& o = out[static_cast<std::size_t>(n)];
        std::copy(r.packet.begin(), r.packet.end(), o.begin());
        o.resize(r.packet.size());  // shrinking never allocates
      }
      EXPECT_EQ(counter.count(), 0u) << "outbound";
    }
    for (auto& o : out) wire.push_back(std::move(o));

    // Frames for the verifier: every good packet and, every tenth, a
    // tampered copy of the next one (before it arrives), a replay, an
    // unknown SPI and a cut packet.
    std::vector<std::vector<std::uint8_t>> bad;
    for (std::size_t n = 11; n < wire.size(); n += 10) {
      auto t = wire[n];
      t[t.size() - 1] ^= 1;
      bad.push_back(t);
    }
    capture::Verifier verifier(rx, true);
    capture::FrameResult result;
    auto frame_of = [](const std::vector<std::uint8_t>& bytes, std::uint64_t number) {
      dissect::Frame f;
      f.number = number;
      f.ts_ns = static_cast<std::int64_t>(number) * 1000;
      f.linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
      f.orig_len = static_cast<std::uint32_t>(bytes.size());
      f.data = dissect::Bytes(bytes.data(), bytes.size());
      return f;
    };
    for (std::size_t n = 0; n < 8; ++n) verifier.process(frame_of(wire[n], n + 1), result);
    std::vector<std::uint8_t> unknown = wire[9];
    const std::size_t hdr = s.v6 ? 40 : 20;
    unknown[hdr + (s.proto == IpsecProtocol::ah ? 4 : 0)] ^= 0x80;
    std::vector<std::uint8_t> cut(wire[10].begin(), wire[10].begin() + static_cast<long>(hdr + 6));
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;
    {
      AllocationCounter counter;
      std::size_t b = 0;
      for (std::size_t n = 8; n < wire.size(); ++n) {
        verifier.process(frame_of(wire[n], n + 1), result);
        ok += result.layers[0].verdict == ipsec::Verdict::ok ? 1 : 0;
        if (n % 10 == 0) {
          if (b < bad.size()) verifier.process(frame_of(bad[b++], n), result);
          failed += result.layers[0].verdict == ipsec::Verdict::icv_fail ? 1 : 0;
          verifier.process(frame_of(wire[n - 1], n), result);  // replay
          failed += result.layers[0].verdict == ipsec::Verdict::replay ? 1 : 0;
          verifier.process(frame_of(unknown, n), result);
          failed += result.layers[0].verdict == ipsec::Verdict::unknown_spi ? 1 : 0;
          verifier.process(frame_of(cut, n), result);
          failed += result.layers[0].verdict == ipsec::Verdict::malformed ? 1 : 0;
        }
      }
      EXPECT_EQ(counter.count(), 0u) << "verifier";
    }
    EXPECT_EQ(ok, static_cast<std::uint64_t>(kPackets));
    EXPECT_EQ(failed, 4u * 30u);
  }
  // Everything but 3DES runs on libipsec-mb when it is asked for.
  if (GetParam() == ipsec::CryptoChoice::ipsec_mb && ipsec::crypto_availability().aesni) {
    EXPECT_EQ(on_ipsec_mb, 10u);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AllocationsPerBackend, testing::ValuesIn(backends()),
                         [](const testing::TestParamInfo<ipsec::CryptoChoice>& i) {
                           return i.param == ipsec::CryptoChoice::openssl ? std::string("openssl")
                                                                          : std::string("ipsec_mb");
                         });

}  // namespace
}  // namespace ipsentry
