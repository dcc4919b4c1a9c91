#include "enforce.hpp"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "ipsentry/enforce/instance_lock.hpp"
#include "ipsentry/enforce/snapshot.hpp"
#include "ipsentry/filters/secret.hpp"
#include "ipsentry/tui/screen_text.hpp"

namespace ipsentry::cli {

using nlohmann::json;

namespace {

const char* event_name(enforce::EventKind k) {
  using enforce::EventKind;
  switch (k) {
    case EventKind::sa_installed: return "sa-installed";
    case EventKind::sa_kept: return "sa-kept";
    case EventKind::sa_removed: return "sa-removed";
    case EventKind::soft_expiry: return "soft-expiry";
    case EventKind::hard_expiry: return "hard-expiry";
    case EventKind::seq_exhausted: return "seq-exhausted";
    case EventKind::icv_failure: return "icv-fail";
    case EventKind::replay: return "replay";
    case EventKind::unknown_spi: return "unknown-spi";
    case EventKind::decrypt_failure: return "decrypt-fail";
    case EventKind::cleartext_dropped: return "cleartext-dropped";
    case EventKind::policy_mismatch: return "policy-mismatch";
    case EventKind::too_big: return "too-big";
    case EventKind::warning: return "warning";
    case EventKind::rules_restored: return "rules-restored";
    case EventKind::socket_restored: return "socket-restored";
    case EventKind::nat_mapping: return "nat-mapping";
    case EventKind::ike: return "ike";
    case EventKind::count_: break;
  }
  return "error";
}

std::mutex log_mu;

void log_line(const char* kind, const std::string& text) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  std::scoped_lock lock(log_mu);
  fmt::print(stderr, "ipsentry: {} {}: {}\n", when, kind, text);
  std::fflush(stderr);
}

}  // namespace

int run_enforce(const enforce::EnforceOptions& options, bool print_policy) {
  if (!enforce::have_net_admin()) {
    fmt::print(stderr,
               "ipsentry: error: enforcement needs CAP_NET_ADMIN to install netfilter rules and bind NFQUEUE "
               "queues: run it as root\n");
    return kExitUsage;
  }
  // No core dump or ptrace of a process that holds keys (the key heap is
  // left out of dumps already, but cipher contexts hold expanded keys too).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Signals are taken by this thread only (sigtimedwait below).
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::unique_ptr<enforce::Enforcement> e;
  try {
    e = std::make_unique<enforce::Enforcement>(
        options, [](enforce::EventKind k, const std::string& text) { log_line(event_name(k), text); });
  } catch (const filters::ConfigError& ex) {
    fmt::print(stderr, "ipsentry: error: {}\n", ex.what());
    return kExitUsage;
  }
  if (print_policy) fmt::print(stderr, "{}", e->describe_policy());
  for (const auto& w : e->warnings()) log_line("warning", w);
  if (const std::string km = filters::key_memory_notice(); !km.empty()) log_line("warning", km);
  // Whatever the policy, these pass unchecked: say so where it is read.
  log_line("exemptions", e->describe_exemptions());
  try {
    e->start();
  } catch (const std::exception& ex) {
    fmt::print(stderr, "ipsentry: error: {}\n", ex.what());
    try {
      e->stop();
    } catch (...) {
    }
    return kExitUsage;
  }
  const auto& ro = e->rule_options();
  log_line("started",
           fmt::format("{} SA(s), queue{} {}{}, {}; MSS clamp IPv4 {} IPv6 {}; statistics on {}; SIGHUP reloads, "
                       "SIGINT/SIGTERM stop",
                       e->sa_count(), options.queues > 1 ? "s" : "", options.queue,
                       options.queues > 1 ? fmt::format("-{}", options.queue + options.queues - 1) : "",
                       options.fail_open ? "FAIL-OPEN (traffic passes in clear if ipsentry stops)"
                                         : "fail-closed (traffic is dropped if ipsentry dies)",
                       ro.mss_v4 ? std::to_string(ro.mss_v4) : "off", ro.mss_v6 ? std::to_string(ro.mss_v6) : "off",
                       options.socket));
  for (;;) {
    siginfo_t info{};
    timespec ts{1, 0};
    const int sig = sigtimedwait(&sigs, &info, &ts);
    if (sig == SIGHUP) {
      try {
        e->reload();
        log_line("reloaded", options.config);
      } catch (const std::exception& ex) {
        log_line("reload-failed", fmt::format("{} (the previous configuration stays in force)", ex.what()));
      }
    } else if (sig == SIGINT || sig == SIGTERM) {
      log_line("stopping", fmt::format("signal {}: removing the rules", sig == SIGINT ? "SIGINT" : "SIGTERM"));
      break;
    }
  }
  e->stop();
  return kExitOk;
}

int run_enforce_cleanup(const std::string& socket_path, const std::string& run_dir) {
  if (!enforce::have_net_admin()) {
    fmt::print(stderr, "ipsentry: error: --cleanup needs CAP_NET_ADMIN: run it as root\n");
    return kExitUsage;
  }
  // The namespace's lock, as an enforcement takes it: while one runs here
  // (whatever its socket), nothing of it is touched.
  std::optional<enforce::InstanceLock> lock;
  try {
    enforce::secure_directory(run_dir);
    enforce::LockHolder holder;
    lock = enforce::InstanceLock::try_take(enforce::netns_lock_path(run_dir), holder);
    if (!lock) {
      fmt::print(stderr,
                 "ipsentry: error: an enforcement is running in this network namespace ({}); stop it with SIGTERM: "
                 "--cleanup only removes what a dead one left\n",
                 holder.describe());
      return kExitUsage;
    }
  } catch (const std::exception& ex) {
    fmt::print(stderr, "ipsentry: error: {}\n", ex.what());
    return kExitUsage;
  }
  const auto removed = enforce::remove_rules();
  for (const auto& r : removed) fmt::print("removed {}\n", r);
  if (removed.empty()) fmt::print("no ipsentry rules were installed\n");
  // The socket asked for, and the one the dead enforcement recorded.
  std::vector<std::string> sockets{socket_path};
  if (!lock->previous().socket.empty() && lock->previous().socket != socket_path) {
    sockets.push_back(lock->previous().socket);
  }
  for (const auto& s : sockets) {
    struct stat st {};
    if (::lstat(s.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    try {
      (void)enforce::fetch_stats(s);
      fmt::print("left {}: an enforcement in another network namespace answers on it\n", s);
      continue;
    } catch (const std::exception&) {
      // Nothing answers: it is left over.
    }
    if (::unlink(s.c_str()) == 0) fmt::print("removed stale socket {}\n", s);
  }
  return kExitOk;
}

namespace {

std::string num(const json& v) {
  if (v.is_null()) return "-";
  const auto n = v.get<std::uint64_t>();
  const std::string digits = std::to_string(n);
  std::string s;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

// ESP in UDP (RFC 3948): where each outbound SA sends, as its peers' NATs
// mapped them, and the keepalives that hold those mappings open.
void print_nat(const json& j) {
  bool header = false;
  for (const auto& sa : j.at("sas")) {
    const json& nat = sa.value("nat", json());
    if (!nat.is_object() || !nat.contains("peers")) continue;
    if (!header) {
      fmt::print("\nNAT traversal (ESP in UDP, RFC 3948)\n");
      fmt::print("  {:<14} {:<46} {:<24} {:>6} {}\n", "name", "peer (as its packets arrive) -> port", "learned",
                 "moves", "keepalives");
      header = true;
    }
    const auto every = nat.at("keepalive_seconds").get<std::uint32_t>();
    const std::string keep =
        every == 0 ? "off" : fmt::format("{} sent, every {} s idle", num(nat.at("keepalives_sent")), every);
    if (nat.at("peers").empty()) {
      fmt::print("  {:<14} {:<46} {:<24} {:>6} {}\n", sa.at("name").get<std::string>(),
                 fmt::format("(none yet) -> {}", nat.at("dport").get<std::uint16_t>()), "-", "-", keep);
    }
    for (const auto& p : nat.at("peers")) {
      const bool learned = p.at("learned").get<bool>();
      fmt::print("  {:<14} {:<46} {:<24} {:>6} {}\n", sa.at("name").get<std::string>(),
                 fmt::format("{} -> {}", p.at("address").get<std::string>(), p.at("port").get<std::uint16_t>()),
                 learned ? fmt::format("{} s ago", num(p.at("learned_seconds_ago"))) : "no (configured port)",
                 num(p.at("moves")), keep);
    }
  }
}

void print_stats(const json& j) {
  fmt::print("IP Security Monitor: enforcement of {} (up {} s, {} queue(s), {})\n\n", j.at("config").get<std::string>(),
             j.at("uptime_seconds").get<std::int64_t>(), j.at("queues").size(),
             j.at("fail_open").get<bool>() ? "fail-open" : "fail-closed");
  auto row = [](const char* name, const json& v) { fmt::print("  {:<36}{:>16}\n", name, num(v)); };
  fmt::print("Quick Mode\n");
  for (const auto& r : enforce::quick_mode_rows(j)) row(r.name, r.value);
  const auto& p = j.at("packets");
  fmt::print("\nEnforcement (packets)\n");
  row("Protected and sent", p.at("protected"));
  row("Verified and accepted", p.at("decapsulated"));
  row("Permitted (no protection required)", p.at("permitted"));
  row("Exempted (see below)", p.at("exempted"));
  row("Cleartext accepted (request/respond)", p.at("cleartext_allowed"));
  row("Cleartext dropped", p.at("cleartext_dropped"));
  row("Blocked by policy", p.at("blocked"));
  row("IPsec failed verification", p.at("ipsec_failed"));
  row("Not allowed on their SA", p.at("policy_mismatch"));
  row("Dummy packets discarded", p.at("dummy"));
  row("Dropped: SA expired", p.at("sa_expired"));
  row("Dropped: sequence numbers exhausted", p.at("seq_exhausted"));
  row("Dropped: sequence number unrecorded", p.at("seq_unrecorded"));
  row("Too big (ICMP sent to the source)", p.at("too_big"));
  row("Protection failed", p.at("protect_failed"));
  row("Not IP or malformed", p.at("not_ip"));
  row("NAT keepalives received (discarded)", p.at("nat_keepalive"));
  if (p.contains("negotiating")) {
    row("Held for an IKE negotiation", p.at("negotiating"));
    row("Dropped: no room to hold for IKE", p.at("negotiation_full"));
  }
  std::uint64_t verr = 0;
  std::uint64_t over = 0;
  for (const auto& qq : j.at("queues")) {
    verr += qq.at("verdict_errors").get<std::uint64_t>();
    over += qq.at("overruns").get<std::uint64_t>();
  }
  row("Queue verdict errors", verr);
  row("Queue overruns", over);
  if (const auto g = j.find("guard"); g != j.end()) {
    row("Rules put back (changed by others)", g->at("rules_restored"));
    row("Statistics socket bound again", g->at("socket_restored"));
    row("State file writes failed", g->at("state_write_failures"));
  }
  fmt::print("\nExemptions (passed without a policy: to or from this host only)\n");
  if (j.at("exemptions").empty()) fmt::print("  none\n");
  for (const auto& x : j.at("exemptions")) {
    const std::string name =
        fmt::format("{} {}", x.at("exemption").get<std::string>(), x.at("direction").get<std::string>());
    row(name.c_str(), x.at("packets"));
  }
  // The table the TUI's SA monitor shows when attached, from the same code.
  fmt::print("\nSecurity associations\n");
  for (const auto& line : tui::sa_table(tui::sa_lines_from_snapshot(j))) fmt::print("  {}\n", line);
  print_nat(j);
  // IKE: the Main Mode table, then the IKE SAs and their children (the
  // TUI's statistics screen shows the same, from the same code).
  if (const auto mm = tui::main_mode_rows(j); !mm.empty()) {
    fmt::print("\nMain Mode (IKE)\n");
    for (const auto& [name, value] : mm) fmt::print("  {:<40}{:>12}\n", name, value);
    fmt::print("\nIKE SAs\n");
    for (const auto& line : tui::ike_sa_table(j)) fmt::print("  {}\n", line);
  }
}

}  // namespace

int run_stats(const StatsOptions& o) {
  for (;;) {
    std::string text;
    try {
      text = enforce::fetch_stats(o.socket);
    } catch (const std::exception& e) {
      fmt::print(stderr, "ipsentry: error: {}\n", e.what());
      return kExitUsage;
    }
    if (o.json) {
      fmt::print("{}", text);
    } else {
      try {
        if (o.watch > 0) fmt::print("\x1b[H\x1b[2J");
        print_stats(json::parse(text));
      } catch (const json::exception& e) {
        fmt::print(stderr, "ipsentry: error: the enforcement sent statistics this version cannot read: {}\n", e.what());
        return kExitUsage;
      }
    }
    std::fflush(stdout);
    if (o.watch <= 0) return kExitOk;
    std::this_thread::sleep_for(std::chrono::duration<double>(o.watch));
  }
}

}  // namespace ipsentry::cli
