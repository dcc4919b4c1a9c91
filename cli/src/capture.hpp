// `ipsentry capture` and `ipsentry interfaces`: live capture with a memory
// buffer, triggers and live verification.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"

namespace ipsentry::cli {

struct CaptureOptions {
  std::string interface;             // -i
  unsigned index = 0;                // -n (1-based), 0: not given
  unsigned buffer_mb = 1;            // -b
  std::vector<std::string> trigger;  // -t words
  std::string stop_on;               // --stop-on list
  std::uint64_t after = 0;           // --after N
  bool after_given = false;
  double after_time = -1;   // --after-time S
  std::string duration;     // -L HH:MM:SS
  std::uint64_t count = 0;  // --count
  std::uint32_t snaplen = 262144;
  std::string filter;       // -f
  std::string filter_file;  // -F
  bool ipsec_only = false;
  std::string output;  // -o
  bool pcap = false;
  bool embed_keys = false;
  std::string temp_dir;
  KeySources keys;
  bool live = false;
  bool status = true;
  unsigned kernel_buffer_mb = 16;
  bool promiscuous = true;
};

int run_capture(const CaptureOptions& options);
int run_interfaces();

/// "01:30:00", "90" (seconds), "1:30" (minutes:seconds) -> seconds; -1 when
/// the text is not a duration.
[[nodiscard]] double parse_duration(const std::string& text);

}  // namespace ipsentry::cli
