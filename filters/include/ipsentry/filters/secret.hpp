// Key material that cleans up after itself.
//
// SecretBytes holds keys in a single block of OpenSSL's secure heap: pages
// locked into RAM (never written to swap), left out of core dumps
// (MADV_DONTDUMP) and fenced by guard pages. The block is overwritten with
// OPENSSL_cleanse when the object dies; it cannot be copied by accident (only
// clone() copies), and it has no operator<< or formatter, so a key cannot be
// logged by mistake. Printing a key needs the explicit reveal_hex().
// When the pages cannot be locked (RLIMIT_MEMLOCK) or the heap is full, keys
// live in ordinary memory and key_memory_notice() says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ipsentry::filters {

class SecretBytes {
 public:
  SecretBytes() noexcept = default;
  explicit SecretBytes(std::span<const std::uint8_t> bytes);
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  [[nodiscard]] SecretBytes clone() const { return SecretBytes(bytes()); }
  [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// A copy of the first n bytes / the bytes from `from` on (for key || salt splits).
  [[nodiscard]] SecretBytes first(std::size_t n) const;
  [[nodiscard]] SecretBytes from(std::size_t offset) const;
  /// Hex text of the key. Only for output the user explicitly asked for.
  [[nodiscard]] std::string reveal_hex() const;

  friend bool operator==(const SecretBytes& a, const SecretBytes& b) noexcept;

 private:
  void wipe() noexcept;
  std::uint8_t* data_ = nullptr;  // from the secure heap, or ordinary memory when it cannot serve
  std::size_t size_ = 0;
};

/// Empty while every key is in locked memory left out of core dumps;
/// otherwise a sentence saying what is not protected and why.
[[nodiscard]] std::string key_memory_notice();

/// Parses "0x0011aa..." (separators ':' '-' ' ' allowed between bytes).
/// Returns false with a reason when the text is not an even run of hex digits.
bool parse_hex_key(std::string_view text, SecretBytes& out, std::string& why);

/// Clears a buffer so that the compiler cannot optimise the write away.
void cleanse(void* p, std::size_t n) noexcept;

}  // namespace ipsentry::filters
