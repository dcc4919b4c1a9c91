#include "ipsentry/enforce/rules.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>

#include <fmt/format.h>

#include "ipsentry/enforce/enforcer.hpp"
#include "ipsentry/enforce/exemption_counters.hpp"

namespace ipsentry::enforce {

using filters::AddressSelector;
using filters::PolicyAction;
using filters::Sense;
using filters::SpdEntry;

namespace {

struct Hooked {
  const char* table;
  const char* hook;
  const char* chain;
};
constexpr Hooked kChains[] = {{"raw", "PREROUTING", "IPSENTRY-IN"},       {"mangle", "OUTPUT", "IPSENTRY-OUT"},
                              {"mangle", "FORWARD", "IPSENTRY-FWD"},      {"mangle", "INPUT", "IPSENTRY-MSSIN"},
                              {"filter", "OUTPUT", "IPSENTRY-GUARD-OUT"}, {"filter", "FORWARD", "IPSENTRY-GUARD-FWD"}};

// The address part of a match, or false when the selector is of the other family.
bool address_match(const AddressSelector& s, bool source, int family, std::string& out) {
  switch (s.kind) {
    case AddressSelector::Kind::any: return true;
    case AddressSelector::Kind::me:
      out += fmt::format(" -m addrtype --{}-type LOCAL", source ? "src" : "dst");
      return true;
    case AddressSelector::Kind::prefix:
      if ((family == 4) != s.prefix.addr.is_v4()) return false;
      out += fmt::format(" {} {}", source ? "-s" : "-d", s.prefix.str());
      return true;
  }
  return false;
}

std::string ports(const filters::PortRange& r) {
  return r.low == r.high ? std::to_string(r.low) : fmt::format("{}:{}", r.low, r.high);
}

// The matches of an entry for one family: several when an ICMPv6 type
// range has to be spelled out, none when the entry is of the other family.
std::vector<std::string> entry_matches(const SpdEntry& e, int family) {
  std::string m;
  if (!address_match(e.src, true, family, m) || !address_match(e.dst, false, family, m)) return {};
  if (e.icmp_types) {
    if (family != 6) return {};
    std::vector<std::string> out;
    for (unsigned t = e.icmp_types->first; t <= e.icmp_types->second; ++t) {
      out.push_back(m + fmt::format(" -p ipv6-icmp --icmpv6-type {}", t));
    }
    return out;
  }
  if (e.protocol) {
    m += fmt::format(" -p {}", *e.protocol);
    if (!e.sport.any()) m += " --sport " + ports(e.sport);
    if (!e.dport.any()) m += " --dport " + ports(e.dport);
  }
  return {m};
}

// What only an exemption's rule says: conditions user space cannot check,
// and the comment its counters are found by (exemption_counters.hpp).
std::string exemption_extra(const SpdEntry& e, int family, bool counted) {
  if (!e.exemption) return {};
  std::string m;
  if (e.hop_limit) m += fmt::format(" -m {0} --{0}-eq {1}", family == 6 ? "hl" : "ttl", *e.hop_limit);
  if (e.root_only) m += " -m owner --uid-owner 0";
  if (counted) m += fmt::format(" -m comment --comment {}{}", kExemptionComment, e.exemption_tag());
  return m;
}

std::string queue_target(const RuleOptions& o) {
  std::string t = o.queues > 1 ? fmt::format(" -j NFQUEUE --queue-balance {}:{}", o.queue, o.queue + o.queues - 1)
                               : fmt::format(" -j NFQUEUE --queue-num {}", o.queue);
  if (o.fail_open) t += " --queue-bypass";
  return t;
}

bool can_be_tcp(const SpdEntry& e) { return !e.protocol || *e.protocol == 6; }

bool negotiates(const filters::Spd& spd) {
  return std::any_of(spd.entries().begin(), spd.entries().end(),
                     [](const SpdEntry& e) { return e.action == PolicyAction::negotiate; });
}

// The SPD for one direction of travel, in order; what it does not permit
// goes to `target` (the queue, or DROP in the backstop). Exemptions are for
// this host's own traffic: none goes into a FORWARD chain. Only the queue
// chains tag them for the counters: the backstop sees the same packets again.
// `local_out`: the chain sees what this host sends (OUTPUT), where the IKE
// exemptions are left out when ipsentry runs IKE itself (its own IKE carries
// its mark and returned before; what is left on those ports is other
// programs').
void compile(std::string& out, const char* chain, const filters::Spd& spd, int family, Sense sense, std::uint16_t mss,
             const std::string& queue, bool forward = false, bool counted = true, bool local_out = false) {
  const bool own_ike = local_out && negotiates(spd);
  for (const SpdEntry& e : spd.entries()) {
    if (filters::is_ipsec_action(e.action) && e.sense != sense) continue;
    if (e.exemption && (e.sense != sense || forward)) continue;
    if (own_ike && e.is_ike_exemption()) continue;
    for (const std::string& m : entry_matches(e, family)) {
      if (e.action == PolicyAction::permit) {
        out += fmt::format("-A {}{}{} -j RETURN\n", chain, m, exemption_extra(e, family, counted));
        continue;
      }
      if (filters::is_ipsec_action(e.action) && sense == Sense::outbound && mss != 0 && can_be_tcp(e)) {
        // Before the packet is wrapped: afterwards it is ESP/AH.
        out += fmt::format("-A {}{}{} --tcp-flags SYN,RST SYN -j TCPMSS --set-mss {}\n", chain, m,
                           e.protocol ? "" : " -p tcp", mss);
      }
      out += fmt::format("-A {}{}{}\n", chain, m, queue);
    }
  }
}

}  // namespace

namespace {

// The jump from a built-in chain as iptables-save prints it.
std::string jump_line(const Hooked& c) { return fmt::format("-A {} -j {}", c.hook, c.chain); }

constexpr std::size_t kChainCount = std::size(kChains);

// How many of our exact jumps `saved` (iptables-save output) has per chain,
// so that an install can delete them in the same transaction; then, from
// index kChainCount on, whether each chain exists.
std::vector<int> count_jumps(const std::string& saved) {
  std::vector<int> n(2 * kChainCount, 0);
  std::string table;
  std::size_t pos = 0;
  while (pos < saved.size()) {
    std::size_t end = saved.find('\n', pos);
    if (end == std::string::npos) end = saved.size();
    const std::string_view line(saved.data() + pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line[0] == '*') table = std::string(line.substr(1));
    for (std::size_t i = 0; i < kChainCount; ++i) {
      if (table != kChains[i].table) continue;
      if (line == jump_line(kChains[i])) ++n[i];
      if (line.size() > 1 && line[0] == ':' && line.substr(1, line.find(' ') - 1) == kChains[i].chain) {
        n[kChainCount + i] = 1;
      }
    }
  }
  return n;
}

// The jumps: any existing ones deleted, then one at the head of each hook.
std::string hook_lines(const char* table, const std::vector<int>* existing) {
  std::string r;
  for (std::size_t i = 0; i < kChainCount; ++i) {
    if (std::strcmp(kChains[i].table, table) != 0) continue;
    const int n = existing != nullptr ? (*existing)[i] : 0;
    for (int k = 0; k < n; ++k) r += fmt::format("-D {} -j {}\n", kChains[i].hook, kChains[i].chain);
    r += fmt::format("-I {} 1 -j {}\n", kChains[i].hook, kChains[i].chain);
  }
  return r;
}

std::string render(const filters::Spd& spd, int family, const RuleOptions& o, bool with_hooks,
                   const std::vector<int>* existing) {
  const std::uint16_t mss = family == 4 ? o.mss_v4 : o.mss_v6;
  const std::string queue = queue_target(o);
  std::string r = "*raw\n:IPSENTRY-IN - [0:0]\n";
  if (with_hooks) r += hook_lines("raw", existing);
  r += "-A IPSENTRY-IN -i lo -j RETURN\n";
  r += fmt::format("-A IPSENTRY-IN -m mark --mark 0x{0:x}/0x{0:x} -j RETURN\n", 0x1);
  for (const char* p : {"esp", "ah"}) {
    r += fmt::format("-A IPSENTRY-IN -p {} -m addrtype --dst-type LOCAL{}\n", p, queue);
    r += fmt::format("-A IPSENTRY-IN -p {} -j RETURN\n", p);  // somebody else's IPsec, forwarded
  }
  // ESP in UDP (RFC 3948) to us; user space tells it from IKE on the same port.
  r += fmt::format("-A IPSENTRY-IN -p udp --dport 4500 -m addrtype --dst-type LOCAL{}\n", queue);
  // IKE to ipsentry's own daemon, which authenticates it: never dropped as
  // cleartext by a policy that covers the peer.
  if (negotiates(spd)) r += "-A IPSENTRY-IN -p udp --dport 500 -m addrtype --dst-type LOCAL -j RETURN\n";
  compile(r, "IPSENTRY-IN", spd, family, Sense::inbound, 0, queue);
  r += "COMMIT\n*mangle\n:IPSENTRY-OUT - [0:0]\n:IPSENTRY-FWD - [0:0]\n:IPSENTRY-MSSIN - [0:0]\n";
  if (with_hooks) r += hook_lines("mangle", existing);
  r += "-A IPSENTRY-OUT -o lo -j RETURN\n";
  r += fmt::format("-A IPSENTRY-OUT -m mark --mark 0x{0:x}/0x{0:x} -j RETURN\n", 0x2);
  compile(r, "IPSENTRY-OUT", spd, family, Sense::outbound, mss, queue, /*forward=*/false, /*counted=*/true,
          /*local_out=*/true);
  // Any conntrack match makes the kernel reassemble fragments before the
  // raw table, so fragmented ESP reaches the queue whole (NFQUEUE.md Q5 E).
  r += "-A IPSENTRY-FWD -m conntrack --ctstate INVALID\n";
  if (mss != 0) {
    r += fmt::format("-A IPSENTRY-FWD -m mark --mark 0x1/0x1 -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss {}\n",
                     mss);
    r += fmt::format("-A IPSENTRY-MSSIN -m mark --mark 0x1/0x1 -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss {}\n",
                     mss);
  }
  r += "-A IPSENTRY-FWD -m mark --mark 0x1/0x1 -j RETURN\n";
  r += "-A IPSENTRY-FWD -m mark --mark 0x2/0x2 -j RETURN\n";
  compile(r, "IPSENTRY-FWD", spd, family, Sense::outbound, mss, queue, /*forward=*/true);
  r += "COMMIT\n";
  if (o.fail_open) {
    // No backstop: leftovers of a fail-closed run would drop what the
    // operator asked to let through.
    std::string leftovers;
    for (std::size_t i = 0; existing != nullptr && i < kChainCount; ++i) {
      if (std::strcmp(kChains[i].table, "filter") != 0) continue;
      for (int k = 0; k < (*existing)[i]; ++k) {
        leftovers += fmt::format("-D {} -j {}\n", kChains[i].hook, kChains[i].chain);
      }
      if ((*existing)[kChainCount + i] != 0) leftovers += fmt::format("-F {0}\n-X {0}\n", kChains[i].chain);
    }
    if (!leftovers.empty()) r += "*filter\n" + leftovers + "COMMIT\n";
    return r;
  }
  // The backstop: outbound traffic the SPD protects or blocks that did not
  // pass through ipsentry's queue (someone removed the mangle chains, or
  // flushed the table) is dropped here instead of leaving in the clear.
  r += "*filter\n:IPSENTRY-GUARD-OUT - [0:0]\n:IPSENTRY-GUARD-FWD - [0:0]\n";
  if (with_hooks) r += hook_lines("filter", existing);
  for (const char* chain : {"IPSENTRY-GUARD-OUT", "IPSENTRY-GUARD-FWD"}) {
    r += fmt::format("-A {} -o lo -j RETURN\n", chain);
    for (std::uint32_t mark : {0x1u, 0x2u, 0x4u}) {
      r += fmt::format("-A {0} -m mark --mark 0x{1:x}/0x{1:x} -j RETURN\n", chain, mark);
    }
    const bool out_chain = std::strcmp(chain, "IPSENTRY-GUARD-OUT") == 0;
    compile(r, chain, spd, family, Sense::outbound, 0, " -j DROP", /*forward=*/!out_chain, /*counted=*/false,
            /*local_out=*/out_chain);
  }
  r += "COMMIT\n";
  return r;
}

}  // namespace

std::string render_rules(const filters::Spd& spd, int family, const RuleOptions& o, bool with_hooks) {
  return render(spd, family, o, with_hooks, nullptr);
}

std::string render_install(const filters::Spd& spd, int family, const RuleOptions& o, const std::string& saved) {
  const std::vector<int> existing = count_jumps(saved);
  return render(spd, family, o, true, &existing);
}

int run_program(const std::vector<std::string>& argv, const std::string& input, std::string& err) {
  return run_program(argv, input, nullptr, err);
}

int run_program(const std::vector<std::string>& argv, const std::string& input, std::string* out, std::string& err) {
  int in_pipe[2];
  int err_pipe[2];
  int out_pipe[2] = {-1, -1};
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return -1;
  if (pipe2(err_pipe, O_CLOEXEC) != 0 || (out != nullptr && pipe2(out_pipe, O_CLOEXEC) != 0)) {
    for (int fd : {in_pipe[0], in_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  if (out != nullptr) {
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in_pipe[0]);
  close(err_pipe[1]);
  if (out != nullptr) close(out_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(err_pipe[0]);
    if (out != nullptr) close(out_pipe[0]);
    err = fmt::format("cannot run {}: {}", argv[0], std::strerror(rc));
    return -1;
  }
  std::size_t off = 0;
  while (off < input.size()) {
    const ssize_t n = write(in_pipe[1], input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  close(in_pipe[1]);
  char buf[4096];
  err.clear();
  if (out != nullptr) out->clear();
  // Both pipes at once: a program that fills one while we wait on the other
  // would never finish.
  pollfd fds[2] = {{err_pipe[0], POLLIN, 0}, {out != nullptr ? out_pipe[0] : -1, POLLIN, 0}};
  int open_fds = out != nullptr ? 2 : 1;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? err : *out).append(buf, static_cast<std::size_t>(n));
    }
  }
  for (const auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

namespace {

void restore(int family, const std::string& text) {
  std::string err;
  const char* prog = family == 4 ? "iptables-restore" : "ip6tables-restore";
  const int rc = run_program({prog, "--noflush", "-w", "5"}, text, err);
  if (rc != 0) {
    while (!err.empty() && err.back() == '\n') err.pop_back();
    throw RulesError(fmt::format("{} failed ({}): {}", prog, rc, err.empty() ? "no message" : err));
  }
}

}  // namespace

void install_rules(const filters::Spd& spd, const RuleOptions& o) {
  // One transaction per family replaces whatever is there (rules a killed
  // enforcement left, or what is left of ours after someone changed them):
  // there is no moment without the jumps, so nothing slips out in the clear.
  try {
    install_family(spd, o, 4, read_rules(4));
    install_family(spd, o, 6, read_rules(6));
  } catch (...) {
    remove_rules();
    throw;
  }
}

void install_family(const filters::Spd& spd, const RuleOptions& o, int family, const std::string& saved) {
  restore(family, render_install(spd, family, o, saved));
}

std::string read_rules(int family) {
  std::string out;
  std::string err;
  const char* prog = family == 4 ? "iptables-save" : "ip6tables-save";
  const int rc = run_program({prog}, "", &out, err);
  if (rc != 0) {
    while (!err.empty() && err.back() == '\n') err.pop_back();
    throw RulesError(fmt::format("{} failed ({}): {}", prog, rc, err.empty() ? "no message" : err));
  }
  return out;
}

std::vector<std::string> our_rules(const std::string& saved) {
  std::vector<std::string> lines;
  std::string table;
  std::map<std::string, int> position;  // rules seen so far per built-in chain
  std::size_t pos = 0;
  while (pos < saved.size()) {
    std::size_t end = saved.find('\n', pos);
    if (end == std::string::npos) end = saved.size();
    const std::string line = saved.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '*') {
      table = line.substr(1);
      position.clear();
      continue;
    }
    if (table != "raw" && table != "mangle" && table != "filter") continue;
    if (line.rfind(":IPSENTRY-", 0) == 0) {
      lines.push_back(fmt::format("{} chain {}", table, line.substr(1, line.find(' ') - 1)));
      continue;
    }
    if (line.rfind("-A ", 0) != 0) continue;
    const std::string chain = line.substr(3, line.find(' ', 3) - 3);
    if (chain.rfind("IPSENTRY-", 0) == 0) {
      lines.push_back(fmt::format("{} {}", table, line));
      continue;
    }
    const int at = ++position[chain];
    // A jump is only as good as its place: rules before it decide first.
    if (line.find(" -j IPSENTRY-") != std::string::npos || line.find(" -g IPSENTRY-") != std::string::npos) {
      lines.push_back(fmt::format("{} {} (rule {} of {})", table, line, at, chain));
    }
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::vector<std::string> rules_drift(const std::vector<std::string>& expected, const std::vector<std::string>& now) {
  std::vector<std::string> missing;
  std::vector<std::string> added;
  std::set_difference(expected.begin(), expected.end(), now.begin(), now.end(), std::back_inserter(missing));
  std::set_difference(now.begin(), now.end(), expected.begin(), expected.end(), std::back_inserter(added));
  std::vector<std::string> out;
  for (const auto& m : missing) out.push_back("missing: " + m);
  for (const auto& a : added) out.push_back("unexpected: " + a);
  return out;
}

void replace_rules(const filters::Spd& spd, const RuleOptions& o) {
  restore(4, render_rules(spd, 4, o, false));
  restore(6, render_rules(spd, 6, o, false));
}

std::vector<std::string> remove_rules() {
  std::vector<std::string> removed;
  std::string err;
  for (const char* prog : {"iptables", "ip6tables"}) {
    for (const auto& c : kChains) {
      int jumps = 0;
      while (run_program({prog, "-w", "5", "-t", c.table, "-D", c.hook, "-j", c.chain}, "", err) == 0) ++jumps;
      const bool flushed = run_program({prog, "-w", "5", "-t", c.table, "-F", c.chain}, "", err) == 0;
      const bool deleted = run_program({prog, "-w", "5", "-t", c.table, "-X", c.chain}, "", err) == 0;
      if (jumps > 0 || flushed || deleted) {
        removed.push_back(
            fmt::format("{} -t {}: chain {} and {} jump(s) from {}", prog, c.table, c.chain, jumps, c.hook));
      }
    }
  }
  return removed;
}

}  // namespace ipsentry::enforce
