#include "ipsentry/tui/screen_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "ipsentry/capture/frame_text.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "ipsentry/enforce/snapshot.hpp"

namespace ipsentry::tui {

using ipsec::Verdict;
using nlohmann::json;

namespace {

std::uint64_t u64(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return 0;
  return j[key].get<std::uint64_t>();
}

std::string str(const json& j, const char* key, const char* fallback = "-") {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return fallback;
  return j[key].get<std::string>();
}

std::string lifetime_text(std::optional<std::uint64_t> seconds, std::optional<std::uint64_t> bytes,
                          std::optional<std::uint64_t> packets) {
  std::string s;
  auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (seconds) add(fmt::format("{} s", *seconds));
  if (bytes) add(fmt::format("{} bytes", *bytes));
  if (packets) add(fmt::format("{} packets", *packets));
  return s.empty() ? "unlimited" : s;
}

}  // namespace

std::vector<SaLine> sa_lines_from_sad(const ipsec::Sad& sad) {
  std::vector<SaLine> out;
  for (std::size_t i = 0; i < sad.size(); ++i) {
    const auto& sa = sad.at(i);
    const auto& c = sa.config();
    const auto& k = sa.counters;
    SaLine l;
    l.name = sa.name();
    l.spi = c.spi ? fmt::format("0x{:08x}", *c.spi) : "any";
    l.direction = filters::to_string(c.direction);
    l.peers = fmt::format("{} → {}", c.src ? c.src->str() : "any", c.dst ? c.dst->str() : "any");
    l.protocol = filters::to_string(c.protocol);
    l.mode = filters::to_string(c.mode);
    l.algorithms = capture::sa_algorithms(c);
    for (std::size_t v = 0; v < k.verdicts.size(); ++v) {
      l.packets += k.verdicts[v];
      if (v != static_cast<std::size_t>(Verdict::ok)) l.errors += k.verdicts[v];
    }
    l.bytes = k.received.bytes;
    l.replay = sa.replay.size() == 0 ? fmt::format("top {}, no window", sa.replay.top())
                                     : fmt::format("top {}, {}/{} in window", sa.replay.top(),
                                                   sa.replay.received_in_window(), sa.replay.size());
    // What a capture shows of the SA's lifetime: its configured limits
    // less what the capture saw it carry.
    const auto& lt = c.lifetime;
    const std::uint64_t age = k.last_ts_ns > k.first_ts_ns ? (k.last_ts_ns - k.first_ts_ns) / 1'000'000'000 : 0;
    auto left = [](std::uint64_t limit, std::uint64_t used) -> std::optional<std::uint64_t> {
      if (limit == 0) return std::nullopt;
      return limit > used ? limit - used : 0;
    };
    l.lifetime = lifetime_text(left(lt.seconds, age), left(lt.bytes, k.received.bytes), left(lt.packets, l.packets));
    l.state = sa.unsupported() ? "unsupported" : l.packets != 0 ? "active" : "idle";
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<SaLine> sa_lines_from_snapshot(const json& snap) {
  std::vector<SaLine> out;
  if (!snap.is_object() || !snap.contains("sas") || !snap["sas"].is_array()) return out;
  for (const auto& s : snap["sas"]) {
    SaLine l;
    l.name = str(s, "name");
    l.spi = s.contains("spi") && s["spi"].is_number() ? fmt::format("0x{:08x}", s["spi"].get<std::uint32_t>()) : "any";
    l.direction = str(s, "direction");
    l.peers = fmt::format("{} → {}", str(s, "src"), str(s, "dst"));
    l.protocol = str(s, "protocol");
    l.mode = str(s, "mode");
    l.algorithms = l.protocol == "ah"              ? str(s, "integrity")
                   : str(s, "integrity") == "none" ? str(s, "encryption")
                                                   : str(s, "encryption") + "/" + str(s, "integrity");
    const json empty = json::object();
    const json& sent = s.contains("sent") ? s["sent"] : empty;
    const json& recv = s.contains("received") ? s["received"] : empty;
    const bool outbound = l.direction == "outbound";
    l.packets = outbound ? u64(sent, "packets") : u64(recv, "packets");
    l.bytes = outbound ? u64(sent, "bytes") : u64(recv, "bytes");
    if (s.contains("verdicts") && s["verdicts"].is_object()) {
      for (const auto& [k, v] : s["verdicts"].items()) {
        if (k != "ok" && v.is_number()) l.errors += v.get<std::uint64_t>();
      }
    }
    const json& rp = s.contains("replay") ? s["replay"] : empty;
    l.replay = outbound ? fmt::format("sent up to {}", u64(s, "last_sent_seq"))
                        : fmt::format("top {}, {}/{} in window", u64(rp, "highest_seq"), u64(rp, "received_in_window"),
                                      u64(rp, "window"));
    const json& lt = s.contains("lifetime_left") ? s["lifetime_left"] : empty;
    auto opt = [&](const char* key) -> std::optional<std::uint64_t> {
      if (!lt.contains(key) || !lt[key].is_number()) return std::nullopt;
      return lt[key].get<std::uint64_t>();
    };
    l.lifetime = lifetime_text(opt("seconds"), opt("bytes"), opt("packets"));
    l.state = str(s, "state");
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<std::string> sa_table(const std::vector<SaLine>& lines) {
  // The counters come right after the SA's name, so an 80-column terminal
  // shows what changes on each refresh; the fixed facts follow.
  using dissect::Align;
  const std::vector<dissect::TableColumn> cols{{"Name"},
                                               {"SPI"},
                                               {"Dir"},
                                               {"Packets", Align::right},
                                               {"Bytes", Align::right},
                                               {"Errors", Align::right},
                                               {"Replay"},
                                               {"State"},
                                               {"Lifetime left"},
                                               {"Proto"},
                                               {"Mode"},
                                               {"Algorithms"},
                                               {"Peers"}};
  std::vector<std::vector<std::string>> rows;
  rows.reserve(lines.size());
  for (const auto& l : lines) {
    rows.push_back({l.name, l.spi, l.direction, fmt::format("{}", l.packets), fmt::format("{}", l.bytes),
                    fmt::format("{}", l.errors), l.replay, l.state, l.lifetime, l.protocol, l.mode, l.algorithms,
                    l.peers});
  }
  return dissect::text_table(cols, rows);
}

std::vector<StatSection> stat_sections_from_model(const Statistics& s) {
  std::vector<StatSection> out;
  if (s.audit) {
    // The summary `verify --policy` prints, line for line; first, since
    // the audit is what --policy asked for.
    StatSection a{s.audit->title, {{s.audit->counts_text, ""}}};
    for (const auto& line : s.audit->policies) a.rows.emplace_back(line, "");
    out.push_back(std::move(a));
    if (!s.audit->timeline.empty()) {
      StatSection t{"SA timeline (SAs carrying the same policy between the same endpoints, in turn)", {}};
      for (const auto& line : s.audit->timeline) t.rows.emplace_back(line, "");
      out.push_back(std::move(t));
    }
  }
  StatSection qm{"IP Security Monitor — Quick Mode (from the capture: the receive side)", {}};
  for (const auto& r : s.monitor) qm.rows.emplace_back(r.name, fmt::format("{}", r.value));
  out.push_back(std::move(qm));
  StatSection mm{"IP Security Monitor — Main Mode (IKE)", {}};
  for (const auto& r : s.main_mode) mm.rows.emplace_back(r.name, fmt::format("{}", r.value));
  out.push_back(std::move(mm));
  StatSection v{"Verdicts of the IPsec packets", {}};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < s.totals.verdicts.size(); ++i) {
    total += s.totals.verdicts[i];
    v.rows.emplace_back(std::string(ipsec::verdict_name(static_cast<Verdict>(i))),
                        fmt::format("{}", s.totals.verdicts[i]));
  }
  v.rows.insert(v.rows.begin(), {"IPsec packets", fmt::format("{}", total)});
  out.push_back(std::move(v));
  const auto& f = s.frames;
  out.push_back({"Frames",
                 {{"Total", fmt::format("{}", f.frames)},
                  {"Bytes", fmt::format("{}", f.bytes)},
                  {"IPsec", fmt::format("{}", f.ipsec_frames)},
                  {"IKE", fmt::format("{}", f.ike_frames)},
                  {"NAT keepalive", fmt::format("{}", f.nat_keepalives)},
                  {"Other IP", fmt::format("{}", f.other_ip)},
                  {"Non-IP", fmt::format("{}", f.non_ip)},
                  {"Malformed", fmt::format("{}", f.malformed)}}});
  return out;
}

std::vector<std::pair<std::string, std::string>> main_mode_rows(const json& snap) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!snap.is_object() || !snap.contains("ike") || !snap["ike"].is_object()) return out;
  const json& ike = snap["ike"];
  const json empty = json::object();
  const json& m = ike.contains("main_mode") ? ike["main_mode"] : empty;
  const json& a = ike.contains("acquires") ? ike["acquires"] : empty;
  auto n = [](std::uint64_t v) { return fmt::format("{}", v); };
  // The Monitor's rows first, in its words; then what the seeds' table has
  // no row for.
  out.emplace_back("Active IKE SAs", n(u64(m, "active_ike_sas")));
  out.emplace_back("Main Modes (IKE SAs established)", n(u64(m, "ike_sas_established")));
  out.emplace_back("Quick Modes (child SAs established)", n(u64(m, "quick_modes")));
  out.emplace_back("Negotiation failures", n(u64(m, "negotiation_failures")));
  out.emplace_back("Authentication failures", n(u64(m, "authentication_failures")));
  out.emplace_back("Invalid cookies received", n(u64(m, "invalid_cookies")));
  out.emplace_back("Invalid packets received", n(u64(m, "invalid_packets")));
  out.emplace_back("Soft associations", n(u64(m, "soft_associations")));
  out.emplace_back("Soft associations now", n(u64(m, "active_soft_associations")));
  out.emplace_back("Retransmissions", n(u64(m, "retransmissions")));
  out.emplace_back("Rekeys", n(u64(m, "rekeys")));
  out.emplace_back("Cookies sent", n(u64(m, "cookies_sent")));
  out.emplace_back("Half-open IKE SAs", n(u64(m, "half_open")));
  out.emplace_back("IKE_SA_INITs dropped (half-open limit)", n(u64(m, "half_open_dropped")));
  out.emplace_back("Cookies required now", m.value("cookies_on", false) ? "yes" : "no");
  out.emplace_back("DPD timeouts", n(u64(m, "dpd_timeouts")));
  out.emplace_back("Acquires (negotiations asked for)", n(u64(a, "started")));
  out.emplace_back("Packets held for a negotiation", n(u64(a, "packets_held")));
  out.emplace_back("Packets dropped: hold buffer full", n(u64(a, "packets_dropped_full")));
  out.emplace_back("Held packets sent protected", n(u64(a, "sent_protected")));
  out.emplace_back("Held packets sent in the clear", n(u64(a, "sent_cleartext")));
  out.emplace_back("Held packets discarded", n(u64(a, "discarded")));
  return out;
}

std::vector<std::string> ike_sa_table(const json& snap) {
  std::vector<std::string> out;
  if (!snap.is_object() || !snap.contains("ike") || !snap["ike"].is_object()) return out;
  const json& ike = snap["ike"];
  if (!ike.contains("ike_sas") || !ike["ike_sas"].is_array()) return out;
  using dissect::Align;
  auto secs = [](const json& j, const char* key) {
    if (!j.contains(key) || !j[key].is_number()) return std::string("-");
    const auto v = j[key].get<std::int64_t>();
    return v < 0 ? std::string("-") : fmt::format("{} s", v);
  };
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::string>> child_rows;
  for (const auto& sa : ike["ike_sas"]) {
    const std::string id = fmt::format("{}", u64(sa, "id"));
    std::string nat;
    if (sa.value("nat_local", false)) nat = "we are behind a NAT";
    if (sa.value("nat_remote", false)) nat += std::string(nat.empty() ? "" : ", ") + "peer behind a NAT";
    rows.push_back({id, str(sa, "remote"), str(sa, "state"), secs(sa, "age_seconds"), secs(sa, "rekey_in_seconds"),
                    sa.value("initiator", false) ? "initiator" : "responder", str(sa, "local_id"),
                    str(sa, "remote_id"), str(sa, "algorithms"),
                    fmt::format("{}/{}", str(sa, "spi_i"), str(sa, "spi_r")), str(sa, "profile"),
                    nat.empty() ? "-" : nat});
    if (!sa.contains("children") || !sa["children"].is_array()) continue;
    for (const auto& c : sa["children"]) {
      child_rows.push_back({fmt::format("{}", u64(c, "id")), id, str(c, "policy"),
                            fmt::format("0x{:08x}", u64(c, "inbound_spi")),
                            fmt::format("0x{:08x}", u64(c, "outbound_spi")), secs(c, "age_seconds"),
                            secs(c, "rekey_in_seconds"),
                            fmt::format("{} {}{}", str(c, "protocol"), str(c, "mode"),
                                        c.value("udp_encap", false) ? " in UDP" : ""),
                            str(c, "algorithms"), fmt::format("{} ⇄ {}", str(c, "local_ts"), str(c, "remote_ts"))});
    }
  }
  if (rows.empty()) {
    out.emplace_back("no IKE SA");
    return out;
  }
  const std::vector<dissect::TableColumn> cols{{"IKE SA", Align::right},
                                               {"Peer"},
                                               {"State"},
                                               {"Age", Align::right},
                                               {"Rekey in", Align::right},
                                               {"Role"},
                                               {"Local id"},
                                               {"Remote id"},
                                               {"Algorithms"},
                                               {"SPIi/SPIr"},
                                               {"Profile"},
                                               {"NAT"}};
  out = dissect::text_table(cols, rows);
  if (!child_rows.empty()) {
    out.emplace_back();
    const std::vector<dissect::TableColumn> ccols{{"Child", Align::right},
                                                  {"IKE SA", Align::right},
                                                  {"Policy"},
                                                  {"SPI in"},
                                                  {"SPI out"},
                                                  {"Age", Align::right},
                                                  {"Rekey in", Align::right},
                                                  {"Mode"},
                                                  {"Algorithms"},
                                                  {"Traffic selectors (local ⇄ remote)"}};
    for (auto& l : dissect::text_table(ccols, child_rows)) out.push_back(std::move(l));
  }
  return out;
}

std::vector<StatSection> stat_sections_from_snapshot(const json& snap) {
  std::vector<StatSection> out;
  if (!snap.is_object() || !snap.contains("quick_mode")) return out;
  auto n = [](std::uint64_t v) { return fmt::format("{}", v); };
  StatSection qm{"IP Security Monitor — Quick Mode (enforcement)", {}};
  for (const auto& r : enforce::quick_mode_rows(snap)) qm.rows.emplace_back(r.name, n(r.value));
  out.push_back(std::move(qm));
  if (auto mm = main_mode_rows(snap); !mm.empty()) {
    out.push_back({"IP Security Monitor — Main Mode (IKE, live)", std::move(mm)});
    StatSection sas{"IKE SAs and their child SAs", {}};
    for (auto& line : ike_sa_table(snap)) sas.rows.emplace_back(std::move(line), "");
    out.push_back(std::move(sas));
  } else {
    out.push_back({"IP Security Monitor — Main Mode (IKE)", {{"(enforcement uses manual keys: no IKE)", ""}}});
  }
  StatSection p{"Enforcement outcomes (packets)", {}};
  if (snap.contains("packets") && snap["packets"].is_object()) {
    for (const auto& [k, v] : snap["packets"].items()) {
      if (v.is_number()) p.rows.emplace_back(k, n(v.get<std::uint64_t>()));
    }
  }
  p.rows.emplace_back("ICMP errors sent (path MTU)", n(u64(snap, "icmp_sent")));
  out.push_back(std::move(p));
  StatSection e{"Enforcement", {}};
  e.rows.emplace_back("Configuration", str(snap, "config"));
  e.rows.emplace_back("Uptime (s)", n(u64(snap, "uptime_seconds")));
  e.rows.emplace_back("Fail open", snap.value("fail_open", false) ? "yes" : "no (fail-closed)");
  e.rows.emplace_back("Reloads", n(u64(snap, "reloads")));
  if (snap.contains("queues") && snap["queues"].is_array()) {
    for (const auto& qu : snap["queues"]) {
      e.rows.emplace_back(fmt::format("Queue {} packets / verdict errors", u64(qu, "queue")),
                          fmt::format("{} / {}", u64(qu, "packets"), u64(qu, "verdict_errors")));
    }
  }
  out.push_back(std::move(e));
  return out;
}

std::vector<std::string> help_text() {
  std::vector<std::string> h{
      "",
      "Screens",
      "  1            packet list with the detail tree and the bytes",
      "  2            SA monitor: one row per SA (packets, bytes, errors, replay window, lifetime)",
      "  3            statistics: the IP Security Monitor's Quick Mode and Main Mode tables; with",
      "               --policy the audit's counts, its findings per policy and the SA timeline",
      "  4            IKE negotiations; Enter lists the packets of the selected one",
      "  ? or F1      this help (Esc or ? goes back)",
      "  q            quit (Ctrl-C too)",
      "",
      "Moving",
      "  Up Down PgUp PgDn Home End   move in the focused pane (End follows a live capture)",
      "  Left Right   list: scroll sideways; tree: collapse / expand",
      "  Tab          next pane (list, tree, bytes); Shift-Tab the previous one",
      "  Enter        list: to the tree; tree: expand or collapse the node",
      "  e            tree: expand every node, or back to the default view",
      "  z            zoom the focused pane to the whole screen and back",
      "",
      "Packets",
      "  /            display filter (applied on Enter; errors shown as you type; empty clears)",
      "  f n N        find the next frame matching an expression; next; previous",
      "  g            go to a frame number",
      "  t            time column: relative, absolute (UTC), delta",
      "  d            bytes pane: the frame or the decrypted inner packet",
      "  w            save the displayed frames to a pcap",
      "  W            save the decrypted inner packets of the displayed frames (raw IP pcap)",
      "  p or Space   pause or resume the list (a live capture keeps capturing)",
      "  s            stop a live capture",
      "",
      "SA monitor and statistics",
      "  + -          refresh more / less often (1 s steps); r types the interval",
      "",
      "Display filter",
      "  protocols    esp ah ipsec ike ikev1 ikev2 nat-keepalive ip ipv4 ipv6 tcp udp icmp icmpv6",
      "               cleartext decrypted malformed trigger (the frame a live trigger fired on)",
      "  fields       src dst addr (address or prefix)   port sport dport   spi seq   len frame",
      "               verdict (ok icv-fail decrypt-fail replay unknown-spi malformed unverifiable unsupported",
      "               ike-fail: the IKE message whose error Notify ended its negotiation;",
      "               with --policy cleartext-leak policy-mismatch blocked-seen cleartext-allowed)",
      "               audit (with --policy: conforms permitted exempt cleartext-allowed cleartext-leak",
      "               policy-mismatch blocked-seen)",
      "               ike.exchange (IKE_SA_INIT IKE_AUTH CREATE_CHILD_SA INFORMATIONAL main aggressive quick)",
      "               proto (name or number)",
      "  operators    == != < <= > >=  and or not ( )   (also && || !)",
      "               frame|spi|seq|len in {1 3 7-9}    host/port/src... VALUE means ==",
      "  examples     esp and verdict != ok",
      "               (src == 192.0.2.0/25 or dst == 2001:db8::/32) and not icmp",
      "               spi == 0xc0ffee01 and seq >= 100",
      "  Addresses, ports and protocols match the outer and the decrypted inner packet.",
      "  A comparison with a field the frame does not have is false: verdict != ok lists",
      "  the IPsec and IKE frames that failed, never cleartext; with --policy also the frames",
      "  the audit flags or lets through in the clear (their verdict column names it).",
      "",
      "Colours: green ok, red failed (ICV, decryption, malformed, audit findings), magenta replay,",
      "yellow unknown SPI / unverifiable / cleartext-allowed, cyan IKE, plain cleartext, blue non-IP.",
  };
  return h;
}

std::vector<std::string> wrap_lines(const std::vector<std::string>& lines, std::size_t width) {
  std::vector<std::string> out;
  for (const std::string& line : lines) {
    // One cell per code point.
    std::vector<std::string_view> cells;
    for (std::size_t i = 0; i < line.size();) {
      const std::size_t n = std::min(line.size() - i, utf8_length(line[i]));
      cells.emplace_back(line.data() + i, n);
      i += n;
    }
    if (cells.size() <= width || width < 8) {
      out.push_back(line);
      continue;
    }
    std::size_t lead = 0;
    while (lead < cells.size() && cells[lead] == " ") ++lead;
    // The text column: after the first gap of two spaces that follows text.
    std::size_t hang = lead + 2;
    for (std::size_t k = lead + 2; k < cells.size() && k < width / 2; ++k) {
      if (cells[k] != " " && cells[k - 1] == " " && cells[k - 2] == " ") {
        hang = k;
        break;
      }
    }
    std::size_t start = 0;
    std::size_t indent = 0;
    while (start < cells.size()) {
      const std::size_t room = width - indent;
      std::size_t end = cells.size();
      std::size_t next = end;
      if (end - start > room) {
        end = start + room;
        next = end;
        for (std::size_t b = start + room; b > start; --b) {
          if (cells[b] == " ") {
            end = b;
            next = b + 1;
            break;
          }
        }
      }
      std::string piece(indent, ' ');
      for (std::size_t k = start; k < end; ++k) piece += cells[k];
      while (!piece.empty() && piece.back() == ' ') piece.pop_back();
      out.push_back(std::move(piece));
      start = next;
      while (start < cells.size() && cells[start] == " ") ++start;
      indent = std::min(hang, width / 2);
    }
  }
  return out;
}

}  // namespace ipsentry::tui
