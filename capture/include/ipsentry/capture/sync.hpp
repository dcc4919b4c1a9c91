// The few concurrency primitives of ipsentry's parallel pipelines, kept in
// one place so that they stay portable: C++20 atomic wait/notify for
// sleeping, and a pause hint that exists on x86 and ARM and is a no-op
// elsewhere. Waiters spin only briefly before they sleep: on a machine with
// as many busy threads as cores, a spinning waiter takes the core from the
// thread it waits for.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#define IPSENTRY_CPU_RELAX_X86 1
#endif

namespace ipsentry::capture {

/// Tells the CPU that this thread spins on a shared word, so that a sibling
/// hyperthread gets the core's resources and the loop's exit is not
/// mispredicted.
inline void cpu_relax() noexcept {
#if defined(IPSENTRY_CPU_RELAX_X86)
  _mm_pause();
#elif defined(__aarch64__) || (defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7)
  asm volatile("yield" ::: "memory");
#endif
}

/// Keeps words written by different threads on different cache lines.
inline constexpr std::size_t kCacheLine = 64;

/// A 64-bit counter that threads wait on. publish() makes the futex call
/// only when a waiter really sleeps: a wake-up per update would cost more
/// than the work between updates.
class WaitCounter {
 public:
  [[nodiscard]] std::uint64_t load() const noexcept { return value_.load(std::memory_order_acquire); }

  /// Sets the value (release) and wakes the waiters.
  void publish(std::uint64_t v) noexcept {
    value_.store(v, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) value_.notify_all();
  }
  void add(std::uint64_t n) noexcept {
    value_.fetch_add(n, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) value_.notify_all();
  }

  /// Returns the value once `done(value)` holds (acquire).
  template <typename Done>
  std::uint64_t wait(Done&& done) noexcept {
    for (int spin = 0; spin < kSpins; ++spin) {
      const std::uint64_t v = value_.load(std::memory_order_acquire);
      if (done(v)) return v;
      cpu_relax();
    }
    // Announce the sleep before the last look: a publisher that changed the
    // value after that look sees the announcement (both are seq_cst).
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t v = value_.load(std::memory_order_seq_cst);
    while (!done(v)) {
      value_.wait(v, std::memory_order_seq_cst);
      v = value_.load(std::memory_order_seq_cst);
    }
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return v;
  }

 private:
  // About a microsecond: long enough for a short hand-over, short enough
  // not to matter when the other side is descheduled.
  static constexpr int kSpins = 128;
  alignas(kCacheLine) std::atomic<std::uint64_t> value_{0};
  std::atomic<std::uint32_t> sleepers_{0};
};

/// The right to run a serial stage, taken without waiting: a thread that
/// finds it held leaves its work to the holder, which must look for more
/// work after it lets go (see ParallelVerifier).
class Baton {
 public:
  [[nodiscard]] bool try_take() noexcept {
    // seq_cst: ordered with the publication of work (see the caller), and
    // an acquire of everything the previous holder wrote.
    return !held_.exchange(true, std::memory_order_seq_cst);
  }
  void release() noexcept { held_.store(false, std::memory_order_seq_cst); }

 private:
  alignas(kCacheLine) std::atomic<bool> held_{false};
};

}  // namespace ipsentry::capture
