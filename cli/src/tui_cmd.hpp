// `ipsentry tui`: browse a capture, watch an interface, or attach to a
// running enforcement in the terminal interface.
#pragma once

#include <cstdint>
#include <string>

#include "capture.hpp"
#include "common.hpp"

namespace ipsentry::cli {

struct TuiOptions {
  std::string capture;  // offline
  bool attach = false;
  std::string socket;
  KeySources keys;
  AuditSources audit;        // --policy --as (a capture file or live)
  LiveArgs source;           // -i -n -f -F --ipsec-only -s -B --no-promiscuous -L --count
  unsigned memory_mb = 256;  // -b: frame bytes kept in a live session
  TriggerArgs triggers;      // -t --stop-on --after --after-time (live)
  double refresh = 15;
  std::string display_filter;  // -Y
};

int run_tui(const TuiOptions& options);

}  // namespace ipsentry::cli
