// Text tables whose columns fit what they hold: the SA tables of `verify`,
// `config check`, `stats` and the TUI, and the policy of `config check`.
// Widths count display columns (one per code point, which holds for the
// text ipsentry writes: ASCII, "→", "…", box lines), so a long IPv6
// address, an ICMPv6 type range or an unusual word widens its column
// instead of shifting every column after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ipsentry::dissect {

/// Bytes of the UTF-8 sequence that starts with `lead`.
[[nodiscard]] constexpr std::size_t utf8_length(char lead) noexcept {
  const auto c = static_cast<unsigned char>(lead);
  return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/// Display columns of UTF-8 text: one per code point.
[[nodiscard]] std::size_t display_width(std::string_view text) noexcept;

enum class Align : std::uint8_t { left, right };

struct TableColumn {
  std::string_view title;
  Align align = Align::left;
};

/// The table as lines: a title line (left out when every title is empty),
/// then one line per row. Each column is as wide as its widest cell or
/// title, the columns one space apart, every line after `indent` spaces.
/// The last column is not padded: a long last cell (a reason, a list of
/// SAs) runs on without moving anything. Missing cells are empty.
[[nodiscard]] std::vector<std::string> text_table(const std::vector<TableColumn>& columns,
                                                  const std::vector<std::vector<std::string>>& rows,
                                                  std::size_t indent = 0);

}  // namespace ipsentry::dissect
