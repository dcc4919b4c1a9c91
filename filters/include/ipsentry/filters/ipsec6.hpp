// Import of the Windows Server 2003 ipsec6 manual-keying files (`ipsec6 s
// NAME` writes NAME.spd and NAME.sad; `ipsec6 l NAME` loads them).
//
// Each file is a list of entries, each terminated by a semicolon, fields
// separated by white space in the documented order, entries in decreasing
// numerical order. Header lines (a title, the field names and a line of
// underscores) are skipped.
//
//   .spd: Policy RemoteIPAddr LocalIPAddr Protocol RemotePort LocalPort
//         IPSecProtocol IPSecMode RemoteGWIPAddr SABundleIndex Direction
//         Action InterfaceIndex
//   .sad: SAEntry SPI SADestIPAddr DestIPAddr SrcIPAddr Protocol DestPort
//         SrcPort AuthAlg KeyFile Direction SecPolicyIndex
//
// The selector fields of a policy may be preceded by "-" (the value is the
// policy's own) or "+" (taken from each packet); both select the same
// packets here. The result is the equivalent ipsentry YAML configuration.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"

namespace ipsentry::filters {

struct Ipsec6Options {
  /// Where the YAML will be written: key files are referred to relative to it.
  std::filesystem::path output_dir = ".";
  /// Our tunnel endpoint, needed for outbound SAs of TUNNEL policies (the
  /// files name only the remote gateway).
  std::optional<dissect::IpAddr> tunnel_local;
};

struct Ipsec6Import {
  std::string yaml;                   // a complete configuration, loadable by load_config
  std::vector<std::string> warnings;  // deprecated algorithms, ignored fields
};

/// Reads and converts the two files. Throws ConfigError naming the file,
/// the line and the field of the first problem.
[[nodiscard]] Ipsec6Import import_ipsec6(const std::filesystem::path& spd, const std::filesystem::path& sad,
                                         const Ipsec6Options& options);

/// The same from text already read (`spd_name`/`sad_name` are used in
/// messages; key files are resolved against `key_dir`).
[[nodiscard]] Ipsec6Import import_ipsec6_text(const std::string& spd_text, const std::string& spd_name,
                                              const std::string& sad_text, const std::string& sad_name,
                                              const std::filesystem::path& key_dir, const Ipsec6Options& options);

}  // namespace ipsentry::filters
