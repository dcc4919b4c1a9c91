#include "ipsentry/capture/live_capture.hpp"

#include "ipsentry/capture/frame_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace ipsentry::capture {

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint32_t audit_bit(AuditVerdict v) noexcept {
  switch (v) {
    case AuditVerdict::cleartext_leak: return kStopCleartextLeak;
    case AuditVerdict::policy_mismatch: return kStopPolicyMismatch;
    case AuditVerdict::blocked_seen: return kStopBlockedSeen;
    default: return 0;
  }
}

std::uint32_t event_bit(ipsec::Verdict v) noexcept {
  switch (v) {
    case ipsec::Verdict::icv_fail: return kStopIcvFail;
    case ipsec::Verdict::decrypt_fail: return kStopDecryptFail;
    case ipsec::Verdict::replay: return kStopReplay;
    case ipsec::Verdict::unknown_spi: return kStopUnknownSpi;
    case ipsec::Verdict::malformed: return kStopMalformed;
    default: return 0;
  }
}

}  // namespace

FrameEvent stop_event(const FrameResult& res, const ike::MessageRecord* m, const ike::Analyzer& analyzer,
                      std::uint32_t stop_on) {
  FrameEvent ev;
  if (stop_on == 0) return ev;
  for (std::size_t i = 0; i < res.layer_count; ++i) {
    const LayerRecord& l = res.layers[i];
    const std::uint32_t bit = event_bit(l.verdict) & stop_on;
    if (bit != 0 && ev.bits == 0) {
      ev.detail = fmt::format("{} on {} SPI 0x{:08x}", ipsec::verdict_name(l.verdict),
                              l.protocol == filters::IpsecProtocol::ah ? "AH" : "ESP", l.spi);
    }
    ev.bits |= bit;
  }
  if ((stop_on & kStopMalformed) != 0 && res.malformed != nullptr && ev.bits == 0) {
    ev.bits |= kStopMalformed;
    ev.detail = fmt::format("malformed frame ({})", res.malformed);
  }
  if (m != nullptr && (stop_on & kStopIkeFail) != 0 && ev.bits == 0) {
    const ike::MessageVerdict v = ike::verdict(*m);
    const ike::Negotiation* n =
        m->negotiation >= 0 ? &analyzer.negotiations()[static_cast<std::size_t>(m->negotiation)] : nullptr;
    if (ike::failed(v)) {
      ev.bits |= kStopIkeFail;
      ev.detail = v == ike::MessageVerdict::ike_fail && n != nullptr
                      ? fmt::format("IKE negotiation failed: {}", n->reason)
                      : fmt::format("IKE message {} ({})", ike::verdict_name(v),
                                    m->malformed != nullptr ? m->malformed : ike::to_string(m->status));
    }
  }
  if (const std::uint32_t bit = audit_bit(res.audit.verdict) & stop_on; bit != 0 && ev.bits == 0) {
    ev.bits |= bit;
    const AuditResult& a = res.audit;
    ev.detail = fmt::format("{}: {}{} → {} {} {}", audit_name(a.verdict), res.layer_count != 0 ? "inner " : "",
                            a.sel.src.str(), a.sel.dst.str(), selector_protocol(a.sel), audit_details(a));
  }
  return ev;
}

const char* describe(StopReason r) noexcept {
  switch (r) {
    case StopReason::running: return "still running";
    case StopReason::buffer_full: return "the buffer is full";
    case StopReason::buffer_full_after_trigger:
      return "the buffer filled up after the trigger (nothing is overwritten after it)";
    case StopReason::trigger: return "the trigger fired";
    case StopReason::ipsec_event: return "an IPsec event (--stop-on)";
    case StopReason::duration: return "the time limit (-L)";
    case StopReason::frame_limit: return "the frame limit (--count)";
    case StopReason::interrupted: return "interrupted (SIGINT/SIGTERM)";
  }
  return "?";
}

Session::Session(LiveSource& source, SessionOptions options, ipsec::Sad& sad, ike::Analyzer& analyzer)
    : source_(source),
      opt_(std::move(options)),
      sad_(sad),
      analyzer_(analyzer),
      buffer_(opt_.buffer_bytes, opt_.spill_dir),
      watch_(opt_.trigger) {}

Session::~Session() {
  done_.store(true);
  if (thread_.joinable()) thread_.join();
}

bool Session::beyond_cut(std::uint64_t seq, std::int64_t ts_ns) const noexcept {
  const std::uint64_t e = event_seq_.load(std::memory_order_acquire);
  return e != 0 && opt_.after.beyond(seq, ts_ns, e, event_ts_.load(std::memory_order_relaxed));
}

bool Session::window_complete(std::uint64_t seq, std::int64_t ts_ns) const noexcept {
  const std::uint64_t e = event_seq_.load(std::memory_order_acquire);
  return e != 0 && opt_.after.complete(seq, ts_ns, e, event_ts_.load(std::memory_order_relaxed));
}

void Session::stop(StopReason r) noexcept {
  if (stop_ == StopReason::running) stop_ = r;
}

void Session::fire(RecordHeader& r) noexcept {
  r.flags |= RecordHeader::kTriggered;
  trigger_seq_ = r.seq;
  buffer_.protect_from(r.seq);
}

bool Session::captured(const dissect::Frame& f) {
  const Trigger& t = opt_.trigger;
  const bool circular = t.circular_before_firing() || (t.kind == Trigger::Kind::none && opt_.stop_on != 0);
  RecordHeader* r = buffer_.append(f.ts_ns, f.data, f.orig_len, circular);
  if (r == nullptr) {
    if (buffer_.too_large() != 0 && record_size(f.data.size()) > buffer_.capacity()) return true;
    if (t.kind == Trigger::Kind::buffer && last_ != nullptr && trigger_seq_ == 0) {
      fire(*last_);  // B 100: as full as it gets
      stop(StopReason::trigger);
    } else {
      stop(trigger_seq_ != 0 || event_seq_.load() != 0 ? StopReason::buffer_full_after_trigger
                                                       : StopReason::buffer_full);
    }
    return false;
  }
  last_ = r;
  ++frames_;
  bytes_ += f.orig_len;
  switch (watch_.stored(f.data, buffer_.used(), buffer_.capacity(), r->size)) {
    case TriggerWatch::Step::none: break;
    case TriggerWatch::Step::fire: fire(*r); break;
    case TriggerWatch::Step::fire_and_stop:
      fire(*r);
      stop(StopReason::trigger);
      break;
    case TriggerWatch::Step::stop: stop(StopReason::trigger); break;
  }
  if (window_complete(r->seq, r->ts_ns)) stop(StopReason::ipsec_event);
  if (opt_.max_frames != 0 && frames_ >= opt_.max_frames) stop(StopReason::frame_limit);
  return stop_ == StopReason::running;
}

void Session::run(const std::atomic<bool>& interrupt, const std::function<void(const SessionStatus&)>& tick) {
  start_ns_ = now_ns();
  if (opt_.verify) {
    verifier_ = std::make_unique<Verifier>(sad_, false);
    verifier_->set_summaries(static_cast<bool>(callback_));
    verifier_->set_audit(opt_.audit);
    thread_ = std::thread([this] { verify_loop(); });
  }
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto last_tick = started;
  Clock::time_point event_seen{};
  while (stop_ == StopReason::running) {
    if (interrupt.load(std::memory_order_relaxed)) {
      stop(StopReason::interrupted);
      break;
    }
    source_.poll(100, [this](const dissect::Frame& f) { return captured(f); });
    const auto now = Clock::now();
    if (opt_.duration_ns > 0 && now - started >= std::chrono::nanoseconds(opt_.duration_ns)) {
      stop(StopReason::duration);
    }
    if (const std::uint64_t e = event_seq_.load(std::memory_order_acquire); e != 0) {
      // The frames after the event may never come: --after-time also ends
      // on the wall clock, and --after N is checked here too in case the
      // verifier reported the event after the last of them arrived.
      if (event_seen == Clock::time_point{}) event_seen = now;
      if (opt_.after.ns >= 0 && now - event_seen >= std::chrono::nanoseconds(opt_.after.ns)) {
        stop(StopReason::ipsec_event);
      }
      if (opt_.after.ns < 0 && last_ != nullptr && window_complete(last_->seq, last_->ts_ns)) {
        stop(StopReason::ipsec_event);
      }
    }
    if (tick && now - last_tick >= std::chrono::milliseconds(250)) {
      last_tick = now;
      tick(status());
    }
  }
  end_ns_ = now_ns();
  done_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

void Session::verify_loop() {
  FrameBuffer::Cursor cursor;
  FrameResult res;
  for (;;) {
    RecordHeader* r = buffer_.claim(cursor, skipped_);
    if (r == nullptr) {
      if (done_.load(std::memory_order_acquire)) {
        // The capture has stopped: anything it stored is claimable now.
        r = buffer_.claim(cursor, skipped_);
        if (r == nullptr) return;
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
    }
    if (beyond_cut(r->seq, r->ts_ns)) {
      buffer_.release(cursor, *r);
      return;  // not written, so not counted
    }
    verify_one(*r, res);
    buffer_.release(cursor, *r);
  }
}

void Session::verify_one(RecordHeader& r, FrameResult& res) {
  dissect::Frame f;
  f.number = r.seq;
  f.ts_ns = r.ts_ns;
  f.linktype = source_.linktype();
  f.orig_len = r.orig_len;
  f.data = r.data();
  verifier_->process(f, res);

  Annotation& n = r.note;
  n.verified = 1;
  if (opt_.audit != nullptr) opt_.audit->account(res, sad_);
  n.audit = static_cast<std::uint8_t>(res.audit.verdict);
  n.layers = static_cast<std::uint8_t>(std::min<std::size_t>(res.layer_count, Annotation::kLayers));
  n.more_layers = static_cast<std::uint8_t>(res.layer_count - n.layers);
  for (std::size_t i = 0; i < res.layer_count; ++i) {
    const LayerRecord& l = res.layers[i];
    verdicts_[static_cast<std::size_t>(l.verdict)].store(
        verdicts_[static_cast<std::size_t>(l.verdict)].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (i >= Annotation::kLayers) continue;
    n.verdict[i] = static_cast<std::uint8_t>(l.verdict);
    n.reason[i] = static_cast<std::uint8_t>(l.reason);
    n.protocol[i] = static_cast<std::uint8_t>(l.protocol);
    n.spi[i] = l.has_spi ? l.spi : 0;
    n.seq[i] = static_cast<std::uint32_t>(l.seq);
    n.sa[i] = static_cast<std::int16_t>(l.sa >= 0 && l.sa <= 32767 ? l.sa : -1);
  }
  const ike::MessageRecord* m = nullptr;
  if (res.ike || analyzer_.watching_clear()) m = analyzer_.observe(f, verifier_->outer());
  if (m != nullptr) {
    n.ike = 1;
    ike_messages_.store(ike_messages_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (analyzer_.learned_count() > learned_added_) learn_sas();
  }
  FrameEvent ev = stop_event(res, m, analyzer_, opt_.stop_on);
  if (ev.bits != 0 && event_seq_.load(std::memory_order_relaxed) == 0) {
    n.event = 1;
    // Protect the frame before anyone can learn of the event, and before
    // our claim on it ends.
    buffer_.protect_from(r.seq);
    event_detail_ = std::move(ev.detail);
    event_ts_.store(r.ts_ns, std::memory_order_relaxed);
    event_seq_.store(r.seq, std::memory_order_release);
  }
  verified_.store(verified_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (callback_) callback_(res, m);
}

void Session::learn_sas() {
  for (; learned_added_ < analyzer_.learned_count(); ++learned_added_) {
    sad_.add_learned(analyzer_.learned_sa(learned_added_));
  }
}

SessionStatus Session::status() const {
  SessionStatus s;
  s.frames = frames_;
  s.bytes = bytes_;
  s.used = buffer_.used();
  s.capacity = buffer_.capacity();
  s.evicted = buffer_.evicted();
  s.verified = verified_.load(std::memory_order_relaxed);
  s.ike_messages = ike_messages_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < s.verdicts.size(); ++i) s.verdicts[i] = verdicts_[i].load(std::memory_order_relaxed);
  s.kernel = source_.stats();
  s.seconds = static_cast<double>((end_ns_ != 0 ? end_ns_ : now_ns()) - start_ns_) / 1e9;
  return s;
}

ipsec::GlobalCounters Session::totals() const {
  return verifier_ ? verifier_->engine().counters() : ipsec::GlobalCounters{};
}

FrameCounters Session::frame_counters() const { return verifier_ ? verifier_->frames() : FrameCounters{}; }

std::vector<std::string> frame_comments(const RecordHeader& r, const Session& session, const ipsec::Sad& sad,
                                        const ike::Analyzer& analyzer) {
  std::vector<std::string> out;
  const Annotation& n = r.note;
  if (n.layers != 0) {
    std::string c = "ipsentry:";
    for (std::size_t i = 0; i < n.layers; ++i) {
      const auto verdict = static_cast<ipsec::Verdict>(n.verdict[i]);
      const auto reason = static_cast<ipsec::Reason>(n.reason[i]);
      const bool ah = static_cast<filters::IpsecProtocol>(n.protocol[i]) == filters::IpsecProtocol::ah;
      if (i != 0) c += "; inner";
      c += fmt::format(" {} SPI 0x{:08x} seq {}: {}", ah ? "AH" : "ESP", n.spi[i], n.seq[i],
                       ipsec::verdict_name(verdict));
      if (verdict != ipsec::Verdict::ok || reason != ipsec::Reason::verified) {
        c += fmt::format(" ({})", ipsec::reason_description(reason));
      }
      if (n.sa[i] >= 0 && static_cast<std::size_t>(n.sa[i]) < sad.size()) {
        c += fmt::format(", SA {}", sad.at(static_cast<std::size_t>(n.sa[i])).name());
      }
    }
    if (n.more_layers != 0) c += fmt::format("; {} more nested layers", n.more_layers);
    out.push_back(std::move(c));
  }
  if (flagged(static_cast<AuditVerdict>(n.audit)) || static_cast<AuditVerdict>(n.audit) == AuditVerdict::fallback) {
    out.push_back(fmt::format("ipsentry: policy audit: {}", audit_name(static_cast<AuditVerdict>(n.audit))));
  }
  if (n.ike != 0) {
    if (const ike::MessageRecord* m = analyzer.record(r.seq)) {
      // The summary names the IKE version; a malformed one is "ISAKMP [malformed: …]".
      out.push_back(fmt::format("ipsentry: {}: {}", m->summary, ike::verdict_name(ike::verdict(*m))));
    }
  }
  if ((r.flags & RecordHeader::kTriggered) != 0) {
    out.push_back(fmt::format("ipsentry: trigger fired on this frame ({})", session.options().trigger.describe()));
  }
  if (n.event != 0) {
    out.push_back(fmt::format("ipsentry: --stop-on {} fired on this frame: {}",
                              stop_on_names(session.options().stop_on), session.event_detail()));
  }
  return out;
}

}  // namespace ipsentry::capture
