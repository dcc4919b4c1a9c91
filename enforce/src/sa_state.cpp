#include "ipsentry/enforce/sa_state.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ipsentry::enforce {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kFormat = 2;
constexpr std::size_t kSaltBytes = 32;
constexpr std::size_t kIdBytes = 16;
constexpr std::string_view kLabel = "ipsentry sa-state key id v2";

const char* side_key(SeqSide s) { return s == SeqSide::sent ? "sent" : "accepted"; }

std::string hex(std::span<const std::uint8_t> b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (std::uint8_t c : b) {
    s += digits[c >> 4];
    s += digits[c & 0xf];
  }
  return s;
}

bool unhex(const std::string& s, std::vector<std::uint8_t>& out) {
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (s.size() % 2 != 0) return false;
  out.clear();
  for (std::size_t i = 0; i < s.size(); i += 2) {
    const int hi = v(s[i]);
    const int lo = v(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return true;
}

// HMAC-SHA-256(salt, label || 0 || kind || len16 || key), first 128 bits.
std::string key_id(char kind, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) {
  std::vector<std::uint8_t> msg(kLabel.begin(), kLabel.end());
  msg.push_back(0);
  msg.push_back(static_cast<std::uint8_t>(kind));
  msg.push_back(static_cast<std::uint8_t>(key.size() >> 8));
  msg.push_back(static_cast<std::uint8_t>(key.size()));
  msg.insert(msg.end(), key.begin(), key.end());
  std::uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  const bool ok =
      HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()), msg.data(), msg.size(), mac, &len) != nullptr;
  OPENSSL_cleanse(msg.data(), msg.size());
  if (!ok || len < kIdBytes) throw StateError("cannot compute a key id (HMAC-SHA-256 failed)");
  const std::string id = std::string(1, kind) + ":" + hex({mac, kIdBytes});
  OPENSSL_cleanse(mac, sizeof mac);
  return id;
}

}  // namespace

std::vector<std::string> sa_key_ids(const filters::SaConfig& sa, std::span<const std::uint8_t> salt) {
  std::vector<std::string> ids;
  if (!sa.enc_key.empty()) ids.push_back(key_id('e', sa.enc_key.bytes(), salt));
  if (!sa.auth_key.empty()) ids.push_back(key_id('a', sa.auth_key.bytes(), salt));
  if (ids.empty()) ids.push_back(fmt::format("n:{}/{}", sa.name, sa.spi ? fmt::format("{:08x}", *sa.spi) : "any"));
  return ids;
}

SaStateFile::SaStateFile() : salt_(kSaltBytes) {
  if (RAND_bytes(salt_.data(), static_cast<int>(salt_.size())) != 1) {
    throw StateError("cannot draw a random salt for the state file (OpenSSL RAND_bytes failed)");
  }
}

SaStateFile SaStateFile::load(const fs::path& path) {
  SaStateFile st;
  struct stat sb {};
  if (::lstat(path.c_str(), &sb) != 0 && errno == ENOENT) return st;
  // Checked before opening: opening a named pipe would wait for a writer.
  if (!S_ISREG(sb.st_mode)) {
    throw StateError(fmt::format("cannot read the state file {}: not a regular file", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw StateError(fmt::format("cannot read the state file {}: {}", path.string(), std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::string fix(
      "; it records the sequence numbers already used with each key, so enforcement will not start without it: "
      "repair it, or, only if every key in the configuration is new, move it away");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw StateError(fmt::format("the state file {} is damaged ({}){}", path.string(), e.what(), fix));
  }
  if (!j.is_object()) throw StateError(fmt::format("the state file {} is not a JSON object{}", path.string(), fix));
  try {
    if (!j.contains("format")) {
      // Format 1: records by SA name, each with its SPI.
      for (const auto& [name, e] : j.items()) {
        const auto spi = e.at("spi").get<std::uint32_t>();
        if (e.contains("out_seq_ceiling")) st.legacy_out_[name] = {spi, e.at("out_seq_ceiling").get<std::uint64_t>()};
        if (e.contains("in_replay_top")) st.legacy_in_[name] = {spi, e.at("in_replay_top").get<std::uint64_t>()};
      }
      return st;
    }
    if (j.at("format").get<int>() != kFormat) {
      throw StateError(fmt::format("the state file {} has format {}, which this version does not know{}", path.string(),
                                   j.at("format").get<int>(), fix));
    }
    if (!unhex(j.at("salt").get<std::string>(), st.salt_) || st.salt_.size() != kSaltBytes) {
      throw StateError(fmt::format("the state file {} has a damaged salt{}", path.string(), fix));
    }
    for (SeqSide side : {SeqSide::sent, SeqSide::accepted}) {
      for (const auto& [id, e] : j.at(side_key(side)).items()) {
        st.records_[static_cast<int>(side)][id] = {e.at("ceiling").get<std::uint64_t>(), e.value("sa", std::string())};
      }
    }
    if (const auto legacy = j.find("legacy"); legacy != j.end()) {
      for (const auto& [name, e] : legacy->items()) {
        const auto spi = e.at("spi").get<std::uint32_t>();
        if (e.contains("sent")) st.legacy_out_[name] = {spi, e.at("sent").get<std::uint64_t>()};
        if (e.contains("accepted")) st.legacy_in_[name] = {spi, e.at("accepted").get<std::uint64_t>()};
      }
    }
  } catch (const json::exception& e) {
    throw StateError(fmt::format("the state file {} is damaged ({}){}", path.string(), e.what(), fix));
  }
  return st;
}

std::uint64_t SaStateFile::ceiling(SeqSide side, const std::vector<std::string>& ids,
                                   const filters::SaConfig& sa) const {
  std::uint64_t best = 0;
  const auto& recs = records_[static_cast<int>(side)];
  for (const auto& id : ids) {
    if (auto it = recs.find(id); it != recs.end()) best = std::max(best, it->second.ceiling);
  }
  const auto& legacy = side == SeqSide::sent ? legacy_out_ : legacy_in_;
  if (auto it = legacy.find(sa.name); it != legacy.end() && sa.spi && it->second.first == *sa.spi) {
    best = std::max(best, it->second.second);
  }
  return best;
}

void SaStateFile::raise(SeqSide side, const std::vector<std::string>& ids, std::uint64_t value,
                        const std::string& sa_name) {
  auto& recs = records_[static_cast<int>(side)];
  for (const auto& id : ids) {
    Record& r = recs[id];
    if (value >= r.ceiling) {
      r.ceiling = value;
      r.sa = sa_name;
    }
  }
}

void SaStateFile::settle(SeqSide side, const std::vector<std::string>& ids, std::uint64_t value,
                         const std::string& sa_name) {
  auto& recs = records_[static_cast<int>(side)];
  for (const auto& id : ids) recs[id] = {value, sa_name};
}

std::string SaStateFile::text() const {
  json j;
  j["format"] = kFormat;
  j["salt"] = hex(salt_);
  for (SeqSide side : {SeqSide::sent, SeqSide::accepted}) {
    json recs = json::object();
    for (const auto& [id, r] : records_[static_cast<int>(side)]) recs[id] = {{"ceiling", r.ceiling}, {"sa", r.sa}};
    j[side_key(side)] = recs;
  }
  if (!legacy_out_.empty() || !legacy_in_.empty()) {
    json legacy = json::object();
    for (const auto& [name, v] : legacy_out_) legacy[name] = {{"spi", v.first}, {"sent", v.second}};
    for (const auto& [name, v] : legacy_in_) {
      legacy[name]["spi"] = v.first;
      legacy[name]["accepted"] = v.second;
    }
    j["legacy"] = legacy;
  }
  return j.dump(1) + "\n";
}

void SaStateFile::save(const fs::path& path) const {
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const fs::path tmp = path.string() + ".tmp";
  const std::string body = text();
  auto fail = [&](const char* what) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw StateError(fmt::format("cannot write the state file {} ({}): {}", path.string(), what, std::strerror(e)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail("create");
  std::size_t off = 0;
  while (off < body.size()) {
    const ssize_t n = ::write(fd, body.data() + off, body.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      fail("write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename");
  // The rename itself must reach the disk before the numbers are used.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail("open directory");
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) fail("fsync directory");
}

}  // namespace ipsentry::enforce
