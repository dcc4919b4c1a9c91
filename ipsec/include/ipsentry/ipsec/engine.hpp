// The one inbound and one outbound function every ipsentry job uses.
//
// inbound() takes a dissected packet carrying ESP or AH, finds its SA,
// checks the sequence number, verifies the ICV, decrypts, checks padding and
// next header, commits the replay window and counts the result. outbound()
// protects a cleartext IP packet with an SA. Offline verification, live
// capture and enforcement differ only in where packets come from and what
// they do with the result, so a verify verdict and an enforcement verdict for
// the same packet and SA state are the same by construction.
//
// An Engine owns the scratch buffers of one worker; it allocates them once.
// Result spans point into those buffers (or into the packet) and stay valid
// until the next call with the same depth.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/ipsec/counters.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::ipsec {

inline constexpr std::size_t kMaxNesting = 4;

/// True for packets inbound() reports on: ESP or AH headers, and fragments of
/// ESP/AH datagrams (which cannot be verified without reassembly).
[[nodiscard]] bool is_ipsec_candidate(const dissect::Packet& p) noexcept;

struct InboundResult {
  Verdict verdict = Verdict::malformed;
  Reason reason = Reason::malformed_packet;
  const char* detail = nullptr;  // the dissector's reason, or an SA's unsupported detail
  SecurityAssociation* sa = nullptr;
  filters::IpsecProtocol protocol = filters::IpsecProtocol::esp;
  bool has_spi = false;
  bool has_seq = false;
  std::uint32_t spi = 0;
  std::uint64_t seq = 0;  // with ESN, the inferred 64-bit value
  std::uint8_t next_header = 0;
  filters::SaMode mode = filters::SaMode::unspecified;
  std::uint16_t pad_len = 0;
  dissect::Bytes payload;  // tunnel: the inner IP packet; transport: the upper layer
  dissect::Bytes rebuilt;  // transport: the cleartext IP packet (when asked for)
  IcvMismatch icv;         // filled for icv-fail
  [[nodiscard]] bool decrypted() const noexcept { return !payload.empty() || next_header == 59; }
};

/// What the stateless part of inbound() found for a packet at depth 0: its
/// SA and, for ESP, the decryption with a sequence number inferred from a
/// snapshot of the replay window. Several threads prepare packets at once
/// (each with its own EspTransform); inbound() then takes the packets in
/// order, checks and commits the window, and uses the decryption when its
/// own inference gives the same number (redoing it otherwise), so verdicts,
/// counters and bytes are those of inbound() alone.
struct InboundPrepared {
  SecurityAssociation* sa = nullptr;
  bool decrypted = false;  // the fields below hold EspTransform::decrypt for `seq`
  EspTransform::Status status = EspTransform::Status::failed;
  std::uint64_t seq = 0;
  const std::uint8_t* plain = nullptr;  // plain_len bytes, owned by the caller
  std::size_t plain_len = 0;
  IcvMismatch icv;
};

enum class OutboundStatus : std::uint8_t {
  ok,
  seq_exhausted,    // the sequence number would wrap: the SA must be replaced (RFC 4303 3.3.3)
  too_big,          // the protected packet would exceed 65535 bytes
  not_ip,           // the input is not a whole IPv4/IPv6 packet
  fragment,         // transport mode cannot protect a fragment
  family_mismatch,  // tunnel endpoints and SA addresses of different families
  unsupported,      // the SA's algorithm is not available
  no_spi,           // the SA matches any SPI (an import default), so it cannot send
  unrecorded,       // the next sequence number is above SecurityAssociation::send_ceiling
  failed,           // OpenSSL reported an error
};
[[nodiscard]] const char* to_string(OutboundStatus s) noexcept;

/// Keeps the sequence-number ceilings of SecurityAssociation ahead of use
/// (enforcement's state file). Called with the SA's mutex held when the
/// Engine locks SAs, so an implementation must not need that mutex.
class SeqRecorder {
 public:
  virtual ~SeqRecorder() = default;
  /// Use reached SecurityAssociation::record_at: record more soon. Called
  /// on the packet path: must return at once.
  virtual void nearing(SecurityAssociation& sa) noexcept = 0;
  /// `seq` is above `ceiling` (one of the SA's): wait (briefly) until it is
  /// recorded. Returns whether the ceiling now covers `seq`.
  virtual bool reach(SecurityAssociation& sa, const std::atomic<std::uint64_t>& ceiling,
                     std::uint64_t seq) noexcept = 0;
};

struct OutboundOptions {
  const std::uint8_t* iv = nullptr;  // fixed IV, for published test vectors
  std::int64_t ts_ns = 0;
  /// ESP in UDP: the peer's port as its NAT mapped it (learned from its
  /// authenticated packets); 0 sends to the SA's configured dport.
  std::uint16_t encap_dport = 0;
};

struct OutboundResult {
  OutboundStatus status = OutboundStatus::failed;
  dissect::Bytes packet;  // the protected IP packet
  std::uint64_t seq = 0;
};

class Engine {
 public:
  /// `lock_sas`: take each SA's mutex while processing (several engines
  /// sharing one SAD).
  explicit Engine(bool lock_sas = false);

  /// Processes the IPsec header of `p` (which must be ESP or AH; see
  /// Packet::is_ipsec). `depth` selects the scratch buffer: pass 0 for a
  /// captured packet and depth+1 for a packet found inside a decrypted one.
  /// `prepared`: what prepare_inbound() found for this packet (depth 0).
  InboundResult inbound(Sad& sad, const dissect::Packet& p, std::int64_t ts_ns, bool rebuild, std::size_t depth = 0,
                        const InboundPrepared* prepared = nullptr) noexcept;

  /// The stateless part of inbound() for a captured packet: looks up its SA
  /// and, when inbound() would decrypt it whatever the window says, decrypts
  /// it into `plain` (room for p.data.size() bytes) with the transform that
  /// `transform(sa, top)` returns: one of that SA that no other thread uses
  /// (nullptr: leave the decryption to inbound()), with `top` set to the
  /// highest sequence number the window is believed to hold, from which the
  /// ESN high half is inferred. Reads nothing that inbound() writes, so it
  /// may run while other packets of the SA are committed.
  template <typename TransformFor>
  static void prepare_inbound(Sad& sad, const dissect::Packet& p, std::uint8_t* plain, TransformFor&& transform,
                              InboundPrepared& out) noexcept {
    out = InboundPrepared{};
    out.sa = inbound_sa(sad, p);
    if (out.sa == nullptr || pre_crypto_reason(p, out.sa, 0) != Reason::verified ||
        p.ipsec.kind != dissect::IpsecKind::esp) {
      return;
    }
    std::uint64_t top = 0;
    if (EspTransform* tr = transform(*out.sa, top)) decrypt_prepared(*out.sa, p, top, *tr, plain, out);
  }
  /// The SA inbound() uses for `p` (nullptr: none). Safe in several threads at once.
  [[nodiscard]] static SecurityAssociation* inbound_sa(Sad& sad, const dissect::Packet& p) noexcept;

  /// Protects a whole cleartext IP packet with `sa` (transport or tunnel as
  /// the SA says; tunnel uses the SA's src and dst as outer addresses).
  OutboundResult outbound(SecurityAssociation& sa, dissect::Bytes ip_packet, const OutboundOptions& options = {});

  /// Sequence numbers above an SA's ceilings wait for `recorder` (nullptr:
  /// refused at once).
  void set_recorder(SeqRecorder* recorder) noexcept { recorder_ = recorder; }

  [[nodiscard]] GlobalCounters& counters() noexcept { return counters_; }
  [[nodiscard]] const GlobalCounters& counters() const noexcept { return counters_; }

 private:
  struct Scratch {
    std::vector<std::uint8_t> plain;
    std::vector<std::uint8_t> rebuilt;
  };
  InboundResult inbound_esp(SecurityAssociation& sa, const dissect::Packet& p, InboundResult r, bool rebuild,
                            Scratch& s, const InboundPrepared* prepared) noexcept;
  InboundResult inbound_ah(SecurityAssociation& sa, const dissect::Packet& p, InboundResult r, bool rebuild,
                           Scratch& s) noexcept;
  OutboundResult outbound_esp(SecurityAssociation& sa, const dissect::Packet& in, const OutboundOptions& o);
  OutboundResult outbound_ah(SecurityAssociation& sa, const dissect::Packet& in, const OutboundOptions& o);
  void finish(InboundResult& r, const dissect::Packet& p, std::int64_t ts_ns) noexcept;
  // Reason::verified when nothing before the window check stops the packet.
  [[nodiscard]] static Reason pre_crypto_reason(const dissect::Packet& p, const SecurityAssociation* sa,
                                                std::size_t depth) noexcept;
  static void decrypt_prepared(SecurityAssociation& sa, const dissect::Packet& p, std::uint64_t top_hint,
                               EspTransform& tr, std::uint8_t* plain, InboundPrepared& out) noexcept;
  bool recorded(SecurityAssociation& sa, const std::atomic<std::uint64_t>& ceiling, std::uint64_t seq) noexcept;

  bool lock_sas_;
  SeqRecorder* recorder_ = nullptr;
  std::array<Scratch, kMaxNesting> scratch_;
  std::vector<std::uint8_t> ah_buf_;
  std::vector<std::uint8_t> out_;
  std::uint16_t ip_id_ = 1;
  GlobalCounters counters_;
};

/// Computes the AH ICV of a dissected packet carrying AH (RFC 4302 section
/// 3.3.3): mutable IP header fields and options are zeroed, a routing header
/// is presented as the receiver will see it, the ICV field is zeroed and the
/// ESN high bits are appended. Writes mac.output_len() bytes into `out`.
/// Returns Reason::verified, or the reason it cannot be computed.
[[nodiscard]] Reason ah_compute_icv(const dissect::Packet& p, crypto::Mac& mac, bool esn, std::uint64_t seq,
                                    std::vector<std::uint8_t>& scratch, std::uint8_t* out) noexcept;

}  // namespace ipsentry::ipsec
