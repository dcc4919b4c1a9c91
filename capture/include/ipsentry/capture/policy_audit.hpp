// The policy audit: a capture judged against the policies of a
// configuration, as seen from one host or gateway (the vantage point).
//
// Verification proves that the IPsec on the wire is authentic; the audit
// asks whether what should have been IPsec was. Each frame gets one
// verdict: a cleartext packet that a protect or negotiate policy selects
// (with inbound `require`) is a cleartext-leak; an authentic ESP/AH packet
// whose inner packet is not what its SA's policy selects is a
// policy-mismatch; traffic a block policy selects that was seen anyway is
// blocked-seen. Exemptions and the documented cleartext of request and
// respond policies are reported as such, not flagged.
//
// The per-frame judgement (judge_clear, judge_protected) reads only the SPD
// and may run on several verifier threads at once. account() follows the
// frames in capture order, on one thread: it builds the timeline of each SA
// (first and last packet, its predecessor and successor carrying the same
// policy between the same endpoints) that tells a rekey with overlap from
// one with a gap, and cleartext in the gap.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::ipsec {
class Sad;
}

namespace ipsentry::capture {

struct FrameResult;
struct LayerRecord;

// X(name, text, flagged)
#define IPSENTRY_AUDIT_VERDICTS(X)            \
  X(none, "-", false)                         \
  X(conforms, "conforms", false)              \
  X(permitted, "permitted", false)            \
  X(exempt, "exempt", false)                  \
  X(fallback, "cleartext-allowed", false)     \
  X(cleartext_leak, "cleartext-leak", true)   \
  X(policy_mismatch, "policy-mismatch", true) \
  X(blocked_seen, "blocked-seen", true)

enum class AuditVerdict : std::uint8_t {
#define IPSENTRY_AUDIT_ENUM(name, text, flagged) name,
  IPSENTRY_AUDIT_VERDICTS(IPSENTRY_AUDIT_ENUM)
#undef IPSENTRY_AUDIT_ENUM
};
inline constexpr std::size_t kAuditVerdictCount = 8;

/// "cleartext-leak", ... as printed, in JSON and in display filters.
[[nodiscard]] std::string_view audit_name(AuditVerdict v) noexcept;
[[nodiscard]] std::optional<AuditVerdict> find_audit_verdict(std::string_view name) noexcept;
/// Whether the verdict is a finding: makes `verify` fail and can stop a capture.
[[nodiscard]] bool flagged(AuditVerdict v) noexcept;

/// The audit's verdict on one frame.
struct AuditResult {
  AuditVerdict verdict = AuditVerdict::none;
  filters::Sense sense = filters::Sense::outbound;
  const filters::SpdEntry* entry = nullptr;  // the entry that decided (nullptr: none matched)
  const filters::SpdEntry* own = nullptr;    // policy-mismatch: the entry whose SAs carried it
  const char* why = nullptr;                 // a finding's reason, in words
  filters::PacketSelector sel;               // the packet judged (the inner one of IPsec)
  std::int32_t sa = -1;                      // conforming IPsec: the outermost SA (SAD index)
  dissect::IpAddr outer_src;                 // and its endpoints
  dissect::IpAddr outer_dst;
  bool mine = false;  // the vantage point sent or received it (or it listens on its destination)
  // IPv4/IPv6 fragments: a non-first one has no ports, so it takes the
  // verdict of its first fragment (account()).
  bool fragment = false;
  bool first_fragment = false;
  std::uint32_t fragment_id = 0;
};

/// The life of one SA on the wire, with its place among the SAs that
/// carried the same policy between the same endpoints.
struct SaTimeline {
  bool seen = false;      // carried conforming traffic
  std::size_t entry = 0;  // index in Spd::entries()
  std::uint64_t packets = 0;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
  std::int32_t predecessor = -1;  // SAD indices
  std::int32_t successor = -1;
  std::int64_t last_before_successor_ns = 0;  // its last packet before its successor's first
  std::uint64_t after_successor = 0;          // packets after its successor's first
  std::uint64_t lifetime_s = 0;               // the configured one (0: none known)
  std::uint64_t after_lifetime = 0;           // packets later than lifetime_s after its first
  /// With its successor: how long neither carried traffic at the handover
  /// (its last packet before the successor's first, to that first: the
  /// gap), the cleartext frames of the same policy in that gap, and (after
  /// finish()) how long it went on after the successor took over (overlap).
  double overlap_s = 0;
  double gap_s = 0;
  std::uint64_t cleartext_in_gap = 0;
  std::uint64_t clear_mark = 0;  // its policy's cleartext count at its last packet before a successor
};

class PolicyAudit {
 public:
  /// Compiles the policies of `config` (which must outlive the audit) as
  /// seen from `vantage`. Throws filters::ConfigError.
  PolicyAudit(const filters::Config& config, filters::LocalAddresses vantage, std::string source);

  /// A cleartext IP packet (IKE included).
  void judge_clear(const dissect::Packet& p, AuditResult& out) const noexcept;
  /// An IPsec frame whose first `layers` layers (f.layers) opened: `inner`
  /// is what the last of them carried.
  void judge_protected(const dissect::Packet& inner, const FrameResult& f, std::size_t layers, const ipsec::Sad& sad,
                       AuditResult& out) const noexcept;

  /// Follows the verdicts in capture order (one thread). A non-first
  /// fragment judged without ports takes its first fragment's finding here.
  void account(FrameResult& f, const ipsec::Sad& sad);
  /// Links the SAs with their successors and measures overlaps and gaps.
  void finish();

  [[nodiscard]] const filters::Spd& spd() const noexcept { return spd_; }
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// "192.0.2.1, 192.0.2.9"
  [[nodiscard]] std::string vantage() const;
  [[nodiscard]] std::size_t entry_index(const filters::SpdEntry* e) const noexcept {
    return static_cast<std::size_t>(e - spd_.entries().data());
  }
  [[nodiscard]] const std::vector<std::uint64_t>& counts() const noexcept { return counts_; }
  /// Frames judged that the vantage point sent or received: none means
  /// --as (or interfaces.local) names a host the capture does not show.
  [[nodiscard]] std::uint64_t vantage_frames() const noexcept { return vantage_frames_; }
  /// Findings per SPD entry: [entry][verdict].
  [[nodiscard]] const std::vector<std::vector<std::uint64_t>>& entry_counts() const noexcept { return entry_counts_; }
  /// Per SAD index (shorter than the SAD when the last SAs carried nothing).
  [[nodiscard]] const std::vector<SaTimeline>& timelines() const noexcept { return timelines_; }
  /// "outbound 192.0.2.1 -> 192.0.2.2" of a timeline's SA endpoints.
  [[nodiscard]] const filters::SpdEntry& entry(std::size_t i) const noexcept { return spd_.entries()[i]; }

 private:
  struct Slot {
    std::size_t entry;
    dissect::IpAddr src;
    dissect::IpAddr dst;
    filters::IpsecProtocol protocol;
    std::int32_t newest = -1;
  };
  void verdict_for_clear(const filters::SpdEntry* e, filters::Sense sense, bool ike, AuditResult& out) const noexcept;
  [[nodiscard]] bool lists_sa(std::size_t entry, const ipsec::Sad& sad, const LayerRecord& l) const noexcept;
  [[nodiscard]] const filters::SpdEntry* owner_of(filters::Sense sense, const ipsec::Sad& sad,
                                                  const LayerRecord& l) const noexcept;
  [[nodiscard]] bool addressed_to_me(const dissect::IpAddr& dst) const noexcept;

  const filters::Config& config_;
  filters::Spd spd_;
  std::string source_;
  bool negotiates_ = false;
  // Per SPD entry: the (protocol, SPI, name) of the SAs its policy lists,
  // and the child lifetime of a negotiate policy's profile.
  struct ListedSa {
    filters::IpsecProtocol protocol;
    std::optional<std::uint32_t> spi;
    std::optional<dissect::IpAddr> dst;  // peers choose SPIs on their own: the same SPI may name two SAs
    std::string name;
  };
  std::vector<std::vector<ListedSa>> listed_;
  std::vector<std::uint64_t> negotiated_lifetime_;
  // Negotiate tunnel policies: the peer their SAs must come from / go to
  // (the policy's, else its profile's).
  std::vector<std::optional<dissect::IpAddr>> negotiated_peer_;

  std::vector<std::uint64_t> counts_;
  std::vector<std::vector<std::uint64_t>> entry_counts_;
  std::uint64_t vantage_frames_ = 0;
  std::vector<SaTimeline> timelines_;
  std::vector<std::int32_t> slot_of_;  // per SAD index
  std::vector<Slot> slots_;
  std::vector<std::uint64_t> clear_count_;  // per entry: leaks and allowed cleartext so far
  struct FirstFragment {
    dissect::IpAddr src;
    dissect::IpAddr dst;
    std::uint32_t id;
    std::uint8_t protocol;
    AuditVerdict verdict;
    const filters::SpdEntry* entry;
    const char* why;
  };
  std::vector<FirstFragment> fragments_;  // recent flagged first fragments (a small ring)
  std::size_t fragment_next_ = 0;
};

}  // namespace ipsentry::capture
