// OpenSSL-backed primitives.
//
// HMAC is computed with OpenSSL's digest compression functions and ipad/opad
// states precomputed when the SA is installed. The EVP_MAC and EVP_MD paths
// of OpenSSL 3.0 duplicate a provider context (two mallocs) on every
// re-initialisation, which the per-packet path must not do; precomputing the
// pad states also saves two compression-function calls per packet. These
// functions are deprecated in OpenSSL 3 but present and maintained in 3.x;
// ciphers and AEADs use EVP.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "ipsentry/ipsec/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "ipsentry/filters/secret.hpp"

namespace ipsentry::ipsec::crypto {

namespace {

// Providers and fetched algorithms live as long as the process; they are
// released at exit so that leak checkers only report real leaks.
struct OpenSslState {
  std::mutex mu;
  bool loaded = false;
  bool legacy = false;
  OSSL_PROVIDER* default_provider = nullptr;
  OSSL_PROVIDER* legacy_provider = nullptr;
  struct Entry {
    const char* name;
    EVP_CIPHER* cipher;
  };
  std::vector<Entry> ciphers;
  ~OpenSslState() {
    for (auto& e : ciphers) EVP_CIPHER_free(e.cipher);
    if (legacy_provider != nullptr) OSSL_PROVIDER_unload(legacy_provider);
    if (default_provider != nullptr) OSSL_PROVIDER_unload(default_provider);
  }
};

OpenSslState* g_state = nullptr;

void release_state() {
  delete g_state;
  g_state = nullptr;
}

OpenSslState& state() {
  // Released by OpenSSL's own cleanup (OPENSSL_atexit), which runs before
  // OpenSSL tears down the provider store.
  static OpenSslState* s = [] {
    g_state = new OpenSslState();
    OPENSSL_atexit(release_state);
    return g_state;
  }();
  return *s;
}

std::string openssl_error(const char* what) {
  unsigned long e = ERR_get_error();
  char buf[256];
  if (e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return std::string(what) + ": " + buf;
  }
  return what;
}

// EVP algorithm objects are fetched once per process: fetching is the
// expensive part of OpenSSL 3 algorithm selection.
const EVP_CIPHER* fetch_cipher(const char* name) {
  init_providers();
  OpenSslState& st = state();
  std::lock_guard lock(st.mu);
  for (auto& e : st.ciphers) {
    if (std::strcmp(e.name, name) == 0) return e.cipher;
  }
  EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, name, nullptr);
  if (c == nullptr) throw CryptoError(openssl_error((std::string("OpenSSL has no cipher ") + name).c_str()));
  st.ciphers.push_back({name, c});
  return c;
}

// ------------------------------------------------------------------ HMAC

struct Md5 {
  using Ctx = MD5_CTX;
  static constexpr std::size_t kBlock = 64;
  static constexpr std::size_t kOut = 16;
  static void init(Ctx* c) { MD5_Init(c); }
  static void update(Ctx* c, const void* d, std::size_t n) { MD5_Update(c, d, n); }
  static void final(std::uint8_t* o, Ctx* c) { MD5_Final(o, c); }
};
struct Sha1 {
  using Ctx = SHA_CTX;
  static constexpr std::size_t kBlock = 64;
  static constexpr std::size_t kOut = 20;
  static void init(Ctx* c) { SHA1_Init(c); }
  static void update(Ctx* c, const void* d, std::size_t n) { SHA1_Update(c, d, n); }
  static void final(std::uint8_t* o, Ctx* c) { SHA1_Final(o, c); }
};
struct Sha256 {
  using Ctx = SHA256_CTX;
  static constexpr std::size_t kBlock = 64;
  static constexpr std::size_t kOut = 32;
  static void init(Ctx* c) { SHA256_Init(c); }
  static void update(Ctx* c, const void* d, std::size_t n) { SHA256_Update(c, d, n); }
  static void final(std::uint8_t* o, Ctx* c) { SHA256_Final(o, c); }
};
struct Sha384 {
  using Ctx = SHA512_CTX;
  static constexpr std::size_t kBlock = 128;
  static constexpr std::size_t kOut = 48;
  static void init(Ctx* c) { SHA384_Init(c); }
  static void update(Ctx* c, const void* d, std::size_t n) { SHA384_Update(c, d, n); }
  static void final(std::uint8_t* o, Ctx* c) { SHA384_Final(o, c); }
};
struct Sha512 {
  using Ctx = SHA512_CTX;
  static constexpr std::size_t kBlock = 128;
  static constexpr std::size_t kOut = 64;
  static void init(Ctx* c) { SHA512_Init(c); }
  static void update(Ctx* c, const void* d, std::size_t n) { SHA512_Update(c, d, n); }
  static void final(std::uint8_t* o, Ctx* c) { SHA512_Final(o, c); }
};

template <class H>
class Hmac final : public Mac {
 public:
  explicit Hmac(Bytes key) {
    std::array<std::uint8_t, H::kBlock> k{};
    if (key.size() > H::kBlock) {
      typename H::Ctx c;
      H::init(&c);
      H::update(&c, key.data(), key.size());
      H::final(k.data(), &c);
      filters::cleanse(&c, sizeof c);
    } else if (!key.empty()) {
      std::memcpy(k.data(), key.data(), key.size());
    }
    std::array<std::uint8_t, H::kBlock> pad;
    for (std::size_t i = 0; i < H::kBlock; ++i) pad[i] = k[i] ^ 0x36;
    H::init(&inner_);
    H::update(&inner_, pad.data(), pad.size());
    for (std::size_t i = 0; i < H::kBlock; ++i) pad[i] = k[i] ^ 0x5c;
    H::init(&outer_);
    H::update(&outer_, pad.data(), pad.size());
    filters::cleanse(k.data(), k.size());
    filters::cleanse(pad.data(), pad.size());
    work_ = inner_;
  }
  ~Hmac() override {
    filters::cleanse(&inner_, sizeof inner_);
    filters::cleanse(&outer_, sizeof outer_);
    filters::cleanse(&work_, sizeof work_);
  }
  void begin() noexcept override { work_ = inner_; }
  void update(Bytes data) noexcept override {
    if (!data.empty()) H::update(&work_, data.data(), data.size());
  }
  void finish(std::uint8_t* out) noexcept override {
    std::uint8_t inner_digest[H::kOut];
    H::final(inner_digest, &work_);
    work_ = outer_;
    H::update(&work_, inner_digest, sizeof inner_digest);
    H::final(out, &work_);
    filters::cleanse(inner_digest, sizeof inner_digest);
  }
  [[nodiscard]] std::size_t output_len() const noexcept override { return H::kOut; }

 private:
  typename H::Ctx inner_;
  typename H::Ctx outer_;
  typename H::Ctx work_;
};

// ------------------------------------------------------------------ XCBC

// AES-XCBC-MAC (RFC 3566 section 4). The final block is held back in buf_
// until finish(), because it is processed with K2 or K3.
class XcbcMac final : public Mac {
 public:
  explicit XcbcMac(Bytes key) {
    if (key.size() != 16) throw CryptoError("AES-XCBC-MAC needs a 16-byte key");
    const EVP_CIPHER* ecb = fetch_cipher("AES-128-ECB");
    EVP_CIPHER_CTX* kctx = EVP_CIPHER_CTX_new();
    if (kctx == nullptr || EVP_EncryptInit_ex2(kctx, ecb, key.data(), nullptr, nullptr) != 1) {
      EVP_CIPHER_CTX_free(kctx);
      throw CryptoError(openssl_error("AES-XCBC key setup"));
    }
    EVP_CIPHER_CTX_set_padding(kctx, 0);
    std::uint8_t k1[16];
    std::uint8_t in[16];
    int l = 0;
    std::memset(in, 0x01, 16);
    EVP_EncryptUpdate(kctx, k1, &l, in, 16);
    std::memset(in, 0x02, 16);
    EVP_EncryptUpdate(kctx, k2_, &l, in, 16);
    std::memset(in, 0x03, 16);
    EVP_EncryptUpdate(kctx, k3_, &l, in, 16);
    EVP_CIPHER_CTX_free(kctx);
    ctx_ = EVP_CIPHER_CTX_new();
    if (ctx_ == nullptr || EVP_EncryptInit_ex2(ctx_, fetch_cipher("AES-128-CBC"), k1, e_, nullptr) != 1) {
      filters::cleanse(k1, sizeof k1);
      throw CryptoError(openssl_error("AES-XCBC key setup"));
    }
    EVP_CIPHER_CTX_set_padding(ctx_, 0);
    filters::cleanse(k1, sizeof k1);
    scratch_.resize(4096);
  }
  ~XcbcMac() override {
    EVP_CIPHER_CTX_free(ctx_);
    filters::cleanse(k2_, sizeof k2_);
    filters::cleanse(k3_, sizeof k3_);
    filters::cleanse(e_, sizeof e_);
    filters::cleanse(buf_, sizeof buf_);
  }
  void begin() noexcept override {
    std::memset(e_, 0, sizeof e_);
    buf_len_ = 0;
  }
  void update(Bytes data) noexcept override {
    while (!data.empty()) {
      if (buf_len_ < 16) {
        std::size_t n = std::min<std::size_t>(16 - buf_len_, data.size());
        std::memcpy(buf_ + buf_len_, data.data(), n);
        buf_len_ += n;
        data = data.subspan(n);
        continue;
      }
      // buf_ is full and more data follows: buf_ is not the last block.
      chain(Bytes(buf_, 16));
      buf_len_ = 0;
      // Bulk: all complete blocks except a final one that must be held back.
      std::size_t bulk = data.size() > 16 ? ((data.size() - 1) / 16) * 16 : 0;
      while (bulk > 0) {
        std::size_t n = std::min(bulk, scratch_.size());
        chain(data.first(n));
        data = data.subspan(n);
        bulk -= n;
      }
    }
  }
  void finish(std::uint8_t* out) noexcept override {
    std::uint8_t last[16];
    if (buf_len_ == 16) {
      for (int i = 0; i < 16; ++i) last[i] = static_cast<std::uint8_t>(buf_[i] ^ k2_[i]);
    } else {
      std::memset(last, 0, 16);
      std::memcpy(last, buf_, buf_len_);
      last[buf_len_] = 0x80;
      for (int i = 0; i < 16; ++i) last[i] = static_cast<std::uint8_t>(last[i] ^ k3_[i]);
    }
    chain(Bytes(last, 16));
    std::memcpy(out, e_, 16);
  }
  [[nodiscard]] std::size_t output_len() const noexcept override { return 16; }

 private:
  // E := last block of AES-CBC(K1, IV=E, data).
  void chain(Bytes blocks) noexcept {
    int l = 0;
    EVP_EncryptInit_ex2(ctx_, nullptr, nullptr, e_, nullptr);
    EVP_EncryptUpdate(ctx_, scratch_.data(), &l, blocks.data(), static_cast<int>(blocks.size()));
    std::memcpy(e_, scratch_.data() + blocks.size() - 16, 16);
  }

  EVP_CIPHER_CTX* ctx_ = nullptr;
  std::uint8_t k2_[16];
  std::uint8_t k3_[16];
  std::uint8_t e_[16]{};
  std::uint8_t buf_[16]{};
  std::size_t buf_len_ = 0;
  std::vector<std::uint8_t> scratch_;
};

}  // namespace

bool init_providers() noexcept {
  OpenSslState& st = state();
  std::lock_guard lock(st.mu);
  if (!st.loaded) {
    // Loading any provider explicitly switches off the implicit default one,
    // so load both.
    st.default_provider = OSSL_PROVIDER_load(nullptr, "default");
    st.legacy_provider = OSSL_PROVIDER_load(nullptr, "legacy");
    st.legacy = st.legacy_provider != nullptr;
    st.loaded = true;
    ERR_clear_error();
  }
  return st.legacy;
}

bool legacy_available() noexcept { return init_providers(); }

std::unique_ptr<Mac> make_mac(filters::Integrity alg, Bytes key) {
  using filters::Integrity;
  switch (alg) {
    case Integrity::hmac_md5_96: return std::make_unique<Hmac<Md5>>(key);
    case Integrity::hmac_sha1_96:
    case Integrity::hmac_sha1_160: return std::make_unique<Hmac<Sha1>>(key);
    case Integrity::hmac_sha256_96:
    case Integrity::hmac_sha256_128: return std::make_unique<Hmac<Sha256>>(key);
    case Integrity::hmac_sha384_192: return std::make_unique<Hmac<Sha384>>(key);
    case Integrity::hmac_sha512_256: return std::make_unique<Hmac<Sha512>>(key);
    case Integrity::aes_xcbc_96: return std::make_unique<XcbcMac>(key);
    default: break;
  }
  throw CryptoError(std::string("no MAC for integrity algorithm ") + std::string(filters::integrity_info(alg).name));
}

// ------------------------------------------------------------------ Cipher

struct Cipher::Ctx {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~Ctx() { EVP_CIPHER_CTX_free(ctx); }
};

Cipher::~Cipher() = default;

std::unique_ptr<Cipher> Cipher::create(filters::Cipher alg, Bytes key) {
  using Alg = filters::Cipher;
  const char* name = nullptr;
  std::size_t block = 1;
  switch (alg) {
    case Alg::des_cbc:
      if (!legacy_available()) throw CryptoError("des-cbc needs OpenSSL's legacy provider, which is not installed");
      name = "DES-CBC";
      block = 8;
      break;
    case Alg::tdes_cbc:
      name = "DES-EDE3-CBC";
      block = 8;
      break;
    case Alg::aes_cbc:
      name = key.size() == 16 ? "AES-128-CBC" : key.size() == 24 ? "AES-192-CBC" : "AES-256-CBC";
      block = 16;
      break;
    case Alg::aes_ctr:
      name = key.size() == 16 ? "AES-128-CTR" : key.size() == 24 ? "AES-192-CTR" : "AES-256-CTR";
      block = 1;
      break;
    default: throw CryptoError("not a CBC or CTR cipher");
  }
  const EVP_CIPHER* c = fetch_cipher(name);
  if (static_cast<std::size_t>(EVP_CIPHER_get_key_length(c)) != key.size()) {
    throw CryptoError(std::string(name) + ": wrong key length");
  }
  auto out = std::unique_ptr<Cipher>(new Cipher());
  out->block_ = block;
  out->dec_ = std::make_unique<Ctx>();
  out->enc_ = std::make_unique<Ctx>();
  out->dec_->ctx = EVP_CIPHER_CTX_new();
  out->enc_->ctx = EVP_CIPHER_CTX_new();
  if (out->dec_->ctx == nullptr || out->enc_->ctx == nullptr ||
      EVP_DecryptInit_ex2(out->dec_->ctx, c, key.data(), nullptr, nullptr) != 1 ||
      EVP_EncryptInit_ex2(out->enc_->ctx, c, key.data(), nullptr, nullptr) != 1) {
    throw CryptoError(openssl_error("cipher key setup"));
  }
  EVP_CIPHER_CTX_set_padding(out->dec_->ctx, 0);
  EVP_CIPHER_CTX_set_padding(out->enc_->ctx, 0);
  return out;
}

bool Cipher::decrypt(const std::uint8_t* iv, Bytes in, std::uint8_t* out) noexcept {
  int l1 = 0;
  int l2 = 0;
  if (in.size() % block_ != 0) return false;
  if (EVP_DecryptInit_ex2(dec_->ctx, nullptr, nullptr, iv, nullptr) != 1) return false;
  if (EVP_DecryptUpdate(dec_->ctx, out, &l1, in.data(), static_cast<int>(in.size())) != 1) return false;
  if (EVP_DecryptFinal_ex(dec_->ctx, out + l1, &l2) != 1) return false;
  return static_cast<std::size_t>(l1) + static_cast<std::size_t>(l2) == in.size();
}

bool Cipher::encrypt(const std::uint8_t* iv, Bytes in, std::uint8_t* out) noexcept {
  int l1 = 0;
  int l2 = 0;
  if (in.size() % block_ != 0) return false;
  if (EVP_EncryptInit_ex2(enc_->ctx, nullptr, nullptr, iv, nullptr) != 1) return false;
  if (EVP_EncryptUpdate(enc_->ctx, out, &l1, in.data(), static_cast<int>(in.size())) != 1) return false;
  if (EVP_EncryptFinal_ex(enc_->ctx, out + l1, &l2) != 1) return false;
  return static_cast<std::size_t>(l1) + static_cast<std::size_t>(l2) == in.size();
}

// ------------------------------------------------------------------ AEAD

struct Aead::Ctx {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~Ctx() { EVP_CIPHER_CTX_free(ctx); }
};

Aead::~Aead() = default;

std::unique_ptr<Aead> Aead::create(Kind kind, Bytes key, std::size_t tag_len, std::size_t nonce_len) {
  const char* name = nullptr;
  switch (kind) {
    case Kind::gcm: name = key.size() == 16 ? "AES-128-GCM" : key.size() == 24 ? "AES-192-GCM" : "AES-256-GCM"; break;
    case Kind::ccm: name = key.size() == 16 ? "AES-128-CCM" : key.size() == 24 ? "AES-192-CCM" : "AES-256-CCM"; break;
    case Kind::chacha20_poly1305: name = "ChaCha20-Poly1305"; break;
  }
  const EVP_CIPHER* c = fetch_cipher(name);
  if (static_cast<std::size_t>(EVP_CIPHER_get_key_length(c)) != key.size()) {
    throw CryptoError(std::string(name) + ": wrong key length");
  }
  auto a = std::unique_ptr<Aead>(new Aead());
  a->kind_ = kind;
  a->tag_len_ = tag_len;
  if (kind != Kind::ccm) a->dec_ = std::make_unique<Ctx>();
  a->enc_ = std::make_unique<Ctx>();
  // CCM opens through its counter stream and the sealing context (see open),
  // so it has no decryption context.
  for (int dir = kind == Kind::ccm ? 1 : 0; dir < 2; ++dir) {
    EVP_CIPHER_CTX*& ctx = dir == 0 ? a->dec_->ctx : a->enc_->ctx;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == nullptr || EVP_CipherInit_ex2(ctx, c, nullptr, nullptr, dir, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce_len), nullptr) != 1) {
      throw CryptoError(openssl_error("AEAD setup"));
    }
    if (kind == Kind::ccm && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag_len), nullptr) != 1) {
      throw CryptoError(openssl_error("CCM tag length"));
    }
    if (EVP_CipherInit_ex2(ctx, nullptr, key.data(), nullptr, dir, nullptr) != 1) {
      throw CryptoError(openssl_error("AEAD key setup"));
    }
  }
  if (kind == Kind::ccm) {
    const char* ctr = key.size() == 16 ? "AES-128-CTR" : key.size() == 24 ? "AES-192-CTR" : "AES-256-CTR";
    a->ccm_ctr_ = std::make_unique<Ctx>();
    a->ccm_ctr_->ctx = EVP_CIPHER_CTX_new();
    if (a->ccm_ctr_->ctx == nullptr ||
        EVP_EncryptInit_ex2(a->ccm_ctr_->ctx, fetch_cipher(ctr), key.data(), nullptr, nullptr) != 1) {
      throw CryptoError(openssl_error("CCM counter setup"));
    }
    a->ccm_scratch_.resize(65536);
  }
  return a;
}

bool Aead::open(Bytes nonce, Bytes aad1, Bytes aad2, Bytes ct, Bytes tag, std::uint8_t* out) noexcept {
  int l = 0;
  if (tag.size() != tag_len_) return false;
  if (kind_ == Kind::ccm) {
    // OpenSSL raises an error on every CCM tag mismatch, and raising one
    // duplicates two strings on the heap, so forged packets would allocate.
    // Instead: decrypt with CCM's counter stream (RFC 3610 section 2.3: block
    // A_i is flags L-1, the nonce, then i; the payload starts at i = 1), seal
    // the plaintext again to get the tag it should have, and compare.
    if (!aad2.empty() || ct.size() > ccm_scratch_.size() || nonce.size() < 7 || nonce.size() > 13) return false;
    std::uint8_t a1[16] = {};
    a1[0] = static_cast<std::uint8_t>(14 - nonce.size());
    std::memcpy(a1 + 1, nonce.data(), nonce.size());
    a1[15] = 1;
    EVP_CIPHER_CTX* ctr = ccm_ctr_->ctx;
    if (EVP_EncryptInit_ex2(ctr, nullptr, nullptr, a1, nullptr) != 1) return false;
    if (!ct.empty() && EVP_EncryptUpdate(ctr, out, &l, ct.data(), static_cast<int>(ct.size())) != 1) return false;
    std::uint8_t expected[16];
    if (!seal(nonce, aad1, {}, Bytes(out, ct.size()), ccm_scratch_.data(), expected)) return false;
    if (equal_ct(expected, tag.data(), tag.size())) return true;
    filters::cleanse(out, ct.size());
    return false;
  }
  EVP_CIPHER_CTX* c = dec_->ctx;
  auto* tagp = const_cast<std::uint8_t*>(tag.data());  // OpenSSL's ctrl takes void*
  if (EVP_DecryptInit_ex2(c, nullptr, nullptr, nonce.data(), nullptr) != 1) return false;
  if (!aad1.empty() && EVP_DecryptUpdate(c, nullptr, &l, aad1.data(), static_cast<int>(aad1.size())) != 1) {
    return false;
  }
  if (!aad2.empty() && EVP_DecryptUpdate(c, nullptr, &l, aad2.data(), static_cast<int>(aad2.size())) != 1) {
    return false;
  }
  int total = 0;
  if (!ct.empty()) {
    if (EVP_DecryptUpdate(c, out, &l, ct.data(), static_cast<int>(ct.size())) != 1) return false;
    total = l;
  }
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag.size()), tagp) != 1) return false;
  std::uint8_t dummy[16];
  return EVP_DecryptFinal_ex(c, ct.empty() ? dummy : out + total, &l) == 1;
}

bool Aead::seal(Bytes nonce, Bytes aad1, Bytes aad2, Bytes pt, std::uint8_t* out, std::uint8_t* tag) noexcept {
  EVP_CIPHER_CTX* c = enc_->ctx;
  int l = 0;
  if (kind_ == Kind::ccm) {
    if (!aad2.empty()) return false;
    if (EVP_EncryptInit_ex2(c, nullptr, nullptr, nonce.data(), nullptr) != 1) return false;
    if (EVP_EncryptUpdate(c, nullptr, &l, nullptr, static_cast<int>(pt.size())) != 1) return false;
  } else if (EVP_EncryptInit_ex2(c, nullptr, nullptr, nonce.data(), nullptr) != 1) {
    return false;
  }
  if (!aad1.empty() && EVP_EncryptUpdate(c, nullptr, &l, aad1.data(), static_cast<int>(aad1.size())) != 1) {
    return false;
  }
  if (!aad2.empty() && EVP_EncryptUpdate(c, nullptr, &l, aad2.data(), static_cast<int>(aad2.size())) != 1) {
    return false;
  }
  int total = 0;
  if (!pt.empty() || kind_ == Kind::ccm) {
    if (EVP_EncryptUpdate(c, out, &l, pt.data(), static_cast<int>(pt.size())) != 1) return false;
    total = l;
  }
  std::uint8_t dummy[16];
  if (EVP_EncryptFinal_ex(c, pt.empty() ? dummy : out + total, &l) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(tag_len_), tag) == 1;
}

void random_bytes(std::uint8_t* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw CryptoError(openssl_error("random bytes"));
}

bool equal_ct(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) noexcept {
  return CRYPTO_memcmp(a, b, n) == 0;
}

}  // namespace ipsentry::ipsec::crypto
