// Writing classic pcap files (nanosecond timestamps), e.g. for decrypted
// traffic. Output goes to a temporary file that is moved into place by
// close(), so a reader never sees a half-written capture under the final name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::capture {

namespace detail {
class OutputFile;
}

class PcapWriter {
 public:
  /// Throws CaptureError when the file cannot be created.
  /// The temporary file is in `tmp_dir` when given, else next to `path`.
  PcapWriter(const std::filesystem::path& path, std::uint32_t linktype, std::uint32_t snaplen = 262144,
             const std::filesystem::path& tmp_dir = {});
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  /// Appends a frame. Throws CaptureError on a write error (disk full).
  void write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len = 0);
  /// Flushes and moves the file to its final name. Throws CaptureError.
  void close();
  [[nodiscard]] std::uint64_t frames() const noexcept { return frames_; }

 private:
  std::unique_ptr<detail::OutputFile> out_;
  std::uint64_t frames_ = 0;
};

}  // namespace ipsentry::capture
