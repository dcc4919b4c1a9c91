// IPv4 / IPv6 addresses and prefixes as plain values (no allocation).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace ipsentry::dissect {

class IpAddr {
 public:
  enum class Family : std::uint8_t { none = 0, v4 = 4, v6 = 6 };

  constexpr IpAddr() noexcept = default;

  static IpAddr v4(const std::uint8_t* b) noexcept {
    IpAddr a;
    a.family_ = Family::v4;
    std::memcpy(a.bytes_.data(), b, 4);
    return a;
  }
  static IpAddr v6(const std::uint8_t* b) noexcept {
    IpAddr a;
    a.family_ = Family::v6;
    std::memcpy(a.bytes_.data(), b, 16);
    return a;
  }
  /// Parses dotted-quad or RFC 4291 text (a zone suffix "%eth0" is ignored,
  /// since captures do not carry zones). Returns nullopt on anything else.
  static std::optional<IpAddr> parse(std::string_view text);

  [[nodiscard]] Family family() const noexcept { return family_; }
  [[nodiscard]] bool is_v4() const noexcept { return family_ == Family::v4; }
  [[nodiscard]] bool is_v6() const noexcept { return family_ == Family::v6; }
  [[nodiscard]] bool empty() const noexcept { return family_ == Family::none; }
  [[nodiscard]] std::size_t size() const noexcept {
    return family_ == Family::v4 ? 4 : family_ == Family::v6 ? 16 : 0;
  }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
  [[nodiscard]] bool is_multicast() const noexcept;
  [[nodiscard]] bool is_link_local() const noexcept;

  /// Writes the canonical text form (RFC 5952 for IPv6) into buf, which
  /// must hold at least 46 bytes; returns the length written.
  std::size_t format(char* buf, std::size_t cap) const noexcept;
  [[nodiscard]] std::string str() const;

  friend bool operator==(const IpAddr& a, const IpAddr& b) noexcept {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }
  friend std::strong_ordering operator<=>(const IpAddr& a, const IpAddr& b) noexcept {
    if (auto c = a.family_ <=> b.family_; c != 0) return c;
    return a.bytes_ <=> b.bytes_;
  }
  [[nodiscard]] std::size_t hash() const noexcept;

 private:
  Family family_ = Family::none;
  std::array<std::uint8_t, 16> bytes_{};
};

/// An address prefix such as 192.0.2.0/24 or 2001:db8::/32.
struct IpPrefix {
  IpAddr addr;
  std::uint8_t length = 0;

  static std::optional<IpPrefix> parse(std::string_view text);
  [[nodiscard]] bool contains(const IpAddr& a) const noexcept;
  [[nodiscard]] std::string str() const;
};

}  // namespace ipsentry::dissect
