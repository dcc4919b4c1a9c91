// Zero-copy views over pcap and pcapng files held in memory.
//
// The parser never copies frame bytes: each Frame points into the file image
// the caller keeps alive (capture::FileSource maps or inflates it). Every
// length field is checked against the bytes that are really there, so a cut
// or corrupted file ends iteration with a clear error instead of a bad read.
// The image may also grow while it is read (a gzip file inflated piece by
// piece): see grow() and Next::more.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::dissect {

/// LINKTYPE_* values from the tcpdump.org link-layer header registry.
enum class LinkType : std::uint32_t {
  null_bsd = 0,  // BSD loopback: 4-byte host-order address family
  ethernet = 1,
  raw = 101,   // raw IPv4 or IPv6
  loop = 108,  // OpenBSD loopback: network-order address family
  linux_sll = 113,
  ipv4 = 228,
  ipv6 = 229,
  linux_sll2 = 276,
};

[[nodiscard]] const char* link_type_name(std::uint32_t linktype) noexcept;
/// Whether dissect_frame() understands the link layer (the LinkType values).
[[nodiscard]] bool link_type_supported(std::uint32_t linktype) noexcept;
/// "link type 105 (IEEE 802.11) is not supported; ipsentry reads ...".
[[nodiscard]] std::string unsupported_link_type_message(std::uint32_t linktype);

/// Frame timestamps lie within +-kMaxTimestampNs (2^62 - 1 ns, the years 1824
/// to 2116): a file may claim any time, and the parser clamps it so that the
/// difference of two timestamps never overflows.
inline constexpr std::int64_t kMaxTimestampNs = (std::int64_t{1} << 62) - 1;

struct Frame {
  std::uint64_t number = 0;  // 1-based position in the file
  std::int64_t ts_ns = 0;    // nanoseconds since the Unix epoch (UTC), |ts_ns| <= kMaxTimestampNs
  std::uint32_t linktype = 0;
  std::uint32_t orig_len = 0;  // length on the wire
  std::uint32_t interface_id = 0;
  std::uint64_t file_offset = 0;  // offset of the record in the file image
  Bytes data;                     // captured bytes (may be shorter than orig_len)
  Bytes comment;                  // pcapng opt_comment of the frame, if any
};

struct InterfaceInfo {
  std::uint32_t linktype = 0;
  std::uint32_t snaplen = 0;
  std::string name;
  std::string description;
  // Timestamp units: ts_ns = value * mul / div + offset_ns.
  std::uint64_t ts_mul = 1000;
  std::uint64_t ts_div = 1;
  std::int64_t ts_offset_ns = 0;
};

class CaptureFileParser {
 public:
  enum class Format { pcap, pcapng };
  /// `more`: the image ends inside the next block or record but is still
  /// growing (grow() with final == false); nothing was consumed: grow it and
  /// call next() again.
  enum class Next { frame, end, error, more };

  /// Recognises the file format from its first block. On failure returns
  /// false and sets error to a sentence naming the problem; a pcap file whose
  /// link type ipsentry cannot dissect is refused here.
  [[nodiscard]] bool open(Bytes image, std::string& error);
  /// The image now holds more bytes: `image` starts where the opened one does
  /// and is no shorter. Until a grow() with final == true, running out of bytes
  /// inside a record is Next::more, not a truncation error.
  void grow(Bytes image, bool final) noexcept;

  /// Advances to the next frame. Returns Next::error (with error_message())
  /// when the remaining bytes cannot be a valid record; frames returned before
  /// stay valid.
  [[nodiscard]] Next next(Frame& out);

  [[nodiscard]] Format format() const noexcept { return format_; }
  [[nodiscard]] const char* error_message() const noexcept { return error_; }
  [[nodiscard]] std::uint64_t error_offset() const noexcept { return error_offset_; }
  [[nodiscard]] std::uint64_t offset() const noexcept { return pos_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return image_.size(); }
  [[nodiscard]] const std::vector<InterfaceInfo>& interfaces() const noexcept { return interfaces_; }
  /// Raw bodies of pcapng Decryption Secrets Blocks seen so far (type, data).
  struct Secrets {
    std::uint32_t type;
    Bytes data;
  };
  [[nodiscard]] const std::vector<Secrets>& secrets() const noexcept { return secrets_; }
  /// pcapng frames returned so far whose interface has a link type ipsentry
  /// cannot dissect (they are still returned, so that frame numbers match
  /// other tools), and the link type of the first of them.
  [[nodiscard]] std::uint64_t unsupported_frames() const noexcept { return unsupported_frames_; }
  [[nodiscard]] std::uint32_t unsupported_link_type() const noexcept { return unsupported_link_type_; }

 private:
  Next next_pcap(Frame& out);
  Next next_pcapng(Frame& out);
  bool parse_section_header(std::uint64_t at, std::uint32_t block_len);
  bool parse_interface(Bytes body);
  std::uint32_t rd32(const std::uint8_t* p) const noexcept;
  std::uint16_t rd16(const std::uint8_t* p) const noexcept;
  Next fail(const char* message, std::uint64_t at) noexcept;
  [[nodiscard]] Next short_of_bytes(const char* message, std::uint64_t at) noexcept;
  void note_link_type(std::uint32_t linktype) noexcept;

  Bytes image_{};
  bool final_ = true;
  bool failed_ = false;
  Format format_ = Format::pcap;
  bool swapped_ = false;
  bool nanosecond_ = false;
  std::uint32_t pcap_linktype_ = 0;
  std::uint32_t pcap_snaplen_ = 0;
  std::uint64_t pos_ = 0;
  std::uint64_t number_ = 0;
  const char* error_ = "";
  std::uint64_t error_offset_ = 0;
  std::vector<InterfaceInfo> interfaces_;
  std::size_t section_first_interface_ = 0;
  std::vector<Secrets> secrets_;
  std::uint64_t unsupported_frames_ = 0;
  std::uint32_t unsupported_link_type_ = 0;
};

}  // namespace ipsentry::dissect
