#include "ipsentry/enforce/ike_driver.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <variant>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ipsentry/dissect/packet.hpp"

namespace ipsentry::enforce {

using ike::v2::Actions;
using ike::v2::TimeNs;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxDatagram = 65535;
constexpr TimeNs kPublishEvery = 1'000'000'000;  // the statistics' snapshot, at least this often
constexpr TimeNs kPublishAtMost = 100'000'000;   // and at most this often after activity
constexpr TimeNs kHousekeeping = 1'000'000'000;  // acquires given up, snapshot refreshed

sockaddr_storage to_sockaddr(const dissect::IpAddr& a, std::uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  if (a.is_v6()) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, a.data(), 16);
    len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    std::memcpy(&s4->sin_addr, a.data(), 4);
    len = sizeof(sockaddr_in);
  }
  return ss;
}

ike::v2::Endpoint from_sockaddr(const sockaddr_storage& ss) {
  ike::v2::Endpoint e;
  if (ss.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    const auto* b = reinterpret_cast<const std::uint8_t*>(&s6->sin6_addr);
    // A v4-mapped source on a v6 socket cannot happen (IPV6_V6ONLY), but
    // would name the same peer as on the v4 socket.
    e.addr = IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) ? dissect::IpAddr::v4(b + 12) : dissect::IpAddr::v6(b);
    e.port = ntohs(s6->sin6_port);
  } else {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    e.addr = dissect::IpAddr::v4(reinterpret_cast<const std::uint8_t*>(&s4->sin_addr));
    e.port = ntohs(s4->sin_port);
  }
  return e;
}

// The address this host would send from to reach `peer` (a route lookup:
// connect() on a UDP socket sends nothing).
std::optional<dissect::IpAddr> route_source(const dissect::IpAddr& peer) {
  const int fd = socket(peer.is_v6() ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  socklen_t len = 0;
  sockaddr_storage to = to_sockaddr(peer, 500, len);
  std::optional<dissect::IpAddr> out;
  sockaddr_storage me{};
  socklen_t mlen = sizeof me;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&me), &mlen) == 0) {
    out = from_sockaddr(me).addr;
  }
  close(fd);
  return out;
}

ike::v2::TrafficSelector packet_ts(const dissect::IpAddr& a, std::uint8_t proto, bool has_port, std::uint16_t port) {
  ike::v2::TrafficSelector t;
  t.ip_protocol = proto;
  t.start = a;
  t.end = a;
  if (has_port) t.start_port = t.end_port = port;
  return t;
}

TsRange to_range(const ike::v2::TrafficSelector& t) {
  TsRange r;
  r.protocol = t.ip_protocol;
  r.port_lo = t.start_port;
  r.port_hi = t.end_port;
  r.start = t.start;
  r.end = t.end;
  return r;
}

std::string hex64(std::uint64_t v) { return fmt::format("{:016x}", v); }

// "192.0.2.1:500", "[2001:db8::1]:4500".
std::string endpoint(const ike::v2::Endpoint& e) {
  return e.addr.is_v6() ? fmt::format("[{}]:{}", e.addr.str(), e.port) : fmt::format("{}:{}", e.addr.str(), e.port);
}

}  // namespace

TimeNs IkeDriver::now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string udp_port_holder(std::uint16_t port) {
  // /proc/net/udp{,6} list this namespace's sockets with their inodes;
  // the process is the one with a descriptor on that inode.
  std::vector<std::string> inodes;
  for (const char* table : {"/proc/net/udp", "/proc/net/udp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
      if (!(f >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> inode)) continue;
      const auto colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      if (std::strtoul(local.c_str() + colon + 1, nullptr, 16) == port && inode != "0") inodes.push_back(inode);
    }
  }
  if (inodes.empty()) return {};
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return {};
  std::string found;
  while (dirent* d = readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(d->d_name[0]))) continue;
    const std::string base = std::string("/proc/") + d->d_name;
    DIR* fds = opendir((base + "/fd").c_str());
    if (fds == nullptr) continue;
    while (dirent* f = readdir(fds)) {
      char target[64] = {};
      const std::string link = base + "/fd/" + f->d_name;
      const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      const std::string t(target, static_cast<std::size_t>(n));
      for (const auto& ino : inodes) {
        if (t == "socket:[" + ino + "]") {
          std::ifstream comm(base + "/comm");
          std::string name;
          std::getline(comm, name);
          found = fmt::format("{} (pid {})", name.empty() ? "?" : name, d->d_name);
        }
      }
      if (!found.empty()) break;
    }
    closedir(fds);
    if (!found.empty()) break;
  }
  closedir(proc);
  return found;
}

IkeDriver::IkeDriver(IkeHost host, IkeChannel& channel, std::unique_ptr<IkeProtocol> protocol, IkeDriverOptions options)
    : host_(std::move(host)), channel_(channel), protocol_(std::move(protocol)), options_(std::move(options)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

IkeDriver::~IkeDriver() {
  try {
    stop();
  } catch (...) {
    // stop() logs what it could not do.
  }
  // Its writer reports into counters_ and the log: gone before they are.
  key_files_.reset();
  for (auto& s : sockets_) {
    if (s.fd >= 0) close(s.fd);
  }
  for (int fd : {raw4_, raw6_, wake_fd_}) {
    if (fd >= 0) close(fd);
  }
}

void IkeDriver::log(EventKind kind, const std::string& text) const {
  if (host_.log) host_.log(kind, text);
}

void IkeDriver::wake() noexcept {
  const std::uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
}

void IkeDriver::bind_sockets() {
  const std::uint32_t mark = kMarkOwn;  // our IKE is never queued, and the backstop lets it pass
  for (bool v6 : {false, true}) {
    if (v6 && !options_.ipv6) continue;
    for (bool natt : {false, true}) {
      const std::uint16_t port = natt ? options_.natt_port : options_.port;
      const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) {
        if (v6 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
          log(EventKind::warning, "IKE: IPv6 is not available on this host; IKE listens on IPv4 only");
          break;
        }
        throw std::runtime_error(fmt::format("IKE: socket: {}", std::strerror(errno)));
      }
      sockets_.push_back({fd, v6, natt});
      const int on = 1;
      if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        throw std::runtime_error(
            fmt::format("IKE: cannot mark the IKE sockets as ipsentry's own (SO_MARK): {}", std::strerror(errno)));
      }
      if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
      } else {
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
      }
      socklen_t len = 0;
      sockaddr_storage any =
          to_sockaddr(v6 ? *dissect::IpAddr::parse("::") : *dissect::IpAddr::parse("0.0.0.0"), port, len);
      if (bind(fd, reinterpret_cast<sockaddr*>(&any), len) != 0) {
        const int e = errno;
        if (e == EADDRINUSE) {
          const std::string who = udp_port_holder(port);
          throw IkeSocketError(fmt::format(
              "IKE: UDP port {} ({}) is taken{}: negotiate policies need ipsentry's own IKE on ports {} and {}; "
              "stop the other IKE daemon (strongSwan's charon, for one) first",
              port, v6 ? "IPv6" : "IPv4", who.empty() ? " by another program" : " by " + who, options_.port,
              options_.natt_port));
        }
        if (v6 && e == EADDRNOTAVAIL) {
          log(EventKind::warning, "IKE: IPv6 is disabled on this host; IKE listens on IPv4 only");
          close(fd);
          sockets_.pop_back();
          break;
        }
        throw std::runtime_error(fmt::format("IKE: cannot bind UDP port {}: {}", port, std::strerror(e)));
      }
      // Port 0 (tests): the kernel chose; the NAT-T socket follows the IKE one.
      sockaddr_storage me{};
      socklen_t mlen = sizeof me;
      getsockname(fd, reinterpret_cast<sockaddr*>(&me), &mlen);
      (natt ? bound_natt_ : bound_ike_) = from_sockaddr(me).port;
      if (!natt && options_.port == 0) options_.port = bound_ike_;
      if (natt && options_.natt_port == 0) options_.natt_port = bound_natt_;
    }
  }
  raw4_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  raw6_ = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  for (int fd : {raw4_, raw6_}) {
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
  }
  if (raw6_ >= 0) {
    const int on = 1;
    setsockopt(raw6_, IPPROTO_IPV6, IPV6_HDRINCL, &on, sizeof on);
  }
}

void IkeDriver::start() {
  if (!options_.save_keys.empty()) {
    // Rewrites run on the key files' own thread: this reports each.
    key_files_.emplace(options_.save_keys, [this](const std::string& error) {
      {
        std::scoped_lock l(snap_mu_);
        ++(error.empty() ? counters_.key_file_writes : counters_.key_file_errors);
      }
      if (!error.empty()) log(EventKind::warning, error);
    });
    log(EventKind::warning,
        fmt::format("--save-keys: the keys of every IKE and ESP SA negotiated are written to {}/{} and {}/{}: "
                    "anyone who reads them can decrypt the traffic",
                    options_.save_keys, KeyFiles::kIkeFile, options_.save_keys, KeyFiles::kEspFile));
  }
  bind_sockets();
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void IkeDriver::stop() {
  if (!running_.exchange(false)) return;
  // The Deletes go out while the sockets are still open.
  try {
    call([](IkeProtocol& p, TimeNs now, Actions& out) { p.shutdown(now, out); });
  } catch (const std::exception& e) {
    log(EventKind::ike, fmt::format("IKE: shutting down: {}", e.what()));
  }
  stop_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  // Nothing will protect what is still held.
  for (const auto& n : channel_.drain()) {
    if (n.kind == IkeNotice::Kind::acquire) {
      const auto dropped = channel_.take(n.acquire).size();
      std::scoped_lock l(snap_mu_);
      counters_.held_discarded += dropped;
    }
  }
  for (auto id : channel_.expire(INT64_MAX)) (void)id;
  // The key files hold every SA negotiated when enforcement exits.
  if (key_files_) key_files_->flush();
}

void IkeDriver::call(const Job& job) {
  if (!thread_.joinable() || stop_.load()) {
    // No thread (not started, or stopped): run here.
    Actions out;
    const TimeNs t = now();
    job(*protocol_, t, out);
    execute(out, t);
    return;
  }
  std::scoped_lock serial(call_mu_);
  std::unique_lock lock(job_mu_);
  job_ = &job;
  job_done_ = false;
  job_error_ = nullptr;
  wake();
  job_cv_.wait(lock, [&] { return job_done_; });
  job_ = nullptr;
  if (job_error_) std::rethrow_exception(job_error_);
}

void IkeDriver::run() {
  std::vector<pollfd> fds;
  TimeNs next_housekeeping = now() + kHousekeeping;
  bool unpublished = false;
  publish(now());
  while (!stop_.load()) {
    const TimeNs t0 = now();
    TimeNs deadline = std::min(protocol_->next_deadline(), next_housekeeping);
    // Activity the statistics have not shown yet is published as soon as
    // the rate limit allows, not with the next second's refresh: a reader
    // that saw an SA come up on the wire finds it in `stats` right after.
    if (unpublished) deadline = std::min(deadline, last_publish_ + kPublishAtMost);
    const TimeNs wait_ns = std::max<TimeNs>(0, deadline - t0);
    const int timeout_ms = static_cast<int>(std::min<TimeNs>((wait_ns + 999'999) / 1'000'000, 1000));
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({channel_.event_fd(), POLLIN, 0});
    for (const auto& s : sockets_) fds.push_back({s.fd, POLLIN, 0});
    const int rc = poll(fds.data(), fds.size(), timeout_ms);
    if (rc < 0 && errno != EINTR) {
      log(EventKind::ike, fmt::format("IKE driver: poll: {}", std::strerror(errno)));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Actions out;
    const TimeNs t = now();
    bool active = false;
    try {
      if (fds[0].revents != 0) {
        std::uint64_t v = 0;
        (void)!read(wake_fd_, &v, sizeof v);
        std::unique_lock lock(job_mu_);
        if (job_ != nullptr && !job_done_) {
          try {
            (*job_)(*protocol_, t, out);
            execute(out, t);
          } catch (...) {
            job_error_ = std::current_exception();
            // What the job produced before it threw is still carried out.
            try {
              execute(out, t);
            } catch (...) {
            }
          }
          out.clear();
          job_done_ = true;
          active = true;
          lock.unlock();
          job_cv_.notify_all();
        }
      }
      if (fds[1].revents != 0) {
        notices(t, out);
        active = true;
      }
      for (std::size_t i = 0; i < sockets_.size(); ++i) {
        if (fds[i + 2].revents == 0) continue;
        receive(sockets_[i], t, out);
        active = true;
      }
      if (protocol_->next_deadline() <= t) {
        protocol_->tick(t, out);
        active = true;
      }
      if (t >= next_housekeeping) {
        next_housekeeping = t + kHousekeeping;
        // An acquire the daemon never ended: its packets go, and the next
        // packet for the peer starts a new one.
        for (auto id : channel_.expire(t)) {
          log(EventKind::ike, fmt::format("IKE: acquire {} was not answered in time; its packets are discarded", id));
        }
      }
      execute(out, t);
    } catch (const std::exception& e) {
      // One bad input must not stop IKE for every peer.
      log(EventKind::ike, fmt::format("IKE driver: {}", e.what()));
    }
    unpublished = unpublished || active;
    if ((unpublished && t - last_publish_ >= kPublishAtMost) || t - last_publish_ >= kPublishEvery) {
      publish(t);
      unpublished = false;
    }
  }
  publish(now());
}

void IkeDriver::publish(TimeNs t) {
  ike::v2::Snapshot s = protocol_->snapshot(t);
  std::scoped_lock lock(snap_mu_);
  snap_ = std::move(s);
  last_publish_ = t;
}

void IkeDriver::receive(const Socket& s, TimeNs now, Actions& out) {
  std::vector<std::uint8_t> buf(kMaxDatagram);
  for (int budget = 64; budget > 0; --budget) {  // a flood must not starve the timers
    sockaddr_storage from{};
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[128];
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(s.fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        std::scoped_lock l(snap_mu_);
        ++counters_.receive_errors;
      }
      return;
    }
    ike::v2::Datagram d;
    d.remote = from_sockaddr(from);
    d.local.port = s.natt ? options_.natt_port : options_.port;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo pi{};
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        d.local.addr = dissect::IpAddr::v4(reinterpret_cast<const std::uint8_t*>(&pi.ipi_addr));
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo pi{};
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        d.local.addr = dissect::IpAddr::v6(reinterpret_cast<const std::uint8_t*>(&pi.ipi6_addr));
      }
    }
    std::span<const std::uint8_t> data(buf.data(), static_cast<std::size_t>(n));
    if (s.natt) {
      // RFC 3948 section 2.2: IKE on 4500 starts with four zero octets;
      // anything else there is ESP (a non-zero SPI) or a keepalive (0xFF).
      if (data.size() == 1 && data[0] == 0xff) {
        std::scoped_lock l(snap_mu_);
        ++counters_.keepalives_received;
        continue;
      }
      if (data.size() < 4 || data[0] != 0 || data[1] != 0 || data[2] != 0 || data[3] != 0) {
        // ESP in UDP reaches the queue in raw PREROUTING and never this
        // socket, unless the rules are gone: not IKE, dropped.
        std::scoped_lock l(snap_mu_);
        ++counters_.stray_esp;
        continue;
      }
      data = data.subspan(4);
    }
    d.data = data;  // valid while the daemon's receive() runs
    {
      std::scoped_lock l(snap_mu_);
      ++counters_.datagrams_received;
    }
    protocol_->receive(d, now, out);
  }
}

void IkeDriver::notices(TimeNs now, Actions& out) {
  for (const IkeNotice& n : channel_.drain()) {
    switch (n.kind) {
      case IkeNotice::Kind::acquire: {
        ike::v2::Acquire a;
        a.id = n.acquire;
        a.policy = n.policy;
        a.remote.addr = n.peer;
        a.remote.port = options_.port;
        // Our end: the packet's own source when it is ours (transport, a
        // host's tunnel), else the address the route to the peer leaves by.
        bool local_src = false;
        host_.with_state(false, [&](State& s) { local_src = s.spd().local().contains(n.packet.src); });
        if (local_src && n.packet.src.is_v4() == n.peer.is_v4()) {
          a.local.addr = n.packet.src;
        } else if (auto src = route_source(n.peer)) {
          a.local.addr = *src;
        }
        a.local.port = options_.port;
        const bool ports = n.packet.has_ports || n.packet.has_icmp_type;
        a.packet_src = packet_ts(n.packet.src, n.packet.protocol, ports, n.packet.sport);
        a.packet_dst = packet_ts(n.packet.dst, n.packet.protocol, ports, n.packet.dport);
        protocol_->acquire(a, now, out);
        break;
      }
      case IkeNotice::Kind::soft_expired:
      case IkeNotice::Kind::hard_expired:
        protocol_->expired(n.child, n.kind == IkeNotice::Kind::hard_expired, now, out);
        break;
      case IkeNotice::Kind::nat_mapping:
        protocol_->nat_mapping(n.child, ike::v2::Endpoint{n.peer, n.port}, now, out);
        break;
    }
  }
}

void IkeDriver::execute(Actions& actions, TimeNs now) {
  // In order: an Install must be in place before the AcquireDone that
  // sends on it, and a Send of a rekey response after the Install of the
  // new inbound SA (RFC 7296 2.8: installed before the response is sent).
  for (auto& action : actions) {
    std::visit(
        [&](auto& a) {
          using T = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<T, ike::v2::SendAction>) {
            send(a);
          } else if constexpr (std::is_same_v<T, ike::v2::InstallAction>) {
            install(a);
          } else if constexpr (std::is_same_v<T, ike::v2::ActivateOutboundAction>) {
            activate_outbound(a);
          } else if constexpr (std::is_same_v<T, ike::v2::RemoveAction>) {
            remove(a);
          } else if constexpr (std::is_same_v<T, ike::v2::UpdatePeerAction>) {
            host_.with_state(true, [&](State& s) { s.update_peer(a.ike_sa, a.peer.addr, a.peer.port); });
            std::scoped_lock l(snap_mu_);
            ++counters_.peer_updates;
          } else if constexpr (std::is_same_v<T, ike::v2::AcquireDoneAction>) {
            acquire_done(a);
          } else if constexpr (std::is_same_v<T, ike::v2::SoftAssociationAction>) {
            channel_.set_soft(a.policy, a.peer, a.active);
            log(EventKind::ike, fmt::format("IKE: soft association with {} {}: cleartext {}", a.peer.str(),
                                            a.active ? "starts" : "ends", a.active ? "allowed" : "no longer allowed"));
          } else if constexpr (std::is_same_v<T, ike::v2::EventAction>) {
            event(a, now);
          } else if constexpr (std::is_same_v<T, ike::v2::KeysAction>) {
            keys(a);
          }
        },
        action);
  }
  actions.clear();
}

void IkeDriver::send(const ike::v2::SendAction& a) {
  const bool v6 = a.remote.addr.is_v6();
  const bool natt = a.local.port == options_.natt_port && options_.natt_port != options_.port;
  const Socket* s = nullptr;
  for (const auto& x : sockets_) {
    if (x.v6 == v6 && x.natt == natt) s = &x;
  }
  auto fail = [&](int e) {
    const TimeNs t = now();
    {
      std::scoped_lock l(snap_mu_);
      ++counters_.send_errors;
    }
    // One line a second at most: an unreachable peer is retried often.
    if (t - last_send_error_log_ < 1'000'000'000) return;
    last_send_error_log_ = t;
    log(EventKind::ike, fmt::format("IKE: cannot send to {}: {}", endpoint(a.remote),
                                    s == nullptr ? "no socket of that family" : std::strerror(e)));
  };
  if (s == nullptr) {
    fail(0);
    return;
  }
  static constexpr std::uint8_t kMarker[4] = {0, 0, 0, 0};
  iovec iov[2];
  int iovcnt = 0;
  if (a.non_esp_marker) iov[iovcnt++] = {const_cast<std::uint8_t*>(kMarker), sizeof kMarker};
  iov[iovcnt++] = {const_cast<std::uint8_t*>(a.data.data()), a.data.size()};
  socklen_t tolen = 0;
  sockaddr_storage to = to_sockaddr(a.remote.addr, a.remote.port, tolen);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = tolen;
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<std::size_t>(iovcnt);
  // The source address: the one the peer wrote to (or chose for an
  // initiation), so that a multi-homed host answers from the right one.
  if (!a.local.addr.empty() && a.local.addr.is_v6() == v6) {
    msg.msg_control = control;
    cmsghdr* c = nullptr;
    if (v6) {
      msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pi{};
      std::memcpy(&pi.ipi6_addr, a.local.addr.data(), 16);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    } else {
      msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo pi{};
      std::memcpy(&pi.ipi_spec_dst, a.local.addr.data(), 4);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    }
  }
  if (sendmsg(s->fd, &msg, MSG_DONTWAIT) < 0) {
    fail(errno);
    return;
  }
  std::scoped_lock l(snap_mu_);
  ++counters_.datagrams_sent;
}

namespace {

std::string rekey_note(const ike::v2::ChildSa& c) {
  if (!c.replaces) return {};
  if (c.outbound_deferred) {
    return fmt::format(" (rekeys child {}; the outbound SA is used once the peer deletes that child)", *c.replaces);
  }
  return fmt::format(" (rekeys child {}; its outbound SA is replaced)", *c.replaces);
}

}  // namespace

void IkeDriver::install(const ike::v2::InstallAction& a) {
  const ike::v2::ChildSa& c = a.sa;
  ChildInstall ci;
  ci.id = c.child;
  ci.ike_sa = c.ike_sa;
  ci.policy = c.policy;
  ci.policy_name = c.policy_name;
  ci.peer = c.peer.addr;
  ci.peer_port = c.peer.port;
  ci.inbound = c.inbound.clone();
  ci.outbound = c.outbound.clone();
  for (const auto& t : c.local_ts) ci.local_ts.push_back(to_range(t));
  for (const auto& t : c.remote_ts) ci.remote_ts.push_back(to_range(t));
  ci.replaces = c.replaces;
  ci.outbound_deferred = c.outbound_deferred;
  std::string error;
  std::size_t removed = 0;
  host_.with_state(true, [&](State& s) {
    try {
      if (c.replaces && !c.outbound_deferred) {
        if (const NegotiatedChild* old = s.find_child(*c.replaces); old != nullptr && old->outbound != nullptr) {
          removed = 1;
        }
      }
      (void)s.install_child(std::move(ci));
    } catch (const std::exception& e) {
      error = e.what();
      removed = 0;
    }
  });
  if (!error.empty()) {
    {
      std::scoped_lock l(snap_mu_);
      ++counters_.install_failures;
    }
    log(EventKind::ike, fmt::format("IKE: cannot install child SA {} of policy {}: {}", c.child, c.policy_name, error));
    return;
  }
  {
    std::scoped_lock l(snap_mu_);
    ++counters_.installs;
  }
  if (host_.counted) host_.counted(2, removed);
  log(EventKind::sa_installed, fmt::format("IKE: child SA {} of policy {} installed: in {}, out {}{}", c.child,
                                           c.policy_name, c.inbound.describe(), c.outbound.describe(), rekey_note(c)));
  if (key_files_) {
    std::string why;
    for (const auto* sa : {&c.inbound, &c.outbound}) {
      if (!key_files_->add_esp(*sa, why)) log(EventKind::warning, fmt::format("--save-keys: {}", why));
    }
    write_key_files();
  }
}

void IkeDriver::activate_outbound(const ike::v2::ActivateOutboundAction& a) {
  std::size_t removed = 0;
  std::uint32_t spi = 0;
  host_.with_state(true, [&](State& s) {
    removed = s.activate_outbound(a.child, a.replaces);
    if (const NegotiatedChild* ch = s.find_child(a.child); ch != nullptr && ch->outbound != nullptr) {
      spi = ch->outbound->config().spi.value_or(0);
    }
  });
  if (removed != 0 && host_.counted) host_.counted(0, removed);
  log(EventKind::sa_installed,
      fmt::format("IKE: child SA {} sends on its outbound SA 0x{:08x} from now on{}", a.child, spi,
                  a.replaces ? fmt::format(" (child {}'s outbound SA removed)", *a.replaces) : ""));
}

void IkeDriver::remove(const ike::v2::RemoveAction& a) {
  std::size_t n = 0;
  host_.with_state(true, [&](State& s) { n = s.remove_child(a.child, a.inbound_spi, a.outbound_spi, a.inbound_only); });
  {
    std::scoped_lock l(snap_mu_);
    ++counters_.removes;
  }
  if (n != 0 && host_.counted) host_.counted(0, n);
  log(EventKind::sa_removed, fmt::format("IKE: child SA {} (in 0x{:08x}, out 0x{:08x}) removed: {}", a.child,
                                         a.inbound_spi, a.outbound_spi, a.reason.empty() ? "deleted" : a.reason));
}

bool IkeDriver::raw_send(std::span<const std::uint8_t> ip) noexcept {
  dissect::Packet p;
  dissect::dissect_ip(ip, p);
  if (p.ip.version == 0) return false;
  const int fd = p.ip.version == 6 ? raw6_ : raw4_;
  if (fd < 0) return false;
  socklen_t len = 0;
  // Routed by its (outer) destination as a packet of this host: on a
  // gateway too, whatever the route of the inner one (NFQUEUE.md Q3 b).
  sockaddr_storage to = to_sockaddr(p.ip.dst, 0, len);
  return sendto(fd, ip.data(), ip.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), len) ==
         static_cast<ssize_t>(ip.size());
}

void IkeDriver::acquire_done(const ike::v2::AcquireDoneAction& a) {
  using Result = ike::v2::AcquireDoneAction::Result;
  const auto which = channel_.acquire_of(a.acquire);
  std::vector<HeldPacket> held = channel_.take(a.acquire);
  std::uint64_t sent = 0;
  std::uint64_t failed = 0;
  std::uint64_t discarded = 0;
  Result result = a.result;
  if (result == Result::cleartext) {
    // Never for require, whatever the daemon says.
    host_.with_state(false, [&](State& s) {
      if (!which || which->first >= s.config().policies.size() ||
          s.config().policies[which->first].inbound == filters::InboundCleartext::require) {
        result = Result::drop;
      }
    });
  }
  if (result == Result::protect) {
    host_.with_state(false, [&](State& s) {
      NegotiatedChild* child = s.find_child(a.child);
      for (const HeldPacket& h : held) {
        dissect::Packet p;
        dissect::dissect_ip(h.bytes, p);
        // The negotiation may have narrowed the selectors (RFC 7296 2.9):
        // what the child does not carry would be dropped by the peer.
        if (child == nullptr || child->outbound == nullptr || p.ip.version == 0 ||
            !child->carries(filters::selector_of(p), true)) {
          ++discarded;
          continue;
        }
        ipsec::SecurityAssociation& sa = *child->outbound;
        ipsec::OutboundOptions o;
        o.ts_ns = now();
        if (sa.config().encap && sa.config().dst) {
          o.encap_dport = s.life(sa.index()).nat.port_for(*sa.config().dst, steady_ns());
        }
        const ipsec::OutboundResult r = engine_.outbound(sa, h.bytes, o);
        if (r.status != ipsec::OutboundStatus::ok) {
          ++failed;
          continue;
        }
        if (raw_send(r.packet)) {
          ++sent;
        } else {
          ++failed;  // e.g. larger than the MTU (EMSGSIZE): the sender retransmits
        }
      }
    });
  } else if (result == Result::cleartext) {
    for (const HeldPacket& h : held) (raw_send(h.bytes) ? sent : failed) += 1;
  } else {
    discarded = held.size();
  }
  std::scoped_lock l(snap_mu_);
  (result == Result::protect ? counters_.held_sent_protected : counters_.held_sent_cleartext) +=
      result == Result::drop ? 0 : sent;
  counters_.held_discarded += discarded;
  counters_.held_send_errors += failed;
}

void IkeDriver::event(const ike::v2::EventAction& a, TimeNs now) {
  // As the workers' events: a burst, then one a second per kind, so that a
  // flood of forged IKE does not flood the log.
  RateLimit& rl = limits_[std::min<std::size_t>(static_cast<std::size_t>(a.kind), limits_.size() - 1)];
  if (now - rl.window_ns >= 1'000'000'000) {
    rl.window_ns = now;
    rl.used = 0;
  }
  if (rl.used >= 5) {
    ++rl.suppressed;
    std::scoped_lock l(snap_mu_);
    ++counters_.events_suppressed;
    return;
  }
  ++rl.used;
  std::string text = fmt::format("IKE {}: {}", ike::v2::to_string(a.kind), a.text);
  if (rl.suppressed != 0) {
    text += fmt::format(" ({} more like it were not logged)", rl.suppressed);
    rl.suppressed = 0;
  }
  log(EventKind::ike, text);
}

void IkeDriver::keys(const ike::v2::KeysAction& a) {
  if (!key_files_) return;  // produced only with save_keys; never written without the flag
  std::string why;
  if (!key_files_->add_ike(a.spi_i, a.spi_r, a.suite.encryption, a.suite.integrity, a.sk_ei, a.sk_er, a.sk_ai, a.sk_ar,
                           why)) {
    log(EventKind::warning, fmt::format("--save-keys: {}", why));
    return;
  }
  write_key_files();
}

void IkeDriver::write_key_files() {
  // Two fsyncs are tens of milliseconds: never on this thread, which would
  // then negotiate a few dozen SAs a second. The writer counts and logs.
  key_files_->write_later();
}

IkeDriverCounters IkeDriver::counters() const {
  std::scoped_lock l(snap_mu_);
  return counters_;
}

json IkeDriver::snapshot_json() const {
  ike::v2::Snapshot s;
  IkeDriverCounters c;
  {
    std::scoped_lock l(snap_mu_);
    s = snap_;
    c = counters_;
  }
  const IkeChannelCounters ch = channel_.counters();
  const auto& m = s.counters;
  json j;
  // The IP Security Monitor's Main Mode table, counted live.
  j["main_mode"] = {{"ike_sas_established", m.ike_sas_established},
                    {"quick_modes", m.child_sas_established},
                    {"negotiation_failures", m.negotiation_failures},
                    {"authentication_failures", m.authentication_failures},
                    {"invalid_cookies", m.invalid_cookies},
                    {"invalid_packets", m.invalid_packets},
                    {"soft_associations", m.soft_associations},
                    {"retransmissions", m.retransmissions},
                    {"cookies_sent", m.cookies_sent},
                    {"half_open_dropped", m.half_open_dropped},
                    {"rekeys", m.rekeys},
                    {"dpd_timeouts", m.dpd_timeouts},
                    {"active_ike_sas", s.ike_sas.size()},
                    {"half_open", s.half_open},
                    {"cookies_on", s.cookies_on},
                    {"active_soft_associations", channel_.soft_count()}};
  json sas = json::array();
  for (const auto& sa : s.ike_sas) {
    json children = json::array();
    for (const auto& ch2 : sa.children) {
      children.push_back({{"id", ch2.id},
                          {"policy", ch2.policy},
                          {"inbound_spi", ch2.inbound_spi},
                          {"outbound_spi", ch2.outbound_spi},
                          {"protocol", ch2.protocol},
                          {"mode", ch2.mode},
                          {"algorithms", ch2.algorithms},
                          {"local_ts", ch2.local_ts},
                          {"remote_ts", ch2.remote_ts},
                          {"age_seconds", ch2.age_seconds},
                          {"rekey_in_seconds", ch2.rekey_in_seconds},
                          {"udp_encap", ch2.udp_encap}});
    }
    sas.push_back({{"id", sa.id},
                   {"spi_i", hex64(sa.spi_i)},
                   {"spi_r", hex64(sa.spi_r)},
                   {"initiator", sa.initiator},
                   {"local", endpoint(sa.local)},
                   {"remote", endpoint(sa.remote)},
                   {"local_id", sa.local_id},
                   {"remote_id", sa.remote_id},
                   {"profile", sa.profile},
                   {"algorithms", sa.algorithms},
                   {"state", sa.state},
                   {"age_seconds", sa.age_seconds},
                   {"rekey_in_seconds", sa.rekey_in_seconds},
                   {"nat_local", sa.nat_local},
                   {"nat_remote", sa.nat_remote},
                   {"children", children}});
  }
  j["ike_sas"] = sas;
  j["acquires"] = {{"started", ch.acquires},
                   {"in_flight", ch.acquires_now},
                   {"expired", ch.acquires_expired},
                   {"packets_held", ch.held},
                   {"packets_held_now", ch.held_now},
                   {"packets_dropped_full", ch.held_dropped},
                   {"notices_dropped", ch.notices_dropped},
                   {"sent_protected", c.held_sent_protected},
                   {"sent_cleartext", c.held_sent_cleartext},
                   {"discarded", c.held_discarded},
                   {"send_errors", c.held_send_errors}};
  j["driver"] = {{"ports", {options_.port, options_.natt_port}},
                 {"datagrams_received", c.datagrams_received},
                 {"datagrams_sent", c.datagrams_sent},
                 {"send_errors", c.send_errors},
                 {"receive_errors", c.receive_errors},
                 {"stray_esp", c.stray_esp},
                 {"keepalives_received", c.keepalives_received},
                 {"installs", c.installs},
                 {"install_failures", c.install_failures},
                 {"removes", c.removes},
                 {"peer_updates", c.peer_updates},
                 {"events_suppressed", c.events_suppressed},
                 {"save_keys", key_files_ ? json(options_.save_keys) : json(nullptr)},
                 {"key_file_writes", c.key_file_writes},
                 {"key_file_errors", c.key_file_errors}};
  return j;
}

}  // namespace ipsentry::enforce
