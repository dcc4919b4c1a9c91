// Bounds-checked, zero-copy access to wire bytes.
//
// Every parser in ipsentry reads packets through these helpers so that a
// truncated or hostile packet can never cause a read past the end of the
// captured bytes: a failed read returns false / nullopt and leaves the reader
// untouched, and the caller turns that into a "malformed" verdict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace ipsentry::dissect {

using Bytes = std::span<const std::uint8_t>;
using MutableBytes = std::span<std::uint8_t>;

/// Big-endian loads from a pointer the caller has already bounds-checked.
inline std::uint16_t load_be16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t load_be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
         (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}
inline std::uint64_t load_be64(const std::uint8_t* p) noexcept {
  return (std::uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}
inline std::uint16_t load_le16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}
inline void store_be16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline void store_be32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
inline void store_be64(std::uint8_t* p, std::uint64_t v) noexcept {
  store_be32(p, static_cast<std::uint32_t>(v >> 32));
  store_be32(p + 4, static_cast<std::uint32_t>(v));
}

/// A cursor over a byte span. Reads consume from the front; the *_end reads
/// consume from the back (ESP trailers and ICVs live at the end of a packet).
class Reader {
 public:
  constexpr Reader() noexcept = default;
  constexpr explicit Reader(Bytes data) noexcept : data_(data) {}

  [[nodiscard]] std::size_t remaining() const noexcept { return data_.size(); }
  [[nodiscard]] bool empty() const noexcept { return data_.empty(); }
  [[nodiscard]] Bytes rest() const noexcept { return data_; }
  [[nodiscard]] bool has(std::size_t n) const noexcept { return data_.size() >= n; }

  [[nodiscard]] bool skip(std::size_t n) noexcept {
    if (!has(n)) return false;
    data_ = data_.subspan(n);
    return true;
  }
  [[nodiscard]] bool u8(std::uint8_t& out) noexcept {
    if (!has(1)) return false;
    out = data_[0];
    data_ = data_.subspan(1);
    return true;
  }
  [[nodiscard]] bool be16(std::uint16_t& out) noexcept {
    if (!has(2)) return false;
    out = load_be16(data_.data());
    data_ = data_.subspan(2);
    return true;
  }
  [[nodiscard]] bool be32(std::uint32_t& out) noexcept {
    if (!has(4)) return false;
    out = load_be32(data_.data());
    data_ = data_.subspan(4);
    return true;
  }
  [[nodiscard]] bool be64(std::uint64_t& out) noexcept {
    if (!has(8)) return false;
    out = load_be64(data_.data());
    data_ = data_.subspan(8);
    return true;
  }
  [[nodiscard]] bool bytes(std::size_t n, Bytes& out) noexcept {
    if (!has(n)) return false;
    out = data_.first(n);
    data_ = data_.subspan(n);
    return true;
  }
  [[nodiscard]] bool bytes_end(std::size_t n, Bytes& out) noexcept {
    if (!has(n)) return false;
    out = data_.last(n);
    data_ = data_.first(data_.size() - n);
    return true;
  }
  [[nodiscard]] bool u8_end(std::uint8_t& out) noexcept {
    if (!has(1)) return false;
    out = data_.back();
    data_ = data_.first(data_.size() - 1);
    return true;
  }

 private:
  Bytes data_{};
};

/// Copies n bytes of a span starting at off, or returns false if out of range.
inline bool copy_out(Bytes src, std::size_t off, void* dst, std::size_t n) noexcept {
  if (off > src.size() || src.size() - off < n) return false;
  if (n != 0) std::memcpy(dst, src.data() + off, n);
  return true;
}

}  // namespace ipsentry::dissect
