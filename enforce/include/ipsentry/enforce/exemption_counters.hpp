// How much traffic each exemption let pass. Exempted packets never reach
// user space: the kernel rules RETURN them before they are queued. Each such
// rule carries a comment naming its exemption, and its counters are read
// back from iptables-save, so that exempted traffic is not invisible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ipsentry::enforce {

/// The comment of an exemption's kernel rules, followed by its tag ("ike-in").
inline constexpr std::string_view kExemptionComment = "ipsentry-exempt:";

struct ExemptionCount {
  std::string tag;  // SpdEntry::exemption_tag()
  std::uint64_t packets = 0;
};

/// Adds the counters of the exemption rules in `save` (the output of
/// `iptables-save -c`) to `into`, one element per tag.
void add_exemption_counters(std::string_view save, std::vector<ExemptionCount>& into);

/// The counters of every installed exemption rule, both families. Empty when
/// iptables-save cannot be run.
[[nodiscard]] std::vector<ExemptionCount> exemption_counters();

}  // namespace ipsentry::enforce
