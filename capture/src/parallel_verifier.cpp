#include "ipsentry/capture/parallel_verifier.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

namespace ipsentry::capture {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU time of the calling thread: unlike wall time, it does not count the
// time the thread was descheduled, so the stages' shares mean the same on a
// loaded machine. A system call, so it is read per chunk, and only for stats.
double thread_cpu() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Decrypted payloads of a chunk. A chunk ends early when the next frame
// might not fit; a frame that still does not fit (a snap length above 64
// KiB) is decrypted in the serial stage instead.
constexpr std::size_t kArena = 256 * 1024;
constexpr std::size_t kRoom = 65536 + 64;
std::size_t arena_need(const dissect::Frame& f) { return (f.data.size() + 63) & ~std::size_t{63}; }
// Chunks in flight per thread: enough for the others to go on for a while
// when the thread that holds the oldest chunk is descheduled.
constexpr std::size_t kChunksPerThread = 8;

}  // namespace

struct ParallelVerifier::Slot {
  dissect::Frame frame;
  dissect::Packet outer;
  ipsec::InboundPrepared prepared;
  bool has_prepared = false;
};

struct ParallelVerifier::Chunk {
  std::uint64_t seq = 0;
  std::size_t count = 0;
  std::vector<Slot> slots;
  std::vector<std::uint8_t> arena;
};

struct ParallelVerifier::Worker {
  // This thread's transform of each SA, made when first needed: an
  // EspTransform keeps its cipher contexts and is not to be shared.
  std::vector<std::unique_ptr<ipsec::EspTransform>> transforms;
  std::vector<bool> failed;  // the SA's transform could not be made
  double cpu = 0;            // this thread's CPU time in run()
  double read = 0;           // of which reading frames, under the reader's lock
  Clock::duration waited{};
};

ParallelVerifier::ParallelVerifier(ipsec::Sad& sad, bool want_decrypted, unsigned threads)
    : sad_(sad), threads_(std::max(1u, threads)), ordered_(sad, want_decrypted) {}

ParallelVerifier::~ParallelVerifier() = default;

void ParallelVerifier::run(FileSource& src, const Sink& sink) {
  stats_ = Stats{};
  stats_.threads = threads_;
  if (threads_ == 1) {
    run_serial(src, sink);
    return;
  }
  const std::size_t n_chunks = std::size_t{threads_} * kChunksPerThread;
  chunks_.clear();
  free_.clear();
  for (std::size_t i = 0; i < n_chunks; ++i) {
    auto c = std::make_unique<Chunk>();
    c->slots.resize(chunk_frames_);
    c->arena.resize(kArena);
    free_.push_back(c.get());
    chunks_.push_back(std::move(c));
  }
  ready_ = std::make_unique<std::atomic<Chunk*>[]>(n_chunks);
  for (std::size_t i = 0; i < n_chunks; ++i) ready_[i].store(nullptr, std::memory_order_relaxed);
  tops_ = std::make_unique<std::atomic<std::uint64_t>[]>(sad_.size());
  for (std::size_t i = 0; i < sad_.size(); ++i) tops_[i].store(sad_.at(i).replay.top(), std::memory_order_relaxed);
  workers_.clear();
  for (unsigned i = 0; i < threads_; ++i) {
    auto w = std::make_unique<Worker>();
    w->transforms.resize(sad_.size());
    w->failed.assign(sad_.size(), false);
    workers_.push_back(std::move(w));
  }
  next_seq_ = 0;
  next_commit_ = 0;
  released_ = 0;
  end_ = false;
  release_to_.store(0, std::memory_order_relaxed);

  std::vector<std::thread> threads;
  threads.reserve(threads_ - 1);
  for (unsigned i = 1; i < threads_; ++i) threads.emplace_back([&, i] { work(*workers_[i], src, sink); });
  work(*workers_[0], src, sink);
  for (auto& t : threads) t.join();

  stats_.chunks = next_seq_;
  for (const auto& w : workers_) {
    stats_.cpu_seconds += w->cpu;
    stats_.read_cpu_seconds += w->read;
    stats_.wait_seconds += seconds(w->waited);
  }
  // The transforms hold keys: let them go (and be cleansed) now.
  workers_.clear();
}

void ParallelVerifier::run_serial(FileSource& src, const Sink& sink) {
  const double t0 = timing_ ? thread_cpu() : 0;
  dissect::Frame frame;
  while (src.next(frame)) {
    ordered_.process(frame, result_);
    sink(frame, ordered_.outer(), result_);
    src.release_before(frame.file_offset);
  }
  if (timing_) stats_.cpu_seconds = stats_.ordered_cpu_seconds = thread_cpu() - t0;
}

void ParallelVerifier::work(Worker& w, FileSource& src, const Sink& sink) noexcept {
  const double t0 = timing_ ? thread_cpu() : 0;
  for (;;) {
    Chunk* c = claim(w, src);
    if (c == nullptr) break;
    prepare(w, *c);
    // Publish before trying the baton: a holder that lets go after this
    // thread failed to take it looks again and finds this chunk (both seq_cst).
    ready_[c->seq % chunks_.size()].store(c, std::memory_order_seq_cst);
    commit_ready(sink);
  }
  if (timing_) w.cpu = thread_cpu() - t0;
}

ParallelVerifier::Chunk* ParallelVerifier::claim(Worker& w, FileSource& src) noexcept {
  std::unique_lock lock(read_mu_);
  for (;;) {
    if (end_) return nullptr;
    if (!free_.empty()) break;
    // Every chunk is in flight: the serial stage is behind. Sleep until it
    // gives one back rather than spin on a core it may need.
    const std::uint64_t seen = freed_.load();
    lock.unlock();
    const auto t0 = Clock::now();
    freed_.wait([&](std::uint64_t v) { return v != seen; });
    w.waited += Clock::now() - t0;
    lock.lock();
  }
  // Pages the serial stage is done with; under this lock, since the
  // FileSource may be reading.
  if (const std::uint64_t r = release_to_.load(std::memory_order_acquire); r > released_) {
    src.release_before(r);
    released_ = r;
  }
  const double t0 = timing_ ? thread_cpu() : 0;
  Chunk* c = free_.back();
  c->count = 0;
  std::size_t bytes = 0;
  while (c->count < c->slots.size() && bytes + kRoom <= c->arena.size()) {
    const dissect::Frame& f = c->slots[c->count].frame;
    if (!src.next(c->slots[c->count].frame)) {
      end_ = true;
      break;
    }
    bytes += arena_need(f);
    ++c->count;
  }
  if (timing_) w.read += thread_cpu() - t0;
  if (c->count == 0) return nullptr;
  free_.pop_back();
  c->seq = next_seq_++;
  return c;
}

void ParallelVerifier::prepare(Worker& w, Chunk& c) noexcept {
  // The highest sequence number this chunk authenticated so far per ESN SA:
  // later packets of the chunk infer against it, as the serial stage will.
  struct Local {
    std::uint32_t sa = ~0u;
    std::uint64_t top = 0;
  };
  std::array<Local, 4> local{};
  std::size_t used = 0;
  for (std::size_t i = 0; i < c.count; ++i) {
    Slot& s = c.slots[i];
    dissect::dissect_frame(s.frame, s.outer);
    s.has_prepared = false;
    if (!ipsec::is_ipsec_candidate(s.outer)) continue;
    s.has_prepared = true;
    std::uint8_t* plain = nullptr;
    const std::size_t need = arena_need(s.frame);
    if (used + need <= c.arena.size()) plain = c.arena.data() + used;
    Local* mine = nullptr;
    auto transform = [&](ipsec::SecurityAssociation& sa, std::uint64_t& top) -> ipsec::EspTransform* {
      if (plain == nullptr) return nullptr;
      const std::uint32_t idx = sa.index();
      if (sa.replay.esn()) {
        top = tops_[idx].load(std::memory_order_relaxed);
        mine = &local[idx % local.size()];
        if (mine->sa == idx) {
          top = std::max(top, mine->top);
        } else {
          *mine = Local{idx, top};
        }
      }
      auto& tr = w.transforms[idx];
      if (!tr && !w.failed[idx]) {
        try {
          // The same library as the SA's own transform, whatever --crypto
          // asked for: the serial stage's redo must give the same bytes.
          const ipsec::EspTransform* own = sa.esp();
          const auto choice = own != nullptr && own->backend() == ipsec::CryptoBackend::ipsec_mb
                                  ? ipsec::CryptoChoice::ipsec_mb
                                  : ipsec::CryptoChoice::openssl;
          tr = std::make_unique<ipsec::EspTransform>(sa.config(), choice);
        } catch (...) {
          // The SA's own transform exists, so this does not happen; the
          // serial stage decrypts with that one if it does.
          w.failed[idx] = true;
        }
      }
      return tr.get();
    };
    ipsec::Engine::prepare_inbound(sad_, s.outer, plain, transform, s.prepared);
    if (s.prepared.decrypted) {
      used += need;
      if (mine != nullptr && s.prepared.status == ipsec::EspTransform::Status::ok) {
        mine->top = std::max(mine->top, s.prepared.seq);
      }
    }
  }
}

void ParallelVerifier::commit_ready(const Sink& sink) noexcept {
  const std::size_t n = chunks_.size();
  while (baton_.try_take()) {
    for (;;) {
      std::atomic<Chunk*>& slot = ready_[next_commit_ % n];
      Chunk* c = slot.load(std::memory_order_acquire);
      if (c == nullptr || c->seq != next_commit_) break;
      slot.store(nullptr, std::memory_order_relaxed);
      commit(*c, sink);
      ++next_commit_;
      {
        std::lock_guard lock(read_mu_);
        free_.push_back(c);
      }
      freed_.add(1);
    }
    const std::uint64_t next = next_commit_;
    baton_.release();
    // A chunk published while this thread held the baton was left to it.
    Chunk* c = ready_[next % n].load(std::memory_order_seq_cst);
    if (c == nullptr || c->seq != next) return;
  }
}

void ParallelVerifier::commit(Chunk& c, const Sink& sink) noexcept {
  const double t0 = timing_ ? thread_cpu() : 0;
  for (std::size_t i = 0; i < c.count; ++i) {
    Slot& s = c.slots[i];
    // Another thread likely prepared the chunk, so what this stage reads of
    // the next frame (its dissection, the ends of its plaintext) is in that
    // thread's cache: ask for it while this frame is processed.
    if (i + 1 < c.count) {
      const Slot& next = c.slots[i + 1];
      __builtin_prefetch(&next.outer.ipsec);
      __builtin_prefetch(&next.prepared);
      if (next.prepared.decrypted && next.prepared.plain_len != 0) {
        __builtin_prefetch(next.prepared.plain);
        __builtin_prefetch(next.prepared.plain + 64);
        __builtin_prefetch(next.prepared.plain + next.prepared.plain_len - 1);
      }
    }
    ordered_.process_prepared(s.frame, s.outer, s.has_prepared ? &s.prepared : nullptr, result_);
    if (result_.layer_count != 0 && result_.layers[0].sa >= 0) {
      const auto idx = static_cast<std::size_t>(result_.layers[0].sa);
      const ipsec::ReplayWindow& w = sad_.at(idx).replay;
      if (w.esn()) tops_[idx].store(w.top(), std::memory_order_relaxed);
    }
    sink(s.frame, s.outer, result_);
  }
  release_to_.store(c.slots[c.count - 1].frame.file_offset, std::memory_order_release);
  if (timing_) stats_.ordered_cpu_seconds += thread_cpu() - t0;
}

}  // namespace ipsentry::capture
