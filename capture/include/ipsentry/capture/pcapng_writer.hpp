// Writing pcapng files: one section, one interface, frames with comments,
// Decryption Secrets Blocks and the interface statistics at the end.
//
// Like PcapWriter, bytes go to a temporary file that close() moves into
// place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::capture {

namespace detail {
class OutputFile;
}

/// pcapng Decryption Secrets Block types (pcapng specification, section 4.7).
inline constexpr std::uint32_t kSecretsEspSa = 0x45535053;  // "ESPS": Wireshark esp_sa records

struct InterfaceDescription {
  std::uint32_t linktype = 0;
  std::uint32_t snaplen = 0;
  std::string name;
  std::string description;
  std::string filter;  // the libpcap filter expression, when one was used
};

struct InterfaceStatistics {
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  std::uint64_t received = 0;    // isb_ifrecv
  std::uint64_t if_dropped = 0;  // isb_ifdrop
  std::uint64_t os_dropped = 0;  // isb_osdrop: the kernel ring was full
  std::uint64_t delivered = 0;   // isb_usrdeliv: frames ipsentry accepted
};

class PcapngWriter {
 public:
  /// Writes the section header (naming `application`) and the interface
  /// description. Throws CaptureError.
  PcapngWriter(const std::filesystem::path& path, const InterfaceDescription& iface, std::string_view application,
               const std::filesystem::path& tmp_dir = {});
  ~PcapngWriter();
  PcapngWriter(const PcapngWriter&) = delete;
  PcapngWriter& operator=(const PcapngWriter&) = delete;

  /// A Decryption Secrets Block; readers apply it to the frames after it.
  void write_secrets(std::uint32_t type, std::string_view data);
  /// An Enhanced Packet Block with one opt_comment per comment.
  void write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len,
             std::span<const std::string> comments = {});
  /// An Interface Statistics Block.
  void write_statistics(const InterfaceStatistics& s);
  /// Flushes and moves the file to its final name. Throws CaptureError.
  void close();
  [[nodiscard]] std::uint64_t frames() const noexcept { return frames_; }

 private:
  void block(std::uint32_t type, std::string_view body);
  std::unique_ptr<detail::OutputFile> out_;
  std::string scratch_;
  std::uint64_t frames_ = 0;
};

}  // namespace ipsentry::capture
