// Anti-replay window (RFC 4303 section 3.4.3, RFC 6479) and ESN inference
// (RFC 4303 Appendix A).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "ipsentry/ipsec/replay.hpp"

namespace ipsentry::ipsec {
namespace {

using C = ReplayWindow::Check;

TEST(ReplayWindow, AcceptsNewRejectsDuplicateAndOld) {
  ReplayWindow w(64, false);
  for (std::uint64_t s = 1; s <= 100; ++s) {
    ASSERT_EQ(w.check(s), C::ok) << s;
    w.commit(s);
  }
  EXPECT_EQ(w.check(100), C::duplicate);
  EXPECT_EQ(w.check(37), C::duplicate);   // 100 - 37 = 63 < 64: inside, already seen
  EXPECT_EQ(w.check(36), C::too_old);     // 100 - 36 = 64: left of the window
  EXPECT_EQ(w.check(101), C::ok);
  EXPECT_EQ(w.top(), 100u);
}

TEST(ReplayWindow, OutOfOrderInsideWindowIsAccepted) {
  ReplayWindow w(64, false);
  w.commit(10);
  EXPECT_EQ(w.check(5), C::ok);
  w.commit(5);
  EXPECT_EQ(w.check(5), C::duplicate);
  EXPECT_EQ(w.check(6), C::ok);
}

TEST(ReplayWindow, SequenceZeroIsNeverValid) {
  ReplayWindow w(64, false);
  EXPECT_EQ(w.check(0), C::zero);
  ReplayWindow esn(64, true);
  EXPECT_EQ(esn.check(0), C::zero);
  // With ESN a low half of zero is legal once the counter passed 2^32.
  EXPECT_EQ(esn.check(1ull << 32), C::ok);
}

TEST(ReplayWindow, LargeJumpClearsTheBitmap) {
  ReplayWindow w(64, false);
  for (std::uint64_t s = 1; s <= 64; ++s) w.commit(s);
  w.commit(1000);
  EXPECT_EQ(w.check(990), C::ok);  // bits of the old window must not linger
  EXPECT_EQ(w.check(1000), C::duplicate);
  EXPECT_EQ(w.check(900), C::too_old);
}

TEST(ReplayWindow, DisabledWindowOnlyTracksTheTop) {
  ReplayWindow w(0, false);
  w.commit(5);
  EXPECT_EQ(w.check(5), C::ok);
  EXPECT_EQ(w.check(1), C::ok);
  EXPECT_EQ(w.top(), 5u);
}

// Compare a large window against a straightforward set-based model on a
// shuffled, duplicated stream.
TEST(ReplayWindow, MatchesReferenceModelForWindow4096) {
  const std::uint32_t W = 4096;
  ReplayWindow w(W, false);
  std::set<std::uint64_t> seen;
  std::uint64_t top = 0;
  std::mt19937_64 rng(12345);
  std::uint64_t next = 1;
  for (int i = 0; i < 200000; ++i) {
    std::uint64_t s;
    switch (rng() % 4) {
      case 0: s = next++; break;                                          // new
      case 1: s = top > 10 ? top - rng() % std::min<std::uint64_t>(top - 1, 6000) : next++; break;  // old or dup
      case 2: s = next + rng() % 3000; next = std::max(next, s + 1); break;  // jump ahead
      default: s = top > 1 ? top - rng() % std::min<std::uint64_t>(top - 1, W) : next++; break;
    }
    if (s == 0) continue;
    C expect;
    if (seen.empty() || s > top) {
      expect = C::ok;
    } else if (top - s >= W) {
      expect = C::too_old;
    } else {
      expect = seen.count(s) ? C::duplicate : C::ok;
    }
    ASSERT_EQ(w.check(s), expect) << "seq " << s << " top " << top << " step " << i;
    if (expect == C::ok) {
      w.commit(s);
      seen.insert(s);
      top = std::max(top, s);
    }
  }
}

TEST(EsnInference, CaseAWindowInsideOneSubspace) {
  ReplayWindow w(64, true);
  w.commit(0x00000005'00001000ull);
  EXPECT_EQ(w.infer(0x00001001), 0x00000005'00001001ull);  // ahead, same subspace
  EXPECT_EQ(w.infer(0x00000fd0), 0x00000005'00000fd0ull);  // inside the window
  EXPECT_EQ(w.infer(0x00000010), 0x00000006'00000010ull);  // below the window: next subspace
}

TEST(EsnInference, CaseBWindowSpansTwoSubspaces) {
  ReplayWindow w(64, true);
  w.commit(0x00000001'00000010ull);
  EXPECT_EQ(w.infer(0x00000020), 0x00000001'00000020ull);
  EXPECT_EQ(w.infer(0xfffffff0), 0x00000000'fffffff0ull);  // the end of the previous subspace
  EXPECT_EQ(w.infer(0x80000000), 0x00000001'80000000ull);
}

TEST(EsnInference, WrapsAcrossTwoToTheThirtyTwo) {
  ReplayWindow w(128, true);
  std::uint64_t s = 0xfffffff0ull;
  w.commit(s);
  for (int i = 0; i < 64; ++i) {
    ++s;
    std::uint64_t inferred = w.infer(static_cast<std::uint32_t>(s));
    ASSERT_EQ(inferred, s);
    ASSERT_EQ(w.check(inferred), C::ok);
    w.commit(inferred);
  }
  EXPECT_GT(w.top(), 0xffffffffull);
  // A replay of a packet sent before the wrap is still recognised.
  EXPECT_EQ(w.check(w.infer(0xfffffff5u)), C::duplicate);
}

TEST(EsnInference, FirstSubspaceHasNothingBelowIt) {
  ReplayWindow w(64, true);
  w.commit(5);
  EXPECT_EQ(w.infer(0xfffffff0u), 0xfffffff0ull);
}

TEST(EsnInference, WithoutEsnTheValueIsUnchanged) {
  ReplayWindow w(64, false);
  w.commit(0xfffffff0ull);
  EXPECT_EQ(w.infer(3), 3u);
}

}  // namespace
}  // namespace ipsentry::ipsec
