#include "verify.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::cli {

namespace {

using Clock = std::chrono::steady_clock;

/// A progress line on stderr, shown once the run has taken a second.
class Progress {
 public:
  Progress(bool enabled, std::uint64_t size) : enabled_(enabled && ::isatty(STDERR_FILENO) == 1), size_(size) {}
  void update(std::uint64_t offset, std::uint64_t frames) {
    if (!enabled_ || (frames & 1023) != 0) return;
    auto now = Clock::now();
    if (now - start_ < std::chrono::seconds(1) || now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    fmt::print(stderr, "\rverifying: {:3.0f}%  {} frames  {:.0f} frames/s ", size_ ? 100.0 * offset / size_ : 0.0,
               frames, frames / secs);
    shown_ = true;
  }
  void clear() {
    if (shown_) fmt::print(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  bool enabled_;
  std::uint64_t size_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_;
  bool shown_ = false;
};

/// Single-producer single-consumer ring of frames for one worker.
// Single-producer single-consumer ring of frames for one worker. A waker
// only makes the futex system call when the other side really sleeps: one
// call per packet cost more than the decryption.
class Waiter {
 public:
  template <typename Ready>
  void wait_until(const std::atomic<std::uint64_t>& word, Ready ready) {
    for (int spin = 0; spin < 4096; ++spin) {
      if (ready()) return;
      __builtin_ia32_pause();
    }
    // Announce the sleep before the last look, so that a waker that
    // changed the word after it either is seen here or sees the flag.
    for (;;) {
      const std::uint64_t seen = word.load(std::memory_order_seq_cst);
      sleeping_.store(true, std::memory_order_seq_cst);
      if (ready()) break;
      word.wait(seen, std::memory_order_seq_cst);
    }
    sleeping_.store(false, std::memory_order_relaxed);
  }
  void wake(std::atomic<std::uint64_t>& word) {
    if (sleeping_.load(std::memory_order_seq_cst)) word.notify_all();
  }

 private:
  std::atomic<bool> sleeping_{false};
};

class FrameRing {
 public:
  explicit FrameRing(std::size_t capacity) : slots_(capacity) {}
  bool try_push(const dissect::Frame& f, std::uint64_t seq) {
    std::uint64_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) == slots_.size()) return false;
    slots_[h % slots_.size()] = Job{f, seq, false};
    head_.store(h + 1, std::memory_order_seq_cst);
    consumer_.wake(head_);
    return true;
  }
  void push_stop() {
    std::uint64_t h = head_.load(std::memory_order_relaxed);
    while (h - tail_.load(std::memory_order_acquire) == slots_.size()) std::this_thread::yield();
    slots_[h % slots_.size()] = Job{{}, 0, true};
    head_.store(h + 1, std::memory_order_seq_cst);
    consumer_.wake(head_);
  }
  struct Job {
    dissect::Frame frame;
    std::uint64_t seq = 0;
    bool stop = false;
  };
  Job pop() {
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    consumer_.wait_until(head_, [&] { return head_.load(std::memory_order_acquire) != t; });
    Job j = slots_[t % slots_.size()];
    tail_.store(t + 1, std::memory_order_release);
    return j;
  }

 private:
  std::vector<Job> slots_;
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  alignas(64) Waiter consumer_;
};

struct ResultSlot {
  std::atomic<std::uint64_t> ready{0};  // sequence number + 1 once written
  capture::FrameResult result;
  std::uint64_t file_offset = 0;
  std::uint32_t orig_len = 0;
  std::vector<std::uint8_t> decrypted;  // copied: the worker's buffers move on
};

}  // namespace

int run_verify(const VerifyOptions& opt) {
  const auto started = Clock::now();
  if (!opt.write_decrypted.empty()) {
    if (auto e = output_is_input("-w", opt.write_decrypted, opt.capture, opt.keys); !e.empty()) {
      fmt::print(stderr, "ipsentry: error: {}\n", e);
      return kExitUsage;
    }
  }
  RunInfo info;
  info.capture = opt.capture;
  filters::Config cfg;
  try {
    cfg = load_keys_for(opt.keys, opt.capture, info.config_sources);
  } catch (const filters::ConfigError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  if (!opt.audit.vantage.empty() && !opt.audit.given()) {
    fmt::print(stderr, "ipsentry: error: --as names the vantage point of the policy audit: give --policy CONFIG too\n");
    return kExitUsage;
  }
  std::unique_ptr<PolicyAuditSetup> audit;
  if (opt.audit.given()) {
    try {
      audit = load_policy_audit(opt.audit, cfg, info.config_sources);
    } catch (const filters::ConfigError& e) {
      fmt::print(stderr, "ipsentry: error: {}\n", e.what());
      return kExitUsage;
    }
  }
  capture::PolicyAudit* auditor = audit ? audit->audit.get() : nullptr;
  std::size_t learned = 0;
  try {
    learned = learn_ike_sas(opt.capture, cfg);
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  if (learned != 0) info.config_sources.push_back(fmt::format("{} ESP/AH SAs derived from the IKE keys", learned));
  if (cfg.sas.empty() && cfg.ike_sas.empty()) {
    cfg.warnings.emplace_back(
        "no SAs given (-c CONFIG, --keys-from FORMAT FILE, or embedded in the pcapng file): every ESP and AH packet "
        "is reported as unknown-spi");
  }
  info.warnings = cfg.warnings;
  for (const auto& w : cfg.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);

  std::optional<capture::FileSource> src;
  try {
    src.emplace(opt.capture);
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  info.format = src->format() == dissect::CaptureFileParser::Format::pcapng ? "pcapng" : "pcap";
  info.compressed = src->compressed();

  ike::Analyzer analyzer(std::move(cfg.ike_sas));
  ipsec::Sad sad(std::move(cfg.sas), opt.keys.crypto);
  for (std::size_t i = 0; i < sad.size(); ++i) {
    if (sad.at(i).unsupported()) {
      fmt::print(stderr, "ipsentry: warning: SA {}: {}\n", sad.at(i).name(), sad.at(i).unsupported_detail());
    }
  }

  std::unique_ptr<capture::PcapWriter> writer;
  if (!opt.write_decrypted.empty()) {
    try {
      writer = std::make_unique<capture::PcapWriter>(opt.write_decrypted,
                                                     static_cast<std::uint32_t>(dissect::LinkType::raw));
    } catch (const capture::CaptureError& e) {
      fmt::print(stderr, "ipsentry: error: {}\n", e.what());
      return kExitUsage;
    }
  }

  static char outbuf[1 << 20];
  std::setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
  auto report = opt.json ? make_json_report(stdout, sad, opt.quiet) : make_text_report(stdout, opt.time, opt.quiet);
  report->set_audit(auditor);
  report->begin(info);
  Progress progress(opt.progress, src->size());

  ipsec::GlobalCounters totals;
  capture::FrameCounters frame_totals;
  int write_error = 0;
  auto emit_decrypted = [&](std::int64_t ts, dissect::Bytes data) {
    if (!writer || data.empty() || write_error) return;
    try {
      writer->write(ts, data);
    } catch (const capture::CaptureError& e) {
      fmt::print(stderr, "ipsentry: error: {}\n", e.what());
      write_error = 1;
    }
  };

  const unsigned threads = opt.threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : opt.threads;
  if (threads <= 1) {
    capture::Verifier verifier(sad, writer != nullptr);
    verifier.set_summaries(!opt.quiet);
    verifier.set_audit(auditor);
    dissect::Frame frame;
    capture::FrameResult result;
    while (src->next(frame)) {
      verifier.process(frame, result);
      if (auditor != nullptr) auditor->account(result, sad);
      if (result.ike || analyzer.watching_clear()) {
        if (const ike::MessageRecord* m = analyzer.observe(frame, verifier.outer())) report->ike(result, *m);
      }
      report->frame(result);
      emit_decrypted(frame.ts_ns, result.decrypted);
      src->release_before(frame.file_offset);
      progress.update(src->offset(), frame.number);
    }
    totals += verifier.engine().counters();
    frame_totals += verifier.frames();
  } else {
    // Frames of one SA always go to the same worker, so each SA's replay
    // window sees its packets in capture order; results are put back in
    // frame order before they are printed.
    constexpr std::size_t kSlots = 4096;
    std::vector<std::unique_ptr<FrameRing>> rings;
    std::vector<std::unique_ptr<capture::Verifier>> verifiers;
    auto slots = std::make_unique<ResultSlot[]>(kSlots);
    for (unsigned i = 0; i < threads; ++i) {
      rings.push_back(std::make_unique<FrameRing>(1024));
      verifiers.push_back(std::make_unique<capture::Verifier>(sad, writer != nullptr, true));
      verifiers.back()->set_summaries(!opt.quiet);
      verifiers.back()->set_audit(auditor);
    }
    Waiter emitter;  // the main thread, when it waits for a result
    std::vector<std::thread> workers;
    for (unsigned i = 0; i < threads; ++i) {
      workers.emplace_back([&, i] {
        FrameRing& ring = *rings[i];
        capture::Verifier& v = *verifiers[i];
        for (;;) {
          FrameRing::Job job = ring.pop();
          if (job.stop) return;
          ResultSlot& slot = slots[job.seq % kSlots];
          v.process(job.frame, slot.result);
          slot.file_offset = job.frame.file_offset;
          if (writer) slot.decrypted.assign(slot.result.decrypted.begin(), slot.result.decrypted.end());
          slot.ready.store(job.seq + 1, std::memory_order_seq_cst);
          emitter.wake(slot.ready);
        }
      });
    }
    std::uint64_t dispatched = 0;
    std::uint64_t emitted = 0;
    auto emit_one = [&](bool block) {
      ResultSlot& slot = slots[emitted % kSlots];
      std::uint64_t want = emitted + 1;
      std::uint64_t have = slot.ready.load(std::memory_order_acquire);
      if (have != want) {
        if (!block) return false;
        emitter.wait_until(slot.ready, [&] { return slot.ready.load(std::memory_order_acquire) == want; });
      }
      if (slot.result.ike) {
        if (const ike::MessageRecord* m = analyzer.record(slot.result.number)) report->ike(slot.result, *m);
      }
      if (auditor != nullptr) auditor->account(slot.result, sad);
      report->frame(slot.result);
      emit_decrypted(slot.result.ts_ns, slot.decrypted);
      src->release_before(slot.file_offset);
      ++emitted;
      return true;
    };
    dissect::Frame frame;
    dissect::Packet outer;
    std::uint64_t round_robin = 0;
    while (src->next(frame)) {
      while (dispatched - emitted >= kSlots) emit_one(true);
      unsigned w;
      dissect::dissect_frame(frame, outer);
      if (outer.is_ike() || analyzer.watching_clear()) analyzer.observe(frame, outer);
      ipsec::SecurityAssociation* sa = nullptr;
      if (ipsec::is_ipsec_candidate(outer) && outer.ipsec.has_spi) {
        auto proto =
            outer.ipsec.kind == dissect::IpsecKind::ah ? filters::IpsecProtocol::ah : filters::IpsecProtocol::esp;
        sa = sad.lookup(outer.ipsec.spi, proto, outer.ip.final_dst, outer.ip.src);
      }
      w = sa != nullptr ? sa->index() % threads : static_cast<unsigned>(round_robin++ % threads);
      while (!rings[w]->try_push(frame, dispatched)) {
        if (dispatched > emitted) emit_one(true);
      }
      ++dispatched;
      while (emitted < dispatched && emit_one(false)) {
      }
      progress.update(src->offset(), frame.number);
    }
    for (auto& r : rings) r->push_stop();
    while (emitted < dispatched) emit_one(true);
    for (auto& t : workers) t.join();
    for (auto& v : verifiers) {
      totals += v->engine().counters();
      frame_totals += v->frames();
    }
  }
  progress.clear();
  info.read_error = src->error();
  info.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  analyzer.finish();
  if (auditor != nullptr) {
    auditor->finish();
    if (std::string w = audit_vantage_warning(*auditor, frame_totals.frames); !w.empty()) {
      fmt::print(stderr, "ipsentry: warning: {}\n", w);
      info.warnings.push_back(std::move(w));
    }
  }
  report->end(info, totals, frame_totals, sad, analyzer);
  if (writer && !write_error) {
    try {
      writer->close();
    } catch (const capture::CaptureError& e) {
      fmt::print(stderr, "ipsentry: error: {}\n", e.what());
      write_error = 1;
    }
  }
  bool unread = false;
  if (!info.read_error.empty()) {
    fmt::print(stderr, "ipsentry: error: capture '{}' is damaged: {}\n", opt.capture, info.read_error);
    unread = true;
  }
  // Frames verify could not look into leave the capture unverified.
  if (const std::string e = src->unsupported_link(); !e.empty()) {
    fmt::print(stderr, "ipsentry: error: capture '{}': {}\n", opt.capture, e);
    unread = true;
  }
  if (unread) return kExitUsage;
  if (write_error) return kExitUsage;
  if (auditor != nullptr && !audit_clean(*auditor)) return kExitNotVerified;
  return all_verified(totals, analyzer) ? kExitOk : kExitNotVerified;
}

}  // namespace ipsentry::cli
