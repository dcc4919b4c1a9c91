// Pieces shared by the subcommands: loading keys from every source, exit codes.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <algorithm>
#include <memory>

#include "ipsentry/capture/policy_audit.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/crypto_backend.hpp"

namespace ipsentry::cli {

/// Exit codes: 0 every IPsec packet verified, 1 some did not, 2 usage,
/// configuration or input errors.
inline constexpr int kExitOk = 0;
inline constexpr int kExitNotVerified = 1;
inline constexpr int kExitUsage = 2;

struct KeySources {
  std::vector<std::string> configs;                          // -c FILE
  std::vector<std::pair<std::string, std::string>> imports;  // --keys-from FORMAT FILE
  ipsec::CryptoChoice crypto = ipsec::CryptoChoice::auto_;   // --crypto: the ESP crypto backend
};

/// --policy CONFIG [--as ADDRESS]...: the policy audit of verify, capture and tui.
struct AuditSources {
  std::string policy;
  std::vector<std::string> vantage;
  [[nodiscard]] bool given() const noexcept { return !policy.empty(); }
};

/// The policy configuration and the audit compiled from it (which refers to it).
struct PolicyAuditSetup {
  filters::Config config;
  std::unique_ptr<capture::PolicyAudit> audit;
};

/// Loads the --policy configuration and compiles its policies as seen from
/// the --as addresses (or its interfaces.local). Its SAs are added to
/// `keys` (an SA already there for the same SPI wins), its warnings too.
/// Throws filters::ConfigError naming the problem: no vantage point, an
/// address that does not parse, a policy whose SAs are missing.
[[nodiscard]] std::unique_ptr<PolicyAuditSetup> load_policy_audit(const AuditSources& sources, filters::Config& keys,
                                                                  std::vector<std::string>& described);

/// The warning for an audit whose vantage point sent or received nothing
/// in `frames` frames (a wrong --as), or empty.
[[nodiscard]] std::string audit_vantage_warning(const capture::PolicyAudit& audit, std::uint64_t frames);

/// Loads and merges every configuration and import. Throws
/// filters::ConfigError with the file, line and field of the problem.
[[nodiscard]] filters::Config load_keys(const KeySources& sources, std::vector<std::string>& described);

/// load_keys, or when no key source is given, the ESP SAs embedded in the
/// capture's pcapng Decryption Secrets Blocks (`capture --embed-keys`,
/// `editcap --inject-secrets`) that come before its first frame. Throws
/// filters::ConfigError, capture::CaptureError.
[[nodiscard]] filters::Config load_keys_for(const KeySources& sources, const std::string& capture_path,
                                            std::vector<std::string>& described);

/// When IKE keys are given, reads the capture's IKE exchanges first and adds
/// the ESP/AH SAs derived from SK_d / SKEYID_d to `cfg.sas` (an SA already
/// configured for the same SPI wins). Returns how many were added; what
/// could not be derived is added to the warnings. Throws CaptureError.
std::size_t learn_ike_sas(const std::string& capture_path, filters::Config& cfg);

/// The error to print when `output` (given to `option`) names one of the
/// inputs — the capture or a configuration or key file — by any name: the
/// same path, a symbolic link or a hard link. Writing it would replace the
/// input (the writer renames its finished file over the name). Empty when
/// `output` is none of them.
[[nodiscard]] std::string output_is_input(const std::string& option, const std::string& output,
                                          const std::string& capture, const KeySources& keys);

}  // namespace ipsentry::cli
