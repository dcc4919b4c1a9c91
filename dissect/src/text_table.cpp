#include "ipsentry/dissect/text_table.hpp"

#include <algorithm>

namespace ipsentry::dissect {

std::size_t display_width(std::string_view text) noexcept {
  std::size_t cols = 0;
  for (std::size_t i = 0; i < text.size(); i += utf8_length(text[i])) ++cols;
  return cols;
}

std::vector<std::string> text_table(const std::vector<TableColumn>& columns,
                                    const std::vector<std::vector<std::string>>& rows, std::size_t indent) {
  std::vector<std::size_t> width(columns.size(), 0);
  bool titled = false;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = display_width(columns[c].title);
    titled = titled || !columns[c].title.empty();
  }
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < columns.size() && c < row.size(); ++c) {
      width[c] = std::max(width[c], display_width(row[c]));
    }
  }
  auto line = [&](auto&& cell) {
    std::string out(indent, ' ');
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string_view text = cell(c);
      const std::size_t pad = width[c] - display_width(text);
      const bool last = c + 1 == columns.size();
      if (c != 0) out += ' ';
      if (columns[c].align == Align::right) out.append(pad, ' ');
      out += text;
      if (columns[c].align == Align::left && !last) out.append(pad, ' ');
    }
    while (out.size() > indent && out.back() == ' ') out.pop_back();
    return out;
  };
  std::vector<std::string> out;
  out.reserve(rows.size() + 1);
  if (titled) out.push_back(line([&](std::size_t c) { return columns[c].title; }));
  for (const auto& row : rows) {
    out.push_back(line([&](std::size_t c) { return c < row.size() ? std::string_view(row[c]) : std::string_view(); }));
  }
  return out;
}

}  // namespace ipsentry::dissect
