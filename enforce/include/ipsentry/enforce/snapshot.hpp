// Reading the enforcement's statistics snapshot (`ipsentry stats --json`)
// for the screens that show it: `ipsentry stats` and `ipsentry tui --attach`.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace ipsentry::enforce {

struct SnapshotRow {
  const char* name;
  std::uint64_t value;
};

/// The IP Security Monitor's Quick Mode rows, sent and received. Throws
/// nlohmann::json::exception when the snapshot does not hold them.
[[nodiscard]] std::vector<SnapshotRow> quick_mode_rows(const nlohmann::json& snapshot);

}  // namespace ipsentry::enforce
