#include "ipsentry/filters/ipsec6.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/file_read.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::filters {

namespace fs = std::filesystem;
using dissect::IpAddr;

namespace {

struct Token {
  std::string text;
  int line = 0;
};

struct Entry {
  std::vector<Token> fields;
  int line = 0;
};

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// Splits a file into semicolon-terminated entries of white-space separated
// fields, skipping the header lines ipsec6 writes above the entries.
std::vector<Entry> split_entries(const std::string& text, const std::string& name, const char* first_field) {
  std::vector<Entry> out;
  Entry cur;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream words(line);
    std::string w;
    std::vector<std::string> ws;
    while (words >> w) ws.push_back(w);
    if (ws.empty()) continue;
    const std::string first = upper(ws[0]);
    // Title ("Security Policy List"), the field-name row and the underline.
    if (cur.fields.empty() &&
        (first == "SECURITY" || first == upper(first_field) || ws[0].find_first_not_of("_-=") == std::string::npos)) {
      continue;
    }
    for (std::string& word : ws) {
      std::size_t start = 0;
      while (start <= word.size()) {
        const std::size_t semi = word.find(';', start);
        const std::string part = word.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
        if (!part.empty()) {
          if (cur.fields.empty()) cur.line = n;
          cur.fields.push_back({part, n});
        }
        if (semi == std::string::npos) break;
        if (cur.fields.empty()) throw ConfigError(name, n, "", "an empty entry (a semicolon with no fields before it)");
        out.push_back(std::move(cur));
        cur = Entry{};
        start = semi + 1;
      }
    }
  }
  if (!cur.fields.empty()) {
    throw ConfigError(name, cur.line, "", "the last entry does not end with a semicolon");
  }
  return out;
}

std::optional<unsigned long> number(const std::string& s) {
  unsigned long v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    b += 2;
    base = 16;
  }
  auto [p, ec] = std::from_chars(b, e, v, base);
  if (ec != std::errc{} || p != e || b == e) return std::nullopt;
  return v;
}

struct Policy {
  unsigned long index = 0;
  int line = 0;
  std::string remote = "any";
  std::string local = "any";
  std::string protocol = "any";
  std::string remote_port = "any";
  std::string local_port = "any";
  std::string ipsec;  // ah | esp | ""
  std::string mode;   // transport | tunnel | ""
  std::optional<IpAddr> gateway;
  bool mirrored = true;
  // Direction INBOUND of a TUNNEL policy: the inbound half of a gateway
  // tunnel, ending at `endpoint` (this gateway), from `remote` to `local`.
  bool inbound_half = false;
  std::optional<IpAddr> endpoint;
  std::string action;  // permit | block | protect
  std::vector<std::string> sas;
};

struct Sa {
  unsigned long index = 0;
  int line = 0;
  std::uint32_t spi = 0;
  IpAddr dst;
  std::string auth;
  fs::path key_file;
  std::string direction;
  std::size_t policy = 0;  // position of its policy in the .spd list
};

}  // namespace

Ipsec6Import import_ipsec6_text(const std::string& spd_text, const std::string& spd_name, const std::string& sad_text,
                                const std::string& sad_name, const fs::path& key_dir, const Ipsec6Options& options) {
  Ipsec6Import result;
  std::vector<Policy> policies;
  static const char* const spd_fields[] = {
      "Policy",    "RemoteIPAddr",   "LocalIPAddr",   "Protocol",  "RemotePort", "LocalPort",     "IPSecProtocol",
      "IPSecMode", "RemoteGWIPAddr", "SABundleIndex", "Direction", "Action",     "InterfaceIndex"};
  for (const Entry& e : split_entries(spd_text, spd_name, "Policy")) {
    // Drop the "-"/"+" markers in front of the selector values.
    std::vector<Token> f;
    for (std::size_t i = 0; i < e.fields.size(); ++i) {
      const std::string& t = e.fields[i].text;
      if ((t == "-" || t == "+") && !f.empty() && f.size() <= 5) continue;
      f.push_back(e.fields[i]);
    }
    if (f.size() != 13) {
      throw ConfigError(spd_name, e.line, "",
                        fmt::format("a policy entry has {} fields; ipsec6 policies have 13 ({} ... {})", f.size(),
                                    spd_fields[0], spd_fields[12]));
    }
    auto bad = [&](std::size_t i, const std::string& why) {
      throw ConfigError(spd_name, f[i].line, spd_fields[i], fmt::format("'{}': {}", f[i].text, why));
    };
    Policy p;
    p.line = e.line;
    auto idx = number(f[0].text);
    if (!idx || *idx == 0) bad(0, "the policy number must be a positive integer");
    p.index = *idx;
    if (!policies.empty() && p.index >= policies.back().index) {
      bad(0, fmt::format("policy entries must be in decreasing numerical order (it follows policy {})",
                         policies.back().index));
    }
    auto addr = [&](std::size_t i) -> std::string {
      const std::string& t = f[i].text;
      if (t == "*") return "any";
      if (t.find('-') != std::string::npos && IpAddr::parse(t.substr(0, t.find('-')))) {
        bad(i, "address ranges are not supported; give a single address or *");
      }
      auto a = IpAddr::parse(t);
      if (!a) bad(i, "not an IPv6 or IPv4 address or *");
      return a->str();
    };
    p.remote = addr(1);
    p.local = addr(2);
    {
      const std::string t = upper(f[3].text);
      if (t != "*") {
        static const std::map<std::string, std::string> names = {
            {"TCP", "tcp"}, {"UDP", "udp"}, {"ICMP", "icmp"}, {"ICMPV6", "icmpv6"}, {"ICMP6", "icmpv6"}};
        auto it = names.find(t);
        if (it != names.end()) {
          p.protocol = it->second;
        } else if (auto n = number(t); n && *n <= 255) {
          p.protocol = std::to_string(*n);
        } else {
          bad(3, "not TCP, UDP, ICMP, ICMPv6, a protocol number or *");
        }
      }
    }
    for (std::size_t i : {std::size_t{4}, std::size_t{5}}) {
      const std::string& t = f[i].text;
      std::string& dst = i == 4 ? p.remote_port : p.local_port;
      if (t == "*") continue;
      auto n = number(t);
      if (!n || *n > 65535) bad(i, "not a port number or *");
      if (p.protocol != "tcp" && p.protocol != "udp") bad(i, "a port needs Protocol TCP or UDP");
      dst = std::to_string(*n);
    }
    const std::string proto = upper(f[6].text);
    const std::string mode = upper(f[7].text);
    const std::string action = upper(f[11].text);
    if (action == "APPLY") {
      p.action = "protect";
      if (proto == "AH") {
        p.ipsec = "ah";
      } else if (proto == "ESP") {
        p.ipsec = "esp";
      } else {
        bad(6, "an APPLY policy needs IPSecProtocol AH or ESP");
      }
      if (mode == "TRANSPORT") {
        p.mode = "transport";
      } else if (mode == "TUNNEL") {
        p.mode = "tunnel";
      } else {
        bad(7, "an APPLY policy needs IPSecMode TRANSPORT or TUNNEL");
      }
    } else if (action == "BYPASS") {
      p.action = "permit";
    } else if (action == "DISCARD") {
      p.action = "block";
    } else {
      bad(11, "Action must be APPLY, BYPASS or DISCARD");
    }
    if (f[8].text != "*") {
      auto gw = IpAddr::parse(f[8].text);
      if (!gw) bad(8, "not an address or *");
      p.gateway = gw;
    }
    if (upper(f[9].text) != "NONE") {
      bad(9, "SA bundles (nested policies) are not supported; use NONE and ipsec protocol ah+esp in YAML");
    }
    const std::string dir = upper(f[10].text);
    if (dir == "BIDIRECT") {
      p.mirrored = true;
    } else if (dir == "OUTBOUND") {
      p.mirrored = false;
    } else if (dir == "INBOUND") {
      if (p.mode != "tunnel") {
        bad(10,
            "an inbound-only policy exists here only as the inbound half of a gateway tunnel (IPSecMode TUNNEL); "
            "use BIDIRECT (or OUTBOUND)");
      }
      p.mirrored = false;
      p.inbound_half = true;
    } else {
      bad(10, "Direction must be BIDIRECT, OUTBOUND or INBOUND");
    }
    if (p.inbound_half) {
      // The seeds' gateway names itself as the endpoint of its inbound rule;
      // with --tunnel-local, a different RemoteGWIPAddr is the sending gateway.
      p.endpoint = options.tunnel_local ? options.tunnel_local : p.gateway;
      if (!p.endpoint) {
        bad(8, "the inbound half of a tunnel ends at this gateway: give its address here or with --tunnel-local");
      }
      if (p.gateway && *p.gateway == *p.endpoint) p.gateway.reset();
    } else if (p.mode == "tunnel") {
      if (!p.gateway) bad(8, "a TUNNEL policy needs the remote gateway's address");
      if (options.tunnel_local && *p.gateway == *options.tunnel_local) {
        bad(8,
            "this is --tunnel-local, this gateway itself: a tunnel rule whose endpoint is this gateway is the "
            "inbound half of the tunnel (the seeds' second rule, from the remote network to ours); give it "
            "Direction INBOUND, with RemoteIPAddr the remote side and LocalIPAddr ours");
      }
    }
    auto itf = number(f[12].text);
    if (!itf) bad(12, "not an interface index");
    if (*itf != 0) {
      result.warnings.push_back(
          fmt::format("{}:{}: policy {}: InterfaceIndex {} is ignored; ipsentry applies "
                      "policies on every interface",
                      spd_name, e.line, p.index, *itf));
    }
    policies.push_back(std::move(p));
  }

  static const char* const sad_fields[] = {"SAEntry",   "SPI",      "SADestIPAddr", "DestIPAddr",
                                           "SrcIPAddr", "Protocol", "DestPort",     "SrcPort",
                                           "AuthAlg",   "KeyFile",  "Direction",    "SecPolicyIndex"};
  std::vector<Sa> sas;
  for (const Entry& e : split_entries(sad_text, sad_name, "SAEntry")) {
    const auto& f = e.fields;
    if (f.size() != 12) {
      throw ConfigError(sad_name, e.line, "",
                        fmt::format("an SA entry has {} fields; ipsec6 SA entries have 12 ({} ... {})", f.size(),
                                    sad_fields[0], sad_fields[11]));
    }
    auto bad = [&](std::size_t i, const std::string& why) {
      throw ConfigError(sad_name, f[i].line, sad_fields[i], fmt::format("'{}': {}", f[i].text, why));
    };
    Sa s;
    s.line = e.line;
    auto idx = number(f[0].text);
    if (!idx || *idx == 0) bad(0, "the SA entry number must be a positive integer");
    s.index = *idx;
    if (!sas.empty() && s.index >= sas.back().index) {
      bad(0,
          fmt::format("SA entries must be in decreasing numerical order (it follows SA entry {})", sas.back().index));
    }
    auto spi = number(f[1].text);
    if (!spi || *spi > 0xffffffffUL) bad(1, "not an SPI (a number up to 4294967295)");
    if (*spi < 256) bad(1, "SPIs 0-255 are reserved (RFC 4303 section 2.1)");
    s.spi = static_cast<std::uint32_t>(*spi);
    auto dst = IpAddr::parse(f[2].text);
    if (!dst) bad(2, "not an address");
    s.dst = *dst;
    for (std::size_t i = 3; i <= 7; ++i) {
      if (upper(f[i].text) != "POLICY") {
        bad(i, "only POLICY (the selectors of the SA's policy) is supported for per-SA selectors");
      }
    }
    const std::string auth = upper(f[8].text);
    if (auth == "HMAC-MD5") {
      s.auth = "hmac-md5-96";
    } else if (auth == "HMAC-SHA1") {
      s.auth = "hmac-sha1-96";
    } else if (auth == "NONE") {
      s.auth = "none";
    } else {
      bad(8, "AuthAlg must be HMAC-MD5, HMAC-SHA1 or NONE");
    }
    if (s.auth != "none") {
      fs::path k = f[9].text;
      if (k.is_relative()) k = key_dir / k;
      std::error_code ec;
      if (!fs::is_regular_file(k, ec)) bad(9, fmt::format("key file '{}' does not exist", k.string()));
      s.key_file = fs::absolute(k, ec);
    }
    const std::string dir = upper(f[10].text);
    if (dir == "INBOUND") {
      s.direction = "inbound";
    } else if (dir == "OUTBOUND") {
      s.direction = "outbound";
    } else {
      bad(10, "Direction must be INBOUND or OUTBOUND");
    }
    auto pol = number(f[11].text);
    if (!pol) bad(11, "not a policy number");
    auto it = std::find_if(policies.begin(), policies.end(), [&](const Policy& p) { return p.index == *pol; });
    if (it == policies.end()) bad(11, "no policy in the .spd file has this number");
    if (it->action != "protect") bad(11, fmt::format("policy {} is not an APPLY policy", *pol));
    if (it->inbound_half && s.direction != "inbound") {
      bad(10, fmt::format("policy {} is the inbound half of a tunnel (Direction INBOUND): its SAs are INBOUND", *pol));
    }
    it->sas.push_back(fmt::format("sa-{}", s.index));
    s.policy = static_cast<std::size_t>(it - policies.begin());
    sas.push_back(std::move(s));
  }

  std::string y;
  y += fmt::format("# Imported by `ipsentry config import --ipsec6` from {} and {}.\n", spd_name, sad_name);
  y += "# Policies keep the files' order (decreasing numbers): first match wins.\n";
  std::vector<IpAddr> endpoints;
  for (const Policy& p : policies) {
    if (p.inbound_half && std::find(endpoints.begin(), endpoints.end(), *p.endpoint) == endpoints.end()) {
      endpoints.push_back(*p.endpoint);
    }
  }
  if (!endpoints.empty()) {
    y += "# The inbound half of a tunnel ends at this gateway: its address is \"me\".\ninterfaces: { local: [";
    for (std::size_t i = 0; i < endpoints.size(); ++i) y += (i ? ", " : "") + endpoints[i].str();
    y += "] }\n";
  }
  y += "policies:\n";
  for (const Policy& p : policies) {
    y += fmt::format("  - name: policy-{}\n", p.index);
    // The inbound half selects what arrives: from the remote side to ours.
    const bool in = p.inbound_half;
    y += fmt::format("    from: {}\n    to: {}\n    protocol: {}\n", in ? p.remote : p.local, in ? p.local : p.remote,
                     p.protocol);
    if ((in ? p.remote_port : p.local_port) != "any") {
      y += fmt::format("    from_port: {}\n", in ? p.remote_port : p.local_port);
    }
    if ((in ? p.local_port : p.remote_port) != "any") {
      y += fmt::format("    to_port: {}\n", in ? p.local_port : p.remote_port);
    }
    y += fmt::format("    mirrored: {}\n    action: {}\n", p.mirrored ? "true" : "false", p.action);
    if (p.action == "protect") {
      y += fmt::format("    ipsec: {{ protocol: {}, mode: {}", p.ipsec, p.mode);
      if (p.mode == "tunnel") y += fmt::format(", peer: {}", in ? p.endpoint->str() : p.gateway->str());
      y += " }\n    sas: [";
      for (std::size_t i = 0; i < p.sas.size(); ++i) y += (i ? ", " : "") + p.sas[i];
      y += "]\n";
    }
  }
  if (!sas.empty()) y += "sas:\n";
  for (const Sa& s : sas) {
    const Policy& p = policies[s.policy];
    y += fmt::format("  - name: sa-{}\n    spi: {}\n    direction: {}\n    dst: {}\n", s.index, s.spi, s.direction,
                     s.dst.str());
    if (p.mode == "tunnel") {
      if (s.direction == "outbound") {
        if (!options.tunnel_local) {
          throw ConfigError(sad_name, s.line, "SADestIPAddr",
                            fmt::format("SA entry {} is an outbound tunnel SA: give our tunnel endpoint "
                                        "(--tunnel-local ADDR), the files do not name it",
                                        s.index));
        }
        y += fmt::format("    src: {}\n", options.tunnel_local->str());
      } else if (p.inbound_half) {
        // The sending gateway: named by RemoteGWIPAddr, or by the outbound
        // half of the same tunnel (the same networks, the other way).
        std::optional<IpAddr> from = p.gateway;
        for (const Policy& o : policies) {
          if (!from && o.mode == "tunnel" && !o.inbound_half && o.remote == p.remote && o.local == p.local) {
            from = o.gateway;
          }
        }
        if (from) y += fmt::format("    src: {}\n", from->str());
      } else if (p.gateway) {
        y += fmt::format("    src: {}\n", p.gateway->str());
      }
    }
    y += fmt::format("    protocol: {}\n    mode: {}\n", p.ipsec, p.mode);
    if (p.ipsec == "esp") y += "    encryption: null\n";
    y += fmt::format("    auth: {}\n", s.auth);
    if (s.auth != "none") {
      std::error_code ec;
      fs::path rel = fs::relative(s.key_file, fs::absolute(options.output_dir, ec), ec);
      if (ec || rel.empty()) rel = s.key_file;
      y += fmt::format("    key_file: {}\n", rel.string());
    }
  }
  // The result must load: the same checks as any configuration file.
  Config check = parse_config(y, "(imported configuration)", options.output_dir);
  Spd spd(check, LocalAddresses{check.local_addresses, {}});
  for (auto& w : check.warnings) result.warnings.push_back(std::move(w));
  result.yaml = std::move(y);
  return result;
}

Ipsec6Import import_ipsec6(const fs::path& spd, const fs::path& sad, const Ipsec6Options& options) {
  auto read = [](const fs::path& p) {
    std::string text;
    std::string why;
    if (!read_bounded(p, kMaxConfigFile, text, why))
      throw ConfigError(p.string(), 0, "", fmt::format("cannot read the file: it {}", why));
    return text;
  };
  fs::path dir = sad.parent_path();
  if (dir.empty()) dir = ".";
  return import_ipsec6_text(read(spd), spd.string(), read(sad), sad.string(), dir, options);
}

}  // namespace ipsentry::filters
