// The TUI's model and display filter, without a terminal: the filter
// language (errors with their positions, and what matches on a sample whose
// verdicts `ipsentry verify` establishes), the frame index, the details
// built on demand, the policy audit of an indexed capture, and the SA
// monitor built from an enforcement snapshot.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/capture/policy_audit.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/tui/display_filter.hpp"
#include "ipsentry/tui/model.hpp"
#include "ipsentry/tui/screen_text.hpp"

namespace {

using ipsentry::tui::DisplayFilter;
using ipsentry::tui::FilterError;
using ipsentry::tui::Model;

std::string error_of(const std::string& text, std::size_t* pos = nullptr) {
  FilterError e;
  auto f = DisplayFilter::parse(text, e);
  if (f) return "";
  if (pos != nullptr) *pos = e.position;
  return e.message;
}

TEST(DisplayFilterParse, AcceptsTheLanguage) {
  for (const char* ok :
       {"", "esp", "esp and verdict != ok", "(src == 192.0.2.0/25 or dst == 2001:db8::/32) and not icmp",
        "spi == 0xc0ffee01 && seq >= 100", "!ike || ike.exchange == IKE_AUTH", "exchange == quick",
        "verdict eq icv-fail", "port == 4500 and udp", "frame > 10 and len <= 1500", "frame in {1, 3 7-9}",
        "spi in {0x100 0x200-0x2ff}", "proto == esp or proto == 51", "host fe80::2aa:ff:fe53:a92c"}) {
    EXPECT_EQ(error_of(ok), "") << ok;
  }
}

TEST(DisplayFilterParse, ErrorsNameTheProblemAndWhere) {
  std::size_t pos = 0;
  EXPECT_NE(error_of("esp and bogus", &pos).find("unknown name 'bogus'"), std::string::npos);
  EXPECT_EQ(pos, 8u);
  EXPECT_NE(error_of("verdict == fine", &pos).find("'fine' is not a verdict: ok, icv-fail"), std::string::npos);
  EXPECT_EQ(pos, 11u);
  EXPECT_NE(error_of("spi ==", &pos).find("expected a value after '=='"), std::string::npos);
  EXPECT_NE(error_of("(esp or ah", &pos).find("expected ')'"), std::string::npos);
  EXPECT_NE(error_of("esp)", &pos).find("')' without a matching '('"), std::string::npos);
  EXPECT_NE(error_of("src < 192.0.2.1").find("addresses take == or !="), std::string::npos);
  EXPECT_NE(error_of("src == 192.0.2.300").find("not an IPv4 or IPv6 address"), std::string::npos);
  EXPECT_NE(error_of("esp == 1").find("takes no value"), std::string::npos);
  EXPECT_NE(error_of("seq == many").find("takes a number"), std::string::npos);
  EXPECT_NE(error_of("exchange == tea").find("not an IKE exchange"), std::string::npos);
  EXPECT_NE(error_of("esp and").find("expected a protocol or field name"), std::string::npos);
  EXPECT_NE(error_of("esp # x").find("unexpected character '#'"), std::string::npos);
  EXPECT_NE(error_of("frame in {1 9-3}").find("not a number or a range"), std::string::npos);
  EXPECT_NE(error_of("frame in {}").find("the set is empty"), std::string::npos);
  EXPECT_NE(error_of("frame in {1 2").find("expected a number or '}'"), std::string::npos);
  EXPECT_NE(error_of("src in {1}").find("takes frame, spi, seq or len"), std::string::npos);
}

std::string source(const std::string& rel) {
  const char* dir = std::getenv("IPSENTRY_SOURCE_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/" + rel;
}

class FaultsModel : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(source("samples/esp-tunnel-faults.pcap"),
                                     ipsentry::filters::load_config(source("samples/esp-tunnel.yaml")));
    for (int i = 0; i < 500 && !model_->done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(model_->done());
  }

  std::vector<std::uint64_t> matching(const std::string& text) {
    FilterError e;
    auto f = DisplayFilter::parse(text, e);
    EXPECT_TRUE(f.has_value()) << text << ": " << e.message;
    std::vector<std::uint64_t> out;
    if (!f) return out;
    for (std::size_t i = 0; i < model_->rows().size(); ++i) {
      if (f->matches(model_->rows()[i], i + 1, model_->addresses())) out.push_back(i + 1);
    }
    return out;
  }

  std::unique_ptr<Model> model_;
};

using V = std::vector<std::uint64_t>;

// The sample's verdicts, as `ipsentry verify` prints them: 1-6 and 11 ok,
// 7 icv-fail, 8 replay (of seq 2), 9 unknown SPI 0xdeadbeef, 10 truncated.
TEST_F(FaultsModel, FilterSelectsByVerdict) {
  ASSERT_EQ(model_->rows().size(), 11u);
  EXPECT_EQ(matching("verdict != ok"), (V{7, 8, 9, 10}));
  EXPECT_EQ(matching("verdict == ok"), (V{1, 2, 3, 4, 5, 6, 11}));
  EXPECT_EQ(matching("not verdict == ok"), (V{7, 8, 9, 10}));
  EXPECT_EQ(matching("verdict == replay or verdict == unknown-spi"), (V{8, 9}));
  EXPECT_EQ(matching("malformed"), (V{10}));
}

TEST_F(FaultsModel, FilterSeesOuterAndDecryptedFields) {
  EXPECT_EQ(matching("spi == 0xc0ffee02 and seq >= 3"), (V{6, 11}));
  EXPECT_EQ(matching("spi == 0xdeadbeef or (seq == 5 and verdict != ok)"), (V{9, 10}));
  // Inner addresses are known only for the frames that were opened.
  EXPECT_EQ(matching("src == 192.0.2.10"), (V{1, 3, 5}));
  EXPECT_EQ(matching("addr == 192.0.2.128/25 and decrypted"), (V{1, 2, 3, 4, 5, 6, 11}));
  EXPECT_EQ(matching("dst == 198.51.100.1").size(), 6u);
  EXPECT_EQ(matching("tcp"), (V{11}));
  EXPECT_EQ(matching("port == 80"), (V{11}));
  EXPECT_EQ(matching("icmp and not verdict != ok"), (V{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(matching("ike or ah or cleartext"), V{});
  EXPECT_EQ(matching("frame > 9"), (V{10, 11}));
  EXPECT_EQ(matching("frame in {2, 9-10 4 3-4}"), (V{2, 3, 4, 9, 10}));
  EXPECT_EQ(matching("seq in {4} and not frame in {7}"), (V{9}));
  EXPECT_EQ(matching("src != 203.0.113.1 and esp"), (V{2, 4, 6, 9, 11}));
  // A file has no live trigger.
  EXPECT_EQ(matching("trigger"), V{});
  EXPECT_EQ(model_->trigger_frame(), 0u);
}

TEST(DisplayFilterMatch, TriggerIsTheMarkedRow) {
  FilterError e;
  auto f = DisplayFilter::parse("trigger and esp", e);
  ASSERT_TRUE(f.has_value());
  ipsentry::tui::AddressTable addresses;
  ipsentry::tui::Row row;
  row.kind = ipsentry::tui::FrameKind::esp;
  EXPECT_FALSE(f->matches(row, 1, addresses));
  row.flags |= ipsentry::tui::row_flag::trigger;
  EXPECT_TRUE(f->matches(row, 1, addresses));
}

// --- the policy audit in the filter -------------------------------------

TEST(DisplayFilterParse, AuditVerdicts) {
  for (const char* ok :
       {"verdict == cleartext-leak", "verdict != policy-mismatch", "verdict == blocked-seen",
        "verdict == cleartext-allowed", "audit", "audit == conforms", "audit != permitted",
        "audit == exempt or audit == cleartext-allowed", "audit eq Cleartext-Leak", "audit policy-mismatch"}) {
    EXPECT_EQ(error_of(ok), "") << ok;
  }
  std::size_t pos = 0;
  // What the verdict column never shows is the audit field's.
  EXPECT_EQ(error_of("verdict == conforms", &pos),
            "'conforms' is an audit verdict the verdict column does not show: use 'audit == conforms'");
  EXPECT_EQ(pos, 11u);
  EXPECT_EQ(error_of("audit == leak", &pos),
            "'leak' is not an audit verdict: conforms, permitted, exempt, cleartext-allowed, cleartext-leak, "
            "policy-mismatch, blocked-seen");
  EXPECT_EQ(pos, 9u);
  EXPECT_NE(error_of("verdict == fine")
                .find("with --policy cleartext-leak, policy-mismatch, blocked-seen, "
                      "cleartext-allowed"),
            std::string::npos);
  EXPECT_EQ(error_of("audit >= conforms"), "'audit' takes == or !=");
  EXPECT_NE(error_of("audit in {1}").find("takes frame, spi, seq or len"), std::string::npos);
  EXPECT_NE(error_of("audit == -").find("not an audit verdict"), std::string::npos);
}

// Rows as indexing fills them: the IPsec or IKE verdict and the audit's.
TEST(DisplayFilterMatch, VerdictAndAuditOfRows) {
  using ipsentry::capture::AuditVerdict;
  using ipsentry::ipsec::Verdict;
  using ipsentry::tui::FrameKind;
  using ipsentry::tui::kNoVerdict;
  using ipsentry::tui::Row;
  auto row = [](FrameKind kind, std::uint8_t verdict, AuditVerdict audit) {
    Row r;
    r.kind = kind;
    r.verdict = verdict;
    r.audit = static_cast<std::uint8_t>(audit);
    return r;
  };
  auto ok = static_cast<std::uint8_t>(Verdict::ok);
  const std::vector<Row> rows{
      row(FrameKind::esp, ok, AuditVerdict::conforms),                                                       // 1
      row(FrameKind::esp, ok, AuditVerdict::policy_mismatch),                                                // 2
      row(FrameKind::cleartext, kNoVerdict, AuditVerdict::cleartext_leak),                                   // 3
      row(FrameKind::cleartext, kNoVerdict, AuditVerdict::fallback),                                         // 4
      row(FrameKind::cleartext, kNoVerdict, AuditVerdict::permitted),                                        // 5
      row(FrameKind::cleartext, kNoVerdict, AuditVerdict::none),                                             // 6
      row(FrameKind::esp, static_cast<std::uint8_t>(Verdict::icv_fail), AuditVerdict::none),                 // 7
      row(FrameKind::esp, static_cast<std::uint8_t>(Verdict::unverifiable), AuditVerdict::policy_mismatch),  // 8
      row(FrameKind::cleartext, kNoVerdict, AuditVerdict::blocked_seen),                                     // 9
      row(FrameKind::ike, ok, AuditVerdict::exempt),                                                         // 10
  };
  ipsentry::tui::AddressTable addresses;
  auto matching = [&](const std::string& text) {
    FilterError e;
    auto f = DisplayFilter::parse(text, e);
    EXPECT_TRUE(f.has_value()) << text << ": " << e.message;
    std::vector<std::uint64_t> out;
    for (std::size_t i = 0; f && i < rows.size(); ++i) {
      if (f->matches(rows[i], i + 1, addresses)) out.push_back(i + 1);
    }
    return out;
  };
  EXPECT_EQ(matching("verdict == cleartext-leak"), V{3});
  EXPECT_EQ(matching("verdict == policy-mismatch"), (V{2, 8}));
  EXPECT_EQ(matching("verdict == blocked-seen"), V{9});
  EXPECT_EQ(matching("verdict == cleartext-allowed"), V{4});
  // A finding is not ok: the failures and the findings, never the cleartext
  // the audit passes or did not judge.
  EXPECT_EQ(matching("verdict != ok"), (V{2, 3, 4, 7, 8, 9}));
  EXPECT_EQ(matching("verdict == ok"), (V{1, 10}));
  EXPECT_EQ(matching("verdict == unverifiable"), V{8});
  EXPECT_EQ(matching("verdict != cleartext-leak"), (V{1, 2, 4, 7, 8, 9, 10}));
  EXPECT_EQ(matching("verdict"), (V{1, 2, 3, 4, 7, 8, 9, 10}));
  EXPECT_EQ(matching("audit"), (V{1, 2, 3, 4, 5, 8, 9, 10}));
  EXPECT_EQ(matching("audit == conforms"), V{1});
  EXPECT_EQ(matching("audit == permitted"), V{5});
  EXPECT_EQ(matching("audit == exempt and ike"), V{10});
  EXPECT_EQ(matching("audit != conforms"), (V{2, 3, 4, 5, 8, 9, 10}));
  EXPECT_EQ(matching("cleartext and not audit"), V{6});
}

// esp-tunnel.pcap (15 tunnel frames between 203.0.113.1 and 198.51.100.1)
// with one ICMP echo from NetA to NetB sent in the clear after its 4th
// frame: the tunnel policy's traffic, unprotected.
class LeakModel : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kLeak = 5;

  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / fmt::format("ipsentry-tui-leak-{}.pcap", ::getpid());
    {
      ipsentry::capture::FileSource in(source("samples/esp-tunnel.pcap"));
      ipsentry::capture::PcapWriter out(path_, 1);
      ipsentry::dissect::Frame f;
      for (std::uint64_t n = 1; in.next(f); ++n) {
        out.write(f.ts_ns, f.data, f.orig_len);
        if (n == kLeak - 1) {
          const auto leak = leak_frame();
          out.write(f.ts_ns + 50'000'000, ipsentry::dissect::Bytes(leak.data(), leak.size()));
        }
      }
      out.close();
    }
    policy_ = ipsentry::filters::load_config(source("samples/esp-tunnel.yaml"));
    audit_ = std::make_unique<ipsentry::capture::PolicyAudit>(
        policy_, ipsentry::filters::LocalAddresses{policy_.local_addresses, {}}, "esp-tunnel.yaml");
    model_ =
        std::make_unique<Model>(path_, ipsentry::filters::load_config(source("samples/esp-tunnel.yaml")), audit_.get());
    for (int i = 0; i < 500 && !model_->done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(model_->done());
  }

  void TearDown() override {
    model_.reset();
    std::filesystem::remove(path_);
  }

  static std::uint16_t checksum(const std::uint8_t* p, std::size_t n) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
  }

  // Ethernet, IPv4 192.0.2.10 -> 192.0.2.130, ICMP echo request.
  static std::vector<std::uint8_t> leak_frame() {
    std::vector<std::uint8_t> f{0x02, 0,  0,   0,  0x02, 0x02, 0x02, 0, 0,  0, 0x01, 0x01, 0x08, 0x00,
                                0x45, 0,  0,   28, 0,    1,    0,    0, 64, 1, 0,    0,    192,  0,
                                2,    10, 192, 0,  2,    130,  8,    0, 0,  0, 0,    0x4a, 0,    1};
    const std::uint16_t ip = checksum(f.data() + 14, 20);
    f[24] = static_cast<std::uint8_t>(ip >> 8);
    f[25] = static_cast<std::uint8_t>(ip);
    const std::uint16_t icmp = checksum(f.data() + 34, 8);
    f[36] = static_cast<std::uint8_t>(icmp >> 8);
    f[37] = static_cast<std::uint8_t>(icmp);
    return f;
  }

  std::vector<std::uint64_t> matching(const std::string& text) {
    FilterError e;
    auto f = DisplayFilter::parse(text, e);
    EXPECT_TRUE(f.has_value()) << text << ": " << e.message;
    std::vector<std::uint64_t> out;
    for (std::size_t i = 0; f && i < model_->rows().size(); ++i) {
      if (f->matches(model_->rows()[i], i + 1, model_->addresses())) out.push_back(i + 1);
    }
    return out;
  }

  std::filesystem::path path_;
  ipsentry::filters::Config policy_;
  std::unique_ptr<ipsentry::capture::PolicyAudit> audit_;
  std::unique_ptr<Model> model_;
};

TEST_F(LeakModel, IndexingJudgesEveryFrame) {
  ASSERT_EQ(model_->rows().size(), 16u);
  EXPECT_TRUE(model_->audited());
  EXPECT_EQ(matching("verdict == cleartext-leak"), V{kLeak});
  EXPECT_EQ(matching("verdict != ok"), V{kLeak});
  EXPECT_EQ(matching("audit == conforms").size(), 15u);
  EXPECT_EQ(matching("audit == conforms and esp").size(), 15u);
  EXPECT_EQ(audit_->counts()[static_cast<std::size_t>(ipsentry::capture::AuditVerdict::cleartext_leak)], 1u);
  EXPECT_EQ(audit_->counts()[static_cast<std::size_t>(ipsentry::capture::AuditVerdict::conforms)], 15u);
}

TEST_F(LeakModel, TreeAndStatisticsSayWhy) {
  ipsentry::dissect::Tree tree;
  model_->tree(kLeak, tree);
  ASSERT_FALSE(tree.root.children.empty());
  // The finding comes first, where the frame's details open.
  const auto& first = tree.root.children.front();
  EXPECT_EQ(first.role, ipsentry::dissect::NodeRole::verdict_failed);
  EXPECT_EQ(first.text.rfind("Policy audit: cleartext-leak — 192.0.2.10 → 192.0.2.130 ICMP type 8 [policy "
                             "'neta-netb', outbound]: ",
                             0),
            0u)
      << first.text;
  model_->tree(1, tree);
  const std::string text = ipsentry::dissect::render_tree(tree.root);
  EXPECT_NE(text.find("Policy audit: conforms — inner 192.0.2.10 → 192.0.2.130 ICMP"), std::string::npos) << text;

  const auto stats = model_->statistics();
  ASSERT_TRUE(stats.audit.has_value());
  EXPECT_EQ(stats.audit->counts_text, "15 conforms, 1 cleartext-leak");
  EXPECT_EQ(stats.audit->title.rfind("Policy audit (esp-tunnel.yaml as 203.0.113.1)", 0), 0u);
  const auto sections = ipsentry::tui::stat_sections_from_model(stats);
  bool policy_row = false;
  bool timeline = false;
  for (const auto& sec : sections) {
    for (const auto& [name, value] : sec.rows) {
      if (name.rfind("neta-netb ", 0) == 0 && name.find(" 1 ") != std::string::npos) policy_row = true;
      if (name.find("0xc0ffee01") != std::string::npos && name.find(" packets") != std::string::npos) timeline = true;
    }
  }
  EXPECT_TRUE(policy_row) << "the per-policy table counts the leak";
  EXPECT_TRUE(timeline) << "the SA timeline lists the tunnel's SAs";
}

TEST_F(FaultsModel, DetailsAndStatisticsMatchVerify) {
  EXPECT_NE(model_->info(7).find("expected ea87edb764a74062384816b9e94694e4, got f9744f8408fd20679798defabc74180f"),
            std::string::npos);
  EXPECT_NE(model_->info(8).find("sequence number already received"), std::string::npos);
  EXPECT_NE(model_->info(1).find("192.0.2.10 → 192.0.2.130 ICMP echo request"), std::string::npos);

  ipsentry::dissect::Tree tree;
  model_->tree(1, tree);
  const std::string text = ipsentry::dissect::render_tree(tree.root);
  EXPECT_NE(text.find("Verdict: ok"), std::string::npos);
  EXPECT_NE(text.find("Decrypted inner packet"), std::string::npos);
  EXPECT_NE(text.find("Internet Control Message Protocol, echo request"), std::string::npos);
  ASSERT_EQ(tree.buffers.size(), 1u);
  EXPECT_EQ(tree.buffers[0].size(), 76u);
  // Opening a frame again, out of order, does not change its verdict.
  model_->tree(8, tree);
  EXPECT_NE(ipsentry::dissect::render_tree(tree.root).find("Verdict: replay"), std::string::npos);
  model_->tree(8, tree);
  EXPECT_NE(ipsentry::dissect::render_tree(tree.root).find("Verdict: replay"), std::string::npos);

  const auto s = model_->statistics();
  EXPECT_EQ(s.totals.verdicts[0], 7u);
  EXPECT_EQ(s.totals.bad_spi_packets, 1u);
  EXPECT_EQ(s.totals.packets_not_authenticated, 1u);
  EXPECT_EQ(s.totals.packets_with_replay_detection, 1u);
  EXPECT_EQ(s.frames.frames, 11u);
}

TEST(ScreenText, HelpWrapsToTheScreenUnderItsTextColumn) {
  const auto out = ipsentry::tui::wrap_lines(
      {"Keys", "  f n N        find the next frame matching an expression; next; previous — with more words"}, 40);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0], "Keys");
  EXPECT_EQ(out[1], "  f n N        find the next frame");
  EXPECT_EQ(out[2], "               matching an expression;");
  EXPECT_EQ(out[3], "               next; previous — with");  // 15 + 21 columns: "more" would make 41
  EXPECT_EQ(out[4], "               more words");
  // Every help line fits 80 columns once wrapped, and no word is lost.
  std::string before, after;
  for (const auto& l : ipsentry::tui::help_text()) before += l + " ";
  for (const auto& l : ipsentry::tui::wrap_lines(ipsentry::tui::help_text(), 80)) {
    std::size_t cols = 0;
    for (unsigned char c : l) cols += (c & 0xc0) != 0x80 ? 1 : 0;
    EXPECT_LE(cols, 80u) << l;
    after += l + " ";
  }
  auto words = [](const std::string& s) {
    std::vector<std::string> w;
    std::istringstream in(s);
    for (std::string x; in >> x;) w.push_back(x);
    return w;
  };
  EXPECT_EQ(words(before), words(after));
}

TEST(ScreenText, SaMonitorFromAnEnforcementSnapshot) {
  const auto snap = nlohmann::json::parse(R"({
    "sas": [{"name": "a-to-b", "spi": 4096, "protocol": "esp", "direction": "outbound", "src": "192.0.2.1",
             "dst": "192.0.2.2", "mode": "transport", "encryption": "aes-gcm-16", "integrity": "none",
             "state": "active", "sent": {"packets": 12, "bytes": 1200}, "received": {"packets": 0, "bytes": 0},
             "verdicts": {"ok": 0, "icv-fail": 0}, "last_sent_seq": 12,
             "replay": {"window": 64, "highest_seq": 0, "received_in_window": 0},
             "lifetime_left": {"seconds": 3590, "bytes": null, "packets": null}},
            {"name": "b-to-a", "spi": 4097, "protocol": "esp", "direction": "inbound", "src": "192.0.2.2",
             "dst": "192.0.2.1", "mode": "transport", "encryption": "aes-gcm-16", "integrity": "none",
             "state": "active", "sent": {"packets": 0, "bytes": 0}, "received": {"packets": 9, "bytes": 900},
             "verdicts": {"ok": 9, "icv-fail": 2, "replay": 1}, "last_sent_seq": 0,
             "replay": {"window": 64, "highest_seq": 9, "received_in_window": 9},
             "lifetime_left": {"seconds": null, "bytes": null, "packets": null}}],
    "quick_mode": {"active_security_associations": 2, "key_additions": 2, "key_deletions": 0, "active_tunnels": 0,
                   "bad_spi_packets": 3, "packets_not_decrypted": 0, "packets_not_authenticated": 2,
                   "packets_with_replay_detection": 1,
                   "sent": {"confidential_bytes": 1000, "authenticated_bytes": 1000, "transport_bytes": 1000,
                            "tunnel_bytes": 0},
                   "received": {"confidential_bytes": 800, "authenticated_bytes": 800, "transport_bytes": 800,
                                "tunnel_bytes": 0}}})");
  const auto lines = ipsentry::tui::sa_lines_from_snapshot(snap);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].spi, "0x00001000");
  EXPECT_EQ(lines[0].packets, 12u);
  EXPECT_EQ(lines[0].replay, "sent up to 12");
  EXPECT_EQ(lines[0].lifetime, "3590 s");
  EXPECT_EQ(lines[1].packets, 9u);
  EXPECT_EQ(lines[1].errors, 3u);
  EXPECT_EQ(lines[1].replay, "top 9, 9/64 in window");
  EXPECT_EQ(lines[1].lifetime, "unlimited");
  const auto sections = ipsentry::tui::stat_sections_from_snapshot(snap);
  ASSERT_FALSE(sections.empty());
  bool found = false;
  for (const auto& [name, value] : sections[0].rows) {
    if (name == "Bad SPI Packets") found = value == "3";
  }
  EXPECT_TRUE(found);
  // A snapshot without the expected shape gives empty tables, not a crash.
  EXPECT_TRUE(ipsentry::tui::sa_lines_from_snapshot(nlohmann::json::parse(R"({"sas": 3})")).empty());
  EXPECT_TRUE(ipsentry::tui::stat_sections_from_snapshot(nlohmann::json::parse("[]")).empty());
  // Another version's Quick Mode object is reported, not shown as zeros.
  EXPECT_THROW((void)ipsentry::tui::stat_sections_from_snapshot(
                   nlohmann::json::parse(R"({"quick_mode": {"active_security_associations": 2}})")),
               nlohmann::json::exception);
}

}  // namespace
