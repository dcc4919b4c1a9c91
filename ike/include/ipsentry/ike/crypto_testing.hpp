// For unit tests only: never included by the daemon, the analyzer or the
// command line. Published key-exchange vectors (RFC 5903 8, RFC 7748 6.1)
// give the private value, which the public KeyExchange::create() never
// takes: production private values come only from OpenSSL's generator.
#pragma once

#include <memory>

#include "ipsentry/ike/crypto.hpp"

namespace ipsentry::ike::testing {

/// A KeyExchange with the given private value: the big-endian scalar for
/// ecp256/ecp384, the 32-byte scalar for curve25519 (clamped by X25519
/// itself). Throws CryptoError for MODP groups and bad values.
[[nodiscard]] std::unique_ptr<KeyExchange> key_exchange_with_private(filters::DhGroup group, Bytes private_value);

}  // namespace ipsentry::ike::testing
