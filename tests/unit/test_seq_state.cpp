// What keeps a (key, sequence number) pair from being used twice and one
// enforcement out of another's way (issue 15, items 1, 2 and 8): the
// sequence-number ceilings in the engine, the state file's key ids and
// merge, the instance locks, reading our iptables rules back, and the key
// hygiene checks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/enforce/instance_lock.hpp"
#include "ipsentry/enforce/rules.hpp"
#include "ipsentry/enforce/sa_state.hpp"
#include "ipsentry/filters/key_hygiene.hpp"
#include "ipsentry/filters/secret.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"
#include "test_support.hpp"

namespace ipsentry {
namespace {

namespace fs = std::filesystem;
using enforce::SaStateFile;
using enforce::SeqSide;
using filters::Cipher;
using filters::Integrity;
using filters::IpsecProtocol;
using filters::SaMode;
using test::make_sa;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "ipsentry-seq-XXXXXX").string();
    path_ = mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ------------------------------------------------------------ ceilings

// Raises the ceiling it is asked about to what the worker needs, and
// counts the calls.
class FakeRecorder : public ipsec::SeqRecorder {
 public:
  void nearing(ipsec::SecurityAssociation&) noexcept override { ++nearing_calls; }
  bool reach(ipsec::SecurityAssociation&, const std::atomic<std::uint64_t>& ceiling,
             std::uint64_t seq) noexcept override {
    ++reach_calls;
    if (!grant) return false;
    const_cast<std::atomic<std::uint64_t>&>(ceiling).store(seq);
    return true;
  }
  int nearing_calls = 0;
  int reach_calls = 0;
  bool grant = false;
};

ipsec::Sad sad_of(const filters::SaConfig& cfg) {
  std::vector<filters::SaConfig> v;
  v.push_back(cfg.clone());
  return ipsec::Sad(std::move(v));
}

// A sender's and a receiver's SAD with the same SA.
struct Link {
  explicit Link(const filters::SaConfig& cfg) : tx(sad_of(cfg)), rx(sad_of(cfg)) {}
  ipsec::OutboundResult send() { return sender.outbound(tx.at(0), clear); }
  ipsec::InboundResult receive(const std::vector<std::uint8_t>& wire) {
    dissect::dissect_ip(wire, pkt);
    return receiver.inbound(rx, pkt, 1, true);
  }
  std::vector<std::uint8_t> clear = test::ipv4("192.0.2.1", "192.0.2.2", 1, test::icmp_echo(1, 1, 16, false));
  ipsec::Sad tx;
  ipsec::Sad rx;
  ipsec::Engine sender;
  ipsec::Engine receiver;
  dissect::Packet pkt;
};

filters::SaConfig gcm_sa() {
  return make_sa(IpsecProtocol::esp, Cipher::aes_gcm_16, Integrity::none, SaMode::transport, "192.0.2.1", "192.0.2.2");
}

TEST(SeqCeiling, NothingAboveTheSendCeilingIsSentUntilRecorded) {
  Link l(gcm_sa());
  FakeRecorder rec;
  l.sender.set_recorder(&rec);
  l.tx.at(0).send_ceiling = 3;
  l.tx.at(0).record_at = 2;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const auto r = l.send();
    ASSERT_EQ(r.status, ipsec::OutboundStatus::ok);
    EXPECT_EQ(r.seq, i);
  }
  EXPECT_EQ(rec.nearing_calls, 2) << "sequence numbers 2 and 3 reached record_at";
  EXPECT_EQ(l.send().status, ipsec::OutboundStatus::unrecorded);
  EXPECT_EQ(l.tx.at(0).last_sent_seq, 3u) << "a refused packet uses no sequence number";
  rec.grant = true;
  const auto r = l.send();
  ASSERT_EQ(r.status, ipsec::OutboundStatus::ok) << "the worker waited for the record instead of dropping";
  EXPECT_EQ(r.seq, 4u);
}

TEST(SeqCeiling, NothingAboveTheAcceptCeilingIsAcceptedAndForgeriesDoNotAsk) {
  Link l(gcm_sa());
  std::vector<std::vector<std::uint8_t>> wire;
  for (int i = 0; i < 4; ++i) {
    const auto r = l.send();
    wire.emplace_back(r.packet.begin(), r.packet.end());
  }
  FakeRecorder rec;
  l.receiver.set_recorder(&rec);
  l.rx.at(0).accept_ceiling = 2;
  EXPECT_EQ(l.receive(wire[0]).verdict, ipsec::Verdict::ok);
  EXPECT_EQ(l.receive(wire[1]).verdict, ipsec::Verdict::ok);
  // A forged packet with a high number must not move anything.
  auto forged = wire[3];
  forged.back() ^= 1;
  EXPECT_EQ(l.receive(forged).verdict, ipsec::Verdict::icv_fail);
  EXPECT_EQ(rec.reach_calls, 0) << "only an authentic packet may ask for a higher ceiling";
  const auto refused = l.receive(wire[2]);
  EXPECT_EQ(refused.reason, ipsec::Reason::seq_unrecorded);
  EXPECT_EQ(rec.reach_calls, 1);
  EXPECT_EQ(l.rx.at(0).replay.top(), 2u) << "a refused packet is not committed to the replay window";
  rec.grant = true;
  EXPECT_EQ(l.receive(wire[2]).verdict, ipsec::Verdict::ok) << "once recorded, the same packet is accepted";
  EXPECT_EQ(l.receive(wire[2]).reason, ipsec::Reason::replay_duplicate);
}

TEST(SeqCeiling, UnlimitedByDefaultForVerify) {
  Link l(gcm_sa());
  for (int i = 0; i < 3; ++i) {
    const auto r = l.send();
    ASSERT_EQ(r.status, ipsec::OutboundStatus::ok);
    EXPECT_EQ(l.receive({r.packet.begin(), r.packet.end()}).verdict, ipsec::Verdict::ok);
  }
}

// ------------------------------------------------------------ key ids

std::vector<std::uint8_t> salt_of(std::uint8_t b) { return std::vector<std::uint8_t>(32, b); }

TEST(KeyIds, FollowTheKeyNotTheNameSpiOrAlgorithm) {
  auto a = gcm_sa();
  auto renamed = a.clone();
  renamed.name = "renamed";
  renamed.spi = 0x9999;
  auto other_icv = a.clone();
  other_icv.cipher = Cipher::aes_gcm_12;  // the same key and salt build the same counter blocks
  const auto salt = salt_of(7);
  const auto ids = enforce::sa_key_ids(a, salt);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0].rfind("e:", 0), 0u);
  EXPECT_EQ(ids[0].size(), 2u + 32u) << "128 bits in hex";
  EXPECT_EQ(enforce::sa_key_ids(renamed, salt), ids);
  EXPECT_EQ(enforce::sa_key_ids(other_icv, salt), ids);
  auto new_key = a.clone();
  new_key.enc_key = filters::SecretBytes(test::key_of(20, 200));
  EXPECT_NE(enforce::sa_key_ids(new_key, salt), ids) << "a new key under the old name starts afresh";
  EXPECT_NE(enforce::sa_key_ids(a, salt_of(8)), ids) << "another salt, unrelated ids";
}

TEST(KeyIds, NeverContainTheKey) {
  auto sa = make_sa(IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1",
                    "192.0.2.2");
  const auto ids = enforce::sa_key_ids(sa, salt_of(1));
  ASSERT_EQ(ids.size(), 2u) << "one id per key: encryption and integrity";
  const std::string enc = sa.enc_key.reveal_hex().substr(2);
  const std::string auth = sa.auth_key.reveal_hex().substr(2);
  for (const auto& id : ids) {
    for (std::size_t i = 0; i + 8 <= enc.size(); i += 4) EXPECT_EQ(id.find(enc.substr(i, 8)), std::string::npos);
    for (std::size_t i = 0; i + 8 <= auth.size(); i += 4) EXPECT_EQ(id.find(auth.substr(i, 8)), std::string::npos);
  }
  auto keyless =
      make_sa(IpsecProtocol::esp, Cipher::null, Integrity::none, SaMode::transport, "192.0.2.1", "192.0.2.2");
  EXPECT_EQ(enforce::sa_key_ids(keyless, salt_of(1)), std::vector<std::string>{"n:sa/00004242"});
}

// ------------------------------------------------------------ state file

TEST(StateFile, RecordsSurviveASaveAndRemovedSasStay) {
  TempDir d;
  const fs::path file = d.path() / "sa-state.json";
  auto x = gcm_sa();
  auto y =
      make_sa(IpsecProtocol::ah, Cipher::null, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1", "192.0.2.2");
  y.name = "y";
  {
    SaStateFile st = SaStateFile::load(file);
    EXPECT_EQ(st.size(), 0u);
    st.raise(SeqSide::sent, st.key_ids(x), 1000, "x");
    st.raise(SeqSide::accepted, st.key_ids(y), 50, "y");
    st.raise(SeqSide::sent, st.key_ids(x), 900, "x");  // never lowered by a raise
    st.save(file);
  }
  EXPECT_FALSE(fs::exists(d.path() / "sa-state.json.tmp"));
  struct stat sb {};
  ASSERT_EQ(stat(file.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  SaStateFile st = SaStateFile::load(file);
  EXPECT_EQ(st.ceiling(SeqSide::sent, st.key_ids(x), x), 1000u);
  EXPECT_EQ(st.ceiling(SeqSide::accepted, st.key_ids(y), y), 50u);
  EXPECT_EQ(st.ceiling(SeqSide::accepted, st.key_ids(x), x), 0u) << "the sides are kept apart";
  // A later run without y (removed from the configuration) keeps y's record.
  st.raise(SeqSide::sent, st.key_ids(x), 2000, "x");
  st.save(file);
  SaStateFile again = SaStateFile::load(file);
  EXPECT_EQ(again.ceiling(SeqSide::accepted, again.key_ids(y), y), 50u);
  // A clean stop settles to what was really used.
  again.settle(SeqSide::sent, again.key_ids(x), 1234, "x");
  EXPECT_EQ(again.ceiling(SeqSide::sent, again.key_ids(x), x), 1234u);
  const std::string text = again.text();
  EXPECT_EQ(text.find(x.enc_key.reveal_hex().substr(2)), std::string::npos) << "no key in the file";
}

TEST(StateFile, ARecordSharedThroughOneKeyIsTheLargest) {
  auto a = make_sa(IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1",
                   "192.0.2.2");
  auto b = a.clone();
  b.name = "b";
  b.enc_key = filters::SecretBytes(test::key_of(16, 77));  // same integrity key, new encryption key
  SaStateFile st;
  st.raise(SeqSide::sent, st.key_ids(a), 500, "a");
  EXPECT_EQ(st.ceiling(SeqSide::sent, st.key_ids(b), b), 500u) << "a key still in use continues";
}

TEST(StateFile, TheFirstFormatIsReadByNameAndSpiAndKept) {
  TempDir d;
  const fs::path file = d.path() / "sa-state.json";
  std::ofstream(file) << R"({"out": {"spi": 16962, "out_seq_ceiling": 777}, "in": {"spi": 1, "in_replay_top": 9}})";
  auto sa = gcm_sa();
  sa.name = "out";
  SaStateFile st = SaStateFile::load(file);
  EXPECT_EQ(st.ceiling(SeqSide::sent, st.key_ids(sa), sa), 777u);
  sa.spi = 1;
  EXPECT_EQ(st.ceiling(SeqSide::sent, st.key_ids(sa), sa), 0u) << "another SPI is another SA";
  st.save(file);
  SaStateFile again = SaStateFile::load(file);
  sa.spi = 16962;
  EXPECT_EQ(again.ceiling(SeqSide::sent, again.key_ids(sa), sa), 777u);
}

TEST(StateFile, ADamagedFileIsRefusedNotOverwritten) {
  TempDir d;
  const fs::path file = d.path() / "sa-state.json";
  for (const char* bad : {"{\"format\": 2, \"salt\": \"00\"", "[1, 2]", "{\"format\": 9}",
                          "{\"format\": 2, \"salt\": \"zz\", \"sent\": {}, \"accepted\": {}}"}) {
    std::ofstream(file) << bad;
    try {
      (void)SaStateFile::load(file);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const enforce::StateError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("will not start"), std::string::npos) << e.what();
    }
  }
}

TEST(StateFile, ANamedPipeIsRefusedWithoutWaitingForAWriter) {
  TempDir d;
  const fs::path file = d.path() / "sa-state.json";
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  auto load = std::async(std::launch::async, [&] {
    try {
      (void)SaStateFile::load(file);
    } catch (const enforce::StateError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  });
  if (load.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    // Opening for reading waits for a writer: be that writer so the test ends.
    const int fd = ::open(file.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
    ADD_FAILURE() << "load() waited for a writer on a named pipe";
  }
  const std::string what = load.get();
  EXPECT_NE(what.find("not a regular file"), std::string::npos) << what;
}

// ------------------------------------------------------------ locks

TEST(InstanceLock, OneHolderWhoIsNamedAndReleasedOnDestruction) {
  TempDir d;
  const fs::path file = d.path() / "x.lock";
  enforce::LockHolder seen;
  auto first = enforce::InstanceLock::try_take(file, seen);
  ASSERT_TRUE(first.has_value());
  first->record({4242, "/run/x.sock", "/etc/x.yaml", "/var/lib/x", "4:1"});
  enforce::LockHolder holder;
  EXPECT_FALSE(enforce::InstanceLock::try_take(file, holder).has_value());
  EXPECT_EQ(holder.pid, 4242);
  EXPECT_EQ(holder.describe(), "pid 4242, statistics on /run/x.sock, configuration /etc/x.yaml");
  first.reset();
  auto second = enforce::InstanceLock::try_take(file, holder);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->previous().socket, "/run/x.sock") << "what a dead holder left, for --cleanup";
}

TEST(InstanceLock, DirectoriesOthersCanWriteAreRefused) {
  TempDir d;
  const fs::path dir = d.path() / "run";
  enforce::secure_directory(dir);
  struct stat sb {};
  ASSERT_EQ(stat(dir.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0700u);
  chmod(dir.c_str(), 0777);
  EXPECT_THROW(enforce::secure_directory(dir), std::runtime_error);
  EXPECT_NE(enforce::netns_lock_path(dir).filename().string().find("netns-"), std::string::npos);
}

// ------------------------------------------------------------ rules read back

constexpr const char* kSaved = R"(# Generated by iptables-save v1.8.9 (nf_tables)
*raw
:PREROUTING ACCEPT [10:800]
:OUTPUT ACCEPT [0:0]
:IPSENTRY-IN - [0:0]
-A PREROUTING -j IPSENTRY-IN
-A IPSENTRY-IN -p esp -j NFQUEUE --queue-num 0
COMMIT
*mangle
:OUTPUT ACCEPT [0:0]
:IPSENTRY-OUT - [0:0]
-A OUTPUT -j IPSENTRY-OUT
-A IPSENTRY-OUT -o lo -j RETURN
COMMIT
*nat
-A OUTPUT -j IPSENTRY-OUT
COMMIT
)";

TEST(RulesReadBack, OurLinesWithTheJumpsPlace) {
  const auto ours = enforce::our_rules(kSaved);
  EXPECT_EQ(ours.size(), 6u) << fmt::format("{}", fmt::join(ours, "\n"));
  EXPECT_NE(std::find(ours.begin(), ours.end(), "raw -A PREROUTING -j IPSENTRY-IN (rule 1 of PREROUTING)"), ours.end());
  // Someone puts a rule before our jump: that is drift.
  std::string moved = kSaved;
  moved.replace(moved.find("-A OUTPUT -j IPSENTRY-OUT"), 0, "-A OUTPUT -j ACCEPT\n");
  const auto d = enforce::rules_drift(ours, enforce::our_rules(moved));
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "missing: mangle -A OUTPUT -j IPSENTRY-OUT (rule 1 of OUTPUT)");
  // The chain flushed: its rule is missing.
  std::string flushed = kSaved;
  flushed.erase(flushed.find("-A IPSENTRY-OUT -o lo -j RETURN\n"), 31);
  EXPECT_EQ(enforce::rules_drift(ours, enforce::our_rules(flushed)),
            std::vector<std::string>{"missing: mangle -A IPSENTRY-OUT -o lo -j RETURN"});
  EXPECT_TRUE(enforce::rules_drift(ours, enforce::our_rules(kSaved)).empty());
}

TEST(RulesReadBack, AnInstallDeletesOldJumpsInTheSameTransaction) {
  filters::Config cfg;
  const filters::Spd spd(cfg, filters::LocalAddresses{});
  enforce::RuleOptions o;
  std::string twice = kSaved;
  twice.replace(twice.find("-A PREROUTING -j IPSENTRY-IN"), 0, "-A PREROUTING -j IPSENTRY-IN\n");
  const std::string r = enforce::render_install(spd, 4, o, twice);
  const auto raw = r.substr(0, r.find("COMMIT"));
  EXPECT_NE(raw.find("-D PREROUTING -j IPSENTRY-IN\n-D PREROUTING -j IPSENTRY-IN\n-I PREROUTING 1 -j IPSENTRY-IN\n"),
            std::string::npos)
      << raw;
  EXPECT_NE(r.find("-D OUTPUT -j IPSENTRY-OUT\n-I OUTPUT 1 -j IPSENTRY-OUT\n"), std::string::npos);
  // The backstop, unless fail-open.
  EXPECT_NE(r.find("*filter\n:IPSENTRY-GUARD-OUT"), std::string::npos);
  EXPECT_NE(r.find("-A IPSENTRY-GUARD-OUT -m mark --mark 0x4/0x4 -j RETURN"), std::string::npos);
  o.fail_open = true;
  EXPECT_EQ(enforce::render_install(spd, 4, o, kSaved).find("IPSENTRY-GUARD"), std::string::npos);
}

// ------------------------------------------------------------ key hygiene

TEST(KeyHygiene, CounterModeKeysSharedBetweenSasAreNamed) {
  auto out = gcm_sa();
  out.name = "out";
  out.direction = filters::Direction::outbound;
  auto in = out.clone();
  in.name = "in";
  in.direction = filters::Direction::inbound;
  filters::Config cfg;
  cfg.sas.push_back(out.clone());
  cfg.sas.push_back(in.clone());
  auto w = filters::shared_nonce_keys(cfg);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("SAs out"), std::string::npos);
  EXPECT_NE(w[0].find("both directions"), std::string::npos);
  EXPECT_EQ(w[0].find(out.enc_key.reveal_hex().substr(2)), std::string::npos);
  // CBC draws a random IV: sharing is poor practice but repeats no nonce.
  filters::Config cbc;
  for (auto* sa : {&out, &in}) {
    auto c = make_sa(IpsecProtocol::esp, Cipher::aes_cbc, Integrity::hmac_sha256_128, SaMode::transport, "192.0.2.1",
                     "192.0.2.2");
    c.name = sa->name;
    cbc.sas.push_back(std::move(c));
  }
  EXPECT_TRUE(filters::shared_nonce_keys(cbc).empty());
  // Another salt: other nonces.
  in.enc_key = filters::SecretBytes(test::key_of(20, 1));
  auto salt_changed = test::key_of(20, 1);
  salt_changed[19] ^= 1;
  in.enc_key = filters::SecretBytes(salt_changed);
  cfg.sas[1] = in.clone();
  EXPECT_TRUE(filters::shared_nonce_keys(cfg).empty());
}

TEST(KeyHygiene, KeyFilesOthersCanReadAreNamedWithTheFix) {
  TempDir d;
  const fs::path f = d.path() / "k.key";
  std::ofstream(f) << "This is a test";
  chmod(f.c_str(), 0600);
  EXPECT_FALSE(filters::exposed_key_file(f).has_value());
  chmod(f.c_str(), 0640);
  EXPECT_EQ(filters::exposed_key_file(f).value_or(""),
            fmt::format("{} holds keys and is readable by its group (mode 0640): run chmod go-rwx {}", f.string(),
                        f.string()));
  chmod(f.c_str(), 0604);
  EXPECT_NE(filters::exposed_key_file(f).value_or("").find("all other users (mode 0604)"), std::string::npos);
  // Through the loader: key_file and inline keys.
  const fs::path cfg = d.path() / "c.yaml";
  std::ofstream(cfg) << "sas:\n  - spi: 0x1001\n    protocol: ah\n    auth: hmac-md5-96\n    key_file: k.key\n";
  chmod(cfg.c_str(), 0644);
  auto c = filters::load_config(cfg);
  const auto about = [&](const std::string& what) {
    return std::count_if(c.warnings.begin(), c.warnings.end(),
                         [&](const std::string& w) { return w.find(what) != std::string::npos; });
  };
  EXPECT_EQ(about("k.key holds keys and is readable by all other users (mode 0604)"), 1)
      << fmt::format("{}", fmt::join(c.warnings, "\n"));
  EXPECT_EQ(about("c.yaml holds keys"), 0) << "the configuration only points at the key file";
  std::ofstream(cfg) << "sas:\n  - spi: 0x1001\n    protocol: ah\n    auth: hmac-sha256-128\n    auth_key: 0x"
                     << std::string(64, 'a') << "\n";
  c = filters::load_config(cfg);
  EXPECT_EQ(about("c.yaml holds keys and is readable by its group and all other users (mode 0644)"), 1);
}

TEST(KeyHygiene, KeyMemoryIsLockedOrSaysWhy) {
  const filters::SecretBytes k(test::key_of(32, 5));
  const std::string notice = filters::key_memory_notice();
  if (geteuid() == 0) {
    EXPECT_EQ(notice, "") << "root may lock memory";
  } else if (!notice.empty()) {
    EXPECT_NE(notice.find("RLIMIT_MEMLOCK"), std::string::npos) << notice;
  }
  EXPECT_EQ(k.bytes().size(), 32u);
  EXPECT_EQ(k.bytes()[1], static_cast<std::uint8_t>(5 + 7));
}

}  // namespace
}  // namespace ipsentry
