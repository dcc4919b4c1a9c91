// The YAML configuration loader: any text either loads or throws ConfigError;
// any other exception escaping would end the program, so it is a finding.
#include <cstdint>
#include <string>

#include "ipsentry/filters/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto cfg = ipsentry::filters::parse_config(text, "fuzz.yaml", "/nonexistent-ipsentry-fuzz");
    for (const auto& sa : cfg.sas) (void)sa.describe();
  } catch (const ipsentry::filters::ConfigError&) {
  }
  return 0;
}
