// IKE hashes, prf and prf+, the IKE SA and CHILD_SA key schedules, the SK
// payload, and the AUTH octets of pre-shared keys. Diffie-Hellman is in
// dh.cpp, signatures and certificates in auth.cpp.
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "crypto_internal.hpp"
#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ipsec/crypto.hpp"

namespace ipsentry::ike {

namespace {

using filters::Cipher;
using filters::CipherMode;
using filters::Integrity;
using filters::Prf;

const EVP_MD* md_of(Prf alg) {
  switch (alg) {
    case Prf::hmac_md5: return EVP_md5();
    case Prf::hmac_sha1: return EVP_sha1();
    case Prf::hmac_sha256: return EVP_sha256();
    case Prf::hmac_sha384: return EVP_sha384();
    case Prf::hmac_sha512: return EVP_sha512();
  }
  return EVP_sha256();
}

// The integrity algorithm whose MAC, untruncated, is the prf's HMAC.
Integrity hmac_of(Prf alg) {
  switch (alg) {
    case Prf::hmac_md5: return Integrity::hmac_md5_96;
    case Prf::hmac_sha1: return Integrity::hmac_sha1_96;
    case Prf::hmac_sha256: return Integrity::hmac_sha256_128;
    case Prf::hmac_sha384: return Integrity::hmac_sha384_192;
    case Prf::hmac_sha512: return Integrity::hmac_sha512_256;
  }
  return Integrity::hmac_sha256_128;
}

std::uint16_t prf_ikev2_id(Prf alg) {
  switch (alg) {
    case Prf::hmac_md5: return 1;
    case Prf::hmac_sha1: return 2;
    case Prf::hmac_sha256: return 5;
    case Prf::hmac_sha384: return 6;
    case Prf::hmac_sha512: return 7;
  }
  return 0;
}

class SystemRandom final : public Random {
 public:
  void fill(std::span<std::uint8_t> out) override {
    while (!out.empty()) {
      const std::size_t n = std::min<std::size_t>(out.size(), INT_MAX);
      if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw CryptoError("OpenSSL's random generator failed");
      out = out.subspan(n);
    }
  }
};

// prf(key, parts) into `out` (prf_len bytes). The MAC object keeps its key
// schedule in OpenSSL, which wipes it when freed.
void prf_into(Prf alg, Bytes key, std::initializer_list<Bytes> parts, std::uint8_t* out) {
  std::unique_ptr<ipsec::crypto::Mac> m;
  try {
    m = ipsec::crypto::make_mac(hmac_of(alg), key);
  } catch (const ipsec::crypto::CryptoError& e) {
    throw CryptoError(e.what());
  }
  m->begin();
  for (Bytes p : parts) m->update(p);
  m->finish(out);
}

void be64(std::uint64_t v, std::uint8_t* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}

}  // namespace

std::string detail::ossl_error(const char* what) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return what;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return std::string(what) + ": " + buf;
}

// ---- randomness -----------------------------------------------------------

Random& system_random() {
  static SystemRandom r;
  return r;
}

// ---- hashes and the prf ---------------------------------------------------

Buffer hash(Prf alg, std::initializer_list<Bytes> parts) {
  Buffer out(EVP_MAX_MD_SIZE);
  unsigned len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return {};
  bool ok = EVP_DigestInit_ex(ctx, md_of(alg), nullptr) == 1;
  for (Bytes p : parts) ok = ok && EVP_DigestUpdate(ctx, p.data(), p.size()) == 1;
  ok = ok && EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return {};
  out.resize(len);
  return out;
}

Buffer prf(Prf alg, Bytes key, std::initializer_list<Bytes> parts) {
  Buffer out(filters::prf_len(alg));
  prf_into(alg, key, parts, out.data());
  return out;
}

filters::SecretBytes prf_plus(Prf alg, Bytes key, Bytes seed, std::size_t length) {
  // T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), at most 255 rounds.
  const std::size_t h = filters::prf_len(alg);
  const std::size_t rounds = (length + h - 1) / h;
  if (rounds > 255) return {};
  detail::Wiped out(rounds * h);
  for (std::size_t i = 1; i <= rounds; ++i) {
    const std::uint8_t n = static_cast<std::uint8_t>(i);
    const Bytes prev = i == 1 ? Bytes() : Bytes(out.data() + (i - 2) * h, h);
    prf_into(alg, key, {prev, seed, Bytes(&n, 1)}, out.data() + (i - 1) * h);
  }
  return filters::SecretBytes(out.bytes().first(length));
}

filters::SecretBytes v1_keymat(Prf alg, Bytes skeyid_d, std::uint8_t protocol, Bytes spi, Bytes ni, Bytes nr,
                               std::size_t length) {
  // K1 = prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b),
  // Kn+1 = prf(SKEYID_d, Kn | protocol | SPI | Ni_b | Nr_b) (RFC 2409 5.5).
  const std::size_t h = filters::prf_len(alg);
  const std::size_t rounds = (length + h - 1) / h;
  detail::Wiped out(rounds * h);
  for (std::size_t i = 0; i < rounds; ++i) {
    const Bytes prev = i == 0 ? Bytes() : Bytes(out.data() + (i - 1) * h, h);
    prf_into(alg, skeyid_d, {prev, Bytes(&protocol, 1), spi, ni, nr}, out.data() + i * h);
  }
  return filters::SecretBytes(out.bytes().first(length));
}

// ---- the IKE SA key schedule ---------------------------------------------

std::size_t IkeSuite::encryption_key_len() const noexcept {
  return encryption.key_bytes + filters::cipher_info(encryption.cipher).salt_len;
}

std::size_t IkeSuite::integrity_key_len() const noexcept {
  if (filters::cipher_info(encryption.cipher).aead()) return 0;
  return filters::integrity_info(integrity).key_len;
}

std::string IkeSuite::str() const {
  auto name = [](std::uint8_t type, std::uint16_t id) {
    const char* n = dissect::ike::v2_transform_id_name(type, id);
    return n != nullptr ? std::string(n) : fmt::format("{}-{}", type, id);
  };
  const auto& ci = filters::cipher_info(encryption.cipher);
  std::string s = name(1, ci.ikev2_id);
  // The Key Length attribute exists for AES only (RFC 7296 3.3.5).
  if (ci.key_sizes[1] != 0) s += fmt::format("-{}", encryption.key_bytes * 8);
  if (!ci.aead() && integrity != Integrity::none) s += "/" + name(3, filters::integrity_info(integrity).ikev2_id);
  s += "/" + name(2, prf_ikev2_id(prf));
  if (dh != filters::DhGroup::none) s += "/" + name(4, static_cast<std::uint16_t>(dh));
  return s;
}

IkeKeys derive_ike_keys(const IkeSuite& suite, Bytes shared, Bytes ni, Bytes nr, std::uint64_t spi_i,
                        std::uint64_t spi_r, const IkeRekeyFrom* rekey) {
  // SKEYSEED = prf(Ni | Nr, g^ir) (2.14), or prf(SK_d (old), g^ir (new) | Ni | Nr)
  // with the old SA's prf when it rekeys an IKE SA (2.18).
  const Prf seed_prf = rekey != nullptr ? rekey->prf : suite.prf;
  detail::Wiped skeyseed(filters::prf_len(seed_prf));
  if (rekey != nullptr) {
    prf_into(seed_prf, rekey->sk_d, {shared, ni, nr}, skeyseed.data());
  } else {
    Buffer nonces(ni.begin(), ni.end());
    nonces.insert(nonces.end(), nr.begin(), nr.end());
    prf_into(seed_prf, nonces, {shared}, skeyseed.data());
  }
  Buffer seed(ni.begin(), ni.end());
  seed.insert(seed.end(), nr.begin(), nr.end());
  std::uint8_t spis[16];
  be64(spi_i, spis);
  be64(spi_r, spis + 8);
  seed.insert(seed.end(), spis, spis + 16);

  const std::size_t d = filters::prf_len(suite.prf);
  const std::size_t a = suite.integrity_key_len();
  const std::size_t e = suite.encryption_key_len();
  const filters::SecretBytes km = prf_plus(suite.prf, skeyseed.bytes(), seed, 3 * d + 2 * a + 2 * e);
  if (km.empty()) throw CryptoError("the IKE SA's keys are longer than prf+ can make");
  const Bytes k = km.bytes();
  std::size_t at = 0;
  auto take = [&](std::size_t n) {
    filters::SecretBytes s(k.subspan(at, n));
    at += n;
    return s;
  };
  IkeKeys out;
  out.sk_d = take(d);
  out.sk_ai = take(a);
  out.sk_ar = take(a);
  out.sk_ei = take(e);
  out.sk_er = take(e);
  out.sk_pi = take(d);
  out.sk_pr = take(d);
  return out;
}

ChildKeys derive_child_keys(Prf prf_alg, Bytes sk_d, Bytes pfs_shared, Bytes ni, Bytes nr, std::size_t encr_len,
                            std::size_t integ_len) {
  // The seed holds g^ir with PFS: wiped with it.
  detail::Wiped seed(pfs_shared.size() + ni.size() + nr.size());
  std::uint8_t* p = seed.data();
  for (Bytes part : {pfs_shared, ni, nr}) {
    if (!part.empty()) std::memcpy(p, part.data(), part.size());
    p += part.size();
  }
  const filters::SecretBytes km = prf_plus(prf_alg, sk_d, seed.bytes(), 2 * (encr_len + integ_len));
  if (km.empty() && encr_len + integ_len != 0) throw CryptoError("the CHILD_SA's keys are longer than prf+ can make");
  const Bytes k = km.bytes();
  ChildKeys out;
  out.encr_i = filters::SecretBytes(k.subspan(0, encr_len));
  out.integ_i = filters::SecretBytes(k.subspan(encr_len, integ_len));
  out.encr_r = filters::SecretBytes(k.subspan(encr_len + integ_len, encr_len));
  out.integ_r = filters::SecretBytes(k.subspan(2 * encr_len + integ_len, integ_len));
  return out;
}

// ---- the SK payload -------------------------------------------------------

struct SkCipher::Impl {
  enum class Kind : std::uint8_t { cbc, ctr, aead };
  Kind kind = Kind::cbc;
  bool inspection_only = false;  // made by for_inspection() with something an IKE SA must not use
  bool check_icv = true;         // false: an unchecked-* placeholder
  std::unique_ptr<ipsec::crypto::Cipher> cipher;
  std::unique_ptr<ipsec::crypto::Aead> aead;
  std::unique_ptr<ipsec::crypto::Mac> mac;
  filters::SecretBytes salt;
  std::size_t iv_len = 0;
  std::size_t block = 1;  // plaintext alignment: the cipher's block for CBC, 1 otherwise
  std::size_t icv_len = 0;

  // The decrypted inner chain or nullopt. With `require_icv` false a
  // non-AEAD cipher's data is returned whatever the ICV (`trust` says
  // what it was); AEAD data exists only authenticated.
  std::optional<Buffer> decrypt(Bytes msg, std::size_t body_offset, bool require_icv, Trust& trust,
                                std::string& why) const;
};

SkCipher::SkCipher(const IkeSuite& suite, Bytes sk_e, Bytes sk_a) : SkCipher(suite, sk_e, sk_a, false) {}

SkCipher SkCipher::for_inspection(const IkeSuite& suite, Bytes sk_e, Bytes sk_a) {
  return SkCipher(suite, sk_e, sk_a, true);
}

SkCipher::SkCipher(const IkeSuite& suite, Bytes sk_e, Bytes sk_a, bool inspection) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  const auto& ci = filters::cipher_info(suite.encryption.cipher);
  // What an IKE SA can be protected with: RFC 7296 3.3.2's ciphers with
  // confidentiality (RFC 8247 keeps 3DES as deprecated, not forbidden), the
  // AEAD ciphers of RFC 5282 and RFC 7634, AES-CTR (RFC 5930). Not NULL,
  // not GMAC (no confidentiality), not the ESP-only implicit-IV variants.
  switch (suite.encryption.cipher) {
    case Cipher::aes_cbc:
    case Cipher::tdes_cbc: m.kind = Impl::Kind::cbc; break;
    case Cipher::des_cbc:
      if (!inspection) throw CryptoError("single DES cannot protect an IKE SA (RFC 8247: MUST NOT)");
      m.kind = Impl::Kind::cbc;
      m.inspection_only = true;
      break;
    case Cipher::aes_ctr: m.kind = Impl::Kind::ctr; break;
    case Cipher::aes_gcm_8:
    case Cipher::aes_gcm_12:
    case Cipher::aes_gcm_16:
    case Cipher::aes_ccm_8:
    case Cipher::aes_ccm_12:
    case Cipher::aes_ccm_16:
    case Cipher::chacha20_poly1305: m.kind = Impl::Kind::aead; break;
    default:
      throw CryptoError(fmt::format("{} cannot protect IKE messages", ci.name.empty() ? "this cipher" : ci.name));
  }
  if (sk_e.size() != suite.encryption_key_len()) {
    throw CryptoError(fmt::format("SK_e for {} is {} bytes, not {}", ci.name, sk_e.size(), suite.encryption_key_len()));
  }
  const Bytes key = sk_e.first(sk_e.size() - ci.salt_len);
  if (auto bad = filters::check_cipher_key(suite.encryption.cipher, sk_e.size())) throw CryptoError(*bad);
  m.salt = filters::SecretBytes(sk_e.last(ci.salt_len));
  try {
    if (m.kind == Impl::Kind::aead) {
      using K = ipsec::crypto::Aead::Kind;
      const K k = ci.mode == CipherMode::ccm                 ? K::ccm
                  : ci.mode == CipherMode::chacha20_poly1305 ? K::chacha20_poly1305
                                                             : K::gcm;
      // RFC 5282 / RFC 7634: an 8-byte IV after a 4-byte salt (3 for CCM).
      m.iv_len = 8;
      m.icv_len = ci.icv_len;
      m.aead = ipsec::crypto::Aead::create(k, key, ci.icv_len, ci.salt_len + m.iv_len);
      if (suite.integrity != Integrity::none) throw CryptoError("an AEAD cipher takes no integrity algorithm");
    } else {
      m.cipher = ipsec::crypto::Cipher::create(suite.encryption.cipher, key);
      if (m.kind == Impl::Kind::cbc) {
        m.iv_len = ci.block_size;  // RFC 7296 3.14: one block, random
        m.block = ci.block_size;
      } else {
        m.iv_len = 8;  // RFC 5930: the counter block is nonce | IV | counter
      }
      const auto& ii = filters::integrity_info(suite.integrity);
      const bool placeholder = !ii.checks && ii.icv_len != 0;
      if (placeholder && inspection) {
        m.check_icv = false;
        m.inspection_only = true;
      } else if (suite.integrity == Integrity::none || !ii.checks) {
        throw CryptoError(fmt::format("{} needs an integrity algorithm to protect IKE messages", ci.name));
      } else if (ii.ikev2_id == 0 || !ii.supported) {
        if (!inspection || !ii.supported)
          throw CryptoError(fmt::format("{} is not an IKEv2 integrity algorithm", ii.name));
        m.inspection_only = true;
      }
      m.icv_len = ii.icv_len;
      if (m.check_icv) {
        if (sk_a.size() != ii.key_len) {
          throw CryptoError(fmt::format("SK_a for {} is {} bytes, not {}", ii.name, sk_a.size(), ii.key_len));
        }
        m.mac = ipsec::crypto::make_mac(suite.integrity, sk_a);
      }
    }
  } catch (const ipsec::crypto::CryptoError& e) {
    throw CryptoError(e.what());
  }
}

SkCipher::~SkCipher() = default;
SkCipher::SkCipher(SkCipher&&) noexcept = default;
SkCipher& SkCipher::operator=(SkCipher&&) noexcept = default;

std::size_t SkCipher::sealed_size(std::size_t plaintext) const noexcept {
  const Impl& m = *impl_;
  const std::size_t padded = (plaintext + 1 + m.block - 1) / m.block * m.block;
  return m.iv_len + padded + m.icv_len;
}

void SkCipher::seal(Buffer& msg, Bytes plaintext, Random& random) const {
  const Impl& m = *impl_;
  if (m.inspection_only) throw CryptoError("this SK cipher is for inspecting captures only");
  // Padding to the block (none for CTR and AEAD, whose block is 1), the
  // Pad Length byte last; the padding bytes are zero.
  const std::size_t padded = (plaintext.size() + 1 + m.block - 1) / m.block * m.block;
  detail::Wiped clear(padded);
  if (!plaintext.empty()) std::memcpy(clear.data(), plaintext.data(), plaintext.size());
  clear.data()[padded - 1] = static_cast<std::uint8_t>(padded - plaintext.size() - 1);

  const std::size_t start = msg.size();
  msg.resize(start + m.iv_len + padded + m.icv_len);
  std::uint8_t* iv = msg.data() + start;
  std::uint8_t* ct = iv + m.iv_len;
  std::uint8_t* icv = ct + padded;
  random.fill(std::span<std::uint8_t>(iv, m.iv_len));
  bool ok = false;
  if (m.kind == Impl::Kind::aead) {
    std::uint8_t nonce[16];
    std::memcpy(nonce, m.salt.bytes().data(), m.salt.size());
    std::memcpy(nonce + m.salt.size(), iv, m.iv_len);
    ok = m.aead->seal(Bytes(nonce, m.salt.size() + m.iv_len), Bytes(msg.data(), start), {}, clear.bytes(), ct, icv);
  } else {
    std::uint8_t block[16];
    if (m.kind == Impl::Kind::ctr) {
      std::memcpy(block, m.salt.bytes().data(), 4);
      std::memcpy(block + 4, iv, 8);
      block[12] = block[13] = block[14] = 0;
      block[15] = 1;
    } else {
      std::memcpy(block, iv, m.iv_len);
    }
    ok = m.cipher->encrypt(block, clear.bytes(), ct);
    if (ok) {
      std::uint8_t full[64];
      m.mac->begin();
      m.mac->update(Bytes(msg.data(), msg.size() - m.icv_len));
      m.mac->finish(full);
      std::memcpy(icv, full, m.icv_len);
    }
  }
  if (!ok) {
    msg.resize(start);
    throw CryptoError("OpenSSL failed to encrypt an IKE message");
  }
}

std::optional<Buffer> SkCipher::Impl::decrypt(Bytes msg, std::size_t body_offset, bool require_icv, Trust& trust,
                                              std::string& why) const {
  if (body_offset > msg.size()) {
    why = "the encrypted payload starts past the message's end";
    return std::nullopt;
  }
  const Bytes body = msg.subspan(body_offset);
  if (body.size() < iv_len + icv_len + 1) {
    why = "encrypted payload too short";
    return std::nullopt;
  }
  const Bytes iv = body.first(iv_len);
  const Bytes ct = body.subspan(iv_len, body.size() - iv_len - icv_len);
  const Bytes icv = body.last(icv_len);
  if (ct.size() % block != 0) {
    why = "the encrypted data is not a whole number of cipher blocks";
    return std::nullopt;
  }
  Buffer out(ct.size());
  bool ok = false;
  if (kind == Kind::aead) {
    std::uint8_t nonce[16];
    std::memcpy(nonce, salt.bytes().data(), salt.size());
    std::memcpy(nonce + salt.size(), iv.data(), iv_len);
    ok = aead->open(Bytes(nonce, salt.size() + iv_len), msg.first(body_offset), {}, ct, icv, out.data());
    if (!ok) {
      filters::cleanse(out.data(), out.size());
      why = "ICV mismatch";
      return std::nullopt;
    }
    trust = Trust::verified;
  } else {
    trust = Trust::unchecked;
    if (check_icv) {
      std::uint8_t full[64];
      mac->begin();
      mac->update(msg.first(msg.size() - icv_len));
      mac->finish(full);
      const bool match = ipsec::crypto::equal_ct(full, icv.data(), icv_len);
      trust = match ? Trust::verified : Trust::icv_mismatch;
      if (!match && require_icv) {
        why = "ICV mismatch";
        return std::nullopt;
      }
    }
    std::uint8_t counter[16];
    if (kind == Kind::ctr) {
      std::memcpy(counter, salt.bytes().data(), 4);
      std::memcpy(counter + 4, iv.data(), 8);
      counter[12] = counter[13] = counter[14] = 0;
      counter[15] = 1;
    } else {
      std::memcpy(counter, iv.data(), iv_len);
    }
    ok = cipher->decrypt(counter, ct, out.data());
    if (!ok) {
      why = "the cipher rejected the data";
      return std::nullopt;
    }
  }
  const std::size_t pad = out.back();
  if (pad + 1 > out.size()) {
    filters::cleanse(out.data(), out.size());
    why = "the padding length is larger than the decrypted data";
    return std::nullopt;
  }
  out.resize(out.size() - pad - 1);
  return out;
}

std::optional<Buffer> SkCipher::open(Bytes msg, std::size_t body_offset, std::string& why) const {
  if (impl_->inspection_only) {
    why = "this SK cipher is for inspecting captures only";
    return std::nullopt;
  }
  Trust trust = Trust::verified;
  return impl_->decrypt(msg, body_offset, true, trust, why);
}

std::optional<Buffer> SkCipher::inspect(Bytes msg, std::size_t body_offset, Trust& trust, std::string& why) const {
  return impl_->decrypt(msg, body_offset, false, trust, why);
}

// ---- AUTH with a pre-shared key (RFC 7296 2.15) -------------------------

Buffer signed_octets(Prf prf_alg, Bytes real_message, Bytes peer_nonce, Bytes sk_p, Bytes id_body) {
  Buffer out(real_message.begin(), real_message.end());
  out.insert(out.end(), peer_nonce.begin(), peer_nonce.end());
  const Buffer mac = prf(prf_alg, sk_p, {id_body});
  out.insert(out.end(), mac.begin(), mac.end());
  return out;
}

Buffer psk_auth(Prf prf_alg, Bytes psk, Bytes octets) {
  static constexpr char kPad[] = "Key Pad for IKEv2";
  detail::Wiped key(filters::prf_len(prf_alg));
  prf_into(prf_alg, psk, {Bytes(reinterpret_cast<const std::uint8_t*>(kPad), sizeof kPad - 1)}, key.data());
  return prf(prf_alg, key.bytes(), {octets});
}

}  // namespace ipsentry::ike
