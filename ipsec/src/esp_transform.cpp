#include "ipsentry/ipsec/esp_transform.hpp"

#include <cstring>

#include "esp_backend.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::ipsec {

using detail::kEspHeader;
using dissect::store_be64;
using filters::CipherMode;

EspTransform::EspTransform(const filters::SaConfig& sa, CryptoChoice choice)
    : layout_(std::make_unique<detail::EspLayout>()) {
  const filters::CipherInfo& ci = filters::cipher_info(sa.cipher);
  const filters::IntegrityInfo& ii = filters::integrity_info(sa.integrity);
  if (!ci.supported) throw crypto::CryptoError(std::string(ci.name) + " is not supported");
  if (!ii.supported) throw crypto::CryptoError(std::string(ii.name) + " is not supported");
  detail::EspLayout& l = *layout_;
  l.mode = ci.mode;
  l.esn = sa.esn;
  l.implicit_iv = ci.implicit_iv;
  l.iv_len = ci.iv_len;
  l.block = ci.block_size == 0 ? 1 : ci.block_size;
  auto key = sa.enc_key.bytes();
  l.salt_len = ci.salt_len;
  if (l.salt_len != 0) {
    std::memcpy(l.salt.data(), key.data() + key.size() - l.salt_len, l.salt_len);
    key = key.first(key.size() - l.salt_len);
  }
  aead_ = ci.aead();
  if (aead_) {
    l.icv_len = ci.icv_len;
    checks_ = true;
  } else {
    l.icv_len = ii.icv_len;
    checks_ = sa.integrity != filters::Integrity::none && ii.checks;
  }
  iv_len_ = l.iv_len;
  icv_len_ = l.icv_len;
  align_ = ci.block_size < 4 ? 4 : ci.block_size;

  if (choice == CryptoChoice::openssl) {
    backend_reason_ = "--crypto openssl";
  } else {
#ifdef IPSENTRY_HAVE_IPSEC_MB
    impl_ = detail::make_ipsecmb_esp(sa, l, key, choice, backend_reason_);
    if (impl_) backend_ = CryptoBackend::ipsec_mb;
#else
    backend_reason_ = "built without libipsec-mb";
#endif
  }
  if (!impl_) impl_ = detail::make_openssl_esp(sa, l, key);
}

EspTransform::~EspTransform() {
  impl_.reset();
  filters::cleanse(layout_->salt.data(), layout_->salt.size());
}

EspTransform::Status EspTransform::decrypt(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* out,
                                           std::size_t& out_len, IcvMismatch* mismatch) noexcept {
  out_len = 0;
  if (esp.size() < kEspHeader + iv_len_ + icv_len_ + 2) return Status::too_short;
  const std::size_t ct_len = esp.size() - kEspHeader - iv_len_ - icv_len_;
  if ((layout_->mode == CipherMode::cbc && ct_len % layout_->block != 0) || ct_len % 4 != 0) {
    // RFC 4303 section 2.4: the ciphertext ends on a 4-byte boundary, and a
    // block cipher needs whole blocks.
    return Status::not_aligned;
  }
  const Status s = impl_->open(esp, seq, out, mismatch);
  if (s == Status::ok) out_len = ct_len;
  return s;
}

bool EspTransform::encrypt(std::span<std::uint8_t> esp, std::uint64_t seq, const std::uint8_t* iv_in) noexcept {
  if (esp.size() < kEspHeader + iv_len_ + icv_len_ + 2) return false;
  std::uint8_t* iv = esp.data() + kEspHeader;
  if (iv_len_ != 0) {
    if (iv_in != nullptr) {
      std::memcpy(iv, iv_in, iv_len_);
    } else if (layout_->mode == CipherMode::cbc) {
      // CBC needs an unpredictable IV (RFC 3602 section 3).
      try {
        crypto::random_bytes(iv, iv_len_);
      } catch (...) {
        return false;
      }
    } else {
      // Counter-based modes need a unique IV per key: the sequence number is
      // one (RFC 4106 section 3.1).
      store_be64(iv, seq);
    }
  }
  return impl_->seal(esp, seq);
}

}  // namespace ipsentry::ipsec
