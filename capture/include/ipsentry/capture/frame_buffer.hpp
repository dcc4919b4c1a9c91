// The capture buffer: Netcap's bounded memory buffer, as a ring of
// variable-size frame records.
//
// One thread (the capture loop) appends; a second (the live verifier) reads
// records behind it and annotates them with their verdicts; when the capture
// is over, the remaining records are written to the file. In circular mode
// the oldest records are overwritten; a record the verifier is reading is
// never overwritten under it, and records from a trigger on are protected.
//
// Accounting: each frame costs its captured bytes plus kRecordOverhead bytes
// of bookkeeping, rounded up to 8; the fill level is the sum of the records
// held over the capacity.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>

#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::capture {

/// What the verifier learned about a frame, for its pcapng comment.
struct Annotation {
  static constexpr std::size_t kLayers = 2;
  std::uint8_t layers = 0;       // IPsec layers recorded (at most kLayers)
  std::uint8_t more_layers = 0;  // layers beyond kLayers, not recorded
  std::uint8_t ike = 0;          // 1: an IKE message (comment from the analyzer)
  std::uint8_t event = 0;        // 1: this frame fired --stop-on
  std::uint8_t verdict[kLayers] = {};
  std::uint8_t reason[kLayers] = {};
  std::uint8_t protocol[kLayers] = {};
  std::uint8_t verified = 0;  // the verifier processed the frame
  std::uint8_t audit = 0;     // AuditVerdict (none without a policy audit)
  std::uint32_t spi[kLayers] = {};
  std::uint32_t seq[kLayers] = {};      // low 32 bits
  std::int16_t sa[kLayers] = {-1, -1};  // SAD index, -1: none (or beyond 32767)
};

struct RecordHeader {
  static constexpr std::uint8_t kTriggered = 1;  // a capture trigger fired on this frame
  std::uint64_t seq = 0;                         // 1-based number of the frame in the capture
  std::int64_t ts_ns = 0;
  std::uint32_t caplen = 0;
  std::uint32_t orig_len = 0;
  std::uint32_t size = 0;  // bytes of the whole record; 0 marks "continue at the start"
  std::uint8_t flags = 0;
  std::uint8_t reserved[3] = {};
  Annotation note;
  [[nodiscard]] dissect::Bytes data() const noexcept {
    return {reinterpret_cast<const std::uint8_t*>(this + 1), caplen};
  }
};

inline constexpr std::size_t kRecordOverhead = sizeof(RecordHeader);
static_assert(kRecordOverhead == 64, "documented per-frame overhead");

[[nodiscard]] constexpr std::size_t record_size(std::size_t caplen) noexcept {
  return (kRecordOverhead + caplen + 7) & ~std::size_t{7};
}

class FrameBuffer {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{1} << 20;
  static constexpr std::size_t kMaxBytes = std::size_t{1000} << 20;
  static constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();

  /// `bytes` between kMinBytes and kMaxBytes. With a spill directory the
  /// buffer is a file there (unlinked at once, so nothing is left behind),
  /// which the kernel may write out under memory pressure; otherwise it is
  /// anonymous memory. Throws CaptureError.
  explicit FrameBuffer(std::size_t bytes, const std::filesystem::path& spill_dir = {});
  ~FrameBuffer();
  FrameBuffer(const FrameBuffer&) = delete;
  FrameBuffer& operator=(const FrameBuffer&) = delete;

  // --- capture thread ---------------------------------------------------
  /// Stores a frame. Returns its header, or nullptr when there is no room:
  /// in linear mode once the buffer is full, in circular mode when the
  /// frames that would have to go are protected (see protect_from). Frames
  /// larger than the whole buffer are refused too (see too_large()).
  RecordHeader* append(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len, bool circular) noexcept;
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  [[nodiscard]] std::size_t used() const noexcept { return used_; }
  [[nodiscard]] double fill() const noexcept { return static_cast<double>(used_) / static_cast<double>(cap_); }
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t evicted() const noexcept { return evicted_; }
  [[nodiscard]] std::uint64_t too_large() const noexcept { return too_large_; }
  /// Sequence number the next frame gets.
  [[nodiscard]] std::uint64_t next_seq() const noexcept { return head_seq_.load(std::memory_order_relaxed); }

  // --- any thread -------------------------------------------------------
  /// Records from `seq` on are never overwritten (a trigger fired there).
  void protect_from(std::uint64_t seq) noexcept;

  // --- the reader (verifier) thread --------------------------------------
  struct Cursor {
    std::uint64_t seq = 1;
    std::uint64_t off = 0;
  };
  /// The record at the cursor, claimed so that it is not overwritten until
  /// release(); nullptr when the reader has caught up. When the record was
  /// overwritten before the reader got to it, the cursor jumps to the
  /// oldest record and `skipped` counts the ones missed.
  RecordHeader* claim(Cursor& c, std::uint64_t& skipped) noexcept;
  /// Ends the claim and moves the cursor to the next record.
  void release(Cursor& c, const RecordHeader& r) noexcept;

  // --- after both threads are done ---------------------------------------
  /// Calls fn(const RecordHeader&) for each record held, oldest first.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    std::uint64_t off = tail_off_;
    for (std::uint64_t i = 0; i < count_; ++i) {
      const RecordHeader* r = at(off);
      off = (reinterpret_cast<const std::uint8_t*>(r) - base_) + r->size;
      fn(*r);
    }
  }

 private:
  [[nodiscard]] const RecordHeader* at(std::uint64_t off) const noexcept;
  bool evict_oldest() noexcept;
  void lock() const noexcept;
  void unlock() const noexcept { lock_.store(false, std::memory_order_release); }

  std::uint8_t* base_ = nullptr;
  std::size_t cap_ = 0;
  int spill_fd_ = -1;
  // Capture thread only.
  std::uint64_t head_off_ = 0;
  std::size_t used_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t too_large_ = 0;
  // Shared.
  alignas(64) std::atomic<std::uint64_t> head_seq_{1};
  alignas(64) mutable std::atomic<bool> lock_{false};
  // Guarded by lock_.
  std::uint64_t tail_seq_ = 1;
  std::uint64_t tail_off_ = 0;
  std::uint64_t in_use_ = kNone;
  std::atomic<std::uint64_t> protect_from_{kNone};
};

}  // namespace ipsentry::capture
