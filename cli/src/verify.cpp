#include "verify.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/parallel_verifier.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
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
  capture::ParallelVerifier verifier(sad, writer != nullptr, threads);
  verifier.set_summaries(!opt.quiet);
  verifier.set_audit(auditor);
  verifier.set_timing(opt.stats);
  // In capture order, one thread at a time: everything here has state.
  verifier.run(*src, [&](const dissect::Frame& frame, const dissect::Packet& outer, capture::FrameResult& result) {
    if (auditor != nullptr) auditor->account(result, sad);
    if (result.ike || analyzer.watching_clear()) {
      if (const ike::MessageRecord* m = analyzer.observe(frame, outer)) report->ike(result, *m);
    }
    report->frame(result);
    emit_decrypted(frame.ts_ns, result.decrypted);
    progress.update(frame.file_offset, frame.number);
  });
  totals += verifier.counters();
  frame_totals += verifier.frames();
  if (opt.stats) {
    // With N threads, the serial stages bound the speed-up to
    // cpu / max(ordered, read, cpu / N).
    const auto& st = verifier.stats();
    auto share = [&](double part) { return st.cpu_seconds > 0 ? 100.0 * part / st.cpu_seconds : 0.0; };
    fmt::print(stderr,
               "ipsentry: stats: {} thread{}, {} chunks; CPU {:.3f} s, of which ordered stage {:.3f} s ({:.1f} %), "
               "reading {:.3f} s ({:.1f} %); waiting for a free chunk {:.3f} s\n",
               st.threads, st.threads == 1 ? "" : "s", st.chunks, st.cpu_seconds, st.ordered_cpu_seconds,
               share(st.ordered_cpu_seconds), st.read_cpu_seconds, share(st.read_cpu_seconds), st.wait_seconds);
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
