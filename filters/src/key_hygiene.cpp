#include "ipsentry/filters/key_hygiene.hpp"

#include <sys/stat.h>

#include <fmt/format.h>

namespace ipsentry::filters {

std::optional<std::string> exposed_key_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  const mode_t readable = st.st_mode & (S_IRGRP | S_IROTH);
  if (readable == 0) return std::nullopt;
  const char* who = readable == (S_IRGRP | S_IROTH) ? "its group and all other users"
                    : readable == S_IRGRP           ? "its group"
                                                    : "all other users";
  return fmt::format("{} holds keys and is readable by {} (mode {:04o}): run chmod go-rwx {}", path.string(), who,
                     st.st_mode & 07777, path.string());
}

bool nonce_from_sequence(Cipher c) noexcept {
  switch (cipher_info(c).mode) {
    case CipherMode::ctr:
    case CipherMode::gcm:
    case CipherMode::ccm:
    case CipherMode::gmac:
    case CipherMode::chacha20_poly1305: return true;
    case CipherMode::none:
    case CipherMode::cbc: break;
  }
  return false;
}

std::vector<std::string> shared_nonce_keys(const Config& cfg) {
  std::vector<std::string> out;
  const auto& sas = cfg.sas;
  for (std::size_t i = 0; i < sas.size(); ++i) {
    const SaConfig& a = sas[i];
    if (!nonce_from_sequence(a.cipher) || a.enc_key.empty()) continue;
    for (std::size_t j = i + 1; j < sas.size(); ++j) {
      const SaConfig& b = sas[j];
      if (!nonce_from_sequence(b.cipher) || !(a.enc_key == b.enc_key)) continue;
      const bool both_ways =
          a.direction != b.direction && a.direction != Direction::unspecified && b.direction != Direction::unspecified;
      out.push_back(fmt::format(
          "SAs {} ({}) and {} ({}) share one {} key and salt: {} sequence numbers would repeat nonces under that "
          "key, which breaks its encryption and authentication; give each SA a key of its own",
          a.name, a.origin.str(), b.name, b.origin.str(), cipher_info(a.cipher).name,
          both_ways ? "this host's and the peer's (one key used in both directions)" : "their"));
    }
  }
  return out;
}

}  // namespace ipsentry::filters
