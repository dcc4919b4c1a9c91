// Verdicts and their reasons, generated from one list so that the names, the
// verdict each reason maps to and the descriptions cannot drift apart.
#pragma once

#include <cstdint>
#include <string_view>

namespace ipsentry::ipsec {

enum class Verdict : std::uint8_t {
  ok,
  icv_fail,
  decrypt_fail,
  replay,
  unknown_spi,
  malformed,
  unverifiable,
  unsupported,
};
inline constexpr std::size_t kVerdictCount = 8;

/// "ok", "icv-fail", ... as printed and as used in JSON.
[[nodiscard]] std::string_view verdict_name(Verdict v) noexcept;

// X(name, verdict, description)
#define IPSENTRY_REASONS(X)                                                                               \
  X(verified, ok, "verified")                                                                            \
  X(verified_no_integrity, ok, "decrypted; the SA has no integrity protection")                          \
  X(dummy_packet, ok, "dummy packet (next header 59), discarded (RFC 4303 section 2.6)")                 \
  X(icv_unchecked, unverifiable, "decrypted; ICV skipped, not checked (the SA has no integrity key)")    \
  X(icv_mismatch, icv_fail, "ICV mismatch")                                                              \
  X(tag_mismatch, icv_fail, "authentication tag mismatch")                                               \
  X(bad_padding, decrypt_fail, "padding is not 1, 2, 3, ... (wrong encryption key?)")                   \
  X(pad_too_long, decrypt_fail, "pad length exceeds the decrypted payload (wrong encryption key?)")       \
  X(bad_inner_packet, decrypt_fail, "decrypted data does not match its next header (wrong encryption key?)") \
  X(crypto_error, decrypt_fail, "the cipher reported an error")                                         \
  X(not_block_aligned, malformed, "ciphertext is not a whole number of cipher blocks")                   \
  X(esp_too_short, malformed, "ESP packet is shorter than header, IV, trailer and ICV")                  \
  X(ah_icv_length, malformed, "AH ICV field is shorter than the SA's ICV")                               \
  X(malformed_packet, malformed, "malformed packet")                                                     \
  X(truncated, malformed, "packet truncated by the capture (snaplen)")                                   \
  X(replay_duplicate, replay, "sequence number already received")                                        \
  X(replay_old, replay, "sequence number is left of the replay window")                                  \
  X(seq_zero, replay, "sequence number 0 is never sent (RFC 4303)")                                      \
  X(no_sa, unknown_spi, "no SA for this SPI and destination")                                            \
  X(fragment, unverifiable, "IP fragment: the ICV covers the whole datagram, which is not reassembled")  \
  X(unsupported_routing, unverifiable, "AH over this IPv6 routing header type cannot be verified")        \
  X(nested_too_deep, unverifiable, "more than 4 nested IPsec layers")                                    \
  X(seq_unrecorded, unverifiable, "sequence number above what enforcement's state file records")       \
  X(unsupported_cipher, unsupported, "encryption algorithm is not supported")                            \
  X(unsupported_integrity, unsupported, "integrity algorithm is not supported")

enum class Reason : std::uint8_t {
#define IPSENTRY_REASON_ENUM(name, verdict, text) name,
  IPSENTRY_REASONS(IPSENTRY_REASON_ENUM)
#undef IPSENTRY_REASON_ENUM
};

[[nodiscard]] Verdict verdict_of(Reason r) noexcept;
[[nodiscard]] std::string_view reason_name(Reason r) noexcept;         // "icv_mismatch"
[[nodiscard]] std::string_view reason_description(Reason r) noexcept;  // "ICV mismatch"

}  // namespace ipsentry::ipsec
