// The IKEv2 daemon's state, shared by the files that implement it:
//
//   daemon.cpp        the IKE SA table, dispatch of datagrams and acquires, snapshot, reconfigure
//   dos_gate.cpp      cookies and the half-open count (RFC 7296 2.6)
//   exchange.cpp      message-ID windows, retransmission, the response cache, work queue
//   sa_init.cpp       IKE_SA_INIT, both roles
//   ike_auth.cpp      IKE_AUTH, both roles (identities, AUTH, certificates)
//   child.cpp         CHILD_SAs: proposals, traffic selectors, keys, install, create and rekey
//   ike_rekey.cpp     rekeying the IKE SA
//   informational.cpp Delete, DPD, error notifies
//   timers.cpp        tick() and next_deadline()
//
// Shape (charon's, in a single thread without I/O): an IKE SA has at most
// one request of ours in flight (window 1) and a queue of work waiting for
// it; the peer's requests are answered in order, a retransmitted one from
// the cached response. Every effect leaves as an Action.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"
#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/ikev2.hpp"
#include "ipsentry/ike/message.hpp"
#include "ipsentry/ike/negotiation.hpp"

namespace ipsentry::ike::v2 {

namespace detail {

inline constexpr TimeNs kSecond = 1'000'000'000;
inline constexpr TimeNs kNever = INT64_MAX;
/// How long the old inbound SA of a rekeyed child stays when the Delete
/// exchange does not finish (design: 10 s). A rekey responder waits as
/// long at most for the peer's Delete before it sends on the new SA: the
/// peer (ipsentry) keeps its old inbound SA that long after it installed
/// the new pair, which is after our answer left.
inline constexpr TimeNs kRekeyGrace = 10 * kSecond;
/// IKE_SA_INIT retries with a COOKIE (charon's MAX_RETRIES).
inline constexpr unsigned kMaxCookieRetries = 5;
/// A nonce of ours: 32 bytes (RFC 7296 2.10: at least half the prf's key size; charon sends 32).
inline constexpr std::size_t kNonceLen = 32;

/// A profile of the configuration with its credentials loaded.
/// Owned (a clone of the configuration's), so that IKE SAs made with it
/// survive a reconfigure() until they are deleted.
struct Profile {
  filters::IkeProfile cfg;
  std::unique_ptr<Signer> signer;     // method cert
  std::unique_ptr<TrustStore> trust;  // method cert
  [[nodiscard]] bool cert() const noexcept { return cfg.method == filters::IkeAuthMethod::cert; }
};
using ProfilePtr = std::shared_ptr<const Profile>;
/// No policy (it went away in a reconfigure).
inline constexpr std::size_t kNoPolicy = SIZE_MAX;

enum class SaState : std::uint8_t {
  init_sent,  // initiator: IKE_SA_INIT request sent
  auth_sent,  // initiator: IKE_AUTH request sent
  half_open,  // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
  established,
  rekeyed,   // replaced by a rekey: waits for (or sends) the Delete of itself
  deleting,  // our Delete of the IKE SA is in flight
};
[[nodiscard]] const char* to_string(SaState s) noexcept;

/// A CHILD_SA negotiation of ours (IKE_AUTH or CREATE_CHILD_SA).
struct ChildRequest {
  std::size_t policy = 0;
  std::vector<std::uint64_t> acquires;  // held packets waiting for it
  std::optional<std::uint64_t> rekeys;  // the child this one replaces
  std::uint32_t spi = 0;                // our inbound SPI
  SaPayload offered;
  std::vector<TrafficSelector> tsi, tsr;
  bool transport = false;
  std::unique_ptr<KeyExchange> ke;         // PFS (CREATE_CHILD_SA only)
  Buffer nonce;                            // CREATE_CHILD_SA only
  TrafficSelector packet_src, packet_dst;  // the acquire's packet, first in TSi/TSr
  bool has_packet = false;
  bool ke_retried = false;  // INVALID_KE_PAYLOAD answered once
  unsigned temporary_failures = 0;
  TimeNs not_before = 0;                            // after a TEMPORARY_FAILURE: retried from then on
  filters::DhGroup group = filters::DhGroup::none;  // the PFS group to offer
};

struct InitWork {};  // IKE_SA_INIT (initiator)
struct AuthWork {};  // IKE_AUTH (initiator); the child is IkeSa::first_child
struct IkeRekeyWork {
  std::uint64_t spi = 0;  // our SPI of the new IKE SA
  SaPayload offered;
  std::unique_ptr<KeyExchange> ke;
  Buffer nonce;
  bool ke_retried = false;
  filters::DhGroup group = filters::DhGroup::none;  // none: the IKE SA's group
};
/// Deletes a child; `child` 0: one that was never installed here (a
/// refused answer, an expired SA already removed), named by our SPI.
struct DeleteChildWork {
  std::uint64_t child = 0;
  std::uint32_t spi = 0;
  ProtocolId protocol = ProtocolId::esp;
};
struct DeleteIkeWork {};
struct DpdWork {};
/// An INFORMATIONAL request with one error notify (AUTHENTICATION_FAILED
/// after the responder's AUTH did not verify, RFC 7296 2.21.2).
struct NotifyWork {
  std::uint16_t type = 0;
};
using Work =
    std::variant<InitWork, AuthWork, ChildRequest, IkeRekeyWork, DeleteChildWork, DeleteIkeWork, DpdWork, NotifyWork>;
[[nodiscard]] const char* work_name(const Work& w) noexcept;

/// Our request in flight.
struct Outstanding {
  std::uint32_t mid = 0;
  std::uint8_t exchange = 0;
  Work work;
  std::vector<Buffer> packets;  // one datagram, or its RFC 7383 fragments: all retransmitted
  unsigned retransmits = 0;
  TimeNs deadline = kNever;
};

/// The last response we sent, for the peer's retransmissions.
struct ResponseCache {
  bool valid = false;
  std::uint32_t mid = 0;
  Buffer request_hash;  // of the request, or of its fragment 1 (RFC 7383 2.6.1)
  std::vector<Buffer> packets;
};

struct IkeSa {
  std::uint64_t id = 0;
  bool initiator = false;  // the original initiator of this IKE SA (I flag)
  SaState state = SaState::init_sent;
  std::uint64_t spi_i = 0, spi_r = 0;
  Endpoint local, remote;
  ProfilePtr profile;
  std::vector<ProfilePtr> candidates;  // responder before IKE_AUTH: profiles that may apply
  IkeSuite suite;

  // The initial exchanges; cleared once IKE_AUTH is done (or failed).
  Buffer ni, nr;
  std::unique_ptr<KeyExchange> ke;
  Buffer init_request, init_response;  // RealMessage1 / RealMessage2 (RFC 7296 2.15)
  SaPayload offered;                   // initiator: the IKE proposals sent
  Buffer cookie;
  unsigned cookie_retries = 0;
  bool ke_retried = false;
  Buffer init_hash;                        // responder: key in Impl::init_hashes
  std::vector<SignatureHash> peer_hashes;  // RFC 7427
  bool peer_certreq = false;
  std::optional<ChildRequest> first_child;  // initiator: the child of IKE_AUTH

  // Keys.
  filters::SecretBytes sk_d, sk_pi, sk_pr;
  std::unique_ptr<SkCipher> sk_out;  // what we send
  std::unique_ptr<SkCipher> sk_in;   // what the peer sends

  bool nat_local = false;           // we are behind a NAT
  bool nat_remote = false;          // the peer is
  std::string local_id, remote_id;  // text, for the snapshot and events

  // RFC 7383: both announced IKEV2_FRAGMENTATION_SUPPORTED. The peer's
  // fragments of its current request and of the response to ours, and the
  // hash of its current request's fragment 1 (what the response cache keeps).
  bool fragmentation = false;
  FragmentSet request_frags, response_frags;
  Buffer request_frag1_hash;

  // Windows.
  std::uint32_t next_mid = 0;  // our next request
  std::optional<Outstanding> outstanding;
  std::uint32_t peer_mid = 0;  // the peer's next request
  ResponseCache cache;
  std::deque<Work> queue;

  // Timers.
  TimeNs created = 0;
  TimeNs established_at = 0;
  TimeNs last_received = 0;
  TimeNs rekey_at = kNever;
  TimeNs expire_at = kNever;
  TimeNs half_open_deadline = kNever;
  TimeNs destroy_at = kNever;  // a rekeyed SA whose Delete never came

  // IKE SA rekey collision (RFC 7296 2.8.2): the new SA made when we
  // answered the peer's rekey while ours was in flight, and the lowest
  // nonce of that exchange.
  std::optional<std::uint64_t> peer_rekey_sa;
  Buffer peer_rekey_lowest;
  bool failed_silent = false;  // the peer never answered (soft association)
  bool replaced = false;       // a rekey made a successor: its deletion is no event

  [[nodiscard]] std::uint64_t our_spi() const noexcept { return initiator ? spi_i : spi_r; }
  [[nodiscard]] std::uint64_t peer_spi() const noexcept { return initiator ? spi_r : spi_i; }
  [[nodiscard]] bool established() const noexcept { return state == SaState::established; }
  [[nodiscard]] bool busy() const noexcept { return outstanding.has_value(); }
};

enum class ChildState : std::uint8_t {
  installed,
  rekeyed,   // replaced by a newer child: inbound kept until its Delete or the grace; outbound
             // gone, or (rekey responder) in use until the peer's Delete or the grace
  deleting,  // our Delete is in flight
};

struct Child {
  std::uint64_t id = 0;
  std::uint64_t ike_sa = 0;
  std::size_t policy = 0;
  std::string policy_name;
  ChildSuite suite;
  bool transport = false;
  bool udp_encap = false;
  std::uint32_t spi_in = 0, spi_out = 0;
  std::vector<TrafficSelector> local_ts, remote_ts;
  ChildState state = ChildState::installed;
  TimeNs installed_at = 0;
  TimeNs rekey_at = kNever;
  TimeNs expire_at = kNever;
  TimeNs remove_at = kNever;  // rekeyed: the old inbound SA goes at the latest then
  bool outbound_replaced = false;
  /// A rekey responder's new child: its outbound SA is not used until the
  /// peer deletes the child it rekeyed (ActivateOutboundAction).
  bool outbound_pending = false;
  /// Rekeyed as responder: the child whose outbound SA takes over from
  /// ours when this one goes (the peer's Delete, the grace, expiry).
  std::optional<std::uint64_t> successor;
  bool rekey_queued = false;  // a rekey of it is queued or in flight
  // Child rekey collision (RFC 7296 2.8.1): the child we created answering
  // the peer's rekey of this one while ours was in flight, and the lowest
  // nonce of that exchange.
  std::optional<std::uint64_t> peer_rekey_child;
  Buffer peer_rekey_lowest;
};

/// Failed negotiations with a peer, for the back-off of later acquires.
struct PeerFailures {
  unsigned count = 0;
  TimeNs retry_at = 0;
};

struct SoftAssociation {
  std::size_t policy = 0;
  std::string policy_name;
  dissect::IpAddr peer;
  TimeNs until = 0;
};

/// The responder's DoS gate (RFC 7296 2.6, charon's thresholds).
class DosGate {
 public:
  DosGate() = default;
  void configure(const Options& o) { options_ = &o; }
  /// Starts the first cookie secret.
  void start(Random& random, TimeNs now);
  /// Whether an IKE_SA_INIT from `ip` must carry a valid COOKIE now.
  [[nodiscard]] bool cookie_required(const dissect::IpAddr& ip, TimeNs now, bool& turned_on);
  /// The COOKIE notify data for a request: version | SHA-256(secret | Ni | IPi | SPIi).
  [[nodiscard]] Buffer make(Bytes ni, const dissect::IpAddr& ip, std::uint64_t spi_i) const;
  /// Checks a COOKIE in constant time against the current and previous secret.
  [[nodiscard]] bool check(Bytes cookie, Bytes ni, const dissect::IpAddr& ip, std::uint64_t spi_i) const;
  [[nodiscard]] bool over_limit() const noexcept;
  void add(const dissect::IpAddr& ip);
  void remove(const dissect::IpAddr& ip);
  [[nodiscard]] std::size_t half_open() const noexcept { return total_; }
  [[nodiscard]] bool cookies_on(TimeNs now) const noexcept { return now < on_until_; }
  /// Rotates the secret when due; returns true when cookies just turned off.
  bool tick(Random& random, TimeNs now);
  [[nodiscard]] TimeNs next_deadline() const noexcept;

 private:
  [[nodiscard]] Buffer compute(const filters::SecretBytes& secret, std::uint8_t version, Bytes ni,
                               const dissect::IpAddr& ip, std::uint64_t spi_i) const;
  const Options* options_ = nullptr;
  filters::SecretBytes secret_, previous_;
  std::uint8_t version_ = 0;
  TimeNs rotate_at_ = 0;
  TimeNs on_until_ = 0;  // cookies stay on 10 s after the threshold was last reached
  bool was_on_ = false;
  std::size_t total_ = 0;
  std::map<dissect::IpAddr, std::size_t> per_ip_;
};

// Small helpers used across the files.
[[nodiscard]] Buffer random_bytes(Random& r, std::size_t n);
[[nodiscard]] std::uint64_t random_u64(Random& r);
[[nodiscard]] std::uint32_t random_u32(Random& r);
/// A lifetime shortened by a random 10-20 % (so both ends do not rekey at once).
[[nodiscard]] TimeNs jittered(Random& r, std::uint64_t seconds);
[[nodiscard]] bool equal_const(Bytes a, Bytes b) noexcept;
[[nodiscard]] Buffer sha256(Bytes data);
[[nodiscard]] TypedPayload notify_payload(std::uint16_t type, Bytes data = {});
[[nodiscard]] const char* notify_name(std::uint16_t type) noexcept;
[[nodiscard]] std::string hex_spi(std::uint64_t spi);
/// The identity we present: the profile's local_id, or by default our
/// address (psk) or the certificate's subject (cert).
[[nodiscard]] IdPayload our_identity(const Profile& p, const dissect::IpAddr& local);
[[nodiscard]] std::string identity_text(const IdPayload& id);
/// Nonces compared as charon compares them (bytes, then length), for collisions.
[[nodiscard]] bool lower_nonce(Bytes a, Bytes b) noexcept;
[[nodiscard]] Buffer min_nonce(Bytes a, Bytes b);
/// choose_ike(), preferring the group of the initiator's KE when acceptable.
[[nodiscard]] std::optional<IkeChoice> choose_ike_for_ke(const SaPayload& offered,
                                                         const std::vector<filters::IkeProposal>& ours,
                                                         std::uint16_t ke_group, Bytes spi);
/// NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 2.23).
[[nodiscard]] Buffer natd_hash(std::uint64_t spi_i, std::uint64_t spi_r, const Endpoint& e);

}  // namespace detail

using detail::Child;
using detail::ChildRequest;
using detail::IkeSa;
using detail::ProfilePtr;
using detail::Work;

struct Daemon::Impl {
  Impl(const filters::Config& config, const filters::LocalAddresses& local, Options options);

  // ---- configuration (daemon.cpp) ----
  const filters::Config* config = nullptr;
  filters::LocalAddresses local;
  Options options;
  Random* random = nullptr;
  std::vector<ProfilePtr> profiles;
  std::set<std::uint32_t> manual_spis;  // SPIs of configured SAs, never handed out
  static std::vector<ProfilePtr> load_profiles(const filters::Config& config);
  [[nodiscard]] ProfilePtr profile_named(const std::string& name) const;
  [[nodiscard]] const filters::PolicyConfig& policy(std::size_t i) const { return config->policies.at(i); }
  [[nodiscard]] std::int64_t wall_clock() const;
  /// A fresh key exchange (Options::key_exchange or OpenSSL's). Throws CryptoError.
  [[nodiscard]] std::unique_ptr<KeyExchange> make_ke(filters::DhGroup group) const;

  // ---- the table (daemon.cpp) ----
  std::map<std::uint64_t, std::unique_ptr<IkeSa>> sas;
  std::unordered_map<std::uint64_t, std::uint64_t> by_spi;  // our IKE SPI -> IKE SA id (0: reserved)
  std::map<Buffer, std::uint64_t> init_hashes;              // responder: IKE_SA_INIT request hash -> IKE SA id
  std::map<std::uint64_t, Child> children;
  std::set<std::uint32_t> child_spis;  // our inbound SPIs in use or reserved
  std::uint64_t next_sa_id = 1;
  std::uint64_t next_child_id = 1;
  detail::DosGate gate;
  MainModeCounters counters;
  std::map<std::pair<std::string, dissect::IpAddr>, detail::PeerFailures> failures;
  std::vector<detail::SoftAssociation> soft;
  TimeNs event_window = 0;
  unsigned events_in_window = 0;

  void on_datagram(const Datagram& d, const Message& header, TimeNs now, Actions& out);
  IkeSa& new_sa(bool initiator, TimeNs now);
  [[nodiscard]] IkeSa* find_sa(std::uint64_t id);
  [[nodiscard]] IkeSa* find_by_spi(std::uint64_t our_spi);
  [[nodiscard]] std::uint64_t alloc_ike_spi();
  [[nodiscard]] std::uint32_t alloc_child_spi();
  void release_child_spi(std::uint32_t spi);
  /// Removes an IKE SA and the children still attached to it (Remove
  /// actions), and reports its waiting acquires failed. `sa` is gone after.
  void destroy_sa(IkeSa& sa, TimeNs now, Actions& out, const std::string& reason);
  void fail_acquires(IkeSa& sa, TimeNs now, Actions& out);
  [[nodiscard]] IkeSa* sa_for_peer(const std::string& profile, const dissect::IpAddr& peer);
  [[nodiscard]] std::vector<Child*> children_of(std::uint64_t sa_id);
  [[nodiscard]] Child* child_by_spi_out(std::uint64_t sa_id, std::uint32_t spi);
  [[nodiscard]] Child* find_child(std::uint64_t id);
  [[nodiscard]] ChildRequest* pending_request(IkeSa& sa, std::size_t policy);
  void remember_failure(const IkeSa& sa, TimeNs now);
  void start_soft_association(std::size_t policy, const dissect::IpAddr& peer, TimeNs now, Actions& out);
  [[nodiscard]] bool soft_active(std::size_t policy, const dissect::IpAddr& peer, TimeNs now) const;
  void event(Actions& out, EventKind kind, std::string text);
  /// A dropped datagram: counted always, an event at most a few times a second.
  void invalid(Actions& out, TimeNs now, const std::string& why);
  void on_acquire(const Acquire& a, TimeNs now, Actions& out);
  void acquire_done(Actions& out, std::uint64_t acquire, AcquireDoneAction::Result r, std::uint64_t child = 0);

  // ---- windows (exchange.cpp) ----
  void on_sa_datagram(IkeSa& sa, const Datagram& d, const Message& header, TimeNs now, Actions& out);
  void on_request(IkeSa& sa, const Datagram& d, const Message& header, TimeNs now, Actions& out);
  void on_response(IkeSa& sa, const Datagram& d, const Message& header, TimeNs now, Actions& out);
  void dispatch_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void dispatch_response(IkeSa& sa, Work work, const Message& m, TimeNs now, Actions& out);
  /// Sends a request of ours (the next message ID) and keeps it for retransmission.
  void send_request(IkeSa& sa, Work work, Message m, TimeNs now, Actions& out);
  /// Answers the peer's request and caches the answer for its retransmissions.
  void send_response(IkeSa& sa, const Message& m, const Datagram& request, Bytes request_hash, Actions& out);
  [[nodiscard]] Message response_to(const IkeSa& sa, const Message& request) const;
  [[nodiscard]] Message request_of(const IkeSa& sa, std::uint8_t exchange) const;
  void emit_send(Actions& out, const Endpoint& local, const Endpoint& remote, Buffer bytes);
  /// An encrypted message as it goes to `remote` from `from`: fragmented
  /// (RFC 7383) when that was negotiated and it is larger than the fragment size.
  [[nodiscard]] std::vector<Buffer> encode_out(const IkeSa& sa, const Message& m, const Endpoint& from,
                                               const Endpoint& remote);
  /// Collects an authenticated fragment of the peer's message; true with
  /// `m` filled once it is whole (`st` then says how it decoded).
  [[nodiscard]] bool collect_fragment(IkeSa& sa, const Datagram& d, FragmentSet& set, Message& m, DecodeStatus& st,
                                      std::string& why, TimeNs now, Actions& out);
  /// Starts queued work when no request is in flight.
  void start_next(std::uint64_t sa_id, TimeNs now, Actions& out);
  void start_work(IkeSa& sa, Work work, TimeNs now, Actions& out);
  void retransmit(IkeSa& sa, TimeNs now, Actions& out);
  void request_timed_out(IkeSa& sa, TimeNs now, Actions& out);
  /// An authenticated message from a new address: NAT mapping change.
  void peer_moved(IkeSa& sa, const Datagram& d, Actions& out);
  void queue(IkeSa& sa, Work w, TimeNs now, Actions& out);

  // ---- IKE_SA_INIT (sa_init.cpp) ----
  void on_init_request(const Datagram& d, const Message& header, TimeNs now, Actions& out);
  void answer_init_error(const Datagram& d, const Message& request, std::uint16_t type, Bytes data, Actions& out);
  [[nodiscard]] bool init_request_admitted(const Datagram& d, const Message& m, TimeNs now, Actions& out);
  [[nodiscard]] std::vector<ProfilePtr> responder_profiles(const Datagram& d) const;
  void respond_init(const Datagram& d, const Message& m, Bytes hash, std::vector<ProfilePtr> candidates,
                    const IkeChoice& choice, TimeNs now, Actions& out);
  void initiate(IkeSa& sa, TimeNs now, Actions& out);
  void send_init_request(IkeSa& sa, TimeNs now, Actions& out);
  void on_init_response(IkeSa& sa, const Datagram& d, const Message& m, TimeNs now, Actions& out);
  /// COOKIE and INVALID_KE_PAYLOAD answers: true when handled (retried or failed).
  [[nodiscard]] bool init_response_retry(IkeSa& sa, const Message& m, TimeNs now, Actions& out);
  [[nodiscard]] bool derive_initial_keys(IkeSa& sa, Bytes shared, Actions& out);
  void detect_nat(IkeSa& sa, const Message& m, const Endpoint& peer_seen, const Endpoint& local_seen);
  [[nodiscard]] std::vector<TypedPayload> natd_payloads(const IkeSa& sa) const;
  void initiator_failed(IkeSa& sa, const std::string& why, TimeNs now, Actions& out);

  // ---- IKE_AUTH (ike_auth.cpp) ----
  void send_auth_request(IkeSa& sa, TimeNs now, Actions& out);
  void on_auth_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void on_auth_response(IkeSa& sa, const Message& m, TimeNs now, Actions& out);
  [[nodiscard]] Buffer auth_octets(const IkeSa& sa, bool of_initiator, const IdPayload& id) const;
  [[nodiscard]] bool make_auth(IkeSa& sa, const detail::Profile& p, const IdPayload& id, AuthPayload& auth,
                               std::string& why);
  /// Checks the peer's identity and AUTH with one profile: its remote_id,
  /// its PSK or its trust anchors. False with the reason.
  [[nodiscard]] bool verify_peer(IkeSa& sa, const detail::Profile& p, const Message& m, std::string& why);
  [[nodiscard]] bool identity_is_ours(const detail::Profile& p, const IkeSa& sa, const IdPayload& id) const;
  void established(IkeSa& sa, TimeNs now, Actions& out);
  void clear_init_state(IkeSa& sa);
  void responder_auth_failed(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, const std::string& why,
                             TimeNs now, Actions& out);
  void initiator_auth_failed(IkeSa& sa, const std::string& why, TimeNs now, Actions& out);
  void initial_contact(const IkeSa& sa, TimeNs now, Actions& out);

  // ---- CHILD_SAs (child.cpp) ----
  [[nodiscard]] std::vector<filters::ChildProposal> child_proposals(const detail::Profile& p, std::size_t policy,
                                                                    bool with_pfs) const;
  void prepare_child_request(IkeSa& sa, ChildRequest& req, bool create_child);
  void add_child_payloads(const ChildRequest& req, Message& m) const;
  /// Initiator: the child part of a response. Returns the new child or nullptr.
  /// `defer_outbound`: a rekey collision we lost; the child is redundant
  /// and never sends.
  Child* accept_child_response(IkeSa& sa, ChildRequest& req, const Message& m, Bytes pfs_shared, Bytes ni, Bytes nr,
                               std::optional<std::uint64_t> replaces, TimeNs now, Actions& out,
                               bool defer_outbound = false);
  /// Responder: the child part of a request; adds the response payloads
  /// (or the error notify) to `resp`. Returns the installed child or nullptr.
  Child* answer_child(IkeSa& sa, const Message& m, std::optional<std::uint64_t> rekeys, bool create_child,
                      Message& resp, Buffer& nr, TimeNs now, Actions& out);
  [[nodiscard]] std::optional<std::size_t> select_policy(const IkeSa& sa, const Message& m, Narrowed& narrowed,
                                                         std::optional<std::size_t> only) const;
  struct Installed {
    ChildSuite suite;
    bool transport = false;
    std::uint32_t spi_in = 0, spi_out = 0;
    std::vector<TrafficSelector> local_ts, remote_ts;
    bool exchange_initiator = false;
    bool defer_outbound = false;  // see ChildSa::outbound_deferred
  };
  Child& install_child(IkeSa& sa, std::size_t policy, Installed what, const ChildKeys& keys,
                       std::optional<std::uint64_t> replaces, TimeNs now, Actions& out);
  [[nodiscard]] filters::SaConfig sa_config(const IkeSa& sa, const Child& c, bool inbound, const ChildKeys& keys,
                                            bool exchange_initiator) const;
  void send_create_child(IkeSa& sa, ChildRequest req, TimeNs now, Actions& out);
  void on_create_child_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void on_child_rekey_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void on_create_child_response(IkeSa& sa, ChildRequest req, const Message& m, TimeNs now, Actions& out);
  [[nodiscard]] bool child_error_response(IkeSa& sa, ChildRequest& req, const Message& m, TimeNs now, Actions& out);
  void finish_child_rekey(IkeSa& sa, Child& fresh, const ChildRequest& req, Bytes nr, TimeNs now, Actions& out);
  void queue_child_rekey(IkeSa& sa, Child& c, TimeNs now, Actions& out);
  void child_request_failed(IkeSa& sa, ChildRequest& req, const std::string& why, TimeNs now, Actions& out);
  /// Removes a child's SAs; a deferred outbound SA of its successor is used
  /// from then on (never a moment without one).
  void remove_child(Child& c, const std::string& reason, Actions& out);
  void child_expired(std::uint64_t child, bool hard, TimeNs now, Actions& out);
  void child_mapping(std::uint64_t child, const Endpoint& from, TimeNs now, Actions& out);

  // ---- IKE SA rekey (ike_rekey.cpp) ----
  void send_ike_rekey(IkeSa& sa, detail::IkeRekeyWork work, TimeNs now, Actions& out);
  void on_ike_rekey_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void on_ike_rekey_response(IkeSa& sa, detail::IkeRekeyWork work, const Message& m, TimeNs now, Actions& out);
  IkeSa* make_rekeyed_sa(IkeSa& old_sa, bool initiator, std::uint64_t spi_i, std::uint64_t spi_r, const IkeSuite& suite,
                         Bytes shared, Bytes ni, Bytes nr, TimeNs now, Actions& out);
  void move_children(IkeSa& from, IkeSa& to);
  void ike_rekey_done(IkeSa& old_sa, IkeSa& fresh, TimeNs now, Actions& out);

  // ---- INFORMATIONAL (informational.cpp) ----
  void on_informational_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now, Actions& out);
  void on_informational_response(IkeSa& sa, Work& work, const Message& m, TimeNs now, Actions& out);
  void delete_children_request(IkeSa& sa, const DeletePayload& del, Message& response, Actions& out);
  void send_informational(IkeSa& sa, Work work, TimeNs now, Actions& out);
  void queue_delete_child(IkeSa& sa, Child& c, TimeNs now, Actions& out);
  void queue_delete_ike(IkeSa& sa, TimeNs now, Actions& out);
  /// Sends a Delete of the IKE SA once, without waiting (shutdown, hard expiry).
  void delete_now(IkeSa& sa, Actions& out);

  // ---- timers (timers.cpp) ----
  void tick(TimeNs now, Actions& out);
  void tick_sa(std::uint64_t id, TimeNs now, Actions& out);
  void tick_established(IkeSa& sa, TimeNs now, Actions& out);
  void tick_children(TimeNs now, Actions& out);
  void tick_soft(TimeNs now, Actions& out);
  [[nodiscard]] TimeNs next_deadline() const noexcept;
  [[nodiscard]] TimeNs sa_deadline(const IkeSa& sa) const noexcept;
  [[nodiscard]] TimeNs retransmit_delay(unsigned retransmits) const noexcept;
  /// How long a request is retransmitted before we give up.
  [[nodiscard]] TimeNs retransmit_span() const noexcept;

  // ---- observation and configuration (daemon.cpp) ----
  [[nodiscard]] Snapshot snapshot(TimeNs now) const;
  void reconfigure(const filters::Config& config, const filters::LocalAddresses& local, TimeNs now, Actions& out);
  void shutdown(TimeNs now, Actions& out);
};

}  // namespace ipsentry::ike::v2
