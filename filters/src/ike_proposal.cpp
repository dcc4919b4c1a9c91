// Diffie-Hellman groups, proposals in strongSwan's swanctl.conf syntax and
// IKEv2 identities. The keywords are strongSwan's own spellings
// (proposal_keywords_static.txt) for the algorithms ipsentry implements;
// strongSwan's rules for completing a proposal (a PRF taken from the
// integrity algorithm, integrity dropped under AEAD, noesn by default) are
// followed so that a proposal copied from swanctl.conf means the same here.
#include "ipsentry/filters/ike_proposal.hpp"

#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <memory>

namespace ipsentry::filters {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool eat(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

struct Named {
  std::string_view name;
  DhGroup group;
};
constexpr std::array<Named, 9> kGroups{{
    {"none", DhGroup::none},
    {"modpnone", DhGroup::none},
    {"modp1024", DhGroup::modp1024},
    {"modp2048", DhGroup::modp2048},
    {"modp3072", DhGroup::modp3072},
    {"ecp256", DhGroup::ecp256},
    {"ecp384", DhGroup::ecp384},
    {"curve25519", DhGroup::curve25519},
    {"x25519", DhGroup::curve25519},
}};

// An AES keyword: "aes" (AES-128-CBC), "aes<bits>", "aes<bits>ctr",
// "aes<bits>gcm<icv>", "aes<bits>ccm<icv>", "aes<bits>gmac", where the ICV
// is given in bytes (8, 12, 16) or bits (64, 96, 128), or left out for 16.
std::optional<KeyedCipher> parse_aes(std::string_view s) {
  if (!eat(s, "aes")) return std::nullopt;
  if (s.empty()) return KeyedCipher{Cipher::aes_cbc, 16};
  std::uint16_t bytes = 0;
  if (eat(s, "128")) {
    bytes = 16;
  } else if (eat(s, "192")) {
    bytes = 24;
  } else if (eat(s, "256")) {
    bytes = 32;
  } else {
    return std::nullopt;
  }
  if (s.empty()) return KeyedCipher{Cipher::aes_cbc, bytes};
  if (s == "ctr") return KeyedCipher{Cipher::aes_ctr, bytes};
  if (s == "gmac") return KeyedCipher{Cipher::aes_gmac, bytes};
  const bool gcm = eat(s, "gcm");
  if (!gcm && !eat(s, "ccm")) return std::nullopt;
  int icv = 0;
  if (s.empty() || s == "16" || s == "128") {
    icv = 16;
  } else if (s == "12" || s == "96") {
    icv = 12;
  } else if (s == "8" || s == "64") {
    icv = 8;
  } else {
    return std::nullopt;
  }
  Cipher c = Cipher::null;
  switch (icv) {
    case 8: c = gcm ? Cipher::aes_gcm_8 : Cipher::aes_ccm_8; break;
    case 12: c = gcm ? Cipher::aes_gcm_12 : Cipher::aes_ccm_12; break;
    default: c = gcm ? Cipher::aes_gcm_16 : Cipher::aes_ccm_16; break;
  }
  return KeyedCipher{c, bytes};
}

std::optional<KeyedCipher> parse_cipher(std::string_view s) {
  if (auto a = parse_aes(s)) return a;
  if (s == "chacha20poly1305") return KeyedCipher{Cipher::chacha20_poly1305, 32};
  if (s == "3des") return KeyedCipher{Cipher::tdes_cbc, 24};
  if (s == "des") return KeyedCipher{Cipher::des_cbc, 8};
  if (s == "null") return KeyedCipher{Cipher::null, 0};
  return std::nullopt;
}

std::optional<Integrity> parse_integrity(std::string_view s) {
  if (s == "sha" || s == "sha1") return Integrity::hmac_sha1_96;
  if (s == "sha256" || s == "sha2_256") return Integrity::hmac_sha256_128;
  if (s == "sha384" || s == "sha2_384") return Integrity::hmac_sha384_192;
  if (s == "sha512" || s == "sha2_512") return Integrity::hmac_sha512_256;
  if (s == "md5") return Integrity::hmac_md5_96;
  if (s == "aesxcbc") return Integrity::aes_xcbc_96;
  return std::nullopt;
}

std::optional<Prf> parse_prf(std::string_view s) {
  if (s == "prfsha1") return Prf::hmac_sha1;
  if (s == "prfsha256") return Prf::hmac_sha256;
  if (s == "prfsha384") return Prf::hmac_sha384;
  if (s == "prfsha512") return Prf::hmac_sha512;
  if (s == "prfmd5") return Prf::hmac_md5;
  return std::nullopt;
}

// strongSwan's PRF for a proposal that names none: the integrity
// algorithm's hash.
std::optional<Prf> prf_of(Integrity i) {
  switch (i) {
    case Integrity::hmac_sha1_96: return Prf::hmac_sha1;
    case Integrity::hmac_sha256_128: return Prf::hmac_sha256;
    case Integrity::hmac_sha384_192: return Prf::hmac_sha384;
    case Integrity::hmac_sha512_256: return Prf::hmac_sha512;
    case Integrity::hmac_md5_96: return Prf::hmac_md5;
    default: return std::nullopt;
  }
}

// The IKE SA protection ipsentry's SK payload implements (RFC 7296 3.14,
// RFC 5282, RFC 7634): the issue's AES-CBC and AES-GCM, ChaCha20-Poly1305,
// and 3DES for old peers.
bool ike_cipher(Cipher c) {
  switch (c) {
    case Cipher::aes_cbc:
    case Cipher::aes_gcm_8:
    case Cipher::aes_gcm_12:
    case Cipher::aes_gcm_16:
    case Cipher::chacha20_poly1305:
    case Cipher::tdes_cbc: return true;
    default: return false;
  }
}

bool ike_integrity(Integrity i) {
  return i == Integrity::hmac_sha1_96 || i == Integrity::hmac_sha256_128 || i == Integrity::hmac_sha384_192 ||
         i == Integrity::hmac_sha512_256 || i == Integrity::hmac_md5_96;
}

template <class T>
void add_once(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

constexpr std::string_view kIkeKeywords =
    "encryption aes128|aes192|aes256 (CBC), aes128gcm16|aes256gcm16 (also gcm8, gcm12), chacha20poly1305, 3des; "
    "integrity sha256|sha384|sha512, sha1, md5; prf prfsha256|prfsha384|prfsha512, prfsha1, prfmd5; "
    "DH group modp2048|modp3072|ecp256|ecp384|curve25519 (x25519), modp1024";
constexpr std::string_view kChildKeywords =
    "encryption aes128|aes192|aes256 (CBC), aes128ctr, aes128gcm16 (also gcm8, gcm12), aes128ccm16 (also ccm8, "
    "ccm12), aes128gmac, chacha20poly1305, 3des, null; integrity sha256|sha384|sha512, sha1, aesxcbc, md5; "
    "DH group modp2048|modp3072|ecp256|ecp384|curve25519, modp1024, none; esn, noesn";

std::string unknown(std::string_view token, std::string_view text, std::string_view known) {
  return fmt::format("'{}' in '{}' is not an algorithm ipsentry negotiates (it knows: {})", token, text, known);
}

// Splits at '-'; an empty token (a doubled or trailing dash) is an error.
std::optional<std::string> tokens(std::string_view text, std::vector<std::string>& out) {
  if (text.empty()) return std::string("an empty proposal");
  std::size_t pos = 0;
  while (true) {
    const std::size_t dash = text.find('-', pos);
    const std::string_view t = text.substr(pos, dash == std::string_view::npos ? dash : dash - pos);
    if (t.empty()) return fmt::format("'{}' has an empty algorithm between dashes", text);
    out.push_back(lower(t));
    if (dash == std::string_view::npos) break;
    pos = dash + 1;
  }
  return std::nullopt;
}

}  // namespace

// ---- Diffie-Hellman groups ----------------------------------------------------

const char* to_string(DhGroup g) noexcept {
  switch (g) {
    case DhGroup::none: return "none";
    case DhGroup::modp1024: return "modp1024";
    case DhGroup::modp2048: return "modp2048";
    case DhGroup::modp3072: return "modp3072";
    case DhGroup::ecp256: return "ecp256";
    case DhGroup::ecp384: return "ecp384";
    case DhGroup::curve25519: return "curve25519";
  }
  return "?";
}

std::optional<DhGroup> find_dh_group(std::string_view name) noexcept {
  std::array<char, 16> buf{};
  if (name.empty() || name.size() > buf.size()) return std::nullopt;
  for (std::size_t i = 0; i < name.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  const std::string_view l(buf.data(), name.size());
  for (const auto& g : kGroups) {
    if (g.name == l) return g.group;
  }
  return std::nullopt;
}

std::optional<DhGroup> dh_group_from_id(std::uint16_t id) noexcept {
  for (const auto& g : kGroups) {
    if (static_cast<std::uint16_t>(g.group) == id) return g.group;
  }
  return std::nullopt;
}

bool deprecated(DhGroup g) noexcept { return g == DhGroup::modp1024; }

std::string KeyedCipher::str() const {
  const unsigned bits = key_bytes * 8u;
  switch (cipher) {
    case Cipher::aes_cbc: return fmt::format("aes{}", bits);
    case Cipher::aes_ctr: return fmt::format("aes{}ctr", bits);
    case Cipher::aes_gcm_8: return fmt::format("aes{}gcm8", bits);
    case Cipher::aes_gcm_12: return fmt::format("aes{}gcm12", bits);
    case Cipher::aes_gcm_16: return fmt::format("aes{}gcm16", bits);
    case Cipher::aes_ccm_8: return fmt::format("aes{}ccm8", bits);
    case Cipher::aes_ccm_12: return fmt::format("aes{}ccm12", bits);
    case Cipher::aes_ccm_16: return fmt::format("aes{}ccm16", bits);
    case Cipher::aes_gmac: return fmt::format("aes{}gmac", bits);
    case Cipher::chacha20_poly1305: return "chacha20poly1305";
    case Cipher::tdes_cbc: return "3des";
    case Cipher::des_cbc: return "des";
    case Cipher::null: return "null";
    default: return std::string(cipher_info(cipher).name);
  }
}

// ---- proposals -----------------------------------------------------------------

std::optional<std::string> parse_ike_proposal(std::string_view text, IkeProposal& out) {
  out = IkeProposal{};
  out.text = std::string(text);
  std::vector<std::string> toks;
  if (auto e = tokens(text, toks)) return e;
  for (const auto& t : toks) {
    if (auto c = parse_cipher(t)) {
      if (!ike_cipher(c->cipher)) {
        return fmt::format(
            "'{}' in '{}' is not offered for IKE SAs here (ESP only); use aes{}, aes{}gcm16 or "
            "chacha20poly1305",
            t, text, c->key_bytes ? c->key_bytes * 8 : 128, c->key_bytes ? c->key_bytes * 8 : 128);
      }
      add_once(out.encryption, *c);
    } else if (auto i = parse_integrity(t)) {
      if (!ike_integrity(*i)) return fmt::format("'{}' in '{}' is not offered for IKE SAs here (ESP only)", t, text);
      add_once(out.integrity, *i);
    } else if (auto p = parse_prf(t)) {
      add_once(out.prf, *p);
    } else if (auto g = find_dh_group(t)) {
      // strongSwan drops NONE from IKE proposals: an IKE SA always has a KE.
      if (*g != DhGroup::none) add_once(out.dh, *g);
    } else if (t == "esn" || t == "noesn") {
      return fmt::format("'{}' in '{}': extended sequence numbers belong to ESP and AH proposals", t, text);
    } else {
      return unknown(t, text, kIkeKeywords);
    }
  }
  if (out.prf.empty()) {
    for (auto i : out.integrity) {
      if (auto p = prf_of(i)) add_once(out.prf, *p);
    }
  }
  if (out.prf.empty()) {
    return fmt::format(
        "'{}' has no PRF: an AEAD proposal names one (prfsha256, ...), a classic one gets it from its "
        "integrity algorithm",
        text);
  }
  if (out.dh.empty()) return fmt::format("'{}' has no DH group: every IKE proposal needs one (ecp256, ...)", text);
  if (out.encryption.empty()) return fmt::format("'{}' has no encryption algorithm", text);
  const bool any_aead = std::any_of(out.encryption.begin(), out.encryption.end(),
                                    [](const KeyedCipher& k) { return cipher_info(k.cipher).aead(); });
  const bool all_aead = std::all_of(out.encryption.begin(), out.encryption.end(),
                                    [](const KeyedCipher& k) { return cipher_info(k.cipher).aead(); });
  if (any_aead && !all_aead) {
    return fmt::format("'{}' mixes AEAD and classic encryption; write them as two proposals", text);
  }
  if (all_aead) {
    out.integrity.clear();  // RFC 7296 3.3: combined modes take no integrity transform
  } else if (out.integrity.empty()) {
    return fmt::format("'{}' has no integrity algorithm, which classic (non-AEAD) encryption needs", text);
  }
  return std::nullopt;
}

std::optional<std::string> parse_child_proposal(std::string_view text, IpsecProtocol protocol, ChildProposal& out) {
  out = ChildProposal{};
  out.protocol = protocol;
  out.text = std::string(text);
  out.esn.clear();
  std::vector<std::string> toks;
  if (auto e = tokens(text, toks)) return e;
  for (const auto& t : toks) {
    if (auto c = parse_cipher(t)) {
      if (protocol == IpsecProtocol::ah) {
        return fmt::format("'{}' in '{}': AH does not encrypt; an AH proposal names integrity algorithms", t, text);
      }
      add_once(out.encryption, *c);
    } else if (auto i = parse_integrity(t)) {
      add_once(out.integrity, *i);
    } else if (parse_prf(t)) {
      // strongSwan ignores a PRF in ESP and AH proposals; so do we.
    } else if (auto g = find_dh_group(t)) {
      add_once(out.dh, *g);
    } else if (t == "esn" || t == "noesn") {
      const bool esn = t == "esn";
      if (std::find(out.esn.begin(), out.esn.end(), esn) == out.esn.end()) out.esn.push_back(esn);
    } else {
      return unknown(t, text, kChildKeywords);
    }
  }
  if (out.esn.empty()) out.esn.push_back(false);
  if (protocol == IpsecProtocol::ah) {
    if (out.integrity.empty()) return fmt::format("'{}' has no integrity algorithm, which AH needs", text);
    return std::nullopt;
  }
  if (out.encryption.empty()) return fmt::format("'{}' has no encryption algorithm (use null for none)", text);
  const bool any_aead = std::any_of(out.encryption.begin(), out.encryption.end(),
                                    [](const KeyedCipher& k) { return cipher_info(k.cipher).aead(); });
  const bool all_aead = std::all_of(out.encryption.begin(), out.encryption.end(),
                                    [](const KeyedCipher& k) { return cipher_info(k.cipher).aead(); });
  if (any_aead && !all_aead) {
    return fmt::format("'{}' mixes AEAD and classic encryption; write them as two proposals", text);
  }
  if (all_aead) out.integrity.clear();
  return std::nullopt;
}

namespace {

// RFC 8247 (IKE) and RFC 8221 (ESP, AH) deprecate the same ciphers, SHA-1,
// MD5 and modp1024; the PRFs are IKE's only.
std::vector<std::string> deprecated_of(const std::vector<KeyedCipher>& enc, const std::vector<Integrity>& integ,
                                       const std::vector<Prf>& prf, const std::vector<DhGroup>& dh) {
  std::vector<std::string> out;
  for (const auto& c : enc) {
    if (cipher_info(c.cipher).deprecated) out.push_back(c.str());
  }
  for (auto i : integ) {
    if (i == Integrity::hmac_sha1_96) out.emplace_back("sha1");
    if (i == Integrity::hmac_md5_96) out.emplace_back("md5");
  }
  for (auto x : prf) {
    if (x == Prf::hmac_sha1) out.emplace_back("prfsha1");
    if (x == Prf::hmac_md5) out.emplace_back("prfmd5");
  }
  for (auto g : dh) {
    if (deprecated(g)) out.emplace_back(to_string(g));
  }
  return out;
}

}  // namespace

std::vector<std::string> deprecated_algorithms(const IkeProposal& p) {
  return deprecated_of(p.encryption, p.integrity, p.prf, p.dh);
}

std::vector<std::string> deprecated_algorithms(const ChildProposal& p) {
  return deprecated_of(p.encryption, p.integrity, {}, p.dh);
}

std::vector<std::string> ignored_integrity(std::string_view text) {
  std::vector<std::string> toks;
  if (tokens(text, toks)) return {};
  std::vector<std::string> integ;
  bool any_cipher = false;
  for (const auto& t : toks) {
    if (auto c = parse_cipher(t)) {
      if (!cipher_info(c->cipher).aead()) return {};
      any_cipher = true;
    } else if (parse_integrity(t)) {
      integ.push_back(t);
    }
  }
  return any_cipher ? integ : std::vector<std::string>{};
}

// ---- identities ---------------------------------------------------------------------

namespace {

struct NameFree {
  void operator()(X509_NAME* n) const noexcept { X509_NAME_free(n); }
};
using NamePtr = std::unique_ptr<X509_NAME, NameFree>;

// "C=CH, O=example, CN=gw1" (also "/"-separated, as openssl prints it)
// into an X509_NAME in the order written, which is the order strongSwan's
// DNs are encoded in.
std::optional<std::string> parse_dn(std::string_view text, NamePtr& out) {
  NamePtr name(X509_NAME_new());
  if (!name) return std::string("out of memory");
  std::string_view s = text;
  if (!s.empty() && s.front() == '/') s.remove_prefix(1);
  const char sep = text.find(',') == std::string_view::npos && text.find('/') != std::string_view::npos ? '/' : ',';
  while (!s.empty()) {
    const std::size_t end = s.find(sep);
    std::string_view rdn = s.substr(0, end);
    s = end == std::string_view::npos ? std::string_view{} : s.substr(end + 1);
    while (!rdn.empty() && rdn.front() == ' ') rdn.remove_prefix(1);
    while (!rdn.empty() && rdn.back() == ' ') rdn.remove_suffix(1);
    if (rdn.empty()) continue;
    const std::size_t eq = rdn.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return fmt::format("'{}' in the DN is not attribute=value", rdn);
    }
    std::string attr(rdn.substr(0, eq));
    while (!attr.empty() && attr.back() == ' ') attr.pop_back();
    std::string_view value = rdn.substr(eq + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (value.empty()) return fmt::format("'{}' in the DN has no value", attr);
    if (OBJ_txt2nid(attr.c_str()) == NID_undef) return fmt::format("'{}' is not a DN attribute OpenSSL knows", attr);
    if (X509_NAME_add_entry_by_txt(name.get(), attr.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()), static_cast<int>(value.size()),
                                   -1, 0) != 1) {
      return fmt::format("'{}={}' cannot be encoded in a DN", attr, value);
    }
  }
  if (X509_NAME_entry_count(name.get()) == 0) return std::string("an empty DN");
  out = std::move(name);
  return std::nullopt;
}

std::string dn_text(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, name, 0,
                     (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<std::size_t>(len > 0 ? len : 0));
  BIO_free(bio);
  return s;
}

NamePtr dn_from_der(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  NamePtr n(d2i_X509_NAME(nullptr, &p, static_cast<long>(der.size())));
  if (n && p != der.data() + der.size()) return nullptr;  // trailing bytes: not one DN
  return n;
}

bool iequal(std::string_view a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(b[i])) return false;
  }
  return true;
}

bool dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_' || c == '*';
  });
}

std::optional<std::vector<std::uint8_t>> unhex(std::string_view s) {
  if (s.substr(0, 2) == "0x" || s.substr(0, 2) == "0X") s.remove_prefix(2);
  if (s.empty() || s.size() % 2 != 0) return std::nullopt;
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < s.size(); i += 2) {
    std::uint8_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
    if (ec != std::errc{} || p != s.data() + i + 2) return std::nullopt;
    out.push_back(v);
  }
  return out;
}

}  // namespace

std::optional<std::string> parse_identity(std::string_view text, IkeIdentity& out) {
  out = IkeIdentity{};
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return std::string("an empty identity");
  if (text == "any" || text == "%any") return std::nullopt;
  std::string_view rest = text;
  // strongSwan's spellings of a key ID: "keyid:<hex>" and "@#<hex>".
  if (eat(rest, "keyid:") || eat(rest, "@#")) {
    auto k = unhex(rest);
    if (!k) return fmt::format("'{}': a key ID is written as hex digits", text);
    out.kind = IkeIdentity::Kind::key_id;
    out.text = lower(rest.substr(0, 2) == "0x" || rest.substr(0, 2) == "0X" ? rest.substr(2) : rest);
    return std::nullopt;
  }
  if (auto a = dissect::IpAddr::parse(text)) {
    out.kind = IkeIdentity::Kind::address;
    out.address = *a;
    return std::nullopt;
  }
  if (text.find('=') != std::string_view::npos) {
    NamePtr name;
    if (auto e = parse_dn(text, name)) return fmt::format("'{}' is not a distinguished name: {}", text, *e);
    unsigned char* der = nullptr;
    const int len = i2d_X509_NAME(name.get(), &der);
    if (len <= 0) return fmt::format("'{}' cannot be encoded as a distinguished name", text);
    out.der.assign(der, der + len);
    OPENSSL_free(der);
    out.kind = IkeIdentity::Kind::dn;
    out.text = dn_text(name.get());
    return std::nullopt;
  }
  if (rest.front() == '@') {
    rest.remove_prefix(1);
    // "@@user@example.org" is strongSwan's explicit RFC 822 form.
    if (eat(rest, "@")) {
      if (rest.find('@') == std::string_view::npos) return fmt::format("'{}' is not user@fqdn", text);
      out.kind = IkeIdentity::Kind::email;
      out.text = std::string(rest);
      return std::nullopt;
    }
    if (!dns_name(rest)) return fmt::format("'{}' is not a DNS name", text);
    out.kind = IkeIdentity::Kind::fqdn;
    out.text = std::string(rest);
    return std::nullopt;
  }
  const std::size_t at = text.find('@');
  if (at != std::string_view::npos) {
    if (at == 0 || at + 1 == text.size() || !dns_name(text.substr(at + 1))) {
      return fmt::format("'{}' is not user@fqdn", text);
    }
    out.kind = IkeIdentity::Kind::email;
    out.text = std::string(text);
    return std::nullopt;
  }
  if (!dns_name(text)) {
    return fmt::format("'{}' is not an address, a DNS name, user@fqdn, a DN (C=.., O=.., CN=..) or keyid:<hex>", text);
  }
  out.kind = IkeIdentity::Kind::fqdn;
  out.text = std::string(text);
  return std::nullopt;
}

std::string IkeIdentity::str() const {
  switch (kind) {
    case Kind::any: return "any";
    case Kind::address: return address.str();
    case Kind::key_id: return "keyid:" + text;
    default: return text;
  }
}

std::uint8_t IkeIdentity::id_type() const noexcept {
  switch (kind) {
    case Kind::address: return address.is_v4() ? 1 : 5;
    case Kind::fqdn: return 2;
    case Kind::email: return 3;
    case Kind::dn: return 9;
    case Kind::key_id: return 11;
    case Kind::any: break;
  }
  return 0;
}

std::vector<std::uint8_t> IkeIdentity::id_data() const {
  switch (kind) {
    case Kind::address: return {address.data(), address.data() + address.size()};
    case Kind::fqdn:
    case Kind::email: return {text.begin(), text.end()};
    case Kind::dn: return der;
    case Kind::key_id: return unhex(text).value_or(std::vector<std::uint8_t>{});
    case Kind::any: break;
  }
  return {};
}

bool IkeIdentity::matches(std::uint8_t type, std::span<const std::uint8_t> data) const {
  if (kind == Kind::any) return true;
  if (type != id_type()) return false;
  switch (kind) {
    case Kind::address: return data.size() == address.size() && std::equal(data.begin(), data.end(), address.data());
    case Kind::fqdn:
    case Kind::email:
      // DNS names and the domain of a mail address compare without case;
      // strongSwan compares the whole RFC 822 identity that way too.
      return iequal(text, data);
    case Kind::key_id: {
      const auto mine = id_data();
      return std::equal(mine.begin(), mine.end(), data.begin(), data.end());
    }
    case Kind::dn: {
      // The same name may come with other string types (PrintableString vs
      // UTF8String): compare OpenSSL's canonical forms, not the bytes.
      NamePtr theirs = dn_from_der(data);
      NamePtr ours = dn_from_der(der);
      return theirs && ours && X509_NAME_cmp(theirs.get(), ours.get()) == 0;
    }
    case Kind::any: break;
  }
  return false;
}

}  // namespace ipsentry::filters
