#include "common.hpp"

#include <fmt/format.h>

#include <filesystem>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/pcapng_writer.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/importers.hpp"
#include "ipsentry/filters/key_hygiene.hpp"
#include "ipsentry/ike/analyzer.hpp"

namespace ipsentry::cli {

filters::Config load_keys(const KeySources& sources, std::vector<std::string>& described) {
  filters::Config all;
  for (const auto& path : sources.configs) {
    all.merge(filters::load_config(path));
    described.push_back(path);
  }
  for (const auto& [format, file] : sources.imports) {
    auto f = filters::parse_key_format(format);
    if (!f) {
      throw filters::ConfigError(
          "--keys-from", 0, "",
          fmt::format("unknown key format '{}' (known: {})", format, filters::key_format_names()));
    }
    all.merge(filters::import_keys(*f, file));
    if (*f != filters::KeyFormat::tcpdump_inline) {
      if (auto w = filters::exposed_key_file(file)) all.warnings.push_back(*w);
    }
    described.push_back(fmt::format("{} ({})", *f == filters::KeyFormat::tcpdump_inline ? "tcpdump -E" : file, format));
  }
  return all;
}

filters::Config load_keys_for(const KeySources& sources, const std::string& capture_path,
                              std::vector<std::string>& described) {
  if (!sources.configs.empty() || !sources.imports.empty()) return load_keys(sources, described);
  filters::Config all;
  capture::FileSource src(capture_path);
  dissect::Frame frame;
  (void)src.next(frame);  // the blocks before the first frame are parsed on the way
  std::size_t blocks = 0;
  for (const auto& s : src.parser().secrets()) {
    if (s.type != capture::kSecretsEspSa) continue;
    const std::string name = fmt::format("{} (embedded ESP secrets)", capture_path);
    all.merge(filters::import_wireshark_esp_sa(std::string(reinterpret_cast<const char*>(s.data.data()), s.data.size()),
                                               name));
    ++blocks;
  }
  if (blocks != 0) described.push_back(fmt::format("{} SAs embedded in {}", all.sas.size(), capture_path));
  return all;
}

std::unique_ptr<PolicyAuditSetup> load_policy_audit(const AuditSources& sources, filters::Config& keys,
                                                    std::vector<std::string>& described) {
  auto setup = std::make_unique<PolicyAuditSetup>();
  setup->config = filters::load_config(sources.policy);
  filters::LocalAddresses vantage;
  for (const auto& text : sources.vantage) {
    auto a = dissect::IpAddr::parse(text);
    if (!a) throw filters::ConfigError("--as", 0, "", fmt::format("'{}' is not an IPv4 or IPv6 address", text));
    vantage.addresses.push_back(*a);
  }
  if (vantage.addresses.empty()) vantage.addresses = setup->config.local_addresses;
  if (vantage.addresses.empty()) {
    throw filters::ConfigError(
        sources.policy, 0, "interfaces.local",
        "the policy audit needs the host or gateway whose policy this is: give --as ADDRESS (repeatable) or "
        "interfaces.local in the configuration");
  }
  for (const auto& sa : setup->config.sas) {
    const bool known =
        std::any_of(keys.sas.begin(), keys.sas.end(), [&](const filters::SaConfig& k) { return k.covers(sa); });
    if (!known) keys.sas.push_back(sa.clone());
  }
  for (const auto& w : setup->config.warnings) {
    if (std::find(keys.warnings.begin(), keys.warnings.end(), w) == keys.warnings.end()) keys.warnings.push_back(w);
  }
  setup->audit = std::make_unique<capture::PolicyAudit>(setup->config, std::move(vantage), sources.policy);
  described.push_back(fmt::format("{} (policy audit as {})", sources.policy, setup->audit->vantage()));
  return setup;
}

std::string audit_vantage_warning(const capture::PolicyAudit& audit, std::uint64_t frames) {
  if (frames == 0 || audit.vantage_frames() != 0) return {};
  return fmt::format(
      "the policy audit's vantage point ({}) sent or received none of the {} frames: only traffic passing through it "
      "was judged; is --as (or interfaces.local) the host or gateway this capture was taken at?",
      audit.vantage(), frames);
}

std::string output_is_input(const std::string& option, const std::string& output, const std::string& capture,
                            const KeySources& keys) {
  auto same = [&](const std::string& input) {
    std::error_code ec;
    return std::filesystem::equivalent(output, input, ec) && !ec;
  };
  auto refuse = [&](const std::string& what, const std::string& input) {
    return fmt::format("{} '{}' is {} '{}'{}; writing it would replace it: choose another file", option, output, what,
                       input, output == input ? "" : " (the same file by another name)");
  };
  if (same(capture)) return refuse("the input capture", capture);
  for (const auto& c : keys.configs) {
    if (same(c)) return refuse("the configuration", c);
  }
  for (const auto& [format, file] : keys.imports) {
    if (filters::parse_key_format(format) != filters::KeyFormat::tcpdump_inline && same(file)) {
      return refuse("the key file", file);
    }
  }
  return {};
}

std::size_t learn_ike_sas(const std::string& capture_path, filters::Config& cfg) {
  if (cfg.ike_sas.empty()) return 0;
  std::vector<filters::IkeSaConfig> keys;
  for (const auto& k : cfg.ike_sas) keys.push_back(k.clone());
  ike::Analyzer analyzer(std::move(keys));
  capture::FileSource src(capture_path);
  dissect::Frame frame;
  dissect::Packet p;
  while (src.next(frame)) {
    dissect::dissect_frame(frame, p);
    if (p.is_ike()) analyzer.observe(frame, p);
    src.release_before(frame.file_offset);
  }
  std::size_t added = 0;
  for (auto& sa : analyzer.learned_sas()) {
    // A configured SA for the same SPI and destination wins over a learned one.
    const bool configured =
        std::any_of(cfg.sas.begin(), cfg.sas.end(), [&](const filters::SaConfig& c) { return c.covers(sa); });
    if (configured) continue;
    cfg.sas.push_back(std::move(sa));
    ++added;
  }
  for (const auto& n : analyzer.notes()) cfg.warnings.push_back(n);
  return added;
}

}  // namespace ipsentry::cli
