// The OpenSSL ESP backend: every algorithm ipsentry implements.
#include <cstring>

#include "esp_backend.hpp"
#include "ipsentry/ipsec/crypto.hpp"

namespace ipsentry::ipsec::detail {

using dissect::store_be32;
using filters::CipherMode;
using Status = EspTransform::Status;

namespace {

class OpenSslEsp final : public EspCrypto {
 public:
  OpenSslEsp(const filters::SaConfig& sa, const EspLayout& layout, std::span<const std::uint8_t> key) : l_(layout) {
    const filters::CipherInfo& ci = filters::cipher_info(sa.cipher);
    const filters::IntegrityInfo& ii = filters::integrity_info(sa.integrity);
    switch (l_.mode) {
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
    if (!aead_ && sa.integrity != filters::Integrity::none && ii.checks) {
      mac_ = crypto::make_mac(sa.integrity, sa.auth_key.bytes());
    }
  }

  Status open(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* out,
              IcvMismatch* mismatch) noexcept override {
    const std::size_t ct_off = kEspHeader + l_.iv_len;
    const std::size_t ct_len = esp.size() - ct_off - l_.icv_len;
    const std::uint8_t* iv = esp.data() + kEspHeader;
    const auto ct = esp.subspan(ct_off, ct_len);
    const auto icv = esp.last(l_.icv_len);

    if (aead_) {
      std::uint8_t nonce[16];
      std::uint8_t aad[12];
      const std::size_t nonce_len = make_nonce(l_, iv, seq, nonce);
      const std::size_t aad_len = make_aad(l_, esp.data(), seq, aad);
      bool good;
      if (l_.mode == CipherMode::gmac) {
        // RFC 4543 section 3.3: everything is authenticated, nothing encrypted.
        auto covered = esp.subspan(kEspHeader, l_.iv_len + ct_len);
        good = aead_->open({nonce, nonce_len}, {aad, aad_len}, covered, {}, icv, out);
        if (good) std::memcpy(out, ct.data(), ct_len);
      } else {
        good = aead_->open({nonce, nonce_len}, {aad, aad_len}, {}, ct, icv, out);
      }
      if (!good) {
        if (mismatch != nullptr) {
          mismatch->len = static_cast<std::uint8_t>(l_.icv_len);
          std::memcpy(mismatch->received.data(), icv.data(), l_.icv_len);
          mismatch->expected_known = false;
          // GCM and ChaCha20 hand out the (unverified) plaintext; sealing it
          // again gives the tag the packet should have carried.
          if (l_.mode == CipherMode::gmac) {
            auto covered = esp.subspan(kEspHeader, l_.iv_len + ct_len);
            mismatch->expected_known =
                aead_->seal({nonce, nonce_len}, {aad, aad_len}, covered, {}, out, mismatch->expected.data());
          } else if (l_.mode == CipherMode::gcm || l_.mode == CipherMode::chacha20_poly1305) {
            mismatch->expected_known =
                aead_->seal({nonce, nonce_len}, {aad, aad_len}, {}, {out, ct_len}, out, mismatch->expected.data());
          }
        }
        return Status::tag_mismatch;
      }
      return Status::ok;
    }

    if (mac_) {
      // RFC 4303 section 3.4.4: verify the ICV before decrypting. With ESN the
      // high 32 bits are appended to the covered data, not sent.
      std::uint8_t full[64];
      compute_icv(esp, seq, full);
      if (!crypto::equal_ct(full, icv.data(), l_.icv_len)) {
        if (mismatch != nullptr) {
          mismatch->len = static_cast<std::uint8_t>(l_.icv_len);
          mismatch->expected_known = true;
          std::memcpy(mismatch->expected.data(), full, l_.icv_len);
          std::memcpy(mismatch->received.data(), icv.data(), l_.icv_len);
        }
        return Status::icv_mismatch;
      }
    }

    switch (l_.mode) {
      case CipherMode::none: std::memcpy(out, ct.data(), ct_len); break;
      case CipherMode::cbc:
        if (!cipher_->decrypt(iv, ct, out)) return Status::failed;
        break;
      case CipherMode::ctr: {
        std::uint8_t block[16];
        make_ctr_block(l_, iv, block);
        if (!cipher_->decrypt(block, ct, out)) return Status::failed;
        break;
      }
      default: return Status::failed;
    }
    return Status::ok;
  }

  bool seal(std::span<std::uint8_t> esp, std::uint64_t seq) noexcept override {
    const std::size_t ct_off = kEspHeader + l_.iv_len;
    const std::size_t ct_len = esp.size() - ct_off - l_.icv_len;
    std::uint8_t* iv = esp.data() + kEspHeader;
    std::uint8_t* ct = esp.data() + ct_off;
    std::uint8_t* icv = esp.data() + ct_off + ct_len;
    if (aead_) {
      std::uint8_t nonce[16];
      std::uint8_t aad[12];
      const std::size_t nonce_len = make_nonce(l_, iv, seq, nonce);
      const std::size_t aad_len = make_aad(l_, esp.data(), seq, aad);
      if (l_.mode == CipherMode::gmac) {
        std::span<const std::uint8_t> covered(iv, l_.iv_len + ct_len);
        return aead_->seal({nonce, nonce_len}, {aad, aad_len}, covered, {}, ct, icv);
      }
      return aead_->seal({nonce, nonce_len}, {aad, aad_len}, {}, {ct, ct_len}, ct, icv);
    }
    switch (l_.mode) {
      case CipherMode::none: break;
      case CipherMode::cbc:
        if (!cipher_->encrypt(iv, {ct, ct_len}, ct)) return false;
        break;
      case CipherMode::ctr: {
        std::uint8_t block[16];
        make_ctr_block(l_, iv, block);
        if (!cipher_->encrypt(block, {ct, ct_len}, ct)) return false;
        break;
      }
      default: return false;
    }
    if (mac_) {
      std::uint8_t full[64];
      compute_icv(esp, seq, full);
      std::memcpy(icv, full, l_.icv_len);
    } else if (l_.icv_len != 0) {
      std::memset(icv, 0, l_.icv_len);  // unchecked-*: no key to compute an ICV with
    }
    return true;
  }

 private:
  // The full MAC over SPI through the payload's end; with ESN the high 32
  // bits of the sequence number follow, covered but not sent.
  void compute_icv(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* full) noexcept {
    mac_->begin();
    mac_->update(esp.first(esp.size() - l_.icv_len));
    if (l_.esn) {
      std::uint8_t hi[4];
      store_be32(hi, static_cast<std::uint32_t>(seq >> 32));
      mac_->update({hi, 4});
    }
    mac_->finish(full);
  }

  const EspLayout& l_;
  std::unique_ptr<crypto::Cipher> cipher_;
  std::unique_ptr<crypto::Aead> aead_;
  std::unique_ptr<crypto::Mac> mac_;
};

}  // namespace

std::unique_ptr<EspCrypto> make_openssl_esp(const filters::SaConfig& sa, const EspLayout& layout,
                                            std::span<const std::uint8_t> cipher_key) {
  return std::make_unique<OpenSslEsp>(sa, layout, cipher_key);
}

}  // namespace ipsentry::ipsec::detail
