// Words and tables for verified frames, shared by `verify`, `show` and the
// TUI so that each says the same thing about the same packet.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/counters.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::capture {

/// "1a2b..." of an ICV or other non-secret bytes.
[[nodiscard]] std::string hex_bytes(const std::uint8_t* p, std::size_t n);

/// "AH", "ESP" or "ESP/UDP".
[[nodiscard]] const char* layer_label(const LayerRecord& l) noexcept;

/// What follows the verdict: the protected packet when it verified, else why
/// not ("authentication tag mismatch: expected ..., got ...").
[[nodiscard]] std::string layer_details(const LayerRecord& l);

/// "192.0.2.1 → 192.0.2.2 TCP 40000 → 80" of a policy selector.
[[nodiscard]] std::string selector_text(const filters::PacketSelector& s);
/// "TCP", "ICMP", "proto 99" of a selector.
[[nodiscard]] std::string selector_protocol(const filters::PacketSelector& s);

/// The policy audit's words on a frame after its addresses: the ports, the
/// policy entry that decided and its sense, why a finding is one, and for a
/// policy mismatch the entry whose SA carried the packet.
[[nodiscard]] std::string audit_details(const AuditResult& a);

/// "0xc0ffee01" of a SAD entry, or its name when it has no fixed SPI.
[[nodiscard]] std::string sa_label(const ipsec::Sad& sad, std::int32_t index);
/// "overlap 0.800 s", "gap 1.200 s, 3 cleartext" of an SA and its
/// successor; "-" without one.
[[nodiscard]] std::string handover_text(const SaTimeline& t);
/// "12 conforms, 1 cleartext-leak" of the audit's counts, or "no IP packets judged".
[[nodiscard]] std::string audit_counts_text(const PolicyAudit& audit);
/// The findings per policy entry, as a table indented by `indent` (empty
/// when no entry decided a frame).
[[nodiscard]] std::vector<std::string> audit_policy_table(const PolicyAudit& audit, std::size_t indent);
/// The SAs of each policy and pair of endpoints in the order they took over:
/// a line per group, then one per SA (its packets, those after its successor
/// or lifetime, the handover). `time` writes a timestamp. Empty when no SA
/// carried conforming traffic. Measured after PolicyAudit::finish().
[[nodiscard]] std::vector<std::string> audit_timeline(const PolicyAudit& audit, const ipsec::Sad& sad,
                                                      const std::function<std::string(std::int64_t)>& time);

/// One line for a frame that is neither IPsec nor IKE: its upper layer,
/// with the reason when it does not parse, or its ethertype when not IP.
[[nodiscard]] std::string frame_summary(const dissect::Packet& p);

/// Adds the verification of a frame to its dissection tree: under each IPsec
/// header node, the verdict with its reason and SA, then the decrypted inner
/// packet (its own buffer in the tree) with its layers.
void add_verification(dissect::Tree& tree, const FrameResult& r, const ipsec::Sad& sad);

/// The SA's algorithms as a person reads them: "aes-cbc/hmac-sha256-128 (256-bit)".
[[nodiscard]] std::string sa_algorithms(const filters::SaConfig& c);

/// SAs that carried at least one packet.
[[nodiscard]] std::uint64_t active_sas(const ipsec::Sad& sad);

struct StatRow {
  const char* name;
  std::uint64_t value;
};
/// The Quick Mode rows of the IP Security Monitor that a capture can show
/// (the receive side), plus malformed / unverifiable / unsupported packets
/// when there are any.
[[nodiscard]] std::vector<StatRow> monitor_rows(const ipsec::GlobalCounters& g, const ipsec::Sad& sad);
/// The Main Mode (IKE) rows.
[[nodiscard]] std::vector<StatRow> ike_rows(const ike::Statistics& s);

}  // namespace ipsentry::capture
