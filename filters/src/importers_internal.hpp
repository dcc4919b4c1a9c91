// Text helpers shared by the importers (not part of the module's API).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

namespace detail {
std::string lower(std::string_view s);
std::string_view trim(std::string_view s);
std::vector<std::string_view> split_lines(std::string_view text);
std::string base_name(const std::string& name);
/// Splits one Wireshark UAT record into its fields.
std::vector<std::string> uat_fields(std::string_view line, const std::string& file, int lineno);
/// Calls `record(fields, line)` for every record of a Wireshark UAT file
/// (blank lines and # comments skipped). A record with fewer than `count`
/// fields, or with more when `exact`, is a ConfigError naming `table` and
/// the meaning of its fields (`field_names`).
void for_each_uat_record(const std::string& text, const std::string& name, std::string_view table, std::size_t count,
                         bool exact, std::string_view field_names,
                         const std::function<void(const std::vector<std::string>&, int)>& record);
}  // namespace detail

using detail::base_name;
using detail::for_each_uat_record;
using detail::lower;
using detail::split_lines;
using detail::trim;
using detail::uat_fields;

/// Adds the keys of one tcpdump "ikev2 I|R ..." secrets line to `cfg`.
void import_tcpdump_ikev2_line(std::string_view line, const std::string& file, int lineno, Config& cfg);

}  // namespace ipsentry::filters
