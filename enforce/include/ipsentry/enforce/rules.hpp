// The iptables rules that bring packets to ipsentry (NFQUEUE.md):
//
//   raw PREROUTING -> IPSENTRY-IN    ESP/AH addressed to us, and cleartext the
//                                    inbound side of a policy may have to drop
//                                    (before conntrack, so decapsulated
//                                    packets get their own connection entry)
//   mangle OUTPUT  -> IPSENTRY-OUT   local traffic a policy protects or blocks
//                                    (rewritten packets are re-routed here)
//   mangle FORWARD -> IPSENTRY-FWD   gateway traffic a policy protects or
//                                    blocks (not re-routed: the route to the
//                                    protected network must lead to the peer)
//   mangle INPUT   -> IPSENTRY-MSSIN TCP MSS clamped (with the rules in
//                                    IPSENTRY-OUT/FWD) so that protected
//                                    segments fit the MTU
//   filter OUTPUT / FORWARD -> IPSENTRY-GUARD-OUT / IPSENTRY-GUARD-FWD
//                                    the backstop: what the SPD protects or
//                                    blocks and did not pass through the
//                                    queue is dropped (someone removed the
//                                    mangle chains, or flushed the table)
//
// Each chain is the SPD compiled in order: permit entries RETURN, so that
// only what user space must decide on is queued. Decapsulated packets carry
// mark bit 0x1, ipsentry's own packets 0x2, and outbound packets ipsentry
// accepted 0x4; they are passed over. Without --fail-open the queue rules
// have no --queue-bypass: if ipsentry is not running, matching traffic is
// dropped (with --fail-open there is no backstop either).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipsentry/filters/spd.hpp"

namespace ipsentry::enforce {

class RulesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RuleOptions {
  std::uint16_t queue = 0;
  std::uint16_t queues = 1;  // --queue-balance queue:queue+queues-1 when > 1
  bool fail_open = false;
  std::uint16_t mss_v4 = 0;  // 0: no clamp
  std::uint16_t mss_v6 = 0;
};

/// iptables-restore input (`*raw ... COMMIT *mangle ... COMMIT`) for one
/// family (4 or 6). `with_hooks`: also insert the jumps from the built-in
/// chains (first install); without, only the chains' contents are replaced,
/// atomically per table (reload).
[[nodiscard]] std::string render_rules(const filters::Spd& spd, int family, const RuleOptions& options,
                                       bool with_hooks);

/// Like render_rules with the jumps, for a single iptables-restore
/// transaction that also deletes the jumps `saved` (iptables-save output)
/// already has: installing over old or damaged rules leaves no moment
/// without them.
[[nodiscard]] std::string render_install(const filters::Spd& spd, int family, const RuleOptions& options,
                                         const std::string& saved);

/// Installs the rules for both families, replacing any of ours already
/// there (reinstalling after someone changed them). Throws RulesError with
/// iptables' message; on failure nothing of ours is left installed.
void install_rules(const filters::Spd& spd, const RuleOptions& options);
/// install_rules for one family over what `saved` (its iptables-save
/// output) shows, in one transaction. Throws RulesError.
void install_family(const filters::Spd& spd, const RuleOptions& options, int family, const std::string& saved);

/// iptables-save (family 4) or ip6tables-save output. Throws RulesError.
[[nodiscard]] std::string read_rules(int family);
/// Our part of iptables-save output, one sorted line per fact: each chain
/// of ours, each rule in it, and each jump to it with its position in the
/// built-in chain. Equal lists mean the rules are as installed.
[[nodiscard]] std::vector<std::string> our_rules(const std::string& saved);
/// What differs between two our_rules() lists ("missing: ...",
/// "unexpected: ..."); empty when they are equal.
[[nodiscard]] std::vector<std::string> rules_drift(const std::vector<std::string>& expected,
                                                   const std::vector<std::string>& now);
/// Replaces the chains' contents (SIGHUP reload). Throws RulesError.
void replace_rules(const filters::Spd& spd, const RuleOptions& options);
/// Removes every ipsentry chain and jump, in both families. Returns a
/// description of what was removed (empty: nothing was there).
std::vector<std::string> remove_rules();

/// Runs a program with `input` on its standard input; returns its exit
/// status and stores its standard error in `err`.
int run_program(const std::vector<std::string>& argv, const std::string& input, std::string& err);
/// The same, also storing its standard output in `out` (when not null).
int run_program(const std::vector<std::string>& argv, const std::string& input, std::string* out, std::string& err);

}  // namespace ipsentry::enforce
