#include "ipsentry/capture/live_source.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

namespace ipsentry::capture {

namespace {

int prefix_len(const sockaddr* mask) {
  if (mask == nullptr) return -1;
  const std::uint8_t* b = nullptr;
  std::size_t n = 0;
  if (mask->sa_family == AF_INET) {
    b = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
    n = 4;
  } else if (mask->sa_family == AF_INET6) {
    b = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
    n = 16;
  } else {
    return -1;
  }
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) bits += __builtin_popcount(b[i]);
  return bits;
}

std::string address_text(const sockaddr* a, const sockaddr* mask) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a)->sin_addr, buf, sizeof buf);
  } else if (a->sa_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, buf, sizeof buf);
  } else {
    return {};
  }
  const int len = prefix_len(mask);
  return len >= 0 ? fmt::format("{}/{}", buf, len) : std::string(buf);
}

std::string permission_help(const std::string& device, const char* detail) {
  return fmt::format(
      "capturing on '{}' needs the CAP_NET_RAW capability ({}): run ipsentry as root (sudo), or grant it once "
      "with 'sudo setcap cap_net_raw,cap_net_admin+eip $(command -v ipsentry)'",
      device, detail);
}

}  // namespace

std::vector<Device> list_devices() {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_if_t* all = nullptr;
  if (pcap_findalldevs(&all, err) != 0) throw CaptureError(fmt::format("cannot list capture devices: {}", err));
  std::vector<Device> out;
  for (pcap_if_t* d = all; d != nullptr; d = d->next) {
    Device dev;
    dev.index = static_cast<unsigned>(out.size() + 1);
    dev.name = d->name;
    if (d->description != nullptr) dev.description = d->description;
    dev.loopback = (d->flags & PCAP_IF_LOOPBACK) != 0;
    dev.up = (d->flags & PCAP_IF_UP) != 0;
    dev.running = (d->flags & PCAP_IF_RUNNING) != 0;
    for (pcap_addr_t* a = d->addresses; a != nullptr; a = a->next) {
      if (a->addr == nullptr) continue;
      std::string t = address_text(a->addr, a->netmask);
      if (!t.empty()) dev.addresses.push_back(std::move(t));
    }
    out.push_back(std::move(dev));
  }
  pcap_freealldevs(all);
  return out;
}

LiveSource::LiveSource(const LiveOptions& o) : snaplen_(o.snaplen), device_(o.device), filter_(o.filter) {
  char err[PCAP_ERRBUF_SIZE] = {};
  p_ = pcap_create(o.device.c_str(), err);
  if (p_ == nullptr) throw CaptureError(fmt::format("cannot capture on '{}': {}", o.device, err));
  auto fail = [&](const std::string& msg) {
    pcap_close(p_);
    p_ = nullptr;
    throw CaptureError(msg);
  };
  pcap_set_snaplen(p_, static_cast<int>(o.snaplen));
  pcap_set_promisc(p_, o.promiscuous ? 1 : 0);
  // Frames arrive in blocks; the timeout bounds how long a partly filled
  // block waits, so triggers and the status line stay timely.
  pcap_set_timeout(p_, 100);
  pcap_set_buffer_size(p_, static_cast<int>(o.kernel_buffer_mb) << 20);
  pcap_set_tstamp_precision(p_, PCAP_TSTAMP_PRECISION_NANO);
  const int rc = pcap_activate(p_);
  if (rc < 0) {
    std::string detail = pcap_geterr(p_);
    if (rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED) {
      pcap_close(p_);
      p_ = nullptr;
      throw PermissionError(permission_help(o.device, detail.c_str()));
    }
    if (rc == PCAP_ERROR_NO_SUCH_DEVICE) {
      fail(fmt::format("there is no capture device '{}' (see 'ipsentry interfaces'): {}", o.device, detail));
    }
    if (rc == PCAP_ERROR_IFACE_NOT_UP) fail(fmt::format("interface '{}' is down: {}", o.device, detail));
    fail(fmt::format("cannot capture on '{}': {}", o.device, detail));
  }
  if (!o.filter.empty()) {
    bpf_program prog{};
    if (pcap_compile(p_, &prog, o.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      fail(fmt::format("capture filter '{}' does not compile: {}", o.filter, pcap_geterr(p_)));
    }
    const int set = pcap_setfilter(p_, &prog);
    pcap_freecode(&prog);
    if (set != 0) fail(fmt::format("cannot install capture filter '{}': {}", o.filter, pcap_geterr(p_)));
  }
  if (pcap_setnonblock(p_, 1, err) != 0) fail(fmt::format("cannot capture on '{}': {}", o.device, err));
  fd_ = pcap_get_selectable_fd(p_);
  linktype_ = static_cast<std::uint32_t>(pcap_datalink(p_));
  snaplen_ = static_cast<std::uint32_t>(pcap_snapshot(p_));
  for (const auto& d : list_devices()) {
    if (d.name == o.device) description_ = d.description;
  }
}

LiveSource::~LiveSource() {
  if (p_ != nullptr) pcap_close(p_);
}

int LiveSource::poll_impl(int timeout_ms, Handler h, void* ctx) {
  pollfd pfd{fd_, POLLIN, 0};
  const int ready = ::poll(&pfd, 1, timeout_ms);
  if (ready < 0 && errno != EINTR)
    throw CaptureError(fmt::format("capture on '{}': {}", device_, std::strerror(errno)));
  struct Ctx {
    LiveSource* self;
    Handler h;
    void* ctx;
    int handed = 0;
    bool stop = false;
  } c{this, h, ctx};
  // Even when poll() saw nothing, a block may have timed out: dispatch once.
  const int n = pcap_dispatch(
      p_, -1,
      [](u_char* user, const pcap_pkthdr* hdr, const u_char* bytes) {
        auto* cc = reinterpret_cast<Ctx*>(user);
        if (cc->stop) return;
        dissect::Frame f;
        f.number = ++cc->self->number_;
        f.ts_ns = static_cast<std::int64_t>(hdr->ts.tv_sec) * 1'000'000'000 + hdr->ts.tv_usec;
        f.linktype = cc->self->linktype_;
        f.orig_len = hdr->len;
        f.data = dissect::Bytes(bytes, hdr->caplen);
        ++cc->handed;
        if (!cc->h(cc->ctx, f)) {
          cc->stop = true;
          pcap_breakloop(cc->self->p_);
        }
      },
      reinterpret_cast<u_char*>(&c));
  if (n == PCAP_ERROR) throw CaptureError(fmt::format("capture on '{}' failed: {}", device_, pcap_geterr(p_)));
  return c.handed;
}

LiveStats LiveSource::stats() const {
  pcap_stat s{};
  LiveStats out;
  if (pcap_stats(p_, &s) == 0) {
    out.received = s.ps_recv;
    out.dropped = s.ps_drop;
    out.if_dropped = s.ps_ifdrop;
  }
  return out;
}

}  // namespace ipsentry::capture
