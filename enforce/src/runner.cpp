#include "ipsentry/enforce/runner.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ipsentry/dissect/checksum.hpp"
#include "ipsentry/enforce/natt.hpp"

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

// Sequence numbers reserved ahead in the state file: a write every this
// many packets per SA, and the most a crash can skip.
constexpr std::uint64_t kSeqReserve = 1'000'000;

}  // namespace

void Enforcement::restore_state(State& s, const std::vector<std::string>& skip) {
  const fs::path file = fs::path(options_.state_dir) / "sa-state.json";
  std::ifstream in(file);
  if (!in) return;
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    if (log_) log_(EventKind::count_, fmt::format("ignoring unreadable state file {}: {}", file.string(), e.what()));
    return;
  }
  for (std::size_t i = 0; i < s.sad().size(); ++i) {
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    if (std::find(skip.begin(), skip.end(), sa.name()) != skip.end()) continue;
    if (!j.contains(sa.name()) || !sa.config().spi) continue;
    const json& e = j[sa.name()];
    if (e.value("spi", std::uint64_t{0}) != *sa.config().spi) continue;
    const auto out = e.value("out_seq_ceiling", std::uint64_t{0});
    const auto top = e.value("in_replay_top", std::uint64_t{0});
    if (out > sa.last_sent_seq) sa.last_sent_seq = out;
    if (top > sa.replay.top()) {
      // Everything up to the recorded top counts as seen: packets captured
      // before the restart cannot be replayed into it.
      ipsec::ReplayWindow w(sa.replay.size(), sa.replay.esn(), 0);
      const std::uint64_t from = top > sa.replay.size() ? top - sa.replay.size() + 1 : 1;
      for (std::uint64_t q = from; q <= top; ++q) w.commit(q);
      sa.replay = w;
    }
    s.life(i).saved_top = top;
  }
}

void Enforcement::save_state(State& s, bool force) {
  bool dirty = force;
  for (std::size_t i = 0; i < s.sad().size(); ++i) {
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    SaLife& life = s.life(i);
    std::scoped_lock lock(sa.mutex);
    if (s.spd().sa_direction(sa.config()) == filters::Direction::outbound) {
      const std::uint64_t ceiling = life.seq_ceiling.load();
      if (ceiling == ~std::uint64_t{0} || sa.last_sent_seq + kSeqReserve / 2 > ceiling) dirty = true;
    } else if (sa.replay.top() != life.saved_top) {
      dirty = true;
    }
  }
  if (!dirty) return;
  json j = json::object();
  std::vector<std::uint64_t> ceilings(s.sad().size(), 0);
  for (std::size_t i = 0; i < s.sad().size(); ++i) {
    ipsec::SecurityAssociation& sa = s.sad().at(i);
    if (!sa.config().spi) continue;
    std::scoped_lock lock(sa.mutex);
    json e{{"spi", *sa.config().spi}};
    if (s.spd().sa_direction(sa.config()) == filters::Direction::outbound) {
      const std::uint64_t limit = sa.config().esn ? ~std::uint64_t{0} - 1 : 0xffffffffull;
      ceilings[i] = std::min(limit, sa.last_sent_seq + kSeqReserve);
      e["out_seq_ceiling"] = ceilings[i];
    } else {
      e["in_replay_top"] = sa.replay.top();
      s.life(i).saved_top = sa.replay.top();
    }
    j[sa.name()] = e;
  }
  const fs::path dir(options_.state_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path file = dir / "sa-state.json";
  const fs::path tmp = dir / "sa-state.json.tmp";
  const std::string text = j.dump(1) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(tmp.c_str(), file.c_str()) == 0;
  if (!ok) {
    // Without a record no new sequence numbers may be used: the ceilings stay.
    if (log_)
      log_(EventKind::count_, fmt::format("cannot write the state file {}: {}", file.string(), std::strerror(errno)));
    return;
  }
  for (std::size_t i = 0; i < s.sad().size(); ++i) {
    if (s.spd().sa_direction(s.sad().at(i).config()) == filters::Direction::outbound) {
      s.life(i).seq_ceiling.store(ceilings[i], std::memory_order_release);
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
}

std::unique_ptr<State> Enforcement::build_state() const {
  filters::Config cfg = filters::load_config(options_.config);
  filters::LocalAddresses local = filters::LocalAddresses::for_config(cfg);
  return std::make_unique<State>(std::move(cfg), std::move(local));
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

std::size_t Enforcement::sa_count() const {
  std::shared_lock lock(state_mu_);
  return state_->sad().size();
}

void Enforcement::start() {
  started_ = std::chrono::system_clock::now();
  restore_state(*state_, {});
  for (std::size_t i = 0; i < state_->sad().size(); ++i) state_->life(i).seq_ceiling = 0;
  save_state(*state_, true);
  for (std::size_t i = 0; i < state_->sad().size(); ++i) {
    if (state_->spd().sa_direction(state_->sad().at(i).config()) == filters::Direction::outbound &&
        state_->life(i).seq_ceiling.load() == 0 && state_->sad().at(i).config().spi) {
      throw std::runtime_error(
          fmt::format("cannot record sequence numbers in {} (give a writable --state-dir)", options_.state_dir));
    }
  }
  for (std::uint16_t i = 0; i < options_.queues; ++i) {
    queues_.push_back(std::make_unique<Queue>(static_cast<std::uint16_t>(options_.queue + i), options_.fail_open));
    workers_.push_back(std::make_unique<Worker>());
    workers_.back()->set_events(log_);
  }
  for (std::size_t i = 0; i < queues_.size(); ++i) threads_.emplace_back([this, i] { worker_main(i); });
  {
    std::shared_lock lock(state_mu_);
    install_rules(state_->spd(), rule_options_);
    rules_installed_ = true;
    key_additions_ += state_->sad().size();
  }
  // The statistics socket: root-only directory and socket.
  const fs::path path(options_.socket);
  std::error_code ec;
  if (!path.parent_path().empty() && !fs::exists(path.parent_path(), ec)) {
    fs::create_directories(path.parent_path(), ec);
    chmod(path.parent_path().c_str(), 0700);
  }
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error(fmt::format("statistics socket path '{}' is too long", options_.socket));
  }
  stats_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (stats_fd_ < 0) throw std::runtime_error(fmt::format("statistics socket: {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  // A socket left by a killed enforcement is stale; a live one answers.
  if (fs::exists(path, ec)) {
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(probe);
    if (live) {
      throw std::runtime_error(
          fmt::format("another enforcement is running (it answers on {}); stop it first", options_.socket));
    }
    unlink(path.c_str());
  }
  const mode_t old = umask(0077);
  const int rc = bind(stats_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || listen(stats_fd_, 8) != 0) {
    throw std::runtime_error(fmt::format("cannot listen on {}: {}", options_.socket, std::strerror(errno)));
  }
  chmod(path.c_str(), 0600);
  stats_thread_ = std::thread([this] { stats_main(); });
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
      if (d.set_mark != 0) {
        // The verdict replaces the whole mark: keep the other bits.
        v.set_mark = true;
        v.mark = qp.mark | d.set_mark;
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
  while (!stop_.load()) {
    {
      std::shared_lock lock(state_mu_);
      save_state(*state_, false);
      keepalives.tick(*state_, steady_ns());
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

void Enforcement::reload() {
  std::unique_ptr<State> fresh = build_state();  // throws on a bad file: the running state stays
  std::vector<std::string> kept;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  {
    std::unique_lock lock(state_mu_);
    kept = fresh->inherit(*state_);
    restore_state(*fresh, kept);
    for (std::size_t i = 0; i < fresh->sad().size(); ++i) {
      if (std::find(kept.begin(), kept.end(), fresh->sad().at(i).name()) == kept.end()) {
        fresh->life(i).seq_ceiling = 0;
      }
    }
    save_state(*fresh, true);
    for (std::size_t i = 0; i < fresh->sad().size(); ++i) {
      const auto& n = fresh->sad().at(i).name();
      if (std::find(kept.begin(), kept.end(), n) == kept.end()) added.push_back(n);
    }
    for (std::size_t i = 0; i < state_->sad().size(); ++i) {
      const auto& n = state_->sad().at(i).name();
      if (std::find(kept.begin(), kept.end(), n) == kept.end()) removed.push_back(n);
    }
    std::unique_ptr<State> previous = std::move(state_);
    state_ = std::move(fresh);
    const RuleOptions before = rule_options_;
    compute_rule_options();
    try {
      if (rules_installed_) replace_rules(state_->spd(), rule_options_);
    } catch (...) {
      // Keep kernel rules and user-space policy in step.
      state_ = std::move(previous);
      rule_options_ = before;
      throw;
    }
  }
  key_additions_ += added.size();
  key_deletions_ += removed.size();
  ++reloads_;
  if (log_) {
    for (const auto& n : kept)
      log_(EventKind::sa_kept, fmt::format("SA {} unchanged: sequence numbers and replay window kept", n));
    for (const auto& n : added) log_(EventKind::sa_installed, fmt::format("SA {} installed", n));
    for (const auto& n : removed) log_(EventKind::sa_removed, fmt::format("SA {} removed", n));
  }
}

void Enforcement::stop() {
  if (rules_installed_) {
    remove_rules();
    rules_installed_ = false;
  }
  stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  queues_.clear();
  if (state_) {
    std::shared_lock lock(state_mu_);
    save_state(*state_, true);
  }
  if (stats_thread_.joinable()) stats_thread_.join();
  if (stats_fd_ >= 0) {
    close(stats_fd_);
    stats_fd_ = -1;
    unlink(options_.socket.c_str());
  }
}

std::string Enforcement::snapshot_json() {
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
                   {"nat", nat_json(c, dir, life, steady_ns())}});
  }
  j["sas"] = sas;
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
