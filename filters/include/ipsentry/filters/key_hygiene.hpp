// Checks on how keys are kept and shared, beyond whether a configuration is
// well-formed: files holding keys that other users can read, and SAs whose
// ciphers would repeat a nonce because they share a key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

/// A warning when the file at `path`, which holds keys, can be read by its
/// group or by other users: names the file, its mode and the chmod that
/// fixes it. nullopt when only the owner can read it (or it cannot be
/// examined: then reading it fails with its own message).
[[nodiscard]] std::optional<std::string> exposed_key_file(const std::filesystem::path& path);

/// Whether the cipher's per-packet nonce is built from the sequence number
/// (counter mode, GCM, GMAC, CCM, ChaCha20-Poly1305): two SAs that share
/// its key and salt send the same nonces.
[[nodiscard]] bool nonce_from_sequence(Cipher c) noexcept;

/// One sentence per pair of SAs of `cfg` that share an encryption key (key
/// and salt) under such ciphers, naming both SAs. Their sequence numbers
/// run independently, so the same (key, nonce) pair is used twice and the
/// cipher's confidentiality and integrity are lost (RFC 4106 section 3.1,
/// RFC 3686 section 2.1). Covers the manual configurations that use one key
/// in both directions: this host's sequence numbers and the peer's collide.
[[nodiscard]] std::vector<std::string> shared_nonce_keys(const Config& cfg);

}  // namespace ipsentry::filters
