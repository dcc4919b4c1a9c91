#include "keymat.hpp"

#include <openssl/evp.h>

#include "ipsentry/ipsec/crypto.hpp"

namespace ipsentry::ike {

namespace {

const EVP_MD* md_of(filters::Prf alg) {
  switch (alg) {
    case filters::Prf::hmac_md5: return EVP_md5();
    case filters::Prf::hmac_sha1: return EVP_sha1();
    case filters::Prf::hmac_sha256: return EVP_sha256();
    case filters::Prf::hmac_sha384: return EVP_sha384();
    case filters::Prf::hmac_sha512: return EVP_sha512();
  }
  return EVP_sha1();
}

// The integrity algorithm whose MAC is the untruncated HMAC of the prf.
filters::Integrity hmac_of(filters::Prf alg) {
  switch (alg) {
    case filters::Prf::hmac_md5: return filters::Integrity::hmac_md5_96;
    case filters::Prf::hmac_sha1: return filters::Integrity::hmac_sha1_96;
    case filters::Prf::hmac_sha256: return filters::Integrity::hmac_sha256_128;
    case filters::Prf::hmac_sha384: return filters::Integrity::hmac_sha384_192;
    case filters::Prf::hmac_sha512: return filters::Integrity::hmac_sha512_256;
  }
  return filters::Integrity::hmac_sha1_96;
}

}  // namespace

std::vector<std::uint8_t> hash(filters::Prf alg, std::initializer_list<Bytes> parts) {
  std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
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

std::vector<std::uint8_t> prf(filters::Prf alg, Bytes key, std::initializer_list<Bytes> parts) {
  auto m = ipsec::crypto::make_mac(hmac_of(alg), key);
  m->begin();
  for (Bytes p : parts) m->update(p);
  std::vector<std::uint8_t> out(m->output_len());
  m->finish(out.data());
  return out;
}

filters::SecretBytes prf_plus(filters::Prf alg, Bytes key, Bytes seed, std::size_t length) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> t;
  for (unsigned i = 1; out.size() < length; ++i) {
    if (i > 255) return {};
    const std::uint8_t n = static_cast<std::uint8_t>(i);
    t = prf(alg, key, {Bytes(t), seed, Bytes(&n, 1)});
    out.insert(out.end(), t.begin(), t.end());
  }
  filters::SecretBytes r(Bytes(out).first(length));
  filters::cleanse(out.data(), out.size());
  filters::cleanse(t.data(), t.size());
  return r;
}

filters::SecretBytes v1_keymat(filters::Prf alg, Bytes skeyid_d, std::uint8_t protocol, Bytes spi, Bytes ni, Bytes nr,
                               std::size_t length) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> k;
  while (out.size() < length) {
    k = prf(alg, skeyid_d, {Bytes(k), Bytes(&protocol, 1), spi, ni, nr});
    out.insert(out.end(), k.begin(), k.end());
  }
  filters::SecretBytes r(Bytes(out).first(length));
  filters::cleanse(out.data(), out.size());
  filters::cleanse(k.data(), k.size());
  return r;
}

bool cipher_decrypt(filters::Cipher alg, Bytes key, Bytes iv, Bytes in, std::vector<std::uint8_t>& out,
                    std::string& why) {
  try {
    auto c = ipsec::crypto::Cipher::create(alg, key);
    out.resize(in.size());
    if (!c->decrypt(iv.data(), in, out.data())) {
      why = "the cipher rejected the data";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    why = e.what();
    return false;
  }
}

bool aead_open(filters::Cipher alg, Bytes key, Bytes nonce, Bytes aad, Bytes ciphertext, Bytes tag,
               std::vector<std::uint8_t>& out, std::string& why) {
  using Kind = ipsec::crypto::Aead::Kind;
  const auto mode = filters::cipher_info(alg).mode;
  const Kind kind = mode == filters::CipherMode::ccm ? Kind::ccm
                    : mode == filters::CipherMode::chacha20_poly1305 ? Kind::chacha20_poly1305
                                                                      : Kind::gcm;
  try {
    auto a = ipsec::crypto::Aead::create(kind, key, tag.size(), nonce.size());
    out.resize(ciphertext.size());
    if (!a->open(nonce, aad, {}, ciphertext, tag, out.data())) {
      why = "AEAD tag mismatch";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    why = e.what();
    return false;
  }
}

std::optional<std::vector<std::uint8_t>> mac(filters::Integrity alg, Bytes key, Bytes data) {
  try {
    auto m = ipsec::crypto::make_mac(alg, key);
    m->begin();
    m->update(data);
    std::vector<std::uint8_t> out(m->output_len());
    m->finish(out.data());
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace ipsentry::ike
