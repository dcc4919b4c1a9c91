#include "ipsentry/tui/app.hpp"

#include <curses.h>
#include <fmt/format.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <clocale>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>

#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "ipsentry/enforce/runner.hpp"
#include "ipsentry/tui/display_filter.hpp"
#include "ipsentry/tui/screen_text.hpp"

namespace ipsentry::tui {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// ------------------------------------------------------------ the terminal

// The terminal must come back whatever happens: a normal exit and Ctrl-C
// go through endwin(); a crash signal cannot call ncurses, so it writes the
// sequences worked out at start and restores the saved line discipline.
struct termios g_saved_termios;
bool g_have_termios = false;
char g_restore[128];
std::size_t g_restore_len = 0;
volatile sig_atomic_t g_quit = 0;

void on_quit_signal(int sig) { g_quit = sig; }

void on_crash_signal(int sig) {
  if (g_restore_len != 0) {
    ssize_t ignored = write(STDOUT_FILENO, g_restore, g_restore_len);
    (void)ignored;
  }
  if (g_have_termios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

void add_restore(const char* cap) {
  const char* s = tigetstr(const_cast<char*>(cap));
  if (s == nullptr || s == reinterpret_cast<const char*>(-1)) return;
  const std::size_t n = std::strlen(s);
  if (g_restore_len + n >= sizeof g_restore) return;
  std::memcpy(g_restore + g_restore_len, s, n);  // NOLINT(bugprone-not-null-terminated-result): written by length
  g_restore_len += n;
}

class Terminal {
 public:
  Terminal() {
    if (isatty(STDIN_FILENO) != 1 || isatty(STDOUT_FILENO) != 1) {
      throw std::runtime_error("the TUI needs a terminal; use 'ipsentry verify' or 'ipsentry show' for text output");
    }
    std::setlocale(LC_ALL, "");
    if (tcgetattr(STDIN_FILENO, &g_saved_termios) == 0) g_have_termios = true;
    if (std::getenv("ESCDELAY") == nullptr) set_escdelay(25);
    check_terminal();  // initscr() would print ncurses' own message and exit 1
    if (initscr() == nullptr) throw std::runtime_error("cannot initialise the terminal");
    add_restore("sgr0");
    add_restore("cnorm");
    add_restore("rmcup");
    struct sigaction sa {};
    sa.sa_handler = on_quit_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
    sa.sa_handler = on_crash_signal;
    sa.sa_flags = SA_RESETHAND;
    for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(s, &sa, nullptr);
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    meta(stdscr, TRUE);  // all eight bits: the UTF-8 of a non-ASCII character typed in a prompt
    curs_set(0);
    timeout(100);
    if (has_colors()) {
      start_color();
      use_default_colors();
      init_pair(kOk, COLOR_GREEN, -1);
      init_pair(kFail, COLOR_RED, -1);
      init_pair(kReplay, COLOR_MAGENTA, -1);
      init_pair(kUnknown, COLOR_YELLOW, -1);
      init_pair(kIke, COLOR_CYAN, -1);
      init_pair(kTitle, COLOR_BLACK, COLOR_CYAN);
      init_pair(kError, COLOR_WHITE, COLOR_RED);
      init_pair(kMark, COLOR_BLACK, COLOR_YELLOW);
      init_pair(kDim, COLOR_BLUE, -1);
    }
  }
  ~Terminal() {
    endwin();
    if (g_have_termios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_termios);
    g_restore_len = 0;
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  static constexpr short kOk = 1, kFail = 2, kReplay = 3, kUnknown = 4, kIke = 5, kTitle = 6, kError = 7, kMark = 8,
                         kDim = 9;
};

attr_t color(short pair) { return has_colors() ? COLOR_PAIR(pair) : A_NORMAL; }

// Writes `text` at (y, x) in at most `width` columns (UTF-8 aware), padded
// with spaces to `width` when `pad`.
void put(int y, int x, int width, std::string_view text, attr_t attr = A_NORMAL, bool pad = true) {
  if (width <= 0 || y < 0 || y >= LINES) return;
  attrset(attr);
  move(y, x);
  int used = 0;
  std::size_t i = 0;
  while (i < text.size() && used < width) {
    const std::size_t len = utf8_length(text[i]);
    if (i + len > text.size()) break;
    addnstr(text.data() + i, static_cast<int>(len));
    i += len;
    ++used;
  }
  if (pad) {
    for (; used < width; ++used) addch(' ');
  }
  attrset(A_NORMAL);
}

// The byte offset of display column `cols` in UTF-8 text (one column per
// code point, which holds for the text ipsentry writes).
std::size_t byte_offset(std::string_view text, std::size_t cols) {
  std::size_t i = 0;
  for (std::size_t col = 0; col < cols && i < text.size(); ++col) i += utf8_length(text[i]);
  return std::min(i, text.size());
}

// ------------------------------------------------------------ the app

enum class Screen { packets, sas, stats, ike, help };
enum class Pane { list, tree, hex };
enum class Prompt { none, filter, find, go, save, save_decrypted, refresh };

struct FlatNode {
  const dissect::Node* node;
  int depth;
  std::string path;
};

class App {
 public:
  explicit App(AppOptions o) : opt_(std::move(o)), model_(opt_.model.get()), refresh_(opt_.refresh_seconds) {
    if (model_ == nullptr) screen_ = Screen::sas;
    follow_ = model_ != nullptr && model_->live();
    std::string warnings;
    for (const auto& w : opt_.warnings) warnings += (warnings.empty() ? "warning: " : "; ") + w;
    if (!warnings.empty()) message(warnings, false);
    if (!opt_.initial_filter.empty()) {
      FilterError e;
      if (auto f = DisplayFilter::parse(opt_.initial_filter, e)) {
        apply_filter(std::move(*f));
      } else {
        message(fmt::format("filter: at {}: {}", e.position + 1, e.message), true);
      }
    }
  }

  int run() {
    Terminal term;
    refresh_data();
    for (;;) {
      if (g_quit != 0) return 128 + g_quit;
      tick();
      draw();
      const int ch = getch();
      if (ch == ERR) continue;
      if (!key(ch)) break;
    }
    return 0;
  }

 private:
  // ---------------------------------------------------------- list model

  [[nodiscard]] std::size_t available() const {
    if (model_ == nullptr) return 0;
    return paused_ ? frozen_ : model_->rows().size();
  }
  [[nodiscard]] std::size_t count() const { return filtered_ ? shown_.size() : available(); }
  [[nodiscard]] std::size_t row_at(std::size_t pos) const { return filtered_ ? shown_[pos] : pos; }

  void extend_filter() {
    if (!filtered_) return;
    const std::size_t n = available();
    const auto& rows = model_->rows();
    for (; evaluated_ < n; ++evaluated_) {
      if (filter_.matches(rows[evaluated_], evaluated_ + 1, model_->addresses())) {
        shown_.push_back(static_cast<std::uint32_t>(evaluated_));
      }
    }
  }

  void apply_filter(DisplayFilter f) {
    const std::uint64_t keep = count() != 0 ? row_at(sel_) + 1 : 0;
    filtered_ = !f.empty();
    filter_ = std::move(f);
    shown_.clear();
    evaluated_ = 0;
    const auto t0 = Clock::now();
    extend_filter();
    filter_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    select_frame(keep, false);
  }

  // Selects the displayed frame `number`, or the next displayed one after it.
  bool select_frame(std::uint64_t number, bool tell) {
    if (count() == 0) {
      sel_ = 0;
      return false;
    }
    std::size_t pos = 0;
    if (!filtered_) {
      pos = number == 0 ? 0 : std::min<std::size_t>(number - 1, count() - 1);
    } else {
      auto it = std::lower_bound(shown_.begin(), shown_.end(), number == 0 ? 0 : number - 1);
      pos = it == shown_.end() ? shown_.size() - 1 : static_cast<std::size_t>(it - shown_.begin());
    }
    sel_ = pos;
    const std::uint64_t got = row_at(pos) + 1;
    if (tell && got != number) {
      message(fmt::format("frame {} is not displayed (filter or not captured yet); showing frame {}", number, got),
              true);
    }
    return got == number;
  }

  void tick() {
    if (model_ != nullptr) {
      extend_filter();
      if (follow_ && count() != 0) sel_ = count() - 1;
      watch_trigger();
    }
    if (screen_ == Screen::sas || screen_ == Screen::stats || screen_ == Screen::ike) {
      if (Clock::now() - last_refresh_ >= std::chrono::duration<double>(refresh_)) refresh_data();
    }
  }

  // A live trigger: say so when it fires; when the capture it stopped has
  // ended, put a list that was following on the trigger frame.
  void watch_trigger() {
    const std::uint64_t t = model_->trigger_frame();
    if (t == 0 || trigger_state_ == 2) return;
    if (trigger_state_ == 0) {
      trigger_state_ = 1;
      message(model_->trigger_text() + (model_->done() ? "" : " — capturing on"), false);
    }
    if (!model_->done()) return;
    trigger_state_ = 2;
    if (follow_ && !paused_) {
      follow_ = false;
      if (select_frame(t, false)) {
        message(fmt::format("{} — selected; End goes to the last frame", model_->trigger_text()), false);
      }
    }
  }

  // ---------------------------------------------------------- keys

  bool key(int ch) {
    if (overwrite_) {
      // The answer to "'FILE' exists: overwrite it?": only y writes.
      const bool decrypted = *overwrite_;
      overwrite_.reset();
      if (ch == 'y' || ch == 'Y') {
        write_pcap(decrypted);
      } else {
        message(fmt::format("not saved: '{}' left as it was", input_), false);
      }
      return true;
    }
    if (prompt_ != Prompt::none) {
      prompt_key(ch);
      return true;
    }
    if (ch == KEY_RESIZE) return true;
    message_.clear();
    switch (ch) {
      case 'q':
      case 'Q': return false;
      case '1': screen_ = Screen::packets; return true;
      case '2':
        screen_ = Screen::sas;
        refresh_data();
        return true;
      case '3':
        screen_ = Screen::stats;
        refresh_data();
        return true;
      case '4':
        screen_ = Screen::ike;
        refresh_data();
        return true;
      case '?':
      case KEY_F(1):
        if (screen_ != Screen::help) {
          back_ = screen_;
          screen_ = Screen::help;
          help_top_ = 0;
        } else {
          screen_ = back_;
        }
        return true;
      case '+':
        refresh_ = std::max(1.0, refresh_ - 1);
        message(fmt::format("refresh every {:g} s", refresh_), false);
        return true;
      case '-':
        refresh_ = std::min(3600.0, refresh_ + 1);
        message(fmt::format("refresh every {:g} s", refresh_), false);
        return true;
      case 'r': start_prompt(Prompt::refresh, fmt::format("{:g}", refresh_)); return true;
      default: break;
    }
    switch (screen_) {
      case Screen::packets: packets_key(ch); break;
      case Screen::sas: table_key(ch, sa_sel_, sa_lines_.size()); break;
      case Screen::ike: ike_key(ch); break;
      case Screen::stats: table_key(ch, stats_top_, stats_lines_); break;
      case Screen::help:
        if (ch == 27)
          screen_ = back_;
        else
          table_key(ch, help_top_, help_lines_);
        break;
    }
    return true;
  }

  static void move_in(int ch, std::size_t& sel, std::size_t n, std::size_t page) {
    if (n == 0) {
      sel = 0;
      return;
    }
    switch (ch) {
      case KEY_UP: sel = sel == 0 ? 0 : sel - 1; break;
      case KEY_DOWN: sel = std::min(n - 1, sel + 1); break;
      case KEY_PPAGE: sel = sel > page ? sel - page : 0; break;
      case KEY_NPAGE: sel = std::min(n - 1, sel + page); break;
      case KEY_HOME: sel = 0; break;
      case KEY_END: sel = n - 1; break;
      default: break;
    }
    sel = std::min(sel, n - 1);
  }

  void table_key(int ch, std::size_t& sel, std::size_t n) {
    move_in(ch, sel, n, static_cast<std::size_t>(std::max(1, LINES - 6)));
    scroll_sideways(ch);
  }

  // Each screen keeps its own sideways offset, and Right stops where the
  // widest line drawn last time ends, so the screen never scrolls to blank.
  void scroll_sideways(int ch) {
    int& h = hscroll_[static_cast<std::size_t>(screen_)];
    if (ch == KEY_LEFT) h = std::max(0, h - 8);
    if (ch == KEY_RIGHT) h = std::min(h + 8, std::max(0, static_cast<int>(widest_) - COLS + 8));
  }

  void packets_key(int ch) {
    if (model_ == nullptr) return;
    switch (ch) {
      case '\t': focus_ = focus_ == Pane::list ? Pane::tree : focus_ == Pane::tree ? Pane::hex : Pane::list; return;
      case KEY_BTAB: focus_ = focus_ == Pane::list ? Pane::hex : focus_ == Pane::tree ? Pane::list : Pane::tree; return;
      case '/': start_prompt(Prompt::filter, filter_.text()); return;
      case 'f': start_prompt(Prompt::find, find_.text()); return;
      case 'n': find_next(true); return;
      case 'N': find_next(false); return;
      case 'g': start_prompt(Prompt::go, ""); return;
      case 'w': start_prompt(Prompt::save, "ipsentry-displayed.pcap"); return;
      case 'W': start_prompt(Prompt::save_decrypted, "ipsentry-decrypted.pcap"); return;
      case 't':
        time_ = (time_ + 1) % 3;
        message(fmt::format("time: {}", kTimeNames[time_]), false);
        return;
      case 'd':
        show_decrypted_ = !show_decrypted_;
        message(show_decrypted_ ? "bytes: decrypted inner packet (d: frame)" : "bytes: frame (d: decrypted)", false);
        hex_top_ = 0;
        return;
      case 'z': zoom_ = !zoom_; return;
      case 'p':
      case ' ':
        if (ch == ' ' && focus_ == Pane::tree) break;
        paused_ = !paused_;
        frozen_ = model_->rows().size();
        if (!paused_ && model_->live()) follow_ = true;
        if (paused_) follow_ = false;
        message(paused_ ? "paused: the list holds still (p resumes)" : "resumed", false);
        return;
      case 's':
        if (model_->live()) {
          model_->stop();
          message("capture stopped; what was captured stays", false);
        }
        return;
      default: break;
    }
    if (focus_ == Pane::list) {
      if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
        focus_ = Pane::tree;
        return;
      }
      scroll_sideways(ch);
      const std::size_t before = sel_;
      move_in(ch, sel_, count(), static_cast<std::size_t>(std::max(1, list_rows_)));
      if (ch == KEY_END && model_->live())
        follow_ = true;
      else if (sel_ != before || ch == KEY_UP || ch == KEY_PPAGE || ch == KEY_HOME)
        follow_ = follow_ && sel_ + 1 == count();
    } else if (focus_ == Pane::tree) {
      tree_key(ch);
    } else {
      const std::size_t lines = (hex_size_ + hex_per_line_ - 1) / hex_per_line_;
      move_in(ch, hex_top_, lines, static_cast<std::size_t>(std::max(1, hex_rows_)));
      if (ch == 27) focus_ = Pane::list;
    }
  }

  void tree_key(int ch) {
    if (flat_.empty()) return;
    const FlatNode& cur = flat_[tree_sel_];
    switch (ch) {
      case KEY_RIGHT:
      case '\n':
      case '\r':
      case KEY_ENTER:
      case ' ':
        if (!cur.node->children.empty() && (ch != KEY_RIGHT || collapsed(cur))) toggle(cur);
        return;
      case KEY_LEFT:
        if (!cur.node->children.empty() && !collapsed(cur)) {
          toggle(cur);
        } else {
          for (std::size_t i = tree_sel_; i-- > 0;) {
            if (flat_[i].depth < cur.depth) {
              tree_sel_ = i;
              break;
            }
          }
        }
        return;
      case 'e':
        expand_all_ = !expand_all_;
        toggled_.clear();
        flatten();
        return;
      case 27: focus_ = Pane::list; return;
      default: break;
    }
    move_in(ch, tree_sel_, flat_.size(), static_cast<std::size_t>(std::max(1, tree_rows_)));
    hex_top_ = kAutoScroll;
  }

  void ike_key(int ch) {
    if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
      if (model_ == nullptr || ike_count_ == 0) return;
      FilterError e;
      // The negotiation's own frame list: the IKE_AUTH exchange belongs to
      // the IKE SA and to the first CHILD SA alike.
      std::string frames;
      {
        auto lock = model_->lock();
        const auto& negs = model_->analyzer().negotiations();
        if (ike_sel_ >= negs.size()) return;
        for (const auto f : negs[ike_sel_].frames) frames += fmt::format("{}{}", frames.empty() ? "" : " ", f);
      }
      auto f = DisplayFilter::parse(fmt::format("frame in {{{}}}", frames), e);
      if (f) {
        apply_filter(std::move(*f));
        select_frame(0, false);
        screen_ = Screen::packets;
        focus_ = Pane::list;
        message(fmt::format("the packets of negotiation {} (/ to change the filter)", ike_sel_ + 1), false);
      }
      return;
    }
    table_key(ch, ike_sel_, ike_count_);
  }

  void find_next(bool forward) {
    if (find_.empty()) {
      message("no search yet: f sets one", true);
      return;
    }
    const std::size_t n = count();
    if (n == 0) return;
    const auto& rows = model_->rows();
    for (std::size_t step = 1; step <= n; ++step) {
      const std::size_t pos = forward ? (sel_ + step) % n : (sel_ + n - step % n) % n;
      const std::size_t r = row_at(pos);
      if (find_.matches(rows[r], r + 1, model_->addresses())) {
        if (forward ? pos <= sel_ : pos >= sel_) message("search wrapped around", false);
        sel_ = pos;
        follow_ = false;
        return;
      }
    }
    message(fmt::format("no displayed frame matches '{}'", find_.text()), true);
  }

  // ---------------------------------------------------------- prompts

  void start_prompt(Prompt p, std::string initial) {
    prompt_ = p;
    input_ = std::move(initial);
    check_input();
  }

  void check_input() {
    input_error_.clear();
    if (prompt_ == Prompt::filter || prompt_ == Prompt::find) {
      FilterError e;
      if (!DisplayFilter::parse(input_, e)) {
        // Counted in characters, as the user sees the input.
        input_error_ =
            fmt::format("at {}: {}", display_width(std::string_view(input_).substr(0, e.position)) + 1, e.message);
      }
    }
  }

  void prompt_key(int ch) {
    if (ch == 27) {
      prompt_ = Prompt::none;
      return;
    }
    if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
      // A whole character: its UTF-8 continuation bytes, then its lead.
      while (!input_.empty() && (static_cast<unsigned char>(input_.back()) & 0xc0) == 0x80) input_.pop_back();
      if (!input_.empty()) input_.pop_back();
    } else if (ch == 21) {  // Ctrl-U
      input_.clear();
    } else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
      accept_prompt();
      return;
    } else if ((ch >= 32 && ch < 127) || (ch >= 0x80 && ch <= 0xff)) {
      // getch() hands over a non-ASCII character (in the UTF-8 locale set
      // at start) one byte at a time; keys are codes above 0xff.
      input_ += static_cast<char>(ch);
    }
    check_input();
  }

  void accept_prompt() {
    const Prompt p = prompt_;
    if ((p == Prompt::filter || p == Prompt::find) && !input_error_.empty()) return;  // stays open, error shown
    prompt_ = Prompt::none;
    switch (p) {
      case Prompt::filter: {
        FilterError e;
        apply_filter(*DisplayFilter::parse(input_, e));
        message(filtered_ ? fmt::format("{} of {} frames match ({:.1f} ms)", count(), available(), filter_ms_)
                          : "filter cleared",
                false);
        break;
      }
      case Prompt::find: {
        FilterError e;
        find_ = *DisplayFilter::parse(input_, e);
        find_next(true);
        break;
      }
      case Prompt::go: {
        std::uint64_t n = 0;
        try {
          n = std::stoull(input_);
        } catch (const std::exception&) {
          message(fmt::format("'{}' is not a frame number", input_), true);
          break;
        }
        follow_ = false;
        if (select_frame(n, true)) message(fmt::format("frame {}", n), false);
        break;
      }
      case Prompt::save: save(false); break;
      case Prompt::save_decrypted: save(true); break;
      case Prompt::refresh: {
        try {
          const double v = std::stod(input_);
          if (v < 1 || v > 3600) throw std::out_of_range("range");
          refresh_ = v;
          message(fmt::format("refresh every {:g} s", refresh_), false);
        } catch (const std::exception&) {
          message(fmt::format("refresh interval '{}': give seconds from 1 to 3600", input_), true);
        }
        break;
      }
      case Prompt::none: break;
    }
  }

  // w / W never replace a file unasked, and never the capture on screen:
  // its frames are read from it, and it would be lost.
  void save(bool decrypted) {
    if (input_.empty()) return;
    std::error_code ec;
    if (!model_->live() && std::filesystem::equivalent(input_, model_->name(), ec)) {
      message(fmt::format("'{}' is the capture being shown; save to another file", input_), true);
      return;
    }
    if (std::filesystem::exists(std::filesystem::symlink_status(input_, ec))) {
      overwrite_ = decrypted;
      message(fmt::format("'{}' exists: overwrite it? (y/n)", input_), true);
      return;
    }
    write_pcap(decrypted);
  }

  void write_pcap(bool decrypted) {
    const std::size_t n = count();
    if (n == 0) {
      message("nothing displayed to save", true);
      return;
    }
    try {
      const auto& rows = model_->rows();
      const std::uint32_t linktype =
          decrypted ? static_cast<std::uint32_t>(dissect::LinkType::raw) : rows[row_at(0)].linktype;
      capture::PcapWriter w(input_, linktype);
      std::uint64_t skipped = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t r = row_at(i);
        const Row& row = rows[r];
        if (decrypted) {
          // As `verify -w`: only what verified (a replayed packet decrypts,
          // but it is not traffic the receiver would accept).
          if (row.kind != FrameKind::esp && row.kind != FrameKind::ah) continue;
          if (row.verdict != static_cast<std::uint8_t>(ipsec::Verdict::ok)) {
            ++skipped;
            continue;
          }
          const std::vector<std::uint8_t> inner = model_->decrypted(r + 1);
          if (inner.empty()) {
            ++skipped;
            continue;
          }
          w.write(row.ts_ns, inner);
        } else {
          if (row.linktype != linktype) {
            ++skipped;
            continue;
          }
          w.write(row.ts_ns, dissect::Bytes(row.data, row.caplen), row.orig_len);
        }
      }
      const std::uint64_t written = w.frames();
      w.close();
      message(fmt::format("wrote {} {}frames to {}{}", written, decrypted ? "decrypted " : "", input_,
                          skipped != 0 ? fmt::format(" ({} skipped: {})", skipped,
                                                     decrypted ? "not verified" : "another link type")
                                       : ""),
              false);
    } catch (const std::exception& e) {
      message(e.what(), true);
    }
  }

  void message(std::string text, bool error) {
    message_ = std::move(text);
    message_error_ = error;
  }

  // ---------------------------------------------------------- data for the tables

  void refresh_data() {
    last_refresh_ = Clock::now();
    updated_ = std::time(nullptr);
    if (model_ == nullptr) {
      // What cannot be fetched or read leaves the last tables on screen,
      // with the reason in the status line.
      try {
        const json snapshot = json::parse(enforce::fetch_stats(opt_.attach_socket));
        if (snapshot.contains("error")) throw std::runtime_error(snapshot["error"].get<std::string>());
        try {
          stat_sections_ = stat_sections_from_snapshot(snapshot);
        } catch (const json::exception& e) {
          throw std::runtime_error(
              fmt::format("the enforcement sent statistics this version cannot read: {}", e.what()));
        }
        sa_lines_ = sa_lines_from_snapshot(snapshot);
        attach_error_.clear();
      } catch (const std::exception& e) {
        attach_error_ = e.what();
      }
    } else {
      auto lock = model_->lock();
      sa_lines_ = sa_lines_from_sad(model_->sad());
      lock.unlock();
      stat_sections_ = stat_sections_from_model(model_->statistics());
    }
  }

  // ---------------------------------------------------------- drawing

  void draw() {
    erase();
    widest_ = 0;
    curs_set(0);
    draw_title();
    switch (screen_) {
      case Screen::packets: draw_packets(); break;
      case Screen::sas: draw_sas(); break;
      case Screen::stats: draw_stats(); break;
      case Screen::ike: draw_ike(); break;
      case Screen::help: draw_help(); break;
    }
    draw_bar();
    refresh();
  }

  void draw_title() {
    static constexpr const char* kNames[] = {"1 Packets", "2 SAs", "3 Statistics", "4 IKE", "? Help"};
    put(0, 0, COLS, "", color(Terminal::kTitle));
    int x = 0;
    put(0, x, 10, " ipsentry ", color(Terminal::kTitle) | A_BOLD, false);
    x += 10;
    for (int i = 0; i < 5; ++i) {
      const bool on = static_cast<int>(screen_) == i;
      const std::string label = fmt::format(" {} ", kNames[i]);
      put(0, x, static_cast<int>(label.size()), label, on ? A_REVERSE | A_BOLD : color(Terminal::kTitle), false);
      x += static_cast<int>(label.size());
    }
    const std::string what = model_ != nullptr ? model_->name() : "attached: " + opt_.attach_socket;
    put(0, x + 1, COLS - x - 1, what, color(Terminal::kTitle));
  }

  void draw_bar() {
    const int y = LINES - 1;
    if (prompt_ != Prompt::none) {
      static constexpr const char* kLabels[] = {"",
                                                "Filter: ",
                                                "Find: ",
                                                "Go to frame: ",
                                                "Save displayed frames to: ",
                                                "Save decrypted frames to: ",
                                                "Refresh every (s): "};
      const std::string label = kLabels[static_cast<int>(prompt_)];
      // Input longer than the line scrolls: its end stays in view with the
      // cursor after it, "…" standing for what went off the left. What the
      // filter says about it then goes on the line above.
      const int label_w = static_cast<int>(display_width(label));
      const int input_w = static_cast<int>(display_width(input_));
      const int room = std::max(1, COLS - 1 - label_w);
      std::string shown = input_;
      int cx = label_w + input_w;
      if (input_w > room) {
        shown = "…" + input_.substr(byte_offset(input_, static_cast<std::size_t>(input_w - room + 1)));
        cx = label_w + room;
      }
      put(y, 0, COLS, label + shown, A_BOLD);
      std::string verdict;
      attr_t verdict_attr = color(Terminal::kOk);
      if (!input_error_.empty()) {
        verdict = input_error_;
        verdict_attr = color(Terminal::kError);
      } else if ((prompt_ == Prompt::filter || prompt_ == Prompt::find) && !input_.empty()) {
        verdict = "ok (Enter applies, Esc cancels)";
      }
      if (!verdict.empty()) {
        if (cx + 2 + static_cast<int>(display_width(verdict)) <= COLS) {
          put(y, cx + 2, COLS - cx - 2, verdict, verdict_attr);
        } else {
          put(y - 1, 0, COLS, verdict, verdict_attr);
        }
      }
      move(y, std::min(cx, COLS - 1));
      curs_set(1);
      return;
    }
    if (!message_.empty()) {
      put(y, 0, COLS, message_, message_error_ ? color(Terminal::kError) : A_BOLD);
    } else if (screen_ == Screen::packets && tree_sel_ < flat_.size() &&
               flat_[tree_sel_].node->text.size() + static_cast<std::size_t>(flat_[tree_sel_].depth) * 2 + 2 >
                   static_cast<std::size_t>(COLS)) {
      // A tree line cut at the edge: the bar shows the rest of it.
      const std::string& text = flat_[tree_sel_].node->text;
      const std::size_t shown = static_cast<std::size_t>(std::max(0, COLS - flat_[tree_sel_].depth * 2 - 3));
      put(y, 0, COLS, "…" + text.substr(byte_offset(text, shown)), A_BOLD);
    } else {
      put(y, 0, COLS, "q quit  ? help  Tab pane  / filter  f find  g go to  t time  d decrypted  w save  1-4 screens",
          A_DIM);
    }
  }

  void draw_status(int y, const std::string& left) {
    std::string s = left;
    if (model_ != nullptr) s += "  │ " + model_->status();
    put(y, 0, COLS, s, A_REVERSE);
  }

  // The packet list, tree and hex panes.
  void draw_packets() {
    if (model_ == nullptr) {
      put(2, 2, COLS - 4, "Attached to a running enforcement: no packets are captured here.");
      put(3, 2, COLS - 4,
          "Press 2 for the SA monitor and 3 for the statistics; 'ipsentry tui -i IFACE' shows traffic.");
      draw_status(LINES - 2, "");
      return;
    }
    const int body = LINES - 3;
    int list_h = body * 45 / 100, tree_h = body * 30 / 100;
    int hex_h = body - list_h - tree_h;
    if (zoom_) {
      list_h = focus_ == Pane::list ? body : 0;
      tree_h = focus_ == Pane::tree ? body : 0;
      hex_h = focus_ == Pane::hex ? body : 0;
    }
    int y = 1;
    if (list_h > 0) draw_list(y, list_h);
    y += list_h;
    update_detail();
    if (tree_h > 0) draw_tree(y, tree_h);
    y += tree_h;
    if (hex_h > 0) draw_hex(y, hex_h);
    std::string left = fmt::format(" {} of {} frames", count(), model_->rows().size());
    if (filtered_) left += fmt::format("  │ filter: {} ({:.1f} ms)", filter_.text(), filter_ms_);
    left += fmt::format("  │ time: {}", kTimeNames[time_]);
    if (paused_)
      left += "  │ PAUSED";
    else if (follow_)
      left += "  │ following";
    draw_status(LINES - 2, left);
  }

  std::string time_text(const Row& r, std::size_t pos) const {
    const auto& rows = model_->rows();
    std::int64_t t = r.ts_ns;
    if (time_ == 0) t -= rows[0].ts_ns;
    if (time_ == 2) t -= pos == 0 ? r.ts_ns : rows[row_at(pos - 1)].ts_ns;
    if (time_ == 1) {
      std::time_t sec = static_cast<std::time_t>(t / 1'000'000'000);
      std::tm tm{};
      gmtime_r(&sec, &tm);
      char buf[32];
      std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
      return fmt::format("{}.{:06d}", buf, (t % 1'000'000'000) / 1000);
    }
    const char* sign = t < 0 ? "-" : "";
    t = std::abs(t);
    return fmt::format("{}{}.{:06d}", sign, t / 1'000'000'000, (t % 1'000'000'000) / 1000);
  }

  std::string address(std::uint32_t id) const {
    if (id == 0) return "";
    char buf[64];
    const std::size_t n = model_->addresses().at(id).format(buf, sizeof buf);
    return std::string(buf, n);
  }

  void draw_list(int y, int h) {
    list_rows_ = h - 1;
    const std::size_t n = count();
    if (sel_ >= n && n != 0) sel_ = n - 1;
    if (sel_ < top_) top_ = sel_;
    if (sel_ >= top_ + static_cast<std::size_t>(list_rows_)) top_ = sel_ - list_rows_ + 1;
    if (follow_ && n > static_cast<std::size_t>(list_rows_)) top_ = n - list_rows_;
    // Keep the pane full when it grew (a resize) or the list shrank.
    if (top_ + static_cast<std::size_t>(list_rows_) > n)
      top_ = n > static_cast<std::size_t>(list_rows_) ? n - list_rows_ : 0;
    const auto& rows = model_->rows();
    const std::size_t end = std::min(n, top_ + static_cast<std::size_t>(list_rows_));
    // Columns sized for what is on screen.
    std::size_t aw = 15;
    std::size_t nw = std::max<std::size_t>(3, fmt::formatted_size("{}", model_->rows().size()));
    for (std::size_t pos = top_; pos < end; ++pos) {
      const Row& r = rows[row_at(pos)];
      aw = std::max({aw, address(r.addr[0]).size(), address(r.addr[1]).size()});
    }
    const std::size_t tw = time_ == 1 ? 15 : 11;
    // Room for "cleartext-allowed" when the audit may name one.
    const std::size_t vw = model_->audited() ? 17 : 12;
    const std::string header =
        fmt::format("{:>{}} {:<{}} {:<{}} {:<{}} {:<7} {:<{}} {:<10} {:>10} {}", "No.", nw, "Time", tw, "Source", aw,
                    "Destination", aw, "Proto", "Verdict", vw, "SPI", "Seq", "Info");
    put(y, 0, COLS, shifted(header), A_BOLD | A_UNDERLINE);
    if (n == 0) {
      put(y + 1, 1, COLS - 2,
          rows.size() == 0 ? (model_->done() ? "the capture holds no frames" : "waiting for frames…")
                           : "no frame matches the filter",
          A_DIM);
    }
    for (std::size_t pos = top_; pos < end; ++pos) {
      const std::size_t ri = row_at(pos);
      const Row& r = rows[ri];
      const std::string line = fmt::format(
          "{:>{}} {:<{}} {:<{}} {:<{}} {:<7} {:<{}} {:<10} {:>10} {}", ri + 1, nw, time_text(r, pos), tw,
          address(r.addr[0]), aw, address(r.addr[1]), aw, proto_text(r), verdict_text(r), vw,
          (r.flags & row_flag::has_spi) != 0 ? fmt::format("0x{:08x}", r.spi) : "",
          (r.flags & row_flag::has_seq) != 0 ? fmt::format("{}", r.seq) : "",
          (r.flags & row_flag::trigger) != 0 ? "▶ trigger │ " + model_->info(ri + 1) : model_->info(ri + 1));
      attr_t a = (r.flags & row_flag::trigger) != 0 ? color(Terminal::kMark) | A_BOLD : row_color(r);
      if (pos == sel_) a |= A_REVERSE | (focus_ == Pane::list ? A_BOLD : A_NORMAL);
      put(y + 1 + static_cast<int>(pos - top_), 0, COLS, shifted(line), a);
    }
  }

  std::string shifted(const std::string& s) {
    // Horizontal scrolling by display columns (the text is mostly ASCII;
    // multi-byte characters count as one column).
    widest_ = std::max(widest_, display_width(s));
    return s.substr(byte_offset(s, static_cast<std::size_t>(hscroll_[static_cast<std::size_t>(screen_)])));
  }

  static std::string proto_text(const Row& r) {
    switch (r.kind) {
      case FrameKind::esp: return (r.flags & row_flag::udp_encap) != 0 ? "ESP/UDP" : "ESP";
      case FrameKind::ah: return "AH";
      case FrameKind::ike: return (r.flags & row_flag::ike_v2) != 0 ? "IKEv2" : "IKEv1";
      case FrameKind::nat_keepalive: return "NAT-KA";
      case FrameKind::non_ip: return "non-IP";
      default: break;
    }
    const char* n = dissect::ip_protocol_name(r.l4);
    if ((r.flags & (row_flag::ipv4 | row_flag::ipv6)) == 0) return "?";
    return n != nullptr ? n : fmt::format("{}", r.l4);
  }

  /// Whether the verdict column shows the audit's verdict: an IPsec or IKE
  /// failure is named first (the audit judges only what opened), the audit
  /// then replaces "ok" or the frame kind.
  static bool shows_audit(const Row& r) {
    return audit_shown(r) && (r.verdict == kNoVerdict || r.verdict == static_cast<std::uint8_t>(ipsec::Verdict::ok));
  }

  static std::string verdict_text(const Row& r) {
    if (shows_audit(r)) return std::string(capture::audit_name(audit_of(r)));
    if (r.kind == FrameKind::ike && r.verdict != kNoVerdict) {
      return std::string(ike::verdict_name(static_cast<ike::MessageVerdict>(r.verdict)));
    }
    if (r.verdict != kNoVerdict) return std::string(ipsec::verdict_name(static_cast<ipsec::Verdict>(r.verdict)));
    switch (r.kind) {
      case FrameKind::cleartext: return "cleartext";
      case FrameKind::nat_keepalive: return "keepalive";
      case FrameKind::malformed: return "malformed";
      default: return "-";
    }
  }

  static attr_t row_color(const Row& r) {
    using V = ipsec::Verdict;
    if (shows_audit(r)) {
      return capture::flagged(audit_of(r)) ? color(Terminal::kFail) | A_BOLD : color(Terminal::kUnknown);
    }
    if (r.kind == FrameKind::ike) {
      return r.verdict == static_cast<std::uint8_t>(V::ok) || r.verdict == kNoVerdict ? color(Terminal::kIke)
             : r.verdict == static_cast<std::uint8_t>(V::unverifiable)                ? color(Terminal::kUnknown)
                                                                                      : color(Terminal::kFail);
    }
    if (r.verdict == kNoVerdict) {
      if (r.kind == FrameKind::malformed) return color(Terminal::kFail);
      return r.kind == FrameKind::cleartext ? A_NORMAL : color(Terminal::kDim);
    }
    switch (static_cast<V>(r.verdict)) {
      case V::ok: return color(Terminal::kOk);
      case V::replay: return color(Terminal::kReplay);
      case V::unknown_spi:
      case V::unverifiable:
      case V::unsupported: return color(Terminal::kUnknown);
      default: return color(Terminal::kFail) | A_BOLD;
    }
  }

  void update_detail() {
    const std::uint64_t number = count() != 0 ? row_at(sel_) + 1 : 0;
    if (number == detail_frame_) return;
    detail_frame_ = number;
    tree_ = dissect::Tree{};
    if (number != 0) model_->tree(number, tree_);
    const std::string keep = tree_sel_ < flat_.size() ? flat_[tree_sel_].path : "";
    flatten();
    // The node the user chose stays selected from frame to frame (the SPI,
    // say); otherwise the verdict, the first thing to read.
    tree_sel_ = 0;
    bool kept = false;
    for (std::size_t i = 0; i < flat_.size() && keep != "0"; ++i) {
      if (flat_[i].path == keep) {
        tree_sel_ = i;
        kept = true;
      }
    }
    for (std::size_t i = 0; i < flat_.size() && !kept; ++i) {
      if (is_verdict(*flat_[i].node)) {
        tree_sel_ = i;
        break;
      }
    }
    // The pane starts at the IPsec or IKE header that holds the selected
    // node when that leaves room below it for what follows (the decrypted
    // layers); otherwise one line above the selected node.
    tree_top_ = tree_sel_ == 0 ? 0 : tree_sel_ - 1;
    for (std::size_t i = tree_sel_ + 1; i-- > 0 && !flat_.empty();) {
      const dissect::NodeRole r = flat_[i].node->role;
      if (r == dissect::NodeRole::ipsec_header || r == dissect::NodeRole::ike_message) {
        if (tree_sel_ - i <= static_cast<std::size_t>(std::max(1, tree_rows_)) / 3) tree_top_ = i;
        break;
      }
    }
    hex_top_ = kAutoScroll;
  }

  void flatten() {
    flat_.clear();
    if (detail_frame_ == 0) return;
    add_flat(tree_.root, 0, "0");
    tree_sel_ = std::min(tree_sel_, flat_.empty() ? 0 : flat_.size() - 1);
  }

  // Like Wireshark, layers start collapsed to one line each, except what
  // this tool is about: the IPsec header with its verdict, the decrypted
  // inner packet and the IKE message.
  static bool open_by_default(const dissect::Node& n, int depth) {
    if (depth == 0) return true;
    // An IKE message's verdict holds its decrypted payloads.
    return n.role == dissect::NodeRole::ipsec_header || n.role == dissect::NodeRole::decrypted_packet ||
           n.role == dissect::NodeRole::ike_message || is_verdict(n);
  }

  static bool is_verdict(const dissect::Node& n) {
    return n.role == dissect::NodeRole::verdict_ok || n.role == dissect::NodeRole::verdict_failed;
  }

  [[nodiscard]] bool collapsed(const FlatNode& f) const {
    if (f.node->children.empty()) return false;
    const bool open = expand_all_ || open_by_default(*f.node, f.depth);
    return open == (toggled_.count(f.path) != 0);
  }

  void toggle(const FlatNode& f) {
    if (toggled_.erase(f.path) == 0) toggled_.insert(f.path);
    flatten();
  }

  void add_flat(const dissect::Node& n, int depth, const std::string& path) {
    flat_.push_back({&n, depth, path});
    if (collapsed(flat_.back())) return;
    for (std::size_t i = 0; i < n.children.size(); ++i)
      add_flat(n.children[i], depth + 1, fmt::format("{}/{}", path, i));
  }

  void draw_tree(int y, int h) {
    tree_rows_ = h - 1;
    const std::string title = detail_frame_ != 0 ? fmt::format("─ Frame {} ", detail_frame_) : "─ ";
    put(y, 0, COLS, title + std::string(), focus_ == Pane::tree ? A_BOLD | A_REVERSE : A_BOLD);
    if (flat_.empty()) return;
    // No empty rows at the bottom while lines above are hidden.
    if (flat_.size() < tree_top_ + static_cast<std::size_t>(tree_rows_))
      tree_top_ = flat_.size() > static_cast<std::size_t>(tree_rows_) ? flat_.size() - tree_rows_ : 0;
    if (tree_sel_ < tree_top_) tree_top_ = tree_sel_;
    if (tree_sel_ >= tree_top_ + static_cast<std::size_t>(tree_rows_)) tree_top_ = tree_sel_ - tree_rows_ + 1;
    for (int i = 0; i < tree_rows_; ++i) {
      const std::size_t idx = tree_top_ + static_cast<std::size_t>(i);
      if (idx >= flat_.size()) break;
      const FlatNode& f = flat_[idx];
      const char* mark = f.node->children.empty() ? "  " : collapsed(f) ? "+ " : "- ";
      std::string line = std::string(static_cast<std::size_t>(f.depth) * 2, ' ') + mark + f.node->text;
      attr_t a = A_NORMAL;
      if (f.node->role == dissect::NodeRole::verdict_ok) a = color(Terminal::kOk);
      if (f.node->role == dissect::NodeRole::verdict_failed) a = color(Terminal::kFail) | A_BOLD;
      if (f.node->role == dissect::NodeRole::attention) a = color(Terminal::kMark) | A_BOLD;
      if (idx == tree_sel_) a |= A_REVERSE | (focus_ == Pane::tree ? A_BOLD : A_NORMAL);
      put(y + 1 + i, 0, COLS, line, a);
    }
  }

  void draw_hex(int y, int h) {
    hex_rows_ = h - 1;
    const dissect::Node* node = tree_sel_ < flat_.size() ? flat_[tree_sel_].node : nullptr;
    std::uint16_t buffer = node != nullptr ? node->buffer : 0;
    if (show_decrypted_ && buffer == 0 && !tree_.buffers.empty()) buffer = 1;
    if (buffer > tree_.buffers.size()) buffer = 0;
    dissect::Bytes bytes;
    if (detail_frame_ != 0) {
      bytes = buffer == 0 ? model_->frame(detail_frame_).data : dissect::Bytes(tree_.buffers[buffer - 1]);
    }
    hex_size_ = bytes.size();
    std::size_t hl_from = 0, hl_to = 0;  // highlighted [from, to)
    if (node != nullptr && node->buffer == buffer && node != &tree_.root && node->length != 0) {
      hl_from = node->offset;
      hl_to = std::min<std::size_t>(bytes.size(), std::size_t{node->offset} + node->length);
    }
    const bool ike = detail_frame_ != 0 && model_->rows()[detail_frame_ - 1].kind == FrameKind::ike;
    std::string title = fmt::format("─ {} ({} bytes)",
                                    buffer == 0 ? "Frame bytes"
                                    : ike       ? "Decrypted IKE payloads"
                                                : "Decrypted inner packet",
                                    bytes.size());
    if (hl_to > hl_from)
      title += fmt::format(" │ selected: 0x{:04x}-0x{:04x} ({} bytes)", hl_from, hl_to - 1, hl_to - hl_from);
    if (buffer == 0 && !tree_.buffers.empty()) title += " │ d: decrypted";
    put(y, 0, COLS, title, focus_ == Pane::hex ? A_BOLD | A_REVERSE : A_BOLD);
    // 16 bytes a line need 72 columns: a narrower terminal gets 8, 4, 2 or
    // 1 a line rather than bytes drawn past its edge. The top line is kept
    // on the same byte when the count changes.
    std::size_t per_line = 16;
    while (per_line > 1 && hex_line_width(per_line) > COLS) per_line /= 2;
    if (per_line != hex_per_line_ && hex_top_ != kAutoScroll) hex_top_ = hex_top_ * hex_per_line_ / per_line;
    hex_per_line_ = per_line;
    const std::size_t lines = (bytes.size() + per_line - 1) / per_line;
    if (hex_top_ == kAutoScroll) {
      hex_top_ = hl_to > hl_from ? hl_from / per_line : 0;
      if (hex_top_ + static_cast<std::size_t>(hex_rows_) > lines)
        hex_top_ = lines > static_cast<std::size_t>(hex_rows_) ? lines - hex_rows_ : 0;
      if (hl_to > hl_from && hex_top_ > hl_from / per_line) hex_top_ = hl_from / per_line;
    }
    const int ascii_x = hex_line_width(per_line) - static_cast<int>(per_line);
    for (int i = 0; i < hex_rows_; ++i) {
      const std::size_t line = hex_top_ + static_cast<std::size_t>(i);
      if (line >= lines) break;
      const int yy = y + 1 + i;
      put(yy, 0, COLS, fmt::format("{:04x} ", line * per_line));
      for (std::size_t k = 0; k < per_line; ++k) {
        const std::size_t at = line * per_line + k;
        if (at >= bytes.size()) break;
        const bool on = at >= hl_from && at < hl_to;
        const int x = 6 + static_cast<int>(k) * 3 + (k >= 8 ? 1 : 0);
        const attr_t a = on ? A_REVERSE | A_BOLD : A_NORMAL;
        put(yy, x, 2, fmt::format("{:02x}", bytes[at]), a, false);
        const char c = bytes[at] >= 32 && bytes[at] < 127 ? static_cast<char>(bytes[at]) : '.';
        put(yy, ascii_x + static_cast<int>(k), 1, std::string_view(&c, 1), a, false);
      }
    }
  }

  // Columns of a hex line: offset, the bytes (a gap after the eighth), a
  // space, their characters.
  static int hex_line_width(std::size_t per_line) {
    const int n = static_cast<int>(per_line);
    return 6 + 3 * n + (per_line > 8 ? 1 : 0) + 1 + n;
  }

  // ---------------------------------------------------------- tables

  void draw_table(const std::vector<std::string>& lines, std::size_t header_lines, std::size_t& sel, bool selectable,
                  const std::string& status, const std::vector<attr_t>* attrs = nullptr) {
    const int h = LINES - 3;
    for (std::size_t i = 0; i < header_lines && static_cast<int>(i) < h; ++i) {
      put(1 + static_cast<int>(i), 0, COLS, shifted(lines[i]), A_BOLD);
    }
    const std::size_t body = lines.size() - header_lines;
    const int rows = h - static_cast<int>(header_lines);
    std::size_t top = 0;
    if (selectable) {
      if (sel >= body && body != 0) sel = body - 1;
      if (sel >= static_cast<std::size_t>(rows)) top = sel - rows + 1;
    } else {
      top = body > static_cast<std::size_t>(rows) ? std::min(sel, body - rows) : 0;
      sel = top;
    }
    for (int i = 0; i < rows; ++i) {
      const std::size_t idx = top + static_cast<std::size_t>(i);
      if (idx >= body) break;
      attr_t a = attrs != nullptr && idx < attrs->size() ? (*attrs)[idx] : A_NORMAL;
      if (selectable && idx == sel) a |= A_REVERSE;
      put(1 + static_cast<int>(header_lines) + i, 0, COLS, shifted(lines[header_lines + idx]), a);
    }
    draw_status(LINES - 2, status);
  }

  std::string refresh_status() const {
    char buf[16];
    std::tm tm{};
    localtime_r(&updated_, &tm);
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    std::string s = fmt::format(" refresh every {:g} s (+/- or r)  │ updated {}", refresh_, buf);
    if (!attach_error_.empty()) s += "  │ " + attach_error_;
    return s;
  }

  void draw_sas() {
    std::vector<std::string> lines = sa_table(sa_lines_);
    if (sa_lines_.empty()) lines.emplace_back(model_ != nullptr ? "  no SAs configured (-c CONFIG)" : "  no SAs");
    draw_table(lines, 1, sa_sel_, !sa_lines_.empty(), refresh_status());
  }

  void draw_stats() {
    std::vector<std::string> lines;
    std::vector<attr_t> attrs;
    for (const auto& sec : stat_sections_) {
      lines.push_back(sec.title);
      attrs.push_back(A_BOLD | A_UNDERLINE);
      for (const auto& [name, value] : sec.rows) {
        lines.push_back(fmt::format("  {:<40}{:>16}", name, value));
        attrs.push_back(A_NORMAL);
      }
      lines.emplace_back();
      attrs.push_back(A_NORMAL);
    }
    stats_lines_ = lines.size();
    lines.insert(lines.begin(), std::string());
    draw_table(lines, 1, stats_top_, false, refresh_status(), &attrs);
  }

  void draw_ike() {
    // Outcome first after the exchange, so 80 columns show how it ended.
    using dissect::Align;
    const std::vector<dissect::TableColumn> cols{{"#", Align::right},
                                                 {"Ver"},
                                                 {"Exchange"},
                                                 {"Outcome"},
                                                 {"Seconds", Align::right},
                                                 {"Frames", Align::right},
                                                 {"Initiator → Responder"},
                                                 {"Chosen proposal / reason"}};
    std::vector<std::vector<std::string>> rows;
    std::vector<attr_t> attrs;
    if (model_ != nullptr) {
      auto lock = model_->lock();
      const auto& negs = model_->analyzer().negotiations();
      ike_count_ = negs.size();
      for (const auto& n : negs) {
        std::string what = n.proposal;
        if (!n.reason.empty()) what += (what.empty() ? "" : "; ") + n.reason;
        rows.push_back({fmt::format("{}", rows.size() + 1), fmt::format("v{}", n.version), n.kind,
                        ike::to_string(n.outcome), fmt::format("{:.3f}", n.duration()),
                        fmt::format("{}", n.frames.size()), n.initiator.str() + " → " + n.responder.str(), what});
        attrs.push_back(n.outcome == ike::Outcome::established ? color(Terminal::kOk)
                        : n.outcome == ike::Outcome::failed    ? color(Terminal::kFail)
                                                               : color(Terminal::kUnknown));
      }
    }
    std::vector<std::string> lines = dissect::text_table(cols, rows, 2);
    if (ike_count_ == 0) {
      lines.emplace_back(model_ != nullptr ? "  no IKE negotiations in this capture"
                                           : "  enforcement uses manual keys: no IKE negotiations");
    }
    draw_table(lines, 1, ike_sel_, ike_count_ != 0, " Enter: the negotiation's packets", &attrs);
  }

  void draw_help() {
    const std::vector<std::string> lines = wrap_lines(help_text(), static_cast<std::size_t>(std::max(COLS, 1)));
    help_lines_ = lines.size();
    std::vector<std::string> with_header{"ipsentry tui — keys (Esc or ? returns)"};
    with_header.insert(with_header.end(), lines.begin(), lines.end());
    draw_table(with_header, 1, help_top_, false, " PgUp PgDn Home End scroll  │ Esc or ? returns");
  }

  static constexpr std::size_t kAutoScroll = static_cast<std::size_t>(-1);
  static constexpr const char* kTimeNames[] = {"relative", "absolute (UTC)", "delta"};

  AppOptions opt_;
  Model* model_;
  Screen screen_ = Screen::packets;
  Screen back_ = Screen::packets;
  Pane focus_ = Pane::list;
  int time_ = 0;
  bool zoom_ = false;
  int trigger_state_ = 0;         // 0: none seen, 1: fired, 2: the capture it stopped has ended
  std::array<int, 5> hscroll_{};  // by Screen
  std::size_t widest_ = 0;        // display columns of the widest line drawn

  bool filtered_ = false;
  DisplayFilter filter_;
  double filter_ms_ = 0;
  std::vector<std::uint32_t> shown_;
  std::size_t evaluated_ = 0;
  std::size_t sel_ = 0;
  std::size_t top_ = 0;
  bool follow_ = false;
  bool paused_ = false;
  std::size_t frozen_ = 0;
  int list_rows_ = 1;
  DisplayFilter find_;

  std::uint64_t detail_frame_ = 0;
  dissect::Tree tree_;
  std::vector<FlatNode> flat_;
  std::set<std::string> toggled_;  // nodes the user opened or closed against the default
  bool expand_all_ = false;
  std::size_t tree_sel_ = 0;
  std::size_t tree_top_ = 0;
  int tree_rows_ = 1;
  bool show_decrypted_ = false;
  std::size_t hex_top_ = 0;
  std::size_t hex_size_ = 0;
  std::size_t hex_per_line_ = 16;
  int hex_rows_ = 1;

  Prompt prompt_ = Prompt::none;
  std::optional<bool> overwrite_;  // waiting for y/n to replace input_ (decrypted frames or not)
  std::string input_;
  std::string input_error_;
  std::string message_;
  bool message_error_ = false;

  double refresh_;
  Clock::time_point last_refresh_{};
  std::time_t updated_ = 0;
  std::string attach_error_;
  std::vector<SaLine> sa_lines_;
  std::vector<StatSection> stat_sections_;
  std::size_t sa_sel_ = 0;
  std::size_t stats_top_ = 0;
  std::size_t stats_lines_ = 0;
  std::size_t ike_sel_ = 0;
  std::size_t ike_count_ = 0;
  std::size_t help_top_ = 0;
  std::size_t help_lines_ = 0;
};

}  // namespace

int run(AppOptions options) {
  App app(std::move(options));
  return app.run();
}

}  // namespace ipsentry::tui
