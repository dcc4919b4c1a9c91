// What two IKEv2 peers agree on: proposals (RFC 7296 2.7, 3.3) and traffic
// selectors (RFC 7296 2.9). Pure functions over message values and the
// configuration, shared by the daemon's initiator and responder sides.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/message.hpp"

namespace ipsentry::ike::v2 {

// ---- proposals ---------------------------------------------------------------

/// Our IKE proposals as an SA payload: IKE_SA_INIT (no SPI), or an IKE SA
/// rekey (our new 8-byte SPI).
[[nodiscard]] SaPayload ike_sa_payload(const std::vector<filters::IkeProposal>& ours, Bytes spi = {});

/// What a CHILD_SA was negotiated with.
struct ChildSuite {
  filters::IpsecProtocol protocol = filters::IpsecProtocol::esp;
  filters::KeyedCipher encryption{filters::Cipher::null, 0};  // ESP
  filters::Integrity integrity = filters::Integrity::none;
  filters::DhGroup dh = filters::DhGroup::none;  // PFS group of a CREATE_CHILD_SA
  bool esn = false;
  /// Key bytes the KEYMAT gives each direction: cipher key plus salt, and integrity key.
  [[nodiscard]] std::size_t encryption_key_len() const noexcept;
  [[nodiscard]] std::size_t integrity_key_len() const noexcept;
  /// "aes-gcm-16 (128-bit)", "aes-cbc (256-bit) + hmac-sha256-128".
  [[nodiscard]] std::string str() const;
};

/// Our ESP or AH proposals with our inbound SPI. `pfs`: the DH group to
/// offer (CREATE_CHILD_SA with PFS); none in IKE_AUTH, where the CHILD_SA
/// uses the IKE SA's keys (RFC 7296 1.2: no KE there).
[[nodiscard]] SaPayload child_sa_payload(const std::vector<filters::ChildProposal>& ours, std::uint32_t spi,
                                         filters::DhGroup pfs);

/// Responder: the first of the initiator's proposals that one of ours
/// accepts, reduced to one transform of each type in our order of
/// preference, as the response carries it (with `spi` for IKE rekeys).
/// `ke_group`: the group of the initiator's KE payload; when that proposal
/// and ours both allow it, it is chosen over our first preference, so an
/// order difference costs no INVALID_KE_PAYLOAD round trip. A choice whose
/// `suite.dh` differs from it is answered with INVALID_KE_PAYLOAD.
struct IkeChoice {
  Proposal answer;
  IkeSuite suite;
};
[[nodiscard]] std::optional<IkeChoice> choose_ike(const SaPayload& offered,
                                                  const std::vector<filters::IkeProposal>& ours, Bytes spi = {},
                                                  filters::DhGroup ke_group = filters::DhGroup::none);
/// The same for a CHILD_SA. `pfs_group`: the group of the KE payload the
/// request carried (none: no KE, so a proposal with a DH transform other
/// than NONE is not acceptable). With a KE, the common group is its group
/// when both allow it, else our first common one (`suite.dh` then differs
/// from `pfs_group`: answer INVALID_KE_PAYLOAD), else no group where both
/// allow NONE. Without a KE our groups are not insisted on (IKE_AUTH never
/// has one): a rekey that must have PFS checks `suite.dh`. `our_spi` goes
/// into the answer.
struct ChildChoice {
  Proposal answer;
  ChildSuite suite;
  std::uint32_t peer_spi = 0;  // the SPI the initiator will receive on (our outbound SPI)
};
[[nodiscard]] std::optional<ChildChoice> choose_child(const SaPayload& offered,
                                                      const std::vector<filters::ChildProposal>& ours,
                                                      filters::DhGroup pfs_group, std::uint32_t our_spi);

/// Initiator: the responder's answer must be one proposal with one
/// transform of each type, all of them among what we offered. Returns
/// the suite, or nullopt with the reason.
[[nodiscard]] std::optional<IkeSuite> accept_ike(const SaPayload& answer, const SaPayload& offered, std::string& why);
[[nodiscard]] std::optional<ChildChoice> accept_child(const SaPayload& answer, const SaPayload& offered,
                                                      std::string& why);

/// The DH group the responder asks for in INVALID_KE_PAYLOAD, if it is one
/// we offered (otherwise the negotiation fails).
[[nodiscard]] std::optional<filters::DhGroup> acceptable_ke_group(const SaPayload& offered, std::uint16_t group);

// ---- traffic selectors (RFC 7296 2.9) ----------------------------------------

/// The selectors a policy protects, from our side: `local` is what the
/// policy calls `from` ("me" becomes `me`), `remote` its `to`, with its
/// protocol and ports. In transport mode both sides are single addresses.
struct PolicySelectors {
  std::vector<TrafficSelector> local;
  std::vector<TrafficSelector> remote;
};
[[nodiscard]] PolicySelectors policy_selectors(const filters::PolicyConfig& policy, const dissect::IpAddr& me,
                                               const dissect::IpAddr& peer);

/// Responder narrowing: the parts of the initiator's TSi (its side) and TSr
/// (ours) that the policy allows. nullopt when nothing is left
/// (TS_UNACCEPTABLE). With several initiator selectors, the first pair
/// (the triggering packet's, RFC 7296 2.9) decides which policy range is
/// chosen when the policy cannot take them all.
struct Narrowed {
  std::vector<TrafficSelector> initiator;  // TSi in the response
  std::vector<TrafficSelector> responder;  // TSr in the response
};
[[nodiscard]] std::optional<Narrowed> narrow(const std::vector<TrafficSelector>& tsi,
                                             const std::vector<TrafficSelector>& tsr, const PolicySelectors& ours);

/// Initiator: the responder may only narrow, never widen, what we offered.
[[nodiscard]] bool within(const std::vector<TrafficSelector>& answer, const std::vector<TrafficSelector>& offered);

/// Whether a packet's addresses, protocol and ports fall in a selector list.
[[nodiscard]] bool covers(const std::vector<TrafficSelector>& ts, const dissect::IpAddr& addr, std::uint8_t protocol,
                          std::uint16_t port);

}  // namespace ipsentry::ike::v2
