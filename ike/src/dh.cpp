// Diffie-Hellman for IKEv2 (RFC 7296 3.4): MODP groups (RFC 2409, RFC 3526),
// NIST curves (RFC 5903) and curve25519 (RFC 8031), with the checks a
// receiver must make of the peer's public value.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <cstring>

#include "crypto_internal.hpp"
#include "ipsentry/ike/crypto.hpp"
#include "ipsentry/ike/crypto_testing.hpp"

namespace ipsentry::ike {

namespace {

using filters::DhGroup;

// RFC 2409 6.2, the Second Oakley Group: 2^1024 - 2^960 - 1 + 2^64 * { [2^894 pi] + 129093 }.
// OpenSSL does not offer it as a named group, so it is given here (a public
// constant; the unit test checks it against OpenSSL's copy).
constexpr const char* kModp1024Hex =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381"
    "FFFFFFFFFFFFFFFF";

using detail::ossl_error;

using Pkey = detail::OsslPtr<EVP_PKEY, EVP_PKEY_free>;
using Ctx = detail::OsslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using Bn = detail::OsslPtr<BIGNUM, BN_clear_free>;
using Bld = detail::OsslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using Params = detail::OsslPtr<OSSL_PARAM, OSSL_PARAM_free>;

enum class Family : std::uint8_t { modp, ecp, x25519 };

struct GroupInfo {
  Family family;
  const char* name;  // OpenSSL's: a DH named group, a curve
  int nid;           // curves
  std::size_t len;   // public value bytes in a KE payload
};

GroupInfo info(DhGroup g) {
  switch (g) {
    case DhGroup::modp1024: return {Family::modp, nullptr, 0, 128};
    case DhGroup::modp2048: return {Family::modp, "modp_2048", 0, 256};
    case DhGroup::modp3072: return {Family::modp, "modp_3072", 0, 384};
    case DhGroup::ecp256: return {Family::ecp, "P-256", NID_X9_62_prime256v1, 64};
    case DhGroup::ecp384: return {Family::ecp, "P-384", NID_secp384r1, 96};
    case DhGroup::curve25519: return {Family::x25519, "X25519", 0, 32};
    case DhGroup::none: break;
  }
  throw CryptoError("no Diffie-Hellman group " + std::to_string(static_cast<unsigned>(g)));
}

Bn modp1024_prime() {
  BIGNUM* p = nullptr;
  if (BN_hex2bn(&p, kModp1024Hex) == 0) throw CryptoError(ossl_error("the 1024-bit MODP prime"));
  return Bn(p);
}

// The domain parameters of a MODP group, pushed onto a parameter builder.
// `keep` owns the big numbers until the builder is turned into params.
void push_modp_domain(DhGroup g, OSSL_PARAM_BLD* bld, std::vector<Bn>& keep) {
  const GroupInfo gi = info(g);
  if (gi.name != nullptr) {
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, gi.name, 0) != 1) {
      throw CryptoError(ossl_error("DH group parameters"));
    }
    return;
  }
  // modp1024: p and g = 2. Without q (OpenSSL's key generation refuses
  // this group's q) the private value is drawn below p; our own range check
  // is what RFC 6989 asks for a safe prime.
  Bn p = modp1024_prime();
  Bn two(BN_new());
  if (!two || BN_set_word(two.get(), 2) != 1 || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_FFC_P, p.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_FFC_G, two.get()) != 1) {
    throw CryptoError(ossl_error("DH group parameters"));
  }
  keep.push_back(std::move(p));
  keep.push_back(std::move(two));
}

Pkey from_data(const char* type, int selection, OSSL_PARAM* params, const char* what) {
  Ctx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* out = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 || EVP_PKEY_fromdata(ctx.get(), &out, selection, params) != 1) {
    throw CryptoError(ossl_error(what));
  }
  return Pkey(out);
}

// A MODP group's domain parameters as a key object (for key generation).
Pkey modp_domain(DhGroup g) {
  Bld bld(OSSL_PARAM_BLD_new());
  if (!bld) throw CryptoError(ossl_error("DH group parameters"));
  std::vector<Bn> keep;
  push_modp_domain(g, bld.get(), keep);
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) throw CryptoError(ossl_error("DH group parameters"));
  return from_data("DH", EVP_PKEY_KEY_PARAMETERS, params.get(), "DH group parameters");
}

Pkey generate(DhGroup g) {
  const GroupInfo gi = info(g);
  if (gi.family == Family::modp) {
    Pkey dom = modp_domain(g);
    Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, dom.get(), nullptr));
    EVP_PKEY* key = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &key) != 1) {
      throw CryptoError(ossl_error("DH key generation"));
    }
    return Pkey(key);
  }
  EVP_PKEY* key = gi.family == Family::ecp ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", gi.name)
                                           : EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
  if (key == nullptr) throw CryptoError(ossl_error("key generation"));
  return Pkey(key);
}

// Our public value as the KE payload carries it.
Buffer public_of(DhGroup g, EVP_PKEY* key) {
  const GroupInfo gi = info(g);
  Buffer out(gi.len);
  switch (gi.family) {
    case Family::modp: {
      BIGNUM* y = nullptr;
      if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PUB_KEY, &y) != 1)
        throw CryptoError(ossl_error("DH public value"));
      const Bn hold(y);
      // RFC 7296 3.4: left-padded with zeros to the prime's length.
      if (BN_bn2binpad(y, out.data(), static_cast<int>(out.size())) != static_cast<int>(out.size())) {
        throw CryptoError("DH public value longer than the prime");
      }
      break;
    }
    case Family::ecp: {
      // RFC 5903 7: x | y, without the uncompressed-point marker 0x04.
      std::uint8_t pt[1 + 2 * 66];
      std::size_t n = 0;
      if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof pt, &n) != 1) {
        throw CryptoError(ossl_error("ECDH public value"));
      }
      if (n != 1 + gi.len || pt[0] != 0x04) throw CryptoError("ECDH public value is not an uncompressed point");
      std::memcpy(out.data(), pt + 1, gi.len);
      break;
    }
    case Family::x25519: {
      std::size_t n = out.size();
      if (EVP_PKEY_get_raw_public_key(key, out.data(), &n) != 1 || n != out.size()) {
        throw CryptoError(ossl_error("X25519 public value"));
      }
      break;
    }
  }
  return out;
}

class OsslKeyExchange final : public KeyExchange {
 public:
  OsslKeyExchange(DhGroup group, Pkey key) : group_(group), key_(std::move(key)), pub_(public_of(group, key_.get())) {}
  [[nodiscard]] DhGroup group() const noexcept override { return group_; }
  [[nodiscard]] const Buffer& public_value() const noexcept override { return pub_; }
  [[nodiscard]] std::optional<filters::SecretBytes> shared_secret(Bytes peer, std::string& why) const override;

 private:
  // The peer's public value as a key, or null with `why`.
  [[nodiscard]] Pkey peer_key(Bytes peer, std::string& why) const;

  DhGroup group_;
  Pkey key_;
  Buffer pub_;
};

Pkey OsslKeyExchange::peer_key(Bytes peer, std::string& why) const {
  const GroupInfo gi = info(group_);
  switch (gi.family) {
    case Family::modp: {
      // RFC 7296 2.12 / RFC 6989 2.1: with a safe prime p, a value in
      // 1 < y < p-1 is in the large subgroup or is its generator's
      // complement; 0, 1 and p-1 give away the shared secret.
      BIGNUM* p_raw = nullptr;
      if (EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_FFC_P, &p_raw) != 1) {
        why = ossl_error("DH prime");
        return nullptr;
      }
      const Bn p(p_raw);
      Bn y(BN_bin2bn(peer.data(), static_cast<int>(peer.size()), nullptr));
      Bn pm1(BN_dup(p.get()));
      if (!y || !pm1 || BN_sub_word(pm1.get(), 1) != 1) {
        why = ossl_error("DH public value");
        return nullptr;
      }
      if (BN_cmp(y.get(), BN_value_one()) <= 0 || BN_cmp(y.get(), pm1.get()) >= 0) {
        why = "the peer's DH value is 0, 1, p-1 or not below p (RFC 6989)";
        return nullptr;
      }
      Bld bld(OSSL_PARAM_BLD_new());
      std::vector<Bn> keep;
      if (!bld) {
        why = ossl_error("DH public value");
        return nullptr;
      }
      push_modp_domain(group_, bld.get(), keep);
      if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, y.get()) != 1) {
        why = ossl_error("DH public value");
        return nullptr;
      }
      Params params(OSSL_PARAM_BLD_to_param(bld.get()));
      if (!params) {
        why = ossl_error("DH public value");
        return nullptr;
      }
      return from_data("DH", EVP_PKEY_PUBLIC_KEY, params.get(), "the peer's DH value");
    }
    case Family::ecp: {
      std::uint8_t pt[1 + 2 * 66];
      pt[0] = 0x04;
      std::memcpy(pt + 1, peer.data(), peer.size());
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(gi.name), 0),
          OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + peer.size()), OSSL_PARAM_construct_end()};
      // Decoding the point checks that it lies on the curve (RFC 5903 7,
      // RFC 7296 2.12); OpenSSL refuses it otherwise.
      Ctx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
      EVP_PKEY* out = nullptr;
      if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
          EVP_PKEY_fromdata(ctx.get(), &out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        ERR_clear_error();
        why = "the peer's ECDH value is not a point on the curve";
        return nullptr;
      }
      return Pkey(out);
    }
    case Family::x25519: {
      EVP_PKEY* out = EVP_PKEY_new_raw_public_key_ex(nullptr, "X25519", nullptr, peer.data(), peer.size());
      if (out == nullptr) why = ossl_error("the peer's curve25519 value");
      return Pkey(out);
    }
  }
  return nullptr;
}

std::optional<filters::SecretBytes> OsslKeyExchange::shared_secret(Bytes peer, std::string& why) const {
  const GroupInfo gi = info(group_);
  if (peer.size() != gi.len) {
    why = "the peer's KE value is " + std::to_string(peer.size()) + " bytes, not " + std::to_string(gi.len);
    return std::nullopt;
  }
  Pkey theirs;
  try {
    theirs = peer_key(peer, why);
  } catch (const CryptoError& e) {
    why = e.what();
    return std::nullopt;
  }
  if (!theirs) return std::nullopt;
  // Every group's secret is as long as its field: the prime (MODP, padded
  // with leading zeros, RFC 7296 2.14), the x coordinate (ECP, RFC 5903 7),
  // 32 bytes (curve25519).
  const std::size_t len = gi.family == Family::ecp ? gi.len / 2 : gi.len;
  detail::Wiped secret(len);
  Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  std::size_t n = len;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      (gi.family == Family::modp && EVP_PKEY_CTX_set_dh_pad(ctx.get(), 1) != 1)) {
    why = ossl_error("key exchange setup");
    return std::nullopt;
  }
  // validate_peer: OpenSSL's own public-key check on top of ours (for the
  // named MODP groups, whose q it knows, also y^q = 1).
  if (EVP_PKEY_derive_set_peer_ex(ctx.get(), theirs.get(), 1) != 1) {
    why = ossl_error("the peer's KE value was refused");
    return std::nullopt;
  }
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &n) != 1) {
    // X25519 fails exactly when the result is all zero (a low-order point).
    why = gi.family == Family::x25519 ? "the curve25519 shared secret is all zero (RFC 8031 2.3)"
                                      : ossl_error("key exchange");
    ERR_clear_error();
    return std::nullopt;
  }
  if (n != len) {
    why = "the shared secret has the wrong length";
    return std::nullopt;
  }
  if (gi.family == Family::x25519) {
    std::uint8_t acc = 0;
    for (std::uint8_t b : secret.bytes()) acc |= b;
    if (acc == 0) {
      why = "the curve25519 shared secret is all zero (RFC 8031 2.3)";
      return std::nullopt;
    }
  }
  return filters::SecretBytes(secret.bytes());
}

}  // namespace

std::unique_ptr<KeyExchange> KeyExchange::create(DhGroup group) {
  return std::make_unique<OsslKeyExchange>(group, generate(group));
}

std::size_t KeyExchange::public_length(DhGroup group) noexcept {
  switch (group) {
    case DhGroup::modp1024: return 128;
    case DhGroup::modp2048: return 256;
    case DhGroup::modp3072: return 384;
    case DhGroup::ecp256: return 64;
    case DhGroup::ecp384: return 96;
    case DhGroup::curve25519: return 32;
    case DhGroup::none: break;
  }
  return 0;
}

namespace testing {

std::unique_ptr<KeyExchange> key_exchange_with_private(DhGroup group, Bytes private_value) {
  const GroupInfo gi = info(group);
  if (gi.family == Family::x25519) {
    EVP_PKEY* k =
        EVP_PKEY_new_raw_private_key_ex(nullptr, "X25519", nullptr, private_value.data(), private_value.size());
    if (k == nullptr) throw CryptoError(ossl_error("X25519 private value"));
    return std::make_unique<OsslKeyExchange>(group, Pkey(k));
  }
  if (gi.family != Family::ecp) throw CryptoError("a given private value is supported for ECP and curve25519 only");
  // OpenSSL does not derive the public point from a private scalar given
  // as data, so compute it here.
  std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> grp(EC_GROUP_new_by_curve_name(gi.nid), EC_GROUP_free);
  std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> pt(grp ? EC_POINT_new(grp.get()) : nullptr, EC_POINT_free);
  Bn d(BN_bin2bn(private_value.data(), static_cast<int>(private_value.size()), nullptr));
  std::uint8_t enc[1 + 2 * 66];
  std::size_t enc_len = 0;
  if (!grp || !pt || !d || EC_POINT_mul(grp.get(), pt.get(), d.get(), nullptr, nullptr, nullptr) != 1 ||
      (enc_len = EC_POINT_point2oct(grp.get(), pt.get(), POINT_CONVERSION_UNCOMPRESSED, enc, sizeof enc, nullptr)) ==
          0) {
    throw CryptoError(ossl_error("ECDH private value"));
  }
  Bld bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, gi.name, 0) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, enc, enc_len) != 1) {
    throw CryptoError(ossl_error("ECDH private value"));
  }
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) throw CryptoError(ossl_error("ECDH private value"));
  return std::make_unique<OsslKeyExchange>(group, from_data("EC", EVP_PKEY_KEYPAIR, params.get(), "ECDH key"));
}

}  // namespace testing

}  // namespace ipsentry::ike
