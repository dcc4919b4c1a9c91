#include "ipsentry/capture/pcapng_writer.hpp"

#include <cstring>

#include "output_file.hpp"

namespace ipsentry::capture {

namespace {

// Block types and option codes from the pcapng specification.
constexpr std::uint32_t kShb = 0x0A0D0D0A;
constexpr std::uint32_t kIdb = 0x00000001;
constexpr std::uint32_t kIsb = 0x00000005;
constexpr std::uint32_t kEpb = 0x00000006;
constexpr std::uint32_t kDsb = 0x0000000A;
constexpr std::uint16_t kOptEnd = 0;
constexpr std::uint16_t kOptComment = 1;
constexpr std::uint16_t kShbOs = 3;
constexpr std::uint16_t kShbUserAppl = 4;
constexpr std::uint16_t kIfName = 2;
constexpr std::uint16_t kIfDescription = 3;
constexpr std::uint16_t kIfTsresol = 9;
constexpr std::uint16_t kIfFilter = 11;
constexpr std::uint16_t kIsbStart = 2;
constexpr std::uint16_t kIsbEnd = 3;
constexpr std::uint16_t kIsbIfRecv = 4;
constexpr std::uint16_t kIsbIfDrop = 5;
constexpr std::uint16_t kIsbOsDrop = 7;
constexpr std::uint16_t kIsbUsrDeliv = 8;

// Options longer than this are cut: the length field has 16 bits.
constexpr std::size_t kMaxOption = 65000;

void put(std::string& s, const void* p, std::size_t n) { s.append(static_cast<const char*>(p), n); }
void put32(std::string& s, std::uint32_t v) { put(s, &v, 4); }  // host byte order, recorded by the BOM
void put16(std::string& s, std::uint16_t v) { put(s, &v, 2); }
void pad4(std::string& s) { s.append((4 - s.size() % 4) % 4, '\0'); }

void option(std::string& s, std::uint16_t code, std::string_view value) {
  if (value.size() > kMaxOption) value = value.substr(0, kMaxOption);
  put16(s, code);
  put16(s, static_cast<std::uint16_t>(value.size()));
  put(s, value.data(), value.size());
  pad4(s);
}
void option64(std::string& s, std::uint16_t code, std::uint64_t v) {
  option(s, code, std::string_view(reinterpret_cast<const char*>(&v), 8));
}
void timestamp(std::string& s, std::int64_t ns) {
  const auto v = static_cast<std::uint64_t>(ns);
  put32(s, static_cast<std::uint32_t>(v >> 32));
  put32(s, static_cast<std::uint32_t>(v));
}
void timestamp_option(std::string& s, std::uint16_t code, std::int64_t ns) {
  std::string t;
  timestamp(t, ns);
  option(s, code, t);
}
void end_options(std::string& s) {
  put16(s, kOptEnd);
  put16(s, 0);
}

}  // namespace

PcapngWriter::PcapngWriter(const std::filesystem::path& path, const InterfaceDescription& iface,
                           std::string_view application, const std::filesystem::path& tmp_dir)
    : out_(std::make_unique<detail::OutputFile>(path, tmp_dir)) {
  std::string b;
  put32(b, 0x1A2B3C4D);
  put16(b, 1);
  put16(b, 0);
  const std::uint64_t unknown_length = ~std::uint64_t{0};
  put(b, &unknown_length, 8);
  option(b, kShbOs, "Linux");
  option(b, kShbUserAppl, application);
  end_options(b);
  block(kShb, b);

  b.clear();
  put16(b, static_cast<std::uint16_t>(iface.linktype));
  put16(b, 0);
  put32(b, iface.snaplen);
  if (!iface.name.empty()) option(b, kIfName, iface.name);
  if (!iface.description.empty()) option(b, kIfDescription, iface.description);
  option(b, kIfTsresol, std::string_view("\x09", 1));  // nanoseconds
  if (!iface.filter.empty()) {
    std::string f(1, '\0');  // 0: a libpcap filter string
    f += iface.filter;
    option(b, kIfFilter, f);
  }
  end_options(b);
  block(kIdb, b);
}

PcapngWriter::~PcapngWriter() = default;

void PcapngWriter::block(std::uint32_t type, std::string_view body) {
  const auto total = static_cast<std::uint32_t>(12 + body.size());
  std::uint8_t h[8];
  std::memcpy(h, &type, 4);
  std::memcpy(h + 4, &total, 4);
  out_->write(h, 8);
  out_->write(body.data(), body.size());
  out_->write(&total, 4);
}

void PcapngWriter::write_secrets(std::uint32_t type, std::string_view data) {
  std::string b;
  put32(b, type);
  put32(b, static_cast<std::uint32_t>(data.size()));
  put(b, data.data(), data.size());
  pad4(b);
  block(kDsb, b);
}

void PcapngWriter::write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len,
                         std::span<const std::string> comments) {
  std::string& b = scratch_;  // reused: no allocation per frame once grown
  b.clear();
  put32(b, 0);  // interface 0
  timestamp(b, ts_ns);
  put32(b, static_cast<std::uint32_t>(data.size()));
  put32(b, orig_len != 0 ? orig_len : static_cast<std::uint32_t>(data.size()));
  put(b, data.data(), data.size());
  pad4(b);
  if (!comments.empty()) {
    for (const auto& c : comments) option(b, kOptComment, c);
    end_options(b);
  }
  block(kEpb, b);
  ++frames_;
}

void PcapngWriter::write_statistics(const InterfaceStatistics& s) {
  std::string b;
  put32(b, 0);
  timestamp(b, s.end_ns);
  timestamp_option(b, kIsbStart, s.start_ns);
  timestamp_option(b, kIsbEnd, s.end_ns);
  option64(b, kIsbIfRecv, s.received);
  option64(b, kIsbIfDrop, s.if_dropped);
  option64(b, kIsbOsDrop, s.os_dropped);
  option64(b, kIsbUsrDeliv, s.delivered);
  end_options(b);
  block(kIsb, b);
}

void PcapngWriter::close() { out_->commit(); }

}  // namespace ipsentry::capture
