#include "ipsentry/ipsec/esp_transform.hpp"

#include <cstring>

#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::ipsec {

using dissect::load_be32;
using dissect::store_be32;
using dissect::store_be64;
using filters::CipherMode;

namespace {
constexpr std::size_t kHeader = 8;  // SPI + sequence number
}

EspTransform::EspTransform(const filters::SaConfig& sa)
    : mode_(filters::cipher_info(sa.cipher).mode),
      esn_(sa.esn),
      implicit_iv_(filters::cipher_info(sa.cipher).implicit_iv),
      checks_(false),
      iv_len_(filters::cipher_info(sa.cipher).iv_len),
      icv_len_(0),
      align_(filters::cipher_info(sa.cipher).block_size) {
  const filters::CipherInfo& ci = filters::cipher_info(sa.cipher);
  const filters::IntegrityInfo& ii = filters::integrity_info(sa.integrity);
  if (!ci.supported) throw crypto::CryptoError(std::string(ci.name) + " is not supported");
  if (!ii.supported) throw crypto::CryptoError(std::string(ii.name) + " is not supported");
  auto key = sa.enc_key.bytes();
  salt_len_ = ci.salt_len;
  if (salt_len_ != 0) {
    std::memcpy(salt_.data(), key.data() + key.size() - salt_len_, salt_len_);
    key = key.first(key.size() - salt_len_);
  }
  if (align_ < 4) align_ = 4;
  switch (mode_) {
    case CipherMode::none: break;
    case CipherMode::cbc:
    case CipherMode::ctr: cipher_ = crypto::Cipher::create(sa.cipher, key); break;
    case CipherMode::gcm:
    case CipherMode::gmac: aead_ = crypto::Aead::create(crypto::Aead::Kind::gcm, key, ci.icv_len, 12); break;
    case CipherMode::ccm: aead_ = crypto::Aead::create(crypto::Aead::Kind::ccm, key, ci.icv_len, 11); break;
    case CipherMode::chacha20_poly1305:
      aead_ = crypto::Aead::create(crypto::Aead::Kind::chacha20_poly1305, key, ci.icv_len, 12);
      break;
  }
  if (aead_) {
    icv_len_ = ci.icv_len;
    checks_ = true;
  } else {
    icv_len_ = ii.icv_len;
    if (sa.integrity != filters::Integrity::none && ii.checks) {
      mac_ = crypto::make_mac(sa.integrity, sa.auth_key.bytes());
      checks_ = true;
    }
  }
}

EspTransform::~EspTransform() { filters::cleanse(salt_.data(), salt_.size()); }

void EspTransform::make_aad(const std::uint8_t* esp, std::uint64_t seq, std::uint8_t* aad,
                            std::size_t& len) const noexcept {
  // RFC 4106 section 5 (and 4309, 4543, 7634): SPI || 32-bit sequence number,
  // or SPI || 64-bit extended sequence number.
  std::memcpy(aad, esp, 4);
  if (esn_) {
    store_be64(aad + 4, seq);
    len = 12;
  } else {
    std::memcpy(aad + 4, esp + 4, 4);
    len = 8;
  }
}

void EspTransform::make_nonce(const std::uint8_t* iv, std::uint64_t seq, std::uint8_t* nonce,
                              std::size_t& len) const noexcept {
  std::memcpy(nonce, salt_.data(), salt_len_);
  if (implicit_iv_) {
    // RFC 8750 section 3: the IV is the 64-bit (extended) sequence number.
    store_be64(nonce + salt_len_, esn_ ? seq : (seq & 0xffffffffu));
  } else {
    std::memcpy(nonce + salt_len_, iv, 8);
  }
  len = salt_len_ + 8;
}

EspTransform::Status EspTransform::decrypt(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* out,
                                           std::size_t& out_len, IcvMismatch* mismatch) noexcept {
  out_len = 0;
  if (esp.size() < kHeader + iv_len_ + icv_len_ + 2) return Status::too_short;
  const std::size_t ct_off = kHeader + iv_len_;
  const std::size_t ct_len = esp.size() - ct_off - icv_len_;
  const std::uint8_t* iv = esp.data() + kHeader;
  const auto ct = esp.subspan(ct_off, ct_len);
  const auto icv = esp.last(icv_len_);
  if ((mode_ == CipherMode::cbc && ct_len % cipher_->block_size() != 0) || ct_len % 4 != 0) {
    // RFC 4303 section 2.4: the ciphertext ends on a 4-byte boundary, and a
    // block cipher needs whole blocks.
    return Status::not_aligned;
  }

  if (aead_) {
    std::uint8_t nonce[16];
    std::size_t nonce_len = 0;
    std::uint8_t aad[12];
    std::size_t aad_len = 0;
    make_nonce(iv, seq, nonce, nonce_len);
    make_aad(esp.data(), seq, aad, aad_len);
    bool good;
    if (mode_ == CipherMode::gmac) {
      // RFC 4543 section 3.3: everything is authenticated, nothing encrypted.
      auto covered = esp.subspan(kHeader, iv_len_ + ct_len);
      good = aead_->open({nonce, nonce_len}, {aad, aad_len}, covered, {}, icv, out);
      if (good) std::memcpy(out, ct.data(), ct_len);
    } else {
      good = aead_->open({nonce, nonce_len}, {aad, aad_len}, {}, ct, icv, out);
    }
    if (!good) {
      if (mismatch != nullptr) {
        mismatch->len = static_cast<std::uint8_t>(icv_len_);
        std::memcpy(mismatch->received.data(), icv.data(), icv_len_);
        mismatch->expected_known = false;
        // GCM and ChaCha20 hand out the (unverified) plaintext; sealing it
        // again gives the tag the packet should have carried.
        if (mode_ == CipherMode::gmac) {
          auto covered = esp.subspan(kHeader, iv_len_ + ct_len);
          mismatch->expected_known =
              aead_->seal({nonce, nonce_len}, {aad, aad_len}, covered, {}, out, mismatch->expected.data());
        } else if (mode_ == CipherMode::gcm || mode_ == CipherMode::chacha20_poly1305) {
          mismatch->expected_known =
              aead_->seal({nonce, nonce_len}, {aad, aad_len}, {}, {out, ct_len}, out, mismatch->expected.data());
        }
      }
      return Status::tag_mismatch;
    }
    out_len = ct_len;
    return Status::ok;
  }

  if (mac_) {
    // RFC 4303 section 3.4.4: verify the ICV before decrypting. With ESN the
    // high 32 bits are appended to the covered data, not sent.
    std::uint8_t full[64];
    mac_->begin();
    mac_->update(esp.first(esp.size() - icv_len_));
    if (esn_) {
      std::uint8_t hi[4];
      store_be32(hi, static_cast<std::uint32_t>(seq >> 32));
      mac_->update({hi, 4});
    }
    mac_->finish(full);
    if (!crypto::equal_ct(full, icv.data(), icv_len_)) {
      if (mismatch != nullptr) {
        mismatch->len = static_cast<std::uint8_t>(icv_len_);
        mismatch->expected_known = true;
        std::memcpy(mismatch->expected.data(), full, icv_len_);
        std::memcpy(mismatch->received.data(), icv.data(), icv_len_);
      }
      return Status::icv_mismatch;
    }
  }

  switch (mode_) {
    case CipherMode::none: std::memcpy(out, ct.data(), ct_len); break;
    case CipherMode::cbc:
      if (!cipher_->decrypt(iv, ct, out)) return Status::failed;
      break;
    case CipherMode::ctr: {
      // RFC 3686 section 4: nonce || IV || block counter starting at 1.
      std::uint8_t block[16];
      std::memcpy(block, salt_.data(), 4);
      std::memcpy(block + 4, iv, 8);
      store_be32(block + 12, 1);
      if (!cipher_->decrypt(block, ct, out)) return Status::failed;
      break;
    }
    default: return Status::failed;
  }
  out_len = ct_len;
  return Status::ok;
}

bool EspTransform::encrypt(std::span<std::uint8_t> esp, std::uint64_t seq, const std::uint8_t* iv_in) noexcept {
  if (esp.size() < kHeader + iv_len_ + icv_len_ + 2) return false;
  const std::size_t ct_off = kHeader + iv_len_;
  const std::size_t ct_len = esp.size() - ct_off - icv_len_;
  std::uint8_t* iv = esp.data() + kHeader;
  std::uint8_t* ct = esp.data() + ct_off;
  std::uint8_t* icv = esp.data() + ct_off + ct_len;
  if (iv_len_ != 0) {
    if (iv_in != nullptr) {
      std::memcpy(iv, iv_in, iv_len_);
    } else if (mode_ == CipherMode::cbc) {
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
  if (aead_) {
    std::uint8_t nonce[16];
    std::size_t nonce_len = 0;
    std::uint8_t aad[12];
    std::size_t aad_len = 0;
    make_nonce(iv, seq, nonce, nonce_len);
    make_aad(esp.data(), seq, aad, aad_len);
    if (mode_ == CipherMode::gmac) {
      std::span<const std::uint8_t> covered(iv, iv_len_ + ct_len);
      return aead_->seal({nonce, nonce_len}, {aad, aad_len}, covered, {}, ct, icv);
    }
    return aead_->seal({nonce, nonce_len}, {aad, aad_len}, {}, {ct, ct_len}, ct, icv);
  }
  switch (mode_) {
    case CipherMode::none: break;
    case CipherMode::cbc:
      if (!cipher_->encrypt(iv, {ct, ct_len}, ct)) return false;
      break;
    case CipherMode::ctr: {
      std::uint8_t block[16];
      std::memcpy(block, salt_.data(), 4);
      std::memcpy(block + 4, iv, 8);
      store_be32(block + 12, 1);
      if (!cipher_->encrypt(block, {ct, ct_len}, ct)) return false;
      break;
    }
    default: return false;
  }
  if (mac_) {
    std::uint8_t full[64];
    mac_->begin();
    mac_->update(esp.first(esp.size() - icv_len_));
    if (esn_) {
      std::uint8_t hi[4];
      store_be32(hi, static_cast<std::uint32_t>(seq >> 32));
      mac_->update({hi, 4});
    }
    mac_->finish(full);
    std::memcpy(icv, full, icv_len_);
  } else if (icv_len_ != 0) {
    std::memset(icv, 0, icv_len_);  // unchecked-*: no key to compute an ICV with
  }
  return true;
}

}  // namespace ipsentry::ipsec
