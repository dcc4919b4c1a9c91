// IKEv2 authentication with certificates (RFC 7296 2.15, 3.6-3.8): X.509
// certificates and trust anchors, AUTH payloads signed with RSA or ECDSA
// (RFC 4754) and RFC 7427 digital signatures, and their verification.
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "crypto_internal.hpp"
#include "ipsentry/ike/crypto.hpp"

namespace ipsentry::ike {

using detail::ossl_error;

namespace {

using detail::OsslPtr;
using Bio = OsslPtr<BIO, BIO_free>;
using Pkey = OsslPtr<EVP_PKEY, EVP_PKEY_free>;
using MdCtx = OsslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using X509Ptr = OsslPtr<X509, X509_free>;
using Algor = OsslPtr<X509_ALGOR, X509_ALGOR_free>;
using PssParamsPtr = OsslPtr<RSA_PSS_PARAMS, RSA_PSS_PARAMS_free>;
using EcSig = OsslPtr<ECDSA_SIG, ECDSA_SIG_free>;
using Name = OsslPtr<X509_NAME, X509_NAME_free>;

// RFC 7427 Appendix A: the AlgorithmIdentifiers of the signatures we send.
// RSASSA-PKCS1-v1_5 takes a NULL parameter, ECDSA none.
constexpr std::array<std::uint8_t, 15> kSha1Rsa{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00};
constexpr std::array<std::uint8_t, 15> kSha256Rsa{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                  0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
constexpr std::array<std::uint8_t, 15> kSha384Rsa{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                  0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00};
constexpr std::array<std::uint8_t, 15> kSha512Rsa{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                  0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00};
constexpr std::array<std::uint8_t, 11> kSha1Ecdsa{0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01};
constexpr std::array<std::uint8_t, 12> kSha256Ecdsa{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
constexpr std::array<std::uint8_t, 12> kSha384Ecdsa{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
constexpr std::array<std::uint8_t, 12> kSha512Ecdsa{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};

Bytes algorithm_identifier(bool rsa, SignatureHash h) {
  switch (h) {
    case SignatureHash::sha1: return rsa ? Bytes(kSha1Rsa) : Bytes(kSha1Ecdsa);
    case SignatureHash::sha256: return rsa ? Bytes(kSha256Rsa) : Bytes(kSha256Ecdsa);
    case SignatureHash::sha384: return rsa ? Bytes(kSha384Rsa) : Bytes(kSha384Ecdsa);
    case SignatureHash::sha512: return rsa ? Bytes(kSha512Rsa) : Bytes(kSha512Ecdsa);
  }
  return {};
}

// RSASSA-PSS (RFC 4055) as RFC 7427 A.4.3 writes it for SHA-256: the
// hash, MGF1 with the same hash, a salt as long as the hash, the default
// trailer left out (DER). SHA-384 and SHA-512 differ only in the last byte
// of both hash OIDs (2.16.840.1.101.3.4.2.2 and .3) and in the salt length.
constexpr std::array<std::uint8_t, 67> kPssSha256{
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0, 0x0f,
    0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c,
    0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09,
    0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20};
constexpr std::size_t kPssHashOid1 = 29;  // last byte of the hashAlgorithm OID
constexpr std::size_t kPssHashOid2 = 59;  // last byte of MGF1's hash OID
constexpr std::size_t kPssSalt = 66;

Buffer pss_algorithm_identifier(SignatureHash h) {
  Buffer out(kPssSha256.begin(), kPssSha256.end());
  const std::uint8_t oid = h == SignatureHash::sha384 ? 0x02 : h == SignatureHash::sha512 ? 0x03 : 0x01;
  const std::uint8_t salt = h == SignatureHash::sha384 ? 48 : h == SignatureHash::sha512 ? 64 : 32;
  out[kPssHashOid1] = oid;
  out[kPssHashOid2] = oid;
  out[kPssSalt] = salt;
  return out;
}

const EVP_MD* md_of(SignatureHash h) {
  switch (h) {
    case SignatureHash::sha1: return EVP_sha1();
    case SignatureHash::sha256: return EVP_sha256();
    case SignatureHash::sha384: return EVP_sha384();
    case SignatureHash::sha512: return EVP_sha512();
  }
  return nullptr;
}

// The NIST curve of an EC key (NID), or 0 for anything else.
int curve_of(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") != 1) return 0;
  char name[64];
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1) return 0;
  int nid = OBJ_txt2nid(name);
  if (nid == NID_undef) nid = EC_curve_nist2nid(name);
  return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1 ? nid : 0;
}

bool is_rsa(EVP_PKEY* key) { return EVP_PKEY_is_a(key, "RSA") == 1 || EVP_PKEY_is_a(key, "RSA-PSS") == 1; }

// Bytes of each of r and s in RFC 4754's r | s.
std::size_t ecdsa_half(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1: return 32;
    case NID_secp384r1: return 48;
    case NID_secp521r1: return 66;
    default: return 0;
  }
}

const char* curve_name(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1: return "P-256";
    case NID_secp384r1: return "P-384";
    case NID_secp521r1: return "P-521";
    default: return "another curve";
  }
}

std::string name_text(const X509_NAME* name) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  // "C=CH, O=example, CN=gw1": RFC 2253 escaping, in the certificate's
  // order (as strongSwan writes DNs), UTF-8 kept as it is.
  const unsigned long flags = (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
                              XN_FLAG_DUMP_UNKNOWN_FIELDS;
  if (X509_NAME_print_ex(bio.get(), name, 0, flags) < 0) return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 4754: r | s, each padded to the curve's size, from a DER signature.
std::optional<Buffer> der_to_rs(Bytes der, std::size_t half) {
  const unsigned char* p = der.data();
  EcSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return std::nullopt;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  Buffer out(2 * half);
  if (BN_bn2binpad(r, out.data(), static_cast<int>(half)) != static_cast<int>(half) ||
      BN_bn2binpad(s, out.data() + half, static_cast<int>(half)) != static_cast<int>(half)) {
    return std::nullopt;
  }
  return out;
}

std::optional<Buffer> rs_to_der(Bytes rs) {
  const std::size_t half = rs.size() / 2;
  EcSig sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(rs.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(rs.data() + half, static_cast<int>(half), nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  const int n = i2d_ECDSA_SIG(sig.get(), &der);
  if (n <= 0) return std::nullopt;
  Buffer out(der, der + n);
  OPENSSL_free(der);
  return out;
}

struct PssParams {
  const EVP_MD* md = nullptr;
  const EVP_MD* mgf_md = nullptr;
  int salt = 0;
};

// One signature check. `pss` selects RSASSA-PSS with its parameters.
bool verify_with(EVP_PKEY* key, const EVP_MD* md, const PssParams* pss, Bytes octets, Bytes sig, std::string& why) {
  MdCtx ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key) != 1) {
    why = ossl_error("signature check setup");
    return false;
  }
  if (pss != nullptr && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss->salt) != 1 ||
                         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, pss->mgf_md) != 1)) {
    why = ossl_error("RSASSA-PSS parameters");
    return false;
  }
  const int rc = EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), octets.data(), octets.size());
  ERR_clear_error();
  if (rc != 1) {
    why = "the signature does not verify with the peer's certificate";
    return false;
  }
  return true;
}

// `pss`: RSASSA-PSS with MGF1 over the same hash and a salt of the hash's
// length (RFC 8247 2.4's choice, and what pss_algorithm_identifier says).
Buffer sign_with(EVP_PKEY* key, const EVP_MD* md, Bytes octets, bool pss = false) {
  MdCtx ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  std::size_t n = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, key) != 1 ||
      (pss &&
       (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md)) != 1)) ||
      EVP_DigestSign(ctx.get(), nullptr, &n, octets.data(), octets.size()) != 1) {
    throw CryptoError(ossl_error("signing"));
  }
  Buffer out(n);
  if (EVP_DigestSign(ctx.get(), out.data(), &n, octets.data(), octets.size()) != 1) {
    throw CryptoError(ossl_error("signing"));
  }
  out.resize(n);
  return out;
}

std::vector<Certificate> read_pem_certs(const std::filesystem::path& file) {
  Bio bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) throw CryptoError(fmt::format("{}: cannot open: {}", file.string(), ossl_error("file")));
  std::vector<Certificate> out;
  for (;;) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    unsigned char* der = nullptr;
    const int n = i2d_X509(x.get(), &der);
    if (n <= 0) throw CryptoError(fmt::format("{}: {}", file.string(), ossl_error("certificate encoding")));
    const Buffer d(der, der + n);
    OPENSSL_free(der);
    std::string why;
    auto c = Certificate::from_der(d, why);
    if (!c) throw CryptoError(fmt::format("{}: {}", file.string(), why));
    out.push_back(std::move(*c));
  }
  // The loop ends on "no start line" after the last certificate; any other
  // error (a damaged block) is the file's fault.
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
    throw CryptoError(fmt::format("{}: a PEM certificate does not parse", file.string()));
  }
  if (out.empty()) throw CryptoError(fmt::format("{}: no PEM certificate in the file", file.string()));
  return out;
}

}  // namespace

// ---- Certificate ----------------------------------------------------------

struct Certificate::Impl {
  Buffer der;
  X509Ptr x509;
};

Certificate::Certificate() : impl_(std::make_unique<Impl>()) {}
Certificate::~Certificate() = default;
Certificate::Certificate(Certificate&&) noexcept = default;
Certificate& Certificate::operator=(Certificate&&) noexcept = default;
Certificate::Certificate(const Certificate& other) : impl_(std::make_unique<Impl>()) {
  impl_->der = other.impl_->der;
  if (X509_up_ref(other.impl_->x509.get()) != 1) throw CryptoError("certificate copy");
  impl_->x509.reset(other.impl_->x509.get());
}

std::vector<Certificate> Certificate::load_pem(const std::filesystem::path& file) { return read_pem_certs(file); }

std::optional<Certificate> Certificate::from_der(Bytes der, std::string& why) {
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) {
    why = ossl_error("not an X.509 certificate");
    return std::nullopt;
  }
  if (p != der.data() + der.size()) {
    why = "bytes after the certificate";
    return std::nullopt;
  }
  Certificate c;
  c.impl_->der.assign(der.begin(), der.end());
  c.impl_->x509 = std::move(x);
  return c;
}

const Buffer& Certificate::der() const noexcept { return impl_->der; }

Buffer Certificate::subject_der() const {
  unsigned char* der = nullptr;
  const int n = i2d_X509_NAME(X509_get_subject_name(impl_->x509.get()), &der);
  if (n <= 0) return {};
  Buffer out(der, der + n);
  OPENSSL_free(der);
  return out;
}

std::string Certificate::subject() const { return name_text(X509_get_subject_name(impl_->x509.get())); }

bool Certificate::has_identity(std::uint8_t id_type, Bytes id_data) const {
  X509* x = impl_->x509.get();
  if (id_type == 9) {  // ID_DER_ASN1_DN: the subject, compared in canonical form
    const unsigned char* p = id_data.data();
    Name name(d2i_X509_NAME(nullptr, &p, static_cast<long>(id_data.size())));
    ERR_clear_error();
    return name && p == id_data.data() + id_data.size() && X509_NAME_cmp(name.get(), X509_get_subject_name(x)) == 0;
  }
  // ID_IPV4_ADDR 1, ID_FQDN 2, ID_RFC822_ADDR 3, ID_IPV6_ADDR 5: a
  // subjectAltName of the same kind.
  int want = 0;
  switch (id_type) {
    case 1:
    case 5: want = GEN_IPADD; break;
    case 2: want = GEN_DNS; break;
    case 3: want = GEN_EMAIL; break;
    default: return false;
  }
  if (id_type == 1 && id_data.size() != 4) return false;
  if (id_type == 5 && id_data.size() != 16) return false;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != want) continue;
    const ASN1_STRING* s = g->d.ia5;  // the same ASN1_STRING member for all three kinds
    const Bytes v(ASN1_STRING_get0_data(s), static_cast<std::size_t>(ASN1_STRING_length(s)));
    if (want == GEN_IPADD) {
      found = v.size() == id_data.size() && std::equal(v.begin(), v.end(), id_data.begin());
    } else {
      // DNS names and mail domains compare without case (RFC 5280 7.2, 7.5).
      found = iequal(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()),
                     std::string_view(reinterpret_cast<const char*>(id_data.data()), id_data.size()));
    }
  }
  GENERAL_NAMES_free(names);
  return found;
}

Buffer Certificate::key_id_sha1() const {
  unsigned char* der = nullptr;
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(impl_->x509.get()), &der);
  if (n <= 0) return {};
  Buffer out(20);
  unsigned len = 0;
  const bool ok = EVP_Digest(der, static_cast<std::size_t>(n), out.data(), &len, EVP_sha1(), nullptr) == 1;
  OPENSSL_free(der);
  if (!ok || len != 20) return {};
  return out;
}

// ---- TrustStore -----------------------------------------------------------

struct TrustStore::Impl {
  OsslPtr<X509_STORE, X509_STORE_free> store;
  std::vector<Certificate> anchors;
};

TrustStore::TrustStore(const std::vector<std::filesystem::path>& ca_files) : impl_(std::make_unique<Impl>()) {
  impl_->store.reset(X509_STORE_new());
  if (!impl_->store) throw CryptoError(ossl_error("trust store"));
  for (const auto& f : ca_files) {
    for (auto& c : read_pem_certs(f)) {
      if (X509_STORE_add_cert(impl_->store.get(), c.impl_->x509.get()) != 1) {
        // The same anchor listed twice is harmless.
        const unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          throw CryptoError(fmt::format("{}: {}", f.string(), "cannot add the certificate to the trust store"));
        }
        continue;
      }
      impl_->anchors.push_back(std::move(c));
    }
  }
  if (impl_->anchors.empty()) throw CryptoError("no trust anchor");
}

TrustStore::~TrustStore() = default;
TrustStore::TrustStore(TrustStore&&) noexcept = default;
TrustStore& TrustStore::operator=(TrustStore&&) noexcept = default;

bool TrustStore::verify(const Certificate& end_entity, const std::vector<Certificate>& intermediates, std::int64_t now,
                        std::string& why) const {
  // sk_X509_free is a macro: no function to name in OsslPtr.
  struct StackFree {
    void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_free(p); }
  };
  OsslPtr<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new());
  std::unique_ptr<STACK_OF(X509), StackFree> chain(sk_X509_new_null());
  if (!ctx || !chain) {
    why = ossl_error("certificate check setup");
    return false;
  }
  for (const auto& c : intermediates) {
    if (sk_X509_push(chain.get(), c.impl_->x509.get()) <= 0) {
      why = ossl_error("certificate check setup");
      return false;
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), impl_->store.get(), end_entity.impl_->x509.get(), chain.get()) != 1) {
    why = ossl_error("certificate check setup");
    return false;
  }
  X509_VERIFY_PARAM* vp = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(vp, static_cast<time_t>(now));
  // A configured anchor need not be a self-signed root: an intermediate CA
  // (or the peer's own certificate) named in `ca:` is trusted as given.
  X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN);
  const int rc = X509_verify_cert(ctx.get());
  if (rc == 1) return true;
  const int err = X509_STORE_CTX_get_error(ctx.get());
  const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
  // OpenSSL's words, prefixed with what they mean for IKE where they are
  // obscure: a missing issuer is a peer from another CA (or one that left
  // out an intermediate).
  const char* meaning = "";
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      meaning = "not issued by a configured CA (ca:), or an intermediate CA certificate is missing: ";
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: meaning = "outside its validity period: "; break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: meaning = "forged or damaged: "; break;
    default: break;
  }
  why = fmt::format("{}{} (certificate \"{}\", depth {})", meaning, X509_verify_cert_error_string(err),
                    at != nullptr ? name_text(X509_get_subject_name(at)) : std::string("?"), depth);
  ERR_clear_error();
  return false;
}

Buffer TrustStore::certreq_data() const {
  Buffer out;
  for (const auto& c : impl_->anchors) {
    const Buffer id = c.key_id_sha1();
    out.insert(out.end(), id.begin(), id.end());
  }
  return out;
}

// ---- Signer ---------------------------------------------------------------

struct Signer::Impl {
  std::vector<Certificate> certs;  // ours first, then the chain
  std::vector<Certificate> chain;
  Pkey key;
  bool rsa = false;
  bool pss = false;  // an RSA-PSS key (RFC 4055): it signs only with PSS
  int curve = 0;     // ECDSA
};

Signer::Signer(const std::filesystem::path& cert_file, const std::filesystem::path& key_file)
    : impl_(std::make_unique<Impl>()) {
  impl_->certs = read_pem_certs(cert_file);
  for (std::size_t i = 1; i < impl_->certs.size(); ++i) impl_->chain.push_back(impl_->certs[i]);
  Bio bio(BIO_new_file(key_file.c_str(), "r"));
  if (!bio) throw CryptoError(fmt::format("{}: cannot open: {}", key_file.string(), ossl_error("file")));
  // No passphrase callback: an encrypted key fails here instead of asking.
  auto no_pass = [](char*, int, int, void*) -> int { return 0; };
  impl_->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_pass, nullptr));
  if (!impl_->key) {
    throw CryptoError(fmt::format("{}: {} (an unencrypted PEM private key is needed)", key_file.string(),
                                  ossl_error("no private key")));
  }
  impl_->rsa = is_rsa(impl_->key.get());
  impl_->pss = EVP_PKEY_is_a(impl_->key.get(), "RSA-PSS") == 1;
  impl_->curve = curve_of(impl_->key.get());
  if (!impl_->rsa && impl_->curve == 0) {
    throw CryptoError(fmt::format("{}: IKE signs with RSA or ECDSA (P-256, P-384, P-521) keys; this is {}",
                                  key_file.string(), EVP_PKEY_get0_type_name(impl_->key.get())));
  }
  if (X509_check_private_key(impl_->certs.front().impl_->x509.get(), impl_->key.get()) != 1) {
    ERR_clear_error();
    throw CryptoError(
        fmt::format("{}: the key is not the one of the certificate in {}", key_file.string(), cert_file.string()));
  }
}

Signer::~Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;

const Certificate& Signer::certificate() const noexcept { return impl_->certs.front(); }
const std::vector<Certificate>& Signer::chain() const noexcept { return impl_->chain; }

std::pair<AuthMethod, Buffer> Signer::sign(Bytes octets, const std::vector<SignatureHash>& peer_hashes,
                                           std::vector<std::string>& warnings) const {
  const Impl& m = *impl_;
  auto offered = [&](SignatureHash h) {
    return std::find(peer_hashes.begin(), peer_hashes.end(), h) != peer_hashes.end();
  };
  // RFC 7427 with the peer's hashes: the strongest common SHA-2 (for ECDSA
  // the curve's own hash first), SHA-1 only when nothing else is common.
  std::optional<SignatureHash> h;
  if (m.curve != 0) {
    const SignatureHash natural = m.curve == NID_X9_62_prime256v1 ? SignatureHash::sha256
                                  : m.curve == NID_secp384r1      ? SignatureHash::sha384
                                                                  : SignatureHash::sha512;
    if (offered(natural)) h = natural;
  }
  for (SignatureHash c : {SignatureHash::sha512, SignatureHash::sha384, SignatureHash::sha256}) {
    if (!h && offered(c)) h = c;
  }
  // PSS is defined here with SHA-2 only.
  if (!h && offered(SignatureHash::sha1) && !m.pss) {
    h = SignatureHash::sha1;
    warnings.emplace_back("signing the AUTH payload with SHA-1: the peer offers no SHA-2 hash (RFC 7427)");
  }
  if (h) {
    // An RSA key signs RSASSA-PKCS1-v1_5 as charon does by default (its
    // rsa_pss option is off), so that every RFC 7427 peer can check it; a
    // key made for RSA-PSS only can do nothing else.
    Buffer algid;
    if (m.pss) {
      algid = pss_algorithm_identifier(*h);
    } else {
      const Bytes a = algorithm_identifier(m.rsa, *h);
      algid.assign(a.begin(), a.end());
    }
    // ECDSA: DER, as RFC 7427 3 says.
    const Buffer sig = sign_with(m.key.get(), md_of(*h), octets, m.pss);
    Buffer out;
    out.reserve(1 + algid.size() + sig.size());
    out.push_back(static_cast<std::uint8_t>(algid.size()));
    out.insert(out.end(), algid.begin(), algid.end());
    out.insert(out.end(), sig.begin(), sig.end());
    return {AuthMethod::digital_signature, std::move(out)};
  }
  if (m.pss) {
    throw CryptoError(
        "the peer announced no SHA-2 signature hash (RFC 7427); an RSA-PSS key signs only RFC 7427 signatures with "
        "SHA-2");
  }
  if (m.rsa) {
    // A peer without RFC 7427 knows only method 1: RSASSA-PKCS1-v1_5 with
    // SHA-1 (RFC 7296 3.8), deprecated by RFC 8247 but the only way in.
    warnings.emplace_back(
        "the peer announced no RFC 7427 signature hash ipsentry uses: signing the AUTH payload with RSA and SHA-1 "
        "(method 1, deprecated by RFC 8247)");
    return {AuthMethod::rsa_sig, sign_with(m.key.get(), EVP_sha1(), octets)};
  }
  // RFC 4754: ECDSA with the curve's hash, r | s.
  const SignatureHash ch = m.curve == NID_X9_62_prime256v1 ? SignatureHash::sha256
                           : m.curve == NID_secp384r1      ? SignatureHash::sha384
                                                           : SignatureHash::sha512;
  const AuthMethod method = m.curve == NID_X9_62_prime256v1 ? AuthMethod::ecdsa_sha256_p256
                            : m.curve == NID_secp384r1      ? AuthMethod::ecdsa_sha384_p384
                                                            : AuthMethod::ecdsa_sha512_p521;
  const Buffer der = sign_with(m.key.get(), md_of(ch), octets);
  auto rs = der_to_rs(der, ecdsa_half(m.curve));
  if (!rs) throw CryptoError("ECDSA signature encoding");
  return {method, std::move(*rs)};
}

// ---- verify_auth ----------------------------------------------------------

bool verify_auth(AuthMethod method, Bytes auth_data, Bytes octets, const Certificate& peer, std::string& why,
                 std::vector<std::string>& warnings) {
  Pkey key(X509_get_pubkey(peer.impl_->x509.get()));
  if (!key) {
    why = ossl_error("the peer's certificate has no usable public key");
    return false;
  }
  const bool rsa = is_rsa(key.get());
  const bool pss_only = EVP_PKEY_is_a(key.get(), "RSA-PSS") == 1;
  const int curve = curve_of(key.get());
  if (rsa && EVP_PKEY_get_bits(key.get()) < 2048) {
    warnings.push_back(
        fmt::format("the peer's RSA key has {} bits; RFC 8247 asks for at least 2048", EVP_PKEY_get_bits(key.get())));
  }
  switch (method) {
    case AuthMethod::rsa_sig:
      if (!rsa || pss_only) {
        why = fmt::format("AUTH method 1 (RSASSA-PKCS1-v1_5) with a certificate whose key is {}",
                          pss_only ? "for RSASSA-PSS only" : "not RSA");
        return false;
      }
      warnings.emplace_back("the peer authenticated with AUTH method 1, RSA with SHA-1 (deprecated, RFC 8247)");
      return verify_with(key.get(), EVP_sha1(), nullptr, octets, auth_data, why);
    case AuthMethod::ecdsa_sha256_p256:
    case AuthMethod::ecdsa_sha384_p384:
    case AuthMethod::ecdsa_sha512_p521: {
      const int want = method == AuthMethod::ecdsa_sha256_p256   ? NID_X9_62_prime256v1
                       : method == AuthMethod::ecdsa_sha384_p384 ? NID_secp384r1
                                                                 : NID_secp521r1;
      const SignatureHash h = method == AuthMethod::ecdsa_sha256_p256   ? SignatureHash::sha256
                              : method == AuthMethod::ecdsa_sha384_p384 ? SignatureHash::sha384
                                                                        : SignatureHash::sha512;
      if (curve != want) {
        why = fmt::format("AUTH method {} needs an ECDSA {} key; the certificate's key is {}", static_cast<int>(method),
                          curve_name(want), rsa ? "RSA" : curve_name(curve));
        return false;
      }
      if (auth_data.size() != 2 * ecdsa_half(want)) {
        why = fmt::format("this RFC 4754 signature on {} is {} bytes, not {}", curve_name(want), auth_data.size(),
                          2 * ecdsa_half(want));
        return false;
      }
      const auto der = rs_to_der(auth_data);
      if (!der) {
        why = "ECDSA signature encoding";
        return false;
      }
      return verify_with(key.get(), md_of(h), nullptr, octets, *der, why);
    }
    case AuthMethod::digital_signature: break;
    case AuthMethod::psk: why = "AUTH method 2 is a pre-shared key, not a signature"; return false;
    default: why = fmt::format("AUTH method {} is not supported", static_cast<int>(method)); return false;
  }

  // RFC 7427 3: a one-byte length, the AlgorithmIdentifier, the signature.
  if (auth_data.empty() || auth_data[0] == 0 || auth_data.size() <= 1u + auth_data[0]) {
    why = "the digital signature's AlgorithmIdentifier length does not fit the AUTH data";
    return false;
  }
  const Bytes algid = auth_data.subspan(1, auth_data[0]);
  const Bytes sig = auth_data.subspan(1u + auth_data[0]);
  const unsigned char* p = algid.data();
  Algor alg(d2i_X509_ALGOR(nullptr, &p, static_cast<long>(algid.size())));
  if (!alg || p != algid.data() + algid.size()) {
    ERR_clear_error();
    why = "the digital signature's AlgorithmIdentifier is not DER";
    return false;
  }
  const ASN1_OBJECT* oid = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&oid, &ptype, &pval, alg.get());
  const int nid = OBJ_obj2nid(oid);
  auto sha1_warning = [&] {
    warnings.emplace_back("the peer signed its AUTH payload with SHA-1 (deprecated, RFC 8247)");
  };
  switch (nid) {
    case NID_sha1WithRSAEncryption:
    case NID_sha256WithRSAEncryption:
    case NID_sha384WithRSAEncryption:
    case NID_sha512WithRSAEncryption: {
      if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF) {
        why = "RSASSA-PKCS1-v1_5 with parameters other than NULL";
        return false;
      }
      if (!rsa) {
        why = "an RSA signature with a certificate whose key is not RSA";
        return false;
      }
      if (pss_only) {
        why = "an RSASSA-PKCS1-v1_5 signature with a certificate whose key is for RSASSA-PSS only";
        return false;
      }
      const SignatureHash h = nid == NID_sha1WithRSAEncryption     ? SignatureHash::sha1
                              : nid == NID_sha256WithRSAEncryption ? SignatureHash::sha256
                              : nid == NID_sha384WithRSAEncryption ? SignatureHash::sha384
                                                                   : SignatureHash::sha512;
      if (h == SignatureHash::sha1) sha1_warning();
      return verify_with(key.get(), md_of(h), nullptr, octets, sig, why);
    }
    case NID_rsassaPss: {
      if (!rsa) {
        why = "an RSASSA-PSS signature with a certificate whose key is not RSA";
        return false;
      }
      if (ptype != V_ASN1_SEQUENCE) {
        why = "RSASSA-PSS without its parameters";
        return false;
      }
      const auto* seq = static_cast<const ASN1_STRING*>(pval);
      const unsigned char* q = ASN1_STRING_get0_data(seq);
      PssParamsPtr pss(d2i_RSA_PSS_PARAMS(nullptr, &q, ASN1_STRING_length(seq)));
      if (!pss) {
        ERR_clear_error();
        why = "RSASSA-PSS parameters that do not parse";
        return false;
      }
      // RFC 4055 defaults: SHA-1, MGF1 with SHA-1, 20 bytes of salt.
      // A hash's AlgorithmIdentifier has a NULL parameter or none (RFC 4055 2.1).
      auto hash_params_ok = [](const X509_ALGOR* a) {
        return a->parameter == nullptr || a->parameter->type == V_ASN1_NULL;
      };
      PssParams pp;
      if (pss->hashAlgorithm != nullptr && !hash_params_ok(pss->hashAlgorithm)) {
        why = "RSASSA-PSS with hash parameters other than NULL";
        return false;
      }
      pp.md = pss->hashAlgorithm != nullptr ? EVP_get_digestbyobj(pss->hashAlgorithm->algorithm) : EVP_sha1();
      if (pss->maskGenAlgorithm != nullptr && OBJ_obj2nid(pss->maskGenAlgorithm->algorithm) != NID_mgf1) {
        why = "RSASSA-PSS with a mask generation function other than MGF1";
        return false;
      }
      // d2i_RSA_PSS_PARAMS leaves maskHash unset: MGF1's hash is the
      // AlgorithmIdentifier in the maskGenAlgorithm's parameter.
      pp.mgf_md = EVP_sha1();
      if (pss->maskGenAlgorithm != nullptr) {
        const ASN1_TYPE* mp = pss->maskGenAlgorithm->parameter;
        if (mp == nullptr || mp->type != V_ASN1_SEQUENCE) {
          why = "RSASSA-PSS with MGF1 but no hash for it";
          return false;
        }
        const unsigned char* m = ASN1_STRING_get0_data(mp->value.sequence);
        const int mlen = ASN1_STRING_length(mp->value.sequence);
        Algor mgf_hash(d2i_X509_ALGOR(nullptr, &m, mlen));
        if (!mgf_hash || m != ASN1_STRING_get0_data(mp->value.sequence) + mlen || !hash_params_ok(mgf_hash.get())) {
          ERR_clear_error();
          why = "RSASSA-PSS with an MGF1 hash that does not parse";
          return false;
        }
        pp.mgf_md = EVP_get_digestbyobj(mgf_hash->algorithm);
      }
      const long salt = pss->saltLength != nullptr ? ASN1_INTEGER_get(pss->saltLength) : 20;
      const long trailer = pss->trailerField != nullptr ? ASN1_INTEGER_get(pss->trailerField) : 1;
      // No salt is longer than the largest RSA modulus IKE meets (16384 bits).
      if (pp.md == nullptr || pp.mgf_md == nullptr || salt < 0 || salt > 2048 || trailer != 1) {
        why = "RSASSA-PSS parameters ipsentry does not support";
        return false;
      }
      pp.salt = static_cast<int>(salt);
      auto sha = [](int n) { return n == NID_sha1 || n == NID_sha256 || n == NID_sha384 || n == NID_sha512; };
      const int md_nid = EVP_MD_get_type(pp.md);
      const int mgf_nid = EVP_MD_get_type(pp.mgf_md);
      if (!sha(md_nid) || !sha(mgf_nid)) {
        why = fmt::format("RSASSA-PSS with {} and MGF1 with {}: only SHA-1 and SHA-2 are supported", OBJ_nid2sn(md_nid),
                          OBJ_nid2sn(mgf_nid));
        return false;
      }
      if (md_nid == NID_sha1 || mgf_nid == NID_sha1) sha1_warning();
      return verify_with(key.get(), pp.md, &pp, octets, sig, why);
    }
    case NID_ecdsa_with_SHA1:
    case NID_ecdsa_with_SHA256:
    case NID_ecdsa_with_SHA384:
    case NID_ecdsa_with_SHA512: {
      if (ptype != V_ASN1_UNDEF) {
        why = "ECDSA with parameters (RFC 5758 3.2: they must be absent)";
        return false;
      }
      if (curve == 0) {
        why = "an ECDSA signature with a certificate whose key is not ECDSA on P-256, P-384 or P-521";
        return false;
      }
      const SignatureHash h = nid == NID_ecdsa_with_SHA1     ? SignatureHash::sha1
                              : nid == NID_ecdsa_with_SHA256 ? SignatureHash::sha256
                              : nid == NID_ecdsa_with_SHA384 ? SignatureHash::sha384
                                                             : SignatureHash::sha512;
      if (h == SignatureHash::sha1) sha1_warning();
      // DER, checked by OpenSSL (which refuses non-canonical encodings).
      return verify_with(key.get(), md_of(h), nullptr, octets, sig, why);
    }
    default: {
      char text[80];
      OBJ_obj2txt(text, sizeof text, oid, 1);
      why = fmt::format("digital signature algorithm {} is not supported", text);
      return false;
    }
  }
}

}  // namespace ipsentry::ike
