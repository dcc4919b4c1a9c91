#include "ipsentry/enforce/instance_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ipsentry::enforce {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (off_t off = 0;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    off += n;
    if (out.size() > 65536) break;  // a record is one short line
  }
  return out;
}

LockHolder parse_record(const std::string& text) {
  LockHolder h;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return h;
  h.pid = j.value("pid", 0L);
  h.socket = j.value("socket", std::string());
  h.config = j.value("config", std::string());
  h.state_dir = j.value("state_dir", std::string());
  h.netns = j.value("netns", std::string());
  return h;
}

}  // namespace

std::string LockHolder::describe() const {
  std::string s = pid > 0 ? fmt::format("pid {}", pid) : std::string("a process that has not recorded itself yet");
  if (!socket.empty()) s += fmt::format(", statistics on {}", socket);
  if (!config.empty()) s += fmt::format(", configuration {}", config);
  return s;
}

void secure_directory(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    const mode_t old = umask(0077);
    fs::create_directories(dir, ec);
    umask(old);
    if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw std::runtime_error(fmt::format("cannot use {}: {}", dir.string(), std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) throw std::runtime_error(fmt::format("{} is not a directory", dir.string()));
  if (st.st_uid != geteuid()) {
    throw std::runtime_error(
        fmt::format("{} belongs to uid {}, not to this user (uid {}): a directory others own "
                    "can have its locks and state replaced; use one of your own",
                    dir.string(), st.st_uid, geteuid()));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw std::runtime_error(fmt::format("{} can be written by other users (mode {:04o}): run chmod go-w {}",
                                         dir.string(), st.st_mode & 07777, dir.string()));
  }
}

std::optional<InstanceLock> InstanceLock::try_take(const fs::path& file, LockHolder& holder) {
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    throw std::runtime_error(fmt::format("cannot open the lock file {}: {}", file.string(), std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    ::close(fd);
    throw std::runtime_error(fmt::format("the lock file {} is not a regular file of this user", file.string()));
  }
  int rc;
  while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  const int e = rc != 0 ? errno : 0;
  const LockHolder recorded = parse_record(read_all(fd));
  if (rc != 0) {
    ::close(fd);
    if (e != EWOULDBLOCK) {
      throw std::runtime_error(fmt::format("cannot lock {}: {}", file.string(), std::strerror(e)));
    }
    holder = recorded;
    return std::nullopt;
  }
  return InstanceLock(fd, file, recorded);
}

InstanceLock::InstanceLock(InstanceLock&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)), previous_(std::move(other.previous_)) {
  other.fd_ = -1;
}

InstanceLock& InstanceLock::operator=(InstanceLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    previous_ = std::move(other.previous_);
    other.fd_ = -1;
  }
  return *this;
}

InstanceLock::~InstanceLock() {
  // Closing the descriptor releases the flock; the file stays, so that a
  // waiting process never locks a file that is being unlinked.
  if (fd_ >= 0) ::close(fd_);
}

void InstanceLock::record(const LockHolder& me) {
  const std::string text = json{{"pid", me.pid},
                                {"socket", me.socket},
                                {"config", me.config},
                                {"state_dir", me.state_dir},
                                {"netns", me.netns}}
                               .dump() +
                           "\n";
  // Best effort: the lock holds whatever the record says.
  if (ftruncate(fd_, 0) == 0) (void)!pwrite(fd_, text.data(), text.size(), 0);
}

std::string netns_id() {
  struct stat st {};
  if (::stat("/proc/self/ns/net", &st) != 0) {
    throw std::runtime_error(
        fmt::format("cannot identify this network namespace (/proc/self/ns/net): {}", std::strerror(errno)));
  }
  return fmt::format("{}:{}", static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino));
}

fs::path netns_lock_path(const fs::path& run_dir) {
  std::string id = netns_id();
  for (char& c : id) {
    if (c == ':') c = '-';
  }
  return run_dir / fmt::format("netns-{}.lock", id);
}

}  // namespace ipsentry::enforce
