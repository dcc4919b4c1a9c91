// The NFQUEUE ceiling for the enforcement benchmark: the same queue code as
// `ipsentry enforce` (batched per-packet verdicts), but every packet is
// accepted unchanged. Usage: nfq_accept FIRST_QUEUE COUNT; stops on SIGINT/SIGTERM.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "ipsentry/enforce/nfqueue.hpp"

namespace {
std::atomic<bool> stop{false};
void on_signal(int) { stop = true; }
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FIRST_QUEUE COUNT\n", argv[0]);
    return 2;
  }
  const auto first = static_cast<std::uint16_t>(std::atoi(argv[1]));
  const int count = std::atoi(argv[2]);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::vector<std::unique_ptr<ipsentry::enforce::Queue>> queues;
  try {
    for (int i = 0; i < count; ++i) {
      queues.push_back(std::make_unique<ipsentry::enforce::Queue>(static_cast<std::uint16_t>(first + i), false));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfq_accept: %s\n", e.what());
    return 2;
  }
  std::vector<std::thread> threads;
  for (auto& q : queues) {
    threads.emplace_back([&q] {
      q->run(stop, [](const ipsentry::enforce::QueuedPacket&) {
        ipsentry::enforce::Verdict v;
        v.accept = true;
        return v;
      });
    });
  }
  std::puts("ready");
  std::fflush(stdout);
  for (auto& t : threads) t.join();
  return 0;
}
