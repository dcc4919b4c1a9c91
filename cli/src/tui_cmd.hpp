// `ipsentry tui`: browse a capture, watch an interface, or attach to a
// running enforcement in the terminal interface.
#pragma once

#include <cstdint>
#include <string>

#include "common.hpp"

namespace ipsentry::cli {

struct TuiOptions {
  std::string capture;    // offline
  std::string interface;  // live: -i
  unsigned index = 0;     // live: -n
  bool attach = false;
  std::string socket;
  KeySources keys;
  std::string filter;       // -f BPF
  std::string filter_file;  // -F
  bool ipsec_only = false;
  std::uint32_t snaplen = 262144;
  unsigned kernel_buffer_mb = 16;
  bool promiscuous = true;
  unsigned memory_mb = 256;  // -b: frame bytes kept in a live session
  std::string duration;      // -L
  std::uint64_t count = 0;   // --count
  double refresh = 15;
  std::string display_filter;  // -Y
};

int run_tui(const TuiOptions& options);

}  // namespace ipsentry::cli
