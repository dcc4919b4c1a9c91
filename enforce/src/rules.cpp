#include "ipsentry/enforce/rules.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

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
constexpr Hooked kChains[] = {{"raw", "PREROUTING", "IPSENTRY-IN"},
                              {"mangle", "OUTPUT", "IPSENTRY-OUT"},
                              {"mangle", "FORWARD", "IPSENTRY-FWD"},
                              {"mangle", "INPUT", "IPSENTRY-MSSIN"}};

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

std::string queue_target(const RuleOptions& o) {
  std::string t = o.queues > 1 ? fmt::format(" -j NFQUEUE --queue-balance {}:{}", o.queue, o.queue + o.queues - 1)
                               : fmt::format(" -j NFQUEUE --queue-num {}", o.queue);
  if (o.fail_open) t += " --queue-bypass";
  return t;
}

bool can_be_tcp(const SpdEntry& e) { return !e.protocol || *e.protocol == 6; }

// The SPD for one direction of travel, in order.
void compile(std::string& out, const char* chain, const filters::Spd& spd, int family, Sense sense,
             const RuleOptions& o, std::uint16_t mss) {
  const std::string queue = queue_target(o);
  for (const SpdEntry& e : spd.entries()) {
    if (e.action == PolicyAction::protect && e.sense != sense) continue;
    for (const std::string& m : entry_matches(e, family)) {
      if (e.action == PolicyAction::permit) {
        out += fmt::format("-A {}{} -j RETURN\n", chain, m);
        continue;
      }
      if (e.action == PolicyAction::protect && sense == Sense::outbound && mss != 0 && can_be_tcp(e)) {
        // Before the packet is wrapped: afterwards it is ESP/AH.
        out += fmt::format("-A {}{}{} --tcp-flags SYN,RST SYN -j TCPMSS --set-mss {}\n", chain, m,
                           e.protocol ? "" : " -p tcp", mss);
      }
      out += fmt::format("-A {}{}{}\n", chain, m, queue);
    }
  }
}

}  // namespace

std::string render_rules(const filters::Spd& spd, int family, const RuleOptions& o, bool with_hooks) {
  const std::uint16_t mss = family == 4 ? o.mss_v4 : o.mss_v6;
  const std::string queue = queue_target(o);
  std::string r = "*raw\n:IPSENTRY-IN - [0:0]\n";
  if (with_hooks) r += "-I PREROUTING 1 -j IPSENTRY-IN\n";
  r += "-A IPSENTRY-IN -i lo -j RETURN\n";
  r += fmt::format("-A IPSENTRY-IN -m mark --mark 0x{0:x}/0x{0:x} -j RETURN\n", 0x1);
  for (const char* p : {"esp", "ah"}) {
    r += fmt::format("-A IPSENTRY-IN -p {} -m addrtype --dst-type LOCAL{}\n", p, queue);
    r += fmt::format("-A IPSENTRY-IN -p {} -j RETURN\n", p);  // somebody else's IPsec, forwarded
  }
  // ESP in UDP (RFC 3948) to us; user space tells it from IKE on the same port.
  r += fmt::format("-A IPSENTRY-IN -p udp --dport 4500 -m addrtype --dst-type LOCAL{}\n", queue);
  compile(r, "IPSENTRY-IN", spd, family, Sense::inbound, o, 0);
  r += "COMMIT\n*mangle\n:IPSENTRY-OUT - [0:0]\n:IPSENTRY-FWD - [0:0]\n:IPSENTRY-MSSIN - [0:0]\n";
  if (with_hooks) {
    r += "-I OUTPUT 1 -j IPSENTRY-OUT\n-I FORWARD 1 -j IPSENTRY-FWD\n-I INPUT 1 -j IPSENTRY-MSSIN\n";
  }
  r += "-A IPSENTRY-OUT -o lo -j RETURN\n";
  r += fmt::format("-A IPSENTRY-OUT -m mark --mark 0x{0:x}/0x{0:x} -j RETURN\n", 0x2);
  compile(r, "IPSENTRY-OUT", spd, family, Sense::outbound, o, mss);
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
  compile(r, "IPSENTRY-FWD", spd, family, Sense::outbound, o, mss);
  r += "COMMIT\n";
  return r;
}

int run_program(const std::vector<std::string>& argv, const std::string& input, std::string& err) {
  int in_pipe[2];
  int err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return -1;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
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
  if (rc != 0) {
    close(in_pipe[1]);
    close(err_pipe[0]);
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
  for (;;) {
    const ssize_t n = read(err_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    err.append(buf, static_cast<std::size_t>(n));
  }
  close(err_pipe[0]);
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
  remove_rules();
  try {
    restore(4, render_rules(spd, 4, o, true));
    restore(6, render_rules(spd, 6, o, true));
  } catch (...) {
    remove_rules();
    throw;
  }
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
