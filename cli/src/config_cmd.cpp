#include "config_cmd.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "common.hpp"
#include "ipsentry/capture/frame_text.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "ipsentry/filters/ipsec6.hpp"
#include "ipsentry/filters/key_hygiene.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::cli {

namespace fs = std::filesystem;

namespace {

std::string lifetime_str(const filters::Lifetime& l) {
  std::string out;
  auto part = [&](const char* what, std::uint64_t soft, std::uint64_t hard) {
    if (soft == 0 && hard == 0) return;
    if (!out.empty()) out += ", ";
    out +=
        fmt::format("{} soft {} hard {}", what, soft ? std::to_string(soft) : "-", hard ? std::to_string(hard) : "-");
  };
  part("seconds", l.soft_seconds, l.seconds);
  part("bytes", l.soft_bytes, l.bytes);
  part("packets", l.soft_packets, l.packets);
  return out.empty() ? "unlimited" : out;
}

// The negotiate side: each profile as loading completed it (defaults,
// PRFs, PFS groups), never a key.
void print_ike_profiles(const filters::Config& cfg) {
  if (cfg.ike_profiles.empty()) return;
  fmt::print("IKE profiles (keys not shown):\n");
  for (const auto& p : cfg.ike_profiles) fmt::print("{}", p.describe());
  fmt::print("\n");
}

}  // namespace

int run_config_check(const ConfigCheckOptions& o) {
  try {
    filters::Config cfg = filters::load_config(o.file);
    // The same addresses enforcement uses, so that the policy shown is the one applied.
    const bool from_host = cfg.local_addresses.empty();
    const filters::Spd spd(cfg, filters::LocalAddresses::for_config(cfg));
    for (const auto& w : cfg.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);
    for (const auto& w : filters::shared_nonce_keys(cfg)) {
      fmt::print(stderr, "ipsentry: warning: {} (enforce refuses this configuration)\n", w);
    }
    fmt::print("{}: valid: {} SA(s), {} IKE SA(s), {}{} polic{}\n\n", o.file, cfg.sas.size(), cfg.ike_sas.size(),
               cfg.ike_profiles.empty() ? "" : fmt::format("{} IKE profile(s), ", cfg.ike_profiles.size()),
               cfg.policies.size(), cfg.policies.size() == 1 ? "y" : "ies");
    if (!cfg.sas.empty()) {
      fmt::print("SAs (keys not shown):\n");
      std::vector<std::vector<std::string>> rows;
      for (const auto& sa : cfg.sas) {
        rows.push_back({sa.name, sa.spi ? fmt::format("0x{:08x}", *sa.spi) : "any", to_string(sa.protocol),
                        sa.src ? sa.src->str() : "any", sa.dst ? sa.dst->str() : "any", to_string(spd.sa_direction(sa)),
                        to_string(spd.sa_mode(sa)), capture::sa_algorithms(sa), fmt::format("{}", sa.replay_window),
                        lifetime_str(sa.lifetime)});
      }
      const std::vector<dissect::TableColumn> cols{
          {"name"},    {"spi"},        {"proto"},
          {"src"},     {"dst"},        {"direction"},
          {"mode"},    {"algorithms"}, {"replay window", dissect::Align::right},
          {"lifetime"}};
      for (const auto& line : dissect::text_table(cols, rows, 2)) fmt::print("{}\n", line);
      for (const auto& sa : cfg.sas) {
        if (!sa.encap) continue;
        const auto& e = *sa.encap;
        const bool out = spd.sa_direction(sa) == filters::Direction::outbound;
        fmt::print("  {} is carried in UDP (RFC 3948), ports {} -> {}{}\n", sa.name, e.sport, e.dport,
                   !out                       ? ""
                   : e.keepalive_seconds == 0 ? "; the peer's NAT-mapped port is learned; no NAT keepalives"
                                              : fmt::format("; the peer's NAT-mapped port is learned; NAT keepalive "
                                                            "after {} s idle",
                                                            e.keepalive_seconds));
      }
      fmt::print("\n");
    }
    print_ike_profiles(cfg);
    if (from_host) fmt::print("(no interfaces.local in the file: \"me\" is this host's addresses)\n");
    fmt::print("{}", spd.describe());
    return kExitOk;
  } catch (const filters::ConfigError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
}

int run_config_import(const ConfigImportOptions& o) {
  try {
    filters::Ipsec6Options opts;
    if (!o.output.empty()) {
      fs::path dir = fs::path(o.output).parent_path();
      opts.output_dir = dir.empty() ? fs::path(".") : dir;
    }
    if (!o.tunnel_local.empty()) {
      opts.tunnel_local = dissect::IpAddr::parse(o.tunnel_local);
      if (!opts.tunnel_local) {
        fmt::print(stderr, "ipsentry: error: --tunnel-local: '{}' is not an address\n", o.tunnel_local);
        return kExitUsage;
      }
    }
    filters::Ipsec6Import imp = filters::import_ipsec6(o.spd, o.sad, opts);
    for (const auto& w : imp.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);
    if (o.output.empty()) {
      fmt::print("{}", imp.yaml);
      return kExitOk;
    }
    const fs::path tmp = o.output + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << imp.yaml;
      out.close();
      if (!out) {
        std::error_code ec;
        fs::remove(tmp, ec);
        fmt::print(stderr, "ipsentry: error: cannot write {}\n", o.output);
        return kExitUsage;
      }
    }
    std::error_code ec;
    fs::rename(tmp, o.output, ec);
    if (ec) {
      fs::remove(tmp, ec);
      fmt::print(stderr, "ipsentry: error: cannot write {}: {}\n", o.output, ec.message());
      return kExitUsage;
    }
    fmt::print(stderr, "ipsentry: wrote {} (check it with `ipsentry config check {}`)\n", o.output, o.output);
    return kExitOk;
  } catch (const filters::ConfigError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
}

}  // namespace ipsentry::cli
