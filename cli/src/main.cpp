// ipsentry: IPsec capture, verification and enforcement.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <exception>
#include <string>
#include <vector>

#include "capture.hpp"
#include "common.hpp"
#include "config_cmd.hpp"
#include "enforce.hpp"
#include "protect.hpp"
#include "show.hpp"
#include "tui_cmd.hpp"
#include "verify.hpp"
#include "version.hpp"

namespace {

using namespace ipsentry::cli;

void add_crypto_option(CLI::App* cmd, ipsentry::ipsec::CryptoChoice& crypto) {
  cmd->add_option_function<std::string>(
         "--crypto", [&crypto](const std::string& text) { crypto = ipsentry::ipsec::parse_crypto_choice(text); },
         "ESP crypto backend: auto (per SA, the faster one on this CPU), openssl, or ipsec-mb (libipsec-mb wherever "
         "it can do the SA; OpenSSL for the rest). The choice per SA is shown in the statistics")
      ->type_name("auto|openssl|ipsec-mb")
      ->check([](const std::string& text) {
        try {
          (void)ipsentry::ipsec::parse_crypto_choice(text);
          return std::string();
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
      });
}

void add_key_options(CLI::App* cmd, KeySources& keys, std::vector<std::string>& keys_from) {
  cmd->add_option("-c,--config", keys.configs, "YAML configuration with the SAs (repeatable)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--keys-from", keys_from,
                  "import keys: FORMAT FILE, FORMAT one of wireshark (esp_sa), tcpdump, tcpdump-inline "
                  "(FILE is then the -E argument), xfrm (ip -s xfrm state output), wireshark-ikev1, wireshark-ikev2 "
                  "(Wireshark's IKE decryption tables), strongswan-log (charon log with ike 4); repeatable")
      ->expected(2)
      // Each --keys-from takes its FORMAT FILE pair; the pairs of every
      // occurrence are kept in order (collect_imports reads them two by two).
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false)
      ->type_name("FORMAT FILE");
  add_crypto_option(cmd, keys.crypto);
}

void add_audit_options(CLI::App* cmd, AuditSources& audit) {
  cmd->add_option("--policy", audit.policy,
                  "also judge every packet against this configuration's policies (the policy audit): "
                  "cleartext-leak, policy-mismatch, blocked-seen; its SAs are used as keys too")
      ->check(CLI::ExistingFile);
  cmd->add_option("--as", audit.vantage,
                  "the host or gateway address whose policy --policy is (repeatable; default its interfaces.local)");
}

/// The options `capture` and `tui` share for a live capture.
void add_live_options(CLI::App* cmd, LiveArgs& live) {
  auto* iface = cmd->add_option("-i,--interface", live.interface, "device to capture on, or 'any'");
  cmd->add_option("-n,--index", live.index, "device by its number in 'ipsentry interfaces'")
      ->check(CLI::Range(1u, 100000u))
      ->excludes(iface);
  cmd->add_option("-L,--duration", live.duration, "stop after this long: HH:MM:SS, MM:SS or seconds");
  cmd->add_option("--count", live.count, "stop after this many frames")->check(CLI::PositiveNumber);
  cmd->add_option("-s,--snaplen", live.snaplen, "bytes kept of each frame (default 262144)")
      ->check(CLI::Range(64u, 262144u));
  auto* filt = cmd->add_option("-f,--filter", live.filter, "capture filter, a BPF expression (tcpdump syntax)");
  cmd->add_option("-F,--filter-file", live.filter_file, "read the capture filter from a file")
      ->check(CLI::ExistingFile)
      ->excludes(filt);
  cmd->add_flag("--ipsec-only", live.ipsec_only, "capture only ESP, AH, IKE and NAT-T (combined with -f by 'and')");
  cmd->add_option("-B,--kernel-buffer", live.kernel_buffer_mb, "kernel capture ring in MB (default 16)")
      ->check(CLI::Range(1u, 4096u));
  cmd->add_flag("!--no-promiscuous", live.promiscuous, "do not put the interface into promiscuous mode");
}

/// When to stop: the options `capture` and `tui` share. `buffer` names what
/// the PCT levels are of; `circular` offers N.
void add_trigger_options(CLI::App* cmd, TriggerArgs& t, const char* buffer, bool circular) {
  cmd->add_option("-t,--trigger", t.trigger,
                  fmt::format("trigger: B PCT | P OFFSET PATTERN | BP PCT OFFSET PATTERN | PB PCT OFFSET PATTERN{} "
                              "(PCT: of the {})",
                              circular ? " | N" : "", buffer))
      ->expected(1, 4)
      ->type_name("KIND [ARGS]");
  cmd->add_option(
      "--stop-on", t.stop_on,
      "stop on IPsec events: icv-fail, decrypt-fail, replay, unknown-spi, malformed, ike-fail, and with --policy "
      "the audit's cleartext-leak, policy-mismatch, blocked-seen (comma-separated)");
  auto* after = cmd->add_option("--after", t.after, "with --stop-on: keep N more frames after the event (default 0)")
                    ->each([&t](const std::string&) { t.after_given = true; });
  auto* after_time =
      cmd->add_option("--after-time", t.after_time, "with --stop-on: keep capturing S seconds after the event")
          ->check(CLI::NonNegativeNumber);
  after->excludes(after_time);
}

void collect_imports(const std::vector<std::string>& keys_from, KeySources& keys) {
  for (std::size_t i = 0; i + 1 < keys_from.size(); i += 2) keys.imports.emplace_back(keys_from[i], keys_from[i + 1]);
}

int run(int argc, char** argv) {
  CLI::App app{"ipsentry: IPsec capture, verification and enforcement"};
  // A callback: probing libipsec-mb sets up a manager, which only --version should pay for.
  app.set_version_flag("--version", [] {
    return std::string("ipsentry ") + kVersion + "\nESP crypto: OpenSSL; " +
           ipsentry::ipsec::crypto_availability().describe();
  });
  app.require_subcommand(1);

  VerifyOptions verify;
  std::vector<std::string> verify_keys_from;
  std::string time_format = "rel";
  auto* v = app.add_subcommand("verify", "verify the ESP and AH packets of a capture with the given keys");
  v->add_option("capture", verify.capture, "pcap or pcapng file (may be gzip-compressed)")->required();
  add_key_options(v, verify.keys, verify_keys_from);
  add_audit_options(v, verify.audit);
  v->add_flag("--json", verify.json, "JSON output (fields documented in docs/json-output.md)");
  v->add_flag("-q,--quiet", verify.quiet, "print only the statistics");
  v->add_option("-w,--write-decrypted", verify.write_decrypted,
                "write the cleartext packets (tunnel inner packets, rebuilt transport packets) to this pcap");
  v->add_option("-j,--threads", verify.threads,
                "threads; each decrypts its share of the frames, verdicts come in capture order (0: one per core)")
      ->check(CLI::Range(0u, 256u));
  v->add_option("--time", time_format, "time column: rel (since the first frame), abs (UTC), epoch")
      ->check(CLI::IsMember({"rel", "abs", "epoch"}));
  v->add_flag("!--no-progress", verify.progress, "no progress line on stderr");
  v->add_flag("--stats", verify.stats, "where the time went (threads, the ordered stage's share) on stderr");

  ProtectOptions protect;
  std::vector<std::string> protect_keys_from;
  auto* p = app.add_subcommand("protect", "apply an outbound SA to the IP packets of a cleartext capture");
  p->add_option("input", protect.input, "cleartext pcap or pcapng")->required();
  add_key_options(p, protect.keys, protect_keys_from);
  p->add_option("--sa", protect.sa, "name of the SA to apply")->required();
  p->add_option("-o,--output", protect.output, "protected capture to write (raw IP pcap)")->required();
  p->add_option("--src", protect.only_src, "protect only packets from this address; copy the others");
  p->add_option("--dst", protect.only_dst, "protect only packets to this address; copy the others");
  p->add_option("--iv", protect.iv, "fixed explicit IV in hex, for reproducing published test vectors");

  ShowOptions show;
  std::vector<std::string> show_keys_from;
  auto* s = app.add_subcommand("show", "print every frame: a summary line, or with -V the full dissection tree");
  s->add_option("capture", show.capture, "pcap or pcapng file (may be gzip-compressed)")->required();
  add_key_options(s, show.keys, show_keys_from);
  s->add_flag("-V,--verbose", show.verbose, "the dissection tree of every frame, decrypted layers included");
  s->add_option("-n,--count", show.count, "stop after this many frames");

  auto* ifs = app.add_subcommand("interfaces", "list the capture devices with their index, description and addresses");

  CaptureOptions cap;
  std::vector<std::string> cap_keys_from;
  auto* c = app.add_subcommand("capture", "capture live into a memory buffer, with triggers and live verification");
  c->footer(
      "Triggers (-t): B PCT (stop when the buffer is PCT % full), P OFFSET PATTERN (stop on the frame with the hex\n"
      "PATTERN at hex OFFSET from its start), BP PCT OFFSET PATTERN (look for the pattern once the buffer is PCT %\n"
      "full), PB PCT OFFSET PATTERN (after the pattern, stop when PCT % more of the buffer has filled), N (circular:\n"
      "overwrite the oldest frames until stopped). Without -t the capture stops when the buffer is full.\n"
      "Exit status: 0 captured (and everything verified), 1 some IPsec packet or IKE message did not verify,\n"
      "2 usage, configuration, privilege or device errors.");
  add_live_options(c, cap.source);
  c->add_option("-b,--buffer", cap.buffer_mb, "capture buffer in MB, 1 to 1000 (default 1)")
      ->check(CLI::Range(1u, 1000u));
  add_trigger_options(c, cap.triggers, "capture buffer", true);
  c->add_option("-o,--output", cap.output, "capture file to write (default ipsentry-DATE-TIME.pcapng)");
  c->add_flag("--pcap", cap.pcap, "write classic pcap instead of pcapng (no verdict comments)");
  c->add_flag("--embed-keys", cap.embed_keys,
              "put the ESP SAs' keys in the pcapng file (Decryption Secrets Block) so it travels with them");
  c->add_option("--temp-dir", cap.temp_dir,
                "back the buffer with a file in this directory and write the capture there before moving it to -o");
  add_key_options(c, cap.keys, cap_keys_from);
  add_audit_options(c, cap.audit);
  c->add_flag("--live", cap.live, "print each IPsec packet and IKE message as it is verified");
  c->add_flag("!--no-status", cap.status, "no status line on stderr");

  auto* cfg_cmd = app.add_subcommand("config", "check a configuration, or import one from other formats");
  cfg_cmd->require_subcommand(1);
  ConfigCheckOptions cfg_check;
  auto* cfg_check_cmd =
      cfg_cmd->add_subcommand("check", "validate a configuration and print its SAs and the effective, ordered policy");
  cfg_check_cmd->add_option("file", cfg_check.file, "YAML configuration")->required();
  ConfigImportOptions cfg_import;
  std::vector<std::string> ipsec6_files;
  auto* cfg_import_cmd = cfg_cmd->add_subcommand("import", "convert ipsec6 .spd/.sad files to ipsentry YAML");
  cfg_import_cmd->add_option("--ipsec6", ipsec6_files, "the ipsec6 policy and SA files (written by `ipsec6 s NAME`)")
      ->expected(2)
      ->type_name("SPD SAD")
      ->required();
  cfg_import_cmd->add_option("-o,--output", cfg_import.output, "YAML file to write (default: standard output)");
  cfg_import_cmd->add_option("--tunnel-local", cfg_import.tunnel_local,
                             "our tunnel endpoint address, needed for TUNNEL policies' outbound SAs");

  ipsentry::enforce::EnforceOptions enf;
  bool enf_cleanup = false;
  bool enf_print_policy = false;
  auto* en = app.add_subcommand("enforce", "protect and check traffic inline through NFQUEUE with a configuration");
  en->footer(
      "Installs iptables chains IPSENTRY-* (raw PREROUTING, mangle OUTPUT/FORWARD/INPUT) that queue what the\n"
      "policy protects or blocks, puts them back if someone changes them, and removes them on SIGINT/SIGTERM.\n"
      "SIGHUP reloads the configuration (SAs whose keys are unchanged keep their sequence numbers and replay\n"
      "windows, even when renamed). One enforcement per network namespace and per --state-dir. Fail-closed: if\n"
      "ipsentry dies, the rules stay and matching traffic is dropped until a restart or --cleanup. Needs\n"
      "CAP_NET_ADMIN.");
  auto* en_cfg =
      en->add_option("-c,--config", enf.config, "YAML configuration: policies and SAs")->check(CLI::ExistingFile);
  en->add_option("--queue", enf.queue, "first NFQUEUE queue number (default 0)")->check(CLI::Range(0, 65000));
  en->add_option("--queues", enf.queues, "queues and worker threads (NFQUEUE balancing; default 1)")
      ->check(CLI::Range(1, 64));
  en->add_flag("--fail-open", enf.fail_open,
               "if ipsentry stops or falls behind, let traffic pass UNPROTECTED instead of dropping it");
  en->add_option("--socket", enf.socket, "statistics socket (root-only)");
  en->add_option("--mtu", enf.mtu, "path MTU for the TCP MSS clamp (default: smallest interface MTU)")
      ->check(CLI::Range(1280, 65535));
  en->add_flag("!--no-mss-clamp", enf.mss_clamp, "do not clamp the TCP MSS of protected connections");
  en->add_option("--state-dir", enf.state_dir,
                 "where sequence numbers and replay windows are recorded across restarts (default /var/lib/ipsentry)");
  en->add_option("--save-keys", enf.save_keys,
                 "write the keys IKE negotiates into DIR as Wireshark's ikev2_decryption_table and esp_sa files "
                 "(mode 0600), updated at every rekey, for `verify --keys-from` and tshark; without it no key is "
                 "written anywhere")
      ->type_name("DIR");
  en->add_option("--ike-fragment-size", enf.ike_fragment_size,
                 "largest IP datagram of an IKE message once both peers support IKE fragmentation (RFC 7383); larger "
                 "encrypted messages go as fragments (default 1280, as strongSwan's; 0: never fragment and do not "
                 "announce support)")
      ->check(CLI::Range(0, 65535) & !CLI::Range(1, 575));
  en->add_option_function<std::string>(
        "--ike-retransmit",
        [&enf](const std::string& text) { enf.ike_retransmit = ipsentry::enforce::parse_ike_retransmit(text); },
        "IKE retransmission as strongSwan's retransmit_timeout, retransmit_base, retransmit_tries: a request is "
        "sent again after TIMEOUT x BASE^n seconds, TRIES times, then the IKE SA is given up; the whole wait is "
        "also how long dead-peer detection and a request policy's fallback take (default 4,1.8,5: 165 s)")
      ->type_name("TIMEOUT,BASE,TRIES")
      ->check([](const std::string& text) {
        try {
          (void)ipsentry::enforce::parse_ike_retransmit(text);
          return std::string();
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
      });
  add_crypto_option(en, enf.crypto);
  en->add_flag("--print-policy", enf_print_policy, "print the effective policy at start");
  en->add_flag("--cleanup", enf_cleanup,
               "remove the rules and socket left behind by an enforcement that died (refused while one runs in this "
               "network namespace)")
      ->excludes(en_cfg);

  StatsOptions stats;
  auto* st = app.add_subcommand("stats", "print the statistics of the running enforcement (IP Security Monitor)");
  st->add_option("--socket", stats.socket, "statistics socket of the enforcement");
  st->add_flag("--json", stats.json, "the raw JSON snapshot");
  st->add_option("-w,--watch", stats.watch, "refresh every S seconds (the Monitor's refresh interval)")
      ->check(CLI::Range(0.2, 3600.0));

  TuiOptions tui_opt;
  std::vector<std::string> tui_keys_from;
  auto* tu =
      app.add_subcommand("tui", "browse a capture, watch an interface or attach to enforcement in a terminal UI");
  tu->footer(
      "  ipsentry tui CAPTURE [-c CONFIG]     a capture file (indexed in the background)\n"
      "  ipsentry tui -i IFACE [-c CONFIG]    live: the capture options above apply; -t and --stop-on stop\n"
      "                                       the capture (nothing is overwritten: -t N is 'capture' only)\n"
      "  ... --policy CONFIG [--as ADDR]      a capture or live: each frame judged against the policies\n"
      "                                       (verdict column, filter 'verdict == cleartext-leak', statistics)\n"
      "  ipsentry tui --attach [--socket P]   the SA monitor and statistics of a running enforcement\n"
      "Press ? inside for every key and the display filter language.");
  tu->add_option("capture", tui_opt.capture, "pcap or pcapng file (may be gzip-compressed)");
  add_key_options(tu, tui_opt.keys, tui_keys_from);
  add_audit_options(tu, tui_opt.audit);
  add_live_options(tu, tui_opt.source);
  tu->add_option("-b,--buffer", tui_opt.memory_mb,
                 "live: MB kept for browsing (frames and 72 bytes of index each); capturing stops when full "
                 "(default 256)")
      ->check(CLI::Range(1u, 65536u));
  add_trigger_options(tu, tui_opt.triggers, "-b buffer", false);
  tu->add_flag("--attach", tui_opt.attach, "attach to the running enforcement's statistics socket");
  tu->add_option("--socket", tui_opt.socket,
                 "with --attach: the statistics socket (default /run/ipsentry/enforce.sock)");
  tu->add_option("--refresh", tui_opt.refresh, "SA monitor and statistics refresh interval in seconds (default 15)")
      ->check(CLI::Range(1.0, 3600.0));
  tu->add_option("-Y,--display-filter", tui_opt.display_filter, "start with this display filter");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*v) {
    collect_imports(verify_keys_from, verify.keys);
    verify.time = time_format == "abs"     ? TimeFormat::absolute
                  : time_format == "epoch" ? TimeFormat::epoch
                                           : TimeFormat::relative;
    return run_verify(verify);
  }
  if (*s) {
    collect_imports(show_keys_from, show.keys);
    return run_show(show);
  }
  if (*ifs) return run_interfaces();
  if (*c) {
    collect_imports(cap_keys_from, cap.keys);
    return run_capture(cap);
  }
  if (*en) {
    if (enf_cleanup) return run_enforce_cleanup(enf.socket, enf.run_dir);
    if (enf.config.empty()) {
      fmt::print(stderr, "ipsentry: error: enforce needs -c CONFIG (or --cleanup)\n");
      return kExitUsage;
    }
    return run_enforce(enf, enf_print_policy);
  }
  if (*st) return run_stats(stats);
  if (*tu) {
    collect_imports(tui_keys_from, tui_opt.keys);
    return run_tui(tui_opt);
  }
  if (*cfg_check_cmd) return run_config_check(cfg_check);
  if (*cfg_import_cmd) {
    cfg_import.spd = ipsec6_files.at(0);
    cfg_import.sad = ipsec6_files.at(1);
    return run_config_import(cfg_import);
  }
  if (*p) {
    collect_imports(protect_keys_from, protect.keys);
    return run_protect(protect);
  }
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // The subcommands report their own errors; what escapes them still gets
  // a message and the usage exit status rather than an abort.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
}
