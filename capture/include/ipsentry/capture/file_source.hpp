// Reading capture files: pcap and pcapng, plain or gzip-compressed.
//
// Plain files are memory-mapped and read sequentially; release_before()
// drops pages that are no longer needed, so the resident memory of a long
// verification stays flat whatever the file size. Gzip files are inflated
// into memory first (they are typically small sample captures).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipsentry/dissect/capture_file.hpp"

namespace ipsentry::capture {

class CaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FileSource {
 public:
  /// Opens and recognises a capture. Throws CaptureError naming the file and
  /// the problem (missing, unreadable, a directory, device or pipe, not a
  /// capture, an unsupported pcap link type, gzip damaged before the header).
  explicit FileSource(const std::filesystem::path& path);
  ~FileSource();
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  /// The next frame; false at the end of the file or on a damaged record (see
  /// error()). The frame's bytes stay valid until release_before() passes them.
  [[nodiscard]] bool next(dissect::Frame& frame);
  /// A description of the damage that ended reading early, or empty. For a
  /// gzip file, damage to the compressed data; the frames inflated before it
  /// are returned first.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  /// Non-empty once frames were returned whose link type ipsentry cannot
  /// dissect (pcapng interfaces; a pcap file of such a type is refused when
  /// opened): how many, and which type.
  [[nodiscard]] std::string unsupported_link() const;
  /// Lets the operating system drop file pages before `offset`.
  void release_before(std::uint64_t offset) noexcept;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] bool compressed() const noexcept { return compressed_; }
  [[nodiscard]] dissect::CaptureFileParser::Format format() const noexcept { return parser_.format(); }
  [[nodiscard]] std::uint64_t size() const noexcept { return parser_.size(); }
  [[nodiscard]] std::uint64_t offset() const noexcept { return parser_.offset(); }
  [[nodiscard]] const dissect::CaptureFileParser& parser() const noexcept { return parser_; }

 private:
  std::filesystem::path path_;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_len_ = 0;
  std::size_t released_ = 0;
  std::vector<std::uint8_t> inflated_;
  bool compressed_ = false;
  std::string inflate_damage_;
  dissect::CaptureFileParser parser_;
  std::string error_;
};

}  // namespace ipsentry::capture
