// A capture file being written: bytes go to a temporary file (next to the
// destination, or in a chosen directory) that commit() moves into place, so
// the destination never holds a half-written capture.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

namespace ipsentry::capture::detail {

class OutputFile {
 public:
  /// Throws CaptureError when the temporary file cannot be created.
  OutputFile(const std::filesystem::path& path, const std::filesystem::path& tmp_dir);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  /// Throws CaptureError (disk full...).
  void write(const void* data, std::size_t n);
  /// Flushes, syncs and moves the file to its destination (copying when the
  /// temporary directory is on another file system). Throws CaptureError.
  void commit();
  [[nodiscard]] bool open() const noexcept { return f_ != nullptr; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void discard() noexcept;
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::FILE* f_ = nullptr;
};

}  // namespace ipsentry::capture::detail
