#include "ipsentry/capture/trigger.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <string_view>

namespace ipsentry::capture {

namespace {

constexpr std::size_t kMaxPattern = 256;

std::string_view strip_0x(std::string_view s) {
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  return s;
}

unsigned parse_percent(const std::string& w) {
  unsigned v = 0;
  std::string_view s = w;
  if (!s.empty() && s.back() == '%') s.remove_suffix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v < 1 || v > 100) {
    throw TriggerError(
        fmt::format("trigger buffer level '{}' must be a percentage from 1 to 100 (25, 50, 75, 100)", w));
  }
  return v;
}

std::uint32_t parse_offset(const std::string& w) {
  std::string_view s = strip_0x(w);
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v > 65535) {
    throw TriggerError(fmt::format("trigger offset '{}' must be a hexadecimal number up to 0xffff (e.g. 0x17)", w));
  }
  return v;
}

std::vector<std::uint8_t> parse_pattern(const std::string& w) {
  std::string_view s = strip_0x(w);
  if (s.empty() || s.size() % 2 != 0) {
    throw TriggerError(fmt::format("trigger pattern '{}' must be an even number of hexadecimal digits", w));
  }
  if (s.size() / 2 > kMaxPattern) {
    throw TriggerError(fmt::format("trigger pattern '{}' is longer than {} bytes", w, kMaxPattern));
  }
  std::vector<std::uint8_t> out(s.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto [p, ec] = std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, out[i], 16);
    if (ec != std::errc{} || p != s.data() + 2 * i + 2) {
      throw TriggerError(fmt::format("trigger pattern '{}' has a character that is not a hexadecimal digit", w));
    }
  }
  return out;
}

}  // namespace

Trigger Trigger::parse(const std::vector<std::string>& words) {
  if (words.empty())
    throw TriggerError(
        "-t needs a trigger: B PCT, P OFFSET PATTERN, BP PCT OFFSET PATTERN, PB PCT OFFSET PATTERN or N");
  std::string kind;
  for (char c : words[0]) kind += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto want = [&](std::size_t n, const char* usage) {
    if (words.size() != n) {
      throw TriggerError(fmt::format("trigger {} takes {} (got {} argument{})", kind, usage, words.size() - 1,
                                     words.size() == 2 ? "" : "s"));
    }
  };
  Trigger t;
  if (kind == "B") {
    want(2, "PCT");
    t.kind = Kind::buffer;
    t.percent = parse_percent(words[1]);
  } else if (kind == "P") {
    want(3, "OFFSET PATTERN");
    t.kind = Kind::pattern;
    t.offset = parse_offset(words[1]);
    t.pattern = parse_pattern(words[2]);
  } else if (kind == "BP" || kind == "PB") {
    want(4, "PCT OFFSET PATTERN");
    t.kind = kind == "BP" ? Kind::buffer_then_pattern : Kind::pattern_then_buffer;
    t.percent = parse_percent(words[1]);
    t.offset = parse_offset(words[2]);
    t.pattern = parse_pattern(words[3]);
  } else if (kind == "N") {
    want(1, "no arguments");
    t.kind = Kind::circular;
  } else {
    throw TriggerError(fmt::format("unknown trigger '{}': use B, P, BP, PB or N", words[0]));
  }
  return t;
}

bool Trigger::matches(dissect::Bytes frame) const noexcept {
  if (pattern.empty() || frame.size() < offset || frame.size() - offset < pattern.size()) return false;
  return std::memcmp(frame.data() + offset, pattern.data(), pattern.size()) == 0;
}

std::string Trigger::describe() const {
  std::string pat = "0x";
  for (auto b : pattern) pat += fmt::format("{:02x}", b);
  switch (kind) {
    case Kind::none: return "none (stop when the buffer is full)";
    case Kind::buffer: return fmt::format("B: buffer {}% full", percent);
    case Kind::pattern: return fmt::format("P: {} at offset 0x{:x}", pat, offset);
    case Kind::buffer_then_pattern:
      return fmt::format("BP: {} at offset 0x{:x} once the buffer is {}% full", pat, offset, percent);
    case Kind::pattern_then_buffer:
      return fmt::format("PB: {} at offset 0x{:x}, then {}% more of the buffer", pat, offset, percent);
    case Kind::circular: return "N: circular buffer, until stopped";
  }
  return {};
}

namespace {
struct EventName {
  const char* name;
  std::uint32_t bit;
};
constexpr EventName kEvents[] = {
    {"icv-fail", kStopIcvFail},
    {"decrypt-fail", kStopDecryptFail},
    {"replay", kStopReplay},
    {"unknown-spi", kStopUnknownSpi},
    {"malformed", kStopMalformed},
    {"ike-fail", kStopIkeFail},
    {"cleartext-leak", kStopCleartextLeak},
    {"policy-mismatch", kStopPolicyMismatch},
    {"blocked-seen", kStopBlockedSeen},
};
}  // namespace

std::uint32_t parse_stop_on(const std::string& list) {
  std::uint32_t bits = 0;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    std::string_view w(list.data() + start, (comma == std::string::npos ? list.size() : comma) - start);
    bool found = false;
    for (const auto& e : kEvents) {
      if (w == e.name) {
        bits |= e.bit;
        found = true;
      }
    }
    if (!found) {
      throw TriggerError(fmt::format(
          "unknown --stop-on event '{}' (known: icv-fail, decrypt-fail, replay, unknown-spi, malformed, ike-fail, "
          "and with --policy cleartext-leak, policy-mismatch, blocked-seen)",
          std::string(w)));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return bits;
}

std::string stop_on_names(std::uint32_t bits) {
  std::string out;
  for (const auto& e : kEvents) {
    if ((bits & e.bit) == 0) continue;
    if (!out.empty()) out += ',';
    out += e.name;
  }
  return out;
}

TriggerWatch::Step TriggerWatch::stored(dissect::Bytes frame, std::size_t used, std::size_t capacity,
                                        std::size_t size) noexcept {
  const auto level = [&] { return used * 100 >= static_cast<std::uint64_t>(t_.percent) * capacity; };
  const auto fire = [&](Step s) {
    fired_ = true;
    return s;
  };
  switch (t_.kind) {
    case Trigger::Kind::none:
    case Trigger::Kind::circular: return Step::none;
    case Trigger::Kind::buffer: return !fired_ && level() ? fire(Step::fire_and_stop) : Step::none;
    case Trigger::Kind::pattern: return !fired_ && t_.matches(frame) ? fire(Step::fire_and_stop) : Step::none;
    case Trigger::Kind::buffer_then_pattern:
      level_reached_ = level_reached_ || level();
      return !fired_ && level_reached_ && t_.matches(frame) ? fire(Step::fire_and_stop) : Step::none;
    case Trigger::Kind::pattern_then_buffer:
      if (!fired_) return t_.matches(frame) ? fire(Step::fire) : Step::none;
      since_fire_ += size;
      return since_fire_ * 100 >= static_cast<std::uint64_t>(t_.percent) * capacity ? Step::stop : Step::none;
  }
  return Step::none;
}

}  // namespace ipsentry::capture
