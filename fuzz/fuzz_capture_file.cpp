// Capture files: pcap and pcapng parsing (every block type, byte orders,
// resolutions, time offsets, truncation), then every frame through the
// verifier. gzip input goes through capture::FileSource, as `verify` reads
// it, so that inflating damaged data is fuzzed too.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace {

using namespace ipsentry;

// What every consumer of a frame does with its time: the difference of two
// must not overflow (the parser keeps times within +-kMaxTimestampNs).
void check_time(const dissect::Frame& f, std::int64_t first) {
  if (f.ts_ns > dissect::kMaxTimestampNs || f.ts_ns < -dissect::kMaxTimestampNs) __builtin_trap();
  volatile std::int64_t since = f.ts_ns - first;
  (void)since;
}

void gzip_file(const std::uint8_t* data, std::size_t size) {
  const int fd = ::memfd_create("fuzz-capture", MFD_CLOEXEC);
  if (fd < 0) return;
  if (::write(fd, data, size) == static_cast<ssize_t>(size)) {
    try {
      capture::FileSource src("/proc/self/fd/" + std::to_string(fd));
      dissect::Frame frame;
      std::int64_t first = 0;
      for (int i = 0; i < 10000 && src.next(frame); ++i) {
        if (i == 0) first = frame.ts_ns;
        check_time(frame, first);
      }
      (void)src.unsupported_link();
    } catch (const capture::CaptureError&) {
    }
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    if (size <= 65536) gzip_file(data, size);
    return 0;
  }
  std::vector<std::uint8_t> image(data, data + size);
  dissect::CaptureFileParser parser;
  std::string error;
  if (!parser.open(dissect::Bytes(image.data(), image.size()), error)) return 0;
  ipsec::Sad sad{std::vector<filters::SaConfig>{}};
  capture::Verifier verifier(sad, true);
  capture::FrameResult result;
  dissect::Frame frame;
  std::int64_t first = 0;
  for (int i = 0; i < 10000 && parser.next(frame) == dissect::CaptureFileParser::Next::frame; ++i) {
    if (i == 0) first = frame.ts_ns;
    check_time(frame, first);
    verifier.process(frame, result);
  }
  return 0;
}
