// A live capture session: the capture loop fills the FrameBuffer and fires
// the Netcap triggers; a verifier thread follows it through the same
// Verifier and IKE analyzer as `ipsentry verify`, annotates each frame with
// its verdict and fires the IPsec triggers (--stop-on).
//
// The capture thread does only the copy and the trigger checks (well under
// a microsecond per frame); decryption happens on the verifier thread. If
// the verifier falls a whole circular buffer behind, the frames it did not
// reach are written without a verdict and counted.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ipsentry/capture/frame_buffer.hpp"
#include "ipsentry/capture/live_source.hpp"
#include "ipsentry/capture/trigger.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/counters.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::capture {

/// What a verified frame means for --stop-on: the StopOn bits it raises
/// (its IPsec layers' verdicts; else a malformed frame; else an IKE message
/// that is malformed or does not decrypt, or a failed negotiation; else the
/// policy audit's finding) and a description of the first.
struct FrameEvent {
  std::uint32_t bits = 0;
  std::string detail;
};
[[nodiscard]] FrameEvent stop_event(const FrameResult& res, const ike::MessageRecord* m, const ike::Analyzer& analyzer,
                                    std::uint32_t stop_on);

struct SessionOptions {
  std::size_t buffer_bytes = std::size_t{1} << 20;
  std::filesystem::path spill_dir;
  Trigger trigger;
  std::uint32_t stop_on = 0;     // StopOn bits
  AfterEvent after;              // what is kept after a --stop-on event
  std::int64_t duration_ns = 0;  // -L; 0: none
  std::uint64_t max_frames = 0;  // 0: none
  bool verify = false;
  /// --policy: every frame is judged and accounted on the verifier thread
  /// (the audit belongs to the caller; read it after run()).
  PolicyAudit* audit = nullptr;
};

enum class StopReason : std::uint8_t {
  running,
  buffer_full,
  buffer_full_after_trigger,
  trigger,
  ipsec_event,
  duration,
  frame_limit,
  interrupted,
};
[[nodiscard]] const char* describe(StopReason r) noexcept;

struct SessionStatus {
  std::uint64_t frames = 0;  // captured (stored in the buffer at some point)
  std::uint64_t bytes = 0;   // their length on the wire
  std::size_t used = 0;
  std::size_t capacity = 0;
  std::uint64_t evicted = 0;
  std::uint64_t verified = 0;  // frames the verifier has processed
  std::uint64_t ike_messages = 0;
  std::array<std::uint64_t, ipsec::kVerdictCount> verdicts{};
  LiveStats kernel;
  double seconds = 0;
};

class Session {
 public:
  using FrameCallback = std::function<void(const FrameResult&, const ike::MessageRecord*)>;

  /// `sad` and `analyzer` are used by the verifier thread only while run()
  /// is running, and belong to the caller. Throws CaptureError (buffer).
  Session(LiveSource& source, SessionOptions options, ipsec::Sad& sad, ike::Analyzer& analyzer);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Called on the verifier thread for each verified frame, in order.
  void on_frame(FrameCallback cb) { callback_ = std::move(cb); }

  /// Captures until a stop condition or until `interrupt` is set; `tick`
  /// runs on the calling thread about four times a second. When it returns
  /// the verifier has finished every frame that will be written.
  void run(const std::atomic<bool>& interrupt, const std::function<void(const SessionStatus&)>& tick);

  [[nodiscard]] SessionStatus status() const;
  [[nodiscard]] StopReason stop_reason() const noexcept { return stop_; }
  /// The frame a capture trigger fired on (0: none), the frame of the first
  /// --stop-on event (0: none).
  [[nodiscard]] std::uint64_t trigger_seq() const noexcept { return trigger_seq_; }
  [[nodiscard]] const SessionOptions& options() const noexcept { return opt_; }
  [[nodiscard]] std::uint64_t event_seq() const noexcept { return event_seq_.load(); }
  [[nodiscard]] const std::string& event_detail() const noexcept { return event_detail_; }
  /// Whether a stored frame is past the end of what --after asked to keep.
  [[nodiscard]] bool beyond_cut(std::uint64_t seq, std::int64_t ts_ns) const noexcept;
  /// Calls fn(const RecordHeader&) for each frame to write: those held in
  /// the buffer up to the end of the --after window, oldest first.
  template <typename Fn>
  void for_each_kept(Fn&& fn) const {
    buffer_.for_each([&](const RecordHeader& r) {
      if (!beyond_cut(r.seq, r.ts_ns)) fn(r);
    });
  }
  [[nodiscard]] const FrameBuffer& buffer() const noexcept { return buffer_; }
  [[nodiscard]] std::uint64_t unverified() const noexcept { return skipped_; }
  [[nodiscard]] std::size_t learned_sas() const noexcept { return learned_added_; }
  [[nodiscard]] std::int64_t start_ns() const noexcept { return start_ns_; }
  [[nodiscard]] std::int64_t end_ns() const noexcept { return end_ns_; }
  /// Counters of the verifier (after run()).
  [[nodiscard]] ipsec::GlobalCounters totals() const;
  [[nodiscard]] FrameCounters frame_counters() const;

 private:
  bool captured(const dissect::Frame& f);
  /// Whether the frame `seq` (at `ts_ns`) completes the --after window.
  [[nodiscard]] bool window_complete(std::uint64_t seq, std::int64_t ts_ns) const noexcept;
  void stop(StopReason r) noexcept;
  void fire(RecordHeader& r) noexcept;
  void verify_loop();
  void verify_one(RecordHeader& r, FrameResult& res);
  void learn_sas();

  LiveSource& source_;
  SessionOptions opt_;
  ipsec::Sad& sad_;
  ike::Analyzer& analyzer_;
  FrameBuffer buffer_;
  std::unique_ptr<Verifier> verifier_;
  FrameCallback callback_;

  // Capture thread.
  StopReason stop_ = StopReason::running;
  std::uint64_t frames_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t trigger_seq_ = 0;
  TriggerWatch watch_;
  RecordHeader* last_ = nullptr;
  std::int64_t start_ns_ = 0;
  std::int64_t end_ns_ = 0;

  // Shared with the verifier thread.
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> event_seq_{0};
  std::atomic<std::int64_t> event_ts_{0};
  std::atomic<std::uint64_t> verified_{0};
  std::atomic<std::uint64_t> ike_messages_{0};
  std::array<std::atomic<std::uint64_t>, ipsec::kVerdictCount> verdicts_{};
  std::string event_detail_;  // written by the verifier before event_seq_
  std::uint64_t skipped_ = 0;
  std::size_t learned_added_ = 0;
  std::thread thread_;
};

/// The pcapng comments of a captured frame: its verdicts ("ipsentry: ESP
/// SPI 0x... seq 7: icv-fail (ICV mismatch), SA a-to-b"), its IKE message,
/// and whether a trigger or --stop-on fired on it. Empty when there is
/// nothing to say.
[[nodiscard]] std::vector<std::string> frame_comments(const RecordHeader& r, const Session& session,
                                                      const ipsec::Sad& sad, const ike::Analyzer& analyzer);

}  // namespace ipsentry::capture
