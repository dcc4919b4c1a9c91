// capture::ParallelVerifier against capture::Verifier fed one frame at a
// time: every frame's layers (verdict, reason, sequence number, SA, ICV,
// summary, decrypted bytes), the counters and the final replay windows must
// be the same for 2, 3 and 4 threads and chunks of 1, 3 and 64 frames, on a
// capture with several SAs and one, ESP and AH, ESN across 2^32 with
// reordering, replays old and new, bad ICVs and ESP inside ESP.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/parallel_verifier.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/capture/sync.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace ipsentry {
namespace {

using filters::Cipher;
using filters::Integrity;
using filters::IpsecProtocol;
using filters::SaMode;

constexpr std::uint64_t kWrap = 0x100000000ull;

std::vector<filters::SaConfig> configs() {
  std::vector<filters::SaConfig> v;
  auto add = [&](const char* name, std::uint32_t spi, IpsecProtocol proto, Cipher c, Integrity i, const char* dst,
                 bool esn, std::uint32_t window) {
    filters::SaConfig sa = test::make_sa(proto, c, i, SaMode::tunnel, "203.0.113.1", dst, esn);
    sa.name = name;
    sa.spi = spi;
    sa.replay_window = window;
    v.push_back(std::move(sa));
  };
  add("gcm", 0x100, IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, "198.51.100.1", false, 64);
  add("cbc", 0x101, IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha1_96, "198.51.100.2", false, 1024);
  add("ah", 0x102, IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128, "198.51.100.3", false, 64);
  add("esn-gcm", 0x103, IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, "198.51.100.4", true, 128);
  add("esn-cbc", 0x104, IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, "198.51.100.5", true, 32);
  add("outer", 0x105, IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, "198.51.100.6", false, 64);
  add("inner", 0x106, IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha1_96, "192.0.2.99", false, 64);
  return v;
}

std::vector<filters::SaConfig> clone(const std::vector<filters::SaConfig>& v) {
  std::vector<filters::SaConfig> out;
  for (const auto& c : v) out.push_back(c.clone());
  return out;
}

// Writes the capture and returns its path.
std::filesystem::path make_capture(const std::vector<filters::SaConfig>& cfgs, std::size_t count, bool one_sa) {
  ipsec::Sad tx(clone(cfgs));
  ipsec::Engine sender;
  tx.at(3).last_sent_seq = kWrap - 400;
  tx.at(4).last_sent_seq = kWrap - 300;
  std::mt19937 rnd(one_sa ? 5 : 17);
  std::vector<std::vector<std::vector<std::uint8_t>>> sent(cfgs.size());
  std::vector<std::vector<std::uint8_t>> frames;
  std::vector<std::uint8_t> held;
  for (std::size_t n = 0; n < count; ++n) {
    const std::size_t i = one_sa ? 1 : rnd() % 6;  // "inner" only inside "outer"
    std::vector<std::uint8_t> data(16 + rnd() % 700, static_cast<std::uint8_t>(n));
    auto clear = test::ipv4("192.0.2.1", "192.0.2.200", 17, test::udp(4000, 5000, data));
    std::vector<std::uint8_t> wire;
    if (cfgs[i].name == "outer") {
      auto in = sender.outbound(tx.at(6), clear);
      EXPECT_EQ(in.status, ipsec::OutboundStatus::ok);
      std::vector<std::uint8_t> nested(in.packet.begin(), in.packet.end());
      if (rnd() % 20 == 0 && !sent[6].empty()) nested = sent[6][rnd() % sent[6].size()];
      sent[6].push_back(nested);
      auto out = sender.outbound(tx.at(i), nested);
      EXPECT_EQ(out.status, ipsec::OutboundStatus::ok);
      wire.assign(out.packet.begin(), out.packet.end());
    } else {
      auto out = sender.outbound(tx.at(i), clear);
      EXPECT_EQ(out.status, ipsec::OutboundStatus::ok);
      wire.assign(out.packet.begin(), out.packet.end());
    }
    sent[i].push_back(wire);
    const unsigned kind = rnd() % 100;
    if (kind < 3) {
      wire[wire.size() - 1 - rnd() % 4] ^= 0x10;  // bad ICV
    } else if (kind < 6) {
      wire = sent[i][sent[i].size() - 1 - rnd() % std::min<std::size_t>(sent[i].size(), 40)];
    } else if (kind < 8) {
      wire = sent[i][rnd() % sent[i].size()];  // old: often outside the window
    } else if (kind < 9) {
      wire.resize(30);
    }
    // ESN SAs: hold a packet back behind the next one, around the wrap too.
    if ((cfgs[i].esn || one_sa) && held.empty() && rnd() % 5 == 0) {
      held = wire;
      continue;
    }
    frames.push_back(wire);
    if (!held.empty()) {
      frames.push_back(held);
      held.clear();
    }
  }
  if (!one_sa) {
    // Pre-wrap packets of the small-window ESN SA, long after the wrap.
    for (std::size_t k = 0; k < 30 && k < sent[4].size(); ++k) frames.push_back(sent[4][k]);
  }
  auto path = std::filesystem::temp_directory_path() /
              ("ipsentry-test-parallel-" + std::to_string(::getpid()) + (one_sa ? "-one" : "-many") + ".pcap");
  capture::PcapWriter w(path, 101);
  std::int64_t ts = 1'700'000'000'000'000'000;
  for (const auto& f : frames) w.write(ts += 1000, f);
  w.close();
  return path;
}

std::string hex_of(dissect::Bytes b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::uint8_t c : b) {
    s += digits[c >> 4];
    s += digits[c & 15];
  }
  return s;
}

std::string describe(const capture::FrameResult& r) {
  std::string s = std::to_string(r.number) + (r.ipsec ? " ipsec" : "") + (r.ike ? " ike" : "") + " layers " +
                  std::to_string(r.layer_count);
  for (std::size_t i = 0; i < r.layer_count; ++i) {
    const auto& l = r.layers[i];
    s += " [" + std::string(ipsec::verdict_name(l.verdict)) + " " + std::string(ipsec::reason_name(l.reason)) +
         " seq " + std::to_string(l.seq) + " sa " + std::to_string(l.sa) + " nh " + std::to_string(l.next_header) +
         " pad " + std::to_string(l.pad_len) + " icv " + std::to_string(l.icv.len) + " " +
         hex_of(dissect::Bytes(l.icv.expected.data(), l.icv.len)) + " " + std::string(l.inner.view()) +
         (l.detail ? l.detail : "") + "]";
  }
  s += " dec " + hex_of(r.decrypted);
  return s;
}

struct Outcome {
  std::vector<std::string> frames;
  std::vector<std::uint64_t> verdicts;
  std::vector<std::string> sas;
};

std::string sa_state(ipsec::SecurityAssociation& sa) {
  std::string s = sa.name() + " top " + std::to_string(sa.replay.top()) + " in window " +
                  std::to_string(sa.replay.received_in_window()) + " packets " +
                  std::to_string(sa.counters.received.packets) + " bytes " + std::to_string(sa.counters.received.bytes);
  for (auto v : sa.counters.verdicts) s += " " + std::to_string(v);
  return s;
}

Outcome verify(const std::filesystem::path& path, const std::vector<filters::SaConfig>& cfgs, unsigned threads,
               std::size_t chunk) {
  ipsec::Sad sad(clone(cfgs));
  capture::FileSource src(path);
  Outcome o;
  ipsec::GlobalCounters counters;
  capture::FrameCounters frames;
  if (threads == 0) {
    capture::Verifier v(sad, true);
    dissect::Frame f;
    capture::FrameResult r;
    while (src.next(f)) {
      v.process(f, r);
      o.frames.push_back(describe(r));
    }
    counters = v.engine().counters();
    frames = v.frames();
  } else {
    capture::ParallelVerifier pv(sad, true, threads);
    pv.set_chunk_frames(chunk);
    std::uint64_t last = 0;
    pv.run(src, [&](const dissect::Frame& f, const dissect::Packet&, capture::FrameResult& r) {
      EXPECT_EQ(f.number, last + 1);
      last = f.number;
      o.frames.push_back(describe(r));
    });
    counters = pv.counters();
    frames = pv.frames();
  }
  o.verdicts.assign(counters.verdicts.begin(), counters.verdicts.end());
  o.verdicts.push_back(counters.received.packets);
  o.verdicts.push_back(counters.received.bytes);
  o.verdicts.push_back(frames.frames);
  o.verdicts.push_back(frames.ipsec_layers);
  for (std::size_t i = 0; i < sad.size(); ++i) o.sas.push_back(sa_state(sad.at(i)));
  return o;
}

void expect_same(const Outcome& want, const Outcome& got, const std::string& what) {
  ASSERT_EQ(want.frames.size(), got.frames.size()) << what;
  for (std::size_t i = 0; i < want.frames.size(); ++i) {
    ASSERT_EQ(want.frames[i], got.frames[i]) << what << ": frame " << i + 1;
  }
  EXPECT_EQ(want.verdicts, got.verdicts) << what;
  EXPECT_EQ(want.sas, got.sas) << what;
}

TEST(ParallelVerifier, SameAsOneFrameAtATimeWithManySas) {
  const auto cfgs = configs();
  const auto path = make_capture(cfgs, 3000, false);
  const Outcome want = verify(path, cfgs, 0, 0);
  // The capture has what the pipeline must get right.
  std::size_t above = 0;
  std::size_t nested = 0;
  std::size_t replays = 0;
  std::size_t icv = 0;
  for (const auto& f : want.frames) {
    if (f.find("ok verified seq 42949") != std::string::npos) ++above;  // 2^32 = 4294967296
    if (f.find("layers 2") != std::string::npos) ++nested;
    if (f.find(" replay") != std::string::npos) ++replays;
    if (f.find("icv-fail") != std::string::npos) ++icv;
  }
  EXPECT_GT(above, 100u);
  EXPECT_GT(nested, 100u);
  EXPECT_GT(replays, 100u);
  EXPECT_GT(icv, 50u);
  for (unsigned threads : {1u, 2u, 3u, 4u}) {
    for (std::size_t chunk : {1u, 3u, 64u}) {
      expect_same(want, verify(path, cfgs, threads, chunk),
                  std::to_string(threads) + " threads, chunks of " + std::to_string(chunk));
    }
  }
  std::filesystem::remove(path);
}

TEST(ParallelVerifier, SameAsOneFrameAtATimeWithOneSa) {
  const auto cfgs = configs();
  const auto path = make_capture(cfgs, 2000, true);
  const Outcome want = verify(path, cfgs, 0, 0);
  for (unsigned threads : {2u, 4u}) {
    for (std::size_t chunk : {1u, 5u, 64u}) {
      expect_same(want, verify(path, cfgs, threads, chunk),
                  std::to_string(threads) + " threads, chunks of " + std::to_string(chunk));
    }
  }
  std::filesystem::remove(path);
}

TEST(ParallelVerifier, EmptyCaptureAndMoreThreadsThanChunks) {
  const auto cfgs = configs();
  auto path =
      std::filesystem::temp_directory_path() / ("ipsentry-test-parallel-empty-" + std::to_string(::getpid()) + ".pcap");
  {
    capture::PcapWriter w(path, 101);
    w.close();
  }
  EXPECT_TRUE(verify(path, cfgs, 4, 64).frames.empty());
  std::filesystem::remove(path);
}

TEST(Sync, WaitCounterWakesASleepingWaiter) {
  capture::WaitCounter c;
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the waiter is asleep by now
    c.publish(5);
  });
  EXPECT_EQ(c.wait([](std::uint64_t v) { return v >= 5; }), 5u);
  t.join();
  capture::Baton b;
  EXPECT_TRUE(b.try_take());
  EXPECT_FALSE(b.try_take());
  b.release();
  EXPECT_TRUE(b.try_take());
}

}  // namespace
}  // namespace ipsentry
