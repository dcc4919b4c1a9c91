// `ipsentry enforce` (inline IPsec through NFQUEUE), `ipsentry enforce
// --cleanup` and `ipsentry stats`.
#pragma once

#include <string>

#include "ipsentry/enforce/runner.hpp"

namespace ipsentry::cli {

int run_enforce(const enforce::EnforceOptions& options, bool print_policy);
/// Removes rules (and the socket) left behind by an enforcement that died.
int run_enforce_cleanup(const std::string& socket_path, const std::string& run_dir = "/run/ipsentry");

struct StatsOptions {
  std::string socket = enforce::kDefaultSocket;
  bool json = false;
  double watch = 0;  // seconds between refreshes; 0: once
};
int run_stats(const StatsOptions& options);

}  // namespace ipsentry::cli
