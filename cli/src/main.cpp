// ipsentry: IPsec capture, verification and enforcement.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "protect.hpp"
#include "show.hpp"
#include "verify.hpp"
#include "version.hpp"

namespace {

using namespace ipsentry::cli;

void add_key_options(CLI::App* cmd, KeySources& keys, std::vector<std::string>& keys_from) {
  cmd->add_option("-c,--config", keys.configs, "YAML configuration with the SAs (repeatable)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--keys-from", keys_from,
                  "import keys: FORMAT FILE, FORMAT one of wireshark (esp_sa), tcpdump, tcpdump-inline "
                  "(FILE is then the -E argument), xfrm (ip -s xfrm state output), wireshark-ikev1, wireshark-ikev2 "
                  "(Wireshark's IKE decryption tables), strongswan-log (charon log with ike 4); repeatable")
      ->expected(2)
      ->allow_extra_args(false)
      ->type_name("FORMAT FILE");
}

void collect_imports(const std::vector<std::string>& keys_from, KeySources& keys) {
  for (std::size_t i = 0; i + 1 < keys_from.size(); i += 2) keys.imports.emplace_back(keys_from[i], keys_from[i + 1]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ipsentry: IPsec capture, verification and enforcement"};
  app.set_version_flag("--version", std::string("ipsentry ") + kVersion);
  app.require_subcommand(1);

  VerifyOptions verify;
  std::vector<std::string> verify_keys_from;
  std::string time_format = "rel";
  auto* v = app.add_subcommand("verify", "verify the ESP and AH packets of a capture with the given keys");
  v->add_option("capture", verify.capture, "pcap or pcapng file (may be gzip-compressed)")->required();
  add_key_options(v, verify.keys, verify_keys_from);
  v->add_flag("--json", verify.json, "JSON output (fields documented in docs/json-output.md)");
  v->add_flag("-q,--quiet", verify.quiet, "print only the statistics");
  v->add_option("-w,--write-decrypted", verify.write_decrypted,
                "write the cleartext packets (tunnel inner packets, rebuilt transport packets) to this pcap");
  v->add_option("-j,--threads", verify.threads, "worker threads; SAs are spread over them (0: one per core)")
      ->check(CLI::Range(0u, 256u));
  v->add_option("--time", time_format, "time column: rel (since the first frame), abs (UTC), epoch")
      ->check(CLI::IsMember({"rel", "abs", "epoch"}));
  v->add_flag("!--no-progress", verify.progress, "no progress line on stderr");

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*v) {
    collect_imports(verify_keys_from, verify.keys);
    verify.time = time_format == "abs" ? TimeFormat::absolute : time_format == "epoch" ? TimeFormat::epoch : TimeFormat::relative;
    return run_verify(verify);
  }
  if (*s) {
    collect_imports(show_keys_from, show.keys);
    return run_show(show);
  }
  if (*p) {
    collect_imports(protect_keys_from, protect.keys);
    return run_protect(protect);
  }
  return kExitUsage;
}
