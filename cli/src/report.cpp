#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ipsentry/capture/frame_text.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "version.hpp"

namespace ipsentry::cli {

using capture::FrameResult;
using capture::LayerRecord;
using ipsec::Verdict;
using nlohmann::json;

bool all_verified(const ipsec::GlobalCounters& totals, const ike::Analyzer& ike) noexcept {
  for (std::size_t i = 1; i < totals.verdicts.size(); ++i) {
    if (totals.verdicts[i] != 0) return false;
  }
  return std::none_of(ike.records().begin(), ike.records().end(),
                      [](const ike::MessageRecord& m) { return ike::failed(ike::verdict(m)); });
}

bool audit_clean(const capture::PolicyAudit& audit) noexcept {
  for (std::size_t i = 0; i < capture::kAuditVerdictCount; ++i) {
    if (capture::flagged(static_cast<capture::AuditVerdict>(i)) && audit.counts()[i] != 0) return false;
  }
  return true;
}

namespace {

using capture::AuditVerdict;

/// Whether a frame's audit verdict gets its own line or object: findings,
/// and cleartext a policy allows (it is reported as such).
bool audit_shown(AuditVerdict v) noexcept { return capture::flagged(v) || v == AuditVerdict::fallback; }

std::string iso_time(std::int64_t ts_ns) {
  std::time_t sec = static_cast<std::time_t>(ts_ns / 1'000'000'000);
  long frac = static_cast<long>((ts_ns % 1'000'000'000 + 1'000'000'000) % 1'000'000'000);
  if (ts_ns < 0 && frac != 0) --sec;
  std::tm tm{};
  gmtime_r(&sec, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", buf, frac);
}

// ------------------------------------------------------------------ text

class TextReport final : public Report {
 public:
  TextReport(std::FILE* out, TimeFormat tf, bool quiet) : out_(out), tf_(tf), quiet_(quiet) {}

  void begin(const RunInfo& info) override {
    if (quiet_) return;
    fmt::print(out_, "ipsentry {} {} ({}{})\n", info.command, info.capture, info.format,
               info.compressed ? ", gzip" : "");
    fmt::print(out_, "{:>8} {:>15}  {:<41} {:<7} {:<10} {:>6}  {:<12} {}\n", "frame", "time", "source → destination",
               "proto", "spi", "seq", "verdict", "details");
  }

  void frame(const FrameResult& f) override {
    if (!have_first_) {
      first_ts_ = f.ts_ns;
      have_first_ = true;
    }
    if (quiet_) return;
    for (std::size_t i = 0; i < f.layer_count; ++i) {
      const LayerRecord& l = f.layers[i];
      std::string num = l.depth == 0 ? fmt::format("{}", f.number) : fmt::format("{}.{}", f.number, l.depth + 1);
      std::string spi = l.has_spi ? fmt::format("0x{:08x}", l.spi) : "-";
      std::string seq = l.has_seq ? fmt::format("{}", l.seq) : "-";
      std::string addrs = l.src.str() + " → " + l.dst.str();
      fmt::print(out_, "{:>8} {:>15}  {:<41} {:<7} {:<10} {:>6}  {:<12} {}\n", num, time_text(f.ts_ns), addrs,
                 capture::layer_label(l), spi, seq, ipsec::verdict_name(l.verdict), capture::layer_details(l));
    }
    if (audit_ != nullptr && audit_shown(f.audit.verdict)) {
      const auto& a = f.audit;
      // Cleartext verdicts come from judging the frame itself (UDP on port 4500
      // that no SA knows included), the others from an IPsec frame's inner packet.
      const bool clear = a.verdict != AuditVerdict::policy_mismatch && a.verdict != AuditVerdict::conforms;
      std::string addrs = a.sel.src.str() + " → " + a.sel.dst.str();
      fmt::print(out_, "{:>8} {:>15}  {:<41} {:<7} {:<10} {:>6}  {:<12} {}\n",
                 clear ? fmt::format("{}", f.number) : fmt::format("{}.p", f.number), time_text(f.ts_ns), addrs,
                 capture::selector_protocol(a.sel), clear ? "cleartext" : "inner", "-", capture::audit_name(a.verdict),
                 capture::audit_details(a));
    }
  }

  void ike(const FrameResult& f, const ike::MessageRecord& m) override {
    if (!have_first_) {
      first_ts_ = f.ts_ns;
      have_first_ = true;
    }
    if (quiet_) return;
    std::string addrs = m.src.str() + " → " + m.dst.str();
    fmt::print(out_, "{:>8} {:>15}  {:<41} {:<7} {:<10} {:>6}  {:<12} {}\n", f.number, time_text(f.ts_ns), addrs,
               m.header.v2() ? "IKEv2" : "IKEv1", "-", "-", ike::verdict_name(ike::verdict(m)), m.summary);
  }

  void end(const RunInfo& info, const ipsec::GlobalCounters& g, const capture::FrameCounters& fr, const ipsec::Sad& sad,
           const ike::Analyzer& ike) override {
    if (!quiet_) fmt::print(out_, "\n");
    std::uint64_t total = 0;
    for (auto v : g.verdicts) total += v;
    std::string verdicts;
    for (std::size_t i = 0; i < g.verdicts.size(); ++i) {
      if (g.verdicts[i] == 0) continue;
      if (!verdicts.empty()) verdicts += ", ";
      verdicts += fmt::format("{} {}", g.verdicts[i], ipsec::verdict_name(static_cast<Verdict>(i)));
    }
    fmt::print(out_, "{} IPsec packets in {} frames{}{}\n", total, fr.frames, total ? ": " : "", verdicts);
    if (total == 0) fmt::print(out_, "no ESP or AH packets found\n");
    fmt::print(out_, "\nIP Security Monitor statistics\n");
    for (const auto& r : capture::monitor_rows(g, sad)) fmt::print(out_, "  {:<36}{:>14}\n", r.name, r.value);

    if (sad.size() != 0) {
      fmt::print(out_, "\nSecurity associations\n");
      using dissect::Align;
      std::vector<std::vector<std::string>> rows;
      for (std::size_t i = 0; i < sad.size(); ++i) {
        const auto& sa = sad.at(i);
        const auto& c = sa.config();
        const auto& v = sa.counters.verdicts;
        auto n = [&](Verdict x) { return fmt::format("{}", v[static_cast<std::size_t>(x)]); };
        const std::uint64_t other = v[static_cast<std::size_t>(Verdict::malformed)] +
                                    v[static_cast<std::size_t>(Verdict::unverifiable)] +
                                    v[static_cast<std::size_t>(Verdict::unsupported)];
        rows.push_back({sa.name(), c.spi ? fmt::format("0x{:08x}", *c.spi) : "any", filters::to_string(c.protocol),
                        filters::to_string(c.mode), capture::sa_algorithms(c), n(Verdict::ok), n(Verdict::icv_fail),
                        n(Verdict::decrypt_fail), n(Verdict::replay), fmt::format("{}", other),
                        fmt::format("{}", sa.counters.received.bytes)});
        if (audit_ != nullptr) {
          const auto& tl = audit_->timelines();
          const capture::SaTimeline* t = i < tl.size() && tl[i].seen ? &tl[i] : nullptr;
          rows.back().push_back(t ? audit_->entry(t->entry).name : "-");
          rows.back().push_back(t && t->successor >= 0 ? capture::sa_label(sad, t->successor) : "-");
          rows.back().push_back(t ? capture::handover_text(*t) : "-");
        }
      }
      const std::vector<dissect::TableColumn> cols{{"name"},
                                                   {"spi"},
                                                   {"proto"},
                                                   {"mode"},
                                                   {"algorithms"},
                                                   {"ok", Align::right},
                                                   {"icv-fail", Align::right},
                                                   {"decrypt", Align::right},
                                                   {"replay", Align::right},
                                                   {"other", Align::right},
                                                   {"bytes", Align::right}};
      std::vector<dissect::TableColumn> all = cols;
      if (audit_ != nullptr) {
        all.push_back({"policy"});
        all.push_back({"successor"});
        all.push_back({"handover"});
      }
      for (const auto& line : dissect::text_table(all, rows, 2)) fmt::print(out_, "{}\n", line);
      print_crypto(sad);
    }
    if (audit_ != nullptr) print_audit(sad);
    print_ike(ike);
    fmt::print(out_, "\nFrames: {} total, {} IPsec, {} IKE, {} NAT keepalive, {} other IP, {} non-IP, {} malformed\n",
               fr.frames, fr.ipsec_frames, fr.ike_frames, fr.nat_keepalives, fr.other_ip, fr.non_ip, fr.malformed);
    if (!info.read_error.empty())
      fmt::print(out_, "capture damaged: {}; frames after it were not read\n", info.read_error);
    std::fflush(out_);
  }

 private:
  // Its own block, ended by a blank line, so that output compared across
  // builds (with and without libipsec-mb) can leave it out.
  void print_crypto(const ipsec::Sad& sad) {
    fmt::print(out_, "\nESP crypto (--crypto {}): {}\n", ipsec::to_string(sad.crypto()),
               ipsec::crypto_availability().describe());
    for (std::size_t i = 0; i < sad.size(); ++i) {
      const ipsec::EspTransform* esp = sad.at(i).esp();
      if (esp == nullptr) continue;
      fmt::print(out_, "  {:<20} {}{}\n", sad.at(i).name(), ipsec::to_string(esp->backend()),
                 esp->backend_reason().empty() ? "" : " (" + esp->backend_reason() + ")");
    }
  }

  void print_audit(const ipsec::Sad& sad) {
    const capture::PolicyAudit& a = *audit_;
    fmt::print(out_, "\nPolicy audit ({} as {})\n", a.source(), a.vantage());
    fmt::print(out_, "  {}\n", capture::audit_counts_text(a));
    for (const auto& line : capture::audit_policy_table(a, 2)) fmt::print(out_, "{}\n", line);
    const auto timeline = capture::audit_timeline(a, sad, [this](std::int64_t ts) { return time_text(ts); });
    if (!timeline.empty()) {
      fmt::print(out_, "\nSA timeline (SAs carrying the same policy between the same endpoints, in turn)\n");
      for (const auto& line : timeline) fmt::print(out_, "{}\n", line);
    }
  }

  void print_ike(const ike::Analyzer& ike) {
    const ike::Statistics& s = ike.statistics();
    if (s.messages == 0) return;
    fmt::print(out_, "\nIKE statistics (Main Mode / Quick Mode)\n");
    for (const auto& r : capture::ike_rows(s)) fmt::print(out_, "  {:<36}{:>14}\n", r.name, r.value);
    if (!ike.negotiations().empty()) {
      fmt::print(out_, "\nIKE negotiations\n");
      std::vector<std::vector<std::string>> rows;
      for (const auto& n : ike.negotiations()) {
        std::string what = n.proposal;
        if (!n.reason.empty()) what += (what.empty() ? "" : "; ") + n.reason;
        if (!n.child_spis.empty()) {
          std::string spis;
          for (const auto& c : n.child_spis) spis += (spis.empty() ? "" : ", ") + c;
          what += (what.empty() ? "" : "; ") + std::string("keys learned: ") + spis;
        }
        rows.push_back({fmt::format("{}", rows.size() + 1), fmt::format("v{}", n.version), n.kind,
                        n.initiator.str() + " → " + n.responder.str(), ike::to_string(n.outcome),
                        fmt::format("{:.3f}", n.duration()), what});
      }
      using dissect::Align;
      const std::vector<dissect::TableColumn> cols{{"#", Align::right},         {"ver"},     {"exchange"},
                                                   {"initiator → responder"},   {"outcome"}, {"seconds", Align::right},
                                                   {"chosen proposal / reason"}};
      for (const auto& line : dissect::text_table(cols, rows, 2)) fmt::print(out_, "{}\n", line);
    }
    for (const auto& note : ike.notes()) fmt::print(out_, "  note: {}\n", note);
  }

  std::string time_text(std::int64_t ts) const {
    switch (tf_) {
      case TimeFormat::relative: {
        std::int64_t d = ts - first_ts_;
        return fmt::format("{}{}.{:06d}", d < 0 ? "-" : "", std::abs(d) / 1'000'000'000,
                           (std::abs(d) % 1'000'000'000) / 1000);
      }
      case TimeFormat::epoch: return fmt::format("{}.{:06d}", ts / 1'000'000'000, (ts % 1'000'000'000) / 1000);
      case TimeFormat::absolute: {
        std::string iso = iso_time(ts);  // 2026-11-22T10:00:00.123456789Z
        return iso.substr(11, 15);       // time of day in UTC, microseconds
      }
    }
    return {};
  }

  std::FILE* out_;
  TimeFormat tf_;
  bool quiet_;
  bool have_first_ = false;
  std::int64_t first_ts_ = 0;
};

// ------------------------------------------------------------------ JSON

json ike_json(const ike::Analyzer& a, bool quiet) {
  const ike::Statistics& s = a.statistics();
  json stats{{"messages", s.messages},
             {"encrypted", s.encrypted},
             {"decrypted", s.decrypted},
             {"main_modes", s.main_modes},
             {"quick_modes", s.quick_modes},
             {"negotiation_failures", s.negotiation_failures},
             {"authentication_failures", s.authentication_failures},
             {"invalid_cookies_received", s.invalid_cookies},
             {"invalid_packets_received", s.invalid_packets},
             {"unanswered_negotiations", s.no_answer},
             {"soft_associations", s.soft_associations},
             {"retransmissions", s.retransmissions}};
  json negs = json::array();
  for (const auto& n : a.negotiations()) {
    negs.push_back({{"version", n.version},
                    {"exchange", n.kind},
                    {"spi_i", fmt::format("{:016x}", n.spi_i)},
                    {"spi_r", fmt::format("{:016x}", n.spi_r)},
                    {"message_id", n.message_id},
                    {"initiator", n.initiator.str()},
                    {"responder", n.responder.str()},
                    {"outcome", ike::to_string(n.outcome)},
                    {"reason", n.reason.empty() ? json(nullptr) : json(n.reason)},
                    {"proposal", n.proposal.empty() ? json(nullptr) : json(n.proposal)},
                    {"authentication_failure", n.auth_failure},
                    {"failed_with", n.failed_with < 0 ? json(nullptr) : json(n.failed_with)},
                    {"clear_traffic_after", n.clear_traffic_after},
                    {"retransmissions", n.retransmissions},
                    {"seconds", n.duration()},
                    {"frames", n.frames},
                    {"learned_sas", n.child_spis}});
  }
  json out{{"statistics", stats}, {"negotiations", negs}, {"notes", a.notes()}};
  if (!quiet) {
    json msgs = json::array();
    for (const auto& m : a.records()) {
      msgs.push_back({{"frame", m.frame},
                      {"src", m.src.str()},
                      {"dst", m.dst.str()},
                      {"version", m.header.major},
                      {"exchange", m.malformed && m.header.major == 0 ? json(nullptr) : json(m.header.exchange)},
                      {"message_id", m.header.message_id},
                      {"verdict", ike::verdict_name(ike::verdict(m))},
                      {"status", ike::to_string(m.status)},
                      {"detail", m.detail.empty() ? json(nullptr) : json(m.detail)},
                      {"malformed", m.malformed ? json(m.malformed) : json(nullptr)},
                      {"retransmission", m.retransmission},
                      {"payloads", m.payloads},
                      {"inner_payloads", m.inner_payloads},
                      {"notify_types", m.notifies},
                      {"summary", m.summary}});
    }
    out["messages"] = msgs;
  }
  return out;
}

json verdict_counts(const std::array<std::uint64_t, ipsec::kVerdictCount>& v) {
  json o = json::object();
  for (std::size_t i = 0; i < v.size(); ++i) o[std::string(ipsec::verdict_name(static_cast<Verdict>(i)))] = v[i];
  return o;
}

json bytes_json(const ipsec::ByteCounters& b) {
  return json{{"packets", b.packets},
              {"bytes", b.bytes},
              {"confidential_bytes", b.confidential_bytes},
              {"authenticated_bytes", b.authenticated_bytes},
              {"transport_bytes", b.transport_bytes},
              {"tunnel_bytes", b.tunnel_bytes}};
}

class JsonReport final : public Report {
 public:
  JsonReport(std::FILE* out, const ipsec::Sad& sad, bool quiet) : out_(out), sad_(sad), quiet_(quiet) {}

  void begin(const RunInfo& info) override {
    json head{{"ipsentry", {{"version", kVersion}, {"command", "verify"}}},
              {"capture", {{"file", info.capture}, {"format", info.format}, {"compressed", info.compressed}}},
              {"configuration", info.config_sources}};
    std::string s = head.dump();
    s.pop_back();  // keep the object open for the streamed packets
    fmt::print(out_, "{},\n\"packets\": [", s);
  }

  void frame(const FrameResult& f) override {
    if (quiet_) return;
    if (audit_ != nullptr && f.layer_count == 0 && audit_shown(f.audit.verdict)) {
      const auto& a = f.audit;
      // The fields of an IPsec object, so that one schema reads both; what
      // only IPsec has is null.
      std::string reason(capture::audit_name(a.verdict));
      std::replace(reason.begin(), reason.end(), '-', '_');
      json o{{"frame", f.number},
             {"layer", 0},
             {"time", iso_time(f.ts_ns)},
             {"timestamp", static_cast<double>(f.ts_ns) / 1e9},
             {"src", a.sel.src.str()},
             {"dst", a.sel.dst.str()},
             {"protocol", "cleartext"},
             {"udp_encap", false},
             {"spi", nullptr},
             {"spi_hex", nullptr},
             {"seq", nullptr},
             {"verdict", capture::audit_name(a.verdict)},
             {"reason", reason},
             {"description", a.why != nullptr ? a.why : ""},
             {"detail", nullptr},
             {"sa", nullptr},
             {"mode", nullptr},
             {"next_header", nullptr},
             {"pad_length", 0},
             {"inner", nullptr},
             {"ip_protocol", a.sel.protocol},
             {"sport", a.sel.has_ports ? json(a.sel.sport) : json(nullptr)},
             {"dport", a.sel.has_ports ? json(a.sel.dport) : json(nullptr)},
             {"audit", capture::audit_name(a.verdict)}};
      add_audit(o, a);
      fmt::print(out_, "{}\n{}", first_ ? "" : ",", o.dump());
      first_ = false;
    }
    for (std::size_t i = 0; i < f.layer_count; ++i) {
      const LayerRecord& l = f.layers[i];
      // The engine reads the mode from a packet it opened; one that failed
      // still belongs to an SA whose mode may be configured.
      const filters::SaMode mode = l.mode != filters::SaMode::unspecified || l.sa < 0
                                       ? l.mode
                                       : sad_.at(static_cast<std::size_t>(l.sa)).config().mode;
      json o{{"frame", f.number},
             {"layer", l.depth + 1},
             {"time", iso_time(f.ts_ns)},
             {"timestamp", static_cast<double>(f.ts_ns) / 1e9},
             {"src", l.src.str()},
             {"dst", l.dst.str()},
             {"protocol", filters::to_string(l.protocol)},
             {"udp_encap", l.udp_encap},
             {"spi", l.has_spi ? json(l.spi) : json(nullptr)},
             {"spi_hex", l.has_spi ? json(fmt::format("0x{:08x}", l.spi)) : json(nullptr)},
             {"seq", l.has_seq ? json(l.seq) : json(nullptr)},
             {"verdict", ipsec::verdict_name(l.verdict)},
             {"reason", ipsec::reason_name(l.reason)},
             {"description", ipsec::reason_description(l.reason)},
             {"detail", l.detail ? json(l.detail) : json(nullptr)},
             {"sa", l.sa >= 0 ? json(sad_.at(static_cast<std::size_t>(l.sa)).name()) : json(nullptr)},
             {"mode", mode == filters::SaMode::unspecified ? json(nullptr) : json(filters::to_string(mode))},
             {"next_header", l.verdict == Verdict::ok || l.next_header != 0 ? json(l.next_header) : json(nullptr)},
             {"pad_length", l.pad_len},
             {"inner", l.inner.size != 0 ? json(std::string(l.inner.view())) : json(nullptr)}};
      if (audit_ != nullptr && i == 0 && f.audit.verdict != AuditVerdict::none) {
        o["audit"] = capture::audit_name(f.audit.verdict);
        o["inner_src"] = f.audit.sel.src.str();
        o["inner_dst"] = f.audit.sel.dst.str();
        o["inner_protocol"] = f.audit.sel.protocol;
        add_audit(o, f.audit);
      }
      if (l.icv.len != 0 && (l.reason == ipsec::Reason::icv_mismatch || l.reason == ipsec::Reason::tag_mismatch)) {
        o["icv"] = {{"received", capture::hex_bytes(l.icv.received.data(), l.icv.len)},
                    {"expected", l.icv.expected_known ? json(capture::hex_bytes(l.icv.expected.data(), l.icv.len))
                                                      : json(nullptr)}};
      }
      fmt::print(out_, "{}\n{}", first_ ? "" : ",", o.dump());
      first_ = false;
    }
  }

  void ike(const FrameResult&, const ike::MessageRecord&) override {}

  void end(const RunInfo& info, const ipsec::GlobalCounters& g, const capture::FrameCounters& fr, const ipsec::Sad& sad,
           const ike::Analyzer& ike) override {
    std::uint64_t total = 0;
    for (auto v : g.verdicts) total += v;
    json stats{{"ipsec_packets", total},
               {"verdicts", verdict_counts(g.verdicts)},
               {"ip_security_monitor",
                {{"active_security_associations", capture::active_sas(sad)},
                 {"bad_spi_packets", g.bad_spi_packets},
                 {"packets_not_decrypted", g.packets_not_decrypted},
                 {"packets_not_authenticated", g.packets_not_authenticated},
                 {"packets_with_replay_detection", g.packets_with_replay_detection},
                 {"confidential_bytes_received", g.received.confidential_bytes},
                 {"authenticated_bytes_received", g.received.authenticated_bytes},
                 {"transport_bytes_received", g.received.transport_bytes},
                 {"bytes_received_in_tunnels", g.received.tunnel_bytes}}},
               {"frames",
                {{"total", fr.frames},
                 {"bytes", fr.bytes},
                 {"ipsec", fr.ipsec_frames},
                 {"ike", fr.ike_frames},
                 {"nat_keepalive", fr.nat_keepalives},
                 {"other_ip", fr.other_ip},
                 {"non_ip", fr.non_ip},
                 {"malformed", fr.malformed}}},
               {"seconds", info.seconds},
               {"crypto", crypto_json(sad)}};
    json sas = json::array();
    for (std::size_t i = 0; i < sad.size(); ++i) {
      const auto& sa = sad.at(i);
      const auto& c = sa.config();
      sas.push_back({{"name", sa.name()},
                     {"spi", c.spi ? json(*c.spi) : json(nullptr)},
                     {"spi_hex", c.spi ? json(fmt::format("0x{:08x}", *c.spi)) : json(nullptr)},
                     {"protocol", filters::to_string(c.protocol)},
                     {"src", c.src ? json(c.src->str()) : json(nullptr)},
                     {"dst", c.dst ? json(c.dst->str()) : json(nullptr)},
                     {"mode", filters::to_string(c.mode)},
                     {"encryption", c.protocol == filters::IpsecProtocol::esp
                                        ? json(std::string(filters::cipher_info(c.cipher).name))
                                        : json(nullptr)},
                     {"integrity", std::string(filters::integrity_info(c.integrity).name)},
                     {"esn", c.esn},
                     {"replay_window", c.replay_window},
                     {"origin", c.origin.str()},
                     {"unsupported", sa.unsupported() ? json(sa.unsupported_detail()) : json(nullptr)},
                     {"verdicts", verdict_counts(sa.counters.verdicts)},
                     {"received", bytes_json(sa.counters.received)},
                     {"highest_seq", sa.replay.top()},
                     {"crypto", sa.esp() != nullptr ? json(ipsec::to_string(sa.esp()->backend())) : json(nullptr)},
                     {"crypto_reason", sa.esp() != nullptr && !sa.esp()->backend_reason().empty()
                                           ? json(sa.esp()->backend_reason())
                                           : json(nullptr)}});
      if (audit_ != nullptr) sas.back()["audit"] = timeline_json(sad, i);
    }
    if (audit_ != nullptr) stats["policy_audit"] = audit_json();
    json tail{{"statistics", stats},
              {"security_associations", sas},
              {"ike", ike_json(ike, quiet_)},
              {"warnings", info.warnings},
              {"read_error", info.read_error.empty() ? json(nullptr) : json(info.read_error)}};
    std::string s = tail.dump();
    fmt::print(out_, "],\n{}\n", s.substr(1));  // continue the open top-level object
    std::fflush(out_);
  }

 private:
  static json crypto_json(const ipsec::Sad& sad) {
    const auto& a = ipsec::crypto_availability();
    return {{"requested", ipsec::to_string(sad.crypto())},
            {"libipsec_mb", a.describe()},
            {"libipsec_mb_version", a.ipsec_mb_built ? json(a.ipsec_mb_version) : json(nullptr)},
            {"libipsec_mb_arch", a.ipsec_mb_usable ? json(a.ipsec_mb_arch) : json(nullptr)}};
  }

  static void add_audit(json& o, const capture::AuditResult& a) {
    o["policy"] = a.entry != nullptr ? json(a.entry->name) : json(nullptr);
    o["policy_sense"] = a.sense == filters::Sense::inbound ? "inbound" : "outbound";
    o["audit_reason"] = a.why != nullptr ? json(a.why) : json(nullptr);
    if (a.verdict == AuditVerdict::policy_mismatch && a.own != nullptr && a.own != a.entry) {
      o["sa_policy"] = a.own->name;
    }
  }

  json timeline_json(const ipsec::Sad& sad, std::size_t i) const {
    const auto& tl = audit_->timelines();
    if (i >= tl.size() || !tl[i].seen) return nullptr;
    const auto& t = tl[i];
    auto sa_name = [&](std::int32_t j) {
      return j >= 0 ? json(sad.at(static_cast<std::size_t>(j)).name()) : json(nullptr);
    };
    return {{"policy", audit_->entry(t.entry).name},
            {"packets", t.packets},
            {"first", iso_time(t.first_ns)},
            {"last", iso_time(t.last_ns)},
            {"first_timestamp", static_cast<double>(t.first_ns) / 1e9},
            {"last_timestamp", static_cast<double>(t.last_ns) / 1e9},
            {"predecessor", sa_name(t.predecessor)},
            {"successor", sa_name(t.successor)},
            {"overlap_seconds", t.successor >= 0 ? json(t.overlap_s) : json(nullptr)},
            {"gap_seconds", t.successor >= 0 ? json(t.gap_s) : json(nullptr)},
            {"cleartext_in_gap", t.cleartext_in_gap},
            {"after_successor", t.after_successor},
            {"lifetime_seconds", t.lifetime_s != 0 ? json(t.lifetime_s) : json(nullptr)},
            {"after_lifetime", t.after_lifetime}};
  }

  json audit_json() const {
    const capture::PolicyAudit& a = *audit_;
    json counts = json::object();
    for (std::size_t i = 1; i < capture::kAuditVerdictCount; ++i) {
      counts[std::string(capture::audit_name(static_cast<AuditVerdict>(i)))] = a.counts()[i];
    }
    json policies = json::array();
    for (std::size_t e = 0; e < a.entry_counts().size(); ++e) {
      const auto& entry = a.entry(e);
      json c = json::object();
      std::uint64_t total = 0;
      for (std::size_t i = 1; i < capture::kAuditVerdictCount; ++i) {
        c[std::string(capture::audit_name(static_cast<AuditVerdict>(i)))] = a.entry_counts()[e][i];
        total += a.entry_counts()[e][i];
      }
      if (total == 0) continue;
      policies.push_back({{"name", entry.name},
                          {"sense", entry.sense == filters::Sense::inbound ? "inbound" : "outbound"},
                          {"action", entry.exemption ? "exempt" : filters::to_string(entry.action)},
                          {"verdicts", c}});
    }
    std::vector<std::string> vantage;
    for (const auto& x : a.spd().local().addresses) vantage.push_back(x.str());
    return {{"policy_file", a.source()}, {"vantage", vantage}, {"verdicts", counts}, {"policies", policies}};
  }

  std::FILE* out_;
  const ipsec::Sad& sad_;
  bool quiet_;
  bool first_ = true;
};

}  // namespace

std::unique_ptr<Report> make_text_report(std::FILE* out, TimeFormat tf, bool quiet) {
  return std::make_unique<TextReport>(out, tf, quiet);
}

std::unique_ptr<Report> make_json_report(std::FILE* out, const ipsec::Sad& sad, bool quiet) {
  return std::make_unique<JsonReport>(out, sad, quiet);
}

}  // namespace ipsentry::cli
