#include "tui_cmd.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include "capture.hpp"
#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/live_source.hpp"
#include "ipsentry/enforce/runner.hpp"
#include "ipsentry/tui/app.hpp"
#include "ipsentry/tui/display_filter.hpp"

namespace ipsentry::cli {

int run_tui(const TuiOptions& o) {
  auto usage_error = [](const std::string& msg) {
    fmt::print(stderr, "ipsentry: error: {}\n", msg);
    return kExitUsage;
  };
  const bool live = !o.source.interface.empty() || o.source.index != 0;
  const int sources = (o.capture.empty() ? 0 : 1) + (live ? 1 : 0) + (o.attach ? 1 : 0);
  if (sources != 1) {
    return usage_error("give one of: a capture file, -i IFACE / -n INDEX (live), or --attach (enforcement)");
  }
  if (o.attach && o.audit.given()) {
    return usage_error("--policy audits a capture file or a live capture (-i IFACE), not --attach");
  }
  if (!o.audit.given() && !o.audit.vantage.empty()) {
    return usage_error("--as names the vantage point of the policy audit: give --policy CONFIG too");
  }
  const TriggerArgs& ta = o.triggers;
  const bool triggers_given = !ta.trigger.empty() || !ta.stop_on.empty() || ta.after_given || ta.after_time >= 0;
  if (triggers_given && !live) {
    return usage_error("-t, --stop-on, --after and --after-time stop a live capture: give -i IFACE");
  }
  Triggers triggers;
  try {
    triggers = parse_triggers(ta);
  } catch (const capture::TriggerError& e) {
    return usage_error(e.what());
  }
  if ((triggers.stop_on & capture::kStopAudit) != 0 && !o.audit.given()) {
    return usage_error(fmt::format("--stop-on {} is a finding of the policy audit: give --policy CONFIG too",
                                   capture::stop_on_names(triggers.stop_on & capture::kStopAudit)));
  }
  if (triggers.trigger.kind == capture::Trigger::Kind::circular) {
    return usage_error(
        "-t N (circular) overwrites frames, and the TUI keeps every frame it lists; capture with 'ipsentry capture "
        "-t N -o FILE' and open FILE, or stop on a trigger here (B, P, BP, PB, --stop-on)");
  }
  if (isatty(STDIN_FILENO) != 1 || isatty(STDOUT_FILENO) != 1) {
    return usage_error("the TUI needs a terminal; 'ipsentry verify' and 'ipsentry show' write text");
  }
  try {
    tui::check_terminal();  // before a capture is loaded for nothing
  } catch (const std::runtime_error& e) {
    return usage_error(e.what());
  }
  if (!o.display_filter.empty()) {
    tui::FilterError e;
    if (!tui::DisplayFilter::parse(o.display_filter, e)) {
      return usage_error(fmt::format("display filter '{}': at {}: {}", o.display_filter, e.position + 1, e.message));
    }
  }
  // Declared before the model that judges frames with it, so it outlives it.
  std::unique_ptr<PolicyAuditSetup> audit;
  tui::AppOptions app;
  app.refresh_seconds = o.refresh;
  app.initial_filter = o.display_filter;
  if (o.attach) {
    app.attach_socket = o.socket.empty() ? enforce::kDefaultSocket : o.socket;
    try {
      (void)enforce::fetch_stats(app.attach_socket);
    } catch (const std::exception& e) {
      return usage_error(e.what());
    }
    try {
      return tui::run(std::move(app));
    } catch (const std::exception& e) {
      return usage_error(e.what());
    }
  }

  std::vector<std::string> described;
  filters::Config cfg;
  try {
    if (live) {
      cfg = load_keys(o.keys, described);
    } else {
      cfg = load_keys_for(o.keys, o.capture, described);
    }
    // Before the IKE pass, as in verify: the policy's SAs are keys too.
    if (o.audit.given()) {
      audit = load_policy_audit(o.audit, cfg, described);
      if (live && o.source.ipsec_only) {
        cfg.warnings.emplace_back(
            "--ipsec-only captures no cleartext but IKE: the policy audit sees no cleartext leak or blocked traffic");
      }
    }
    if (!live) learn_ike_sas(o.capture, cfg);
  } catch (const filters::ConfigError& e) {
    return usage_error(e.what());
  } catch (const capture::CaptureError& e) {
    return usage_error(e.what());
  }
  capture::PolicyAudit* auditor = audit ? audit->audit.get() : nullptr;
  if (live) warn_keyless_stop_on(triggers.stop_on, !cfg.sas.empty() || !cfg.ike_sas.empty(), cfg.warnings);
  app.warnings = cfg.warnings;
  try {
    if (live) {
      capture::LiveOptions lo = live_options(o.source);
      lo.device = choose_device(o.source.interface, o.source.index);
      tui::LiveLimits limits;
      limits.memory_bytes = std::size_t{o.memory_mb} << 20;
      limits.max_frames = o.source.count;
      limits.trigger = triggers.trigger;
      limits.stop_on = triggers.stop_on;
      limits.after = triggers.after;
      if (!o.source.duration.empty()) {
        const double secs = parse_duration(o.source.duration);
        if (secs <= 0) {
          return usage_error(
              fmt::format("-L '{}' is not a duration: use HH:MM:SS, MM:SS or seconds", o.source.duration));
        }
        limits.duration_ns = static_cast<std::int64_t>(secs * 1e9);
      }
      app.model = std::make_unique<tui::Model>(lo, limits, std::move(cfg), auditor, o.keys.crypto);
    } else {
      app.model = std::make_unique<tui::Model>(o.capture, std::move(cfg), auditor, o.keys.crypto);
    }
  } catch (const capture::CaptureError& e) {
    return usage_error(e.what());
  }
  try {
    return tui::run(std::move(app));
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
}

}  // namespace ipsentry::cli
