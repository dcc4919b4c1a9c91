// `ipsentry capture` and `ipsentry interfaces`: live capture with a memory
// buffer, triggers and live verification.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "ipsentry/capture/live_source.hpp"
#include "ipsentry/capture/trigger.hpp"

namespace ipsentry::cli {

/// What `capture` and `tui -i` share: the interface, what to capture and
/// for how long.
struct LiveArgs {
  std::string interface;    // -i
  unsigned index = 0;       // -n (1-based), 0: not given
  std::string filter;       // -f
  std::string filter_file;  // -F
  bool ipsec_only = false;
  std::uint32_t snaplen = 262144;
  unsigned kernel_buffer_mb = 16;
  bool promiscuous = true;
  std::string duration;     // -L HH:MM:SS
  std::uint64_t count = 0;  // --count
};

/// What `capture` and `tui -i` share: when to stop, Netcap's way and on
/// IPsec events.
struct TriggerArgs {
  std::vector<std::string> trigger;  // -t words
  std::string stop_on;               // --stop-on list
  std::uint64_t after = 0;           // --after N
  bool after_given = false;
  double after_time = -1;  // --after-time S
};

struct Triggers {
  capture::Trigger trigger;
  std::uint32_t stop_on = 0;  // capture::StopOn bits
  capture::AfterEvent after;
};

/// Checks and converts the trigger arguments. Throws capture::TriggerError
/// naming the problem.
[[nodiscard]] Triggers parse_triggers(const TriggerArgs& a);
/// Adds the warning that ICV, decryption and replay events need keys.
void warn_keyless_stop_on(std::uint32_t stop_on, bool have_keys, std::vector<std::string>& warnings);

struct CaptureOptions {
  LiveArgs source;         // -i -n -f -F --ipsec-only -s -B --no-promiscuous -L --count
  unsigned buffer_mb = 1;  // -b
  TriggerArgs triggers;    // -t --stop-on --after --after-time
  std::string output;      // -o
  bool pcap = false;
  bool embed_keys = false;
  std::string temp_dir;
  KeySources keys;
  AuditSources audit;  // --policy --as
  bool live = false;
  bool status = true;
};

int run_capture(const CaptureOptions& options);
int run_interfaces();

/// The capture filter of --ipsec-only.
inline constexpr const char* kIpsecFilter = "esp or ah or udp port 500 or udp port 4500";

/// libpcap options from the arguments, the filter composed of -f / -F and
/// --ipsec-only; the device is left to choose_device(). Throws
/// capture::CaptureError (an unreadable filter file).
[[nodiscard]] capture::LiveOptions live_options(const LiveArgs& a);

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
