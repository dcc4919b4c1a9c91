// IKE analysis of a capture: follows every negotiation (IKEv1 Main /
// Aggressive / Quick Mode, IKEv2 IKE_SA_INIT / IKE_AUTH / CREATE_CHILD_SA),
// decrypts messages with supplied keys, derives the keys of the ESP SAs
// they create, and counts what the IP Security Monitor counted.
//
// The analyzer sees frames in capture order. It is not on the ESP hot path:
// IKE messages are rare, and for other frames it only looks at cleartext
// packets between peers whose negotiation went unanswered (soft
// associations), which costs nothing while there are none.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::ike {

/// What became of an encrypted IKE message.
enum class DecryptStatus : std::uint8_t {
  cleartext,     // nothing was encrypted
  decrypted,     // integrity checked (or AEAD tag verified) and decrypted
  icv_mismatch,  // decrypted, but the ICV does not match: shown, flagged
  failed,        // keys given but the message does not decrypt to payloads
  no_key,        // encrypted and no key for this IKE SA
  no_iv,         // IKEv1: the IV cannot be derived (KE payloads or the hash are missing)
  fragment,      // one IKEv2 fragment, waiting for the others
};
[[nodiscard]] const char* to_string(DecryptStatus s) noexcept;

/// One IKE message, as the analyzer understood it.
struct MessageRecord {
  std::uint64_t frame = 0;
  std::int64_t ts_ns = 0;
  dissect::IpAddr src;
  dissect::IpAddr dst;
  std::uint16_t sport = 0;
  std::uint16_t dport = 0;
  dissect::ike::Header header;
  const char* malformed = nullptr;  // the header or payload chain does not parse
  DecryptStatus status = DecryptStatus::cleartext;
  std::string detail;                        // why decryption failed, which key was used
  std::vector<std::uint8_t> plaintext;       // decrypted payload chain
  std::uint8_t first_inner = 0;              // type of its first payload
  std::string summary;                       // "IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]"
  std::vector<std::uint8_t> payloads;        // types of the cleartext payload chain
  std::vector<std::uint8_t> inner_payloads;  // types of the decrypted chain
  std::vector<std::uint16_t> notifies;       // Notify message types, outer and inner
  bool retransmission = false;
  // It carries the error Notify that ended its negotiation (or repeats it).
  bool ends_negotiation = false;
  std::int32_t negotiation = -1;  // index in Analyzer::negotiations()
};

/// What every report, list and filter says about an IKE message, in the
/// words of the ESP/AH verdicts (the values are ipsec::Verdict's, so one
/// filter and one colour scheme serve both): ok (cleartext, or decrypted
/// and verified), icv-fail, decrypt-fail, malformed, unverifiable (no key,
/// no IV, a fragment waiting for the others); and ike-fail, the one IKE
/// adds: the message carries the error Notify that ended its negotiation.
/// How it was decrypted stays in DecryptStatus.
enum class MessageVerdict : std::uint8_t {
  ok = static_cast<std::uint8_t>(ipsec::Verdict::ok),
  icv_fail = static_cast<std::uint8_t>(ipsec::Verdict::icv_fail),
  decrypt_fail = static_cast<std::uint8_t>(ipsec::Verdict::decrypt_fail),
  malformed = static_cast<std::uint8_t>(ipsec::Verdict::malformed),
  unverifiable = static_cast<std::uint8_t>(ipsec::Verdict::unverifiable),
  ike_fail = static_cast<std::uint8_t>(ipsec::kVerdictCount),
};
[[nodiscard]] MessageVerdict verdict(const MessageRecord& m) noexcept;
/// "ok", "icv-fail", ... as ipsec::verdict_name, and "ike-fail".
[[nodiscard]] std::string_view verdict_name(MessageVerdict v) noexcept;
/// Whether a message with this verdict failed (the exit status of `verify`
/// and the --stop-on ike-fail event): not ok, and not merely unverifiable.
[[nodiscard]] constexpr bool failed(MessageVerdict v) noexcept {
  return v != MessageVerdict::ok && v != MessageVerdict::unverifiable;
}

enum class Outcome : std::uint8_t { in_progress, established, failed, no_answer, unknown };
[[nodiscard]] const char* to_string(Outcome o) noexcept;

struct Negotiation {
  std::uint8_t version = 0;
  std::string kind;  // "Main Mode", "Aggressive Mode", "Quick Mode", "IKE_SA", "CHILD_SA"
  std::uint64_t spi_i = 0;
  std::uint64_t spi_r = 0;
  std::uint32_t message_id = 0;  // Quick Mode / CREATE_CHILD_SA
  dissect::IpAddr initiator;
  dissect::IpAddr responder;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
  std::vector<std::uint64_t> frames;
  std::string proposal;  // the chosen one, when seen
  Outcome outcome = Outcome::in_progress;
  std::string reason;  // the Notify that ended it, or why the outcome is unknown
  bool answered = false;
  bool auth_failure = false;
  // Another negotiation whose failure ended this one too (a CHILD_SA whose
  // IKE_AUTH failed authentication): one event, counted there, not here.
  std::int32_t failed_with = -1;
  bool clear_traffic_after = false;  // cleartext between the peers while unanswered
  std::uint32_t retransmissions = 0;
  std::vector<std::string> child_spis;  // "esp 0xc1d2e3f4 → 192.0.2.2"
  [[nodiscard]] double duration() const noexcept { return static_cast<double>(last_ns - first_ns) / 1e9; }
};

/// The Main Mode / Quick Mode statistics of the seeds' IP Security Monitor,
/// from what the capture shows.
struct Statistics {
  std::uint64_t messages = 0;
  std::uint64_t encrypted = 0;
  std::uint64_t decrypted = 0;
  std::uint64_t main_modes = 0;   // IKEv1 phase 1 and IKEv2 IKE SAs established
  std::uint64_t quick_modes = 0;  // IKEv1 Quick Modes and IKEv2 CHILD_SAs established
  // One per failed negotiation (a CHILD_SA that fails with its IKE_AUTH is
  // part of that failure), of which those that failed authentication.
  std::uint64_t negotiation_failures = 0;
  std::uint64_t authentication_failures = 0;
  std::uint64_t invalid_cookies = 0;  // INVALID-COOKIE / INVALID_IKE_SPI notifications
  std::uint64_t invalid_packets = 0;  // malformed, or failing integrity or decryption
  std::uint64_t soft_associations = 0;
  std::uint64_t retransmissions = 0;
  std::uint64_t no_answer = 0;
};

class Analyzer {
 public:
  explicit Analyzer(std::vector<filters::IkeSaConfig> keys);
  ~Analyzer();
  Analyzer(const Analyzer&) = delete;
  Analyzer& operator=(const Analyzer&) = delete;

  /// Looks at one frame; `p` is its dissection. Returns the record when the
  /// frame holds an IKE message.
  const MessageRecord* observe(const dissect::Frame& frame, const dissect::Packet& p);

  /// Whether cleartext frames matter right now (a negotiation is waiting
  /// for its answer): callers skip dissecting them otherwise.
  [[nodiscard]] bool watching_clear() const noexcept { return !unanswered_.empty(); }

  /// Ends the capture: negotiations still waiting for an answer become
  /// "no answer", soft associations are counted.
  void finish();

  [[nodiscard]] const MessageRecord* record(std::uint64_t frame) const;
  [[nodiscard]] const std::vector<MessageRecord>& records() const noexcept { return records_; }
  [[nodiscard]] const std::vector<Negotiation>& negotiations() const noexcept { return negotiations_; }
  [[nodiscard]] const Statistics& statistics() const noexcept { return stats_; }

  /// The ESP SAs whose keys were derived from SK_d / SKEYID_d and the
  /// exchanges that created them.
  [[nodiscard]] std::vector<filters::SaConfig> learned_sas() const;
  /// The same one at a time, for a live capture that installs each SA as
  /// soon as its negotiation has been seen.
  [[nodiscard]] std::size_t learned_count() const noexcept { return learned_.size(); }
  [[nodiscard]] filters::SaConfig learned_sa(std::size_t i) const { return learned_.at(i).clone(); }
  /// Sentences on what could not be learned and why (PFS, missing
  /// messages, unknown algorithms).
  [[nodiscard]] const std::vector<std::string>& notes() const noexcept { return notes_; }
  [[nodiscard]] bool has_keys() const noexcept { return !keys_.empty(); }

  /// Adds the decrypted payloads of an IKE frame to a dissection tree
  /// (under the node of its IKE message), and its verdict when it ended
  /// its negotiation.
  void add_decrypted(std::uint64_t frame, dissect::Tree& tree) const;

  struct IkeSaState;

 private:
  struct Exchange;
  struct Payloads;
  struct ChildKeying;

  // One IKE message: its header, its decryption, then track().
  MessageRecord& process(const dissect::Frame& frame, const dissect::Packet& p, dissect::Bytes msg);
  MessageRecord& new_record(const dissect::Frame& frame, const dissect::Packet& p);
  void note_retransmission(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, bool from_initiator);
  // Decryption, per IKE version: true when `inner` holds the decrypted
  // payload chain. decrypt_v1_with tries one key: true when no other key
  // is to be tried.
  bool decrypt_v2(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, const dissect::ike::Chain& outer,
                  bool from_initiator, dissect::ike::Chain& inner);
  void accept_v2(int ki, MessageRecord& rec, IkeSaState& st, const dissect::ike::Payload& sk, bool from_initiator,
                 std::vector<std::uint8_t> plain, bool icv_ok);
  bool decrypt_v1(MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, dissect::ike::Chain& inner);
  bool decrypt_v1_with(int ki, MessageRecord& rec, IkeSaState& st, dissect::Bytes msg, dissect::ike::Chain& inner,
                       bool& have_inner);
  // What the message means for its negotiations and the SAs they create.
  void track(MessageRecord& rec, const dissect::ike::Chain& outer, const dissect::ike::Chain* inner, IkeSaState& st);
  // The negotiations a message belongs to: opened, touched by the message,
  // ended by an error Notify.
  int new_neg(const MessageRecord& rec, const std::string& kind, std::uint32_t mid, const dissect::IpAddr& initiator,
              const dissect::IpAddr& responder);
  void touch(MessageRecord& rec, int idx, bool answer);
  void fail(MessageRecord& rec, int idx, const dissect::ike::Notify& n);
  void fail_auth_children(const IkeSaState& st);
  // One function per exchange, along the seams of the IKEv2 daemon's files
  // (ike/src/v2/): what the exchange says about its negotiation.
  void track_v1(MessageRecord& rec, const Payloads& pl, IkeSaState& st);
  void track_phase1(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool from_initiator);
  void track_quick_mode(MessageRecord& rec, const Payloads& pl, IkeSaState& st);
  void track_v1_informational(MessageRecord& rec, const Payloads& pl, IkeSaState& st);
  void track_v2(MessageRecord& rec, const Payloads& pl, IkeSaState& st);
  void track_sa_init(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response);
  void track_ike_auth(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response);
  void track_create_child(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response);
  void track_v2_informational(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response);
  Exchange& child_exchange(MessageRecord& rec, const Payloads& pl, IkeSaState& st, bool response, bool auth);
  void child_answer_unread(const Exchange& ex);
  void child_answered(MessageRecord& rec, const Exchange& ex, const dissect::ike::Notify* error);
  // The ESP/AH SAs an exchange created, with keys derived from SK_d / SKEYID_d.
  void learn_child_sas(const MessageRecord& rec, IkeSaState& st);
  void add_learned(const MessageRecord& rec, const Exchange& ex, const ChildKeying& k);
  void note_clear(const dissect::Packet& p, std::int64_t ts);
  /// IKEv1 phase 1: whether the peers' encrypted messages show that they
  /// derived different keys (pre-shared keys that differ); ends it if so.
  void check_phase1_keys(MessageRecord& rec, IkeSaState& st, bool from_initiator);
  IkeSaState& state_for(const dissect::ike::Header& h);
  /// The keys to try on an encrypted message of this IKE SA, best first;
  /// sets rec's status to no_key when there are none.
  std::vector<int> key_candidates(const dissect::ike::Header& h, const IkeSaState& st, MessageRecord& rec) const;

  std::vector<filters::IkeSaConfig> keys_;
  std::vector<bool> key_bound_;
  std::vector<MessageRecord> records_;
  std::unordered_map<std::uint64_t, std::size_t> by_frame_;
  std::vector<Negotiation> negotiations_;
  std::vector<std::unique_ptr<IkeSaState>> states_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::size_t> state_index_;
  std::map<std::pair<dissect::IpAddr, dissect::IpAddr>, std::vector<std::size_t>> unanswered_;
  std::vector<filters::SaConfig> learned_;
  std::vector<std::string> notes_;
  Statistics stats_;
  bool finished_ = false;
};

}  // namespace ipsentry::ike
