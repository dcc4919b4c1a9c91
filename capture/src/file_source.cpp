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

constexpr std::size_t kStep = FileSource::kInflateStep;
// Compressed input is read this much at a time.
constexpr std::size_t kInput = std::size_t{256} << 10;
// Deflate expands by at most about 1032:1: a gzip file's capture fits in this
// many times its size, which bounds the address space reserved for it.
constexpr std::uint64_t kMaxRatio = 1032;
// The address space reserved is capped (x86-64 user space is 128 TiB); a
// reservation the system refuses (ulimit -v) is halved down to this floor.
constexpr std::size_t kMaxReserve = std::size_t{1} << 45;
constexpr std::size_t kMinReserve = std::size_t{64} << 20;
// Steps given back behind the reader are kept (at most this many) and moved
// to the front with mremap: their pages are already there, so inflating into
// them costs no page faults and no zeroing.
constexpr int kSpares = 2;
constexpr std::size_t kHuge = std::size_t{2} << 20;

std::size_t page_size() noexcept {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

std::size_t round_up(std::uint64_t n, std::size_t to) { return static_cast<std::size_t>((n + to - 1) / to * to); }

}  // namespace

// A gzip file inflated step by step into one reserved range of address
// space. The image never moves, so frames are zero-copy views
// valid until release_before() passes them; memory behind the reader is given
// back, so what is resident stays a few steps whatever the file's size.
class FileSource::Stream {
 public:
  Stream(int fd, std::uint64_t file_size, const std::string& name) : fd_(fd) {
    std::size_t want =
        file_size >= kMaxReserve / kMaxRatio ? kMaxReserve : round_up(file_size * kMaxRatio + kStep, kStep);
    void* m = MAP_FAILED;
    for (;;) {
      m = ::mmap(nullptr, want + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m != MAP_FAILED || want <= kMinReserve) break;
      want /= 2;
    }
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(fd_);
      throw CaptureError(fmt::format("cannot reserve memory to read '{}': {}", name, std::strerror(e)));
    }
    // Aligned to huge pages, so that the kernel can back each step with two
    // of them and mremap moves them whole.
    auto* raw = static_cast<std::uint8_t*>(m);
    auto* aligned = reinterpret_cast<std::uint8_t*>(round_up(reinterpret_cast<std::uintptr_t>(raw), kHuge));
    if (aligned != raw) ::munmap(raw, static_cast<std::size_t>(aligned - raw));
    ::munmap(aligned + want, static_cast<std::size_t>(raw + kHuge - aligned));
    base_ = aligned;
    reserved_ = want;
    ::madvise(base_, reserved_, MADV_HUGEPAGE);
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    in_ = std::make_unique<std::uint8_t[]>(kInput);
    if (inflateInit2(&zs_, 15 + 32) != Z_OK) {
      release_all();
      throw CaptureError(name + ": cannot initialise zlib");
    }
  }

  ~Stream() {
    inflateEnd(&zs_);
    release_all();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  /// Adds the next step of the image, or reaches its end (ended()).
  void fill() {
    if (ended_) return;
    if (filled_ == committed_ && !commit_step()) return;
    const std::size_t target = committed_;
    while (filled_ < target && !ended_) {
      filled_ += inflate_some(base_ + filled_, target - filled_);
    }
  }

  /// After the capture inside turned out damaged: inflates the rest, without
  /// keeping it, to learn whether the gzip data is damaged too. Corrupt
  /// compressed data can inflate to garbage for a while before zlib notices,
  /// and then it is the cause worth naming.
  void check_rest() {
    if (ended_) return;
    auto scratch = std::make_unique<std::uint8_t[]>(kInput);
    while (!ended_) (void)inflate_some(scratch.get(), kInput);
  }

  [[nodiscard]] dissect::Bytes image() const noexcept { return {base_, filled_}; }
  [[nodiscard]] bool ended() const noexcept { return ended_; }
  /// What ended the image early (damaged gzip data, a read error), or empty.
  [[nodiscard]] const std::string& damage() const noexcept { return damage_; }
  /// Compressed bytes consumed so far.
  [[nodiscard]] std::uint64_t consumed() const noexcept { return read_total_ - zs_.avail_in; }

  void release_before(std::uint64_t offset) noexcept {
    const std::size_t upto = static_cast<std::size_t>(std::min<std::uint64_t>(offset, filled_)) / kStep * kStep;
    for (; released_ < upto; released_ += kStep) {
      std::uint8_t* p = base_ + released_;
      if (spares_ < kSpares) {
        spare_[spares_++] = p;
      } else {
        ::munmap(p, kStep);
      }
    }
  }

 private:
  bool commit_step() {
    if (reserved_ - committed_ < kStep) {
      end_with(fmt::format(
          "inflates to more than {} MiB, more than the address space ipsentry could reserve; decompress it with "
          "gunzip first",
          reserved_ >> 20));
      return false;
    }
    std::uint8_t* at = base_ + committed_;
    while (spares_ > 0) {
      std::uint8_t* s = spare_[--spares_];
      if (::mremap(s, kStep, kStep, MREMAP_MAYMOVE | MREMAP_FIXED, at) != MAP_FAILED) {
        committed_ += kStep;
        return true;
      }
      ::munmap(s, kStep);
    }
    if (::mprotect(at, kStep, PROT_READ | PROT_WRITE) != 0) {
      end_with(fmt::format("cannot get memory to read on: {}", std::strerror(errno)));
      return false;
    }
    committed_ += kStep;
    return true;
  }

  void end_with(std::string why) {
    damage_ = std::move(why);
    ended_ = true;
  }

  // Inflates into out[0, room) (room < 4 GiB); returns the bytes written.
  // Damage (a file cut short, corrupt data, a bad checksum) does not discard
  // what was inflated before it: the frames there are as good as those before
  // the damage in a plain capture.
  std::size_t inflate_some(std::uint8_t* out, std::size_t room) {
    if (zs_.avail_in == 0 && !input_ended_) {
      const ssize_t n = ::read(fd_, in_.get(), kInput);
      if (n < 0) {
        if (errno != EINTR) end_with(fmt::format("cannot read the gzip data: {}", std::strerror(errno)));
        return 0;
      }
      if (n == 0) input_ended_ = true;
      zs_.next_in = in_.get();
      zs_.avail_in = static_cast<uInt>(n);
      read_total_ += static_cast<std::uint64_t>(n);
    }
    zs_.next_out = out;
    zs_.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    const auto produced = static_cast<std::size_t>(zs_.next_out - out);
    if (rc == Z_STREAM_END) {
      ended_ = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      end_with(fmt::format("gzip data is damaged ({})", zs_.msg != nullptr ? zs_.msg : "corrupt data"));
    } else if (zs_.avail_in == 0 && input_ended_ && zs_.avail_out != 0) {
      end_with("gzip data ends early (file cut short)");
    }
    return produced;
  }

  void release_all() noexcept {
    for (int i = 0; i < spares_; ++i) ::munmap(spare_[i], kStep);
    spares_ = 0;
    if (base_ != nullptr) ::munmap(base_ + released_, reserved_ - released_);
    base_ = nullptr;
    ::close(fd_);
  }

  int fd_;
  std::uint8_t* base_ = nullptr;
  std::size_t reserved_ = 0;
  std::size_t committed_ = 0;  // [released_, committed_) is readable and writable
  std::size_t filled_ = 0;     // image bytes so far
  std::size_t released_ = 0;   // below this the range is given back
  std::uint8_t* spare_[kSpares] = {};
  int spares_ = 0;
  bool ended_ = false;
  std::string damage_;
  z_stream zs_{};
  std::unique_ptr<std::uint8_t[]> in_;
  std::uint64_t read_total_ = 0;
  bool input_ended_ = false;
};

FileSource::FileSource(const std::filesystem::path& path, Released released)
    : path_(path), page_(page_size()), released_mode_(released) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a named pipe must not wait for a writer; it is
  // refused below like every other file that cannot be read from start to end.
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
  file_size_ = static_cast<std::uint64_t>(st.st_size);
  if (file_size_ == 0) {
    ::close(fd);
    throw CaptureError(fmt::format("capture '{}' is empty", name));
  }
  std::uint8_t magic[2] = {};
  if (::pread(fd, magic, sizeof magic, 0) < 0) {
    const int e = errno;
    ::close(fd);
    throw CaptureError(fmt::format("cannot read capture '{}': {}", name, std::strerror(e)));
  }
  compressed_ = file_size_ >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  dissect::Bytes image;
  if (compressed_) {
    stream_ = std::make_unique<Stream>(fd, file_size_, name);  // owns fd from here
    stream_->fill();
    image = stream_->image();
  } else {
    map_len_ = static_cast<std::size_t>(file_size_);
    void* m = ::mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) throw CaptureError(fmt::format("cannot map capture '{}': {}", name, std::strerror(errno)));
    map_ = static_cast<const std::uint8_t*>(m);
    ::madvise(m, map_len_, MADV_SEQUENTIAL);
    image = dissect::Bytes(map_, map_len_);
  }
  std::string why;
  if (!parser_.open(image, why)) {
    if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
    map_ = nullptr;
    if (stream_ && !stream_->damage().empty()) {
      why = fmt::format("{}, before the capture header: {}", stream_->damage(), why);
    }
    stream_.reset();
    throw CaptureError(fmt::format("'{}' is not a usable capture: {}", name, why));
  }
  if (stream_) parser_.grow(image, stream_->ended());
}

FileSource::~FileSource() {
  if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), map_len_);
}

void FileSource::read_more() {
  stream_->fill();
  parser_.grow(stream_->image(), stream_->ended());
}

bool FileSource::next(dissect::Frame& frame) {
  for (;;) {
    switch (parser_.next(frame)) {
      case dissect::CaptureFileParser::Next::frame: return true;
      case dissect::CaptureFileParser::Next::more: read_more(); continue;
      case dissect::CaptureFileParser::Next::end:
        // A gzip file cut at a record boundary parses to a clean end.
        if (stream_ && !stream_->damage().empty()) error_ = stream_->damage();
        return false;
      case dissect::CaptureFileParser::Next::error:
        if (stream_) stream_->check_rest();
        error_ = !stream_ || stream_->damage().empty()
                     ? fmt::format("{} at byte {}", parser_.error_message(), parser_.error_offset())
                     : fmt::format("{}: {} at byte {} of the inflated capture", stream_->damage(),
                                   parser_.error_message(), parser_.error_offset());
        return false;
    }
  }
}

std::uint64_t FileSource::size() const noexcept { return file_size_; }

std::uint64_t FileSource::offset() const noexcept { return stream_ ? stream_->consumed() : parser_.offset(); }

std::string FileSource::unsupported_link() const {
  const std::uint64_t n = parser_.unsupported_frames();
  if (n == 0) return {};
  return fmt::format("{} frame{} not looked into: {}", n, n == 1 ? " was" : "s were",
                     dissect::unsupported_link_type_message(parser_.unsupported_link_type()));
}

void FileSource::release_before(std::uint64_t offset) noexcept {
  if (stream_) {
    if (released_mode_ == Released::gone) stream_->release_before(offset);
    return;
  }
  if (map_ == nullptr) return;
  std::size_t upto = static_cast<std::size_t>(offset) / page_ * page_;
  if (upto > map_len_) upto = map_len_ / page_ * page_;
  // Only bother in steps of a few megabytes.
  if (upto <= released_ + (std::size_t{8} << 20)) return;
  ::madvise(const_cast<std::uint8_t*>(map_) + released_, upto - released_, MADV_DONTNEED);
  released_ = upto;
}

}  // namespace ipsentry::capture
