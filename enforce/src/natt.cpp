#include "ipsentry/enforce/natt.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/dissect/wire.hpp"
#include "ipsentry/enforce/enforcer.hpp"

namespace ipsentry::enforce {

using dissect::IpAddr;

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

NatPeer* NatMapping::find(const IpAddr& a) noexcept {
  for (std::size_t i = 0; i < used_; ++i) {
    if (peers_[i].address == a) return &peers_[i];
  }
  return nullptr;
}

void NatMapping::seed(const IpAddr& destination) noexcept {
  std::scoped_lock lock(mu_);
  if (find(destination) != nullptr || used_ == kPeers) return;
  NatPeer& p = peers_[used_++];
  p = NatPeer{};
  p.address = destination;
  p.configured = true;
}

std::uint16_t NatMapping::port_for(const IpAddr& peer, std::int64_t now_ns) noexcept {
  std::scoped_lock lock(mu_);
  NatPeer* p = find(peer);
  if (p == nullptr) return 0;
  p->last_out_ns = now_ns;
  return p->port;
}

std::uint16_t NatMapping::learn(const IpAddr& address, std::uint16_t port, std::int64_t now_ns) noexcept {
  std::scoped_lock lock(mu_);
  NatPeer* p = find(address);
  if (p == nullptr) {
    if (used_ < kPeers) {
      p = &peers_[used_++];
    } else {
      // Full: the learned peer heard from least recently makes room; the
      // configured destination stays.
      for (std::size_t i = 0; i < used_; ++i) {
        NatPeer& c = peers_[i];
        if (!c.configured && (p == nullptr || c.learned_ns < p->learned_ns)) p = &c;
      }
      if (p == nullptr) return 0;  // every slot configured: cannot happen with one seed
    }
    *p = NatPeer{};
    p->address = address;
  }
  const std::uint16_t before = p->port;
  if (before != 0 && before != port) ++p->moves;
  p->port = port;
  p->learned_ns = now_ns;
  return before;
}

std::size_t NatMapping::due(std::int64_t now_ns, std::int64_t interval_ns, std::uint16_t configured_dport,
                            std::span<KeepaliveTarget, kPeers> out) noexcept {
  std::scoped_lock lock(mu_);
  std::size_t n = 0;
  for (std::size_t i = 0; i < used_; ++i) {
    NatPeer& p = peers_[i];
    if (p.last_out_ns != 0 && now_ns - p.last_out_ns < interval_ns) continue;
    out[n++] = KeepaliveTarget{p.address, p.port != 0 ? p.port : configured_dport};
    p.last_out_ns = now_ns;
  }
  return n;
}

void NatMapping::count_keepalives(std::uint64_t n) noexcept {
  std::scoped_lock lock(mu_);
  keepalives_sent_ += n;
}

std::array<NatPeer, NatMapping::kPeers> NatMapping::peers(std::uint64_t& keepalives_sent) const noexcept {
  std::scoped_lock lock(mu_);
  keepalives_sent = keepalives_sent_;
  std::array<NatPeer, kPeers> out{};
  std::copy_n(peers_.begin(), used_, out.begin());
  return out;
}

void NatMapping::take_over(const NatMapping& old) noexcept {
  std::scoped_lock lock(mu_, old.mu_);
  // The configured destination is seeded already; learned ports carry over.
  for (std::size_t i = 0; i < old.used_; ++i) {
    const NatPeer& o = old.peers_[i];
    NatPeer* p = find(o.address);
    if (p == nullptr) {
      if (o.port == 0 || used_ == kPeers) continue;
      p = &peers_[used_++];
      *p = o;
      p->configured = false;
      continue;
    }
    const bool configured = p->configured;
    *p = o;
    p->configured = configured;
  }
  keepalives_sent_ = old.keepalives_sent_;
}

std::size_t build_keepalive(std::span<std::uint8_t, 64> buf, const IpAddr& src, const IpAddr& dst, std::uint16_t sport,
                            std::uint16_t dport) noexcept {
  std::uint8_t* b = buf.data();
  const bool v4 = dst.is_v4();
  const std::size_t ip = v4 ? 20 : 40;
  const std::size_t total = ip + 8 + 1;
  std::memset(b, 0, total);
  if (v4) {
    b[0] = 0x45;
    dissect::store_be16(b + 2, static_cast<std::uint16_t>(total));
    b[8] = 64;
    b[9] = dissect::proto::udp;
    if (src.is_v4()) std::memcpy(b + 12, src.data(), 4);  // zero: the kernel picks it
    std::memcpy(b + 16, dst.data(), 4);
    dissect::ipv4_set_checksum(b, 20);
  } else {
    b[0] = 0x60;
    dissect::store_be16(b + 4, 9);
    b[6] = dissect::proto::udp;
    b[7] = 64;
    std::memcpy(b + 8, src.data(), 16);
    std::memcpy(b + 24, dst.data(), 16);
  }
  std::uint8_t* u = b + ip;
  dissect::store_be16(u, sport);
  dissect::store_be16(u + 2, dport);
  dissect::store_be16(u + 4, 9);
  u[8] = 0xff;
  if (!v4) dissect::store_be16(u + 6, dissect::transport_checksum(src, dst, dissect::proto::udp, {u, 9}));
  return total;
}

KeepaliveSender::KeepaliveSender() {
  // IPPROTO_RAW sockets only send, and carry the IP header we write.
  v4_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  v6_ = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  for (int s : {v4_, v6_}) {
    if (s < 0) continue;
    std::uint32_t mark = kMarkOwn;
    setsockopt(s, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
  }
}

KeepaliveSender::~KeepaliveSender() {
  if (v4_ >= 0) close(v4_);
  if (v6_ >= 0) close(v6_);
}

namespace {

// The source address the kernel would choose towards `dst`: IPv6 raw
// sockets with the header included do not fill it in, and the UDP checksum
// covers it.
std::optional<IpAddr> route_source(const IpAddr& dst, std::uint16_t port) noexcept {
  const int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::nullopt;
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(port);
  std::memcpy(&to.sin6_addr, dst.data(), 16);
  std::optional<IpAddr> out;
  sockaddr_in6 me{};
  socklen_t len = sizeof me;
  if (connect(s, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
      getsockname(s, reinterpret_cast<sockaddr*>(&me), &len) == 0) {
    out = IpAddr::v6(reinterpret_cast<const std::uint8_t*>(&me.sin6_addr));
  }
  close(s);
  return out;
}

}  // namespace

bool KeepaliveSender::send(const std::optional<IpAddr>& src, std::uint16_t sport, const IpAddr& dst,
                           std::uint16_t dport) noexcept {
  std::array<std::uint8_t, 64> buf{};
  if (dst.is_v4()) {
    if (v4_ < 0) return false;
    const std::size_t n = build_keepalive(buf, src && src->is_v4() ? *src : IpAddr{}, dst, sport, dport);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    std::memcpy(&to.sin_addr, dst.data(), 4);
    return sendto(v4_, buf.data(), n, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0;
  }
  if (v6_ < 0 || !dst.is_v6()) return false;
  const std::optional<IpAddr> from = src && src->is_v6() ? src : route_source(dst, dport);
  if (!from) return false;
  const std::size_t n = build_keepalive(buf, *from, dst, sport, dport);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  std::memcpy(&to.sin6_addr, dst.data(), 16);
  return sendto(v6_, buf.data(), n, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0;
}

std::size_t KeepaliveSender::tick(State& state, std::int64_t now_ns) noexcept {
  std::size_t total = 0;
  for (std::size_t i = 0; i < state.sad().size(); ++i) {
    const filters::SaConfig& c = state.sad().at(i).config();
    if (!c.encap || c.encap->keepalive_seconds == 0) continue;
    if (state.spd().sa_direction(c) != filters::Direction::outbound) continue;
    SaLife& life = state.life(i);
    if (life.hard_expired.load(std::memory_order_relaxed)) continue;
    std::array<KeepaliveTarget, NatMapping::kPeers> targets{};
    const std::size_t n =
        life.nat.due(now_ns, std::int64_t{c.encap->keepalive_seconds} * 1'000'000'000, c.encap->dport, targets);
    std::uint64_t sent = 0;
    for (std::size_t t = 0; t < n; ++t) {
      if (send(c.src, c.encap->sport, targets[t].address, targets[t].port)) ++sent;
    }
    if (sent != 0) life.nat.count_keepalives(sent);
    total += sent;
  }
  return total;
}

nlohmann::json nat_json(const filters::SaConfig& sa, filters::Direction direction, const SaLife& life,
                        std::int64_t now_ns) {
  using nlohmann::json;
  if (!sa.encap) return nullptr;
  json j{{"sport", sa.encap->sport}, {"dport", sa.encap->dport}};
  if (direction != filters::Direction::outbound) return j;
  std::uint64_t keepalives = 0;
  const auto peers = life.nat.peers(keepalives);
  j["keepalive_seconds"] = sa.encap->keepalive_seconds;
  j["keepalives_sent"] = keepalives;
  json list = json::array();
  for (const NatPeer& p : peers) {
    if (p.address.empty()) continue;
    list.push_back(
        {{"address", p.address.str()},
         {"port", p.port != 0 ? p.port : sa.encap->dport},
         {"learned", p.port != 0},
         {"learned_seconds_ago", p.port != 0 ? json((now_ns - p.learned_ns) / 1'000'000'000) : json(nullptr)},
         {"moves", p.moves}});
  }
  j["peers"] = list;
  return j;
}

}  // namespace ipsentry::enforce
