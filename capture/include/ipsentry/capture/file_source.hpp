// Reading capture files: pcap and pcapng, plain or gzip-compressed.
//
// Plain files are memory-mapped and read sequentially; release_before()
// drops pages that are no longer needed, so the resident memory of a long
// verification stays flat whatever the file size. Gzip files are inflated
// piece by piece, as the reader gets to them, into one reserved stretch of
// address space: frames stay zero-copy views that do not move, and
// release_before() gives the pieces behind the reader back, so a gzip file
// costs the same flat memory as a plain one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "ipsentry/dissect/capture_file.hpp"

namespace ipsentry::capture {

class CaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FileSource {
 public:
  /// What release_before() promises about the bytes it passes.
  enum class Released {
    gone,    // never read again: a gzip file's memory is reused, so it stays flat
    reread,  // may be read again (the tui shows any frame at any time): a plain
             // file's pages come back from the file, a gzip file's inflated
             // bytes all stay in memory
  };

  /// Opens and recognises a capture. Throws CaptureError naming the file and
  /// the problem (missing, unreadable, a directory, device or pipe, not a
  /// capture, an unsupported pcap link type, gzip damaged before the header).
  explicit FileSource(const std::filesystem::path& path, Released released = Released::gone);
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
  /// Lets the operating system drop file pages before `offset` (an offset
  /// in the capture image, as Frame::file_offset). With Released::gone the
  /// frames before it must not be read any more: for a gzip file their memory
  /// is reused.
  void release_before(std::uint64_t offset) noexcept;

  /// A gzip file is inflated this many bytes at a time as the reader needs
  /// them; a frame may straddle two such steps (it stays contiguous).
  static constexpr std::size_t kInflateStep = std::size_t{4} << 20;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] bool compressed() const noexcept { return compressed_; }
  [[nodiscard]] dissect::CaptureFileParser::Format format() const noexcept { return parser_.format(); }
  /// For progress: the file's size and how far reading has come in it. For a
  /// gzip file these count compressed bytes (the size of the capture inside
  /// is not known before the end), for a plain file the capture's own bytes.
  [[nodiscard]] std::uint64_t size() const noexcept;
  [[nodiscard]] std::uint64_t offset() const noexcept;
  [[nodiscard]] const dissect::CaptureFileParser& parser() const noexcept { return parser_; }

 private:
  class Stream;

  void read_more();

  std::filesystem::path path_;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_len_ = 0;
  std::size_t released_ = 0;
  std::size_t page_ = 4096;
  std::unique_ptr<Stream> stream_;
  std::uint64_t file_size_ = 0;
  Released released_mode_ = Released::gone;
  bool compressed_ = false;
  dissect::CaptureFileParser parser_;
  std::string error_;
};

}  // namespace ipsentry::capture
