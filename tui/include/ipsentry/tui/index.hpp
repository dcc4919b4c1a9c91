// The frame index behind the TUI's packet list: one small fixed-size Row
// per frame, with what the list shows and the display filter tests. Frame
// bytes are not copied: a Row points at them (the mapped capture file, or
// the live capture's store) and everything else is read on demand for the
// rows on screen.
//
// Rows are appended by one indexing thread and read by the UI thread
// without a lock: storage comes in fixed chunks that never move, and the
// count of rows is published with release/acquire.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/ike/analyzer.hpp"

namespace ipsentry::tui {

enum class FrameKind : std::uint8_t { esp, ah, ike, nat_keepalive, cleartext, non_ip, malformed };

/// No verdict: the frame is neither IPsec nor IKE.
inline constexpr std::uint8_t kNoVerdict = 0xff;

namespace row_flag {
inline constexpr std::uint8_t has_spi = 1;
inline constexpr std::uint8_t has_seq = 2;
inline constexpr std::uint8_t udp_encap = 4;
inline constexpr std::uint8_t ipv4 = 8;
inline constexpr std::uint8_t ipv6 = 16;
inline constexpr std::uint8_t ike_v2 = 32;
inline constexpr std::uint8_t decrypted = 64;  // the inner packet was opened
inline constexpr std::uint8_t trigger = 128;   // a live capture's trigger or --stop-on event fired on it
}  // namespace row_flag

struct Row {
  const std::uint8_t* data = nullptr;  // captured bytes
  std::int64_t ts_ns = 0;
  std::uint64_t seq = 0;  // outermost IPsec layer (with ESN, the inferred value)
  std::uint32_t caplen = 0;
  std::uint32_t orig_len = 0;
  // Address ids in the AddressTable (0: none): source, destination, and the
  // inner packet's when one was decrypted.
  std::array<std::uint32_t, 4> addr{};
  std::uint32_t spi = 0;
  std::array<std::uint16_t, 4> port{};  // sport, dport, inner sport, inner dport
  std::uint16_t linktype = 0;
  std::uint8_t l4 = 0;        // outer upper-layer protocol
  std::uint8_t inner_l4 = 0;  // of the decrypted packet
  FrameKind kind = FrameKind::non_ip;
  std::uint8_t verdict = kNoVerdict;  // ipsec::Verdict (the first layer that failed, else ok) or ike::MessageVerdict
  std::uint8_t reason = 0;            // ipsec::Reason of that layer
  std::uint8_t flags = 0;
  std::uint8_t exchange = 0;    // IKE exchange type
  std::uint8_t fail_layer = 0;  // the layer `verdict` belongs to
  std::uint8_t audit = 0;       // capture::AuditVerdict (none without a policy audit)
};
// `tui -b` tells users each frame costs 72 bytes of index.
static_assert(sizeof(Row) <= 72, "the index row outgrew what the -b help promises");

/// Append-only, chunked: a Row's address never changes once written.
template <typename T, std::size_t ChunkBits = 16>
class ChunkedLog {
 public:
  static constexpr std::size_t kChunk = std::size_t{1} << ChunkBits;
  static constexpr std::size_t kCapacity = kChunk * 4096;
  /// Readers: how many entries are complete.
  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return chunks_[i >> ChunkBits][i & (kChunk - 1)]; }
  /// Writer only.
  T& append() {
    const std::size_t n = size_.load(std::memory_order_relaxed);
    if ((n >> ChunkBits) == count_) {
      if (count_ == chunks_.size()) throw std::length_error("frame index is full");
      chunks_[count_++] = std::make_unique<T[]>(kChunk);
    }
    T& slot = chunks_[n >> ChunkBits][n & (kChunk - 1)];
    slot = T{};
    return slot;
  }
  void publish() noexcept { size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

 private:
  // Fixed directory, so readers never see it reallocated: 4096 chunks of 65536 rows.
  std::array<std::unique_ptr<T[]>, kCapacity / kChunk> chunks_{};
  std::size_t count_ = 0;
  std::atomic<std::size_t> size_{0};
};

/// Interned addresses: the index stores 4-byte ids instead of 17-byte values.
class AddressTable {
 public:
  /// Writer only. Returns 0 for an empty address.
  std::uint32_t intern(const dissect::IpAddr& a);
  /// id must be non-zero and published (returned by intern before the row
  /// that uses it was published).
  [[nodiscard]] const dissect::IpAddr& at(std::uint32_t id) const noexcept { return log_[id - 1]; }

 private:
  struct Hash {
    std::size_t operator()(const dissect::IpAddr& a) const noexcept { return a.hash(); }
  };
  ChunkedLog<dissect::IpAddr, 12> log_;
  std::unordered_map<dissect::IpAddr, std::uint32_t, Hash> ids_;
};

/// The policy audit's verdict of a row.
[[nodiscard]] inline capture::AuditVerdict audit_of(const Row& row) noexcept {
  return static_cast<capture::AuditVerdict>(row.audit);
}
/// Whether the verdict column and the `verdict` filter field show the
/// row's audit verdict: a finding, or cleartext that a policy requesting
/// IPsec let pass (which an operator wants to see next to the failures).
[[nodiscard]] inline bool audit_shown(const Row& row) noexcept {
  return capture::flagged(audit_of(row)) || audit_of(row) == capture::AuditVerdict::fallback;
}

/// Fills a Row from a frame's verification (and its IKE record, if any).
/// `inner` is the dissection of the decrypted packet, or nullptr.
void fill_row(Row& row, const dissect::Frame& frame, const dissect::Packet& outer, const capture::FrameResult& r,
              const dissect::Packet* inner, const ike::MessageRecord* ike, AddressTable& addresses);

}  // namespace ipsentry::tui
