#include "ipsentry/capture/pcap_writer.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ipsentry::capture {

namespace {
void put32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }  // host order, as pcap allows
void put16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
}  // namespace

PcapWriter::PcapWriter(const std::filesystem::path& path, std::uint32_t linktype, std::uint32_t snaplen)
    : path_(path), tmp_(path.string() + fmt::format(".tmp{}", ::getpid())) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (f_ == nullptr) {
    throw CaptureError(fmt::format("cannot create '{}': {}", path.string(), std::strerror(errno)));
  }
  std::uint8_t h[24];
  put32(h, 0xa1b23c4d);  // nanosecond-resolution pcap
  put16(h + 4, 2);
  put16(h + 6, 4);
  put32(h + 8, 0);
  put32(h + 12, 0);
  put32(h + 16, snaplen);
  put32(h + 20, linktype);
  if (std::fwrite(h, 1, sizeof h, f_) != sizeof h) {
    std::fclose(f_);
    std::filesystem::remove(tmp_);
    throw CaptureError(fmt::format("cannot write '{}': {}", path.string(), std::strerror(errno)));
  }
}

PcapWriter::~PcapWriter() {
  if (f_ != nullptr) {
    std::fclose(f_);
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void PcapWriter::write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len) {
  std::uint8_t h[16];
  auto sec = static_cast<std::uint32_t>(ts_ns / 1'000'000'000);
  auto ns = static_cast<std::uint32_t>(ts_ns % 1'000'000'000);
  put32(h, sec);
  put32(h + 4, ns);
  put32(h + 8, static_cast<std::uint32_t>(data.size()));
  put32(h + 12, orig_len != 0 ? orig_len : static_cast<std::uint32_t>(data.size()));
  if (std::fwrite(h, 1, sizeof h, f_) != sizeof h || std::fwrite(data.data(), 1, data.size(), f_) != data.size()) {
    throw CaptureError(fmt::format("cannot write '{}': {}", path_.string(), std::strerror(errno)));
  }
  ++frames_;
}

void PcapWriter::close() {
  if (f_ == nullptr) return;
  bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok) {
    std::filesystem::remove(tmp_);
    throw CaptureError(fmt::format("cannot finish '{}': {}", path_.string(), std::strerror(errno)));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) {
    std::filesystem::remove(tmp_);
    throw CaptureError(fmt::format("cannot move the capture to '{}': {}", path_.string(), ec.message()));
  }
}

}  // namespace ipsentry::capture
