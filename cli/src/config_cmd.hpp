// `ipsentry config check FILE` and `ipsentry config import --ipsec6 SPD SAD`.
#pragma once

#include <string>

namespace ipsentry::cli {

struct ConfigCheckOptions {
  std::string file;
};

struct ConfigImportOptions {
  std::string spd;
  std::string sad;
  std::string output;        // empty: standard output
  std::string tunnel_local;  // our tunnel endpoint for TUNNEL policies
};

/// Validates a configuration and prints its SAs and the effective, ordered
/// policy. Exit 0 when it loads, 2 with the file, line and field otherwise.
int run_config_check(const ConfigCheckOptions& options);

/// Converts ipsec6 .spd/.sad files to an ipsentry YAML configuration.
int run_config_import(const ConfigImportOptions& options);

}  // namespace ipsentry::cli
