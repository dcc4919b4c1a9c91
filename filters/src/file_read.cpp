#include "ipsentry/filters/file_read.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "ipsentry/filters/secret.hpp"

namespace ipsentry::filters {

const char* file_kind(mode_t mode) noexcept {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

namespace {

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

// Moves the bytes read so far into a larger block and wipes the old one:
// they may be part of a key.
void grow(std::string& buf, std::size_t size) {
  std::string bigger(size, '\0');
  std::memcpy(bigger.data(), buf.data(), buf.size());
  cleanse(buf.data(), buf.size());
  buf.swap(bigger);
}

bool give_up(std::string& buf, std::string& why, std::string reason) {
  cleanse(buf.data(), buf.size());
  buf.clear();
  why = std::move(reason);
  return false;
}

}  // namespace

bool read_bounded(const std::filesystem::path& path, std::size_t max, std::string& out, std::string& why) {
  out.clear();
  // O_NONBLOCK: opening a named pipe nobody writes to must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("cannot be opened: {}", std::strerror(errno));
    return false;
  }
  const Fd guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why = fmt::format("cannot be examined: {}", std::strerror(errno));
    return false;
  }
  const bool pipe = S_ISFIFO(st.st_mode);
  if (!pipe && !S_ISREG(st.st_mode)) {
    why = fmt::format("is {}, not a file", file_kind(st.st_mode));
    return false;
  }
  if (!pipe && static_cast<std::uint64_t>(st.st_size) > max) {
    why = fmt::format("is {} bytes; at most {} are allowed", st.st_size, max);
    return false;
  }
  // One byte more than the file claims, to see it grow past the limit.
  const std::size_t first = pipe ? std::size_t{4096} : static_cast<std::size_t>(st.st_size) + 1;
  std::string buf(std::min(first, max + 1), '\0');
  std::size_t n = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kPipeTimeoutSeconds);
  for (;;) {
    if (n == buf.size()) {
      if (n > max) return give_up(buf, why, fmt::format("holds more than {} bytes; at most {} are allowed", max, max));
      grow(buf, std::min(max + 1, buf.size() * 2));
    }
    const ssize_t r = ::read(fd, buf.data() + n, buf.size() - n);
    if (r > 0) {
      n += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN || !pipe) return give_up(buf, why, fmt::format("cannot be read: {}", std::strerror(errno)));
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return give_up(buf, why, fmt::format("is a pipe that did not end within {} s", kPipeTimeoutSeconds));
    }
    pollfd p{fd, POLLIN, 0};
    (void)::poll(&p, 1, static_cast<int>(left.count()));
  }
  if (n == 0 && pipe) {
    return give_up(buf, why,
                   "is a pipe and nothing was written to it (a named pipe is read only while a program writes to it)");
  }
  buf.resize(n);
  out.swap(buf);
  return true;
}

}  // namespace ipsentry::filters
