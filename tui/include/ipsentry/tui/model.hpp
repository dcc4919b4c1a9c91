// What the TUI shows, independent of the screen: a capture (a file, or a
// live interface) indexed on a background thread through the same Verifier
// and IKE analyzer as `ipsentry verify`, and the details of single frames
// built on demand.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/frame_text.hpp"
#include "ipsentry/capture/live_source.hpp"
#include "ipsentry/capture/trigger.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "ipsentry/tui/index.hpp"

namespace ipsentry::tui {

/// When a live session stops. Nothing is overwritten: what is listed can
/// always be opened, so the memory limit ends the capture, and trigger
/// levels (B, BP, PB) are fractions of it. A trigger or --stop-on event
/// marks its frame (row_flag::trigger).
struct LiveLimits {
  std::size_t memory_bytes = std::size_t{256} << 20;  // frame bytes and their index rows
  std::int64_t duration_ns = 0;                       // 0: until stopped
  std::uint64_t max_frames = 0;                       // 0: no limit
  capture::Trigger trigger;                           // none, B, P, BP, PB (not N: nothing is overwritten)
  std::uint32_t stop_on = 0;                          // capture::StopOn bits
  capture::AfterEvent after;                          // with stop_on
};

/// The policy audit's summary, in the words of `verify --policy`.
struct AuditSummary {
  std::string title;                  // "Policy audit (CONFIG as 192.0.2.1)"
  std::vector<std::uint64_t> counts;  // per capture::AuditVerdict
  std::string counts_text;            // "12 conforms, 1 cleartext-leak"
  std::vector<std::string> policies;  // the findings per policy, a table
  std::vector<std::string> timeline;  // the SAs of each policy in turn
};

/// Counters for the statistics screen, copied under the model's lock.
struct Statistics {
  ipsec::GlobalCounters totals;
  capture::FrameCounters frames;
  std::vector<capture::StatRow> monitor;
  std::vector<capture::StatRow> main_mode;
  std::optional<AuditSummary> audit;  // with --policy
};

class Model {
 public:
  /// Opens a capture file and starts indexing it. With `audit` (which must
  /// outlive the model) every frame is judged against its policies too.
  /// Throws capture::CaptureError.
  Model(const std::filesystem::path& capture, filters::Config config, capture::PolicyAudit* audit = nullptr,
        ipsec::CryptoChoice crypto = ipsec::CryptoChoice::auto_);
  /// Starts a live capture. Throws capture::PermissionError / CaptureError.
  Model(const capture::LiveOptions& live, const LiveLimits& limits, filters::Config config,
        capture::PolicyAudit* audit = nullptr, ipsec::CryptoChoice crypto = ipsec::CryptoChoice::auto_);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  [[nodiscard]] const ChunkedLog<Row>& rows() const noexcept { return rows_; }
  [[nodiscard]] const AddressTable& addresses() const noexcept { return addresses_; }
  [[nodiscard]] bool live() const noexcept { return live_ != nullptr; }
  /// Frames are judged by a policy audit (--policy).
  [[nodiscard]] bool audited() const noexcept { return audit_ != nullptr; }
  /// Indexing has finished (end of file, or the live capture stopped).
  [[nodiscard]] bool done() const noexcept { return done_.load(std::memory_order_acquire); }
  /// One line on what the model is doing: "indexing 45%", "capturing on
  /// eth0 …", "capture stopped: …"; and the read error, if any.
  [[nodiscard]] std::string status() const;
  [[nodiscard]] std::string name() const { return name_; }
  /// Stops a live capture (keeps what was captured).
  void stop();
  /// The frame a live capture's trigger or first --stop-on event fired on
  /// (0: none yet).
  [[nodiscard]] std::uint64_t trigger_frame() const noexcept { return trigger_frame_.load(std::memory_order_acquire); }
  /// What fired on trigger_frame().
  [[nodiscard]] std::string trigger_text() const {
    std::lock_guard<std::mutex> g(mutex_);
    return trigger_text_;
  }

  /// The model's lock guards the SAD, the analyzer and the counters while
  /// indexing runs.
  [[nodiscard]] std::unique_lock<std::mutex> lock() const { return std::unique_lock<std::mutex>(mutex_); }
  /// Call with lock() held.
  [[nodiscard]] const ipsec::Sad& sad() const noexcept { return sad_; }
  [[nodiscard]] const ike::Analyzer& analyzer() const noexcept { return analyzer_; }
  [[nodiscard]] Statistics statistics() const;

  // UI thread only.
  /// The frame of a row (1-based number).
  [[nodiscard]] dissect::Frame frame(std::uint64_t number) const;
  /// The info column of a frame: what the packet carries or why it failed.
  [[nodiscard]] const std::string& info(std::uint64_t number);
  /// The dissection tree with verdicts and decrypted layers.
  void tree(std::uint64_t number, dissect::Tree& out);
  /// The innermost decrypted IP packet of a frame (empty when none).
  [[nodiscard]] std::vector<std::uint8_t> decrypted(std::uint64_t number);

 private:
  void start();
  void index_file();
  void index_live();
  /// Verifies a frame and fills its row; the caller publishes it.
  Row& index_one(const dissect::Frame& frame, const ike::MessageRecord*& ike);
  /// After a live frame was indexed (its row not yet published): the
  /// trigger and --stop-on checks. Returns why the capture stops, or "".
  std::string check_triggers(const dissect::Frame& frame, Row& row, const ike::MessageRecord* ike);
  /// "frame 12: icv-fail on ESP SPI 0x… (--stop-on icv-fail), then 5 frames".
  [[nodiscard]] std::string event_stop_reason() const;
  void reopen(std::uint64_t number, capture::FrameResult& out);
  const std::uint8_t* store(dissect::Bytes data);
  /// Call with mutex_ held.
  [[nodiscard]] AuditSummary audit_summary() const;
  /// The "Policy audit" node of a frame judged by the audit: its verdict
  /// with the policy that decided and why.
  void add_audit_node(const Row& row, const capture::FrameResult& r, dissect::Tree& out) const;
  /// What a live session holds against -b with `frames` frames indexed:
  /// their bytes and their rows.
  [[nodiscard]] std::size_t kept_bytes(std::uint64_t frames) const noexcept { return stored_ + frames * sizeof(Row); }

  std::string name_;
  std::unique_ptr<capture::FileSource> file_;
  std::unique_ptr<capture::LiveSource> live_;
  LiveLimits limits_;

  mutable std::mutex mutex_;
  ipsec::Sad sad_;
  ike::Analyzer analyzer_;
  capture::Verifier verifier_;
  // Accounted in frame order on the indexing thread under mutex_; read by
  // statistics() under it.
  capture::PolicyAudit* audit_ = nullptr;
  std::size_t learned_ = 0;
  std::vector<filters::SaConfig> new_sas_;  // learned live, not yet in the detail SAD
  ChunkedLog<Row> rows_;
  AddressTable addresses_;

  // Live frame store: 4 MB chunks that never move.
  std::vector<std::unique_ptr<std::uint8_t[]>> chunks_;
  std::size_t chunk_used_ = 0;
  std::size_t chunk_size_ = 0;
  std::size_t stored_ = 0;

  capture::FrameResult result_;  // the indexing thread's

  // Live triggers (indexing thread).
  capture::TriggerWatch watch_{capture::Trigger{}};
  std::uint64_t event_frame_ = 0;
  std::int64_t event_ts_ = 0;
  std::atomic<std::uint64_t> trigger_frame_{0};
  std::string trigger_text_;  // under mutex_: what fired first, for the tree
  std::string trigger_stop_;  // indexing thread: what the trigger (-t) said
  std::string event_text_;    // indexing thread: the first --stop-on event

  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> offset_{0};
  capture::LiveStats live_stats_;  // under mutex_
  std::string stop_reason_;        // under mutex_
  std::string error_;              // under mutex_
  double index_seconds_ = 0;       // under mutex_: how long a file took to index
  std::uint64_t size_ = 0;
  std::thread thread_;

  // On-demand detail (UI thread): a second SAD without replay state, so a
  // frame can be opened again in any order.
  ipsec::Sad detail_sad_;
  std::unique_ptr<capture::Verifier> detail_;
  std::unordered_map<std::uint64_t, std::string> info_cache_;
};

}  // namespace ipsentry::tui
