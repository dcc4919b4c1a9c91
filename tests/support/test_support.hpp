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
