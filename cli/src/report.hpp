// Output of `ipsentry verify`: one line (or JSON object) per IPsec layer,
// then the statistics. The JSON field names are documented in
// docs/json-output.md and are stable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/counters.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::cli {

enum class TimeFormat { absolute, relative, epoch };

struct RunInfo {
  std::string command = "verify";
  std::string capture;
  std::string format;  // "pcap" / "pcapng"
  bool compressed = false;
  std::vector<std::string> config_sources;
  std::vector<std::string> warnings;
  std::string read_error;  // damage that stopped reading early
  double seconds = 0;      // wall time of the run
};

class Report {
 public:
  virtual ~Report() = default;
  virtual void begin(const RunInfo& info) = 0;
  virtual void frame(const capture::FrameResult& f) = 0;
  /// An IKE message, in frame order with the IPsec packets.
  virtual void ike(const capture::FrameResult& f, const ike::MessageRecord& m) = 0;
  virtual void end(const RunInfo& info, const ipsec::GlobalCounters& totals, const capture::FrameCounters& frames,
                   const ipsec::Sad& sad, const ike::Analyzer& ike) = 0;
  /// Reports the policy audit too: each frame's audit verdict, and at the
  /// end its counts and the SAs' rekey and expiry timeline (finish() the
  /// audit before end()).
  void set_audit(const capture::PolicyAudit* audit) noexcept { audit_ = audit; }

 protected:
  const capture::PolicyAudit* audit_ = nullptr;
};

/// `quiet` prints only the summary.
std::unique_ptr<Report> make_text_report(std::FILE* out, TimeFormat tf, bool quiet);
std::unique_ptr<Report> make_json_report(std::FILE* out, const ipsec::Sad& sad, bool quiet);

/// Whether every IPsec packet verified and no IKE message failed: exit 0.
[[nodiscard]] bool all_verified(const ipsec::GlobalCounters& totals, const ike::Analyzer& ike) noexcept;
/// Whether the policy audit found nothing (no cleartext leak, policy
/// mismatch or blocked traffic seen).
[[nodiscard]] bool audit_clean(const capture::PolicyAudit& audit) noexcept;

}  // namespace ipsentry::cli
