#include "common.hpp"

#include <fmt/format.h>

#include "ipsentry/filters/importers.hpp"

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
      throw filters::ConfigError("--keys-from", 0, "",
                                 fmt::format("unknown key format '{}' (known: {})", format, filters::key_format_names()));
    }
    all.merge(filters::import_keys(*f, file));
    described.push_back(fmt::format("{} ({})", *f == filters::KeyFormat::tcpdump_inline ? "tcpdump -E" : file, format));
  }
  return all;
}

}  // namespace ipsentry::cli
