// The libipsec-mb ESP backend (Intel's multi-buffer IPsec library, 1.3+).
//
// One job per packet on a manager owned by the calling thread. Facts the
// `auto` rules rest on, measured on a 2-core Zen 3 (AES-NI, SHA-NI, VAES, no
// AVX-512; arch avx2) with bench_ipsec's BM_EspOpen and BM_EspOpenAuto, one
// interleaved run, best of 5, decrypt of 736 ciphertext bytes, ns OpenSSL /
// libipsec-mb: GCM 595 / 291, GMAC 544 / 253, CCM 1237 / 1148, ChaCha20-
// Poly1305 1120 / 900, CBC alone 282 / 160, CBC+HMAC-SHA1 939 / 785 and
// CBC+HMAC-SHA256 1020 / 783 (SSE manager, SHA-NI), CBC+XCBC 1469 / 1091,
// but CBC+HMAC-MD5 1846 / 2964, CBC+HMAC-SHA384 2018 / 4308 and
// CBC+HMAC-SHA512 1994 / 3973.
//  - HMAC on the avx2 manager runs its multi-lane SHA code for one lane,
//    2.5-4x slower than OpenSSL one packet at a time; the SSE manager uses
//    SHA-NI (SHA-1 and SHA-256 only) and is not. HMAC suites therefore run
//    on an SSE manager when the CPU has SHA-NI, and `auto` leaves MD5,
//    SHA-384 and SHA-512 (and SHA-1/SHA-256 without SHA-NI) to OpenSSL.
//  - The library never wipes its key structures; IpsecMbEsp does.
#define NO_COMPAT_IMB_API_053 1
#include <intel-ipsec-mb.h>
#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "esp_backend.hpp"
#include "ipsentry/filters/secret.hpp"
#include "ipsentry/ipsec/crypto.hpp"

namespace ipsentry::ipsec::detail {

using dissect::store_be32;
using filters::Cipher;
using filters::CipherMode;
using filters::Integrity;
using Status = EspTransform::Status;

namespace {

// The ESN copy path: the largest ESP packet an IP datagram carries, plus the
// 4 bytes of seq-hi.
constexpr std::size_t kScratch = 65536 + 16;

const char* arch_name(IMB_ARCH a) noexcept {
  switch (a) {
    case IMB_ARCH_NOAESNI: return "noaesni";
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return "avx2";
    case IMB_ARCH_AVX512: return "avx512";
    default: return "none";
  }
}

IMB_MGR* new_manager(bool sse) noexcept {
  IMB_MGR* m = alloc_mb_mgr(0);
  if (m == nullptr) return nullptr;
  if (sse) {
    init_mb_mgr_sse(m);
  } else {
    IMB_ARCH arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(m, &arch);
  }
  if (imb_get_errno(m) != 0) {
    free_mb_mgr(m);
    return nullptr;
  }
  return m;
}

// A manager holds the lanes of jobs in flight and is not thread-safe: each
// thread gets its own, created on first use and freed when the thread ends.
class ThreadManagers {
 public:
  ThreadManagers() = default;
  ThreadManagers(const ThreadManagers&) = delete;
  ThreadManagers& operator=(const ThreadManagers&) = delete;
  ~ThreadManagers() {
    if (main_ != nullptr) free_mb_mgr(main_);
    if (sse_ != nullptr) free_mb_mgr(sse_);
    if (scratch_) filters::cleanse(scratch_.get(), kScratch);
  }
  IMB_MGR* get(bool sse) noexcept {
    IMB_MGR*& m = sse ? sse_ : main_;
    if (m == nullptr) m = new_manager(sse);
    return m;
  }
  // Holds plaintext-covering copies (ESN); cleansed at thread exit.
  std::uint8_t* scratch() noexcept {
    if (!scratch_) scratch_.reset(new (std::nothrow) std::uint8_t[kScratch]);
    return scratch_.get();
  }

 private:
  IMB_MGR* main_ = nullptr;
  IMB_MGR* sse_ = nullptr;
  std::unique_ptr<std::uint8_t[]> scratch_;
};

ThreadManagers& managers() noexcept {
  thread_local ThreadManagers t;
  return t;
}

// All key material of an SA, in the layouts the library reads.
struct alignas(64) ImbKeys {
  gcm_key_data gcm;
  alignas(16) std::uint32_t enc[60];
  alignas(16) std::uint32_t dec[60];
  alignas(16) std::uint32_t xcbc_k1[44];
  alignas(16) std::uint8_t xcbc_k2[16];
  alignas(16) std::uint8_t xcbc_k3[16];
  alignas(16) std::uint8_t ipad[64];
  alignas(16) std::uint8_t opad[64];
  alignas(16) std::uint8_t chacha[32];
};

struct HashSpec {
  IMB_HASH_ALG alg = IMB_AUTH_NULL;
  std::size_t tag_len = 0;  // what the library is asked for
  std::size_t block = 64;
  const EVP_MD* (*md)() = nullptr;
  void (*one_block)(IMB_MGR*, const void*, void*) = nullptr;
  bool sha_ni = false;      // SHA-NI speeds it up (SHA-1, SHA-256)
  bool fast_alone = false;  // one packet at a time, not slower than OpenSSL whatever the CPU
};

std::optional<HashSpec> hash_spec(Integrity i) noexcept {
  HashSpec h;
  switch (i) {
    case Integrity::none:
    case Integrity::unchecked_64:
    case Integrity::unchecked_96:
    case Integrity::unchecked_128:
    case Integrity::unchecked_192:
    case Integrity::unchecked_256: return h;
    case Integrity::hmac_md5_96:
      h = {IMB_AUTH_MD5, 12, 64, EVP_md5, [](IMB_MGR* m, const void* s, void* t) { IMB_MD5_ONE_BLOCK(m, s, t); }};
      return h;
    case Integrity::hmac_sha1_96:
    case Integrity::hmac_sha1_160:
      h = {IMB_AUTH_HMAC_SHA_1,
           i == Integrity::hmac_sha1_96 ? 12u : 20u,
           64,
           EVP_sha1,
           [](IMB_MGR* m, const void* s, void* t) { IMB_SHA1_ONE_BLOCK(m, s, t); },
           true};
      return h;
    case Integrity::hmac_sha256_128:
    case Integrity::hmac_sha256_96:
      // The library refuses a 12-byte SHA-256 tag: ask for 16, compare 12.
      h = {IMB_AUTH_HMAC_SHA_256,
           16,
           64,
           EVP_sha256,
           [](IMB_MGR* m, const void* s, void* t) { IMB_SHA256_ONE_BLOCK(m, s, t); },
           true};
      return h;
    case Integrity::hmac_sha384_192:
      h = {IMB_AUTH_HMAC_SHA_384, 24, 128, EVP_sha384,
           [](IMB_MGR* m, const void* s, void* t) { IMB_SHA384_ONE_BLOCK(m, s, t); }};
      return h;
    case Integrity::hmac_sha512_256:
      h = {IMB_AUTH_HMAC_SHA_512, 32, 128, EVP_sha512,
           [](IMB_MGR* m, const void* s, void* t) { IMB_SHA512_ONE_BLOCK(m, s, t); }};
      return h;
    case Integrity::aes_xcbc_96:
      h.alg = IMB_AUTH_AES_XCBC;
      h.tag_len = 12;
      h.fast_alone = true;
      return h;
    default: return std::nullopt;
  }
}

// Every job field the backend uses is set for every job: the ring hands out
// slots with whatever the last user left in them.
void reset_job(IMB_JOB* j) noexcept {
  j->enc_keys = nullptr;
  j->dec_keys = nullptr;
  j->key_len_in_bytes = 0;
  j->src = nullptr;
  j->dst = nullptr;
  j->cipher_start_src_offset_in_bytes = 0;
  j->msg_len_to_cipher_in_bytes = 0;
  j->hash_start_src_offset_in_bytes = 0;
  j->msg_len_to_hash_in_bytes = 0;
  j->iv = nullptr;
  j->iv_len_in_bytes = 0;
  j->auth_tag_output = nullptr;
  j->auth_tag_output_len_in_bytes = 0;
  std::memset(&j->u, 0, sizeof j->u);
  j->cipher_mode = IMB_CIPHER_NULL;
  j->cipher_direction = IMB_DIR_ENCRYPT;
  j->hash_alg = IMB_AUTH_NULL;
  j->chain_order = IMB_ORDER_CIPHER_HASH;
  j->user_data = nullptr;
  j->user_data2 = nullptr;
  j->cipher_func = nullptr;
  j->hash_func = nullptr;
}

// Submits one job (checked: the library validates its arguments) and
// drains the manager, so nothing stays in flight between calls.
bool finish_job(IMB_MGR* m) noexcept {
  IMB_JOB* done = IMB_SUBMIT_JOB(m);
  bool ok = true;
  bool seen = false;
  if (done != nullptr) {
    ok = done->status == IMB_STATUS_COMPLETED;
    seen = true;
  }
  while ((done = IMB_FLUSH_JOB(m)) != nullptr) {
    ok = ok && done->status == IMB_STATUS_COMPLETED;
    seen = true;
  }
  return ok && seen;
}

class IpsecMbEsp final : public EspCrypto {
 public:
  IpsecMbEsp(const EspLayout& layout, bool sse) : l_(layout), sse_(sse), keys_(new ImbKeys) {
    std::memset(keys_.get(), 0, sizeof(ImbKeys));
  }
  ~IpsecMbEsp() override { filters::cleanse(keys_.get(), sizeof(ImbKeys)); }

  // Keys everything; returns an error sentence when the library cannot.
  std::optional<std::string> init(const filters::SaConfig& sa, std::span<const std::uint8_t> key, const HashSpec& h) {
    IMB_MGR* m = managers().get(sse_);
    if (m == nullptr) return "libipsec-mb could not set up a manager";
    hash_ = h;
    compare_len_ = l_.icv_len;
    key_len_ = key.size();
    ImbKeys& k = *keys_;
    switch (l_.mode) {
      case CipherMode::gcm:
      case CipherMode::gmac:
        if (key.size() == 16) {
          IMB_AES128_GCM_PRE(m, key.data(), &k.gcm);
          gmac_alg_ = IMB_AUTH_AES_GMAC_128;
        } else if (key.size() == 24) {
          IMB_AES192_GCM_PRE(m, key.data(), &k.gcm);
          gmac_alg_ = IMB_AUTH_AES_GMAC_192;
        } else {
          IMB_AES256_GCM_PRE(m, key.data(), &k.gcm);
          gmac_alg_ = IMB_AUTH_AES_GMAC_256;
        }
        break;
      case CipherMode::ccm:
      case CipherMode::cbc:
      case CipherMode::ctr:
        if (key.size() == 16) {
          IMB_AES_KEYEXP_128(m, key.data(), k.enc, k.dec);
        } else if (key.size() == 24) {
          IMB_AES_KEYEXP_192(m, key.data(), k.enc, k.dec);
        } else {
          IMB_AES_KEYEXP_256(m, key.data(), k.enc, k.dec);
        }
        break;
      case CipherMode::chacha20_poly1305: std::memcpy(k.chacha, key.data(), 32); break;
      case CipherMode::none: break;
    }
    if (h.alg == IMB_AUTH_AES_XCBC) {
      auto ak = sa.auth_key.bytes();
      if (ak.size() != 16) return "aes-xcbc-96 needs a 16-byte key";
      IMB_AES_XCBC_KEYEXP(m, ak.data(), k.xcbc_k1, k.xcbc_k2, k.xcbc_k3);
    } else if (h.one_block != nullptr) {
      // RFC 2104: keys longer than the block are hashed first.
      auto ak = sa.auth_key.bytes();
      std::array<std::uint8_t, 128> kb{};
      std::array<std::uint8_t, 128> pad{};
      if (ak.size() > h.block) {
        unsigned n = 0;
        if (EVP_Digest(ak.data(), ak.size(), kb.data(), &n, h.md(), nullptr) != 1) {
          return "could not hash the integrity key";
        }
      } else if (!ak.empty()) {
        std::memcpy(kb.data(), ak.data(), ak.size());
      }
      for (std::size_t i = 0; i < h.block; ++i) pad[i] = kb[i] ^ 0x36;
      h.one_block(m, pad.data(), k.ipad);
      for (std::size_t i = 0; i < h.block; ++i) pad[i] = kb[i] ^ 0x5c;
      h.one_block(m, pad.data(), k.opad);
      filters::cleanse(kb.data(), kb.size());
      filters::cleanse(pad.data(), pad.size());
    }
    if (l_.esn && (h.alg != IMB_AUTH_NULL || l_.mode == CipherMode::gmac) && managers().scratch() == nullptr) {
      return "out of memory";
    }
    return self_test(m);
  }

  Status open(std::span<const std::uint8_t> esp, std::uint64_t seq, std::uint8_t* out,
              IcvMismatch* mismatch) noexcept override {
    IMB_MGR* m = managers().get(sse_);
    if (m == nullptr) return Status::failed;
    const std::size_t ct_off = kEspHeader + l_.iv_len;
    const std::size_t covered = esp.size() - l_.icv_len;
    const std::size_t ct_len = covered - ct_off;
    const std::uint8_t* icv = esp.data() + covered;
    alignas(16) std::uint8_t tag[64];
    bool ran = false;
    if (combined()) {
      ran = run_aead(m, IMB_DIR_DECRYPT, esp.data(), ct_len, seq, out, tag);
    } else if (l_.mode == CipherMode::gmac) {
      ran = gmac(m, esp.data(), covered, seq, tag);
      if (ran) std::memcpy(out, esp.data() + ct_off, ct_len);
    } else if (hash_.alg == IMB_AUTH_NULL) {
      ran = cipher_only(m, esp.data(), ct_off, ct_len, out, IMB_DIR_DECRYPT);
    } else if (!l_.esn) {
      alignas(16) std::uint8_t block[16];
      IMB_JOB* j = IMB_GET_NEXT_JOB(m);
      reset_job(j);
      cipher_fields(j, esp.data() + kEspHeader, block, IMB_DIR_DECRYPT);
      hash_fields(j, tag);
      j->chain_order = IMB_ORDER_HASH_CIPHER;
      j->src = esp.data();
      j->dst = out;
      j->cipher_start_src_offset_in_bytes = ct_off;
      j->msg_len_to_cipher_in_bytes = l_.mode == CipherMode::none ? 0 : ct_len;
      j->msg_len_to_hash_in_bytes = covered;
      ran = finish_job(m);
      if (ran && l_.mode == CipherMode::none) std::memcpy(out, esp.data() + ct_off, ct_len);
    } else {
      // ESN: the ICV covers seq-hi after the packet, so hash a copy that has
      // it (RFC 4303 section 3.3.2.1), then decrypt from the packet.
      ran = hash_with_seq_hi(m, esp.data(), covered, seq, tag);
      if (ran && !crypto::equal_ct(tag, icv, compare_len_)) return mismatch_of(tag, icv, mismatch);
      if (ran) ran = cipher_only(m, esp.data(), ct_off, ct_len, out, IMB_DIR_DECRYPT);
      if (!ran) return Status::failed;
      return Status::ok;
    }
    if (!ran) return Status::failed;
    if (checks() && !crypto::equal_ct(tag, icv, compare_len_)) return mismatch_of(tag, icv, mismatch);
    return Status::ok;
  }

  bool seal(std::span<std::uint8_t> esp, std::uint64_t seq) noexcept override {
    IMB_MGR* m = managers().get(sse_);
    if (m == nullptr) return false;
    const std::size_t ct_off = kEspHeader + l_.iv_len;
    const std::size_t covered = esp.size() - l_.icv_len;
    const std::size_t ct_len = covered - ct_off;
    std::uint8_t* icv = esp.data() + covered;
    alignas(16) std::uint8_t tag[64];
    if (combined()) {
      if (!run_aead(m, IMB_DIR_ENCRYPT, esp.data(), ct_len, seq, esp.data() + ct_off, tag)) return false;
    } else if (l_.mode == CipherMode::gmac) {
      if (!gmac(m, esp.data(), covered, seq, tag)) return false;
    } else {
      if (l_.mode != CipherMode::none &&
          !cipher_only(m, esp.data(), ct_off, ct_len, esp.data() + ct_off, IMB_DIR_ENCRYPT)) {
        return false;
      }
      if (hash_.alg == IMB_AUTH_NULL) {
        // unchecked-*: no key to compute an ICV with
        if (l_.icv_len != 0) std::memset(icv, 0, l_.icv_len);
        return true;
      }
      if (l_.esn) {
        if (!hash_with_seq_hi(m, esp.data(), covered, seq, tag)) return false;
      } else {
        IMB_JOB* j = IMB_GET_NEXT_JOB(m);
        reset_job(j);
        hash_fields(j, tag);
        j->src = esp.data();
        j->dst = esp.data();
        j->msg_len_to_hash_in_bytes = covered;
        if (!finish_job(m)) return false;
      }
    }
    std::memcpy(icv, tag, l_.icv_len);
    filters::cleanse(tag, sizeof tag);
    return true;
  }

 private:
  [[nodiscard]] bool combined() const noexcept {
    return l_.mode == CipherMode::gcm || l_.mode == CipherMode::ccm || l_.mode == CipherMode::chacha20_poly1305;
  }
  [[nodiscard]] bool checks() const noexcept {
    return l_.mode == CipherMode::gmac || combined() || hash_.alg != IMB_AUTH_NULL;
  }
  [[nodiscard]] std::uint64_t imb_key_len() const noexcept { return key_len_; }

  Status mismatch_of(const std::uint8_t* tag, const std::uint8_t* icv, IcvMismatch* mismatch) const noexcept {
    if (mismatch != nullptr) {
      mismatch->len = static_cast<std::uint8_t>(l_.icv_len);
      mismatch->expected_known = true;
      std::memcpy(mismatch->expected.data(), tag, l_.icv_len);
      std::memcpy(mismatch->received.data(), icv, l_.icv_len);
    }
    return l_.mode == CipherMode::none || l_.mode == CipherMode::cbc || l_.mode == CipherMode::ctr
               ? Status::icv_mismatch
               : Status::tag_mismatch;
  }

  // One GCM, CCM or ChaCha20-Poly1305 job over the packet's ciphertext, to
  // dst; the tag the library computes goes to tag.
  bool run_aead(IMB_MGR* m, IMB_CIPHER_DIRECTION dir, const std::uint8_t* esp, std::size_t ct_len, std::uint64_t seq,
                std::uint8_t* dst, std::uint8_t* tag) const noexcept {
    const std::size_t ct_off = kEspHeader + l_.iv_len;
    alignas(16) std::uint8_t nonce[16];
    alignas(16) std::uint8_t aad[16];
    make_nonce(l_, esp + kEspHeader, seq, nonce);
    const std::size_t aad_len = make_aad(l_, esp, seq, aad);
    IMB_JOB* j = IMB_GET_NEXT_JOB(m);
    reset_job(j);
    aead_job(j, dir, nonce, aad, aad_len, tag);
    j->src = esp;
    j->dst = dst;
    j->cipher_start_src_offset_in_bytes = ct_off;
    j->msg_len_to_cipher_in_bytes = ct_len;
    j->hash_start_src_offset_in_bytes = ct_off;
    j->msg_len_to_hash_in_bytes = ct_len;
    return finish_job(m);
  }

  void aead_job(IMB_JOB* j, IMB_CIPHER_DIRECTION dir, const std::uint8_t* nonce, const std::uint8_t* aad,
                std::size_t aad_len, std::uint8_t* tag) const noexcept {
    const ImbKeys& k = *keys_;
    j->cipher_direction = dir;
    j->auth_tag_output = tag;
    j->auth_tag_output_len_in_bytes = l_.icv_len;
    j->iv = nonce;
    switch (l_.mode) {
      case CipherMode::gcm:
        j->cipher_mode = IMB_CIPHER_GCM;
        j->hash_alg = IMB_AUTH_AES_GMAC;
        j->enc_keys = &k.gcm;
        j->dec_keys = &k.gcm;
        j->key_len_in_bytes = imb_key_len();
        j->iv_len_in_bytes = 12;
        j->u.GCM.aad = aad;
        j->u.GCM.aad_len_in_bytes = aad_len;
        j->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
        break;
      case CipherMode::ccm:
        j->cipher_mode = IMB_CIPHER_CCM;
        j->hash_alg = IMB_AUTH_AES_CCM;
        j->enc_keys = k.enc;
        j->dec_keys = k.enc;
        j->key_len_in_bytes = imb_key_len();
        j->iv_len_in_bytes = 11;
        j->u.CCM.aad = aad;
        j->u.CCM.aad_len_in_bytes = aad_len;
        // CCM authenticates the plaintext: MAC before encrypting, after decrypting.
        j->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_HASH_CIPHER : IMB_ORDER_CIPHER_HASH;
        break;
      default:
        j->cipher_mode = IMB_CIPHER_CHACHA20_POLY1305;
        j->hash_alg = IMB_AUTH_CHACHA20_POLY1305;
        j->enc_keys = k.chacha;
        j->dec_keys = k.chacha;
        j->key_len_in_bytes = 32;
        j->iv_len_in_bytes = 12;
        j->u.CHACHA20_POLY1305.aad = aad;
        j->u.CHACHA20_POLY1305.aad_len_in_bytes = aad_len;
        j->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
        break;
    }
  }

  // CBC takes the packet's IV; CTR the RFC 3686 counter block, built in `block`.
  void cipher_fields(IMB_JOB* j, const std::uint8_t* iv, std::uint8_t* block, IMB_CIPHER_DIRECTION dir) const noexcept {
    const ImbKeys& k = *keys_;
    j->cipher_direction = dir;
    switch (l_.mode) {
      case CipherMode::cbc:
        j->cipher_mode = IMB_CIPHER_CBC;
        j->enc_keys = k.enc;
        j->dec_keys = k.dec;
        j->key_len_in_bytes = imb_key_len();
        j->iv = iv;
        j->iv_len_in_bytes = 16;
        break;
      case CipherMode::ctr:
        make_ctr_block(l_, iv, block);
        j->cipher_mode = IMB_CIPHER_CNTR;
        j->enc_keys = k.enc;
        j->dec_keys = k.enc;
        j->key_len_in_bytes = imb_key_len();
        j->iv = block;
        j->iv_len_in_bytes = 16;
        break;
      default: j->cipher_mode = IMB_CIPHER_NULL; break;
    }
  }

  void hash_fields(IMB_JOB* j, std::uint8_t* tag) const noexcept {
    const ImbKeys& k = *keys_;
    j->hash_alg = hash_.alg;
    j->auth_tag_output = tag;
    j->auth_tag_output_len_in_bytes = hash_.tag_len;
    j->hash_start_src_offset_in_bytes = 0;
    if (hash_.alg == IMB_AUTH_AES_XCBC) {
      j->u.XCBC._k1_expanded = k.xcbc_k1;
      j->u.XCBC._k2 = k.xcbc_k2;
      j->u.XCBC._k3 = k.xcbc_k3;
    } else {
      j->u.HMAC._hashed_auth_key_xor_ipad = k.ipad;
      j->u.HMAC._hashed_auth_key_xor_opad = k.opad;
    }
  }

  bool cipher_only(IMB_MGR* m, const std::uint8_t* esp, std::size_t ct_off, std::size_t ct_len, std::uint8_t* dst,
                   IMB_CIPHER_DIRECTION dir) const noexcept {
    if (l_.mode == CipherMode::none) {
      if (dst != esp + ct_off) std::memcpy(dst, esp + ct_off, ct_len);
      return true;
    }
    alignas(16) std::uint8_t block[16];
    IMB_JOB* j = IMB_GET_NEXT_JOB(m);
    reset_job(j);
    cipher_fields(j, esp + kEspHeader, block, dir);
    j->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
    j->src = esp;
    j->dst = dst;
    j->cipher_start_src_offset_in_bytes = ct_off;
    j->msg_len_to_cipher_in_bytes = ct_len;
    return finish_job(m);
  }

  // The HMAC/XCBC ICV with ESN: over the packet and then seq-hi, hashed
  // from a per-thread copy.
  bool hash_with_seq_hi(IMB_MGR* m, const std::uint8_t* esp, std::size_t covered, std::uint64_t seq,
                        std::uint8_t* tag) const noexcept {
    std::uint8_t* s = managers().scratch();
    if (s == nullptr || covered + 4 > kScratch) return false;
    std::memcpy(s, esp, covered);
    store_be32(s + covered, static_cast<std::uint32_t>(seq >> 32));
    IMB_JOB* j = IMB_GET_NEXT_JOB(m);
    reset_job(j);
    hash_fields(j, tag);
    j->src = s;
    j->dst = s;
    j->msg_len_to_hash_in_bytes = covered + 4;
    return finish_job(m);
  }

  // RFC 4543: the tag covers SPI, the sequence number (64 bits with ESN),
  // the IV and the payload, all as AAD. Without ESN that is the packet as
  // it is; with ESN it is hashed from a copy with seq-hi in place.
  bool gmac(IMB_MGR* m, const std::uint8_t* esp, std::size_t covered, std::uint64_t seq,
            std::uint8_t* tag) const noexcept {
    alignas(16) std::uint8_t nonce[16];
    make_nonce(l_, esp + kEspHeader, seq, nonce);
    const std::uint8_t* src = esp;
    std::size_t len = covered;
    if (l_.esn) {
      std::uint8_t* s = managers().scratch();
      if (s == nullptr || covered + 4 > kScratch) return false;
      // The whole 64-bit number from the caller, as the AAD of the other
      // modes (make_aad), not the packet's low half.
      std::memcpy(s, esp, 4);
      dissect::store_be64(s + 4, seq);
      std::memcpy(s + 12, esp + 8, covered - 8);
      src = s;
      len = covered + 4;
    }
    IMB_JOB* j = IMB_GET_NEXT_JOB(m);
    reset_job(j);
    j->hash_alg = gmac_alg_;
    j->chain_order = IMB_ORDER_HASH_CIPHER;
    j->cipher_direction = IMB_DIR_DECRYPT;
    j->src = src;
    j->dst = const_cast<std::uint8_t*>(src);  // NOLINT(cppcoreguidelines-pro-type-const-cast): no cipher, never written
    j->msg_len_to_hash_in_bytes = len;
    j->u.GMAC._key = &keys_->gcm;
    j->u.GMAC._iv = nonce;
    j->u.GMAC.iv_len_in_bytes = 12;
    j->auth_tag_output = tag;
    j->auth_tag_output_len_in_bytes = l_.icv_len;
    return finish_job(m);
  }

  // The library validates job arguments when it runs them: one round trip
  // at set-up finds any it refuses, so that the SA goes to OpenSSL instead.
  std::optional<std::string> self_test(IMB_MGR* m) noexcept {
    std::array<std::uint8_t, 8 + 16 + 32 + 32> pkt{};
    std::array<std::uint8_t, pkt.size()> out{};
    const std::size_t len = kEspHeader + l_.iv_len + 32 + l_.icv_len;
    for (std::size_t i = 0; i < len; ++i) pkt[i] = static_cast<std::uint8_t>(i);
    std::span<std::uint8_t> p(pkt.data(), len);
    const std::uint64_t seq = 0x100000001ull;
    bool ok = seal(p, seq);
    if (ok) ok = open(p, seq, out.data(), nullptr) == Status::ok;
    if (ok) return std::nullopt;
    const int e = imb_get_errno(m);
    return std::string("libipsec-mb refused the SA") + (e != 0 ? std::string(": ") + imb_get_strerror(e) : "");
  }

  const EspLayout& l_;
  bool sse_;
  std::unique_ptr<ImbKeys> keys_;
  HashSpec hash_;
  IMB_HASH_ALG gmac_alg_ = IMB_AUTH_AES_GMAC_128;
  std::size_t compare_len_ = 0;
  std::size_t key_len_ = 0;
};

}  // namespace

void probe_ipsec_mb(CryptoAvailability& a) noexcept {
  a.ipsec_mb_version = imb_get_version_str();
  IMB_MGR* m = alloc_mb_mgr(0);
  if (m == nullptr) {
    a.problem = "alloc_mb_mgr failed";
    return;
  }
  IMB_ARCH arch = IMB_ARCH_NONE;
  init_mb_mgr_auto(m, &arch);
  if (const int e = imb_get_errno(m); e != 0) {
    a.problem = imb_get_strerror(e);
  } else {
    a.ipsec_mb_usable = true;
    a.ipsec_mb_arch = arch_name(arch);
    a.aesni = (m->features & IMB_FEATURE_AESNI) != 0;
    a.shani = (m->features & IMB_FEATURE_SHANI) != 0;
    a.vaes = (m->features & IMB_FEATURE_VAES) != 0;
    a.avx512 = (m->features & IMB_FEATURE_AVX512F) != 0;
  }
  free_mb_mgr(m);
}

std::unique_ptr<EspCrypto> make_ipsecmb_esp(const filters::SaConfig& sa, const EspLayout& layout,
                                            std::span<const std::uint8_t> cipher_key, CryptoChoice choice,
                                            std::string& reason) {
  const CryptoAvailability& av = crypto_availability();
  const filters::CipherInfo& ci = filters::cipher_info(sa.cipher);
  const filters::IntegrityInfo& ii = filters::integrity_info(sa.integrity);
  const bool is_auto = choice == CryptoChoice::auto_;
  if (!av.ipsec_mb_usable) {
    reason = "libipsec-mb is not usable: " + av.problem;
    return nullptr;
  }
  if (!av.aesni) {
    reason = "no AES-NI";
    return nullptr;
  }
  if (sa.cipher == Cipher::des_cbc || sa.cipher == Cipher::tdes_cbc) {
    reason = std::string(ci.name) + " is left to OpenSSL (deprecated)";
    return nullptr;
  }
  if (layout.mode == CipherMode::ccm && cipher_key.size() == 24) {
    reason = std::string(ci.name) + " with a 192-bit key is not in libipsec-mb";
    return nullptr;
  }
  auto h = ci.aead() ? std::optional<HashSpec>(HashSpec{}) : hash_spec(sa.integrity);
  if (!h) {
    reason = std::string(ii.name) + " is not in libipsec-mb";
    return nullptr;
  }
  if (layout.mode == CipherMode::none && h->alg == IMB_AUTH_NULL) {
    reason = "null encryption without integrity: nothing to compute";
    return nullptr;
  }
  const bool hmac = !ci.aead() && h->alg != IMB_AUTH_NULL;
  // One packet at a time, the avx2 manager's multi-lane HMAC loses to
  // OpenSSL; the SSE manager's SHA-NI code does not, for SHA-1 and SHA-256.
  const bool sse = hmac && av.shani && h->alg != IMB_AUTH_AES_XCBC;
  if (is_auto && hmac && !h->fast_alone && !(h->sha_ni && av.shani)) {
    reason = std::string("auto: ") + std::string(ii.name) +
             (h->sha_ni ? " without SHA-NI is faster on OpenSSL one packet at a time"
                        : " is faster on OpenSSL one packet at a time");
    return nullptr;
  }
  try {
    auto esp = std::make_unique<IpsecMbEsp>(layout, sse);
    if (auto err = esp->init(sa, cipher_key, *h)) {
      reason = *err;
      return nullptr;
    }
    reason.clear();
    return esp;
  } catch (const std::bad_alloc&) {
    reason = "out of memory";
    return nullptr;
  }
}

}  // namespace ipsentry::ipsec::detail
