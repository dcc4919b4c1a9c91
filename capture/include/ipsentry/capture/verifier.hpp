// Verification of whole frames: dissects a frame, runs every IPsec layer in
// it through ipsec::Engine::inbound (ESP inside ESP included), and describes
// what was found inside. Offline verify, live capture and the TUI use this.
#pragma once

#include <array>
#include <cstdint>

#include "ipsentry/capture/policy_audit.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/summary.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::capture {

/// One IPsec layer of a frame and what became of it.
struct LayerRecord {
  std::uint8_t depth = 0;  // 0: the outermost IPsec header
  dissect::IpAddr src;
  dissect::IpAddr dst;
  filters::IpsecProtocol protocol = filters::IpsecProtocol::esp;
  bool udp_encap = false;
  bool has_spi = false;
  bool has_seq = false;
  std::uint32_t spi = 0;
  std::uint64_t seq = 0;
  ipsec::Verdict verdict = ipsec::Verdict::malformed;
  ipsec::Reason reason = ipsec::Reason::malformed_packet;
  const char* detail = nullptr;
  std::int32_t sa = -1;  // index in the SAD, -1 when none
  filters::SaMode mode = filters::SaMode::unspecified;
  std::uint8_t next_header = 0;
  std::uint16_t pad_len = 0;
  std::uint32_t ip_length = 0;  // IP length of the packet carrying this layer
  ipsec::IcvMismatch icv;
  dissect::SummaryText inner;  // what the layer protected, when known
};

struct FrameResult {
  std::uint64_t number = 0;
  std::int64_t ts_ns = 0;
  bool ipsec = false;  // at least one layer
  bool ike = false;    // ISAKMP on 500 / 4500
  bool nat_keepalive = false;
  bool ip = false;
  const char* malformed = nullptr;  // a frame that is not IPsec and does not parse
  std::uint8_t layer_count = 0;
  std::array<LayerRecord, ipsec::kMaxNesting + 1> layers;
  dissect::Bytes decrypted;  // the innermost cleartext IP packet, when asked for
  AuditResult audit;         // with a policy audit (Verifier::set_audit)
};

/// Frame counts for the summary.
struct FrameCounters {
  std::uint64_t frames = 0;
  std::uint64_t bytes = 0;
  std::uint64_t ipsec_frames = 0;
  std::uint64_t ipsec_layers = 0;
  std::uint64_t ike_frames = 0;
  std::uint64_t nat_keepalives = 0;
  std::uint64_t other_ip = 0;
  std::uint64_t non_ip = 0;
  std::uint64_t malformed = 0;

  FrameCounters& operator+=(const FrameCounters& o) noexcept {
    frames += o.frames;
    bytes += o.bytes;
    ipsec_frames += o.ipsec_frames;
    ipsec_layers += o.ipsec_layers;
    ike_frames += o.ike_frames;
    nat_keepalives += o.nat_keepalives;
    other_ip += o.other_ip;
    non_ip += o.non_ip;
    malformed += o.malformed;
    return *this;
  }
};

class Verifier {
 public:
  /// `lock_sas` as for ipsec::Engine: set when several verifiers share a SAD.
  Verifier(ipsec::Sad& sad, bool want_decrypted, bool lock_sas = false);

  /// Verifies one frame. The result's spans point into the frame or into
  /// this verifier's buffers and stay valid until the next call.
  void process(const dissect::Frame& frame, FrameResult& out) noexcept;
  /// process() for a frame already dissected into `outer` (which must stay
  /// valid until the next call) and prepared with
  /// ipsec::Engine::prepare_inbound (nullptr: not prepared). Frames must
  /// come in capture order, as for process().
  void process_prepared(const dissect::Frame& frame, const dissect::Packet& outer,
                        const ipsec::InboundPrepared* prepared, FrameResult& out) noexcept;

  /// Whether each layer's `inner` one-line summary is written (on by
  /// default). Formatting addresses costs as much as decrypting a small
  /// packet, so a caller that prints no packet lines turns it off.
  void set_summaries(bool on) noexcept { summaries_ = on; }
  /// Judges every frame against a policy too (nullptr: no audit). The
  /// audit must outlive the verifier; only its const part is used here.
  void set_audit(const PolicyAudit* audit) noexcept { audit_ = audit; }

  /// The dissection of the last frame processed (its outermost layers),
  /// valid until the next call: callers that also need the packet (the IKE
  /// analyzer, the tree) need not dissect the frame again.
  [[nodiscard]] const dissect::Packet& outer() const noexcept { return *outer_; }
  [[nodiscard]] ipsec::Engine& engine() noexcept { return engine_; }
  [[nodiscard]] const ipsec::Engine& engine() const noexcept { return engine_; }
  [[nodiscard]] const FrameCounters& frames() const noexcept { return frames_; }

 private:
  ipsec::Sad& sad_;
  ipsec::Engine engine_;
  bool want_decrypted_;
  bool summaries_ = true;
  const PolicyAudit* audit_ = nullptr;
  // The audit's judgement of IPsec depends only on the SA, the endpoints and
  // the inner packet's selector; a flow's packets repeat them, so the last
  // judgement of each of a few slots is kept (per verifier: no sharing
  // between threads). This keeps the SPD's linear first match off the
  // per-packet cost however many policies there are.
  struct AuditMemo {
    std::int32_t sa = -2;  // -2: empty
    filters::SaMode mode = filters::SaMode::unspecified;
    std::uint32_t spi = 0;  // an SA for any SPI takes more than one
    dissect::IpAddr outer_src;
    dissect::IpAddr outer_dst;
    AuditResult result;
  };
  std::array<AuditMemo, 64> audit_memo_;
  void judge_protected(const dissect::Packet& inner, FrameResult& out, std::size_t layers) noexcept;
  std::array<dissect::Packet, ipsec::kMaxNesting + 1> packets_;
  const dissect::Packet* outer_ = &packets_[0];
  FrameCounters frames_;
};

}  // namespace ipsentry::capture
