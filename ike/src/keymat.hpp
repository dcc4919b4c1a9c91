// Key material helpers for IKE: hashes, the IKE prf and prf+, and the
// message ciphers. Not on any hot path; clarity over speed.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ipsentry/filters/algorithms.hpp"
#include "ipsentry/filters/secret.hpp"

namespace ipsentry::ike {

using Bytes = std::span<const std::uint8_t>;

/// H(data) with the IKEv1 hash algorithm.
[[nodiscard]] std::vector<std::uint8_t> hash(filters::Prf alg, std::initializer_list<Bytes> parts);
/// prf(key, data): HMAC with the prf's hash (RFC 2104).
[[nodiscard]] std::vector<std::uint8_t> prf(filters::Prf alg, Bytes key, std::initializer_list<Bytes> parts);
/// prf+ of RFC 7296 section 2.13, `length` bytes. Returns empty when the
/// length would need more than 255 rounds.
[[nodiscard]] filters::SecretBytes prf_plus(filters::Prf alg, Bytes key, Bytes seed, std::size_t length);
/// IKEv1 Quick Mode KEYMAT (RFC 2409 section 5.5) without PFS, expanded to
/// `length` bytes: K1 = prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b),
/// Kn+1 = prf(SKEYID_d, Kn | protocol | SPI | Ni_b | Nr_b).
[[nodiscard]] filters::SecretBytes v1_keymat(filters::Prf alg, Bytes skeyid_d, std::uint8_t protocol, Bytes spi,
                                             Bytes ni, Bytes nr, std::size_t length);

/// Decrypts `in` with a CBC or CTR cipher. For CTR, `iv` is the 16-byte
/// counter block. Returns false when the cipher cannot be set up.
[[nodiscard]] bool cipher_decrypt(filters::Cipher alg, Bytes key, Bytes iv, Bytes in, std::vector<std::uint8_t>& out,
                                  std::string& why);
/// AEAD open (GCM, CCM, ChaCha20-Poly1305); false when the tag does not match.
[[nodiscard]] bool aead_open(filters::Cipher alg, Bytes key, Bytes nonce, Bytes aad, Bytes ciphertext, Bytes tag,
                             std::vector<std::uint8_t>& out, std::string& why);
/// The full HMAC / XCBC output of an integrity algorithm over `data`.
[[nodiscard]] std::optional<std::vector<std::uint8_t>> mac(filters::Integrity alg, Bytes key, Bytes data);

}  // namespace ipsentry::ike
