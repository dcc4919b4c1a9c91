#include "ipsentry/capture/file_source.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ipsentry/filters/file_read.hpp"

namespace ipsentry::capture {

namespace {

// Gzip files larger than this after inflation are refused rather than
// exhausting memory; uncompress them first.
constexpr std::size_t kMaxInflated = std::size_t{2} << 30;

// Inflates a gzip file. Damage (a file cut short, corrupt data, a bad
// checksum) does not discard what was inflated before it: the frames there
// are as good as those before the damage in a plain capture. `damage` says
// what went wrong, or stays empty.
std::vector<std::uint8_t> inflate_gzip(const std::uint8_t* data, std::size_t len, const std::string& name,
                                       std::string& damage) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw CaptureError(name + ": cannot initialise zlib");
  std::vector<std::uint8_t> out;
  out.resize(std::min(kMaxInflated, len * 4 + 4096));
  std::size_t fed = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.total_out == out.size()) {
      if (out.size() >= kMaxInflated) {
        inflateEnd(&zs);
        throw CaptureError(name + ": inflates to more than 2 GiB; decompress it with gunzip first");
      }
      out.resize(std::min(kMaxInflated, out.size() * 2));
    }
    // zlib counts in 32 bits: a file over 4 GiB is fed in pieces.
    if (zs.avail_in == 0 && fed < len) {
      const std::size_t piece = std::min<std::size_t>(len - fed, 1u << 30);
      zs.next_in = const_cast<Bytef*>(data + fed);
      zs.avail_in = static_cast<uInt>(piece);
      fed += piece;
    }
    zs.next_out = out.data() + zs.total_out;
    zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - zs.total_out, 1u << 30));
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      damage = fmt::format("gzip data is damaged ({})", zs.msg ? zs.msg : "corrupt data");
      break;
    }
    if (zs.avail_in == 0 && fed == len && zs.avail_out != 0) {
      damage = "gzip data ends early (file cut short)";
      break;
    }
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

}  // namespace

FileSource::FileSource(const std::filesystem::path& path) : path_(path) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a named pipe must not wait for a writer; it is
  // refused below like every other file that cannot be mapped.
  int fd = ::open(name.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) throw CaptureError(fmt::format("cannot open capture '{}': {}", name, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw CaptureError(fmt::format("cannot examine capture '{}': {}", name, std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CaptureError(
        fmt::format("capture '{}' is {}, not a capture file{}", name, filters::file_kind(st.st_mode),
                    S_ISFIFO(st.st_mode) ? " (captures are memory-mapped: save it to a file first)" : ""));
  }
  map_len_ = static_cast<std::size_t>(st.st_size);
  if (map_len_ == 0) {
    ::close(fd);
    throw CaptureError(fmt::format("capture '{}' is empty", name));
  }
  void* m = ::mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw CaptureError(fmt::format("cannot map capture '{}': {}", name, std::strerror(errno)));
  map_ = static_cast<const std::uint8_t*>(m);
  ::madvise(m, map_len_, MADV_SEQUENTIAL);

  dissect::Bytes image(map_, map_len_);
  if (map_len_ >= 2 && map_[0] == 0x1f && map_[1] == 0x8b) {
    try {
      inflated_ = inflate_gzip(map_, map_len_, name, inflate_damage_);
    } catch (...) {
      ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
      map_ = nullptr;
      throw;
    }
    ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
    map_ = nullptr;
    map_len_ = 0;
    compressed_ = true;
    image = dissect::Bytes(inflated_.data(), inflated_.size());
  }
  std::string why;
  if (!parser_.open(image, why)) {
    if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
    map_ = nullptr;
    if (!inflate_damage_.empty()) why = fmt::format("{}, before the capture header: {}", inflate_damage_, why);
    throw CaptureError(fmt::format("'{}' is not a usable capture: {}", name, why));
  }
}

FileSource::~FileSource() {
  if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
}

bool FileSource::next(dissect::Frame& frame) {
  switch (parser_.next(frame)) {
    case dissect::CaptureFileParser::Next::frame: return true;
    case dissect::CaptureFileParser::Next::end:
      // A gzip file cut at a record boundary parses to a clean end.
      if (!inflate_damage_.empty()) error_ = inflate_damage_;
      return false;
    case dissect::CaptureFileParser::Next::error:
      error_ = inflate_damage_.empty() ? fmt::format("{} at byte {}", parser_.error_message(), parser_.error_offset())
                                       : fmt::format("{}: {} at byte {} of the inflated capture", inflate_damage_,
                                                     parser_.error_message(), parser_.error_offset());
      return false;
  }
  return false;
}

std::string FileSource::unsupported_link() const {
  const std::uint64_t n = parser_.unsupported_frames();
  if (n == 0) return {};
  return fmt::format("{} frame{} not looked into: {}", n, n == 1 ? " was" : "s were",
                     dissect::unsupported_link_type_message(parser_.unsupported_link_type()));
}

void FileSource::release_before(std::uint64_t offset) noexcept {
  if (map_ == nullptr) return;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::size_t upto = static_cast<std::size_t>(offset) / page * page;
  if (upto > map_len_) upto = map_len_ / page * page;
  // Only bother in steps of a few megabytes.
  if (upto <= released_ + (std::size_t{8} << 20)) return;
  ::madvise(const_cast<std::uint8_t*>(map_) + released_, upto - released_, MADV_DONTNEED);
  released_ = upto;
}

}  // namespace ipsentry::capture
