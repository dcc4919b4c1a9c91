#include "ipsentry/dissect/ip_address.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string>

namespace ipsentry::dissect {

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  if (auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
  if (text.size() > 45 || text.empty()) return std::nullopt;
  char buf[64];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::uint8_t raw[16];
  if (inet_pton(AF_INET, buf, raw) == 1) return IpAddr::v4(raw);
  if (inet_pton(AF_INET6, buf, raw) == 1) return IpAddr::v6(raw);
  return std::nullopt;
}

bool IpAddr::is_multicast() const noexcept {
  if (is_v4()) return (bytes_[0] & 0xf0) == 0xe0;
  if (is_v6()) return bytes_[0] == 0xff;
  return false;
}

bool IpAddr::is_link_local() const noexcept {
  if (is_v4()) return bytes_[0] == 169 && bytes_[1] == 254;
  if (is_v6()) return bytes_[0] == 0xfe && (bytes_[1] & 0xc0) == 0x80;
  return false;
}

std::size_t IpAddr::format(char* buf, std::size_t cap) const noexcept {
  if (cap == 0) return 0;
  const char* r = nullptr;
  if (is_v4() && cap >= 16) {
    // glibc's inet_ntop formats IPv4 through sprintf, which dominated the
    // per-packet cost of a verification run.
    std::size_t n = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned v = bytes_[static_cast<std::size_t>(i)];
      if (v >= 100) buf[n++] = static_cast<char>('0' + v / 100);
      if (v >= 10) buf[n++] = static_cast<char>('0' + v / 10 % 10);
      buf[n++] = static_cast<char>('0' + v % 10);
      buf[n++] = i < 3 ? '.' : '\0';
    }
    return n - 1;
  }
  if (is_v4()) {
    r = inet_ntop(AF_INET, bytes_.data(), buf, static_cast<socklen_t>(cap));
  } else if (is_v6()) {
    r = inet_ntop(AF_INET6, bytes_.data(), buf, static_cast<socklen_t>(cap));
  }
  if (r == nullptr) {
    buf[0] = '\0';
    return 0;
  }
  return std::strlen(buf);
}

std::string IpAddr::str() const {
  char buf[64];
  std::size_t n = format(buf, sizeof buf);
  return n == 0 ? std::string("-") : std::string(buf, n);
}

std::size_t IpAddr::hash() const noexcept {
  // FNV-1a over the family and the significant bytes.
  std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint8_t>(family_);
  for (std::size_t i = 0; i < size(); ++i) {
    h ^= bytes_[i];
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h);
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddr::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  unsigned max_len = addr->is_v4() ? 32 : 128;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (ec != std::errc{} || p != digits.data() + digits.size() || len > max_len) {
      return std::nullopt;
    }
  }
  return IpPrefix{*addr, static_cast<std::uint8_t>(len)};
}

bool IpPrefix::contains(const IpAddr& a) const noexcept {
  if (a.family() != addr.family()) return false;
  unsigned full = length / 8;
  unsigned bits = length % 8;
  if (std::memcmp(a.data(), addr.data(), full) != 0) return false;
  if (bits == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a.data()[full] & mask) == (addr.data()[full] & mask);
}

std::string IpPrefix::str() const { return addr.str() + "/" + std::to_string(length); }

}  // namespace ipsentry::dissect
