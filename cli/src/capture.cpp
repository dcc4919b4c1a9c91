#include "capture.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "ipsentry/capture/live_capture.hpp"
#include "ipsentry/capture/live_source.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/capture/pcapng_writer.hpp"
#include "ipsentry/filters/exporters.hpp"
#include "ipsentry/filters/file_read.hpp"
#include "report.hpp"
#include "version.hpp"

namespace ipsentry::cli {

namespace {

// What --ipsec-only captures: ESP and AH over IPv4 and IPv6, IKE and NAT-T.

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_signal(int /*sig*/) { g_interrupted.store(true); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string default_output(bool pcap) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return fmt::format("ipsentry-{}.{}", buf, pcap ? "pcap" : "pcapng");
}

std::string verdict_summary(const std::array<std::uint64_t, ipsec::kVerdictCount>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == 0) continue;
    s += fmt::format(" {} {}", ipsec::verdict_name(static_cast<ipsec::Verdict>(i)), v[i]);
  }
  return s;
}

/// The status line on stderr, and the --live lines on stdout, without one
/// tearing the other.
class Console {
 public:
  explicit Console(bool status) : status_(status && ::isatty(STDERR_FILENO) == 1) {}
  void status(const std::string& iface, const capture::SessionStatus& s) {
    if (!status_) return;
    std::lock_guard lock(mutex_);
    fmt::print(stderr, "\r\033[K{}: {} frames, {}, buffer {:.1f}%, kernel drops {}{}{}", iface, s.frames,
               human_bytes(static_cast<double>(s.bytes)),
               100.0 * static_cast<double>(s.used) / static_cast<double>(s.capacity),
               s.kernel.dropped + s.kernel.if_dropped, s.verified != 0 ? " |" : "", verdict_summary(s.verdicts));
    std::fflush(stderr);
    shown_ = true;
  }
  template <typename Fn>
  void line(Fn&& print) {
    std::lock_guard lock(mutex_);
    clear_locked();
    print();
    std::fflush(stdout);
  }
  void clear() {
    std::lock_guard lock(mutex_);
    clear_locked();
  }

 private:
  void clear_locked() {
    if (shown_) fmt::print(stderr, "\r\033[K");
    shown_ = false;
  }
  bool status_;
  bool shown_ = false;
  std::mutex mutex_;
};

}  // namespace

std::string choose_device(const std::string& interface, unsigned index) {
  if (!interface.empty()) return interface;
  auto devices = capture::list_devices();
  if (index != 0) {
    if (index > devices.size()) {
      throw capture::CaptureError(
          fmt::format("there is no interface number {} ({} listed by 'ipsentry interfaces')", index, devices.size()));
    }
    return devices[index - 1].name;
  }
  for (const auto& d : devices) {
    if (d.up && d.running && !d.loopback && d.name != "any") return d.name;
  }
  throw capture::CaptureError("no interface is up; choose one with -i NAME or -n INDEX (see 'ipsentry interfaces')");
}

capture::LiveOptions live_options(const LiveArgs& a) {
  capture::LiveOptions lo;
  lo.snaplen = a.snaplen;
  lo.kernel_buffer_mb = a.kernel_buffer_mb;
  lo.promiscuous = a.promiscuous;
  const std::string user = a.filter_file.empty() ? a.filter : read_filter_file(a.filter_file);
  if (!a.ipsec_only)
    lo.filter = user;
  else
    lo.filter = user.empty() ? std::string(kIpsecFilter) : fmt::format("({}) and ({})", kIpsecFilter, user);
  return lo;
}

std::string read_filter_file(const std::string& path) {
  // A filter expression is short; /dev/zero or a silent named pipe must not
  // be read forever.
  constexpr std::size_t kMaxFilterFile = std::size_t{1} << 20;
  std::string raw;
  std::string why;
  if (!filters::read_bounded(path, kMaxFilterFile, raw, why)) {
    throw capture::CaptureError(fmt::format("cannot read the filter file '{}': it {}", path, why));
  }
  std::string text;
  // Comments (#...) and line breaks, as tcpdump -F allows.
  std::istringstream lines(raw);
  for (std::string line; std::getline(lines, line);) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    text += line;
    text += ' ';
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.empty()) throw capture::CaptureError(fmt::format("the filter file '{}' holds no expression", path));
  return text;
}

double parse_duration(const std::string& text) {
  double total = 0;
  int parts = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto colon = text.find(':', start);
    std::string_view p(text.data() + start, (colon == std::string::npos ? text.size() : colon) - start);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size()) return -1;
    if (parts > 0 && v >= 60) return -1;
    total = total * 60 + v;
    if (++parts > 3) return -1;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return total;
}

int run_interfaces() {
  std::vector<capture::Device> devices;
  try {
    devices = capture::list_devices();
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  fmt::print("{:>3}  {:<16} {:<16} {:<40} {}\n", "#", "name", "state", "description", "addresses");
  for (const auto& d : devices) {
    std::string state = d.loopback ? "loopback" : "";
    if (d.up) state += state.empty() ? "up" : ", up";
    if (d.running) state += ", running";
    std::string addrs;
    for (const auto& a : d.addresses) addrs += (addrs.empty() ? "" : " ") + a;
    fmt::print("{:>3}  {:<16} {:<16} {:<40} {}\n", d.index, d.name, state.empty() ? "down" : state,
               d.description.empty() ? "-" : d.description, addrs.empty() ? "-" : addrs);
  }
  if (devices.empty()) {
    fmt::print(stderr, "ipsentry: no capture devices visible; without CAP_NET_RAW some are hidden (run as root)\n");
  }
  return kExitOk;
}

void warn_keyless_stop_on(std::uint32_t stop_on, bool have_keys, std::vector<std::string>& warnings) {
  if (stop_on != 0 && !have_keys &&
      (stop_on & (capture::kStopIcvFail | capture::kStopDecryptFail | capture::kStopReplay)) != 0) {
    warnings.emplace_back(
        "--stop-on icv-fail, decrypt-fail and replay need the SAs' keys (-c CONFIG): without them no packet gets "
        "that far");
  }
}

Triggers parse_triggers(const TriggerArgs& a) {
  Triggers t;
  if (!a.trigger.empty()) t.trigger = capture::Trigger::parse(a.trigger);
  if (!a.stop_on.empty()) t.stop_on = capture::parse_stop_on(a.stop_on);
  if ((a.after_given || a.after_time >= 0) && t.stop_on == 0) {
    throw capture::TriggerError(
        "--after and --after-time say how long to go on after a --stop-on event; give --stop-on too");
  }
  if (a.after_given && a.after_time >= 0) throw capture::TriggerError("give --after N or --after-time S, not both");
  t.after.frames = a.after;
  t.after.ns = a.after_time >= 0 ? static_cast<std::int64_t>(std::llround(a.after_time * 1e9)) : -1;
  return t;
}

int run_capture(const CaptureOptions& o) {
  auto usage_error = [](const std::string& msg) {
    fmt::print(stderr, "ipsentry: error: {}\n", msg);
    return kExitUsage;
  };
  // --- options -------------------------------------------------------------
  capture::SessionOptions so;
  so.buffer_bytes = std::size_t{o.buffer_mb} << 20;
  so.spill_dir = o.temp_dir;
  so.max_frames = o.source.count;
  try {
    const Triggers t = parse_triggers(o.triggers);
    so.trigger = t.trigger;
    so.stop_on = t.stop_on;
    so.after = t.after;
  } catch (const capture::TriggerError& e) {
    return usage_error(e.what());
  }
  if (!o.source.duration.empty()) {
    const double secs = parse_duration(o.source.duration);
    if (secs <= 0)
      return usage_error(fmt::format("-L '{}' is not a duration: use HH:MM:SS, MM:SS or seconds", o.source.duration));
    so.duration_ns = static_cast<std::int64_t>(secs * 1e9);
  }
  if (!o.temp_dir.empty() && !std::filesystem::is_directory(o.temp_dir)) {
    return usage_error(fmt::format("--temp-dir '{}' is not a directory", o.temp_dir));
  }

  capture::LiveOptions lo;
  try {
    lo = live_options(o.source);
  } catch (const capture::CaptureError& e) {
    return usage_error(e.what());
  }

  RunInfo info;
  info.command = "capture";
  info.format = "live";
  filters::Config cfg;
  try {
    cfg = load_keys(o.keys, info.config_sources);
  } catch (const filters::ConfigError& e) {
    return usage_error(e.what());
  }
  if (!o.audit.vantage.empty() && !o.audit.given()) {
    return usage_error("--as names the vantage point of the policy audit: give --policy CONFIG too");
  }
  if ((so.stop_on & capture::kStopAudit) != 0 && !o.audit.given()) {
    return usage_error(fmt::format("--stop-on {} is a finding of the policy audit: give --policy CONFIG too",
                                   capture::stop_on_names(so.stop_on & capture::kStopAudit)));
  }
  std::unique_ptr<PolicyAuditSetup> audit;
  if (o.audit.given()) {
    try {
      audit = load_policy_audit(o.audit, cfg, info.config_sources);
    } catch (const filters::ConfigError& e) {
      return usage_error(e.what());
    }
    so.audit = audit->audit.get();
    if (o.source.ipsec_only) {
      cfg.warnings.emplace_back(
          "--ipsec-only captures no cleartext but IKE: the policy audit sees no cleartext leak or blocked traffic");
    }
  }
  const bool have_keys = !cfg.sas.empty() || !cfg.ike_sas.empty();
  so.verify = have_keys || so.stop_on != 0 || o.live || so.audit != nullptr;
  warn_keyless_stop_on(so.stop_on, have_keys, cfg.warnings);
  if (o.embed_keys && cfg.sas.empty() && cfg.ike_sas.empty()) {
    return usage_error("--embed-keys needs SAs to embed (-c CONFIG or --keys-from)");
  }
  info.warnings = cfg.warnings;
  for (const auto& w : cfg.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);

  // --- open ------------------------------------------------------------------
  std::unique_ptr<capture::LiveSource> source;
  try {
    lo.device = choose_device(o.source.interface, o.source.index);
    source = std::make_unique<capture::LiveSource>(lo);
  } catch (const capture::CaptureError& e) {
    return usage_error(e.what());
  }
  info.capture = fmt::format("on {}", source->device());
  const std::string output = o.output.empty() ? default_output(o.pcap) : o.output;
  // The file is written when the capture ends: find out now, not after
  // minutes of capturing, that it cannot be.
  const std::filesystem::path out_dir = std::filesystem::absolute(output).parent_path();
  for (const auto& dir : {out_dir, std::filesystem::path(o.temp_dir)}) {
    if (!dir.empty() && ::access(dir.c_str(), W_OK | X_OK) != 0) {
      return usage_error(fmt::format("cannot write the capture to '{}': {}", dir.string(), std::strerror(errno)));
    }
  }

  ike::Analyzer analyzer(std::move(cfg.ike_sas));
  ipsec::Sad sad(std::move(cfg.sas), o.keys.crypto);
  for (std::size_t i = 0; i < sad.size(); ++i) {
    if (sad.at(i).unsupported()) {
      fmt::print(stderr, "ipsentry: warning: SA {}: {}\n", sad.at(i).name(), sad.at(i).unsupported_detail());
    }
  }
  std::unique_ptr<capture::Session> session;
  try {
    session = std::make_unique<capture::Session>(*source, so, sad, analyzer);
  } catch (const capture::CaptureError& e) {
    return usage_error(e.what());
  }

  Console console(o.status);
  std::unique_ptr<Report> report = make_text_report(stdout, TimeFormat::relative, !o.live);
  report->set_audit(so.audit);
  report->begin(info);
  if (o.live) {
    session->on_frame([&](const capture::FrameResult& f, const ike::MessageRecord* m) {
      console.line([&] {
        if (m != nullptr) report->ike(f, *m);
        report->frame(f);
      });
    });
  }
  fmt::print(stderr, "ipsentry: capturing on {} into a {} MB buffer{}{}{}; Ctrl-C ends the capture\n", source->device(),
             o.buffer_mb,
             so.trigger.kind != capture::Trigger::Kind::none ? ", trigger " + so.trigger.describe() : std::string(),
             so.stop_on != 0 ? ", stop on " + capture::stop_on_names(so.stop_on) : std::string(),
             lo.filter.empty() ? std::string() : ", filter '" + lo.filter + "'");

  install_signal_handlers();
  try {
    session->run(g_interrupted, [&](const capture::SessionStatus& s) { console.status(source->device(), s); });
  } catch (const capture::CaptureError& e) {
    console.clear();
    fmt::print(stderr, "ipsentry: error: {}; writing what was captured\n", e.what());
  }
  console.clear();
  const capture::SessionStatus st = session->status();

  // --- write -----------------------------------------------------------------
  std::uint64_t written = 0;
  std::uint64_t first_written = 0;  // capture number of the file's frame 1
  int write_error = 0;
  try {
    const std::uint32_t linktype = source->linktype();
    auto each_kept = [&](auto&& write) {
      session->for_each_kept([&](const capture::RecordHeader& r) {
        write(r);
        if (written++ == 0) first_written = r.seq;
      });
    };
    if (o.pcap) {
      capture::PcapWriter w(output, linktype, source->snaplen(), o.temp_dir);
      each_kept([&](const capture::RecordHeader& r) { w.write(r.ts_ns, r.data(), r.orig_len); });
      w.close();
    } else {
      capture::InterfaceDescription iface{linktype, source->snaplen(), source->device(), source->description(),
                                          lo.filter};
      capture::PcapngWriter w(output, iface, std::string("ipsentry ") + kVersion, o.temp_dir);
      if (o.embed_keys) {
        std::vector<filters::SaConfig> sas;
        for (std::size_t i = 0; i < sad.size(); ++i) sas.push_back(sad.at(i).config().clone());
        std::vector<std::string> skipped;
        const std::string secrets = filters::to_wireshark_esp_sa(sas, skipped);
        for (const auto& s : skipped) fmt::print(stderr, "ipsentry: warning: not embedded: {}\n", s);
        if (!secrets.empty()) {
          w.write_secrets(capture::kSecretsEspSa, secrets);
          fmt::print(stderr, "ipsentry: warning: '{}' holds the keys of {} SA{} (--embed-keys): protect it like them\n",
                     output, sas.size() - skipped.size(), sas.size() - skipped.size() == 1 ? "" : "s");
        }
      }
      std::vector<std::string> comments;
      each_kept([&](const capture::RecordHeader& r) {
        comments = capture::frame_comments(r, *session, sad, analyzer);
        w.write(r.ts_ns, r.data(), r.orig_len, comments);
      });
      capture::InterfaceStatistics is;
      is.start_ns = session->start_ns();
      is.end_ns = session->end_ns();
      is.received = st.kernel.received;
      is.if_dropped = st.kernel.if_dropped;
      is.os_dropped = st.kernel.dropped;
      is.delivered = st.frames;
      w.write_statistics(is);
      w.close();
    }
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    write_error = 1;
  }

  // --- report ----------------------------------------------------------------
  analyzer.finish();
  if (so.audit != nullptr) {
    so.audit->finish();
    if (std::string w = audit_vantage_warning(*so.audit, session->frame_counters().frames); !w.empty()) {
      fmt::print(stderr, "ipsentry: warning: {}\n", w);
      info.warnings.push_back(std::move(w));
    }
  }
  info.seconds = st.seconds;
  const ipsec::GlobalCounters totals = session->totals();
  if (so.verify) {
    if (session->learned_sas() != 0) {
      info.config_sources.push_back(fmt::format("{} ESP/AH SAs derived from the IKE keys", session->learned_sas()));
    }
    report->end(info, totals, session->frame_counters(), sad, analyzer);
  }
  fmt::print("\nCapture\n");
  auto row = [](const char* name, const std::string& v) { fmt::print("  {:<36}{:>14}\n", name, v); };
  row("Interface", source->device());
  row("Frames captured", fmt::format("{}", st.frames));
  row("Bytes captured (on the wire)", fmt::format("{}", st.bytes));
  row("Frames overwritten (circular)", fmt::format("{}", st.evicted));
  row("Frames written", fmt::format("{}", written));
  row("Buffer used", fmt::format("{:.1f}%", 100.0 * static_cast<double>(st.used) / static_cast<double>(st.capacity)));
  row("Kernel: received", fmt::format("{}", st.kernel.received));
  row("Kernel: dropped (ring full)", fmt::format("{}", st.kernel.dropped));
  row("Kernel: dropped by the interface", fmt::format("{}", st.kernel.if_dropped));
  if (session->buffer().too_large() != 0) {
    row("Frames larger than the buffer", fmt::format("{}", session->buffer().too_large()));
  }
  if (session->unverified() != 0) row("Frames overwritten unverified", fmt::format("{}", session->unverified()));
  row("Duration (s)", fmt::format("{:.2f}", st.seconds));
  fmt::print("stopped: {}\n", capture::describe(session->stop_reason()));
  // Frame numbers are the capture's; in a circular capture the file starts later.
  auto in_file = [&](std::uint64_t seq) {
    return written != 0 && seq >= first_written && seq - first_written < written
               ? fmt::format(" (frame {} in the file)", seq - first_written + 1)
               : std::string();
  };
  if (session->trigger_seq() != 0) {
    fmt::print("trigger {} fired on frame {}{}\n", so.trigger.describe(), session->trigger_seq(),
               in_file(session->trigger_seq()));
  }
  if (session->event_seq() != 0) {
    fmt::print("--stop-on fired on frame {}{}: {}\n", session->event_seq(), in_file(session->event_seq()),
               session->event_detail());
  }
  if (!write_error) fmt::print("wrote {} frames to {} ({})\n", written, output, o.pcap ? "pcap" : "pcapng");
  std::fflush(stdout);
  if (write_error) return kExitUsage;
  if (so.audit != nullptr && !audit_clean(*so.audit)) return kExitNotVerified;
  return so.verify && !all_verified(totals, analyzer) ? kExitNotVerified : kExitOk;
}

}  // namespace ipsentry::cli
