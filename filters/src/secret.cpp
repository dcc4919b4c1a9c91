#include "ipsentry/filters/secret.hpp"

#include <openssl/crypto.h>

#include <cstring>
#include <stdexcept>
#include <vector>

namespace ipsentry::filters {

void cleanse(void* p, std::size_t n) noexcept {
  if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

SecretBytes::SecretBytes(std::span<const std::uint8_t> bytes) : size_(bytes.size()) {
  if (size_ != 0) {
    data_ = std::make_unique<std::uint8_t[]>(size_);
    std::memcpy(data_.get(), bytes.data(), size_);
  }
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

SecretBytes::~SecretBytes() { wipe(); }

void SecretBytes::wipe() noexcept {
  cleanse(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

SecretBytes SecretBytes::first(std::size_t n) const {
  if (n > size_) throw std::out_of_range("SecretBytes::first");
  return SecretBytes(bytes().first(n));
}

SecretBytes SecretBytes::from(std::size_t offset) const {
  if (offset > size_) throw std::out_of_range("SecretBytes::from");
  return SecretBytes(bytes().subspan(offset));
}

std::string SecretBytes::reveal_hex() const {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(2 + size_ * 2);
  s += "0x";
  for (std::size_t i = 0; i < size_; ++i) {
    s += digits[data_[i] >> 4];
    s += digits[data_[i] & 0xf];
  }
  return s;
}

bool operator==(const SecretBytes& a, const SecretBytes& b) noexcept {
  return a.size_ == b.size_ && (a.size_ == 0 || CRYPTO_memcmp(a.data_.get(), b.data_.get(), a.size_) == 0);
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool parse_hex_key(std::string_view text, SecretBytes& out, std::string& why) {
  if (text.size() < 2 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) {
    why = "a key must be hex starting with 0x (or use a key file)";
    return false;
  }
  text.remove_prefix(2);
  std::vector<std::uint8_t> bytes;
  bytes.reserve(text.size() / 2);
  int hi = -1;
  for (char c : text) {
    if (c == ':' || c == '-' || c == ' ' || c == '_') {
      if (hi != -1) {
        why = "odd number of hex digits before a separator";
        cleanse(bytes.data(), bytes.size());
        return false;
      }
      continue;
    }
    int v = hex_value(c);
    if (v < 0) {
      why = std::string("'") + c + "' is not a hex digit";
      cleanse(bytes.data(), bytes.size());
      return false;
    }
    if (hi < 0) {
      hi = v;
    } else {
      bytes.push_back(static_cast<std::uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi != -1) {
    why = "odd number of hex digits";
    cleanse(bytes.data(), bytes.size());
    return false;
  }
  out = SecretBytes(bytes);
  cleanse(bytes.data(), bytes.size());
  return true;
}

}  // namespace ipsentry::filters
