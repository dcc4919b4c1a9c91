// Reading the small files a user names: configurations, key files, key
// exports, filter files.
//
// A path can name anything: a directory, /dev/zero, a named pipe nobody
// writes to. Each of these must end in a sentence that says what the path
// is, never in a hang, an unbounded read or a raw stream exception. Regular
// files and pipes are read (a pipe, so that `--keys-from xfrm <(ip -s xfrm
// state)` works), up to a size the caller knows is the most a real file of
// its kind can have, and a pipe only for a bounded time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>

namespace ipsentry::filters {

/// "a directory", "a character device", ... for what stat() reports of a
/// path that is not a regular file.
[[nodiscard]] const char* file_kind(mode_t mode) noexcept;

/// Reads the whole of `path`, at most `max` bytes. Returns false with `why`
/// set to the end of a sentence that starts with the path ("is a directory",
/// "is larger than 4096 bytes", "cannot be opened: Permission denied").
/// Every buffer that held the bytes is wiped on the way, because the text
/// may hold keys; the caller wipes `out` when done.
[[nodiscard]] bool read_bounded(const std::filesystem::path& path, std::size_t max, std::string& out, std::string& why);

/// Seconds a pipe may take to deliver everything before the read gives up.
inline constexpr int kPipeTimeoutSeconds = 30;

}  // namespace ipsentry::filters
