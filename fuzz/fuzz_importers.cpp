// The key importers (Wireshark esp_sa and IKE tables, tcpdump -E, ip xfrm
// state, strongSwan charon logs): any text
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
    switch (data[0] % 6) {
      case 0: (void)import_wireshark_esp_sa(text, "esp_sa"); break;
      case 1: (void)import_tcpdump(text, "secrets"); break;
      case 2: (void)import_xfrm(text, "xfrm"); break;
      case 3: (void)import_wireshark_ikev1(text, "ikev1_decryption_table"); break;
      case 4: (void)import_wireshark_ikev2(text, "ikev2_decryption_table"); break;
      default: (void)import_strongswan_log(text, "charon.log"); break;
    }
  } catch (const ConfigError&) {
  }
  return 0;
}
