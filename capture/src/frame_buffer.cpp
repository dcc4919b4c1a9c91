#include "ipsentry/capture/frame_buffer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "ipsentry/capture/file_source.hpp"

namespace ipsentry::capture {

FrameBuffer::FrameBuffer(std::size_t bytes, const std::filesystem::path& spill_dir) : cap_(bytes) {
  if (bytes < kMinBytes || bytes > kMaxBytes) {
    throw CaptureError(fmt::format("capture buffer of {} bytes: it must be 1 to 1000 MB", bytes));
  }
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (!spill_dir.empty()) {
    std::string tmpl = (spill_dir / "ipsentry-buffer-XXXXXX").string();
    spill_fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (spill_fd_ < 0) {
      throw CaptureError(
          fmt::format("cannot create the buffer file in '{}': {}", spill_dir.string(), std::strerror(errno)));
    }
    ::unlink(tmpl.c_str());  // nothing is left behind, whatever happens to the process
    if (::ftruncate(spill_fd_, static_cast<off_t>(bytes)) != 0) {
      const int e = errno;
      ::close(spill_fd_);
      throw CaptureError(fmt::format("cannot size the buffer file in '{}' to {} MB: {}", spill_dir.string(),
                                     bytes >> 20, std::strerror(e)));
    }
    flags = MAP_SHARED;
  }
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, spill_fd_, 0);
  if (m == MAP_FAILED) {
    const int e = errno;
    if (spill_fd_ >= 0) ::close(spill_fd_);
    throw CaptureError(fmt::format("cannot reserve a {} MB capture buffer: {}", bytes >> 20, std::strerror(e)));
  }
  base_ = static_cast<std::uint8_t*>(m);
}

FrameBuffer::~FrameBuffer() {
  ::munmap(base_, cap_);
  if (spill_fd_ >= 0) ::close(spill_fd_);
}

void FrameBuffer::lock() const noexcept {
  while (lock_.exchange(true, std::memory_order_acquire)) {
    while (lock_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
  }
}

const RecordHeader* FrameBuffer::at(std::uint64_t off) const noexcept {
  // A record never straddles the end: too little room left for a header, or
  // a header of size 0, means the next record is at the start.
  if (cap_ - off < sizeof(RecordHeader)) off = 0;
  auto* r = reinterpret_cast<const RecordHeader*>(base_ + off);
  if (r->size == 0) r = reinterpret_cast<const RecordHeader*>(base_);
  return r;
}

void FrameBuffer::protect_from(std::uint64_t seq) noexcept {
  std::uint64_t cur = protect_from_.load(std::memory_order_relaxed);
  while (seq < cur && !protect_from_.compare_exchange_weak(cur, seq, std::memory_order_acq_rel)) {
  }
}

bool FrameBuffer::evict_oldest() noexcept {
  for (;;) {
    lock();
    if (tail_seq_ >= protect_from_.load(std::memory_order_acquire)) {
      unlock();
      return false;
    }
    if (in_use_ == tail_seq_) {
      // The verifier is reading it: it takes microseconds, wait.
      unlock();
      __builtin_ia32_pause();
      continue;
    }
    const RecordHeader* r = at(tail_off_);
    const std::uint32_t size = r->size;
    tail_off_ = static_cast<std::uint64_t>(reinterpret_cast<const std::uint8_t*>(r) - base_) + size;
    ++tail_seq_;
    unlock();
    used_ -= size;
    --count_;
    ++evicted_;
    return true;
  }
}

RecordHeader* FrameBuffer::append(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len,
                                  bool circular) noexcept {
  const std::size_t need = record_size(data.size());
  if (need > cap_) {
    ++too_large_;
    return nullptr;
  }
  std::uint64_t pos = 0;
  bool wrap = false;
  for (;;) {
    // The tail only moves in this thread (evict_oldest), so it can be read
    // without the lock. It is the raw offset the reader computes too: when
    // it is a "continue at the start" point, the bytes from there to the end
    // stay reserved until the tail has passed it, so a reader about to
    // follow the marker still finds it.
    const std::uint64_t tail = tail_off_;
    if (count_ == 0 || head_off_ > tail) {
      if (cap_ - head_off_ >= need) {
        pos = head_off_;
        break;
      }
      if (count_ == 0 || tail >= need) {
        pos = 0;
        wrap = true;
        break;
      }
    } else if (head_off_ < tail && tail - head_off_ >= need) {
      pos = head_off_;
      break;
    }
    if (!circular || !evict_oldest()) return nullptr;
  }
  if (wrap && cap_ - head_off_ >= sizeof(RecordHeader)) {
    auto* marker = reinterpret_cast<RecordHeader*>(base_ + head_off_);
    marker->size = 0;
  }
  auto* r = new (base_ + pos) RecordHeader{};
  const std::uint64_t seq = head_seq_.load(std::memory_order_relaxed);
  r->seq = seq;
  r->ts_ns = ts_ns;
  r->caplen = static_cast<std::uint32_t>(data.size());
  r->orig_len = orig_len;
  r->size = static_cast<std::uint32_t>(need);
  if (!data.empty()) std::memcpy(base_ + pos + sizeof(RecordHeader), data.data(), data.size());
  head_off_ = pos + need;
  used_ += need;
  ++count_;
  head_seq_.store(seq + 1, std::memory_order_release);
  return r;
}

RecordHeader* FrameBuffer::claim(Cursor& c, std::uint64_t& skipped) noexcept {
  if (c.seq >= head_seq_.load(std::memory_order_acquire)) return nullptr;
  lock();
  if (c.seq < tail_seq_) {
    skipped += tail_seq_ - c.seq;
    c.seq = tail_seq_;
    c.off = tail_off_;
  }
  in_use_ = c.seq;
  unlock();
  auto* r = const_cast<RecordHeader*>(at(c.off));
  c.off = static_cast<std::uint64_t>(reinterpret_cast<std::uint8_t*>(r) - base_);
  return r;
}

void FrameBuffer::release(Cursor& c, const RecordHeader& r) noexcept {
  const std::uint64_t next = c.off + r.size;
  lock();
  in_use_ = kNone;
  unlock();
  c.seq += 1;
  c.off = next;
}

}  // namespace ipsentry::capture
