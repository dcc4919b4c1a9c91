// Writing classic pcap files (nanosecond timestamps), e.g. for decrypted
// traffic. Output goes to a temporary file that is renamed into place by
// close(), so a reader never sees a half-written capture under the final name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::capture {

class PcapWriter {
 public:
  /// Throws CaptureError when the file cannot be created.
  PcapWriter(const std::filesystem::path& path, std::uint32_t linktype, std::uint32_t snaplen = 262144);
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  /// Appends a frame. Throws CaptureError on a write error (disk full).
  void write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len = 0);
  /// Flushes and moves the file to its final name. Throws CaptureError.
  void close();
  [[nodiscard]] std::uint64_t frames() const noexcept { return frames_; }

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::FILE* f_ = nullptr;
  std::uint64_t frames_ = 0;
};

}  // namespace ipsentry::capture
