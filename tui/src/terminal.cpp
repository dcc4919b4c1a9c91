// Kept apart from app.cpp: <term.h> defines macros named `lines`,
// `columns` and hundreds more that would rewrite ordinary code.
#include "ipsentry/tui/app.hpp"

#include <curses.h>
#include <fmt/format.h>
#include <term.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace ipsentry::tui {

void check_terminal() {
  const char* term = std::getenv("TERM");
  if (term == nullptr || *term == '\0') {
    throw std::runtime_error(
        "TERM is not set: the TUI needs to know the terminal's type; set it (for example TERM=xterm-256color) and "
        "run ipsentry tui again, or use 'ipsentry verify' / 'ipsentry show' for text output");
  }
  // Asked with an error slot, terminfo reports instead of printing its own
  // message and exiting as initscr() would.
  int err = 0;
  if (setupterm(term, STDOUT_FILENO, &err) != OK) {
    if (err == 0) {
      throw std::runtime_error(fmt::format(
          "TERM={} is not a terminal type this system knows (no terminfo entry): set TERM to one it has, for example "
          "TERM=xterm-256color ('toe -a' lists them), or install the entry (Debian: ncurses-term)",
          term));
    }
    if (err == 1) {
      throw std::runtime_error(
          fmt::format("TERM={} is a hardcopy terminal, which cannot show the TUI: set TERM to the type of this "
                      "screen, for example TERM=xterm-256color",
                      term));
    }
    throw std::runtime_error(fmt::format(
        "TERM={}: no terminfo database was found: install ncurses-base (or set TERMINFO to where it is)", term));
  }
  del_curterm(cur_term);
}

}  // namespace ipsentry::tui
