// Importers for IKE keys: Wireshark's ikev1/ikev2 decryption tables, the
// "ikev2 I|R" lines of tcpdump secrets files, and the key dumps strongSwan's
// charon writes at log level 4 ("ike 4" in its filelog/syslog settings).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "importers_internal.hpp"
#include "ipsentry/filters/importers.hpp"

namespace ipsentry::filters {

namespace {

std::uint64_t parse_spi64(std::string_view s, const std::string& file, int line, const std::string& field) {
  s = trim(s);
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (s.empty() || s.size() > 16 || ec != std::errc{} || p != s.data() + s.size()) {
    throw ConfigError(file, line, field, fmt::format("'{}' is not an IKE SPI (16 hex digits)", std::string(s)));
  }
  return v;
}

SecretBytes hex_field(std::string_view s, const std::string& file, int line, const std::string& field) {
  SecretBytes k;
  s = trim(s);
  if (s.empty()) return k;
  std::string why;
  // Wireshark writes keys as bare hex; tcpdump with 0x.
  std::string text = s.starts_with("0x") || s.starts_with("0X") ? std::string(s) : "0x" + std::string(s);
  const bool ok = parse_hex_key(text, k, why);
  cleanse(text.data(), text.size());
  if (!ok) throw ConfigError(file, line, field, why);
  return k;
}

void finish_ike(IkeSaConfig& sa, Config& cfg, const std::string& file, int line) {
  sa.origin = Origin{file, line, {}};
  sa.name = fmt::format("{}:{}", base_name(file), line);
  validate_ike_sa(sa, "", cfg.warnings);
  cfg.ike_sas.push_back(std::move(sa));
}

// Wireshark's IKEv2 encryption names: "AES-CBC-128 [RFC3602]",
// "AES-GCM-256 with 16 octet ICV [RFC5282]", "3DES [RFC2451]", ...
std::optional<Cipher> wireshark_ikev2_cipher(std::string_view text) {
  std::string n = lower(trim(text.substr(0, text.find('['))));
  if (n == "null") return Cipher::null;
  if (n == "3des") return Cipher::tdes_cbc;
  if (n.starts_with("aes-cbc")) return Cipher::aes_cbc;
  if (n.starts_with("aes-ctr")) return Cipher::aes_ctr;
  const bool gcm = n.starts_with("aes-gcm");
  const bool ccm = n.starts_with("aes-ccm");
  if (gcm || ccm) {
    int icv = 16;
    if (n.find("with 8 octet") != std::string::npos) icv = 8;
    if (n.find("with 12 octet") != std::string::npos) icv = 12;
    if (gcm) return icv == 8 ? Cipher::aes_gcm_8 : icv == 12 ? Cipher::aes_gcm_12 : Cipher::aes_gcm_16;
    return icv == 8 ? Cipher::aes_ccm_8 : icv == 12 ? Cipher::aes_ccm_12 : Cipher::aes_ccm_16;
  }
  return find_cipher(n);
}

std::optional<Integrity> wireshark_ikev2_integrity(std::string_view text) {
  std::string n = lower(trim(text.substr(0, text.find('['))));
  if (n == "none") return Integrity::none;
  if (n == "hmac_md5_96") return Integrity::hmac_md5_96;
  if (n == "hmac_sha1_96") return Integrity::hmac_sha1_96;
  if (n == "hmac_sha1_160") return Integrity::hmac_sha1_160;
  if (n == "hmac_sha2_256_128") return Integrity::hmac_sha256_128;
  if (n == "hmac_sha2_384_192") return Integrity::hmac_sha384_192;
  if (n == "hmac_sha2_512_256") return Integrity::hmac_sha512_256;
  if (n.starts_with("any ")) {
    // "ANY 96-bits of Authentication [No Checking]"
    if (n.find(" 64-bits") != std::string::npos) return Integrity::unchecked_64;
    if (n.find(" 96-bits") != std::string::npos) return Integrity::unchecked_96;
    if (n.find(" 128-bits") != std::string::npos) return Integrity::unchecked_128;
    if (n.find(" 192-bits") != std::string::npos) return Integrity::unchecked_192;
    if (n.find(" 256-bits") != std::string::npos) return Integrity::unchecked_256;
  }
  return find_integrity(n);
}

// strongSwan's proposal names, as in "selected proposal:
// IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048".
void strongswan_proposal(std::string_view text, IkeSaConfig& sa) {
  std::size_t start = 0;
  while (start < text.size()) {
    auto slash = text.find('/', start);
    std::string t = lower(text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    start = slash == std::string_view::npos ? text.size() : slash + 1;
    if (t.starts_with("prf_")) {
      sa.prf = find_prf(t);
      continue;
    }
    auto under = t.rfind('_');
    std::string base = under == std::string::npos ? t : t.substr(0, under);
    if (t == "3des_cbc" || t == "3des")
      sa.cipher = Cipher::tdes_cbc;
    else if (base == "aes_cbc")
      sa.cipher = Cipher::aes_cbc;
    else if (base == "aes_ctr")
      sa.cipher = Cipher::aes_ctr;
    else if (t.starts_with("aes_gcm_")) {
      sa.cipher = t.starts_with("aes_gcm_8")    ? Cipher::aes_gcm_8
                  : t.starts_with("aes_gcm_12") ? Cipher::aes_gcm_12
                                                : Cipher::aes_gcm_16;
    } else if (t.starts_with("aes_ccm_")) {
      sa.cipher = t.starts_with("aes_ccm_8")    ? Cipher::aes_ccm_8
                  : t.starts_with("aes_ccm_12") ? Cipher::aes_ccm_12
                                                : Cipher::aes_ccm_16;
    } else if (t == "chacha20_poly1305")
      sa.cipher = Cipher::chacha20_poly1305;
    else if (t == "hmac_md5_96")
      sa.integrity = Integrity::hmac_md5_96;
    else if (t == "hmac_sha1_96")
      sa.integrity = Integrity::hmac_sha1_96;
    else if (t == "hmac_sha1_160")
      sa.integrity = Integrity::hmac_sha1_160;
    else if (t == "hmac_sha2_256_128")
      sa.integrity = Integrity::hmac_sha256_128;
    else if (t == "hmac_sha2_384_192")
      sa.integrity = Integrity::hmac_sha384_192;
    else if (t == "hmac_sha2_512_256")
      sa.integrity = Integrity::hmac_sha512_256;
    else if (t == "aes_xcbc_96")
      sa.integrity = Integrity::aes_xcbc_96;
  }
}

}  // namespace

Config import_wireshark_ikev1(const std::string& text, const std::string& name) {
  Config cfg;
  for_each_uat_record(text, name, "ikev1_decryption_table", 2, true, "initiator cookie, encryption key",
                      [&](const std::vector<std::string>& f, int lineno) {
                        IkeSaConfig sa;
                        sa.version = 1;
                        sa.spi_i = parse_spi64(f[0], name, lineno, "initiator cookie");
                        sa.enc_key = hex_field(f[1], name, lineno, "encryption key");
                        finish_ike(sa, cfg, name, lineno);
                      });
  return cfg;
}

Config import_wireshark_ikev2(const std::string& text, const std::string& name) {
  Config cfg;
  for_each_uat_record(text, name, "ikev2_decryption_table", 8, true,
                      "SPIi, SPIr, SK_ei, SK_er, encryption, SK_ai, SK_ar, integrity",
                      [&](const std::vector<std::string>& f, int lineno) {
                        IkeSaConfig sa;
                        sa.version = 2;
                        sa.spi_i = parse_spi64(f[0], name, lineno, "SPIi");
                        sa.spi_r = parse_spi64(f[1], name, lineno, "SPIr");
                        sa.sk_ei = hex_field(f[2], name, lineno, "SK_ei");
                        sa.sk_er = hex_field(f[3], name, lineno, "SK_er");
                        sa.cipher = wireshark_ikev2_cipher(f[4]);
                        if (!sa.cipher)
                          throw ConfigError(name, lineno, "encryption", fmt::format("unknown algorithm '{}'", f[4]));
                        sa.sk_ai = hex_field(f[5], name, lineno, "SK_ai");
                        sa.sk_ar = hex_field(f[6], name, lineno, "SK_ar");
                        sa.integrity = wireshark_ikev2_integrity(f[7]);
                        if (!sa.integrity)
                          throw ConfigError(name, lineno, "integrity", fmt::format("unknown algorithm '{}'", f[7]));
                        // Wireshark's own example row carries no keys at all: skip such rows.
                        if (*sa.cipher == Cipher::null && sa.sk_ei.empty() && sa.sk_ai.empty()) return;
                        finish_ike(sa, cfg, name, lineno);
                      });
  return cfg;
}

void import_tcpdump_ikev2_line(std::string_view line, const std::string& file, int lineno, Config& cfg) {
  // ikev2 I|R 0xSPIi 0xSPIr ALG:0xKEY ALG:0xKEY (one integrity, one encryption)
  std::vector<std::string_view> w;
  std::size_t pos = 0;
  while (pos < line.size()) {
    auto end = line.find_first_of(" \t", pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) w.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  if (w.size() != 6 || (w[1] != "I" && w[1] != "R")) {
    throw ConfigError(file, lineno, "", "an ikev2 secret line reads: ikev2 I|R 0xSPIi 0xSPIr integ:0xKEY enc:0xKEY");
  }
  const bool initiator = w[1] == "I";
  const std::uint64_t spi_i = parse_spi64(w[2], file, lineno, "SPIi");
  const std::uint64_t spi_r = parse_spi64(w[3], file, lineno, "SPIr");
  IkeSaConfig* sa = nullptr;
  for (auto& s : cfg.ike_sas) {
    if (s.version == 2 && s.spi_i == spi_i && s.spi_r == spi_r) sa = &s;
  }
  if (sa == nullptr) {
    IkeSaConfig n;
    n.version = 2;
    n.spi_i = spi_i;
    n.spi_r = spi_r;
    n.origin = Origin{file, lineno, {}};
    n.name = fmt::format("{}:{}", base_name(file), lineno);
    cfg.ike_sas.push_back(std::move(n));
    sa = &cfg.ike_sas.back();
  }
  for (std::size_t i = 4; i < 6; ++i) {
    auto colon = w[i].find(':');
    if (colon == std::string_view::npos) throw ConfigError(file, lineno, "", "expected ALG:0xKEY");
    const std::string alg = lower(w[i].substr(0, colon));
    SecretBytes key = hex_field(w[i].substr(colon + 1), file, lineno, alg);
    std::optional<Integrity> integ;
    std::optional<Cipher> enc;
    if (alg == "sha1")
      integ = Integrity::hmac_sha1_96;
    else if (alg == "md5")
      integ = Integrity::hmac_md5_96;
    else if (alg == "sha256" || alg == "sha2-256")
      integ = Integrity::hmac_sha256_128;
    else if (alg == "aes128" || alg == "aes192" || alg == "aes256" || alg == "aes-cbc")
      enc = Cipher::aes_cbc;
    else if (alg == "3des" || alg == "3des-cbc")
      enc = Cipher::tdes_cbc;
    else
      throw ConfigError(file, lineno, "", fmt::format("unknown IKEv2 algorithm '{}'", alg));
    if (integ) {
      sa->integrity = integ;
      (initiator ? sa->sk_ai : sa->sk_ar) = std::move(key);
    } else {
      sa->cipher = enc;
      (initiator ? sa->sk_ei : sa->sk_er) = std::move(key);
    }
  }
}

Config import_strongswan_log(const std::string& text, const std::string& name) {
  Config cfg;
  struct Pending {
    IkeSaConfig sa;
    bool any = false;
    int line = 0;
  };
  std::map<std::string, Pending> by_thread;  // charon's thread number
  std::map<std::string, IkeSaConfig> proposal_by_thread;
  IkeSaConfig last_proposal;
  // A dump being read: where its bytes go and how many are still to come.
  SecretBytes* target = nullptr;
  std::vector<std::uint8_t> dump;
  std::size_t dump_left = 0;
  std::string dump_thread;

  auto flush = [&](const std::string& thread) {
    auto it = by_thread.find(thread);
    if (it == by_thread.end() || !it->second.any) return;
    IkeSaConfig& sa = it->second.sa;
    const bool dup = std::any_of(cfg.ike_sas.begin(), cfg.ike_sas.end(), [&](const IkeSaConfig& o) {
      return o.version == sa.version && o.sk_d == sa.sk_d && o.sk_ei == sa.sk_ei && o.enc_key == sa.enc_key;
    });
    if (!dup) finish_ike(sa, cfg, name, it->second.line);
    by_thread.erase(it);
  };

  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const int lineno = static_cast<int>(i) + 1;
    std::string_view l = lines[i];
    // "... 11[IKE] message" (file log, syslog, or stderr): the thread
    // number precedes the subsystem in brackets.
    auto br = l.find("[IKE] ");
    if (br == std::string_view::npos) br = l.find("[CFG] ");
    if (br == std::string_view::npos) continue;
    std::size_t ts = br;
    while (ts > 0 && l[ts - 1] >= '0' && l[ts - 1] <= '9') --ts;
    const std::string thread(l.substr(ts, br - ts));
    std::string_view msg = l.substr(br + 6);
    if (!msg.empty() && msg[0] == '<') {  // charon's ike_name option: "<conn|1> "
      auto close = msg.find("> ");
      if (close != std::string_view::npos) msg.remove_prefix(close + 2);
    }
    if (dump_left > 0 && thread == dump_thread) {
      // "   0: 25 4F EC ...  %O._" - hex bytes after the offset.
      std::string_view m = trim(msg);
      auto colon = m.find(": ");
      if (colon != std::string_view::npos && colon > 0 &&
          std::all_of(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(colon),
                      [](char c) { return c >= '0' && c <= '9'; })) {
        std::string_view hex = m.substr(colon + 2);
        const std::size_t n = std::min<std::size_t>(16, dump_left);
        for (std::size_t b = 0; b < n; ++b) {
          if (hex.size() < 3 * b + 2) throw ConfigError(name, lineno, "", "strongSwan key dump line is cut short");
          unsigned v = 0;
          auto [p, ec] = std::from_chars(hex.data() + 3 * b, hex.data() + 3 * b + 2, v, 16);
          if (ec != std::errc{} || p != hex.data() + 3 * b + 2) {
            throw ConfigError(name, lineno, "", "strongSwan key dump holds something other than hex bytes");
          }
          dump.push_back(static_cast<std::uint8_t>(v));
        }
        dump_left -= n;
        if (dump_left == 0) {
          *target = SecretBytes(std::span<const std::uint8_t>(dump));
          cleanse(dump.data(), dump.size());
          dump.clear();
          target = nullptr;
        }
        continue;
      }
      throw ConfigError(name, lineno, "", "strongSwan key dump ends before all its bytes were shown");
    }
    if (msg.starts_with("selected proposal: IKE:")) {
      IkeSaConfig p;
      strongswan_proposal(msg.substr(23), p);
      proposal_by_thread[thread] = p.clone();
      last_proposal = std::move(p);
      continue;
    }
    // "Sk_ei secret => 16 bytes @ 0x..." (IKEv2), "SKEYID_d => 20 bytes"
    // and "encryption key Ka => 32 bytes" (IKEv1).
    auto arrow = msg.find(" => ");
    if (arrow == std::string_view::npos) continue;
    const std::string_view what = msg.substr(0, arrow);
    std::size_t count = 0;
    {
      std::string_view rest = msg.substr(arrow + 4);
      auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), count);
      if (ec != std::errc{} || count == 0 || count > 1024) continue;
    }
    static const std::pair<std::string_view, int> kKeys[] = {
        {"SKEYSEED", 0},     {"Sk_d secret", 1}, {"Sk_ai secret", 2}, {"Sk_ar secret", 3},       {"Sk_ei secret", 4},
        {"Sk_er secret", 5}, {"SKEYID", 10},     {"SKEYID_d", 11},    {"encryption key Ka", 12},
    };
    int which = -1;
    for (const auto& k : kKeys) {
      if (what == k.first) which = k.second;
    }
    if (which < 0) continue;
    if (which == 0 || which == 10) {
      // A new derivation starts: the previous one of this thread is done.
      flush(thread);
      Pending& p = by_thread[thread];
      p.sa.version = which == 0 ? 2 : 1;
      p.line = lineno;
      auto prop = proposal_by_thread.find(thread);
      const IkeSaConfig& src = prop != proposal_by_thread.end() ? prop->second : last_proposal;
      p.sa.cipher = src.cipher;
      p.sa.integrity = src.integrity;
      p.sa.prf = src.prf;
      if (p.sa.version == 1) p.sa.integrity.reset();
      continue;
    }
    auto it = by_thread.find(thread);
    if (it == by_thread.end()) continue;
    IkeSaConfig& sa = it->second.sa;
    it->second.any = true;
    switch (which) {
      case 1: target = &sa.sk_d; break;
      case 2: target = &sa.sk_ai; break;
      case 3: target = &sa.sk_ar; break;
      case 4: target = &sa.sk_ei; break;
      case 5: target = &sa.sk_er; break;
      case 11: target = &sa.sk_d; break;
      default: target = &sa.enc_key; break;
    }
    dump_left = count;
    dump_thread = thread;
  }
  if (dump_left > 0) throw ConfigError(name, static_cast<int>(lines.size()), "", "the log ends inside a key dump");
  std::vector<std::string> threads;
  for (const auto& [t, p] : by_thread) threads.push_back(t);
  for (const auto& t : threads) flush(t);
  if (cfg.ike_sas.empty()) {
    cfg.warnings.push_back(fmt::format(
        "{}: no IKE keys found; charon writes them with log level 4 for 'ike' (e.g. filelog {{ ike = 4 }})", name));
  }
  return cfg;
}

}  // namespace ipsentry::filters
