#include "ipsentry/enforce/runner.hpp"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/enforce/exemption_counters.hpp"
#include "ipsentry/enforce/natt.hpp"
#include "ipsentry/filters/key_hygiene.hpp"

namespace ipsentry::enforce {

namespace fs = std::filesystem;
using nlohmann::json;

bool have_net_admin() noexcept {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      const unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps & (1ull << 12)) != 0;  // CAP_NET_ADMIN
    }
  }
  return geteuid() == 0;
}

namespace {

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint32_t smallest_mtu() {
  std::uint32_t best = 0;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator("/sys/class/net", ec)) {
    if (d.path().filename() == "lo") continue;
    std::ifstream in(d.path() / "mtu");
    std::uint32_t m = 0;
    if (in >> m && m >= 1280 && (best == 0 || m < best)) best = m;
  }
  return best == 0 ? 1500 : best;
}

// The MTU of the device a packet leaves by, cached per worker for a few seconds.
class MtuCache {
 public:
  std::uint32_t get(std::uint32_t ifindex, std::int64_t now) {
    if (ifindex == 0 || ifindex >= 4096) return 0;
    if (entries_.size() <= ifindex) entries_.resize(ifindex + 1);
    auto& e = entries_[ifindex];
    if (e.mtu == 0 || now - e.when > 5'000'000'000) {
      e.mtu = lookup(ifindex);
      e.when = now;
    }
    return e.mtu;
  }

 private:
  static std::uint32_t lookup(std::uint32_t ifindex) {
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(ifindex, name) == nullptr) return 0;
    const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return 0;
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name, IF_NAMESIZE);
    const int rc = ioctl(s, SIOCGIFMTU, &ifr);
    close(s);
    return rc == 0 ? static_cast<std::uint32_t>(ifr.ifr_mtu) : 0;
  }
  struct Entry {
    std::uint32_t mtu = 0;
    std::int64_t when = 0;
  };
  std::vector<Entry> entries_;
};

// ICMP "fragmentation needed" (RFC 792/1191) and ICMPv6 "packet too big"
// (RFC 4443) to the source of a packet that will not fit once protected.
class IcmpOut {
 public:
  IcmpOut() {
    v4_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    v6_ = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    for (int s : {v4_, v6_}) {
      if (s < 0) continue;
      std::uint32_t mark = kMarkOwn;  // our own packets are never queued
      setsockopt(s, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    }
  }
  ~IcmpOut() {
    if (v4_ >= 0) close(v4_);
    if (v6_ >= 0) close(v6_);
  }
  IcmpOut(const IcmpOut&) = delete;
  IcmpOut& operator=(const IcmpOut&) = delete;

  bool send(const dissect::Packet& p, std::uint32_t mtu, std::uint32_t ifindex) noexcept {
    const dissect::Bytes orig = p.ip_bytes();
    if (p.ip.version == 4) {
      if (v4_ < 0) return false;
      const std::size_t quote = std::min<std::size_t>(orig.size(), p.ip.header_len + 8);
      std::uint8_t b[8 + 60 + 8] = {};
      b[0] = 3;  // destination unreachable
      b[1] = 4;  // fragmentation needed and DF set
      b[6] = static_cast<std::uint8_t>(mtu >> 8);
      b[7] = static_cast<std::uint8_t>(mtu);
      std::memcpy(b + 8, orig.data(), quote);
      const std::uint16_t c = dissect::checksum_fold(dissect::checksum_add(0, dissect::Bytes(b, 8 + quote)));
      b[2] = static_cast<std::uint8_t>(c >> 8);
      b[3] = static_cast<std::uint8_t>(c);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      std::memcpy(&to.sin_addr, p.ip.src.data(), 4);
      return sendto(v4_, b, 8 + quote, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0;
    }
    if (v6_ < 0) return false;
    // As much of the packet as fits in the minimum MTU (RFC 4443 section 3.2).
    const std::size_t quote = std::min<std::size_t>(orig.size(), 1280 - 40 - 8);
    std::uint8_t b[1280];
    std::memset(b, 0, 8);
    b[0] = 2;  // packet too big
    b[4] = static_cast<std::uint8_t>(mtu >> 24);
    b[5] = static_cast<std::uint8_t>(mtu >> 16);
    b[6] = static_cast<std::uint8_t>(mtu >> 8);
    b[7] = static_cast<std::uint8_t>(mtu);
    std::memcpy(b + 8, orig.data(), quote);
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    std::memcpy(&to.sin6_addr, p.ip.src.data(), 16);
    if (p.ip.src.is_link_local()) to.sin6_scope_id = ifindex;
    return sendto(v6_, b, 8 + quote, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0;
  }

 private:
  int v4_ = -1;
  int v6_ = -1;
};

json byte_counters(const ipsec::ByteCounters& c) {
  return {{"packets", c.packets},
          {"bytes", c.bytes},
          {"confidential_bytes", c.confidential_bytes},
          {"authenticated_bytes", c.authenticated_bytes},
          {"transport_bytes", c.transport_bytes},
          {"tunnel_bytes", c.tunnel_bytes}};
}

// Each exemption with the packets it let pass: those the kernel rules
// returned and those user space passed.
json exemptions_json(const filters::Spd& spd, const Counters& total, const std::vector<ExemptionCount>& kernel) {
  json out = json::array();
  std::set<std::string> seen;
  for (const auto& e : spd.entries()) {
    if (!e.exemption) continue;
    const std::string tag = e.exemption_tag();
    if (!seen.insert(tag).second) continue;
    std::uint64_t packets = total.exempted[exemption_index(e)];
    for (const auto& k : kernel) {
      if (k.tag == tag) packets += k.packets;
    }
    out.push_back({{"exemption", filters::to_string(e.exemption_kind)},
                   {"direction", e.sense == filters::Sense::inbound ? "in" : "out"},
                   {"packets", packets}});
  }
  return out;
}

std::uint64_t seq_limit(const filters::SaConfig& c) { return c.esn ? ~std::uint64_t{0} - 1 : 0xffffffffull; }

std::atomic<std::uint64_t>& ceiling_of(ipsec::SecurityAssociation& sa, SeqSide side) {
  return side == SeqSide::sent ? sa.send_ceiling : sa.accept_ceiling;
}

// The sequence number an SA has used: the last sent, or the highest accepted.
std::uint64_t use_of(const ipsec::SecurityAssociation& sa, SeqSide side) {
  return side == SeqSide::sent ? sa.last_sent_seq : sa.replay.top();
}

// Takes over the runtime state of an SA the reload renamed (same keys).
void carry(ipsec::SecurityAssociation& to, SaLife& to_life, ipsec::SecurityAssociation& from, SaLife& from_life) {
  std::scoped_lock lock(from.mutex);
  to.replay = from.replay;
  to.last_sent_seq = from.last_sent_seq;
  to.counters = from.counters;
  to.send_ceiling = from.send_ceiling.load();
  to.accept_ceiling = from.accept_ceiling.load();
  to.record_at = from.record_at.load();
  to_life.installed = from_life.installed;
  to_life.soft_reported = from_life.soft_reported.load();
  to_life.hard_expired = from_life.hard_expired.load();
  to_life.exhausted_reported = from_life.exhausted_reported.load();
}

bool share_an_id(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return std::any_of(a.begin(), a.end(),
                     [&](const std::string& x) { return std::find(b.begin(), b.end(), x) != b.end(); });
}

void raise_wanted(ipsec::SecurityAssociation& sa, std::uint64_t seq) noexcept {
  std::uint64_t w = sa.wanted.load(std::memory_order_relaxed);
  while (w < seq && !sa.wanted.compare_exchange_weak(w, seq)) {
  }
}

}  // namespace

double IkeRetransmit::span() const noexcept {
  double total = 0;
  for (unsigned n = 0; n <= tries; ++n) total += timeout * std::pow(base, static_cast<double>(n));
  return total;
}

IkeRetransmit parse_ike_retransmit(std::string_view text) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (parts.size() != 3)
    throw std::invalid_argument(fmt::format("'{}': give TIMEOUT,BASE,TRIES (charon's default is 4,1.8,5)", text));
  const auto number = [&](std::string_view part, const char* what, double lo, double hi) {
    double v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc() || end != part.data() + part.size() || part.empty() || !std::isfinite(v))
      throw std::invalid_argument(fmt::format("{} '{}' is not a number", what, part));
    if (v < lo || v > hi) throw std::invalid_argument(fmt::format("{} {} is outside {}..{}", what, part, lo, hi));
    return v;
  };
  IkeRetransmit r;
  r.timeout = number(parts[0], "TIMEOUT (seconds)", kRetransmitTimeoutMin, kRetransmitTimeoutMax);
  r.base = number(parts[1], "BASE", kRetransmitBaseMin, kRetransmitBaseMax);
  unsigned tries = 0;
  const auto [end, ec] = std::from_chars(parts[2].data(), parts[2].data() + parts[2].size(), tries);
  if (ec != std::errc() || end != parts[2].data() + parts[2].size() || parts[2].empty())
    throw std::invalid_argument(fmt::format("TRIES '{}' is not a whole number", parts[2]));
  if (tries > kRetransmitTriesMax)
    throw std::invalid_argument(fmt::format("TRIES {} is outside 0..{}", tries, kRetransmitTriesMax));
  r.tries = tries;
  // A peer that never answers holds packets (request) and keeps a dead
  // peer's SAs (DPD) for the whole span: more than an hour is a mistake.
  if (r.span() > kRetransmitSpanMax)
    throw std::invalid_argument(fmt::format("{} s x {}^n for {} tries waits {:.0f} s before giving up (at most {:.0f})",
                                            parts[0], parts[1], tries, r.span(), kRetransmitSpanMax));
  return r;
}

void Enforcement::Recorder::nearing(ipsec::SecurityAssociation& sa) noexcept {
  // Use reached record_at: the saver may not get the SA's mutex to see it.
  raise_wanted(sa, sa.record_at.load(std::memory_order_relaxed));
  e_.wake_saver();
}

bool Enforcement::Recorder::reach(ipsec::SecurityAssociation& sa, const std::atomic<std::uint64_t>& ceiling,
                                  std::uint64_t seq) noexcept {
  // The saver reads `wanted` instead of taking the SA's mutex, which this
  // worker holds while it waits.
  raise_wanted(sa, seq);
  e_.wake_saver();
  // While the file cannot be written, waiting would only slow the drops.
  if (e_.state_failing_.load()) return false;
  std::unique_lock lock(e_.saved_mu_);
  return e_.saved_cv_.wait_for(lock, kCeilingWait, [&] { return e_.saver_stop_.load() || ceiling.load() >= seq; }) &&
         ceiling.load() >= seq;
}

void Enforcement::wake_saver() noexcept {
  if (saver_wake_.exchange(true)) return;
  std::scoped_lock lock(wake_mu_);
  wake_cv_.notify_one();
}

std::vector<Enforcement::Track> Enforcement::make_tracks(State& s) const {
  // Configured SAs only: negotiated ones have fresh keys per negotiation
  // and keep no record (State::add_runtime_sa).
  std::vector<Track> t(s.configured_count());
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < t.size(); ++i) {
    const auto& c = s.sad().at(i).config();
    t[i].ids = file_->key_ids(c);
    t[i].side = s.spd().sa_direction(c) == filters::Direction::outbound ? SeqSide::sent : SeqSide::accepted;
    t[i].when = now;
  }
  return t;
}

void Enforcement::restore_state(State& s, const std::vector<Track>& tracks, const std::vector<bool>& skip) {
  for (std::size_t i = 0; i < tracks.size(); ++i) {
    if (skip[i]) continue;
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    const std::uint64_t recorded = file_->ceiling(tracks[i].side, tracks[i].ids, sa.config());
    if (recorded == 0) continue;
    if (tracks[i].side == SeqSide::sent) {
      sa.last_sent_seq = std::max(sa.last_sent_seq, recorded);
    } else if (recorded > sa.replay.top()) {
      // Everything up to the record may have been accepted before a crash:
      // it counts as seen, so captured packets cannot be replayed into it.
      ipsec::ReplayWindow w(sa.replay.size(), sa.replay.esn(), 0);
      const std::uint64_t span = std::max<std::uint64_t>(sa.replay.size(), 1);  // without a window: the top alone
      const std::uint64_t from = recorded > span ? recorded - span + 1 : 1;
      for (std::uint64_t q = from; q <= recorded; ++q) w.commit(q);
      sa.replay = w;
    }
  }
}

void Enforcement::persist(State& s, std::vector<Track>& tracks, bool force, bool settle) {
  std::scoped_lock lock(save_mu_);
  const auto now = std::chrono::steady_clock::now();
  const std::size_t n = tracks.size();  // the configured SAs
  std::vector<std::uint64_t> next(n, 0);
  bool write = force || settle;
  for (std::size_t i = 0; i < n; ++i) {
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    Track& t = tracks[i];
    const std::uint64_t ceiling = ceiling_of(sa, t.side).load();
    const bool unset = ceiling == ipsec::SecurityAssociation::kUnlimited;
    std::uint64_t use = t.last_use;
    std::optional<std::uint64_t> packets;  // unknown while a worker holds the SA
    auto look = [&] {
      use = use_of(sa, t.side);
      packets = (t.side == SeqSide::sent ? sa.counters.sent : sa.counters.received).packets;
    };
    if (settle || unset) {
      std::scoped_lock sl(sa.mutex);  // no worker uses the SA (stopped, or not yet installed)
      look();
    } else if (sa.mutex.try_lock()) {
      look();
      sa.mutex.unlock();
    }
    // What a worker reached or waits for, when it holds the SA.
    use = std::max(use, std::min(sa.wanted.load(), seq_limit(sa.config())));
    // The reserve follows the packet rate (not the sequence numbers, which
    // a peer may make jump): about policy.time of traffic, decaying slowly
    // so that a pause does not leave the next burst without room.
    const ReservePolicy& policy = t.side == SeqSide::sent ? kSentReserve : kAcceptedReserve;
    if (t.reserve == 0) {  // first look at this SA: no rate yet
      t.reserve = policy.minimum;
      t.last_packets = packets.value_or(0);
      t.when = now;
    } else if (const double dt = std::chrono::duration<double>(now - t.when).count(); dt > 0.01) {
      // While a worker holds the SA (it may be waiting at the ceiling), the
      // sequence numbers it reached stand in for the packet count.
      const std::uint64_t count =
          packets ? *packets - std::min(*packets, t.last_packets) : use - std::min(use, t.last_use);
      const double rate = static_cast<double>(count) / dt;
      const auto want = static_cast<std::uint64_t>(rate * std::chrono::duration<double>(policy.time).count());
      t.reserve = std::clamp(std::max(want, t.reserve - t.reserve / 8), policy.minimum, kMaxReserve);
      if (packets) t.last_packets = *packets;
      t.when = now;
    }
    t.last_use = use;
    // Renewed when half the reserve is used; at the end of the sequence
    // space there is nothing more to record.
    if (settle) {
      next[i] = use;
    } else if (unset || force || (ceiling < seq_limit(sa.config()) && use + t.reserve / 2 >= ceiling)) {
      next[i] = std::min(seq_limit(sa.config()), use + t.reserve);
      write = true;
    } else {
      next[i] = ceiling;
    }
  }
  if (!write) return;
  // A copy: if the write fails, the records in memory stay those on disk.
  SaStateFile updated = *file_;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& name = s.sad().at(i).name();
    if (!settle) {
      updated.raise(tracks[i].side, tracks[i].ids, next[i], name);
      continue;
    }
    // Several SAs may share a key (CBC, AH): settle each id to the largest.
    for (const auto& id : tracks[i].ids) {
      std::uint64_t v = next[i];
      for (std::size_t j = 0; j < n; ++j) {
        if (tracks[j].side == tracks[i].side &&
            std::find(tracks[j].ids.begin(), tracks[j].ids.end(), id) != tracks[j].ids.end()) {
          v = std::max(v, next[j]);
        }
      }
      updated.settle(tracks[i].side, {id}, v, name);
    }
  }
  try {
    updated.save(fs::path(options_.state_dir) / "sa-state.json");
  } catch (const StateError&) {
    ++state_write_failures_;
    state_failing_ = true;
    throw;
  }
  ++state_writes_;
  state_failing_ = false;
  *file_ = std::move(updated);
  for (std::size_t i = 0; i < n; ++i) {
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    ceiling_of(sa, tracks[i].side).store(next[i], std::memory_order_release);
    sa.record_at.store(next[i] - std::min(next[i], tracks[i].reserve / 2), std::memory_order_relaxed);
  }
  std::scoped_lock wl(saved_mu_);
  saved_cv_.notify_all();
}

void Enforcement::saver_main() {
  while (!saver_stop_.load()) {
    {
      std::unique_lock lock(wake_mu_);
      wake_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return saver_wake_.load() || saver_stop_.load(); });
    }
    saver_wake_ = false;
    std::shared_lock lock(state_mu_);
    try {
      persist(*state_, tracks_, false, false);
    } catch (const StateError& e) {
      // Workers stop at the ceilings already recorded: nothing unrecorded is used.
      const auto now = std::chrono::steady_clock::now();
      if (log_ && now - last_state_error_ > std::chrono::seconds(5)) {
        last_state_error_ = now;
        log_(EventKind::count_, fmt::format("{}; traffic on SAs that reach their recorded sequence numbers is dropped "
                                            "until it can be written",
                                            e.what()));
      }
    }
  }
}

Enforcement::Enforcement(EnforceOptions options, EventSink log) : options_(std::move(options)), log_(std::move(log)) {
  state_ = build_state();
  compute_rule_options();
}

Enforcement::~Enforcement() {
  try {
    stop();
  } catch (...) {
    // stop() already reported what it could not undo.
  }
  if (guard_wake_fd_ >= 0) close(guard_wake_fd_);
}

std::unique_ptr<State> Enforcement::build_state() const {
  filters::Config cfg = filters::load_config(options_.config);
  // Their nonces would repeat: refused before anything is sent.
  if (const auto shared = filters::shared_nonce_keys(cfg); !shared.empty()) {
    throw filters::ConfigError(options_.config, 0, "sas", shared.front());
  }
  filters::LocalAddresses local = filters::LocalAddresses::for_config(cfg);
  return std::make_unique<State>(std::move(cfg), std::move(local), options_.crypto);
}

std::vector<std::string> Enforcement::warnings() const {
  std::shared_lock lock(state_mu_);
  return state_->config().warnings;
}

void Enforcement::compute_rule_options() {
  rule_options_.queue = options_.queue;
  rule_options_.queues = options_.queues;
  rule_options_.fail_open = options_.fail_open;
  rule_options_.mss_v4 = 0;
  rule_options_.mss_v6 = 0;
  if (!options_.mss_clamp) return;
  const std::uint32_t mtu = options_.mtu != 0 ? options_.mtu : smallest_mtu();
  const std::size_t o4 = state_->max_overhead(false);
  const std::size_t o6 = state_->max_overhead(true);
  if (o4 != 0 && mtu > o4 + 40 + 536) rule_options_.mss_v4 = static_cast<std::uint16_t>(mtu - o4 - 40);
  if (o6 != 0 && mtu > o6 + 60 + 536) rule_options_.mss_v6 = static_cast<std::uint16_t>(mtu - o6 - 60);
}

std::string Enforcement::describe_policy() const {
  std::shared_lock lock(state_mu_);
  return state_->spd().describe();
}

std::string Enforcement::describe_exemptions() const {
  std::shared_lock lock(state_mu_);
  return state_->spd().describe_exemptions();
}

std::size_t Enforcement::sa_count() const {
  std::shared_lock lock(state_mu_);
  return state_->sad().size();
}

void Enforcement::check_socket_free() const {
  const fs::path path(options_.socket);
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error(fmt::format("statistics socket path '{}' is too long", options_.socket));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error(fmt::format("{} exists and is not a socket: give another --socket", options_.socket));
  }
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  const bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (probe >= 0) close(probe);
  if (live) {
    // This namespace's lock is ours, so the one answering runs elsewhere.
    throw std::runtime_error(
        fmt::format("an enforcement in another network namespace answers on {}: give this one "
                    "its own --socket",
                    options_.socket));
  }
}

void Enforcement::bind_stats_socket() {
  const fs::path path(options_.socket);
  std::error_code ec;
  if (!path.parent_path().empty() && !fs::exists(path.parent_path(), ec)) {
    const mode_t old = umask(0077);
    fs::create_directories(path.parent_path(), ec);
    umask(old);
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("statistics socket: {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  // Only a stale socket is removed: check_socket_free() refused a live one.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  const mode_t old = umask(0077);
  const int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || listen(fd, 8) != 0) {
    const int e = errno;
    close(fd);
    throw std::runtime_error(fmt::format("cannot listen on {}: {}", options_.socket, std::strerror(e)));
  }
  chmod(path.c_str(), 0600);
  stats_ino_ = ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  if (stats_fd_ >= 0) close(stats_fd_);
  stats_fd_ = fd;
}

void Enforcement::take_rules_baseline() {
  for (int f = 0; f < 2; ++f) rules_baseline_[f] = our_rules(read_rules(f == 0 ? 4 : 6));
}

void Enforcement::start() {
  started_ = std::chrono::system_clock::now();
  // Nothing is touched before both locks are ours.
  secure_directory(options_.run_dir);
  LockHolder holder;
  netns_lock_ = InstanceLock::try_take(netns_lock_path(options_.run_dir), holder);
  if (!netns_lock_) {
    throw LockBusy(
        fmt::format("another enforcement is running in this network namespace ({}); stop it first "
                    "(SIGTERM), or look at it with ipsentry stats --socket {}",
                    holder.describe(), holder.socket.empty() ? options_.socket : holder.socket));
  }
  std::error_code ec;
  LockHolder me{static_cast<long>(getpid()), fs::absolute(options_.socket, ec).string(),
                fs::absolute(options_.config, ec).string(), fs::absolute(options_.state_dir, ec).string(), netns_id()};
  netns_lock_->record(me);
  secure_directory(options_.state_dir);
  state_lock_ = InstanceLock::try_take(fs::path(options_.state_dir) / "lock", holder);
  if (!state_lock_) {
    netns_lock_.reset();
    throw LockBusy(
        fmt::format("the state directory {} is in use by another enforcement ({}): give each "
                    "enforcement its own --state-dir",
                    options_.state_dir, holder.describe()));
  }
  state_lock_->record(me);
  check_socket_free();
  file_ = SaStateFile::load(fs::path(options_.state_dir) / "sa-state.json");
  tracks_ = make_tracks(*state_);
  restore_state(*state_, tracks_, std::vector<bool>(tracks_.size(), false));
  persist(*state_, tracks_, true, false);  // throws StateError: nothing may be sent unrecorded
  saver_thread_ = std::thread([this] { saver_main(); });
  // IKE binds its ports before anything is queued: a port another IKE
  // daemon holds stops the start with nothing of ours in the way.
  if (state_->has_negotiate()) start_ike();
  for (std::uint16_t i = 0; i < options_.queues; ++i) {
    queues_.push_back(std::make_unique<Queue>(static_cast<std::uint16_t>(options_.queue + i), options_.fail_open));
    workers_.push_back(std::make_unique<Worker>());
    workers_.back()->set_events(log_);
    workers_.back()->set_seq_recorder(&recorder_);
    workers_.back()->set_ike(ike_channel_.get());
  }
  for (std::size_t i = 0; i < queues_.size(); ++i) threads_.emplace_back([this, i] { worker_main(i); });
  {
    std::scoped_lock rl(rules_mu_);
    std::shared_lock lock(state_mu_);
    install_rules(state_->spd(), rule_options_);
    rules_installed_ = true;
    take_rules_baseline();
    key_additions_ += state_->sad().size();
  }
  bind_stats_socket();
  stats_thread_ = std::thread([this] { stats_main(); });
  guard_wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  guard_thread_ = std::thread([this] { guard_main(); });
}

void Enforcement::start_ike() {
  ike_channel_ = std::make_unique<IkeChannel>(options_.acquire_limits);
  IkeHost host;
  host.with_state = [this](bool exclusive, const std::function<void(State&)>& fn) {
    if (exclusive) {
      std::unique_lock lock(state_mu_);
      fn(*state_);
    } else {
      std::shared_lock lock(state_mu_);
      fn(*state_);
    }
  };
  host.counted = [this](std::size_t added, std::size_t removed) {
    key_additions_ += added;
    key_deletions_ += removed;
  };
  host.log = log_;
  ike::v2::Options o;
  o.save_keys = !options_.save_keys.empty();
  o.fragmentation = options_.ike_fragment_size != 0;
  o.fragment_size = options_.ike_fragment_size;
  o.retransmit_timeout = static_cast<ike::v2::TimeNs>(std::llround(options_.ike_retransmit.timeout * 1e9));
  o.retransmit_base = options_.ike_retransmit.base;
  o.retransmit_tries = options_.ike_retransmit.tries;
  // The daemon holds the configuration by reference: the running State's,
  // replaced only on the driver thread (reload()).
  std::unique_ptr<IkeProtocol> protocol = make_ike_daemon(state_->config(), state_->spd().local(), o);
  IkeDriverOptions d;
  d.port = options_.ike_port;
  d.natt_port = options_.ike_natt_port;
  d.save_keys = options_.save_keys;
  ike_ = std::make_unique<IkeDriver>(std::move(host), *ike_channel_, std::move(protocol), d);
  ike_->start();
}

void Enforcement::worker_main(std::size_t i) {
  Worker& w = *workers_[i];
  IcmpOut icmp;
  w.set_icmp_sender([&icmp](const dissect::Packet& p, std::uint32_t mtu, std::uint32_t ifindex) {
    return icmp.send(p, mtu, ifindex);
  });
  MtuCache mtus;
  try {
    queues_[i]->run(stop_, [&](const QueuedPacket& qp) {
      const auto hook = static_cast<Hook>(qp.hook);
      const std::int64_t now = now_ns();
      const bool out = hook == Hook::output || hook == Hook::forward || hook == Hook::postrouting;
      const std::uint32_t mtu = out ? mtus.get(qp.outdev, now) : 0;
      const std::uint32_t ifindex = hook == Hook::forward ? qp.indev : (qp.outdev != 0 ? qp.outdev : qp.indev);
      std::shared_lock state_lock(state_mu_);
      std::scoped_lock worker_lock(w.lock());
      const Decision d = w.process(*state_, hook, qp.payload, mtu, ifindex, now);
      Verdict v;
      v.accept = d.accept;
      v.replacement = d.replacement;
      // What leaves through OUTPUT or FORWARD carries the proof that it went
      // through here: the backstop in the filter table drops the rest.
      const std::uint32_t bits = d.set_mark | (out && d.accept ? kMarkPassed : 0);
      if (bits != 0) {
        // The verdict replaces the whole mark: keep the other bits.
        v.set_mark = true;
        v.mark = qp.mark | bits;
      }
      return v;
    });
  } catch (const std::exception& e) {
    ++worker_failures_;
    if (log_) log_(EventKind::count_, fmt::format("queue {} worker stopped: {}", queues_[i]->number(), e.what()));
  }
}

void Enforcement::stats_main() {
  KeepaliveSender keepalives;  // NAT keepalives (RFC 3948) ride on this thread's 100 ms tick
  auto next_check = std::chrono::steady_clock::now();
  bool replaced_reported = false;
  while (!stop_.load()) {
    {
      std::shared_lock lock(state_mu_);
      keepalives.tick(*state_, steady_ns());
    }
    // Someone may remove the socket file (a careless --cleanup, rm): stats
    // and the TUI would then say nothing runs while this enforcement does.
    if (const auto now = std::chrono::steady_clock::now(); now >= next_check) {
      next_check = now + std::chrono::seconds(1);
      struct stat st {};
      if (::lstat(options_.socket.c_str(), &st) != 0 && errno == ENOENT) {
        try {
          bind_stats_socket();
          ++socket_restored_;
          replaced_reported = false;
          if (log_) {
            log_(EventKind::socket_restored,
                 fmt::format("the statistics socket {} was removed by someone else; bound it again", options_.socket));
          }
        } catch (const std::exception& e) {
          if (log_) log_(EventKind::count_, e.what());
        }
      } else if (st.st_ino != stats_ino_ && !replaced_reported) {
        replaced_reported = true;
        if (log_) {
          log_(EventKind::count_, fmt::format("the statistics socket {} was replaced by someone else's file; this "
                                              "enforcement no longer answers there",
                                              options_.socket));
        }
      }
    }
    pollfd p{stats_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const int c = accept4(stats_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    // The socket file is root-only already; refuse anybody else regardless.
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != geteuid())) {
      close(c);
      continue;
    }
    std::string out;
    try {
      out = snapshot_json() + "\n";
    } catch (const std::exception& e) {
      out = json{{"error", e.what()}}.dump() + "\n";
    }
    std::size_t off = 0;
    while (off < out.size()) {
      const ssize_t n = send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    close(c);
  }
}

namespace {

// Netlink notifications of every nftables change in this namespace
// (iptables here is iptables-nft), so that a change to our rules is seen
// at once rather than at the next periodic check. -1 when unavailable.
int open_nft_events() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (fd < 0) return -1;
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  int group = NFNLGRP_NFTABLES;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads what is queued; true when something (or an overflow) was there.
bool drain(int fd) {
  bool any = false;
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0 || (n < 0 && errno == ENOBUFS)) {
      any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return any;
  }
}

}  // namespace

void Enforcement::guard_main() {
  const int events = open_nft_events();
  if (events < 0 && log_) {
    log_(EventKind::warning, fmt::format("no nftables change notifications ({}): the rules are checked once a second",
                                         std::strerror(errno)));
  }
  auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!guard_stop_.load()) {
    const auto now = std::chrono::steady_clock::now();
    const int wait_ms =
        now >= next ? 0 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count());
    pollfd p[2] = {{guard_wake_fd_, POLLIN, 0}, {events, POLLIN, 0}};
    const int rc = poll(p, events >= 0 ? 2 : 1, wait_ms);
    if (guard_stop_.load()) break;
    bool changed = false;
    if (rc > 0 && events >= 0 && p[1].revents != 0) {
      changed = drain(events);
      // One iptables command is one transaction, but a script runs several:
      // let a burst settle so it is repaired once.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      drain(events);
    }
    if (changed || std::chrono::steady_clock::now() >= next) {
      const auto failures = rules_restore_failures_.load();
      check_rules(changed ? "an nftables change notification" : "the periodic check");
      // A failed repair (someone's command still running) is tried again soon.
      next = std::chrono::steady_clock::now() +
             (rules_restore_failures_.load() != failures ? std::chrono::milliseconds(50) : std::chrono::seconds(1));
    }
  }
  if (events >= 0) close(events);
}

bool Enforcement::check_rules(const char* why) {
  std::scoped_lock rl(rules_mu_);
  if (!rules_installed_) return false;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> drift;
  try {
    std::shared_lock lock(state_mu_);
    for (int f = 0; f < 2; ++f) {
      const int family = f == 0 ? 4 : 6;
      const std::string saved = read_rules(family);
      auto d = rules_drift(rules_baseline_[f], our_rules(saved));
      if (d.empty()) continue;
      // One transaction: the jumps are never absent while it runs.
      install_family(state_->spd(), rule_options_, family, saved);
      for (auto& x : d) drift.push_back(fmt::format("{} {}", family == 4 ? "iptables" : "ip6tables", x));
    }
  } catch (const std::exception& e) {
    ++rules_restore_failures_;
    if (log_) {
      log_(EventKind::count_, fmt::format("cannot check or reinstall the ipsentry rules: {}; traffic they should "
                                          "queue may be leaving unprotected",
                                          e.what()));
    }
    return false;
  }
  if (drift.empty()) return false;
  ++rules_restored_;
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (log_) {
    std::string what;
    for (std::size_t i = 0; i < drift.size() && i < 4; ++i) what += (i ? "; " : "") + drift[i];
    if (drift.size() > 4) what += fmt::format("; and {} more", drift.size() - 4);
    log_(EventKind::rules_restored,
         fmt::format("someone changed the ipsentry rules ({}); found by {}, reinstalled in {:.0f} ms", what, why, ms));
  }
  return true;
}

void Enforcement::reload() {
  std::unique_ptr<State> fresh = build_state();  // throws on a bad file: the running state stays
  std::vector<std::string> kept;
  std::vector<std::string> renamed;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  // The running State is replaced here, under the locks; with IKE, on the
  // driver thread, right after the daemon took the new configuration, so
  // that no action of the daemon refers to a policy of the other one.
  std::vector<std::optional<std::size_t>> policy_map;
  auto swap_in = [&] {
      std::scoped_lock rl(rules_mu_);
      std::unique_lock lock(state_mu_);
      std::vector<Track> tracks = make_tracks(*fresh);
      kept = fresh->inherit(*state_);
      std::vector<bool> done(fresh->configured_count(), false);
      std::vector<bool> taken(state_->configured_count(), false);
      for (std::size_t i = 0; i < fresh->configured_count(); ++i) {
        const auto& n = fresh->sad().at(i).name();
        if (std::find(kept.begin(), kept.end(), n) == kept.end()) continue;
        done[i] = true;
        if (auto* prev = state_->sad().find(n)) {
          taken[prev->index()] = true;
          const Track& was = tracks_[prev->index()];
          tracks[i].last_use = was.last_use;
          tracks[i].last_packets = was.last_packets;
          tracks[i].when = was.when;
          tracks[i].reserve = was.reserve;
        }
      }
      // Same keys under another name (or SPI): the same SA as far as nonces
      // and replays go, so it continues exactly where it was.
      for (std::size_t i = 0; i < fresh->configured_count(); ++i) {
        if (done[i]) continue;
        for (std::size_t j = 0; j < state_->configured_count(); ++j) {
          if (taken[j] || tracks_[j].side != tracks[i].side || !share_an_id(tracks[i].ids, tracks_[j].ids)) continue;
          carry(fresh->sad().at(i), fresh->life(i), state_->sad().at(j), state_->life(j));
          tracks[i].last_use = tracks_[j].last_use;
          tracks[i].last_packets = tracks_[j].last_packets;
          tracks[i].when = tracks_[j].when;
          tracks[i].reserve = tracks_[j].reserve;
          renamed.push_back(fmt::format("{} (was {})", fresh->sad().at(i).name(), state_->sad().at(j).name()));
          done[i] = taken[j] = true;
          break;
        }
      }
      restore_state(*fresh, tracks, done);
      // Negotiated children whose policy is still there carry on, with
      // their sequence numbers and replay windows.
      policy_map = fresh->adopt_children(*state_);
      for (std::size_t i = 0; i < fresh->configured_count(); ++i) {
        if (!done[i]) added.push_back(fresh->sad().at(i).name());
      }
      for (std::size_t j = 0; j < state_->configured_count(); ++j) {
        if (!taken[j]) removed.push_back(state_->sad().at(j).name());
      }
      // Only raises records: whatever fails after this, nothing recorded is lost.
      persist(*fresh, tracks, true, false);
      std::unique_ptr<State> previous = std::move(state_);
      std::vector<Track> previous_tracks = std::move(tracks_);
      state_ = std::move(fresh);
      tracks_ = std::move(tracks);
      const RuleOptions before = rule_options_;
      compute_rule_options();
      try {
        if (rules_installed_) {
          replace_rules(state_->spd(), rule_options_);
          take_rules_baseline();
        }
      } catch (...) {
        // Keep kernel rules and user-space policy in step.
        state_ = std::move(previous);
        tracks_ = std::move(previous_tracks);
        rule_options_ = before;
        throw;
      }
  };
  if (ike_) {
    if (!fresh->has_negotiate()) {
      // The daemon needs negotiate policies to be built; without them it
      // has nothing to do, but stopping it here would tear down the SAs a
      // mistaken edit removed: refuse instead, as for any bad file.
      throw filters::ConfigError(options_.config, 0, "policies",
                                 "the running enforcement negotiates with IKE and the new configuration has no "
                                 "negotiate policy: restart enforcement to stop IKE");
    }
    const filters::Config& config = fresh->config();
    const filters::LocalAddresses& local = fresh->spd().local();
    ike_->call([&](IkeProtocol& protocol, ike::v2::TimeNs now, ike::v2::Actions& out) {
      protocol.reconfigure(config, local, now, out);  // throws: nothing changed
      try {
        swap_in();
      } catch (...) {
        ike::v2::Actions undo;
        protocol.reconfigure(state_->config(), state_->spd().local(), now, undo);
        out.insert(out.end(), std::make_move_iterator(undo.begin()), std::make_move_iterator(undo.end()));
        throw;
      }
      ike_channel_->remap_policies(policy_map);
    });
  } else {
    if (fresh->has_negotiate()) {
      throw filters::ConfigError(options_.config, 0, "policies",
                                 "negotiate policies need IKE, which starts with enforcement: restart it");
    }
    swap_in();
  }
  key_additions_ += added.size();
  key_deletions_ += removed.size();
  ++reloads_;
  if (log_) {
    for (const auto& n : kept)
      log_(EventKind::sa_kept, fmt::format("SA {} unchanged: sequence numbers and replay window kept", n));
    for (const auto& n : renamed) {
      log_(EventKind::sa_kept, fmt::format("SA {} has the same keys: sequence numbers and replay window kept", n));
    }
    for (const auto& n : added) log_(EventKind::sa_installed, fmt::format("SA {} installed", n));
    for (const auto& n : removed) log_(EventKind::sa_removed, fmt::format("SA {} removed", n));
    for (const auto& w : state_->config().warnings) log_(EventKind::warning, w);
  }
}

void Enforcement::stop() {
  // First: the daemon's Deletes leave while the sockets are open, and the
  // peers stop sending on SAs about to go.
  if (ike_) {
    try {
      ike_->stop();
    } catch (const std::exception& e) {
      if (log_) log_(EventKind::ike, fmt::format("stopping IKE: {}", e.what()));
    }
  }
  guard_stop_ = true;
  if (guard_wake_fd_ >= 0) {
    const std::uint64_t one = 1;
    (void)!write(guard_wake_fd_, &one, sizeof one);
  }
  if (guard_thread_.joinable()) guard_thread_.join();
  {
    std::scoped_lock rl(rules_mu_);
    if (rules_installed_) {
      remove_rules();
      rules_installed_ = false;
    }
  }
  stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  queues_.clear();
  saver_stop_ = true;
  wake_saver();
  if (saver_thread_.joinable()) saver_thread_.join();
  if (file_ && state_) {
    // Workers are gone: the exact numbers used, so a clean restart loses none.
    std::shared_lock lock(state_mu_);
    try {
      persist(*state_, tracks_, true, true);
    } catch (const StateError& e) {
      if (log_) log_(EventKind::count_, fmt::format("{} (the reserved sequence numbers stay recorded)", e.what()));
    }
    file_.reset();
  }
  if (stats_thread_.joinable()) stats_thread_.join();
  if (stats_fd_ >= 0) {
    close(stats_fd_);
    stats_fd_ = -1;
    // Only our own socket: someone else's may have taken the path since.
    struct stat st {};
    if (::lstat(options_.socket.c_str(), &st) == 0 && st.st_ino == stats_ino_) unlink(options_.socket.c_str());
  }
  state_lock_.reset();
  netns_lock_.reset();
}

std::string Enforcement::snapshot_json() {
  const std::vector<ExemptionCount> kernel_exempted = exemption_counters();  // runs iptables-save: not under the lock
  std::shared_lock lock(state_mu_);
  Counters total;
  ipsec::GlobalCounters g;
  for (auto& w : workers_) {
    std::scoped_lock wl(w->lock());
    total += w->counters();
    g += w->ipsec_counters();
  }
  json j;
  j["version"] = 1;
  j["config"] = options_.config;
  j["started_epoch"] = std::chrono::duration_cast<std::chrono::seconds>(started_.time_since_epoch()).count();
  j["uptime_seconds"] =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_).count();
  j["fail_open"] = options_.fail_open;
  j["reloads"] = reloads_.load();
  j["worker_failures"] = worker_failures_.load();
  // What kept this enforcement whole against others on the host.
  j["guard"] = {{"rules_restored", rules_restored_.load()},
                {"rules_restore_failures", rules_restore_failures_.load()},
                {"socket_restored", socket_restored_.load()},
                {"state_writes", state_writes_.load()},
                {"state_write_failures", state_write_failures_.load()}};
  const std::string km = filters::key_memory_notice();
  j["key_memory"] = km.empty() ? "locked" : km;
  json qs = json::array();
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    std::uint64_t handled = 0;
    {
      std::scoped_lock wl(workers_[i]->lock());
      for (auto n : workers_[i]->counters().by_outcome) handled += n;
    }
    qs.push_back({{"queue", queues_[i]->number()},
                  {"packets", handled},
                  {"verdict_errors", queues_[i]->verdict_errors()},
                  {"overruns", queues_[i]->overruns()}});
  }
  j["queues"] = qs;
  j["mss_clamp"] = {{"ipv4", rule_options_.mss_v4}, {"ipv6", rule_options_.mss_v6}};
  json outcomes;
  for (std::size_t i = 0; i < kOutcomeCount; ++i) {
    outcomes[outcome_key(static_cast<Outcome>(i))] = total.by_outcome[i];
  }
  j["packets"] = outcomes;
  j["exemptions"] = exemptions_json(state_->spd(), total, kernel_exempted);
  j["icmp_sent"] = total.icmp_sent;
  std::size_t active = 0;
  std::set<std::string> tunnels;
  json sas = json::array();
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < state_->sad().size(); ++i) {
    ipsec::SecurityAssociation& sa = state_->sad().at(i);
    SaLife& life = state_->life(i);
    std::scoped_lock sl(sa.mutex);
    const auto& c = sa.config();
    const filters::Direction dir = state_->spd().sa_direction(c);
    const auto& traffic = dir == filters::Direction::outbound ? sa.counters.sent : sa.counters.received;
    const auto age =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now - life.installed).count());
    std::string st = "active";
    const bool exhausted = life.exhausted_reported.load();
    if (life.hard_expired.load()) {
      st = "expired";
    } else if (exhausted) {
      st = "exhausted";
    } else if (life.soft_reported.load()) {
      st = "soft-expired";
    }
    if (st == "active" || st == "soft-expired") ++active;
    // A tunnel is one peer gateway, whatever the number of SAs to it.
    const auto& peer = dir == filters::Direction::outbound ? c.dst : c.src;
    const filters::SaMode mode = state_->spd().sa_mode(c);
    if (mode == filters::SaMode::tunnel && peer && (st == "active" || st == "soft-expired")) {
      tunnels.insert(peer->str());
    }
    json verdicts;
    for (std::size_t v = 0; v < ipsec::kVerdictCount; ++v) {
      verdicts[std::string(ipsec::verdict_name(static_cast<ipsec::Verdict>(v)))] = sa.counters.verdicts[v];
    }
    auto left = [&](std::uint64_t limit, std::uint64_t used) -> json {
      if (limit == 0) return nullptr;
      return limit > used ? limit - used : 0;
    };
    sas.push_back({{"name", c.name},
                   {"spi", c.spi ? json(*c.spi) : json(nullptr)},
                   {"protocol", filters::to_string(c.protocol)},
                   {"direction", filters::to_string(dir)},
                   {"src", c.src ? c.src->str() : "any"},
                   {"dst", c.dst ? c.dst->str() : "any"},
                   {"mode", filters::to_string(mode)},
                   {"encryption", std::string(filters::cipher_info(c.cipher).name)},
                   {"integrity", std::string(filters::integrity_info(c.integrity).name)},
                   {"state", st},
                   {"sent", byte_counters(sa.counters.sent)},
                   {"received", byte_counters(sa.counters.received)},
                   {"verdicts", verdicts},
                   {"last_sent_seq", sa.last_sent_seq},
                   {"replay",
                    {{"window", sa.replay.size()},
                     {"highest_seq", sa.replay.top()},
                     {"received_in_window", sa.replay.received_in_window()}}},
                   {"lifetime_left",
                    {{"seconds", left(c.lifetime.seconds, age)},
                     {"bytes", left(c.lifetime.bytes, traffic.bytes)},
                     {"packets", left(c.lifetime.packets, traffic.packets)}}},
                   {"nat", nat_json(c, dir, life, steady_ns())},
                   {"negotiated", life.child == nullptr ? json(nullptr)
                                                        : json{{"child", life.child->id},
                                                               {"ike_sa", life.child->ike_sa},
                                                               {"policy", life.child->policy_name},
                                                               {"peer", life.child->peer.str()}}}});
  }
  j["sas"] = sas;
  // IKE: the daemon's IKE SAs with their children, and the Main Mode table.
  j["ike"] = ike_ ? ike_->snapshot_json() : json(nullptr);
  j["quick_mode"] = {{"active_security_associations", active},
                     {"key_additions", key_additions_.load()},
                     {"key_deletions", key_deletions_.load()},
                     {"active_tunnels", tunnels.size()},
                     {"bad_spi_packets", g.bad_spi_packets},
                     {"packets_not_decrypted", g.packets_not_decrypted},
                     {"packets_not_authenticated", g.packets_not_authenticated},
                     {"packets_with_replay_detection", g.packets_with_replay_detection},
                     {"sent", byte_counters(g.sent)},
                     {"received", byte_counters(g.received)}};
  return j.dump();
}

std::string fetch_stats(const std::string& socket_path) {
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    close(s);
    throw std::runtime_error(fmt::format("socket path '{}' is too long", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    close(s);
    if (e == ENOENT || e == ECONNREFUSED) {
      throw std::runtime_error(fmt::format("no enforcement is running (nothing answers on {})", socket_path));
    }
    if (e == EACCES || e == EPERM) {
      throw std::runtime_error(
          fmt::format("permission denied on {}: the statistics socket is root-only (run as root)", socket_path));
    }
    throw std::runtime_error(fmt::format("cannot connect to {}: {}", socket_path, std::strerror(e)));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(s);
  if (out.empty()) throw std::runtime_error(fmt::format("{} closed without an answer (not permitted?)", socket_path));
  return out;
}

}  // namespace ipsentry::enforce
