// The key importers (Wireshark esp_sa, tcpdump -E, ip xfrm state): any text
// either imports or throws ConfigError. The first byte picks the format.
#include <cstdint>
#include <string>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/importers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsentry::filters;
  if (size < 1 || size > 16384) return 0;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 3) {
      case 0: (void)import_wireshark_esp_sa(text, "esp_sa"); break;
      case 1: (void)import_tcpdump(text, "secrets"); break;
      default: (void)import_xfrm(text, "xfrm"); break;
    }
  } catch (const ConfigError&) {
  }
  return 0;
}
