// Capture triggers: Netcap's buffer and pattern triggers, and the IPsec
// events ipsentry can stop on.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::capture {

class TriggerError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct Trigger {
  enum class Kind : std::uint8_t {
    none,                 // stop when the buffer is full
    buffer,               // B PCT
    pattern,              // P OFFSET PATTERN
    buffer_then_pattern,  // BP PCT OFFSET PATTERN: look for the pattern once the buffer reached PCT
    pattern_then_buffer,  // PB PCT OFFSET PATTERN: after the pattern, stop when PCT more has filled
    circular,             // N: overwrite the oldest frames, run until stopped
  };
  Kind kind = Kind::none;
  unsigned percent = 0;
  std::uint32_t offset = 0;
  std::vector<std::uint8_t> pattern;

  /// Parses the words after -t: "B 50", "P 0x17 0x3a", "BP 50 17 3a", "N".
  /// Offsets are hexadecimal (0x optional), patterns an even number of hex
  /// digits. Throws TriggerError naming the problem.
  [[nodiscard]] static Trigger parse(const std::vector<std::string>& words);

  /// Whether the buffer overwrites its oldest frames until the trigger fires.
  [[nodiscard]] bool circular_before_firing() const noexcept { return kind != Kind::none && kind != Kind::buffer; }
  [[nodiscard]] bool has_pattern() const noexcept { return !pattern.empty(); }
  [[nodiscard]] bool matches(dissect::Bytes frame) const noexcept;
  /// "P: 0x3a at offset 0x17" and the like.
  [[nodiscard]] std::string describe() const;
};

/// A trigger followed over the frames of one capture, as they are stored:
/// the state machine `capture` and `tui -i` share. `used` and `capacity`
/// are the buffer's fill after the frame went in, `size` what the frame
/// took of it.
class TriggerWatch {
 public:
  enum class Step : std::uint8_t {
    none,
    fire,           // this frame is the trigger frame; go on (PB)
    fire_and_stop,  // this frame is the trigger frame; stop
    stop,           // PB: enough has filled since the trigger frame
  };
  explicit TriggerWatch(Trigger t) : t_(std::move(t)) {}
  Step stored(dissect::Bytes frame, std::size_t used, std::size_t capacity, std::size_t size) noexcept;
  [[nodiscard]] bool fired() const noexcept { return fired_; }
  [[nodiscard]] const Trigger& trigger() const noexcept { return t_; }

 private:
  Trigger t_;
  bool level_reached_ = false;  // BP: the buffer reached the level once
  bool fired_ = false;
  std::uint64_t since_fire_ = 0;  // PB: bytes stored after the trigger frame
};

/// --after N / --after-time S: what a capture keeps after a --stop-on event.
struct AfterEvent {
  std::uint64_t frames = 0;  // --after N
  std::int64_t ns = -1;      // --after-time S; >= 0 selects it
  /// Whether frame `seq` at `ts_ns` lies past the window that follows the
  /// event frame `event_seq` at `event_ts`.
  [[nodiscard]] bool beyond(std::uint64_t seq, std::int64_t ts_ns, std::uint64_t event_seq,
                            std::int64_t event_ts) const noexcept {
    if (ns >= 0) return seq > event_seq && ts_ns > event_ts + ns;
    return seq > event_seq + frames;
  }
  /// Whether frame `seq` at `ts_ns` completes that window.
  [[nodiscard]] bool complete(std::uint64_t seq, std::int64_t ts_ns, std::uint64_t event_seq,
                              std::int64_t event_ts) const noexcept {
    if (ns >= 0) return ts_ns > event_ts + ns;
    return seq >= event_seq + frames;
  }
};

/// IPsec events for --stop-on, as bits.
enum StopOn : std::uint32_t {
  kStopIcvFail = 1u << 0,
  kStopDecryptFail = 1u << 1,
  kStopReplay = 1u << 2,
  kStopUnknownSpi = 1u << 3,
  kStopMalformed = 1u << 4,
  kStopIkeFail = 1u << 5,
  // The policy audit's findings (capture --policy).
  kStopCleartextLeak = 1u << 6,
  kStopPolicyMismatch = 1u << 7,
  kStopBlockedSeen = 1u << 8,
};
inline constexpr std::uint32_t kStopAudit = kStopCleartextLeak | kStopPolicyMismatch | kStopBlockedSeen;
/// "icv-fail,replay" -> bits. Throws TriggerError naming an unknown event.
[[nodiscard]] std::uint32_t parse_stop_on(const std::string& list);
[[nodiscard]] std::string stop_on_names(std::uint32_t bits);

}  // namespace ipsentry::capture
