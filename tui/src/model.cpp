#include "ipsentry/tui/model.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstring>

#include "ipsentry/capture/live_capture.hpp"

namespace ipsentry::tui {

using ipsec::Verdict;

namespace {

constexpr std::size_t kChunkBytes = std::size_t{4} << 20;

std::vector<filters::SaConfig> clone_all(const std::vector<filters::SaConfig>& sas) {
  std::vector<filters::SaConfig> out;
  out.reserve(sas.size());
  for (const auto& sa : sas) out.push_back(sa.clone());
  return out;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Model::Model(const std::filesystem::path& capture, filters::Config config, capture::PolicyAudit* audit,
             ipsec::CryptoChoice crypto)
    : name_(capture.string()),
      file_(std::make_unique<capture::FileSource>(capture, capture::FileSource::Released::reread)),
      sad_(clone_all(config.sas), crypto),
      analyzer_(std::move(config.ike_sas)),
      verifier_(sad_, true),
      audit_(audit),
      size_(file_->size()),
      detail_sad_(std::move(config.sas), crypto) {
  start();
}

Model::Model(const capture::LiveOptions& live, const LiveLimits& limits, filters::Config config,
             capture::PolicyAudit* audit, ipsec::CryptoChoice crypto)
    : live_(std::make_unique<capture::LiveSource>(live)),
      limits_(limits),
      sad_(clone_all(config.sas), crypto),
      analyzer_(std::move(config.ike_sas)),
      verifier_(sad_, true),
      audit_(audit),
      detail_sad_(std::move(config.sas), crypto) {
  name_ = fmt::format("live: {}{}", live_->device(), live_->filter().empty() ? "" : " (" + live_->filter() + ")");
  watch_ = capture::TriggerWatch(limits_.trigger);
  start();
}

void Model::start() {
  verifier_.set_summaries(false);  // the info column is built for the rows on screen only
  verifier_.set_audit(audit_);
  detail_ = std::make_unique<capture::Verifier>(detail_sad_, true);
  // The tree says why a frame got its audit verdict: the detail pass
  // judges it again (the judgement is const and reads only the SPD).
  detail_->set_audit(audit_);
  thread_ = std::thread([this] {
    if (file_)
      index_file();
    else
      index_live();
    {
      std::lock_guard<std::mutex> g(mutex_);
      analyzer_.finish();
      if (audit_ != nullptr) audit_->finish();
    }
    done_.store(true, std::memory_order_release);
  });
}

Model::~Model() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Model::stop() { stop_.store(true); }

void Model::index_file() {
  const auto t0 = std::chrono::steady_clock::now();
  dissect::Frame frame;
  bool more = true;
  while (more && !stop_.load(std::memory_order_relaxed)) {
    // A batch under one lock: the UI waits at most this long for it.
    std::lock_guard<std::mutex> g(mutex_);
    for (int i = 0; i < 512; ++i) {
      if (rows_.size() == ChunkedLog<Row>::kCapacity) {
        error_ = fmt::format("the list holds at most {} frames", ChunkedLog<Row>::kCapacity);
        more = false;
        break;
      }
      if (!file_->next(frame)) {
        more = false;
        break;
      }
      const ike::MessageRecord* m = nullptr;
      index_one(frame, m);
      rows_.publish();
    }
    // The index keeps no copies: pages read so far may go, and come back
    // from the file when a frame is shown (Released::reread; a gzip
    // capture stays inflated in memory).
    file_->release_before(frame.file_offset);
    offset_.store(file_->offset(), std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> g(mutex_);
  if (error_.empty()) error_ = file_->error();
  stop_reason_ = stop_.load() ? "stopped" : "";
  index_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

const std::uint8_t* Model::store(dissect::Bytes data) {
  if (chunks_.empty() || chunk_used_ + data.size() > chunk_size_) {
    chunk_size_ = std::max(kChunkBytes, data.size());
    chunks_.push_back(std::make_unique<std::uint8_t[]>(chunk_size_));
    chunk_used_ = 0;
  }
  std::uint8_t* at = chunks_.back().get() + chunk_used_;
  if (!data.empty()) std::memcpy(at, data.data(), data.size());
  chunk_used_ += data.size();
  stored_ += data.size();
  return at;
}

void Model::index_live() {
  const std::int64_t start_ns = now_ns();
  std::uint64_t number = 0;
  std::string why;
  const bool armed = limits_.trigger.kind != capture::Trigger::Kind::none || limits_.stop_on != 0;
  std::chrono::steady_clock::time_point event_seen{};
  while (why.empty()) {
    if (stop_.load(std::memory_order_relaxed)) {
      why = "stopped by the user";
      break;
    }
    const int n = live_->poll(100, [&](const dissect::Frame& f) {
      // The limit covers the index too, so memory stays within -b
      // whatever the frame sizes.
      if (kept_bytes(number + 1) + f.data.size() > limits_.memory_bytes) {
        why = fmt::format("the {} MB buffer is full (-b){}", limits_.memory_bytes >> 20,
                          armed && trigger_frame_.load() == 0 ? " before the trigger fired" : "");
        return false;
      }
      if (rows_.size() == ChunkedLog<Row>::kCapacity) {
        why = fmt::format("the list holds at most {} frames", ChunkedLog<Row>::kCapacity);
        return false;
      }
      // --after-time: a frame past the window after the event is not kept.
      if (event_frame_ != 0 && limits_.after.beyond(number + 1, f.ts_ns, event_frame_, event_ts_)) {
        why = event_stop_reason();
        return false;
      }
      dissect::Frame copy = f;
      copy.data = dissect::Bytes(store(f.data), f.data.size());
      copy.number = ++number;
      std::lock_guard<std::mutex> g(mutex_);
      const ike::MessageRecord* m = nullptr;
      Row& row = index_one(copy, m);
      if (armed) why = check_triggers(copy, row, m);
      rows_.publish();
      if (why.empty() && limits_.max_frames != 0 && number >= limits_.max_frames) {
        why = fmt::format("{} frames captured (--count)", number);
      }
      return why.empty() && !stop_.load(std::memory_order_relaxed);
    });
    if (n < 0 && why.empty()) why = "the capture ended";
    // --after-time also ends on the wall clock: the frames after the event
    // may never come.
    if (event_frame_ != 0 && limits_.after.ns >= 0 && why.empty()) {
      const auto now = std::chrono::steady_clock::now();
      if (event_seen == std::chrono::steady_clock::time_point{}) event_seen = now;
      if (now - event_seen >= std::chrono::nanoseconds(limits_.after.ns)) why = event_stop_reason();
    }
    {
      // libpcap's counters are read (and reset in the kernel) here only:
      // pcap_stats is not safe against a concurrent dispatch.
      std::lock_guard<std::mutex> g(mutex_);
      live_stats_ = live_->stats();
    }
    if (limits_.duration_ns != 0 && now_ns() - start_ns >= limits_.duration_ns) why = "time limit reached (-L)";
  }
  std::lock_guard<std::mutex> g(mutex_);
  stop_reason_ = why;
}

std::string Model::event_stop_reason() const {
  return fmt::format("{} (--stop-on {}){}", event_text_, capture::stop_on_names(limits_.stop_on),
                     limits_.after.ns >= 0  ? fmt::format(", then {:g} s", static_cast<double>(limits_.after.ns) / 1e9)
                     : limits_.after.frames ? fmt::format(", then {} frames", limits_.after.frames)
                                            : "");
}

std::string Model::check_triggers(const dissect::Frame& frame, Row& row, const ike::MessageRecord* ike) {
  const auto step =
      watch_.stored(frame.data, kept_bytes(frame.number), limits_.memory_bytes, frame.data.size() + sizeof(Row));
  auto mark = [&](const std::string& what) {
    row.flags |= row_flag::trigger;
    if (trigger_frame_.load(std::memory_order_relaxed) == 0) {
      trigger_text_ = what;
      trigger_frame_.store(frame.number, std::memory_order_release);
    }
  };
  if (step == capture::TriggerWatch::Step::fire || step == capture::TriggerWatch::Step::fire_and_stop) {
    trigger_stop_ = fmt::format("frame {}: the trigger fired ({})", frame.number, limits_.trigger.describe());
    mark(trigger_stop_);
  }
  if (event_frame_ == 0) {
    capture::FrameEvent ev = capture::stop_event(result_, ike, analyzer_, limits_.stop_on);
    if (ev.bits != 0) {
      event_text_ = fmt::format("frame {}: {}", frame.number, ev.detail);
      mark(event_text_);
      event_frame_ = frame.number;
      event_ts_ = frame.ts_ns;
    }
  }
  if (step == capture::TriggerWatch::Step::fire_and_stop) return trigger_stop_;
  if (step == capture::TriggerWatch::Step::stop) {
    return fmt::format("{}; {}% of the buffer has filled since", trigger_stop_, limits_.trigger.percent);
  }
  if (event_frame_ != 0 && limits_.after.ns < 0 &&
      limits_.after.complete(frame.number, frame.ts_ns, event_frame_, event_ts_)) {
    return event_stop_reason();
  }
  return "";
}

Row& Model::index_one(const dissect::Frame& frame, const ike::MessageRecord*& m) {
  capture::FrameResult& result = result_;
  verifier_.process(frame, result);
  if (audit_ != nullptr) audit_->account(result, sad_);
  m = nullptr;
  if (result.ike || analyzer_.watching_clear()) m = analyzer_.observe(frame, verifier_.outer());
  if (live_) {
    // SAs negotiated during the capture verify the ESP that follows them.
    // A configured SA for the same SPI wins, as in `ipsentry capture`.
    for (; learned_ < analyzer_.learned_count(); ++learned_) {
      if (const ipsec::SecurityAssociation* sa = sad_.add_learned(analyzer_.learned_sa(learned_))) {
        new_sas_.push_back(sa->config().clone());
      }
    }
  }
  dissect::Packet inner;
  const bool have_inner = !result.decrypted.empty();
  if (have_inner) dissect::dissect_ip(result.decrypted, inner);
  Row& row = rows_.append();
  fill_row(row, frame, verifier_.outer(), result, have_inner ? &inner : nullptr, m, addresses_);
  return row;
}

std::string Model::status() const {
  const std::size_t n = rows_.size();
  std::lock_guard<std::mutex> g(mutex_);
  std::string s;
  if (file_) {
    if (!done()) {
      s = fmt::format("indexing {:.0f}% ({} frames)", size_ ? 100.0 * static_cast<double>(offset_.load()) / size_ : 0.0,
                      n);
    } else {
      s = fmt::format("{} frames, verified in {:.2f} s", n, index_seconds_);
    }
  } else {
    const capture::LiveStats& st = live_stats_;
    s = fmt::format("{} {} frames, {} MB kept, kernel dropped {}", done() ? "captured" : "capturing:", n, stored_ >> 20,
                    st.dropped + st.if_dropped);
    if (done() && !stop_reason_.empty()) s += "; stopped: " + stop_reason_;
  }
  if (!error_.empty()) s += "; capture damaged: " + error_ + " (frames after it not read)";
  return s;
}

Statistics Model::statistics() const {
  std::lock_guard<std::mutex> g(mutex_);
  Statistics s;
  s.totals = verifier_.engine().counters();
  s.frames = verifier_.frames();
  s.monitor = capture::monitor_rows(s.totals, sad_);
  s.main_mode = capture::ike_rows(analyzer_.statistics());
  if (audit_ != nullptr) s.audit = audit_summary();
  return s;
}

AuditSummary Model::audit_summary() const {
  // While indexing runs the audit is still accounting: its overlaps and
  // gaps are measured on a copy, as they stand now.
  std::optional<capture::PolicyAudit> so_far;
  if (!done()) {
    so_far.emplace(*audit_);
    so_far->finish();
  }
  const capture::PolicyAudit& a = so_far ? *so_far : *audit_;
  AuditSummary out;
  out.title = fmt::format("Policy audit ({} as {}){}", a.source(), a.vantage(), so_far ? ", so far" : "");
  out.counts = a.counts();
  out.counts_text = capture::audit_counts_text(a);
  out.policies = capture::audit_policy_table(a, 0);  // the screen indents its rows
  // Times as the list's relative column gives them: seconds since the first frame.
  const std::int64_t first = rows_.size() != 0 ? rows_[0].ts_ns : 0;
  out.timeline = capture::audit_timeline(a, sad_, [first](std::int64_t ts) {
    const std::int64_t d = ts - first;
    const std::int64_t m = d < 0 ? -d : d;
    return fmt::format("{}{}.{:06d}", d < 0 ? "-" : "", m / 1'000'000'000, (m % 1'000'000'000) / 1000);
  });
  return out;
}

dissect::Frame Model::frame(std::uint64_t number) const {
  const Row& r = rows_[number - 1];
  dissect::Frame f;
  f.number = number;
  f.ts_ns = r.ts_ns;
  f.linktype = r.linktype;
  f.orig_len = r.orig_len;
  f.data = dissect::Bytes(r.data, r.caplen);
  return f;
}

void Model::reopen(std::uint64_t number, capture::FrameResult& out) {
  {
    std::lock_guard<std::mutex> g(mutex_);
    for (auto& sa : new_sas_) detail_sad_.add(std::move(sa));
    new_sas_.clear();
  }
  const Row& row = rows_[number - 1];
  // Opened out of order, so the replay window must not judge: the verdict
  // shown is the one of the capture-order pass, kept in the row.
  for (std::size_t i = 0; i < detail_sad_.size(); ++i) {
    auto& sa = detail_sad_.at(i);
    sa.replay = ipsec::ReplayWindow(0, sa.config().esn, row.seq);
  }
  detail_->process(frame(number), out);
  if (row.verdict != kNoVerdict && row.fail_layer < out.layer_count) {
    capture::LayerRecord& l = out.layers[row.fail_layer];
    if (static_cast<std::uint8_t>(l.verdict) != row.verdict) {
      l.verdict = static_cast<Verdict>(row.verdict);
      l.reason = static_cast<ipsec::Reason>(row.reason);
    }
  }
}

const std::string& Model::info(std::uint64_t number) {
  auto it = info_cache_.find(number);
  if (it != info_cache_.end()) return it->second;
  if (info_cache_.size() > 20000) info_cache_.clear();
  const Row& row = rows_[number - 1];
  std::string text;
  if (row.kind == FrameKind::esp || row.kind == FrameKind::ah) {
    capture::FrameResult r;
    reopen(number, r);
    for (std::size_t i = 0; i < r.layer_count; ++i) {
      const capture::LayerRecord& l = r.layers[i];
      if (i != 0) text += " | ";
      text += capture::layer_details(l);
      if (l.verdict != Verdict::ok && l.inner.size != 0 && l.reason != ipsec::Reason::icv_unchecked) {
        text += fmt::format(" — carries {}", l.inner.view());
      }
    }
  } else if (row.kind == FrameKind::ike) {
    std::lock_guard<std::mutex> g(mutex_);
    const ike::MessageRecord* m = analyzer_.record(number);
    text = m != nullptr ? m->summary : "IKE (not analysed)";
  } else {
    dissect::Packet p;
    dissect::dissect_frame(frame(number), p);
    text = capture::frame_summary(p);
  }
  return info_cache_.emplace(number, std::move(text)).first->second;
}

void Model::tree(std::uint64_t number, dissect::Tree& out) {
  const dissect::Frame f = frame(number);
  capture::FrameResult r;
  reopen(number, r);
  dissect::Packet p;
  dissect::dissect_frame(f, p);
  dissect::build_frame_tree(f, p, out);
  std::lock_guard<std::mutex> g(mutex_);
  analyzer_.add_decrypted(number, out);
  capture::add_verification(out, r, detail_sad_);
  add_audit_node(rows_[number - 1], r, out);
  if ((rows_[number - 1].flags & row_flag::trigger) != 0) {
    dissect::Node n;
    n.text = number == trigger_frame() ? "Capture trigger: " + trigger_text_
                                       : "Capture trigger: a second trigger fired here (-t and --stop-on)";
    n.role = dissect::NodeRole::attention;
    out.root.children.insert(out.root.children.begin(), std::move(n));
  }
}

void Model::add_audit_node(const Row& row, const capture::FrameResult& r, dissect::Tree& out) const {
  const capture::AuditVerdict v = audit_of(row);
  if (v == capture::AuditVerdict::none) return;
  const capture::AuditResult& a = r.audit;
  dissect::Node n;
  if (a.verdict == v) {
    // The words of `verify --policy`: the addresses and protocol, then
    // audit_details (ports, the deciding policy, why).
    n.text =
        fmt::format("Policy audit: {} — {}{} → {} {} {}", capture::audit_name(v), r.layer_count != 0 ? "inner " : "",
                    a.sel.src.str(), a.sel.dst.str(), capture::selector_protocol(a.sel), capture::audit_details(a));
  } else {
    // The detail pass opens the frame with its own SAD and no replay
    // state, and came to another judgement: the list's verdict (from the
    // capture-order pass) stands, without words that belong to another.
    n.text = fmt::format("Policy audit: {} (as judged in capture order)", capture::audit_name(v));
  }
  n.role = capture::flagged(v)                    ? dissect::NodeRole::verdict_failed
           : v == capture::AuditVerdict::fallback ? dissect::NodeRole::attention
                                                  : dissect::NodeRole::verdict_ok;
  // A finding is what is wrong with the frame: first, and selected when
  // the frame is shown. A conforming judgement follows the dissection.
  auto& top = out.root.children;
  top.insert(capture::flagged(v) ? top.begin() : top.end(), std::move(n));
}

std::vector<std::uint8_t> Model::decrypted(std::uint64_t number) {
  capture::FrameResult r;
  reopen(number, r);
  return {r.decrypted.begin(), r.decrypted.end()};
}

}  // namespace ipsentry::tui
