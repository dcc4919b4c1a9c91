// Importers for the key formats users already have.
//
//   wireshark   Wireshark's esp_sa UAT file (Preferences > Protocols > ESP)
//   tcpdump     a tcpdump -E secrets file ("0xSPI@dst algo:secret" per line)
//   tcpdump-inline  the argument of tcpdump -E itself
//   xfrm        the output of `ip xfrm state` (keys are shown with `ip -s`)
//   wireshark-ikev1 / wireshark-ikev2  Wireshark's IKE decryption tables
//   strongswan-log  charon's log with `ike 4` (its SKEYSEED/SKEYID key dumps)
//
// Each importer returns SAs exactly as if they had been written in YAML, and
// names every SA "<file>:<line>" so that verdicts point back to their source.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

enum class KeyFormat {
  wireshark_esp_sa,
  tcpdump,
  tcpdump_inline,
  xfrm,
  wireshark_ikev1,
  wireshark_ikev2,
  strongswan_log
};

[[nodiscard]] std::optional<KeyFormat> parse_key_format(std::string_view name) noexcept;
[[nodiscard]] const char* key_format_names() noexcept;

/// The most bytes read from a key export: charon logs with key dumps are the
/// largest; anything bigger is refused rather than read into memory.
inline constexpr std::size_t kMaxKeyExport = std::size_t{256} << 20;

/// Reads `source` (a path, or the secret text itself for tcpdump-inline) and
/// converts it. Throws ConfigError with the line of the offending entry.
[[nodiscard]] Config import_keys(KeyFormat format, const std::string& source);

[[nodiscard]] Config import_wireshark_esp_sa(const std::string& text, const std::string& name);
[[nodiscard]] Config import_tcpdump(const std::string& text, const std::string& name);
[[nodiscard]] Config import_xfrm(const std::string& text, const std::string& name);
[[nodiscard]] Config import_wireshark_ikev1(const std::string& text, const std::string& name);
[[nodiscard]] Config import_wireshark_ikev2(const std::string& text, const std::string& name);
/// IKE SAs from the key dumps in a charon log. charon does not log SPIs
/// with its keys, so the SAs carry none; ipsentry matches them to the IKE
/// SAs of a capture by the messages they authenticate and decrypt.
[[nodiscard]] Config import_strongswan_log(const std::string& text, const std::string& name);

}  // namespace ipsentry::filters
