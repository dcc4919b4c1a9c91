// The configuration model shared by every ipsentry job, and its YAML loader.
//
// Loading is strict: unknown keys, wrong types, bad addresses, key lengths
// that do not fit the algorithm and references to missing SAs are errors that
// name the file, the line and the field. Keys are read into SecretBytes and
// never printed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/algorithms.hpp"
#include "ipsentry/filters/ike_proposal.hpp"
#include "ipsentry/filters/secret.hpp"

namespace ipsentry::filters {

/// A configuration or import error with its location.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int line, std::string field, const std::string& message);
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] int line() const noexcept { return line_; }
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string file_;
  int line_;
  std::string field_;
};

/// Where a setting came from, for messages ("sa.yaml:12").
struct Origin {
  std::string file;
  int line = 0;
  // The line of each setting of the entry, so that an error found when the
  // settings are checked together still points at the offending one.
  std::vector<std::pair<std::string, int>> field_lines;
  [[nodiscard]] int line_of(std::string_view field) const noexcept;
  [[nodiscard]] std::string str() const;
};

enum class Direction : std::uint8_t { unspecified, inbound, outbound };
enum class SaMode : std::uint8_t { unspecified, transport, tunnel };

[[nodiscard]] const char* to_string(Direction d) noexcept;
[[nodiscard]] const char* to_string(SaMode m) noexcept;

struct Lifetime {
  std::uint64_t seconds = 0;  // 0 = unlimited
  std::uint64_t bytes = 0;
  std::uint64_t packets = 0;
  std::uint64_t soft_seconds = 0;
  std::uint64_t soft_bytes = 0;
  std::uint64_t soft_packets = 0;
};

/// ESP in UDP (RFC 3948). For an outbound SA, sport is ours and dport the
/// peer's until an authenticated packet from the peer shows the port its NAT
/// mapped it to.
struct UdpEncapConfig {
  std::uint16_t sport = 4500;
  std::uint16_t dport = 4500;
  /// NAT keepalives (RFC 3948 section 2.3) after this many seconds without
  /// anything sent to the peer; 0: none. RFC 3948 section 4 suggests 20.
  std::uint32_t keepalive_seconds = 20;
  friend bool operator==(const UdpEncapConfig&, const UdpEncapConfig&) = default;
};

struct SaConfig {
  std::string name;                  // unique; generated from the SPI when not given
  std::optional<std::uint32_t> spi;  // nullopt: any SPI (tcpdump's default SA)
  IpsecProtocol protocol = IpsecProtocol::esp;
  Direction direction = Direction::unspecified;
  std::optional<dissect::IpAddr> src;  // nullopt: any
  std::optional<dissect::IpAddr> dst;  // nullopt: any
  // In tunnel mode src and dst are the tunnel endpoints (RFC 4301 section 4.1).
  SaMode mode = SaMode::unspecified;  // unspecified: told per packet by the next header
  Cipher cipher = Cipher::null;
  SecretBytes enc_key;
  Integrity integrity = Integrity::none;
  SecretBytes auth_key;
  bool esn = false;
  std::uint32_t replay_window = 64;  // 0 disables anti-replay
  std::optional<UdpEncapConfig> encap;
  Lifetime lifetime;
  std::uint64_t initial_seq = 0;  // outbound: the last sequence number already used
  Origin origin;

  [[nodiscard]] SaConfig clone() const;
  /// "spi 0x00000bb9 ah to fe80::2aa:ff:fe92:d0f1" - never includes keys.
  [[nodiscard]] std::string describe() const;
  /// Whether this SA is for the same SPI and protocol as `other` and their
  /// destinations do not tell them apart: a configured SA that covers one
  /// learned from IKE wins over it.
  [[nodiscard]] bool covers(const SaConfig& other) const noexcept {
    return spi == other.spi && protocol == other.protocol && (!dst || !other.dst || *dst == *other.dst);
  }
};

/// A policy selector address: any, "me" (the local addresses), or a prefix.
struct AddressSelector {
  enum class Kind : std::uint8_t { any, me, prefix } kind = Kind::any;
  dissect::IpPrefix prefix;
  [[nodiscard]] std::string str() const;
};

struct PortRange {
  std::uint16_t low = 0;
  std::uint16_t high = 65535;
  [[nodiscard]] bool any() const noexcept { return low == 0 && high == 65535; }
};

/// permit and block act on their own; protect uses the manual SAs listed in
/// `sas`; negotiate gets its SAs from IKE with the profile named in `ike`.
enum class PolicyAction : std::uint8_t { permit, block, protect, negotiate };
enum class InboundCleartext : std::uint8_t { require, request, respond };
enum class PolicyIpsec : std::uint8_t { esp, ah, ah_esp };

struct PolicyConfig {
  std::string name;
  AddressSelector local;                 // "from" in the configuration
  AddressSelector remote;                // "to"
  std::optional<std::uint8_t> protocol;  // nullopt: any
  PortRange local_ports;
  PortRange remote_ports;
  bool mirrored = false;
  PolicyAction action = PolicyAction::permit;
  PolicyIpsec ipsec = PolicyIpsec::esp;
  SaMode mode = SaMode::transport;
  std::optional<dissect::IpAddr> peer;  // tunnel endpoint
  std::vector<std::string> sas;         // names of the SAs this policy uses (protect)
  std::string ike;                      // negotiate: the name of its IKE profile
  InboundCleartext inbound = InboundCleartext::require;
  Origin origin;
};

/// Keys of one IKE SA, for decrypting its messages and deriving the keys
/// of the CHILD_SAs / Quick Mode SAs it negotiates.
///
/// IKEv2 (RFC 7296 section 2.14): SK_ei/SK_ai protect what the original
/// initiator sends, SK_er/SK_ar what the responder sends; SK_d derives
/// CHILD_SA keys. IKEv1 (RFC 2409): the phase 1 encryption key, and SKEYID_d
/// for Quick Mode keys. Algorithms left out are taken from the proposal
/// the capture shows being chosen.
struct IkeSaConfig {
  std::string name;
  std::uint8_t version = 2;
  std::optional<std::uint64_t> spi_i;  // IKEv1: initiator cookie; nullopt: match by trying the keys
  std::optional<std::uint64_t> spi_r;
  std::optional<Cipher> cipher;
  std::optional<Integrity> integrity;  // IKEv2
  std::optional<Prf> prf;              // IKEv2 prf, IKEv1 hash
  SecretBytes sk_ei;
  SecretBytes sk_er;
  SecretBytes sk_ai;
  SecretBytes sk_ar;
  SecretBytes sk_d;     // IKEv2 SK_d / IKEv1 SKEYID_d
  SecretBytes enc_key;  // IKEv1 phase 1 encryption key
  Origin origin;
  [[nodiscard]] IkeSaConfig clone() const;
  /// "IKEv2 SA 0001020304050607/c02e7a3031a03188" - never includes keys.
  [[nodiscard]] std::string describe() const;
};

/// How a `negotiate` policy gets its keys: the seeds' authentication
/// method, security methods and key lifetimes, for IKEv2 (RFC 7296).
enum class IkeAuthMethod : std::uint8_t { psk, cert };

struct IkeProfile {
  std::string name;
  std::uint8_t version = 2;
  IkeAuthMethod method = IkeAuthMethod::psk;
  SecretBytes psk;                        // method psk (psk: hex or text, or psk_file:)
  std::filesystem::path cert;             // method cert: our certificate (PEM), then its chain
  std::filesystem::path key;              //   its private key (PEM; RSA or ECDSA)
  std::vector<std::filesystem::path> ca;  //   trust anchors for the peer's certificate
  IkeIdentity local_id;                   // default: our address (psk), the certificate's subject (cert)
  IkeIdentity remote_id;                  // default: any
  std::optional<dissect::IpAddr> peer;    // nullopt: any (then it only responds)
  std::vector<IkeProposal> proposals;
  std::vector<ChildProposal> esp_proposals;
  std::vector<ChildProposal> ah_proposals;
  std::uint64_t ike_lifetime = 8 * 3600;            // seconds (the seeds' Main Mode default)
  std::uint64_t child_lifetime = 900;               // seconds (the seeds' Quick Mode default: 15 min)
  std::uint64_t child_lifetime_bytes = 2ull << 30;  // the seeds' 2 GB
  std::uint64_t child_lifetime_packets = 0;         // 0: none
  DhGroup pfs = DhGroup::none;
  std::uint32_t dpd = 30;            // seconds of silence before a liveness check; 0: off
  std::uint32_t soft_timeout = 300;  // request policies: how long a soft association lasts
  Origin origin;

  [[nodiscard]] IkeProfile clone() const;
  /// Lines for `config check`: never the PSK or key contents.
  [[nodiscard]] std::string describe() const;
};

/// Traffic to or from this host that passes without any policy being
/// consulted (`exemptions:` in the configuration). The seeds' Windows 2000
/// default exempted IKE, Kerberos, RSVP, multicast and broadcast in both
/// directions by port alone, so any packet with source port 88 or 500 went
/// past "Secure Server" unchecked; only IKE and IPv6 Neighbor Discovery are
/// exempt by default here, and never for forwarded traffic.
enum class Exemption : std::uint8_t { ike, neighbor_discovery, kerberos, rsvp, multicast, broadcast, count_ };
inline constexpr std::size_t kExemptionCount = static_cast<std::size_t>(Exemption::count_);
/// "ike", "neighbor-discovery", ... as written in the configuration.
[[nodiscard]] const char* to_string(Exemption e) noexcept;
[[nodiscard]] std::optional<Exemption> find_exemption(std::string_view name) noexcept;

/// A set of exemptions (one bit each).
class ExemptionSet {
 public:
  constexpr ExemptionSet() = default;
  [[nodiscard]] static constexpr ExemptionSet defaults() noexcept {
    ExemptionSet s;
    s.add(Exemption::ike);
    s.add(Exemption::neighbor_discovery);
    return s;
  }
  constexpr void add(Exemption e) noexcept { bits_ |= bit(e); }
  [[nodiscard]] constexpr bool has(Exemption e) const noexcept { return (bits_ & bit(e)) != 0; }
  [[nodiscard]] constexpr bool empty() const noexcept { return bits_ == 0; }
  [[nodiscard]] std::string str() const;  // "ike, neighbor-discovery" or "none"
  friend constexpr bool operator==(ExemptionSet, ExemptionSet) noexcept = default;

 private:
  static constexpr std::uint8_t bit(Exemption e) noexcept {
    return static_cast<std::uint8_t>(1u << static_cast<unsigned>(e));
  }
  std::uint8_t bits_ = 0;
};

struct Config {
  std::vector<dissect::IpAddr> local_addresses;
  ExemptionSet exemptions = ExemptionSet::defaults();
  bool exemptions_given = false;  // `exemptions:` or `default_exemptions:` was in the file
  std::vector<PolicyConfig> policies;
  std::vector<SaConfig> sas;
  std::vector<IkeSaConfig> ike_sas;
  std::vector<IkeProfile> ike_profiles;
  std::vector<std::string> warnings;  // deprecated algorithms, odd key lengths, ...

  /// Appends the SAs (and warnings) of another configuration, rejecting
  /// duplicates of an existing SA selector or name.
  void merge(Config&& other);
  /// The SA named `name`, or nullptr.
  [[nodiscard]] const SaConfig* find_sa(std::string_view name) const noexcept;
  /// The IKE profile named `name`, or nullptr.
  [[nodiscard]] const IkeProfile* find_ike_profile(std::string_view name) const noexcept;
};

/// Loads a YAML configuration file. Throws ConfigError.
[[nodiscard]] Config load_config(const std::filesystem::path& path);
/// Parses YAML text; `name` is used in messages, relative key files are
/// resolved against `base_dir`. Throws ConfigError.
[[nodiscard]] Config parse_config(const std::string& text, const std::string& name,
                                  const std::filesystem::path& base_dir);

/// Checks an SA after it was filled from any source (YAML or an importer):
/// algorithm and protocol compatibility and key lengths. Adds warnings to
/// `warnings`; throws ConfigError naming `field_prefix` on errors.
void validate_sa(const SaConfig& sa, const std::string& field_prefix, std::vector<std::string>& warnings);

/// Checks an IKE SA's keys against its algorithms (when given). Throws
/// ConfigError naming `field_prefix`.
void validate_ike_sa(const IkeSaConfig& sa, const std::string& field_prefix, std::vector<std::string>& warnings);

/// The most bytes a key file holds (the longest key is 64 bytes; ipsec6's
/// key files are short text), and the most a configuration file holds: a
/// bigger file is refused, not read into memory.
inline constexpr std::size_t kMaxKeyFile = 4096;
inline constexpr std::size_t kMaxConfigFile = std::size_t{16} << 20;

/// Reads a key file: its raw bytes, exactly as ipsec6 uses them. A path that
/// is not a regular file or a pipe, or is larger than kMaxKeyFile, is an
/// error naming `where` and `field`.
[[nodiscard]] SecretBytes read_key_file(const std::filesystem::path& path, const Origin& where,
                                        const std::string& field);

/// Parses sizes such as "2G", "100M", "4096" (binary multiples).
[[nodiscard]] std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace ipsentry::filters
