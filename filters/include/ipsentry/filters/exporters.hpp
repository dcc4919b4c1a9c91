// Writing SAs in other tools' formats, so keys travel with a capture.
//
// Only on the user's explicit request (`capture --embed-keys`): these
// functions put key material in the text they return.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

/// One record of Wireshark's esp_sa table (the form a pcapng Decryption
/// Secrets Block of type ESP SA carries): "IPv4","src","dst","0xSPI",
/// "encryption","0xkey","authentication","0xkey". nullopt with `why` set
/// when Wireshark has no name for the SA's algorithms or the SA is AH.
[[nodiscard]] std::optional<std::string> to_wireshark_esp_sa(const SaConfig& sa, std::string& why);

/// The records of every SA that can be written, one per line; `skipped`
/// receives a sentence for each one that cannot.
[[nodiscard]] std::string to_wireshark_esp_sa(const std::vector<SaConfig>& sas, std::vector<std::string>& skipped);

}  // namespace ipsentry::filters
