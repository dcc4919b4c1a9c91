#include "ipsentry/ipsec/replay.hpp"

#include <bit>

namespace ipsentry::ipsec {

ReplayWindow::ReplayWindow(std::uint32_t size, bool esn, std::uint64_t top)
    : size_(size), esn_(esn), any_(top != 0), top_(top) {
  if (size_ != 0) {
    // One spare block so that the block being slid into is never part of the
    // live window (RFC 6479 section 2).
    std::size_t nblocks = std::bit_ceil(std::size_t{(size_ + 63) / 64} + 1);
    blocks_.assign(nblocks, 0);
    mask_ = nblocks * 64 - 1;
  }
}

std::uint64_t ReplayWindow::infer_at(std::uint64_t top, std::uint32_t seq_low) const noexcept {
  if (!esn_) return seq_low;
  // RFC 4303 Appendix A2.1. With the window disabled, use half the sequence
  // space so that inference still follows the traffic.
  const std::uint64_t w = size_ != 0 ? size_ : (1ull << 31);
  const std::uint32_t th = static_cast<std::uint32_t>(top >> 32);
  const std::uint32_t tl = static_cast<std::uint32_t>(top);
  std::uint32_t seqh;
  if (tl >= w - 1) {
    // Case A: the window lies within one 2^32 subspace.
    seqh = seq_low >= tl - (w - 1) ? th : th + 1;
  } else {
    // Case B: the window spans two subspaces.
    const std::uint32_t low_edge = static_cast<std::uint32_t>(tl - (w - 1));  // modulo 2^32
    if (seq_low >= low_edge) {
      seqh = th == 0 ? 0 : th - 1;  // there is no subspace below the first one
    } else {
      seqh = th;
    }
  }
  return (std::uint64_t{seqh} << 32) | seq_low;
}

bool ReplayWindow::test_bit(std::uint64_t seq) const noexcept {
  std::uint64_t bit = seq & mask_;
  return (blocks_[bit >> 6] >> (bit & 63)) & 1;
}

void ReplayWindow::set_bit(std::uint64_t seq) noexcept {
  std::uint64_t bit = seq & mask_;
  blocks_[bit >> 6] |= std::uint64_t{1} << (bit & 63);
}

ReplayWindow::Check ReplayWindow::check(std::uint64_t seq) const noexcept {
  // Sequence number 0 is never sent: counters start at 1 and an SA must be
  // rekeyed before the counter (32 or 64 bits) would wrap to 0.
  if (seq == 0 || (!esn_ && (seq & 0xffffffffu) == 0)) return Check::zero;
  if (size_ == 0) return Check::ok;
  if (!any_ || seq > top_) return Check::ok;
  if (top_ - seq >= size_) return Check::too_old;
  return test_bit(seq) ? Check::duplicate : Check::ok;
}

void ReplayWindow::commit(std::uint64_t seq) noexcept {
  if (size_ == 0) {
    if (!any_ || seq > top_) top_ = seq;
    any_ = true;
    return;
  }
  if (!any_ || seq > top_) {
    const std::uint64_t nblocks = blocks_.size();
    const std::uint64_t old_block = any_ ? (top_ >> 6) : (seq >> 6) - nblocks;
    const std::uint64_t new_block = seq >> 6;
    std::uint64_t diff = new_block - old_block;
    if (diff > nblocks) diff = nblocks;
    for (std::uint64_t i = 1; i <= diff; ++i) {
      blocks_[(old_block + i) & (nblocks - 1)] = 0;
    }
    top_ = seq;
    any_ = true;
  }
  set_bit(seq);
}

std::uint32_t ReplayWindow::received_in_window() const noexcept {
  if (size_ == 0 || !any_) return 0;
  std::uint32_t n = 0;
  std::uint64_t lowest = top_ >= size_ ? top_ - size_ + 1 : 1;
  for (std::uint64_t s = lowest; s <= top_; ++s) n += test_bit(s) ? 1u : 0u;
  return n;
}

}  // namespace ipsentry::ipsec
