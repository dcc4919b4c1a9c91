// `ipsentry tui`: the ncurses front end. Offline (a capture file), live (an
// interface) or attached to a running enforcement's statistics socket.
#pragma once

#include <memory>
#include <string>

#include "ipsentry/tui/model.hpp"

namespace ipsentry::tui {

struct AppOptions {
  std::unique_ptr<Model> model;  // capture or live; null when attached
  std::string attach_socket;     // attach mode: the enforcement statistics socket
  double refresh_seconds = 15;   // SA monitor and statistics refresh (the Monitor's default)
  std::string initial_filter;
  std::vector<std::string> warnings;  // shown in the message line at start
};

/// Whether the terminal named by TERM can be driven; throws
/// std::runtime_error saying what is wrong with TERM and what to do (where
/// ncurses would print its own message and exit 1). Cheap: call it before
/// loading a capture.
void check_terminal();

/// Runs the interface until the user quits. Returns the process exit code.
/// Throws std::runtime_error when standard input/output is not a terminal.
int run(AppOptions options);

}  // namespace ipsentry::tui
