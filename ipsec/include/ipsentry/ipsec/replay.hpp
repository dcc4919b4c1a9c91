// Anti-replay window with extended sequence numbers.
//
// The bitmap follows RFC 6479: a ring of 64-bit blocks with one spare block,
// so sliding the window clears whole blocks instead of shifting bits, and the
// cost of an update does not grow with the window size. The ESN high bits are
// inferred as RFC 4303 Appendix A describes.
//
// Contract (RFC 4303 section 3.4.3): call check() before the ICV is verified
// and commit() only after it verified, so that forged packets cannot move the
// window.
#pragma once

#include <cstdint>
#include <vector>

namespace ipsentry::ipsec {

class ReplayWindow {
 public:
  enum class Check : std::uint8_t { ok, duplicate, too_old, zero };

  /// size 0 disables replay detection (the highest sequence number is still
  /// tracked, because ESN inference needs it). `top` is the highest sequence
  /// number already accepted (0: none yet).
  ReplayWindow(std::uint32_t size, bool esn, std::uint64_t top = 0);

  /// Full 64-bit sequence number for the 32 bits carried in a packet. Without
  /// ESN this is the value itself.
  [[nodiscard]] std::uint64_t infer(std::uint32_t seq_low) const noexcept { return infer_at(top_, seq_low); }
  /// infer() as if `top` were the highest number accepted. Reads only what
  /// never changes after construction, so another thread may call it while
  /// the window moves (a speculative inference, checked again later).
  [[nodiscard]] std::uint64_t infer_at(std::uint64_t top, std::uint32_t seq_low) const noexcept;
  [[nodiscard]] Check check(std::uint64_t seq) const noexcept;
  void commit(std::uint64_t seq) noexcept;

  [[nodiscard]] std::uint64_t top() const noexcept { return top_; }
  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }
  [[nodiscard]] bool esn() const noexcept { return esn_; }
  /// Number of sequence numbers received inside the current window.
  [[nodiscard]] std::uint32_t received_in_window() const noexcept;

 private:
  [[nodiscard]] bool test_bit(std::uint64_t seq) const noexcept;
  void set_bit(std::uint64_t seq) noexcept;

  std::uint32_t size_;
  bool esn_;
  bool any_ = false;
  std::uint64_t top_;
  std::vector<std::uint64_t> blocks_;  // power-of-two ring
  std::uint64_t mask_ = 0;             // blocks_.size() * 64 - 1
};

}  // namespace ipsentry::ipsec
