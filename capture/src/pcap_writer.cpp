#include "ipsentry/capture/pcap_writer.hpp"

#include <cstring>

#include "output_file.hpp"

namespace ipsentry::capture {

namespace {
void put32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }  // host order, as pcap allows
void put16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
}  // namespace

PcapWriter::PcapWriter(const std::filesystem::path& path, std::uint32_t linktype, std::uint32_t snaplen,
                       const std::filesystem::path& tmp_dir)
    : out_(std::make_unique<detail::OutputFile>(path, tmp_dir)) {
  std::uint8_t h[24];
  put32(h, 0xa1b23c4d);  // nanosecond-resolution pcap
  put16(h + 4, 2);
  put16(h + 6, 4);
  put32(h + 8, 0);
  put32(h + 12, 0);
  put32(h + 16, snaplen);
  put32(h + 20, linktype);
  out_->write(h, sizeof h);
}

PcapWriter::~PcapWriter() = default;

void PcapWriter::write(std::int64_t ts_ns, dissect::Bytes data, std::uint32_t orig_len) {
  std::uint8_t h[16];
  auto sec = static_cast<std::uint32_t>(ts_ns / 1'000'000'000);
  auto ns = static_cast<std::uint32_t>(ts_ns % 1'000'000'000);
  put32(h, sec);
  put32(h + 4, ns);
  put32(h + 8, static_cast<std::uint32_t>(data.size()));
  put32(h + 12, orig_len != 0 ? orig_len : static_cast<std::uint32_t>(data.size()));
  out_->write(h, sizeof h);
  out_->write(data.data(), data.size());
  ++frames_;
}

void PcapWriter::close() { out_->commit(); }

}  // namespace ipsentry::capture
