#include "ipsentry/enforce/nfqueue.hpp"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include <fmt/format.h>

namespace ipsentry::enforce {

namespace {

// Room for one verdict message around a full-size packet.
constexpr std::size_t kVerdictRoom = 65535 + 256;
constexpr std::size_t kTxBytes = 2u << 20;
constexpr std::size_t kRxBytes = 65535 + 4096;

}  // namespace

std::optional<std::string> queue_holder(std::uint16_t num) {
  // Columns: queue number, netlink port id of the binder, ... (per namespace).
  std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
  unsigned q = 0;
  long port = 0;
  std::string rest;
  while (in >> q >> port && std::getline(in, rest)) {
    if (q != num) continue;
    // The first netlink socket of a process gets its pid as port id.
    std::ifstream comm(fmt::format("/proc/{}/comm", port));
    std::string name;
    if (port > 0 && std::getline(comm, name))
      return fmt::format("netlink port {}, probably pid {} '{}'", port, port, name);
    return fmt::format("netlink port {}", port);
  }
  return std::nullopt;
}

Queue::Queue(std::uint16_t num, bool fail_open, std::uint32_t max_len) : num_(num), rx_(kRxBytes), tx_(kTxBytes) {
  nl_ = mnl_socket_open(NETLINK_NETFILTER);
  if (nl_ == nullptr) throw QueueError(fmt::format("cannot open a netfilter netlink socket: {}", std::strerror(errno)));
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int e = errno;
    mnl_socket_close(nl_);
    throw QueueError(fmt::format("cannot bind the netlink socket: {}", std::strerror(e)));
  }
  portid_ = mnl_socket_get_portid(nl_);
  const int fd = mnl_socket_get_fd(nl_);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  int rcv = 16 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  }
  int snd = static_cast<int>(kTxBytes * 2);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  }
  try {
    send_config(NFQNL_CFG_CMD_BIND, AF_UNSPEC);
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, num_);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, max_len);
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(fail_open ? NFQA_CFG_F_FAIL_OPEN : 0));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = 2;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
      throw QueueError(fmt::format("queue {}: cannot configure: {}", num_, std::strerror(errno)));
    }
    // Wait for the acknowledgement (the same way as in send_config).
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
      if (n < 0) throw QueueError(fmt::format("queue {}: configuration: {}", num_, std::strerror(errno)));
      bool acked = false;
      int len = static_cast<int>(n);
      for (auto* m = reinterpret_cast<nlmsghdr*>(rx_.data()); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
        if (m->nlmsg_type == NLMSG_ERROR && m->nlmsg_seq == 2) {
          const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
          if (err->error != 0) {
            throw QueueError(
                fmt::format("queue {}: the kernel refused its settings: {}", num_, std::strerror(-err->error)));
          }
          acked = true;
        }
      }
      if (acked) break;
    }
  } catch (...) {
    mnl_socket_close(nl_);
    nl_ = nullptr;
    throw;
  }
}

Queue::~Queue() {
  if (nl_ == nullptr) return;
  try {
    flush();
    send_config(NFQNL_CFG_CMD_UNBIND, AF_UNSPEC);
  } catch (...) {
    // Closing the socket unbinds the queue anyway.
  }
  mnl_socket_close(nl_);
}

void Queue::send_config(std::uint8_t cmd, std::uint16_t pf) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, num_);
  nfq_nlmsg_cfg_put_cmd(nlh, pf, cmd);
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = 1;
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
    throw QueueError(fmt::format("queue {}: {}", num_, std::strerror(errno)));
  }
  if (cmd == NFQNL_CFG_CMD_UNBIND) return;
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
    if (n < 0) throw QueueError(fmt::format("queue {}: {}", num_, std::strerror(errno)));
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<nlmsghdr*>(rx_.data()); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_type != NLMSG_ERROR || m->nlmsg_seq != 1) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
      if (err->error == 0) return;
      const int e = -err->error;
      // The kernel answers EPERM both to a missing privilege and to a queue
      // another socket holds: tell them apart by the queue's owner.
      if (e == EPERM || e == EBUSY) {
        if (const auto holder = queue_holder(num_)) {
          throw QueueError(
              fmt::format("NFQUEUE queue {} is already bound by another process in this network "
                          "namespace ({}); choose another queue with --queue",
                          num_, *holder));
        }
      }
      if (e == EPERM) {
        throw QueueError(
            fmt::format("cannot bind NFQUEUE queue {}: operation not permitted; enforcement needs "
                        "CAP_NET_ADMIN (run it as root)",
                        num_));
      }
      throw QueueError(fmt::format("cannot bind NFQUEUE queue {}: {}", num_, std::strerror(e)));
    }
  }
}

void Queue::flush() {
  if (tx_len_ == 0) return;
  if (mnl_socket_sendto(nl_, tx_.data(), tx_len_) < 0) verdict_errors_.fetch_add(1, std::memory_order_relaxed);
  tx_len_ = 0;
}

void Queue::run(const std::atomic<bool>& stop, const std::function<Verdict(const QueuedPacket&)>& handle,
                std::size_t burst) {
  const int fd = mnl_socket_get_fd(nl_);
  std::array<nlattr*, NFQA_MAX + 1> attr{};
  while (!stop.load(std::memory_order_relaxed)) {
    pollfd pfd{fd, POLLIN, 0};
    const int pr = poll(&pfd, 1, 100);
    if (pr < 0 && errno != EINTR) throw QueueError(fmt::format("queue {}: poll: {}", num_, std::strerror(errno)));
    if (pr <= 0) continue;
    for (std::size_t taken = 0; taken < burst;) {
      const ssize_t n = recv(fd, rx_.data(), rx_.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == ENOBUFS) {
          overruns_.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        if (errno == EINTR) continue;
        break;  // EAGAIN: the burst is over
      }
      int len = static_cast<int>(n);
      for (auto* m = reinterpret_cast<nlmsghdr*>(rx_.data()); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
        if (m->nlmsg_type == NLMSG_ERROR) {
          const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
          if (err->error != 0) verdict_errors_.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        attr.fill(nullptr);
        if (nfq_nlmsg_parse(m, attr.data()) < 0 || attr[NFQA_PACKET_HDR] == nullptr) continue;
        const auto* ph = static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
        QueuedPacket qp;
        qp.id = ntohl(ph->packet_id);
        qp.hook = ph->hook;
        if (attr[NFQA_MARK] != nullptr) qp.mark = ntohl(mnl_attr_get_u32(attr[NFQA_MARK]));
        if (attr[NFQA_IFINDEX_INDEV] != nullptr) qp.indev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV]));
        if (attr[NFQA_IFINDEX_OUTDEV] != nullptr) qp.outdev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_OUTDEV]));
        if (attr[NFQA_PAYLOAD] != nullptr) {
          qp.payload = dissect::Bytes(static_cast<const std::uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
                                      mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]));
        }
        const Verdict v = handle(qp);
        if (tx_len_ + kVerdictRoom > tx_.size()) flush();
        nlmsghdr* out = nfq_nlmsg_put(tx_.data() + tx_len_, NFQNL_MSG_VERDICT, num_);
        nfq_nlmsg_verdict_put(out, static_cast<int>(qp.id), v.accept ? NF_ACCEPT : NF_DROP);
        if (v.accept && !v.replacement.empty()) {
          nfq_nlmsg_verdict_put_pkt(out, v.replacement.data(), static_cast<std::uint32_t>(v.replacement.size()));
        }
        if (v.set_mark) nfq_nlmsg_verdict_put_mark(out, v.mark);
        tx_len_ += NLMSG_ALIGN(out->nlmsg_len);
        ++taken;
      }
    }
    flush();
  }
  flush();
}

}  // namespace ipsentry::enforce
