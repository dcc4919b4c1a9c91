// Per-packet costs: inbound ESP/AH verification (dissection, SAD lookup,
// replay window, ICV, decryption) and outbound protection, per suite and
// inner packet size; the replay window on its own; the ESP crypto alone per
// backend (BM_EspOpen/<suite>/<backend>/<ciphertext bytes>, the names
// bench scripts parse).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/wire.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"
#include "ipsentry/ipsec/replay.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace {

using namespace ipsentry;
using filters::Cipher;
using filters::Integrity;
using filters::IpsecProtocol;

struct Suite {
  const char* name;
  IpsecProtocol proto;
  Cipher c;
  Integrity i;
};

const Suite kSuites[] = {
    {"aes-128-gcm-16", IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none},
    {"aes-128-cbc+hmac-sha1-96", IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha1_96},
    {"aes-128-cbc+hmac-sha256-128", IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128},
    {"aes-128-ctr+aes-xcbc-96", IpsecProtocol::esp, Cipher::aes_ctr, Integrity::aes_xcbc_96},
    {"aes-128-ccm-16", IpsecProtocol::esp, Cipher::aes_ccm_16, Integrity::none},
    {"chacha20-poly1305", IpsecProtocol::esp, Cipher::chacha20_poly1305, Integrity::none},
    {"aes-128-gmac", IpsecProtocol::esp, Cipher::aes_gmac, Integrity::none},
    {"3des-cbc+hmac-md5-96", IpsecProtocol::esp, Cipher::tdes_cbc, Integrity::hmac_md5_96},
    {"ah-hmac-sha256-128", IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128},
};

filters::SaConfig config_of(const Suite& s) {
  auto sa = test::make_sa(s.proto, s.c, s.i, filters::SaMode::tunnel, "203.0.113.1", "198.51.100.1");
  sa.replay_window = 1024;
  return sa;
}

std::vector<std::uint8_t> inner_packet(std::size_t size) {
  return test::ipv4("192.0.2.10", "192.0.2.130", 17,
                    test::udp(40000, 40001, std::vector<std::uint8_t>(size - 28, 0xab)));
}

ipsec::Sad sad_of(const Suite& s) {
  std::vector<filters::SaConfig> v;
  v.push_back(config_of(s));
  return ipsec::Sad(std::move(v));
}

void BM_Inbound(benchmark::State& state, const Suite* s) {
  const auto size = static_cast<std::size_t>(state.range(0));
  ipsec::Sad tx = sad_of(*s);
  ipsec::Sad rx = sad_of(*s);
  ipsec::Engine sender;
  ipsec::Engine receiver;
  constexpr std::size_t kRing = 1024;  // distinct sequence numbers, then the window is reset
  std::vector<std::vector<std::uint8_t>> wire;
  const auto clear = inner_packet(size);
  for (std::size_t n = 0; n < kRing; ++n) {
    auto r = sender.outbound(tx.at(0), clear);
    wire.emplace_back(r.packet.begin(), r.packet.end());
  }
  dissect::Packet pkt;
  std::size_t n = 0;
  std::size_t wire_bytes = 0;
  for (auto _ : state) {
    const auto& w = wire[n];
    dissect::dissect_ip(w, pkt);
    auto r = receiver.inbound(rx, pkt, 0, false);
    benchmark::DoNotOptimize(r.verdict);
    if (r.verdict != ipsec::Verdict::ok) {
      state.SkipWithError("packet did not verify");
      break;
    }
    wire_bytes += w.size();
    if (++n == kRing) {
      n = 0;
      rx.at(0).replay = ipsec::ReplayWindow(1024, false);
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(wire_bytes));
  state.SetItemsProcessed(state.iterations());
}

void BM_Outbound(benchmark::State& state, const Suite* s) {
  const auto size = static_cast<std::size_t>(state.range(0));
  ipsec::Sad tx = sad_of(*s);
  ipsec::Engine sender;
  const auto clear = inner_packet(size);
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto r = sender.outbound(tx.at(0), clear);
    benchmark::DoNotOptimize(r.packet.data());
    bytes += r.packet.size();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplayWindow(benchmark::State& state) {
  ipsec::ReplayWindow w(static_cast<std::uint32_t>(state.range(0)), false);
  std::uint64_t seq = 1;
  for (auto _ : state) {
    // In order with every eighth packet late by 5: the common shape of real traffic.
    std::uint64_t s = (seq % 8 == 0 && seq > 5) ? seq - 5 : seq;
    if (w.check(s) == ipsec::ReplayWindow::Check::ok) w.commit(s);
    ++seq;
  }
  state.SetItemsProcessed(state.iterations());
}

struct CryptoSuite {
  const char* name;
  Cipher c;
  std::size_t key;  // incl. salt
  Integrity i;
  std::size_t auth_key;
};

// The suites of `make bench`, by the short names its scripts use.
const CryptoSuite kCryptoSuites[] = {
    {"gcm", Cipher::aes_gcm_16, 20, Integrity::none, 0},
    {"cbc-sha1", Cipher::aes_cbc, 16, Integrity::hmac_sha1_96, 20},
    {"chacha20", Cipher::chacha20_poly1305, 36, Integrity::none, 0},
    {"cbc-sha256", Cipher::aes_cbc, 16, Integrity::hmac_sha256_128, 32},
};
// The other suites whose `auto` choice was measured (BM_EspOpenAuto).
const CryptoSuite kAutoSuites[] = {
    {"ccm", Cipher::aes_ccm_16, 19, Integrity::none, 0},
    {"gmac", Cipher::aes_gmac, 20, Integrity::none, 0},
    {"cbc-sha512", Cipher::aes_cbc, 16, Integrity::hmac_sha512_256, 64},
    {"cbc-sha384", Cipher::aes_cbc, 16, Integrity::hmac_sha384_192, 48},
    {"cbc-xcbc", Cipher::aes_cbc, 16, Integrity::aes_xcbc_96, 16},
    {"cbc-md5", Cipher::aes_cbc, 16, Integrity::hmac_md5_96, 16},
    {"ctr-sha1", Cipher::aes_ctr, 20, Integrity::hmac_sha1_96, 20},
    {"cbc", Cipher::aes_cbc, 16, Integrity::none, 0},
};

// EspTransform::decrypt alone, on a few distinct valid packets in turn.
// `bytes` is the ciphertext (payload, padding, trailer); CBC rounds it up to
// whole blocks (1400 -> 1408).
void BM_EspOpen(benchmark::State& state, const CryptoSuite* s, ipsec::CryptoChoice backend) {
  std::vector<std::uint8_t> key(s->key);
  std::vector<std::uint8_t> auth(s->auth_key);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i * 13 + 1);
  for (std::size_t i = 0; i < auth.size(); ++i) auth[i] = static_cast<std::uint8_t>(i * 7 + 5);
  const auto sa = test::esp_sa(s->c, key, s->i, auth);
  ipsec::EspTransform sealer(sa, ipsec::CryptoChoice::openssl);
  ipsec::EspTransform t(sa, backend);
  if (backend == ipsec::CryptoChoice::ipsec_mb && t.backend() != ipsec::CryptoBackend::ipsec_mb) {
    state.SkipWithError(("not on libipsec-mb: " + t.backend_reason()).c_str());
    return;
  }
  auto bytes = static_cast<std::size_t>(state.range(0));
  bytes = (bytes + t.alignment() - 1) / t.alignment() * t.alignment();
  constexpr std::size_t kPackets = 8;
  std::vector<std::vector<std::uint8_t>> packets;
  for (std::size_t p = 0; p < kPackets; ++p) {
    std::vector<std::uint8_t> esp(8 + t.iv_len() + bytes + t.icv_len());
    dissect::store_be32(esp.data(), 0x1000);
    dissect::store_be32(esp.data() + 4, static_cast<std::uint32_t>(p + 1));
    for (std::size_t i = 8 + t.iv_len(); i < esp.size(); ++i) esp[i] = static_cast<std::uint8_t>(i + p);
    if (!sealer.encrypt(esp, p + 1, nullptr)) {
      state.SkipWithError("could not build the packets");
      return;
    }
    packets.push_back(std::move(esp));
  }
  std::vector<std::uint8_t> out(packets[0].size());
  std::size_t n = 0;
  for (auto _ : state) {
    std::size_t len = 0;
    const auto status = t.decrypt(packets[n], n + 1, out.data(), len, nullptr);
    if (status != ipsec::EspTransform::Status::ok) {
      state.SkipWithError("packet did not verify");
      break;
    }
    benchmark::DoNotOptimize(out.data());
    n = (n + 1) % kPackets;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(state.iterations());
}

const bool registered = [] {
  for (const auto& s : kSuites) {
    benchmark::RegisterBenchmark((std::string("Inbound/") + s.name).c_str(), BM_Inbound, &s)
        ->Arg(64)
        ->Arg(512)
        ->Arg(1400);
    benchmark::RegisterBenchmark((std::string("Outbound/") + s.name).c_str(), BM_Outbound, &s)->Arg(64)->Arg(1400);
  }
  benchmark::RegisterBenchmark("ReplayWindow", BM_ReplayWindow)->Arg(64)->Arg(4096);
  std::vector<std::pair<const char*, ipsec::CryptoChoice>> backends{{"openssl", ipsec::CryptoChoice::openssl}};
  if (ipsec::crypto_availability().ipsec_mb_built) backends.emplace_back("ipsec-mb", ipsec::CryptoChoice::ipsec_mb);
  for (const auto& s : kCryptoSuites) {
    for (const auto& [name, choice] : backends) {
      benchmark::RegisterBenchmark((std::string("BM_EspOpen/") + s.name + "/" + name).c_str(), BM_EspOpen, &s, choice)
          ->Arg(64)
          ->Arg(736)
          ->Arg(1400);
    }
  }
  for (const auto& s : kAutoSuites) {
    for (const auto& [name, choice] : backends) {
      benchmark::RegisterBenchmark((std::string("BM_EspOpenAuto/") + s.name + "/" + name).c_str(), BM_EspOpen, &s,
                                   choice)
          ->Arg(736);
    }
  }
  return true;
}();

}  // namespace
