// Helpers shared by the unit tests.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/secret.hpp"

namespace ipsentry::test {

/// Hex text to bytes; whitespace is ignored so vectors can be laid out as
/// in their RFCs.
inline std::vector<std::uint8_t> hex(std::string_view text) {
  std::vector<std::uint8_t> out;
  int hi = -1;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else if (c == ' ' || c == '\n' || c == '\t') {
      continue;
    } else {
      throw std::invalid_argument("bad hex in test vector");
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) throw std::invalid_argument("odd hex in test vector");
  return out;
}

inline std::vector<std::uint8_t> ascii(std::string_view s) { return {s.begin(), s.end()}; }

inline filters::SecretBytes secret(const std::vector<std::uint8_t>& v) { return filters::SecretBytes(v); }

/// A minimal ESP SA for transform tests.
inline filters::SaConfig esp_sa(filters::Cipher c, const std::vector<std::uint8_t>& enc_key,
                                filters::Integrity i = filters::Integrity::none,
                                const std::vector<std::uint8_t>& auth_key = {}, bool esn = false) {
  filters::SaConfig sa;
  sa.name = "test";
  sa.spi = 0x1000;
  sa.protocol = filters::IpsecProtocol::esp;
  sa.cipher = c;
  sa.enc_key = filters::SecretBytes(enc_key);
  sa.integrity = i;
  sa.auth_key = filters::SecretBytes(auth_key);
  sa.esn = esn;
  return sa;
}

}  // namespace ipsentry::test

#include <algorithm>
#include <cstring>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/dissect/ip_address.hpp"

namespace ipsentry::test {

inline dissect::IpAddr addr(const char* text) {
  auto a = dissect::IpAddr::parse(text);
  if (!a) throw std::invalid_argument(text);
  return *a;
}

/// An IPv4 packet with a correct header checksum.
inline std::vector<std::uint8_t> ipv4(const char* src, const char* dst, std::uint8_t proto,
                                      const std::vector<std::uint8_t>& payload,
                                      const std::vector<std::uint8_t>& options = {}, std::uint8_t tos = 0,
                                      std::uint8_t ttl = 64) {
  if (options.size() % 4 != 0) throw std::invalid_argument("IPv4 options must be padded to 4 bytes");
  std::size_t ihl = 20 + options.size();
  std::vector<std::uint8_t> p(ihl + payload.size(), 0);
  p[0] = static_cast<std::uint8_t>(0x40 | (ihl / 4));
  p[1] = tos;
  dissect::store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
  dissect::store_be16(p.data() + 4, 0x1234);
  p[8] = ttl;
  p[9] = proto;
  std::memcpy(p.data() + 12, addr(src).data(), 4);
  std::memcpy(p.data() + 16, addr(dst).data(), 4);
  std::copy(options.begin(), options.end(), p.begin() + 20);
  std::copy(payload.begin(), payload.end(), p.begin() + static_cast<long>(ihl));
  dissect::ipv4_set_checksum(p.data(), ihl);
  return p;
}

/// An IPv6 packet; `ext` are complete extension headers already chained,
/// `first` is the next header of the IPv6 header itself.
inline std::vector<std::uint8_t> ipv6(const char* src, const char* dst, std::uint8_t first,
                                      const std::vector<std::uint8_t>& ext, const std::vector<std::uint8_t>& payload,
                                      std::uint8_t hop_limit = 64) {
  std::vector<std::uint8_t> p(40, 0);
  p[0] = 0x60;
  dissect::store_be16(p.data() + 4, static_cast<std::uint16_t>(ext.size() + payload.size()));
  p[6] = first;
  p[7] = hop_limit;
  std::memcpy(p.data() + 8, addr(src).data(), 16);
  std::memcpy(p.data() + 24, addr(dst).data(), 16);
  p.insert(p.end(), ext.begin(), ext.end());
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}

inline std::vector<std::uint8_t> icmp_echo(std::uint16_t id, std::uint16_t seq, std::size_t data_len, bool v6) {
  std::vector<std::uint8_t> m(8 + data_len, 0);
  m[0] = v6 ? 128 : 8;
  dissect::store_be16(m.data() + 4, id);
  dissect::store_be16(m.data() + 6, seq);
  for (std::size_t i = 0; i < data_len; ++i) m[8 + i] = static_cast<std::uint8_t>(i);
  if (!v6) dissect::store_be16(m.data() + 2, dissect::checksum_fold(dissect::checksum_add(0, m)));
  return m;
}

inline std::vector<std::uint8_t> udp(std::uint16_t sport, std::uint16_t dport, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> u(8 + data.size(), 0);
  dissect::store_be16(u.data(), sport);
  dissect::store_be16(u.data() + 2, dport);
  dissect::store_be16(u.data() + 4, static_cast<std::uint16_t>(u.size()));
  std::copy(data.begin(), data.end(), u.begin() + 8);
  return u;
}

/// Deterministic key bytes.
inline std::vector<std::uint8_t> key_of(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> k(n);
  for (std::size_t i = 0; i < n; ++i) k[i] = static_cast<std::uint8_t>(seed + i * 7);
  return k;
}

/// An SA of any protocol and algorithm with keys of the first allowed
/// length (or `key_slot`), between `src` and `dst`.
inline filters::SaConfig make_sa(filters::IpsecProtocol proto, filters::Cipher c, filters::Integrity i,
                                 filters::SaMode mode, const char* src, const char* dst, bool esn = false,
                                 std::size_t key_slot = 0) {
  filters::SaConfig sa;
  sa.name = "sa";
  sa.spi = 0x4242;
  sa.protocol = proto;
  sa.cipher = c;
  const auto& ci = filters::cipher_info(c);
  if (ci.mode != filters::CipherMode::none) sa.enc_key = filters::SecretBytes(key_of(ci.key_sizes[key_slot], 1));
  sa.integrity = i;
  const auto& ii = filters::integrity_info(i);
  if (i != filters::Integrity::none && ii.checks) sa.auth_key = filters::SecretBytes(key_of(ii.key_len, 99));
  sa.mode = mode;
  sa.direction = filters::Direction::outbound;
  sa.src = test::addr(src);
  sa.dst = test::addr(dst);
  sa.esn = esn;
  sa.replay_window = 64;
  return sa;
}

/// The `sas:` section of a configuration: an AES-GCM-16 ESP SA pair, "out"
/// from `me` to `peer` and "in" back, keys in hex. `extra_out` is added to
/// "out" (indented settings); `mode` is written when given.
inline std::string esp_sa_pair(const std::string& me, const std::string& peer, const std::string& spi_out,
                               const std::string& key_out, const std::string& spi_in, const std::string& key_in,
                               const std::string& extra_out = "", const std::string& mode = "") {
  auto sa = [&](const char* name, const std::string& spi, const char* dir, const std::string& src,
                const std::string& dst, const std::string& key) {
    return std::string("  - name: ") + name + "\n    spi: " + spi + "\n    direction: " + dir + "\n    src: " + src +
           "\n    dst: " + dst + "\n    protocol: esp\n" + (mode.empty() ? "" : "    mode: " + mode + "\n") +
           "    encryption: aes-gcm-16\n    enc_key: 0x" + key + "\n";
  };
  return "sas:\n" + sa("out", spi_out, "outbound", me, peer, key_out) + extra_out +
         sa("in", spi_in, "inbound", peer, me, key_in);
}

}  // namespace ipsentry::test
