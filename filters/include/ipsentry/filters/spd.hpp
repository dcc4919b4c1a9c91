// The Security Policy Database (RFC 4301 section 4.4.1) compiled from the
// configuration: an ordered list of entries, first match wins.
//
// A policy "from A to B" matches packets whose source is in A and whose
// destination is in B; `mirrored: true` adds the entry for B to A, as the
// Windows filter lists do. The entry made from the policy as written has the
// outbound sense (A is our side), the mirrored one the inbound sense: a
// protect entry is applied to packets leaving through it, and checked on
// packets arriving through it. Permit and block entries act on any packet
// they match.
//
// A one-way tunnel policy whose peer is one of this host's addresses is
// the inbound half of a gateway tunnel, as the seeds' Windows gateway writes
// it (two rules, the second naming our own gateway as the tunnel endpoint):
// its entry has the inbound sense and selects the packets as written.
//
// Exemptions (config.hpp) come first. Each has one sense: inbound ones only
// select packets addressed to this host, outbound ones packets this host
// sends, and none applies to forwarded traffic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

enum class Sense : std::uint8_t { outbound, inbound };

/// Whether an entry's action is IPsec (protect with manual SAs, or negotiate).
[[nodiscard]] inline bool is_ipsec_action(PolicyAction a) noexcept {
  return a == PolicyAction::protect || a == PolicyAction::negotiate;
}

/// What a policy selects on, taken from one IP packet.
struct PacketSelector {
  dissect::IpAddr src;
  dissect::IpAddr dst;
  std::uint8_t protocol = 0;
  std::uint16_t sport = 0;  // for ICMP/ICMPv6: the type
  std::uint16_t dport = 0;
  std::uint8_t hop_limit = 0;  // IPv4 TTL / IPv6 hop limit
  bool has_ports = false;      // TCP, UDP, SCTP with its header present
  bool has_icmp_type = false;
};

/// The host's own addresses ("me") and broadcast addresses.
struct LocalAddresses {
  std::vector<dissect::IpAddr> addresses;
  std::vector<dissect::IpAddr> broadcasts;
  [[nodiscard]] bool contains(const dissect::IpAddr& a) const noexcept;
  /// The host's addresses and IPv4 broadcast addresses (getifaddrs).
  [[nodiscard]] static LocalAddresses of_host();
  /// What "me" means for `config`: its interfaces.local when given, else the
  /// host's addresses; the broadcast addresses are always the host's.
  [[nodiscard]] static LocalAddresses for_config(const Config& config);
};

struct SpdEntry {
  std::string name;
  Sense sense = Sense::outbound;
  AddressSelector src;
  AddressSelector dst;
  std::optional<std::uint8_t> protocol;
  PortRange sport;
  PortRange dport;
  std::optional<std::pair<std::uint8_t, std::uint8_t>> icmp_types;  // exemptions only
  /// Exemptions only: Neighbor Discovery is accepted only with hop limit
  /// 255, which no router forwards (RFC 4861 section 6.1.1).
  std::optional<std::uint8_t> hop_limit;
  /// Outbound exemptions only: the packet must come from a socket owned by
  /// root. Only the kernel rule can tell (user space never sees the owner),
  /// so lookup() passes such entries over: what reaches user space is then
  /// judged by the policies.
  bool root_only = false;
  PolicyAction action = PolicyAction::permit;
  bool exemption = false;
  Exemption exemption_kind = Exemption::ike;
  /// Tunnel protect entries: the outer addresses their packets carry (the
  /// peer as destination going out, as source coming in; this gateway as
  /// destination for the inbound half of a one-way tunnel rule).
  std::optional<dissect::IpAddr> outer_src;
  std::optional<dissect::IpAddr> outer_dst;
  /// The policy this entry was made from (nullptr for exemptions).
  const PolicyConfig* policy = nullptr;
  std::size_t policy_index = 0;

  [[nodiscard]] bool matches(const PacketSelector& p, const LocalAddresses& local) const noexcept;
  /// Exemptions: "ike-in", "neighbor-discovery-out", ... (names the kernel
  /// rules and the statistics).
  [[nodiscard]] std::string exemption_tag() const;
  /// One of the IKE exemptions (UDP 500 or 4500 either way). Where ipsentry
  /// runs IKE itself, its own IKE carries its mark and needs no exemption:
  /// leaving the host, the exemption would only let other programs'
  /// cleartext out.
  [[nodiscard]] bool is_ike_exemption() const noexcept { return exemption && exemption_kind == Exemption::ike; }
};

/// What a lookup passes over, besides the IPsec entries of the other sense.
struct LookupScope {
  bool forwarded = false;        // every exemption: they are for this host's own traffic
  bool root_exemptions = false;  // count the exemptions for root's sockets, which only the kernel can tell
  bool past_ike = false;         // the IKE exemptions
};

class Spd {
 public:
  Spd() = default;
  /// Compiles the policies of `config` (which must outlive the Spd). Checks
  /// that each protect policy lists SAs that can carry it: an SA of every
  /// protocol it uses for each sense it has, tunnel SAs (ending at the peer)
  /// for tunnel policies, transport SAs otherwise. Throws ConfigError.
  Spd(const Config& config, LocalAddresses local);

  /// The first entry matching `p`; protect entries and exemptions of the
  /// other sense are passed over, and every exemption for a `forwarded`
  /// packet. nullptr: no entry matches (the packet is permitted).
  [[nodiscard]] const SpdEntry* lookup(const PacketSelector& p, Sense sense, bool forwarded = false) const noexcept {
    return lookup(p, sense, LookupScope{forwarded});
  }
  [[nodiscard]] const SpdEntry* lookup(const PacketSelector& p, Sense sense, LookupScope scope) const noexcept;
  /// For the inner packet of verified IPsec: the first entry of `sense`
  /// matching it, exemptions passed over (they say what may pass
  /// unprotected; what travels on an SA must be what its policy selects).
  /// Enforcement asks for inbound packets; the policy audit also for
  /// outbound ones.
  [[nodiscard]] const SpdEntry* lookup_protected(const PacketSelector& p, Sense sense = Sense::inbound) const noexcept;

  [[nodiscard]] const std::vector<SpdEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] const LocalAddresses& local() const noexcept { return local_; }
  /// The sense an SA of `config` is used in: its direction, or when none
  /// is given, inbound if its destination is one of ours.
  [[nodiscard]] Direction sa_direction(const SaConfig& sa) const noexcept;
  /// The mode an SA of `config` is used in: its own, or when none is given,
  /// that of the first protect policy listing it (unspecified if none does).
  [[nodiscard]] SaMode sa_mode(const SaConfig& sa) const noexcept;

  /// The effective, ordered policy as a table (no keys).
  [[nodiscard]] std::string describe() const;
  /// The exemptions with their selectors, on one line ("none" when there are none).
  [[nodiscard]] std::string describe_exemptions() const;
  /// This host's addresses, or "none".
  [[nodiscard]] std::string local_list(const char* separator = ", ") const;

 private:
  const Config* config_ = nullptr;
  LocalAddresses local_;
  std::vector<SpdEntry> entries_;
};

/// The selector of a dissected IP packet. A non-first fragment has no ports:
/// it matches only entries that do not select on them.
[[nodiscard]] PacketSelector selector_of(const dissect::Packet& p) noexcept;

[[nodiscard]] const char* to_string(PolicyAction a) noexcept;
[[nodiscard]] const char* to_string(InboundCleartext c) noexcept;
[[nodiscard]] const char* to_string(PolicyIpsec p) noexcept;

}  // namespace ipsentry::filters
