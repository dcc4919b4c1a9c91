#include "output_file.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ipsentry/capture/file_source.hpp"

namespace ipsentry::capture::detail {

OutputFile::OutputFile(const std::filesystem::path& path, const std::filesystem::path& tmp_dir) : path_(path) {
  const std::string leaf = fmt::format(".{}.tmp{}", path.filename().string(), ::getpid());
  tmp_ = tmp_dir.empty() ? std::filesystem::path(path.string() + fmt::format(".tmp{}", ::getpid())) : tmp_dir / leaf;
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (f_ == nullptr) {
    throw CaptureError(
        fmt::format("cannot create '{}': {}", tmp_dir.empty() ? path.string() : tmp_.string(), std::strerror(errno)));
  }
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() noexcept {
  if (f_ == nullptr) return;
  std::fclose(f_);
  f_ = nullptr;
  std::error_code ec;
  std::filesystem::remove(tmp_, ec);
}

void OutputFile::write(const void* data, std::size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, f_) != n) {
    throw CaptureError(fmt::format("cannot write '{}': {}", path_.string(), std::strerror(errno)));
  }
}

void OutputFile::commit() {
  if (f_ == nullptr) return;
  bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  const int e = errno;
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  std::error_code ec;
  if (!ok) {
    std::filesystem::remove(tmp_, ec);
    throw CaptureError(fmt::format("cannot finish '{}': {}", path_.string(), std::strerror(e)));
  }
  std::filesystem::rename(tmp_, path_, ec);
  if (ec == std::errc::cross_device_link) {
    ec.clear();
    std::filesystem::copy_file(tmp_, path_, std::filesystem::copy_options::overwrite_existing, ec);
    std::error_code ignored;
    std::filesystem::remove(tmp_, ignored);
  }
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp_, ignored);
    throw CaptureError(fmt::format("cannot move the capture to '{}': {}", path_.string(), ec.message()));
  }
}

}  // namespace ipsentry::capture::detail
