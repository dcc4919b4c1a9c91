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

/// The capture filter of --ipsec-only.
inline constexpr const char* kIpsecFilter = "esp or ah or udp port 500 or udp port 4500";

/// The device of -i NAME or -n INDEX, else the first interface that is up
/// and not a loopback. Throws capture::CaptureError.
[[nodiscard]] std::string choose_device(const std::string& interface, unsigned index);

/// A BPF expression from a file (# comments and line breaks allowed).
/// Throws capture::CaptureError.
[[nodiscard]] std::string read_filter_file(const std::string& path);

/// "01:30:00", "90" (seconds), "1:30" (minutes:seconds) -> seconds; -1 when
/// the text is not a duration.
[[nodiscard]] double parse_duration(const std::string& text);

}  // namespace ipsentry::cli
