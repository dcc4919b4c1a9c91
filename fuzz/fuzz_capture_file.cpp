// Capture files: pcap and pcapng parsing (every block type, byte orders,
// resolutions, truncation), then every frame through the verifier.
#include <cstdint>
#include <string>
#include <vector>

#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/ipsec/sad.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsentry;
  std::vector<std::uint8_t> image(data, data + size);
  dissect::CaptureFileParser parser;
  std::string error;
  if (!parser.open(dissect::Bytes(image.data(), image.size()), error)) return 0;
  ipsec::Sad sad{std::vector<filters::SaConfig>{}};
  capture::Verifier verifier(sad, true);
  capture::FrameResult result;
  dissect::Frame frame;
  for (int i = 0; i < 10000 && parser.next(frame) == dissect::CaptureFileParser::Next::frame; ++i) {
    verifier.process(frame, result);
  }
  return 0;
}
