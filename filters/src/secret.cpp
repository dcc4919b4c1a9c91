#include "ipsentry/filters/secret.hpp"

#include <openssl/crypto.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace ipsentry::filters {

void cleanse(void* p, std::size_t n) noexcept {
  if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

namespace {

// Room for a few thousand keys (the heap hands out powers of two from 32
// bytes); more than that spills into ordinary memory with a notice. Small
// enough for the default RLIMIT_MEMLOCK of 8 MiB.
constexpr std::size_t kSecureHeapBytes = 512 * 1024;
constexpr std::size_t kSecureHeapMinimum = 32;

enum class HeapState : int { untried, locked, unlocked, unavailable };
std::once_flag heap_once;
std::atomic<HeapState> heap_state{HeapState::untried};
std::atomic<bool> heap_spilled{false};

void init_heap() {
  std::call_once(heap_once, [] {
    // 1: mapped and locked; 2: mapped, MADV_DONTDUMP set, but mlock refused.
    const int rc = CRYPTO_secure_malloc_init(kSecureHeapBytes, kSecureHeapMinimum);
    heap_state = rc == 1 ? HeapState::locked : rc == 2 ? HeapState::unlocked : HeapState::unavailable;
  });
}

std::uint8_t* allocate(std::size_t n) {
  init_heap();
  void* p = CRYPTO_secure_malloc_initialized() != 0 ? OPENSSL_secure_malloc(n) : nullptr;
  if (p == nullptr) {
    if (heap_state.load() != HeapState::unavailable) heap_spilled = true;
    p = OPENSSL_malloc(n);
    if (p == nullptr) throw std::bad_alloc();
  }
  return static_cast<std::uint8_t*>(p);
}

}  // namespace

std::string key_memory_notice() {
  init_heap();
  switch (heap_state.load()) {
    case HeapState::untried:
    case HeapState::locked: break;
    case HeapState::unlocked:
      return "key memory could not be locked into RAM (mlock refused: RLIMIT_MEMLOCK, see ulimit -l); keys may be "
             "written to swap, though they stay out of core dumps";
    case HeapState::unavailable:
      return "no locked key memory could be set up (mmap refused); keys are in ordinary memory and may be written to "
             "swap or a core dump";
  }
  if (heap_spilled.load()) {
    return fmt::format("more keys than the {} KiB of locked key memory hold: the rest are in ordinary memory",
                       kSecureHeapBytes / 1024);
  }
  return {};
}

SecretBytes::SecretBytes(std::span<const std::uint8_t> bytes) : size_(bytes.size()) {
  if (size_ != 0) {
    data_ = allocate(size_);
    std::memcpy(data_, bytes.data(), size_);
  }
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

SecretBytes::~SecretBytes() { wipe(); }

void SecretBytes::wipe() noexcept {
  // Cleanses and frees, whichever heap the block came from.
  if (data_ != nullptr) OPENSSL_secure_clear_free(data_, size_);
  data_ = nullptr;
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
  return a.size_ == b.size_ && (a.size_ == 0 || CRYPTO_memcmp(a.data_, b.data_, a.size_) == 0);
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
