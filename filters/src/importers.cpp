#include "ipsentry/filters/importers.hpp"

#include "importers_internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "ipsentry/filters/file_read.hpp"

namespace ipsentry::filters {

namespace fs = std::filesystem;
using dissect::IpAddr;

namespace detail {

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return r;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  for (auto& l : lines) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  }
  return lines;
}

std::string base_name(const std::string& name) {
  auto slash = name.find_last_of('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

}  // namespace detail

namespace {

using namespace detail;

bool parse_u32(std::string_view s, std::uint32_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc{} && p == s.data() + s.size();
}

/// Key text as Wireshark and tcpdump read it: 0x-hex, or the ASCII bytes.
SecretBytes key_from_text(std::string_view text, const std::string& file, int line, const std::string& field) {
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    SecretBytes k;
    std::string why;
    if (!parse_hex_key(text, k, why)) throw ConfigError(file, line, field, why);
    return k;
  }
  return SecretBytes(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

void finish_sa(SaConfig& sa, Config& cfg, const std::string& file, int line) {
  sa.origin = Origin{file, line, {}};
  sa.name = fmt::format("{}:{}", base_name(file), line);
  // Several SAs on one line (tcpdump -E "a,b"): number them.
  int same_line = 0;
  for (const auto& other : cfg.sas) {
    if (other.origin.line == line) ++same_line;
  }
  if (same_line != 0) sa.name += fmt::format("#{}", same_line + 1);
  validate_sa(sa, "", cfg.warnings);
  Config one;
  one.sas.push_back(std::move(sa));
  cfg.merge(std::move(one));
}

// ---------------------------------------------------------------- Wireshark

// Splits one UAT record: comma-separated fields, each optionally in double
// quotes; inside quotes Wireshark writes special bytes as \xHH.
}  // namespace

std::vector<std::string> detail::uat_fields(std::string_view line, const std::string& file, int lineno) {
  std::vector<std::string> fields;
  std::size_t i = 0;
  for (;;) {
    std::string f;
    while (i < line.size() && line[i] == ' ') ++i;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i];
        if (c == '"') {
          closed = true;
          ++i;
          break;
        }
        if (c == '\\' && i + 3 < line.size() && line[i + 1] == 'x') {
          unsigned v = 0;
          auto [p, ec] = std::from_chars(line.data() + i + 2, line.data() + i + 4, v, 16);
          if (ec != std::errc{} || p != line.data() + i + 4) {
            throw ConfigError(file, lineno, "", "invalid \\x escape in a quoted field");
          }
          f += static_cast<char>(v);
          i += 4;
          continue;
        }
        f += c;
        ++i;
      }
      if (!closed) throw ConfigError(file, lineno, "", "a quoted field is not closed");
      while (i < line.size() && line[i] == ' ') ++i;
    } else {
      while (i < line.size() && line[i] != ',') f += line[i++];
      f = std::string(trim(f));
    }
    fields.push_back(std::move(f));
    if (i >= line.size()) break;
    if (line[i] != ',') throw ConfigError(file, lineno, "", "expected a comma between fields");
    ++i;
  }
  return fields;
}

void detail::for_each_uat_record(const std::string& text, const std::string& name, std::string_view table,
                                 std::size_t count, bool exact, std::string_view field_names,
                                 const std::function<void(const std::vector<std::string>&, int)>& record) {
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const int lineno = static_cast<int>(i) + 1;
    std::string_view l = trim(lines[i]);
    if (l.empty() || l[0] == '#') continue;
    auto f = uat_fields(l, name, lineno);
    if (f.size() < count || (exact && f.size() != count)) {
      throw ConfigError(
          name, lineno, "",
          fmt::format("an {} record has {} fields ({}); this one has {}", table, count, field_names, f.size()));
    }
    record(f, lineno);
  }
}

namespace {

std::optional<Cipher> wireshark_cipher(std::string_view name) {
  std::string n = lower(trim(name.substr(0, name.find('['))));
  if (n == "null") return Cipher::null;
  if (n == "tripledes-cbc") return Cipher::tdes_cbc;
  if (n == "aes-cbc") return Cipher::aes_cbc;
  if (n == "aes-ctr") return Cipher::aes_ctr;
  if (n == "des-cbc") return Cipher::des_cbc;
  if (n == "cast5-cbc") return Cipher::cast_cbc;
  if (n == "blowfish-cbc") return Cipher::blowfish_cbc;
  if (n == "twofish-cbc") return Cipher::twofish_cbc;
  if (n == "aes-gcm with 8 octet icv") return Cipher::aes_gcm_8;
  if (n == "aes-gcm with 12 octet icv") return Cipher::aes_gcm_12;
  if (n == "aes-gcm with 16 octet icv" || n == "aes-gcm") return Cipher::aes_gcm_16;
  if (n == "chacha20 with poly1305") return Cipher::chacha20_poly1305;
  if (n == "null with aes-gmac" || n == "aes-gmac") return Cipher::aes_gmac;
  return find_cipher(n);
}

std::optional<Integrity> wireshark_integrity(std::string_view name) {
  std::string n = lower(trim(name.substr(0, name.find('['))));
  if (n == "null") return Integrity::none;
  if (n == "hmac-sha-1-96") return Integrity::hmac_sha1_96;
  if (n == "hmac-sha-256-96") return Integrity::hmac_sha256_96;
  if (n == "hmac-sha-256-128") return Integrity::hmac_sha256_128;
  if (n == "hmac-sha-384-192") return Integrity::hmac_sha384_192;
  if (n == "hmac-sha-512-256") return Integrity::hmac_sha512_256;
  if (n == "hmac-md5-96") return Integrity::hmac_md5_96;
  if (n == "mac-ripemd-160-96") return Integrity::hmac_ripemd160_96;
  if (n == "aes-xcbc-mac-96" || n == "aes-xcbc-mac") return Integrity::aes_xcbc_96;
  if (n.starts_with("any ")) {
    unsigned bits = 0;
    auto rest = std::string_view(n).substr(4);
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), bits);
    (void)p;
    if (ec == std::errc{}) {
      switch (bits) {
        case 64: return Integrity::unchecked_64;
        case 96: return Integrity::unchecked_96;
        case 128: return Integrity::unchecked_128;
        case 192: return Integrity::unchecked_192;
        case 256: return Integrity::unchecked_256;
        default: break;
      }
    }
  }
  return find_integrity(n);
}

std::optional<IpAddr> wireshark_address(const std::string& text, const std::string& file, int line,
                                        const std::string& field, Config& cfg) {
  std::string_view t = trim(text);
  if (t.empty() || t == "*") return std::nullopt;
  if (auto a = IpAddr::parse(t)) return a;
  if (t.find('*') != std::string_view::npos || t.find('/') != std::string_view::npos) {
    cfg.warnings.push_back(
        fmt::format("{}:{}: {} '{}' is a pattern; the SA matches any address", file, line, field, std::string(t)));
    return std::nullopt;
  }
  throw ConfigError(file, line, field, fmt::format("'{}' is not an address or *", std::string(t)));
}

// ---------------------------------------------------------------- tcpdump

std::optional<Cipher> tcpdump_cipher(std::string_view name, std::size_t key_len) {
  std::string n = lower(name);
  if (n == "none" || n == "null") return Cipher::null;
  if (n == "des-cbc") return Cipher::des_cbc;
  if (n == "3des-cbc" || n == "des-ede3-cbc") return Cipher::tdes_cbc;
  if (n == "blowfish-cbc" || n == "bf-cbc") return Cipher::blowfish_cbc;
  if (n == "cast128-cbc" || n == "cast5-cbc") return Cipher::cast_cbc;
  if (n == "aes128-cbc" || n == "aes192-cbc" || n == "aes256-cbc" || n == "aes-128-cbc" || n == "aes-192-cbc" ||
      n == "aes-256-cbc" || n == "aes-cbc") {
    (void)key_len;
    return Cipher::aes_cbc;
  }
  return find_cipher(n);
}

void import_tcpdump_spec(std::string_view spec, const std::string& file, int line, Config& cfg) {
  SaConfig sa;
  sa.protocol = IpsecProtocol::esp;
  spec = trim(spec);
  // Optional "spi@address " prefix (tcpdump's default SA has none).
  auto space = spec.find_first_of(" \t");
  std::string_view algo_secret = spec;
  if (space != std::string_view::npos) {
    std::string_view sel = spec.substr(0, space);
    algo_secret = trim(spec.substr(space + 1));
    auto at = sel.find('@');
    if (at == std::string_view::npos) {
      throw ConfigError(file, line, "", fmt::format("'{}' is not spi@address", std::string(sel)));
    }
    std::uint32_t spi = 0;
    if (!parse_u32(sel.substr(0, at), spi)) {
      throw ConfigError(file, line, "spi", fmt::format("'{}' is not an SPI", std::string(sel.substr(0, at))));
    }
    sa.spi = spi;
    auto addr = IpAddr::parse(sel.substr(at + 1));
    if (!addr) {
      throw ConfigError(file, line, "dst", fmt::format("'{}' is not an IP address", std::string(sel.substr(at + 1))));
    }
    sa.dst = addr;
  }
  std::string_view algo = "des-cbc";
  std::string_view secret = algo_secret;
  if (auto colon = algo_secret.find(':'); colon != std::string_view::npos) {
    algo = algo_secret.substr(0, colon);
    secret = algo_secret.substr(colon + 1);
  }
  std::string a = lower(algo);
  if (a.ends_with("-hmac96")) {
    a.resize(a.size() - 7);
    sa.integrity = Integrity::unchecked_96;
  }
  SecretBytes key = key_from_text(secret, file, line, "secret");
  auto c = tcpdump_cipher(a, key.size());
  if (!c)
    throw ConfigError(file, line, "algorithm", fmt::format("unknown tcpdump ESP algorithm '{}'", std::string(algo)));
  sa.cipher = *c;
  if (sa.cipher != Cipher::null) sa.enc_key = std::move(key);
  finish_sa(sa, cfg, file, line);
}

// ---------------------------------------------------------------- xfrm

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> w;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    std::size_t start = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > start) w.push_back(line.substr(start, i - start));
  }
  return w;
}

// Where a line of `ip xfrm state` output is: the state's own lines, or the
// blocks that `ip -s` adds at the end (lifetimes and statistics, whose
// "replay-window N" counts packets dropped, not the window's size).
enum class XfrmSection { state, esn_context, statistics };

struct XfrmState {
  SaConfig sa;
  int line = 0;
  bool active = false;
  bool skip = false;
  std::string skip_reason;
  std::uint32_t info_window = 0;            // the "replay-window N" of the state line
  std::optional<std::uint32_t> esn_window;  // "replay_window N" of the ESN anti-replay context
  XfrmSection section = XfrmSection::state;
  bool saw_policy = false;  // an `ip xfrm policy` entry, which holds no keys
};

// The receiver's anti-replay window. The kernel shows replay-window 0 for a
// state whose window is in its ESN anti-replay context, for outbound states
// (a sender keeps no window), and for states added by hand without one;
// none of these means that a capture of the SA's packets should not be
// checked for replays, so ipsentry keeps its default window and says so
// unless the state is known to be outbound.
void settle_replay_window(XfrmState& st, const std::string& file, Config& cfg) {
  const std::uint32_t window = st.esn_window.value_or(st.info_window);
  if (window != 0) {
    st.sa.replay_window = window;
    return;
  }
  if (st.sa.direction == Direction::outbound) return;
  cfg.warnings.push_back(fmt::format(
      "{}:{}: state spi 0x{:08x} has replay-window 0 ({}); ipsentry still checks its packets for replays, with a "
      "{}-packet window",
      file, st.line, st.sa.spi.value_or(0),
      st.sa.direction == Direction::inbound ? "this host does not check it for replays"
                                            : "an outbound state, or one this host does not check for replays",
      st.sa.replay_window));
}

void flush_xfrm(XfrmState& st, const std::string& file, Config& cfg) {
  if (!st.active) return;
  st.active = false;
  if (st.skip) {
    cfg.warnings.push_back(fmt::format("{}:{}: state skipped: {}", file, st.line, st.skip_reason));
    return;
  }
  if (!st.sa.spi) throw ConfigError(file, st.line, "spi", "xfrm state without a proto/spi line");
  settle_replay_window(st, file, cfg);
  finish_sa(st.sa, cfg, file, st.line);
}

// A number as `ip -s` decorates it: "0x00000100(256)" or "1(0x00000001)".
// Both forms must agree, so a hand-edited value cannot silently pick one.
bool parse_decorated_u32(std::string_view text, std::uint32_t& out) {
  const auto open = text.find('(');
  if (open == std::string_view::npos) return parse_u32(text, out);
  if (text.back() != ')') return false;
  std::uint32_t other = 0;
  return parse_u32(text.substr(0, open), out) && parse_u32(text.substr(open + 1, text.size() - open - 2), other) &&
         other == out;
}

// An algorithm line: "enc NAME [KEY] [(BITS bits)]", "auth-trunc NAME KEY
// [(BITS bits)] TRUNC", "aead NAME KEY [(BITS bits)] ICV". The bit count `ip -s`
// adds is checked against the key and removed, so that the words after the
// key are where `ip` without -s puts them. A key of zero bits is not printed.
std::vector<std::string_view> algorithm_words(std::vector<std::string_view> w, const std::string& file, int line) {
  for (std::size_t k = 1; k < w.size(); ++k) {
    if (w[k] == "<<Keys" || w[k].starts_with("(ERROR")) {
      throw ConfigError(file, line, std::string(w[0]),
                        w[k] == "<<Keys" ? "the keys are hidden: use the output of `ip -s xfrm state` without nokeys"
                                         : "iproute2 printed this algorithm as truncated");
    }
  }
  if (w.size() >= 5 && w[3].starts_with('(') && w[4] == "bits)") {
    std::uint32_t bits = 0;
    const std::string_view key = w[2];
    const std::size_t hex_digits = key.starts_with("0x") ? key.size() - 2 : key.size();
    if (!parse_u32(w[3].substr(1), bits) || std::uint64_t{bits} != std::uint64_t{hex_digits} * 4) {
      throw ConfigError(file, line, std::string(w[0]),
                        fmt::format("the key has {} bits but the line says {} {}", hex_digits * 4, std::string(w[3]),
                                    std::string(w[4])));
    }
    w.erase(w.begin() + 3, w.begin() + 5);
  }
  return w;
}

void import_xfrm_line(const std::vector<std::string_view>& w, const std::string& name, int lineno, XfrmState& st,
                      Config& cfg) {
  if (w.empty()) return;
  auto need = [&](std::size_t n, const char* what) {
    if (w.size() < n) throw ConfigError(name, lineno, what, fmt::format("'{}' line is incomplete", std::string(w[0])));
  };
  auto key = [&](std::string_view k, const char* what) {
    SecretBytes s;
    std::string why;
    if (!parse_hex_key(k, s, why)) throw ConfigError(name, lineno, what, why);
    return s;
  };
  auto number = [&](std::string_view b, const char* what) {
    std::uint32_t v = 0;
    if (!parse_u32(b, v)) throw ConfigError(name, lineno, what, fmt::format("'{}' is not a number", std::string(b)));
    return v;
  };
  if (w[0] == "src" && w.size() >= 4 && w[2] == "dst") {
    // `ip xfrm policy` starts its entries with a selector: prefixes, no state.
    if (w[1].find('/') != std::string_view::npos || w[3].find('/') != std::string_view::npos) {
      flush_xfrm(st, name, cfg);
      st = XfrmState{};
      st.saw_policy = true;
      return;
    }
    flush_xfrm(st, name, cfg);
    st = XfrmState{};
    st.active = true;
    st.line = lineno;
    auto s = IpAddr::parse(w[1]);
    auto d = IpAddr::parse(w[3]);
    if (!s || !d) throw ConfigError(name, lineno, "src", "src/dst are not IP addresses");
    st.sa.src = s;
    st.sa.dst = d;
    return;
  }
  if (!st.active) return;
  // The lifetime and statistics blocks of `ip -s` run to the next state.
  if (w[0] == "lifetime" || w[0] == "stats:") st.section = XfrmSection::statistics;
  if (st.section == XfrmSection::statistics) return;
  if (st.section == XfrmSection::esn_context) {
    if (w[0] == "replay_window" && w.size() >= 2) {
      // " replay_window 128, bitmap-length 4": the window of an ESN-context state.
      std::string_view v = w[1];
      if (!v.empty() && v.back() == ',') v.remove_suffix(1);
      st.esn_window = number(v, "replay_window");
      return;
    }
    if (w[0] == "seq-hi" || std::all_of(w.begin(), w.end(), [](std::string_view x) {
          return std::all_of(x.begin(), x.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
        })) {
      return;  // the counters and the bitmap
    }
    st.section = XfrmSection::state;
  }
  if (w[0] == "proto") {
    need(4, "proto");
    if (w[1] == "esp") {
      st.sa.protocol = IpsecProtocol::esp;
    } else if (w[1] == "ah") {
      st.sa.protocol = IpsecProtocol::ah;
    } else {
      st.skip = true;
      st.skip_reason = fmt::format("proto {} is not ESP or AH", std::string(w[1]));
    }
    for (std::size_t k = 2; k + 1 < w.size(); ++k) {
      if (w[k] == "spi") {
        std::uint32_t spi = 0;
        if (!parse_decorated_u32(w[k + 1], spi)) {
          throw ConfigError(name, lineno, "spi", fmt::format("'{}' is not an SPI", std::string(w[k + 1])));
        }
        st.sa.spi = spi;
      } else if (w[k] == "mode") {
        if (w[k + 1] == "transport") {
          st.sa.mode = SaMode::transport;
        } else if (w[k + 1] == "tunnel") {
          st.sa.mode = SaMode::tunnel;
        } else {
          st.skip = true;
          st.skip_reason = fmt::format("mode {} is not supported", std::string(w[k + 1]));
        }
      }
    }
  } else if (w[0] == "replay-window") {
    need(2, "replay-window");
    st.info_window = number(w[1], "replay-window");
    // "replay-window 0 seq 0x00000000 flag af-unspec esn (0x10100000)": ESN is
    // the state's flag, nothing else.
    const auto flag = std::find(w.begin(), w.end(), std::string_view("flag"));
    for (auto it = flag; it != w.end() && *it != "extra_flag" && !it->starts_with('('); ++it) {
      if (*it == "esn") st.sa.esn = true;
    }
  } else if (w[0] == "anti-replay" && w.size() >= 3 && w[1] == "esn") {
    st.section = XfrmSection::esn_context;
  } else if (w[0] == "dir" && w.size() >= 2) {
    if (w[1] == "in") st.sa.direction = Direction::inbound;
    if (w[1] == "out") st.sa.direction = Direction::outbound;
  } else if (w[0] == "auth" || w[0] == "auth-trunc") {
    const auto a = algorithm_words(w, name, lineno);
    need(2, "auth");
    std::string alg = lower(a[1]);
    std::uint32_t trunc = 0;
    if (a[0] == "auth-trunc") {
      if (a.size() < 4) throw ConfigError(name, lineno, "auth-trunc", "'auth-trunc' line is incomplete");
      trunc = number(a[3], "auth-trunc");
    }
    std::optional<Integrity> ii;
    if (alg == "hmac(md5)") ii = Integrity::hmac_md5_96;
    if (alg == "hmac(sha1)") ii = Integrity::hmac_sha1_96;
    if (alg == "hmac(sha256)") ii = trunc == 128 ? Integrity::hmac_sha256_128 : Integrity::hmac_sha256_96;
    if (alg == "hmac(sha384)") ii = Integrity::hmac_sha384_192;
    if (alg == "hmac(sha512)") ii = Integrity::hmac_sha512_256;
    if (alg == "xcbc(aes)") ii = Integrity::aes_xcbc_96;
    if (alg == "hmac(rmd160)") ii = Integrity::hmac_ripemd160_96;
    if (alg == "digest_null") ii = Integrity::none;
    if (!ii) throw ConfigError(name, lineno, "auth", fmt::format("unknown xfrm integrity algorithm '{}'", alg));
    if (trunc != 0 && trunc != std::uint32_t{integrity_info(*ii).icv_len} * 8) {
      throw ConfigError(name, lineno, "auth-trunc",
                        fmt::format("{} truncated to {} bits is not a known IPsec algorithm", alg, trunc));
    }
    st.sa.integrity = *ii;
    if (*ii != Integrity::none) {
      if (a.size() < 3) throw ConfigError(name, lineno, "auth", fmt::format("{} needs a key", alg));
      st.sa.auth_key = key(a[2], "auth");
    }
  } else if (w[0] == "enc") {
    const auto a = algorithm_words(w, name, lineno);
    need(2, "enc");
    std::string alg = lower(a[1]);
    auto c = find_cipher(alg);
    if (!c) throw ConfigError(name, lineno, "enc", fmt::format("unknown xfrm cipher '{}'", alg));
    st.sa.cipher = *c;
    if (*c != Cipher::null) {
      if (a.size() < 3) throw ConfigError(name, lineno, "enc", fmt::format("{} needs a key", alg));
      st.sa.enc_key = key(a[2], "enc");
    }
  } else if (w[0] == "aead") {
    const auto a = algorithm_words(w, name, lineno);
    if (a.size() < 4) throw ConfigError(name, lineno, "aead", "'aead' line is incomplete");
    std::string alg = lower(a[1]);
    std::uint32_t icv = number(a[3], "aead");
    std::optional<Cipher> c;
    if (alg == "rfc4106(gcm(aes))") {
      c = icv == 64 ? Cipher::aes_gcm_8 : icv == 96 ? Cipher::aes_gcm_12 : icv == 128 ? Cipher::aes_gcm_16 : c;
    } else if (alg == "rfc4309(ccm(aes))") {
      c = icv == 64 ? Cipher::aes_ccm_8 : icv == 96 ? Cipher::aes_ccm_12 : icv == 128 ? Cipher::aes_ccm_16 : c;
    } else if (alg == "rfc4543(gcm(aes))" && icv == 128) {
      c = Cipher::aes_gmac;
    } else if (alg == "rfc7539esp(chacha20,poly1305)" && icv == 128) {
      c = Cipher::chacha20_poly1305;
    }
    if (!c) throw ConfigError(name, lineno, "aead", fmt::format("unknown xfrm AEAD '{}' with a {}-bit ICV", alg, icv));
    st.sa.cipher = *c;
    st.sa.enc_key = key(a[2], "aead");
  } else if (w[0] == "encap") {
    UdpEncapConfig e;
    for (std::size_t k = 1; k + 1 < w.size(); ++k) {
      if (w[k] == "type" && w[k + 1] != "espinudp") {
        st.skip = true;
        st.skip_reason = fmt::format("encap type {} is not ESP in UDP (RFC 3948)", std::string(w[k + 1]));
      }
      if (w[k] == "sport" || w[k] == "dport") {
        const std::uint32_t port = number(w[k + 1], "encap");
        if (port > 65535)
          throw ConfigError(name, lineno, "encap", fmt::format("{} {} is not a port", std::string(w[k]), port));
        (w[k] == "sport" ? e.sport : e.dport) = static_cast<std::uint16_t>(port);
      }
    }
    st.sa.encap = e;
  }
}

}  // namespace

std::optional<KeyFormat> parse_key_format(std::string_view name) noexcept {
  std::string n = lower(name);
  if (n == "wireshark" || n == "esp_sa" || n == "wireshark-esp-sa") return KeyFormat::wireshark_esp_sa;
  if (n == "tcpdump" || n == "tcpdump-file") return KeyFormat::tcpdump;
  if (n == "tcpdump-inline") return KeyFormat::tcpdump_inline;
  if (n == "xfrm" || n == "ip-xfrm") return KeyFormat::xfrm;
  if (n == "wireshark-ikev1" || n == "ikev1_decryption_table") return KeyFormat::wireshark_ikev1;
  if (n == "wireshark-ikev2" || n == "ikev2_decryption_table") return KeyFormat::wireshark_ikev2;
  if (n == "strongswan-log" || n == "charon-log" || n == "strongswan") return KeyFormat::strongswan_log;
  return std::nullopt;
}

const char* key_format_names() noexcept {
  return "wireshark, tcpdump, tcpdump-inline, xfrm, wireshark-ikev1, wireshark-ikev2, strongswan-log";
}

Config import_wireshark_esp_sa(const std::string& text, const std::string& name) {
  Config cfg;
  for_each_uat_record(
      text, name, "esp_sa", 8, false, "protocol, src, dst, spi, encryption, key, authentication, key",
      [&](const std::vector<std::string>& f, int lineno) {
        SaConfig sa;
        sa.protocol = IpsecProtocol::esp;
        std::string fam = lower(f[0]);
        if (fam != "ipv4" && fam != "ipv6" && fam != "any" && fam != "*") {
          throw ConfigError(name, lineno, "protocol", fmt::format("'{}' is not IPv4, IPv6 or Any", f[0]));
        }
        sa.src = wireshark_address(f[1], name, lineno, "src", cfg);
        sa.dst = wireshark_address(f[2], name, lineno, "dst", cfg);
        std::string_view spi = trim(f[3]);
        if (spi != "*" && !spi.empty()) {
          std::uint32_t v = 0;
          if (!parse_u32(spi, v)) throw ConfigError(name, lineno, "spi", fmt::format("'{}' is not an SPI", f[3]));
          sa.spi = v;
        }
        auto c = wireshark_cipher(f[4]);
        if (!c) throw ConfigError(name, lineno, "encryption", fmt::format("unknown encryption algorithm '{}'", f[4]));
        sa.cipher = *c;
        auto a = wireshark_integrity(f[6]);
        if (!a)
          throw ConfigError(name, lineno, "authentication", fmt::format("unknown authentication algorithm '{}'", f[6]));
        sa.integrity = *a;
        const CipherInfo& ci = cipher_info(sa.cipher);
        if (ci.aead() && sa.integrity != Integrity::none) {
          // Wireshark lets an AEAD SA carry "ANY n bit [no checking]"; the tag is the ICV.
          cfg.warnings.push_back(fmt::format("{}:{}: {} authenticates by itself; authentication '{}' ignored", name,
                                             lineno, ci.name, f[6]));
          sa.integrity = Integrity::none;
        }
        // Keys of unsupported ciphers are never used, so they are not parsed.
        if (ci.mode != CipherMode::none && ci.supported) {
          sa.enc_key = key_from_text(trim(f[5]), name, lineno, "encryption key");
        }
        const IntegrityInfo& ii = integrity_info(sa.integrity);
        if (sa.integrity != Integrity::none && ii.checks) {
          sa.auth_key = key_from_text(trim(f[7]), name, lineno, "authentication key");
        }
        finish_sa(sa, cfg, name, lineno);
      });
  return cfg;
}

Config import_tcpdump(const std::string& text, const std::string& name) {
  Config cfg;
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    int lineno = static_cast<int>(i) + 1;
    std::string_view l = trim(lines[i]);
    if (l.empty() || l[0] == '#') continue;
    if (l.starts_with("ikev2 ")) {
      import_tcpdump_ikev2_line(l, name, lineno, cfg);
      continue;
    }
    if (l.starts_with("ikev1 ")) {
      cfg.warnings.push_back(fmt::format("{}:{}: tcpdump ikev1 secrets are not supported; line ignored", name, lineno));
      continue;
    }
    // tcpdump accepts several SAs per argument, separated by commas.
    std::size_t start = 0;
    while (start <= l.size()) {
      auto comma = l.find(',', start);
      std::string_view spec = l.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (!trim(spec).empty()) import_tcpdump_spec(spec, name, lineno, cfg);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }
  return cfg;
}

Config import_xfrm(const std::string& text, const std::string& name) {
  Config cfg;
  XfrmState st;
  bool any_state = false;
  bool any_policy = false;
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const int lineno = static_cast<int>(i) + 1;
    // `ip -o` puts a whole state on one line, its lines joined by backslashes.
    std::string_view rest = lines[i];
    while (!rest.empty()) {
      const auto bs = rest.find('\\');
      const std::string_view part = rest.substr(0, bs);
      rest = bs == std::string_view::npos ? std::string_view{} : rest.substr(bs + 1);
      import_xfrm_line(words(part), name, lineno, st, cfg);
      any_state = any_state || st.active;
      any_policy = any_policy || st.saw_policy;
    }
  }
  flush_xfrm(st, name, cfg);
  if (!any_state) {
    throw ConfigError(name, 0, "",
                      fmt::format("holds no xfrm state: expected the output of `ip -s xfrm state` (each state starts "
                                  "with a line 'src ADDRESS dst ADDRESS'){}",
                                  any_policy ? "; this looks like `ip xfrm policy` output, which has no keys" : ""));
  }
  return cfg;
}

Config import_keys(KeyFormat format, const std::string& source) {
  if (format == KeyFormat::tcpdump_inline) return import_tcpdump(source, "tcpdump -E");
  std::string text;
  struct Wipe {
    std::string& t;
    ~Wipe() { cleanse(t.data(), t.size()); }
  } wipe{text};
  std::string why;
  if (!read_bounded(source, kMaxKeyExport, text, why)) {
    throw ConfigError(source, 0, "", fmt::format("cannot read the key file: it {}", why));
  }
  switch (format) {
    case KeyFormat::wireshark_esp_sa: return import_wireshark_esp_sa(text, source);
    case KeyFormat::tcpdump: return import_tcpdump(text, source);
    case KeyFormat::xfrm: return import_xfrm(text, source);
    case KeyFormat::wireshark_ikev1: return import_wireshark_ikev1(text, source);
    case KeyFormat::wireshark_ikev2: return import_wireshark_ikev2(text, source);
    case KeyFormat::strongswan_log: return import_strongswan_log(text, source);
    case KeyFormat::tcpdump_inline: break;
  }
  return {};
}

}  // namespace ipsentry::filters
