#include "ipsentry/enforce/ike_channel.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace ipsentry::enforce {

IkeChannel::IkeChannel(IkeChannelLimits limits) : limits_(limits) {
  fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  acquires_.reserve(limits_.max_peers);
  notices_.reserve(limits_.notices);
}

IkeChannel::~IkeChannel() {
  if (fd_ >= 0) close(fd_);
}

void IkeChannel::wake() noexcept {
  if (fd_ < 0) return;
  const std::uint64_t one = 1;
  // A full counter (never in practice) still leaves the fd readable.
  (void)!write(fd_, &one, sizeof one);
}

void IkeChannel::post(IkeNotice n) noexcept {
  if (notices_.size() >= limits_.notices) {
    ++counters_.notices_dropped;
    return;
  }
  notices_.push_back(std::move(n));  // capacity reserved: does not allocate
}

IkeChannel::Hold IkeChannel::hold(std::size_t policy, const dissect::IpAddr& peer,
                                  const filters::PacketSelector& selector, std::span<const std::uint8_t> packet,
                                  bool forwarded, std::int64_t now_ns) noexcept {
  Hold result = Hold::full;
  {
    std::scoped_lock lock(mu_);
    auto it = std::find_if(acquires_.begin(), acquires_.end(),
                           [&](const Acquire& a) { return a.policy == policy && a.peer == peer; });
    const bool fresh = it == acquires_.end();
    if (fresh) {
      if (acquires_.size() >= limits_.max_peers || notices_.size() >= limits_.notices) {
        ++counters_.held_dropped;
        if (notices_.size() >= limits_.notices) ++counters_.notices_dropped;
        return Hold::full;
      }
      Acquire a;
      a.id = next_id_++;
      a.policy = policy;
      a.peer = peer;
      a.started_ns = now_ns;
      acquires_.push_back(std::move(a));
      it = acquires_.end() - 1;
      ++counters_.acquires;
      IkeNotice n;
      n.kind = IkeNotice::Kind::acquire;
      n.acquire = it->id;
      n.policy = policy;
      n.peer = peer;
      n.packet = selector;
      post(n);
      result = Hold::started;
    }
    if (it->packets.size() >= limits_.per_peer || held_total_ >= limits_.total) {
      ++counters_.held_dropped;
    } else {
      try {
        HeldPacket h;
        h.bytes.assign(packet.begin(), packet.end());
        h.forwarded = forwarded;
        it->packets.push_back(std::move(h));
        ++held_total_;
        ++counters_.held;
        if (!fresh) result = Hold::held;
      } catch (...) {
        ++counters_.held_dropped;  // out of memory: the packet is dropped like one over the cap
      }
    }
    if (!fresh) return result;
  }
  wake();
  return result;
}

bool IkeChannel::expired(std::uint64_t child, bool hard) noexcept {
  IkeNotice n;
  n.kind = hard ? IkeNotice::Kind::hard_expired : IkeNotice::Kind::soft_expired;
  n.child = child;
  return notify(n);
}

bool IkeChannel::mapping(std::uint64_t child, const dissect::IpAddr& peer, std::uint16_t port) noexcept {
  IkeNotice n;
  n.kind = IkeNotice::Kind::nat_mapping;
  n.child = child;
  n.peer = peer;
  n.port = port;
  return notify(n);
}

bool IkeChannel::notify(const IkeNotice& n) noexcept {
  {
    std::scoped_lock lock(mu_);
    if (notices_.size() >= limits_.notices) {
      ++counters_.notices_dropped;
      return false;
    }
    post(n);
  }
  wake();
  return true;
}

std::vector<IkeNotice> IkeChannel::drain() {
  std::uint64_t v = 0;
  if (fd_ >= 0) (void)!read(fd_, &v, sizeof v);
  std::vector<IkeNotice> out;
  out.reserve(limits_.notices);
  std::scoped_lock lock(mu_);
  out.swap(notices_);  // `out` had the capacity the workers count on
  return out;
}

std::vector<HeldPacket> IkeChannel::take(std::uint64_t acquire) {
  std::scoped_lock lock(mu_);
  auto it = std::find_if(acquires_.begin(), acquires_.end(), [&](const Acquire& a) { return a.id == acquire; });
  if (it == acquires_.end()) return {};
  std::vector<HeldPacket> out = std::move(it->packets);
  held_total_ -= out.size();
  acquires_.erase(it);
  return out;
}

std::vector<std::uint64_t> IkeChannel::expire(std::int64_t now_ns) {
  std::vector<std::uint64_t> gone;
  std::scoped_lock lock(mu_);
  for (auto it = acquires_.begin(); it != acquires_.end();) {
    if (now_ns - it->started_ns < limits_.acquire_ns) {
      ++it;
      continue;
    }
    gone.push_back(it->id);
    held_total_ -= it->packets.size();
    ++counters_.acquires_expired;
    it = acquires_.erase(it);
  }
  return gone;
}

std::optional<std::pair<std::size_t, dissect::IpAddr>> IkeChannel::acquire_of(std::uint64_t acquire) const {
  std::scoped_lock lock(mu_);
  for (const auto& a : acquires_) {
    if (a.id == acquire) return std::pair{a.policy, a.peer};
  }
  return std::nullopt;
}

void IkeChannel::set_soft(std::size_t policy, const dissect::IpAddr& peer, bool active) {
  std::scoped_lock lock(mu_);
  auto it = std::find(soft_.begin(), soft_.end(), std::pair{policy, peer});
  if (active && it == soft_.end()) soft_.emplace_back(policy, peer);
  if (!active && it != soft_.end()) soft_.erase(it);
}

bool IkeChannel::soft(std::size_t policy, const dissect::IpAddr& peer) const noexcept {
  std::scoped_lock lock(mu_);
  return std::find(soft_.begin(), soft_.end(), std::pair{policy, peer}) != soft_.end();
}

std::size_t IkeChannel::soft_count() const noexcept {
  std::scoped_lock lock(mu_);
  return soft_.size();
}

void IkeChannel::remap_policies(const std::vector<std::optional<std::size_t>>& map) {
  std::scoped_lock lock(mu_);
  auto to = [&](std::size_t old) { return old < map.size() ? map[old] : std::nullopt; };
  std::erase_if(soft_, [&](auto& s) {
    const auto n = to(s.first);
    if (n) s.first = *n;
    return !n;
  });
  for (auto& a : acquires_) {
    // A policy that is gone keeps an index no packet matches any more.
    a.policy = to(a.policy).value_or(~std::size_t{0});
  }
}

IkeChannelCounters IkeChannel::counters() const noexcept {
  std::scoped_lock lock(mu_);
  IkeChannelCounters c = counters_;
  c.held_now = held_total_;
  c.acquires_now = acquires_.size();
  return c;
}

}  // namespace ipsentry::enforce
