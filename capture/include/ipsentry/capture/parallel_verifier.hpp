// Verification of a capture file on several threads: parallel map, ordered
// commit.
//
// Each thread claims the next chunk of frames from the FileSource, dissects
// them, looks up their SAs and decrypts their outer ESP layer (the costly,
// stateless part: ipsec::Engine::prepare_inbound) with its own copy of each
// SA's transform. Everything that has state then runs in capture order, one
// chunk after the other, on whichever thread holds the baton: the replay
// window check and commit, ESN inference, counters, nested layers, AH, and
// the caller's sink (IKE analyzer, policy audit accounting, report, writer).
// So verdicts, counters and bytes are those of a Verifier fed one frame at a
// time, per-SA order holds with any number of SAs, and no thread waits for
// another unless the chunks in flight run out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/sync.hpp"
#include "ipsentry/capture/verifier.hpp"

namespace ipsentry::capture {

class ParallelVerifier {
 public:
  /// Called for every frame in capture order, by one thread at a time (not
  /// always the same one), with the frame, its outermost dissection and its
  /// result (which the sink may amend: PolicyAudit::account); all three are
  /// valid during the call only. Must not throw.
  using Sink = std::function<void(const dissect::Frame&, const dissect::Packet& outer, FrameResult&)>;

  /// `threads` (at least 1) includes the thread that calls run(). With one,
  /// run() is a Verifier loop with no chunks and no synchronisation.
  ParallelVerifier(ipsec::Sad& sad, bool want_decrypted, unsigned threads);
  ~ParallelVerifier();
  ParallelVerifier(const ParallelVerifier&) = delete;
  ParallelVerifier& operator=(const ParallelVerifier&) = delete;

  /// As for Verifier; set before run().
  void set_summaries(bool on) noexcept { ordered_.set_summaries(on); }
  void set_audit(const PolicyAudit* audit) noexcept { ordered_.set_audit(audit); }
  /// Frames per chunk (default 64); small values are for tests that want
  /// many hand-overs from few frames.
  void set_chunk_frames(std::size_t n) noexcept { chunk_frames_ = n == 0 ? 1 : n; }

  /// Reads `src` to its end (or its first damage: see FileSource::error),
  /// releasing its pages as the frames are done. Call once.
  void run(FileSource& src, const Sink& sink);

  [[nodiscard]] const ipsec::GlobalCounters& counters() const noexcept { return ordered_.engine().counters(); }
  [[nodiscard]] const FrameCounters& frames() const noexcept { return ordered_.frames(); }

  /// Where the time of run() went, for --stats: CPU time of the threads,
  /// so that the shares hold on a loaded machine. Measured only after
  /// set_timing(true) (a clock read per chunk).
  struct Stats {
    unsigned threads = 1;
    std::uint64_t chunks = 0;
    double cpu_seconds = 0;          // all threads, in run()
    double ordered_cpu_seconds = 0;  // in the ordered stage (the sink included)
    double read_cpu_seconds = 0;     // reading frames (serial too, beside the ordered stage)
    double wait_seconds = 0;         // wall time waiting for a free chunk, summed over the threads
  };
  void set_timing(bool on) noexcept { timing_ = on; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  struct Slot;
  struct Chunk;
  struct Worker;

  void run_serial(FileSource& src, const Sink& sink);
  void work(Worker& w, FileSource& src, const Sink& sink) noexcept;
  Chunk* claim(Worker& w, FileSource& src) noexcept;
  void prepare(Worker& w, Chunk& c) noexcept;
  void commit_ready(const Sink& sink) noexcept;
  void commit(Chunk& c, const Sink& sink) noexcept;

  ipsec::Sad& sad_;
  unsigned threads_;
  std::size_t chunk_frames_ = 64;
  bool timing_ = false;
  Verifier ordered_;  // used by the baton's holder only
  FrameResult result_;
  Stats stats_;

  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  // The SAs' highest committed sequence numbers, for the workers' ESN guesses.
  std::unique_ptr<std::atomic<std::uint64_t>[]> tops_;

  // The reader: FileSource is not thread-safe, so claiming frames and
  // releasing pages happen under this lock.
  std::mutex read_mu_;
  std::vector<Chunk*> free_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t released_ = 0;
  bool end_ = false;
  WaitCounter freed_;  // counts chunks given back, for claimers that found none

  // The serial stage: chunks ready for it, by sequence number modulo their count.
  std::unique_ptr<std::atomic<Chunk*>[]> ready_;
  std::uint64_t next_commit_ = 0;  // the baton's holder's
  Baton baton_;
  alignas(kCacheLine) std::atomic<std::uint64_t> release_to_{0};
};

}  // namespace ipsentry::capture
