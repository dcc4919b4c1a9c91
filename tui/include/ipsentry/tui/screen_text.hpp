// The text of the SA monitor, statistics and help screens, built from a
// capture's SAD and counters or from an enforcement's statistics snapshot,
// so that both sources show the same table the same way.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ipsentry/dissect/text_table.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "ipsentry/tui/model.hpp"

namespace ipsentry::tui {

struct SaLine {
  std::string name;
  std::string spi;
  std::string direction;
  std::string peers;
  std::string protocol;
  std::string mode;
  std::string algorithms;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t errors = 0;
  std::string replay;    // "top 12, 12/64 in window" or "sent up to 40"
  std::string lifetime;  // what is left, or "unlimited"
  std::string state;
};

struct StatSection {
  std::string title;
  std::vector<std::pair<std::string, std::string>> rows;
};

[[nodiscard]] std::vector<SaLine> sa_lines_from_sad(const ipsec::Sad& sad);
/// From `ipsentry stats --json` (the enforcement snapshot).
[[nodiscard]] std::vector<SaLine> sa_lines_from_snapshot(const nlohmann::json& snapshot);
/// The SA table of the TUI's SA monitor and of `ipsentry stats`: a title line, then one per SA.
[[nodiscard]] std::vector<std::string> sa_table(const std::vector<SaLine>& lines);

[[nodiscard]] std::vector<StatSection> stat_sections_from_model(const Statistics& s);
/// Empty without a "quick_mode" object; throws nlohmann::json::exception
/// when it is there but incomplete (another version's snapshot).
[[nodiscard]] std::vector<StatSection> stat_sections_from_snapshot(const nlohmann::json& snapshot);

/// The IP Security Monitor's Main Mode table of an enforcement that
/// negotiates (the snapshot's "ike" member), as name/value rows; empty
/// without IKE.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> main_mode_rows(const nlohmann::json& snapshot);
/// The IKE SAs of an enforcement (peer, identities, algorithms, state, age,
/// time to rekey) and then their child SAs, each naming its IKE SA, as
/// text tables for `ipsentry stats` and the TUI; empty without IKE.
[[nodiscard]] std::vector<std::string> ike_sa_table(const nlohmann::json& snapshot);

[[nodiscard]] std::vector<std::string> help_text();

// The screens count one column per code point, as the tables do.
using dissect::display_width;
using dissect::utf8_length;

/// Lines of at most `width` columns (one per code point): a longer line
/// breaks at spaces, and what follows is indented to where its text starts
/// after the key column ("  f n N        find …"), so a two-column text
/// stays one at 80 columns. A word longer than the room is cut.
[[nodiscard]] std::vector<std::string> wrap_lines(const std::vector<std::string>& lines, std::size_t width);

}  // namespace ipsentry::tui
