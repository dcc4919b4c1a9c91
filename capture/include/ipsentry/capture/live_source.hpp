// Live capture through libpcap (TPACKET_V3 ring on Linux).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/dissect/capture_file.hpp"

struct pcap;

namespace ipsentry::capture {

/// Capturing needs a privilege the process does not have.
class PermissionError : public CaptureError {
 public:
  using CaptureError::CaptureError;
};

struct Device {
  unsigned index = 0;  // 1-based, in libpcap's order (what -n takes)
  std::string name;
  std::string description;
  std::vector<std::string> addresses;  // "192.0.2.1/24", "2001:db8::1/64"
  bool loopback = false;
  bool up = false;
  bool running = false;
};

/// The capture devices libpcap can open. Throws CaptureError.
[[nodiscard]] std::vector<Device> list_devices();

struct LiveOptions {
  std::string device;  // a name, or "any"
  std::uint32_t snaplen = 262144;
  std::uint32_t kernel_buffer_mb = 16;  // the kernel ring between the NIC and us
  bool promiscuous = true;
  std::string filter;  // BPF expression, empty for none
};

struct LiveStats {
  std::uint64_t received = 0;    // seen by the filter
  std::uint64_t dropped = 0;     // dropped because the ring was full
  std::uint64_t if_dropped = 0;  // dropped by the interface / driver
};

class LiveSource {
 public:
  /// Opens and activates the device and installs the filter. Throws
  /// PermissionError without CAP_NET_RAW, CaptureError otherwise (unknown
  /// device, filter that does not compile), naming the problem.
  explicit LiveSource(const LiveOptions& options);
  ~LiveSource();
  LiveSource(const LiveSource&) = delete;
  LiveSource& operator=(const LiveSource&) = delete;

  /// Waits up to timeout_ms for frames, then hands every frame ready to
  /// fn(const dissect::Frame&) until fn returns false or none are left.
  /// Returns the number of frames handed over, or -1 after breakloop().
  template <typename Fn>
  int poll(int timeout_ms, Fn&& fn);

  /// Statistics from the kernel (since the capture started).
  [[nodiscard]] LiveStats stats() const;
  [[nodiscard]] std::uint32_t linktype() const noexcept { return linktype_; }
  [[nodiscard]] std::uint32_t snaplen() const noexcept { return snaplen_; }
  [[nodiscard]] const std::string& device() const noexcept { return device_; }
  [[nodiscard]] const std::string& description() const noexcept { return description_; }
  [[nodiscard]] const std::string& filter() const noexcept { return filter_; }

 private:
  using Handler = bool (*)(void* ctx, const dissect::Frame& frame);
  int poll_impl(int timeout_ms, Handler h, void* ctx);

  pcap* p_ = nullptr;
  int fd_ = -1;
  std::uint32_t linktype_ = 0;
  std::uint32_t snaplen_ = 0;
  std::string device_;
  std::string description_;
  std::string filter_;
  std::uint64_t number_ = 0;
};

template <typename Fn>
int LiveSource::poll(int timeout_ms, Fn&& fn) {
  return poll_impl(
      timeout_ms, [](void* ctx, const dissect::Frame& f) { return (*static_cast<Fn*>(ctx))(f); },
      static_cast<void*>(&fn));
}

}  // namespace ipsentry::capture
