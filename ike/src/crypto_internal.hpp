// Helpers shared by the IKE crypto sources; not part of any interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ipsentry/filters/secret.hpp"

namespace ipsentry::ike::detail {

/// A fixed-size scratch buffer for secrets (SKEYSEED, a seed holding g^ir,
/// prf+ output before it is split): wiped when it goes. Fixed size, so no
/// reallocation leaves an unwiped copy behind.
class Wiped {
 public:
  explicit Wiped(std::size_t n) : data_(std::make_unique<std::uint8_t[]>(n)), size_(n) {}
  ~Wiped() { filters::cleanse(data_.get(), size_); }
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;
  [[nodiscard]] std::uint8_t* data() noexcept { return data_.get(); }
  [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return {data_.get(), size_}; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_;
};

/// A unique_ptr that frees an OpenSSL object with its free function
/// (`OsslPtr<EVP_PKEY, EVP_PKEY_free>`).
template <auto Free>
struct OsslFree {
  template <class T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};
template <class T, auto Free>
using OsslPtr = std::unique_ptr<T, OsslFree<Free>>;

/// `what`, and OpenSSL's reason for the last failure if it left one
/// (which is then cleared).
[[nodiscard]] std::string ossl_error(const char* what);

}  // namespace ipsentry::ike::detail
