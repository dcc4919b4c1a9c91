#include "ipsentry/filters/config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <set>

#include "config_internal.hpp"
#include "ipsentry/filters/file_read.hpp"
#include "ipsentry/filters/key_hygiene.hpp"

namespace ipsentry::filters {

namespace fs = std::filesystem;
using dissect::IpAddr;
using dissect::IpPrefix;

ConfigError::ConfigError(std::string file, int line, std::string field, const std::string& message)
    : std::runtime_error([&] {
        std::string where = file;
        if (line > 0) where += fmt::format(":{}", line);
        if (!field.empty()) return fmt::format("{}: {}: {}", where, field, message);
        return fmt::format("{}: {}", where, message);
      }()),
      file_(std::move(file)),
      line_(line),
      field_(std::move(field)) {}

std::string Origin::str() const { return line > 0 ? fmt::format("{}:{}", file, line) : file; }

int Origin::line_of(std::string_view field) const noexcept {
  for (const auto& [name, l] : field_lines) {
    if (name == field) return l;
  }
  return line;
}

const char* to_string(IpsecProtocol p) noexcept { return p == IpsecProtocol::ah ? "ah" : "esp"; }
const char* to_string(Direction d) noexcept {
  switch (d) {
    case Direction::inbound: return "inbound";
    case Direction::outbound: return "outbound";
    default: return "unspecified";
  }
}
const char* to_string(SaMode m) noexcept {
  switch (m) {
    case SaMode::transport: return "transport";
    case SaMode::tunnel: return "tunnel";
    default: return "unspecified";
  }
}

const char* to_string(Exemption e) noexcept {
  switch (e) {
    case Exemption::ike: return "ike";
    case Exemption::neighbor_discovery: return "neighbor-discovery";
    case Exemption::kerberos: return "kerberos";
    case Exemption::rsvp: return "rsvp";
    case Exemption::multicast: return "multicast";
    case Exemption::broadcast: return "broadcast";
    case Exemption::count_: break;
  }
  return "?";
}

std::optional<Exemption> find_exemption(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kExemptionCount; ++i) {
    const auto e = static_cast<Exemption>(i);
    if (name == to_string(e)) return e;
  }
  return std::nullopt;
}

std::string ExemptionSet::str() const {
  std::string out;
  for (std::size_t i = 0; i < kExemptionCount; ++i) {
    const auto e = static_cast<Exemption>(i);
    if (has(e)) out += (out.empty() ? "" : ", ") + std::string(to_string(e));
  }
  return out.empty() ? "none" : out;
}

SaConfig SaConfig::clone() const {
  SaConfig c;
  c.name = name;
  c.spi = spi;
  c.protocol = protocol;
  c.direction = direction;
  c.src = src;
  c.dst = dst;
  c.mode = mode;
  c.cipher = cipher;
  c.enc_key = enc_key.clone();
  c.integrity = integrity;
  c.auth_key = auth_key.clone();
  c.esn = esn;
  c.replay_window = replay_window;
  c.encap = encap;
  c.lifetime = lifetime;
  c.initial_seq = initial_seq;
  c.origin = origin;
  return c;
}

std::string SaConfig::describe() const {
  std::string s =
      spi ? fmt::format("spi 0x{:08x} {}", *spi, to_string(protocol)) : fmt::format("any-spi {}", to_string(protocol));
  if (dst) s += " to " + dst->str();
  if (src) s += " from " + src->str();
  return s;
}

IkeSaConfig IkeSaConfig::clone() const {
  IkeSaConfig c;
  c.name = name;
  c.version = version;
  c.spi_i = spi_i;
  c.spi_r = spi_r;
  c.cipher = cipher;
  c.integrity = integrity;
  c.prf = prf;
  c.sk_ei = sk_ei.clone();
  c.sk_er = sk_er.clone();
  c.sk_ai = sk_ai.clone();
  c.sk_ar = sk_ar.clone();
  c.sk_d = sk_d.clone();
  c.enc_key = enc_key.clone();
  c.origin = origin;
  return c;
}

std::string IkeSaConfig::describe() const {
  std::string s = fmt::format("IKEv{} SA", version);
  if (spi_i) s += fmt::format(" {:016x}", *spi_i);
  if (spi_r) s += fmt::format("/{:016x}", *spi_r);
  if (!spi_i && !spi_r) s += " (SPIs not given)";
  return s;
}

void validate_ike_sa(const IkeSaConfig& sa, const std::string& f, std::vector<std::string>& warnings) {
  const Origin& o = sa.origin;
  auto err = [&](const std::string& field, const std::string& msg) {
    throw ConfigError(o.file, o.line_of(field), f + field, msg);
  };
  const std::string who = sa.name.empty() ? sa.describe() : sa.name;
  if (sa.version == 1) {
    if (sa.enc_key.empty() && sa.sk_d.empty()) err("enc_key", "an IKEv1 SA needs enc_key (the phase 1 encryption key)");
    if (!sa.sk_ei.empty() || !sa.sk_er.empty() || !sa.sk_ai.empty() || !sa.sk_ar.empty()) {
      err("sk_ei", "sk_ei/sk_er/sk_ai/sk_ar are IKEv2 keys; IKEv1 takes enc_key and skeyid_d");
    }
    if (sa.cipher) {
      const Cipher c = *sa.cipher;
      if (c != Cipher::aes_cbc && c != Cipher::tdes_cbc && c != Cipher::des_cbc) {
        err("encryption", "IKEv1 phase 1 encryption must be des-cbc, 3des-cbc or aes-cbc");
      }
      if (auto e = check_cipher_key(c, sa.enc_key.size())) err("enc_key", *e);
    } else if (!sa.enc_key.empty() && sa.enc_key.size() != 8 && sa.enc_key.size() != 16 && sa.enc_key.size() != 24 &&
               sa.enc_key.size() != 32) {
      err("enc_key",
          fmt::format("a phase 1 encryption key is 8, 16, 24 or 32 bytes; this one is {} bytes", sa.enc_key.size()));
    }
    if (sa.cipher && cipher_info(*sa.cipher).deprecated) {
      warnings.push_back(fmt::format("{}: IKE SA {}: {} is deprecated (RFC 8247); accepted for old configurations",
                                     o.str(), who, cipher_info(*sa.cipher).name));
    }
    return;
  }
  if (sa.version != 2) err("version", "version must be 1 or 2");
  if (!sa.enc_key.empty()) err("enc_key", "enc_key is the IKEv1 phase 1 key; IKEv2 takes sk_ei and sk_er");
  const bool have_enc = !sa.sk_ei.empty() || !sa.sk_er.empty();
  if (!have_enc && sa.sk_d.empty()) err("sk_ei", "an IKEv2 SA needs sk_ei and sk_er (and sk_d to learn ESP keys)");
  if (have_enc && (sa.sk_ei.size() != sa.sk_er.size())) err("sk_er", "sk_ei and sk_er must have the same length");
  if (sa.sk_ai.size() != sa.sk_ar.size()) err("sk_ar", "sk_ai and sk_ar must have the same length");
  if (sa.cipher) {
    const CipherInfo& ci = cipher_info(*sa.cipher);
    if (!ci.supported || ci.implicit_iv || ci.mode == CipherMode::gmac) {
      err("encryption", fmt::format("{} cannot protect IKEv2 messages here", ci.name));
    }
    if (have_enc) {
      if (auto e = check_cipher_key(*sa.cipher, sa.sk_ei.size())) err("sk_ei", *e);
    }
    if (ci.aead() && sa.integrity && *sa.integrity != Integrity::none) {
      err("integrity", fmt::format("{} already provides integrity; set integrity: none", ci.name));
    }
    if (ci.deprecated) {
      warnings.push_back(fmt::format("{}: IKE SA {}: {} is deprecated (RFC 8247); accepted for old configurations",
                                     o.str(), who, ci.name));
    }
  }
  if (sa.integrity && *sa.integrity != Integrity::none) {
    const IntegrityInfo& ii = integrity_info(*sa.integrity);
    if (!ii.supported) err("integrity", fmt::format("{} cannot check IKEv2 messages", ii.name));
    if (!ii.checks) {
      warnings.push_back(
          fmt::format("{}: IKE SA {}: no integrity key: the {}-byte ICVs of its messages are skipped, not checked",
                      o.str(), who, ii.icv_len));
    } else if (!sa.sk_ai.empty()) {
      if (auto e = check_integrity_key(*sa.integrity, sa.sk_ai.size())) err("sk_ai", *e);
    }
  }
}

std::string AddressSelector::str() const {
  switch (kind) {
    case Kind::any: return "any";
    case Kind::me: return "me";
    default: return prefix.str();
  }
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t mult = 1;
  char last = text.back();
  switch (last) {
    case 'k':
    case 'K': mult = 1ull << 10; break;
    case 'm':
    case 'M': mult = 1ull << 20; break;
    case 'g':
    case 'G': mult = 1ull << 30; break;
    case 't':
    case 'T': mult = 1ull << 40; break;
    default: break;
  }
  if (mult != 1) text.remove_suffix(1);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size()) return std::nullopt;
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

SecretBytes read_key_file(const fs::path& path, const Origin& where, const std::string& field) {
  std::string buf;
  std::string why;
  if (!read_bounded(path, kMaxKeyFile, buf, why)) {
    throw ConfigError(where.file, where.line, field,
                      fmt::format("cannot read key file '{}': it {}", path.string(), why));
  }
  if (buf.empty())
    throw ConfigError(where.file, where.line, field, fmt::format("key file '{}' is empty", path.string()));
  SecretBytes key(std::span(reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size()));
  cleanse(buf.data(), buf.size());
  return key;
}

void validate_sa(const SaConfig& sa, const std::string& f, std::vector<std::string>& warnings) {
  const Origin& o = sa.origin;
  const CipherInfo& ci = cipher_info(sa.cipher);
  const IntegrityInfo& ii = integrity_info(sa.integrity);
  auto err = [&](const std::string& field, const std::string& msg) {
    throw ConfigError(o.file, o.line_of(field), f + field, msg);
  };
  const std::string who = sa.name.empty() ? sa.describe() : sa.name;

  if (sa.protocol == IpsecProtocol::ah) {
    if (sa.cipher != Cipher::null) err("encryption", "AH does not encrypt; remove the encryption setting or use ESP");
    if (sa.integrity == Integrity::none) err("auth", "AH needs an integrity algorithm (e.g. hmac-sha256-128)");
    if (sa.encap) err("encap", "AH cannot be carried in UDP (RFC 3948 covers ESP only)");
  }
  if (!ci.supported) {
    warnings.push_back(fmt::format(
        "{}: SA {}: {} is obsolete and not supported; its packets are reported as unsupported", o.str(), who, ci.name));
  } else if (auto e = check_cipher_key(sa.cipher, sa.enc_key.size())) {
    err("enc_key", *e);
  }
  if (ci.aead() && sa.integrity != Integrity::none) {
    err("auth", fmt::format("{} already provides integrity; set auth: none (RFC 4303 section 3.2)", ci.name));
  }
  if (!ii.supported) {
    warnings.push_back(
        fmt::format("{}: SA {}: {} is not supported; its packets are reported as unsupported", o.str(), who, ii.name));
  } else if (!ii.checks) {
    warnings.push_back(
        fmt::format("{}: SA {}: no integrity key: {}-byte ICVs are skipped, not checked", o.str(), who, ii.icv_len));
  }
  if (auto e = check_integrity_key(sa.integrity, sa.auth_key.size())) err("auth_key", *e);
  if (auto w = integrity_key_warning(sa.integrity, sa.auth_key.size())) {
    warnings.push_back(fmt::format("{}: SA {}: {}", o.str(), who, *w));
  }
  if (ci.deprecated && ci.supported) {
    warnings.push_back(
        fmt::format("{}: SA {}: {} is deprecated (RFC 8221); accepted for old configurations", o.str(), who, ci.name));
  }
  if (ii.deprecated) {
    warnings.push_back(
        fmt::format("{}: SA {}: {} is deprecated (RFC 8221); accepted for old configurations", o.str(), who, ii.name));
  }
  if (sa.protocol == IpsecProtocol::esp && sa.cipher == Cipher::null && sa.integrity == Integrity::none) {
    warnings.push_back(
        fmt::format("{}: SA {}: ESP with null encryption and no integrity protects nothing", o.str(), who));
  } else if (sa.protocol == IpsecProtocol::esp && ci.confidential() && !ci.aead() && sa.integrity == Integrity::none) {
    warnings.push_back(fmt::format(
        "{}: SA {}: encryption without integrity cannot detect tampering (RFC 4303 section 3.2)", o.str(), who));
  }
  if (sa.replay_window > 65536) err("replay_window", "the replay window can be at most 65536 packets");
  if (sa.mode == SaMode::tunnel && sa.direction == Direction::outbound && (!sa.src || !sa.dst)) {
    err("mode", "an outbound tunnel-mode SA needs src and dst: they are the tunnel endpoints");
  }
  if (sa.src && sa.dst && sa.src->family() != sa.dst->family()) {
    err("dst", "src and dst are of different address families");
  }
}

namespace {

struct Ctx {
  std::string file;
  fs::path base;
  // Where keys were found, for the warning about files other users can read.
  mutable bool inline_keys = false;
  mutable std::vector<fs::path> key_files;
};

int line_of(const YAML::Node& n) { return n.IsDefined() && n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

[[noreturn]] void fail(const Ctx& c, const YAML::Node& n, const std::string& field, const std::string& msg) {
  throw ConfigError(c.file, line_of(n), field, msg);
}

void check_keys(const Ctx& c, const YAML::Node& map, const std::string& field,
                std::initializer_list<std::string_view> allowed) {
  for (const auto& kv : map) {
    std::string key = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (auto a : allowed) {
        if (!list.empty()) list += ", ";
        list += a;
      }
      fail(c, kv.first, field.empty() ? key : field + "." + key,
           fmt::format("unknown setting '{}' (expected one of: {})", key, list));
    }
  }
}

std::string scalar(const Ctx& c, const YAML::Node& n, const std::string& field) {
  if (n.IsNull()) return "null";  // YAML reads "encryption: null" as a null node
  if (!n.IsScalar()) fail(c, n, field, "expected a single value");
  return n.Scalar();
}

bool get_bool(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::string s = scalar(c, n, field);
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  fail(c, n, field, fmt::format("'{}' is not true or false", s));
}

std::uint64_t get_uint(const Ctx& c, const YAML::Node& n, const std::string& field, std::uint64_t max) {
  std::string s = scalar(c, n, field);
  std::uint64_t v = 0;
  std::string_view t = s;
  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
  if (ec != std::errc{} || p != t.data() + t.size() || t.empty()) {
    fail(c, n, field, fmt::format("'{}' is not a non-negative integer", s));
  }
  if (v > max) fail(c, n, field, fmt::format("{} is larger than the maximum {}", s, max));
  return v;
}

IpAddr get_addr(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::string s = scalar(c, n, field);
  auto a = IpAddr::parse(s);
  if (!a) fail(c, n, field, fmt::format("'{}' is not an IPv4 or IPv6 address", s));
  return *a;
}

SecretBytes get_key(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::string s = scalar(c, n, field);
  SecretBytes k;
  std::string why;
  if (!parse_hex_key(s, k, why)) {
    cleanse(s.data(), s.size());
    fail(c, n, field, why);
  }
  cleanse(s.data(), s.size());
  c.inline_keys = true;
  return k;
}

SecretBytes get_key_file(const Ctx& c, const YAML::Node& n, const std::string& field) {
  fs::path p = scalar(c, n, field);
  if (p.is_relative()) p = c.base / p;
  SecretBytes k = read_key_file(p, Origin{c.file, line_of(n), {}}, field);
  c.key_files.push_back(p);
  return k;
}

std::optional<std::uint8_t> parse_protocol(std::string_view s) {
  std::string l(s);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (l == "any" || l == "*") return std::nullopt;
  static const std::pair<std::string_view, std::uint8_t> names[] = {
      {"icmp", 1}, {"igmp", 2},    {"tcp", 6},        {"udp", 17},  {"gre", 47},   {"esp", 50},
      {"ah", 51},  {"icmpv6", 58}, {"ipv6-icmp", 58}, {"ospf", 89}, {"sctp", 132}, {"rsvp", 46}};
  for (auto& [name, num] : names) {
    if (l == name) return num;
  }
  unsigned v = 0;
  auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), v);
  if (ec == std::errc{} && p == l.data() + l.size() && v <= 255) return static_cast<std::uint8_t>(v);
  throw std::invalid_argument(l);
}

AddressSelector get_selector(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::string s = scalar(c, n, field);
  AddressSelector sel;
  if (s == "any" || s == "*") return sel;
  if (s == "me") {
    sel.kind = AddressSelector::Kind::me;
    return sel;
  }
  auto p = IpPrefix::parse(s);
  if (!p) fail(c, n, field, fmt::format("'{}' is not any, me, an address or a prefix", s));
  sel.kind = AddressSelector::Kind::prefix;
  sel.prefix = *p;
  return sel;
}

PortRange get_ports(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::string s = scalar(c, n, field);
  PortRange r;
  if (s == "any" || s == "*") return r;
  auto dash = s.find('-');
  auto num = [&](std::string_view t) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || p != t.data() + t.size() || v > 65535) {
      fail(c, n, field, fmt::format("'{}' is not a port or a port range like 1024-2048", s));
    }
    return static_cast<std::uint16_t>(v);
  };
  if (dash == std::string::npos) {
    r.low = r.high = num(s);
  } else {
    r.low = num(std::string_view(s).substr(0, dash));
    r.high = num(std::string_view(s).substr(dash + 1));
    if (r.low > r.high) fail(c, n, field, "the port range is reversed");
  }
  return r;
}

SaConfig parse_sa(const Ctx& c, const YAML::Node& n, std::size_t index, std::vector<std::string>& warnings) {
  const std::string f = fmt::format("sas[{}].", index);
  if (!n.IsMap()) fail(c, n, fmt::format("sas[{}]", index), "each SA must be a mapping of settings");
  check_keys(c, n, fmt::format("sas[{}]", index),
             {"name",       "spi",     "protocol",      "direction", "src",      "dst",           "mode",
              "encryption", "enc_key", "enc_key_file",  "auth",      "auth_key", "auth_key_file", "key",
              "key_file",   "esn",     "replay_window", "encap",     "lifetime", "first_seq"});
  SaConfig sa;
  sa.origin = Origin{c.file, line_of(n), {}};
  for (const auto& kv : n) {
    std::string key = kv.first.as<std::string>();
    const int l = line_of(kv.second);
    // Every key setting ends up in enc_key or auth_key; `key` in either.
    if (key == "key" || key == "key_file") {
      sa.origin.field_lines.emplace_back("enc_key", l);
      key = "auth_key";
    }
    if (key == "enc_key_file") key = "enc_key";
    if (key == "auth_key_file") key = "auth_key";
    sa.origin.field_lines.emplace_back(key, l);
  }

  if (!n["spi"]) fail(c, n, f + "spi", "every SA needs an spi (decimal, 0x hex, or any)");
  if (scalar(c, n["spi"], f + "spi") == "any") {
    sa.spi.reset();
  } else {
    sa.spi = static_cast<std::uint32_t>(get_uint(c, n["spi"], f + "spi", 0xffffffffu));
    if (*sa.spi < 256) {
      warnings.push_back(fmt::format("{}:{}: SA spi {} is in the range 0-255 that RFC 4303 reserves", c.file,
                                     line_of(n["spi"]), *sa.spi));
    }
  }
  if (!n["protocol"]) fail(c, n, f + "protocol", "every SA needs a protocol: esp or ah");
  std::string proto = scalar(c, n["protocol"], f + "protocol");
  if (proto == "esp") {
    sa.protocol = IpsecProtocol::esp;
  } else if (proto == "ah") {
    sa.protocol = IpsecProtocol::ah;
  } else {
    fail(c, n["protocol"], f + "protocol", fmt::format("'{}' is not esp or ah", proto));
  }
  if (n["name"]) sa.name = scalar(c, n["name"], f + "name");
  if (n["direction"]) {
    std::string d = scalar(c, n["direction"], f + "direction");
    if (d == "inbound" || d == "in") {
      sa.direction = Direction::inbound;
    } else if (d == "outbound" || d == "out") {
      sa.direction = Direction::outbound;
    } else {
      fail(c, n["direction"], f + "direction", fmt::format("'{}' is not inbound or outbound", d));
    }
  }
  if (n["src"]) sa.src = get_addr(c, n["src"], f + "src");
  if (n["dst"]) sa.dst = get_addr(c, n["dst"], f + "dst");
  if (n["mode"]) {
    std::string m = scalar(c, n["mode"], f + "mode");
    if (m == "transport") {
      sa.mode = SaMode::transport;
    } else if (m == "tunnel") {
      sa.mode = SaMode::tunnel;
    } else {
      fail(c, n["mode"], f + "mode", fmt::format("'{}' is not transport or tunnel", m));
    }
  }
  if (n["encryption"]) {
    if (sa.protocol == IpsecProtocol::ah) {
      fail(c, n["encryption"], f + "encryption", "AH does not encrypt; remove this setting or use protocol: esp");
    }
    std::string e = scalar(c, n["encryption"], f + "encryption");
    auto ci = find_cipher(e);
    if (!ci) {
      std::string names;
      for (const auto& info : all_ciphers()) {
        if (!info.supported) continue;
        if (!names.empty()) names += ", ";
        names += info.name;
      }
      fail(c, n["encryption"], f + "encryption",
           fmt::format("unknown encryption algorithm '{}' (known: {})", e, names));
    }
    sa.cipher = *ci;
  } else if (sa.protocol == IpsecProtocol::esp) {
    fail(c, n, f + "encryption", "an ESP SA needs an encryption algorithm (use null for none)");
  }
  if (n["auth"]) {
    std::string a = scalar(c, n["auth"], f + "auth");
    auto ii = find_integrity(a);
    if (!ii) {
      std::string names;
      for (const auto& info : all_integrity()) {
        if (!names.empty()) names += ", ";
        names += info.name;
      }
      fail(c, n["auth"], f + "auth", fmt::format("unknown integrity algorithm '{}' (known: {})", a, names));
    }
    sa.integrity = *ii;
  }

  // Key material: enc_key / auth_key, each inline or from a file, or the
  // `key` / `key_file` shorthand when the SA needs exactly one key.
  const CipherInfo& ci = cipher_info(sa.cipher);
  const bool needs_enc = ci.mode != CipherMode::none && ci.supported;
  const IntegrityInfo& ii = integrity_info(sa.integrity);
  const bool needs_auth = sa.integrity != Integrity::none && ii.checks && ii.supported;
  auto take = [&](const char* inline_key, const char* file_key, SecretBytes& dst) {
    if (n[inline_key] && n[file_key]) {
      fail(c, n[file_key], f + file_key, fmt::format("give either {} or {}, not both", inline_key, file_key));
    }
    if (n[inline_key]) dst = get_key(c, n[inline_key], f + inline_key);
    if (n[file_key]) dst = get_key_file(c, n[file_key], f + file_key);
  };
  take("enc_key", "enc_key_file", sa.enc_key);
  take("auth_key", "auth_key_file", sa.auth_key);
  if (n["key"] || n["key_file"]) {
    SecretBytes k;
    take("key", "key_file", k);
    const char* which = n["key"] ? "key" : "key_file";
    if (needs_enc && needs_auth) {
      fail(c, n[which], f + which,
           "this SA needs two keys (encryption and integrity): use enc_key/enc_key_file and auth_key/auth_key_file");
    } else if (needs_enc) {
      if (!sa.enc_key.empty()) fail(c, n[which], f + which, "enc_key is already given");
      sa.enc_key = std::move(k);
    } else if (needs_auth) {
      if (!sa.auth_key.empty()) fail(c, n[which], f + which, "auth_key is already given");
      sa.auth_key = std::move(k);
    } else {
      fail(c, n[which], f + which, "this SA uses no key (null encryption, no integrity)");
    }
  }
  if (needs_enc && sa.enc_key.empty()) {
    fail(c, n, f + "enc_key", fmt::format("{} needs a key: give enc_key (0x...) or enc_key_file", ci.name));
  }
  if (needs_auth && sa.auth_key.empty()) {
    fail(c, n, f + "auth_key",
         fmt::format("{} needs a key: give auth_key (0x...) or auth_key_file", integrity_info(sa.integrity).name));
  }

  if (n["esn"]) sa.esn = get_bool(c, n["esn"], f + "esn");
  if (n["replay_window"]) {
    sa.replay_window = static_cast<std::uint32_t>(get_uint(c, n["replay_window"], f + "replay_window", 65536));
  }
  if (n["first_seq"]) {
    std::uint64_t max = sa.esn ? UINT64_MAX : 0xffffffffu;
    std::uint64_t first = get_uint(c, n["first_seq"], f + "first_seq", max);
    if (first == 0) fail(c, n["first_seq"], f + "first_seq", "sequence numbers start at 1 (RFC 4303)");
    sa.initial_seq = first - 1;
  }
  if (n["encap"]) {
    const YAML::Node& e = n["encap"];
    UdpEncapConfig ec;
    if (e.IsScalar()) {
      if (e.Scalar() != "udp") fail(c, e, f + "encap", "encap must be 'udp' or a mapping {sport, dport, keepalive}");
    } else if (e.IsMap()) {
      check_keys(c, e, f + "encap", {"type", "sport", "dport", "keepalive"});
      if (e["type"] && scalar(c, e["type"], f + "encap.type") != "udp") {
        fail(c, e["type"], f + "encap.type", "only UDP encapsulation (RFC 3948) exists");
      }
      auto port = [&](const char* key, std::uint16_t& out) {
        if (!e[key]) return;
        const std::string field = f + "encap." + key;
        const auto v = get_uint(c, e[key], field, 65535);
        if (v == 0) fail(c, e[key], field, "a UDP port is 1 to 65535");
        out = static_cast<std::uint16_t>(v);
      };
      port("sport", ec.sport);
      port("dport", ec.dport);
      if (const YAML::Node& k = e["keepalive"]) {
        const std::string field = f + "encap.keepalive";
        // "off" as well as 0: YAML reads a bare off as a boolean word.
        const std::string s = scalar(c, k, field);
        std::uint32_t v = 0;
        const auto [end, ec2] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s == "off" || s == "false" || s == "no") {
          v = 0;
        } else if (ec2 != std::errc{} || end != s.data() + s.size() || s.empty() || v > 3600) {
          fail(c, k, field, fmt::format("'{}' is not a number of seconds from 0 to 3600, or off", s));
        }
        ec.keepalive_seconds = v;
      }
    } else {
      fail(c, e, f + "encap", "encap must be 'udp' or a mapping {sport, dport, keepalive}");
    }
    sa.encap = ec;
  }
  if (n["lifetime"]) {
    const YAML::Node& l = n["lifetime"];
    if (!l.IsMap()) fail(c, l, f + "lifetime", "lifetime must be a mapping such as {seconds: 900, bytes: 2G}");
    check_keys(c, l, f + "lifetime", {"seconds", "bytes", "packets", "soft_seconds", "soft_bytes", "soft_packets"});
    auto size = [&](const char* key) -> std::uint64_t {
      if (!l[key]) return 0;
      std::string s = scalar(c, l[key], f + "lifetime." + key);
      auto v = parse_size(s);
      if (!v) fail(c, l[key], f + "lifetime." + key, fmt::format("'{}' is not a count such as 900, 100M or 2G", s));
      return *v;
    };
    sa.lifetime.seconds = size("seconds");
    sa.lifetime.bytes = size("bytes");
    sa.lifetime.packets = size("packets");
    sa.lifetime.soft_seconds = size("soft_seconds");
    sa.lifetime.soft_bytes = size("soft_bytes");
    sa.lifetime.soft_packets = size("soft_packets");
  }
  if (sa.name.empty()) {
    sa.name = sa.spi ? fmt::format("{}-0x{:08x}", to_string(sa.protocol), *sa.spi)
                     : fmt::format("{}-any", to_string(sa.protocol));
    if (sa.dst) sa.name += "@" + sa.dst->str();
  }
  // 0 is how Linux and strongSwan write "no anti-replay" (RFC 4303 section
  // 3.4.3 lets a receiver turn it off), so it is honoured; but a replayed
  // packet then passes, so it is never silent.
  if (n["replay_window"] && sa.replay_window == 0) {
    warnings.push_back(fmt::format(
        "{}:{}: {}replay_window: 0 turns anti-replay off for SA {}: a replayed packet is accepted by enforce and "
        "reported ok by verify; leave replay_window out for the default window of 64",
        c.file, line_of(n["replay_window"]), f, sa.name));
  }
  validate_sa(sa, f, warnings);
  return sa;
}

std::uint64_t get_spi64(const Ctx& c, const YAML::Node& n, const std::string& field) {
  // IKE SPIs and cookies are written as 16 hex digits, with or without 0x.
  std::string s = scalar(c, n, field);
  std::string_view t = s;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) t.remove_prefix(2);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v, 16);
  if (t.empty() || t.size() > 16 || ec != std::errc{} || p != t.data() + t.size()) {
    fail(c, n, field, fmt::format("'{}' is not an IKE SPI (up to 16 hex digits)", s));
  }
  return v;
}

IkeSaConfig parse_ike_sa(const Ctx& c, const YAML::Node& n, std::size_t index, std::vector<std::string>& warnings) {
  const std::string f = fmt::format("ike_sas[{}].", index);
  if (!n.IsMap()) fail(c, n, fmt::format("ike_sas[{}]", index), "each IKE SA must be a mapping of settings");
  check_keys(c, n, fmt::format("ike_sas[{}]", index),
             {"name", "version", "spi_i", "spi_r", "encryption", "integrity", "prf", "hash", "sk_ei", "sk_er", "sk_ai",
              "sk_ar", "sk_d", "skeyid_d", "enc_key"});
  IkeSaConfig sa;
  sa.origin = Origin{c.file, line_of(n), {}};
  for (const auto& kv : n) {
    std::string key = kv.first.as<std::string>();
    if (key == "skeyid_d") key = "sk_d";
    if (key == "hash") key = "prf";
    sa.origin.field_lines.emplace_back(key, line_of(kv.second));
  }
  if (n["version"]) sa.version = static_cast<std::uint8_t>(get_uint(c, n["version"], f + "version", 255));
  if (sa.version != 1 && sa.version != 2) fail(c, n["version"], f + "version", "version must be 1 or 2");
  if (n["spi_i"]) sa.spi_i = get_spi64(c, n["spi_i"], f + "spi_i");
  if (n["spi_r"]) sa.spi_r = get_spi64(c, n["spi_r"], f + "spi_r");
  if (n["encryption"]) {
    std::string e = scalar(c, n["encryption"], f + "encryption");
    sa.cipher = find_cipher(e);
    if (!sa.cipher) fail(c, n["encryption"], f + "encryption", fmt::format("unknown encryption algorithm '{}'", e));
  }
  if (n["integrity"]) {
    std::string a = scalar(c, n["integrity"], f + "integrity");
    sa.integrity = find_integrity(a);
    if (!sa.integrity) fail(c, n["integrity"], f + "integrity", fmt::format("unknown integrity algorithm '{}'", a));
  }
  for (const char* key : {"prf", "hash"}) {
    if (n[key]) {
      std::string a = scalar(c, n[key], f + key);
      sa.prf = find_prf(a);
      if (!sa.prf) {
        fail(c, n[key], f + key, fmt::format("unknown {} '{}' (known: md5, sha1, sha256, sha384, sha512)", key, a));
      }
    }
  }
  if (n["sk_ei"]) sa.sk_ei = get_key(c, n["sk_ei"], f + "sk_ei");
  if (n["sk_er"]) sa.sk_er = get_key(c, n["sk_er"], f + "sk_er");
  if (n["sk_ai"]) sa.sk_ai = get_key(c, n["sk_ai"], f + "sk_ai");
  if (n["sk_ar"]) sa.sk_ar = get_key(c, n["sk_ar"], f + "sk_ar");
  if (n["sk_d"]) sa.sk_d = get_key(c, n["sk_d"], f + "sk_d");
  if (n["skeyid_d"]) sa.sk_d = get_key(c, n["skeyid_d"], f + "skeyid_d");
  if (n["enc_key"]) sa.enc_key = get_key(c, n["enc_key"], f + "enc_key");
  sa.name = n["name"] ? scalar(c, n["name"], f + "name") : fmt::format("ike-{}", index);
  validate_ike_sa(sa, f, warnings);
  return sa;
}

// The `ipsec:` mapping of a protect or negotiate policy.
void parse_policy_ipsec(const Ctx& c, const YAML::Node& ip, const std::string& f, PolicyConfig& p) {
  if (!ip.IsMap()) fail(c, ip, f + "ipsec", "ipsec must be a mapping {protocol, mode, peer}");
  check_keys(c, ip, f + "ipsec", {"protocol", "mode", "peer"});
  std::string pr = ip["protocol"] ? scalar(c, ip["protocol"], f + "ipsec.protocol") : "esp";
  if (pr == "esp") {
    p.ipsec = PolicyIpsec::esp;
  } else if (pr == "ah") {
    p.ipsec = PolicyIpsec::ah;
  } else if (pr == "ah+esp" || pr == "esp+ah") {
    p.ipsec = PolicyIpsec::ah_esp;
  } else {
    fail(c, ip["protocol"], f + "ipsec.protocol", fmt::format("'{}' is not esp, ah or ah+esp", pr));
  }
  std::string m = ip["mode"] ? scalar(c, ip["mode"], f + "ipsec.mode") : "transport";
  if (m == "transport") {
    p.mode = SaMode::transport;
  } else if (m == "tunnel") {
    p.mode = SaMode::tunnel;
  } else {
    fail(c, ip["mode"], f + "ipsec.mode", fmt::format("'{}' is not transport or tunnel", m));
  }
  if (ip["peer"]) p.peer = get_addr(c, ip["peer"], f + "ipsec.peer");
}

// The line of each setting of a mapping (and of each setting of its `ipsec`
// mapping as "ipsec.<key>"), so that checks made after loading point at it.
void note_field_lines(const YAML::Node& n, Origin& o) {
  for (const auto& kv : n) {
    const std::string key = kv.first.as<std::string>();
    o.field_lines.emplace_back(key, line_of(kv.second));
    if (kv.second.IsMap()) {
      for (const auto& sub : kv.second) {
        o.field_lines.emplace_back(key + "." + sub.first.as<std::string>(), line_of(sub.second));
      }
    }
  }
}

// A negotiate policy: its IKE profile and, when given, its ipsec mapping
// (a tunnel's peer may come from the profile; checked with the profiles in
// check_negotiate_policies).
void parse_negotiate_policy(const Ctx& c, const YAML::Node& n, const std::string& f, PolicyConfig& p) {
  if (!n["ike"]) fail(c, n, f + "ike", "a negotiate policy names its IKE profile (ike: NAME, from ike_profiles)");
  p.ike = scalar(c, n["ike"], f + "ike");
  if (n["sas"]) fail(c, n["sas"], f + "sas", "a negotiate policy gets its SAs from IKE: remove sas or use protect");
  if (n["ipsec"]) parse_policy_ipsec(c, n["ipsec"], f, p);
}

PolicyConfig parse_policy(const Ctx& c, const YAML::Node& n, std::size_t index) {
  const std::string f = fmt::format("policies[{}].", index);
  if (!n.IsMap()) fail(c, n, fmt::format("policies[{}]", index), "each policy must be a mapping of settings");
  check_keys(c, n, fmt::format("policies[{}]", index),
             {"name", "from", "to", "protocol", "from_port", "to_port", "mirrored", "action", "ipsec", "sas", "inbound",
              "ike"});
  PolicyConfig p;
  p.origin = Origin{c.file, line_of(n), {}};
  note_field_lines(n, p.origin);
  p.name = n["name"] ? scalar(c, n["name"], f + "name") : fmt::format("policy-{}", index + 1);
  if (n["from"]) p.local = get_selector(c, n["from"], f + "from");
  if (n["to"]) p.remote = get_selector(c, n["to"], f + "to");
  if (n["protocol"]) {
    std::string s = scalar(c, n["protocol"], f + "protocol");
    try {
      p.protocol = parse_protocol(s);
    } catch (const std::invalid_argument&) {
      fail(c, n["protocol"], f + "protocol", fmt::format("'{}' is not a protocol name or number 0-255", s));
    }
  }
  if (n["from_port"]) p.local_ports = get_ports(c, n["from_port"], f + "from_port");
  if (n["to_port"]) p.remote_ports = get_ports(c, n["to_port"], f + "to_port");
  if ((!p.local_ports.any() || !p.remote_ports.any()) &&
      !(p.protocol && (*p.protocol == 6 || *p.protocol == 17 || *p.protocol == 132))) {
    fail(c, n, f + "protocol", "ports can only be given with protocol tcp, udp or sctp");
  }
  if (n["mirrored"]) p.mirrored = get_bool(c, n["mirrored"], f + "mirrored");
  if (!n["action"]) fail(c, n, f + "action", "every policy needs an action: permit, block, protect or negotiate");
  std::string a = scalar(c, n["action"], f + "action");
  if (a == "permit") {
    p.action = PolicyAction::permit;
  } else if (a == "block") {
    p.action = PolicyAction::block;
  } else if (a == "protect") {
    p.action = PolicyAction::protect;
  } else if (a == "negotiate") {
    p.action = PolicyAction::negotiate;
  } else {
    fail(c, n["action"], f + "action", fmt::format("'{}' is not permit, block, protect or negotiate", a));
  }
  if (p.action == PolicyAction::negotiate) {
    parse_negotiate_policy(c, n, f, p);
  } else if (n["ike"]) {
    fail(c, n["ike"], f + "ike", "only a negotiate policy names an IKE profile");
  }
  if (p.action == PolicyAction::protect) {
    if (!n["ipsec"]) fail(c, n, f + "ipsec", "a protect policy needs ipsec: {protocol: esp|ah|ah+esp, mode: ...}");
    parse_policy_ipsec(c, n["ipsec"], f, p);
    if (p.mode == SaMode::tunnel && !p.peer) {
      fail(c, n["ipsec"], f + "ipsec.peer", "a tunnel policy needs peer: the remote tunnel endpoint");
    }
    if (!n["sas"]) fail(c, n, f + "sas", "a protect policy needs the names of its SAs (sas: [out-sa, in-sa])");
    const YAML::Node& s = n["sas"];
    if (!s.IsSequence()) fail(c, s, f + "sas", "sas must be a list of SA names");
    for (std::size_t i = 0; i < s.size(); ++i) p.sas.push_back(scalar(c, s[i], fmt::format("{}sas[{}]", f, i)));
  } else if (p.action != PolicyAction::negotiate && (n["ipsec"] || n["sas"])) {
    fail(c, n["ipsec"] ? n["ipsec"] : n["sas"], f + (n["ipsec"] ? "ipsec" : "sas"),
         "only a protect or negotiate policy uses ipsec, and only protect uses sas");
  }
  if (n["inbound"]) {
    std::string in = scalar(c, n["inbound"], f + "inbound");
    if (in == "require") {
      p.inbound = InboundCleartext::require;
    } else if (in == "request") {
      p.inbound = InboundCleartext::request;
    } else if (in == "respond") {
      p.inbound = InboundCleartext::respond;
    } else {
      fail(c, n["inbound"], f + "inbound", fmt::format("'{}' is not require, request or respond", in));
    }
  }
  return p;
}

// ---- IKE profiles (docs/ike-keying.md, "Configuration") --------------------

// "8h", "15m", "30s", "1d", "1h30m" (as config check prints them) or a
// number of seconds.
std::optional<std::uint64_t> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t total = 0;
  while (!text.empty()) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end == text.data() || v > UINT32_MAX) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    std::uint64_t mult = 1;
    if (!text.empty()) {
      switch (text.front()) {
        case 's': break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        default: return std::nullopt;
      }
      text.remove_prefix(1);
    }
    total += v * mult;
    if (total > 10ull * 365 * 86400) return std::nullopt;  // ten years: a typo, not a lifetime
  }
  return total;
}

std::uint64_t get_duration(const Ctx& c, const YAML::Node& n, const std::string& field, std::uint64_t min,
                           bool off_allowed) {
  const std::string s = scalar(c, n, field);
  if (off_allowed && (s == "off" || s == "false" || s == "no")) return 0;
  auto v = parse_duration(s);
  if (!v) fail(c, n, field, fmt::format("'{}' is not a duration such as 30s, 15m, 8h or a number of seconds", s));
  if (*v == 0 && off_allowed) return 0;
  if (*v < min) fail(c, n, field, fmt::format("{} is shorter than the minimum of {} s", s, min));
  return *v;
}

// One entry of a list setting: its text, its node (for the line) and its
// field ("ike_profiles[0].proposals[1]").
struct ListItem {
  std::string text;
  YAML::Node node;
  std::string field;
};

// A list setting that may also be written as one scalar; each scalar may
// hold several entries separated by commas, as swanctl.conf writes them
// ("aes256-sha384-ecp384,aes128-sha256-modp2048"), so a line copied from
// there means the same here.
std::vector<ListItem> get_strings(const Ctx& c, const YAML::Node& n, const std::string& field) {
  std::vector<ListItem> out;
  auto add = [&](const YAML::Node& item, const std::string& fi) {
    const std::string s = scalar(c, item, fi);
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = s.find(',', pos);
      std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      const std::size_t b = part.find_first_not_of(" \t");
      const std::size_t e = part.find_last_not_of(" \t");
      part = b == std::string::npos ? std::string{} : part.substr(b, e - b + 1);
      if (part.empty()) fail(c, item, fi, fmt::format("'{}' has an empty entry between commas", s));
      out.push_back(ListItem{std::move(part), item, fi});
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  };
  if (n.IsSequence()) {
    for (std::size_t i = 0; i < n.size(); ++i) add(n[i], fmt::format("{}[{}]", field, i));
  } else {
    add(n, field);
  }
  if (out.empty()) fail(c, n, field, "the list is empty");
  return out;
}

fs::path get_path(const Ctx& c, const YAML::Node& n, const std::string& text, const std::string& field) {
  fs::path p = text;
  if (p.is_relative()) p = c.base / p;
  // Read when enforcement starts; here only whether it is a file we may
  // read, so that `config check` names a missing one. Not opened before it
  // is known to be a regular file: a FIFO would block the open.
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    fail(c, n, field, fmt::format("cannot read '{}': {}", p.string(), std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) fail(c, n, field, fmt::format("'{}' is {}, not a file", p.string(), file_kind(st.st_mode)));
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(c, n, field, fmt::format("cannot read '{}': {}", p.string(), std::strerror(errno)));
  ::close(fd);
  return p;
}

void parse_ike_auth(const Ctx& c, const YAML::Node& a, const std::string& f, IkeProfile& prof) {
  if (!a.IsMap()) fail(c, a, f + "auth", "auth must be a mapping {method: psk, psk: ...} or {method: cert, ...}");
  check_keys(c, a, f + "auth", {"method", "psk", "psk_file", "cert", "key", "ca"});
  if (!a["method"]) fail(c, a, f + "auth.method", "auth needs a method: psk or cert");
  const std::string m = scalar(c, a["method"], f + "auth.method");
  if (m == "psk") {
    prof.method = IkeAuthMethod::psk;
    for (const char* k : {"cert", "key", "ca"}) {
      if (a[k]) fail(c, a[k], f + "auth." + k, fmt::format("{} belongs to method: cert", k));
    }
    if (a["psk"] && a["psk_file"]) fail(c, a["psk_file"], f + "auth.psk_file", "give either psk or psk_file");
    if (a["psk"]) {
      std::string t = scalar(c, a["psk"], f + "auth.psk");
      struct Wipe {
        std::string& s;
        ~Wipe() { cleanse(s.data(), s.size()); }
      } wipe{t};
      if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
        std::string why;
        // The reason would quote a character of the key: not repeated.
        if (!parse_hex_key(t, prof.psk, why)) {
          fail(c, a["psk"], f + "auth.psk", "starts with 0x but is not hex digits (write text without 0x)");
        }
      } else {
        prof.psk = SecretBytes(std::span(reinterpret_cast<const std::uint8_t*>(t.data()), t.size()));
      }
      c.inline_keys = true;
    } else if (a["psk_file"]) {
      prof.psk = get_key_file(c, a["psk_file"], f + "auth.psk_file");
    } else {
      fail(c, a, f + "auth.psk", "method psk needs psk: (text or 0x hex) or psk_file:");
    }
    if (prof.psk.empty()) fail(c, a, f + "auth.psk", "the pre-shared key is empty");
    return;
  }
  if (m != "cert") fail(c, a["method"], f + "auth.method", fmt::format("'{}' is not psk or cert", m));
  prof.method = IkeAuthMethod::cert;
  for (const char* k : {"psk", "psk_file"}) {
    if (a[k]) fail(c, a[k], f + "auth." + k, fmt::format("{} belongs to method: psk", k));
  }
  if (!a["cert"]) fail(c, a, f + "auth.cert", "method cert needs cert: our certificate (PEM)");
  if (!a["key"]) fail(c, a, f + "auth.key", "method cert needs key: the certificate's private key (PEM)");
  if (!a["ca"]) fail(c, a, f + "auth.ca", "method cert needs ca: the trust anchor(s) for the peer's certificate");
  prof.cert = get_path(c, a["cert"], scalar(c, a["cert"], f + "auth.cert"), f + "auth.cert");
  prof.key = get_path(c, a["key"], scalar(c, a["key"], f + "auth.key"), f + "auth.key");
  c.key_files.push_back(prof.key);  // a private key: warned about when others can read it
  for (const auto& item : get_strings(c, a["ca"], f + "auth.ca"))
    prof.ca.push_back(get_path(c, item.node, item.text, item.field));
}

// "aes128gcm16-sha256": accepted as strongSwan accepts it (the parsers
// drop the integrity algorithm), but said, since it protects nothing.
void warn_ignored_integrity(const Ctx& c, const ListItem& item, const std::string& profile,
                            std::vector<std::string>& warnings) {
  const auto ignored = ignored_integrity(item.text);
  if (ignored.empty()) return;
  warnings.push_back(
      fmt::format("{}:{}: {}: IKE profile '{}': proposal '{}' names integrity {} beside AEAD encryption, "
                  "which has its own: ignored, as strongSwan does (an IKE proposal without a PRF "
                  "takes its PRF from it)",
                  c.file, line_of(item.node), item.field, profile, item.text, fmt::join(ignored, ", ")));
}

IkeProfile parse_ike_profile(const Ctx& c, const YAML::Node& n, std::size_t index, std::vector<std::string>& warnings) {
  const std::string f = fmt::format("ike_profiles[{}].", index);
  if (!n.IsMap()) fail(c, n, fmt::format("ike_profiles[{}]", index), "each IKE profile must be a mapping of settings");
  check_keys(c, n, fmt::format("ike_profiles[{}]", index),
             {"name", "version", "auth", "local_id", "remote_id", "peer", "proposals", "esp_proposals", "ah_proposals",
              "lifetime", "pfs", "dpd", "soft_timeout"});
  IkeProfile prof;
  prof.origin = Origin{c.file, line_of(n), {}};
  note_field_lines(n, prof.origin);
  if (!n["name"]) fail(c, n, f + "name", "every IKE profile needs a name (policies refer to it with ike: NAME)");
  prof.name = scalar(c, n["name"], f + "name");
  if (n["version"]) {
    const auto v = get_uint(c, n["version"], f + "version", 255);
    if (v == 1) fail(c, n["version"], f + "version", "IKEv1 is not built yet: version must be 2");
    if (v != 2) fail(c, n["version"], f + "version", "version must be 2 (IKEv2, RFC 7296)");
  }
  if (!n["auth"]) fail(c, n, f + "auth", "every IKE profile needs auth: {method: psk, ...} or {method: cert, ...}");
  parse_ike_auth(c, n["auth"], f, prof);
  auto identity = [&](const char* key, IkeIdentity& out) {
    if (!n[key]) return;
    const std::string s = scalar(c, n[key], f + key);
    if (auto e = parse_identity(s, out)) fail(c, n[key], f + key, *e);
  };
  identity("local_id", prof.local_id);
  if (n["local_id"] && prof.local_id.kind == IkeIdentity::Kind::any) {
    fail(c, n["local_id"], f + "local_id", "our own identity cannot be any (leave local_id out for the default)");
  }
  identity("remote_id", prof.remote_id);
  if (n["peer"] && scalar(c, n["peer"], f + "peer") != "any") prof.peer = get_addr(c, n["peer"], f + "peer");

  auto ike_list = [&](const std::vector<ListItem>& items) {
    for (const ListItem& item : items) {
      IkeProposal p;
      if (auto e = parse_ike_proposal(item.text, p)) fail(c, item.node, item.field, *e);
      warn_ignored_integrity(c, item, prof.name, warnings);
      auto dep = deprecated_algorithms(p);
      if (!dep.empty()) {
        warnings.push_back(
            fmt::format("{}:{}: {}: IKE profile '{}': proposal '{}' uses deprecated {} (RFC 8247); "
                        "accepted for old peers",
                        c.file, line_of(item.node), item.field, prof.name, p.text, fmt::join(dep, ", ")));
      }
      prof.proposals.push_back(std::move(p));
    }
  };
  auto child_list = [&](IpsecProtocol proto, const std::vector<ListItem>& items, std::vector<ChildProposal>& out) {
    for (const ListItem& item : items) {
      ChildProposal p;
      if (auto e = parse_child_proposal(item.text, proto, p)) fail(c, item.node, item.field, *e);
      warn_ignored_integrity(c, item, prof.name, warnings);
      auto dep = deprecated_algorithms(p);
      if (!dep.empty()) {
        warnings.push_back(
            fmt::format("{}:{}: {}: IKE profile '{}': proposal '{}' uses deprecated {} (RFC 8221); "
                        "accepted for old peers",
                        c.file, line_of(item.node), item.field, prof.name, p.text, fmt::join(dep, ", ")));
      }
      out.push_back(std::move(p));
    }
  };
  // The defaults of docs/ike-keying.md.
  auto defaults = [&](std::initializer_list<const char*> texts, const std::string& field) {
    std::vector<ListItem> out;
    for (const char* t : texts) out.push_back(ListItem{t, n, field});
    return out;
  };
  ike_list(n["proposals"] ? get_strings(c, n["proposals"], f + "proposals")
                          : defaults({"aes256gcm16-prfsha384-ecp384", "aes256-sha384-ecp384", "aes128-sha256-modp2048"},
                                     f + "proposals"));
  child_list(IpsecProtocol::esp,
             n["esp_proposals"] ? get_strings(c, n["esp_proposals"], f + "esp_proposals")
                                : defaults({"aes256gcm16", "aes128gcm16", "aes256-sha256"}, f + "esp_proposals"),
             prof.esp_proposals);
  if (n["ah_proposals"]) {
    child_list(IpsecProtocol::ah, get_strings(c, n["ah_proposals"], f + "ah_proposals"), prof.ah_proposals);
  }

  if (const YAML::Node& l = n["lifetime"]) {
    if (!l.IsMap())
      fail(c, l, f + "lifetime", "lifetime must be a mapping such as {ike: 8h, child: 15m, child_bytes: 2G}");
    check_keys(c, l, f + "lifetime", {"ike", "child", "child_bytes", "child_packets"});
    if (l["ike"]) prof.ike_lifetime = get_duration(c, l["ike"], f + "lifetime.ike", 10, false);
    if (l["child"]) prof.child_lifetime = get_duration(c, l["child"], f + "lifetime.child", 10, false);
    for (const char* key : {"child_bytes", "child_packets"}) {
      if (!l[key]) continue;
      const std::string field = f + "lifetime." + key;
      const std::string s = scalar(c, l[key], field);
      auto v = parse_size(s);
      if (!v) fail(c, l[key], field, fmt::format("'{}' is not a count such as 0 (none), 100M or 2G", s));
      (std::string_view(key) == "child_bytes" ? prof.child_lifetime_bytes : prof.child_lifetime_packets) = *v;
    }
  }
  // Without pfs:, the first group the ESP (or AH) proposals name, as in
  // swanctl.conf, where a group in esp_proposals is what turns PFS on.
  std::vector<DhGroup> child_groups;
  for (const auto* list : {&prof.esp_proposals, &prof.ah_proposals}) {
    for (const auto& p : *list) {
      for (auto g : p.dh) {
        if (g != DhGroup::none && std::find(child_groups.begin(), child_groups.end(), g) == child_groups.end()) {
          child_groups.push_back(g);
        }
      }
    }
  }
  if (n["pfs"]) {
    const std::string s = scalar(c, n["pfs"], f + "pfs");
    auto g = find_dh_group(s);
    if (!g) {
      fail(c, n["pfs"], f + "pfs",
           fmt::format("'{}' is not none or a DH group (modp2048, modp3072, ecp256, ecp384, curve25519)", s));
    }
    prof.pfs = *g;
    if (prof.pfs != DhGroup::none && !child_groups.empty() &&
        std::find(child_groups.begin(), child_groups.end(), prof.pfs) == child_groups.end()) {
      fail(c, n["pfs"], f + "pfs",
           fmt::format("pfs {} is not among the groups the ESP/AH proposals name; add it to one of them",
                       to_string(prof.pfs)));
    }
    if (deprecated(prof.pfs)) {
      warnings.push_back(fmt::format("{}:{}: IKE profile '{}': pfs {} is deprecated (RFC 8247); accepted for old peers",
                                     c.file, line_of(n["pfs"]), prof.name, to_string(prof.pfs)));
    }
  } else if (!child_groups.empty()) {
    prof.pfs = child_groups.front();
    // swanctl.conf reads "aes128gcm16-modp2048, aes128gcm16" as PFS
    // preferred, none accepted; here every proposal takes the group, so PFS
    // is required. Say so rather than let a copied line mean something else.
    for (const auto* list : {&prof.esp_proposals, &prof.ah_proposals}) {
      const auto without = std::find_if(list->begin(), list->end(), [](const auto& p) { return p.dh.empty(); });
      if (without != list->end()) {
        warnings.push_back(fmt::format(
            "{}:{}: IKE profile '{}': proposal '{}' names no DH group but others do; ipsentry uses {} with it too, "
            "so a rekey always has PFS (strongSwan would also accept one without); write pfs: to say so",
            c.file, line_of(n[list == &prof.esp_proposals ? "esp_proposals" : "ah_proposals"]), prof.name,
            without->text, to_string(prof.pfs)));
        break;
      }
    }
  }
  // A proposal without groups takes the profile's PFS group, so that what
  // is offered and accepted on a rekey is the same group (ike_proposal.hpp).
  if (prof.pfs != DhGroup::none) {
    for (auto* list : {&prof.esp_proposals, &prof.ah_proposals}) {
      for (auto& p : *list) {
        if (p.dh.empty()) p.dh.push_back(prof.pfs);
      }
    }
  }
  if (n["dpd"]) prof.dpd = static_cast<std::uint32_t>(get_duration(c, n["dpd"], f + "dpd", 1, true));
  if (n["soft_timeout"]) {
    prof.soft_timeout = static_cast<std::uint32_t>(get_duration(c, n["soft_timeout"], f + "soft_timeout", 1, false));
  }
  if (prof.method == IkeAuthMethod::psk && prof.psk.size() < 16) {
    warnings.push_back(
        fmt::format("{}:{}: IKE profile '{}': the pre-shared key is shorter than 16 bytes, which an "
                    "eavesdropper on one exchange can attack offline (RFC 7296 2.15)",
                    c.file, prof.origin.line_of("auth"), prof.name));
  }
  return prof;
}

ExemptionSet parse_exemptions(const Ctx& c, const YAML::Node& n) {
  std::string known;
  for (std::size_t i = 0; i < kExemptionCount; ++i) {
    known += (i ? ", " : "") + std::string(to_string(static_cast<Exemption>(i)));
  }
  if (!n.IsSequence()) {
    fail(c, n, "exemptions",
         fmt::format("exemptions must be a list such as [ike, neighbor-discovery] (known: {})", known));
  }
  ExemptionSet set;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const std::string field = fmt::format("exemptions[{}]", i);
    const std::string name = scalar(c, n[i], field);
    const auto e = find_exemption(name);
    if (!e) fail(c, n[i], field, fmt::format("'{}' is not an exemption (known: {})", name, known));
    if (set.has(*e)) fail(c, n[i], field, fmt::format("'{}' is listed twice", name));
    set.add(*e);
  }
  return set;
}

bool same_selector(const SaConfig& a, const SaConfig& b) {
  return a.spi == b.spi && a.protocol == b.protocol && a.dst == b.dst && a.src == b.src;
}

}  // namespace

const SaConfig* Config::find_sa(std::string_view name) const noexcept {
  for (const auto& sa : sas) {
    if (sa.name == name) return &sa;
  }
  return nullptr;
}

void Config::merge(Config&& other) {
  for (auto& sa : other.sas) {
    for (const auto& mine : sas) {
      if (same_selector(mine, sa)) {
        throw ConfigError(sa.origin.file, sa.origin.line, "",
                          fmt::format("SA {} is already defined at {}", sa.describe(), mine.origin.str()));
      }
      if (mine.name == sa.name) {
        throw ConfigError(sa.origin.file, sa.origin.line, "name",
                          fmt::format("SA name '{}' is already used at {}", sa.name, mine.origin.str()));
      }
    }
    sas.push_back(std::move(sa));
  }
  for (auto& p : other.policies) policies.push_back(std::move(p));
  for (auto& i : other.ike_sas) ike_sas.push_back(std::move(i));
  for (auto& i : other.ike_profiles) {
    if (const IkeProfile* seen = find_ike_profile(i.name)) {
      throw ConfigError(i.origin.file, i.origin.line, "name",
                        fmt::format("IKE profile name '{}' is already used at {}", i.name, seen->origin.str()));
    }
    ike_profiles.push_back(std::move(i));
  }
  for (auto& a : other.local_addresses) local_addresses.push_back(a);
  for (auto& w : other.warnings) warnings.push_back(std::move(w));
  if (other.exemptions_given) {
    exemptions = other.exemptions;
    exemptions_given = true;
  }
}

namespace {

Config parse_with(const std::string& text, const Ctx& c) {
  const std::string& name = c.file;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(name, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "YAML syntax error: " + e.msg);
  }
  Config cfg;
  if (root.IsNull()) return cfg;
  if (!root.IsMap()) fail(c, root, "", "the configuration must be a mapping with sas:, policies:, interfaces:");
  try {
    check_keys(c, root, "",
               {"interfaces", "default_exemptions", "exemptions", "policies", "sas", "ike_sas", "ike_profiles"});
    if (const YAML::Node& itf = root["interfaces"]) {
      if (!itf.IsMap()) fail(c, itf, "interfaces", "interfaces must be a mapping such as {local: [addr, ...]}");
      check_keys(c, itf, "interfaces", {"local"});
      if (const YAML::Node& local = itf["local"]) {
        if (local.IsScalar()) {
          cfg.local_addresses.push_back(get_addr(c, local, "interfaces.local"));
        } else if (local.IsSequence()) {
          for (std::size_t i = 0; i < local.size(); ++i) {
            cfg.local_addresses.push_back(get_addr(c, local[i], fmt::format("interfaces.local[{}]", i)));
          }
        } else {
          fail(c, local, "interfaces.local", "expected an address or a list of addresses");
        }
      }
    }
    if (root["default_exemptions"] && root["exemptions"]) {
      fail(c, root["default_exemptions"], "default_exemptions",
           "give either exemptions: [...] (the complete list) or default_exemptions, not both");
    }
    if (root["default_exemptions"]) {
      cfg.exemptions =
          get_bool(c, root["default_exemptions"], "default_exemptions") ? ExemptionSet::defaults() : ExemptionSet{};
      cfg.exemptions_given = true;
    }
    if (const YAML::Node& ex = root["exemptions"]) {
      cfg.exemptions = parse_exemptions(c, ex);
      cfg.exemptions_given = true;
    }
    if (const YAML::Node& sas = root["sas"]) {
      if (!sas.IsSequence()) fail(c, sas, "sas", "sas must be a list of SAs");
      for (std::size_t i = 0; i < sas.size(); ++i) {
        Config one;
        one.sas.push_back(parse_sa(c, sas[i], i, cfg.warnings));
        cfg.merge(std::move(one));
      }
    }
    if (const YAML::Node& ike = root["ike_sas"]) {
      if (!ike.IsSequence()) fail(c, ike, "ike_sas", "ike_sas must be a list of IKE SAs");
      for (std::size_t i = 0; i < ike.size(); ++i) cfg.ike_sas.push_back(parse_ike_sa(c, ike[i], i, cfg.warnings));
    }
    if (const YAML::Node& prof = root["ike_profiles"]) {
      if (!prof.IsSequence()) fail(c, prof, "ike_profiles", "ike_profiles must be a list of profiles");
      for (std::size_t i = 0; i < prof.size(); ++i) {
        IkeProfile p = parse_ike_profile(c, prof[i], i, cfg.warnings);
        if (const IkeProfile* seen = cfg.find_ike_profile(p.name)) {
          fail(c, prof[i]["name"], fmt::format("ike_profiles[{}].name", i),
               fmt::format("IKE profile name '{}' is already used at {}", p.name, seen->origin.str()));
        }
        cfg.ike_profiles.push_back(std::move(p));
      }
    }
    if (const YAML::Node& pol = root["policies"]) {
      if (!pol.IsSequence()) fail(c, pol, "policies", "policies must be an ordered list");
      std::set<std::string> names;
      for (std::size_t i = 0; i < pol.size(); ++i) {
        PolicyConfig p = parse_policy(c, pol[i], i);
        if (!names.insert(p.name).second) {
          fail(c, pol[i], fmt::format("policies[{}].name", i), fmt::format("policy name '{}' is used twice", p.name));
        }
        for (const auto& sa_name : p.sas) {
          if (cfg.find_sa(sa_name) == nullptr) {
            fail(c, pol[i]["sas"], fmt::format("policies[{}].sas", i), fmt::format("no SA is named '{}'", sa_name));
          }
        }
        cfg.policies.push_back(std::move(p));
      }
    }
    check_negotiate_policies(cfg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(name, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", e.msg);
  }
  for (const auto& f : c.key_files) {
    if (auto w = exposed_key_file(f)) cfg.warnings.push_back(*w);
  }
  return cfg;
}

}  // namespace

Config parse_config(const std::string& text, const std::string& name, const fs::path& base_dir) {
  return parse_with(text, Ctx{name, base_dir, false, {}});
}

Config load_config(const fs::path& path) {
  // The text holds inline keys: wipe our copy whatever happens.
  std::string text;
  struct Wipe {
    std::string& t;
    ~Wipe() { cleanse(t.data(), t.size()); }
  } wipe{text};
  std::string why;
  if (!read_bounded(path, kMaxConfigFile, text, why)) {
    throw ConfigError(path.string(), 0, "", fmt::format("cannot read the configuration: it {}", why));
  }
  fs::path base = path.parent_path();
  if (base.empty()) base = ".";
  const Ctx c{path.string(), base, false, {}};
  Config cfg = parse_with(text, c);
  if (c.inline_keys) {
    if (auto w = exposed_key_file(path)) cfg.warnings.push_back(*w);
  }
  return cfg;
}

}  // namespace ipsentry::filters
