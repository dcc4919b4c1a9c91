// Locks that keep enforcements (and `enforce --cleanup`) out of each
// other's way, taken before anything is touched.
//
// One enforcement per network namespace: its iptables chains and NFQUEUE
// queues belong to the namespace, so a second one (whatever its --socket)
// would replace or remove them. The lock is an flock on
// /run/ipsentry/netns-DEV-INODE.lock, named after the namespace's inode
// (/proc/self/ns/net): `ip netns exec` shares /run with the host, so a fixed
// name would be one lock for every namespace. The directory is root's and
// closed to others, so no unprivileged process can take the lock first
// (which an abstract unix socket, also per namespace, would allow).
//
// One enforcement per state directory: two writers of one state file would
// overwrite each other's sequence-number reservations.
//
// A lock file records who holds it (pid, statistics socket, configuration),
// so that a refusal names the holder. flock is released by the kernel when
// the holder dies, even by kill -9: nothing stale is left to clean up.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace ipsentry::enforce {

/// Another process holds a lock; what() names it and says what to do.
class LockBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Who holds (or held) a lock, as recorded in its file.
struct LockHolder {
  long pid = 0;
  std::string socket;
  std::string config;
  std::string state_dir;
  std::string netns;
  /// "pid 1234, statistics on /run/ipsentry/enforce.sock, configuration /etc/ipsentry.yaml"
  [[nodiscard]] std::string describe() const;
};

class InstanceLock {
 public:
  /// Takes an exclusive flock on `file` (created 0600) without waiting.
  /// The file's directory must exist, belong to this user and be closed to
  /// others. Returns nullopt when another process holds it, with its record
  /// in `holder`. Throws std::runtime_error when the file cannot be used.
  static std::optional<InstanceLock> try_take(const std::filesystem::path& file, LockHolder& holder);

  InstanceLock(InstanceLock&& other) noexcept;
  InstanceLock& operator=(InstanceLock&& other) noexcept;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  ~InstanceLock();

  /// Replaces the record in the file (read by whoever is refused next).
  void record(const LockHolder& me);
  /// The record the previous holder left (a dead one's socket, for --cleanup).
  [[nodiscard]] const LockHolder& previous() const noexcept { return previous_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  InstanceLock(int fd, std::filesystem::path path, LockHolder previous)
      : fd_(fd), path_(std::move(path)), previous_(std::move(previous)) {}
  int fd_ = -1;
  std::filesystem::path path_;
  LockHolder previous_;
};

/// Creates `dir` (mode 0700) if needed and checks that it belongs to this
/// user and that nobody else can write into it (a file planted there could
/// take a lock or replace the state). Throws std::runtime_error naming it.
void secure_directory(const std::filesystem::path& dir);

/// "DEV:INODE" of this process's network namespace.
[[nodiscard]] std::string netns_id();

/// The lock file of this network namespace under `run_dir`.
[[nodiscard]] std::filesystem::path netns_lock_path(const std::filesystem::path& run_dir = "/run/ipsentry");

}  // namespace ipsentry::enforce
