// The capture buffer, triggers, pcapng writing and embedded secrets.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/frame_buffer.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/capture/pcapng_writer.hpp"
#include "ipsentry/capture/trigger.hpp"
#include "ipsentry/filters/exporters.hpp"
#include "ipsentry/filters/importers.hpp"
#include "ipsentry/ipsec/sad.hpp"

using namespace ipsentry;
using capture::FrameBuffer;
using capture::RecordHeader;

namespace {

// A frame whose bytes are a function of its number, so a reader can tell a
// torn or overwritten record from a good one.
std::vector<std::uint8_t> frame_bytes(std::uint64_t n, std::size_t len) {
  std::vector<std::uint8_t> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = static_cast<std::uint8_t>((n * 131 + i * 7) & 0xff);
  if (len >= 8) std::memcpy(v.data(), &n, 8);
  return v;
}

bool frame_ok(const RecordHeader& r) {
  auto d = r.data();
  auto want = frame_bytes(r.seq, d.size());
  return std::equal(d.begin(), d.end(), want.begin());
}

std::filesystem::path temp_path(const char* name) {
  return std::filesystem::temp_directory_path() / (std::string("ipsentry-test-") + name);
}

}  // namespace

TEST(FrameBuffer, LinearFillsAndStopsWithoutOverwriting) {
  FrameBuffer b(FrameBuffer::kMinBytes);
  std::uint64_t n = 0;
  for (;;) {
    auto data = frame_bytes(n + 1, 1000);
    if (b.append(static_cast<std::int64_t>(n), data, 1000, false) == nullptr) break;
    ++n;
  }
  const std::size_t rec = capture::record_size(1000);
  EXPECT_EQ(n, FrameBuffer::kMinBytes / rec);
  EXPECT_EQ(b.used(), n * rec);
  EXPECT_EQ(b.evicted(), 0u);
  std::uint64_t seen = 0;
  b.for_each([&](const RecordHeader& r) {
    EXPECT_EQ(r.seq, ++seen);
    EXPECT_TRUE(frame_ok(r));
  });
  EXPECT_EQ(seen, n);
}

TEST(FrameBuffer, CircularKeepsTheNewestFramesInOrder) {
  FrameBuffer b(FrameBuffer::kMinBytes);
  std::mt19937 rng(7);
  const std::uint64_t total = 20000;
  for (std::uint64_t i = 1; i <= total; ++i) {
    const std::size_t len = 40 + rng() % 1500;
    ASSERT_NE(b.append(0, frame_bytes(i, len), static_cast<std::uint32_t>(len), true), nullptr) << i;
  }
  EXPECT_GT(b.evicted(), 0u);
  EXPECT_EQ(b.evicted() + b.count(), total);
  std::uint64_t expect = b.evicted() + 1;
  b.for_each([&](const RecordHeader& r) {
    EXPECT_EQ(r.seq, expect++);
    EXPECT_TRUE(frame_ok(r));
  });
  EXPECT_EQ(expect, total + 1);
  EXPECT_LE(b.used(), b.capacity());
  // Nearly full: at most one record's worth of slack at the end of the ring.
  EXPECT_GT(b.used(), b.capacity() - 2 * capture::record_size(1540));
}

TEST(FrameBuffer, ProtectedFramesAreNeverOverwritten) {
  FrameBuffer b(FrameBuffer::kMinBytes);
  std::uint64_t i = 1;
  for (; i <= 100; ++i) ASSERT_NE(b.append(0, frame_bytes(i, 500), 500, true), nullptr);
  b.protect_from(50);
  std::uint64_t stored = 100;
  while (b.append(0, frame_bytes(++i, 500), 500, true) != nullptr) ++stored;
  EXPECT_EQ(b.evicted(), 49u);  // frames 1..49 went, 50 on stayed
  std::uint64_t first = 0;
  b.for_each([&](const RecordHeader& r) {
    if (first == 0) first = r.seq;
  });
  EXPECT_EQ(first, 50u);
  EXPECT_EQ(b.count(), stored - 49);
}

TEST(FrameBuffer, RefusesFramesLargerThanTheBuffer) {
  FrameBuffer b(FrameBuffer::kMinBytes);
  std::vector<std::uint8_t> big(FrameBuffer::kMinBytes);
  EXPECT_EQ(b.append(0, big, 0, true), nullptr);
  EXPECT_EQ(b.too_large(), 1u);
  EXPECT_NE(b.append(0, frame_bytes(1, 60), 60, true), nullptr);
}

TEST(FrameBuffer, SizeIsChecked) {
  EXPECT_THROW(FrameBuffer(FrameBuffer::kMinBytes - 1), capture::CaptureError);
  EXPECT_THROW(FrameBuffer(FrameBuffer::kMaxBytes + 1), capture::CaptureError);
  EXPECT_THROW(FrameBuffer(FrameBuffer::kMinBytes, "/nonexistent-dir"), capture::CaptureError);
}

TEST(FrameBuffer, SpillFileLeavesNothingBehind) {
  auto dir = temp_path("spill");
  std::filesystem::create_directories(dir);
  {
    FrameBuffer b(FrameBuffer::kMinBytes, dir);
    ASSERT_NE(b.append(0, frame_bytes(1, 100), 100, false), nullptr);
    EXPECT_TRUE(std::filesystem::is_empty(dir));  // unlinked at once
  }
  std::filesystem::remove_all(dir);
}

// A reader follows a circular writer that laps it: every record it reads
// is intact, in order, and what it misses is counted, never read torn.
TEST(FrameBuffer, ConcurrentReaderNeverSeesAnOverwrittenRecord) {
  FrameBuffer b(FrameBuffer::kMinBytes);
  const std::uint64_t total = 300000;
  std::atomic<bool> done{false};
  std::uint64_t read = 0, skipped = 0, bad = 0, out_of_order = 0;
  std::thread reader([&] {
    FrameBuffer::Cursor c;
    std::uint64_t last = 0;
    for (;;) {
      RecordHeader* r = b.claim(c, skipped);
      if (r == nullptr) {
        if (done.load()) {
          r = b.claim(c, skipped);
          if (r == nullptr) return;
        } else {
          std::this_thread::yield();
          continue;
        }
      }
      if (!frame_ok(*r)) ++bad;
      if (r->seq <= last) ++out_of_order;
      last = r->seq;
      r->note.verified = 1;
      // Every so often, be slow, so that the writer laps the reader.
      if (r->seq % 5000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ++read;
      b.release(c, *r);
    }
  });
  std::mt19937 rng(11);
  for (std::uint64_t i = 1; i <= total; ++i) {
    const std::size_t len = 60 + rng() % 1400;
    ASSERT_NE(b.append(0, frame_bytes(i, len), static_cast<std::uint32_t>(len), true), nullptr);
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(read + skipped, total);
}

TEST(Trigger, ParsesNetcapForms) {
  auto t = capture::Trigger::parse({"P", "0x17", "0x3a"});
  EXPECT_EQ(t.kind, capture::Trigger::Kind::pattern);
  EXPECT_EQ(t.offset, 0x17u);
  ASSERT_EQ(t.pattern.size(), 1u);
  EXPECT_EQ(t.pattern[0], 0x3a);
  t = capture::Trigger::parse({"bp", "50", "17", "c0ffee01"});
  EXPECT_EQ(t.kind, capture::Trigger::Kind::buffer_then_pattern);
  EXPECT_EQ(t.percent, 50u);
  EXPECT_EQ(t.pattern.size(), 4u);
  std::vector<std::uint8_t> f(0x17 + 4, 0);
  std::memcpy(f.data() + 0x17, "\xc0\xff\xee\x01", 4);
  EXPECT_TRUE(t.matches(f));
  f.pop_back();
  EXPECT_FALSE(t.matches(f));  // pattern would run past the end
  EXPECT_EQ(capture::Trigger::parse({"N"}).kind, capture::Trigger::Kind::circular);
  EXPECT_EQ(capture::Trigger::parse({"B", "75%"}).percent, 75u);
}

TEST(Trigger, RejectsBadSpecsWithTheReason) {
  auto msg = [](std::vector<std::string> w) {
    try {
      (void)capture::Trigger::parse(w);
    } catch (const capture::TriggerError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(msg({"P", "17", "abc"}).find("even number"), std::string::npos);
  EXPECT_NE(msg({"P", "17", "zz"}).find("hexadecimal"), std::string::npos);
  EXPECT_NE(msg({"B", "0"}).find("1 to 100"), std::string::npos);
  EXPECT_NE(msg({"B", "101"}).find("1 to 100"), std::string::npos);
  EXPECT_NE(msg({"P", "0x1g", "00"}).find("offset"), std::string::npos);
  EXPECT_NE(msg({"X"}).find("unknown trigger"), std::string::npos);
  EXPECT_NE(msg({"BP", "50", "17"}).find("PCT OFFSET PATTERN"), std::string::npos);
  EXPECT_NE(msg({"N", "5"}).find("no arguments"), std::string::npos);
  EXPECT_EQ(capture::parse_stop_on("icv-fail,ike-fail"), capture::kStopIcvFail | capture::kStopIkeFail);
  EXPECT_THROW((void)capture::parse_stop_on("icv-fail,bogus"), capture::TriggerError);
  EXPECT_EQ(capture::stop_on_names(capture::kStopReplay | capture::kStopMalformed), "replay,malformed");
}

TEST(TriggerWatch, FiresAndStopsAsNetcapDoes) {
  using Step = capture::TriggerWatch::Step;
  std::vector<std::uint8_t> plain(40, 0), marked(40, 0);
  marked[0x17] = 0x3a;
  // P: the first matching frame fires and stops; nothing before it does.
  capture::TriggerWatch p(capture::Trigger::parse({"P", "0x17", "0x3a"}));
  EXPECT_EQ(p.stored(plain, 100, 1000, 100), Step::none);
  EXPECT_EQ(p.stored(marked, 200, 1000, 100), Step::fire_and_stop);
  EXPECT_TRUE(p.fired());
  // B 50: fires on the frame that brings the fill to half.
  capture::TriggerWatch b(capture::Trigger::parse({"B", "50"}));
  EXPECT_EQ(b.stored(plain, 499, 1000, 100), Step::none);
  EXPECT_EQ(b.stored(plain, 500, 1000, 1), Step::fire_and_stop);
  // BP 50: a pattern before the level does not count; the level once
  // reached stays reached (a circular buffer's fill can drop again).
  capture::TriggerWatch bp(capture::Trigger::parse({"BP", "50", "0x17", "3a"}));
  EXPECT_EQ(bp.stored(marked, 100, 1000, 100), Step::none);
  EXPECT_EQ(bp.stored(plain, 600, 1000, 100), Step::none);
  EXPECT_EQ(bp.stored(marked, 300, 1000, 100), Step::fire_and_stop);
  // PB 25: the pattern fires, then 25 % of the capacity stored after it
  // (not counting the trigger frame) stops.
  capture::TriggerWatch pb(capture::Trigger::parse({"PB", "25", "0x17", "3a"}));
  EXPECT_EQ(pb.stored(plain, 100, 1000, 100), Step::none);
  EXPECT_EQ(pb.stored(marked, 200, 1000, 100), Step::fire);
  EXPECT_EQ(pb.stored(marked, 300, 1000, 100), Step::none);  // a second match is just a frame
  EXPECT_EQ(pb.stored(plain, 449, 1000, 149), Step::none);
  EXPECT_EQ(pb.stored(plain, 450, 1000, 1), Step::stop);
  // N and no trigger never fire.
  capture::TriggerWatch n(capture::Trigger::parse({"N"}));
  EXPECT_EQ(n.stored(marked, 1000, 1000, 100), Step::none);
  EXPECT_FALSE(n.fired());
}

TEST(AfterEvent, FramesOrTimeAfterTheEvent) {
  const capture::AfterEvent frames{3, -1};
  EXPECT_FALSE(frames.complete(12, 0, 10, 0));
  EXPECT_TRUE(frames.complete(13, 0, 10, 0));
  EXPECT_FALSE(frames.beyond(13, 0, 10, 0));
  EXPECT_TRUE(frames.beyond(14, 0, 10, 0));
  const capture::AfterEvent none{0, -1};  // --stop-on alone: the event frame ends it
  EXPECT_TRUE(none.complete(10, 0, 10, 0));
  EXPECT_TRUE(none.beyond(11, 0, 10, 0));
  const capture::AfterEvent time{0, 2'000'000'000};
  EXPECT_FALSE(time.complete(50, 2'999'999'999, 10, 1'000'000'000));
  EXPECT_TRUE(time.complete(51, 3'000'000'001, 10, 1'000'000'000));
  EXPECT_FALSE(time.beyond(50, 3'000'000'000, 10, 1'000'000'000));
  EXPECT_TRUE(time.beyond(51, 3'000'000'001, 10, 1'000'000'000));
  EXPECT_FALSE(time.beyond(9, 9'000'000'000, 10, 1'000'000'000));  // before the event: never cut
}

TEST(PcapngWriter, RoundTripsFramesCommentsSecretsAndStatistics) {
  auto path = temp_path("w.pcapng");
  {
    capture::InterfaceDescription iface{1, 65535, "veth0", "test interface", "esp or udp port 500"};
    capture::PcapngWriter w(path, iface, "ipsentry test");
    w.write_secrets(capture::kSecretsEspSa,
                    "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x00000001\",\"NULL\",\"\",\"NULL\",\"\"\n");
    std::vector<std::string> comments{"first comment", "second, longer comment"};
    w.write(1'700'000'000'123'456'789, frame_bytes(1, 61), 1500, comments);
    w.write(1'700'000'001'000'000'000, frame_bytes(2, 64), 64);
    w.write_statistics({1'700'000'000'000'000'000, 1'700'000'002'000'000'000, 10, 0, 1, 2});
    w.close();
  }
  capture::FileSource src(path);
  dissect::Frame f;
  ASSERT_TRUE(src.next(f));
  EXPECT_EQ(f.ts_ns, 1'700'000'000'123'456'789);
  EXPECT_EQ(f.orig_len, 1500u);
  EXPECT_EQ(f.data.size(), 61u);
  EXPECT_EQ(std::string(f.comment.begin(), f.comment.end()), "first comment");
  ASSERT_EQ(src.parser().secrets().size(), 1u);
  EXPECT_EQ(src.parser().secrets()[0].type, capture::kSecretsEspSa);
  ASSERT_EQ(src.parser().interfaces().size(), 1u);
  EXPECT_EQ(src.parser().interfaces()[0].name, "veth0");
  ASSERT_TRUE(src.next(f));
  EXPECT_EQ(f.data.size(), 64u);
  EXPECT_FALSE(src.next(f));
  EXPECT_TRUE(src.error().empty()) << src.error();
  std::filesystem::remove(path);
}

TEST(PcapngWriter, NothingUnderTheFinalNameUntilClosed) {
  auto path = temp_path("unfinished.pcapng");
  std::filesystem::remove(path);
  {
    capture::PcapngWriter w(path, {1, 65535, "x", "", ""}, "t");
    w.write(0, frame_bytes(1, 60), 60);
    EXPECT_FALSE(std::filesystem::exists(path));
  }  // destroyed without close(): the temporary file goes too
  EXPECT_FALSE(std::filesystem::exists(path));
  for (const auto& e : std::filesystem::directory_iterator(path.parent_path())) {
    EXPECT_EQ(e.path().filename().string().find("ipsentry-test-unfinished.pcapng.tmp"), std::string::npos);
  }
  EXPECT_THROW(capture::PcapngWriter("/nonexistent-dir/x.pcapng", {1, 65535, "x", "", ""}, "t"), capture::CaptureError);
}

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<std::uint8_t> gzip(const std::vector<std::uint8_t>& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<std::uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Issue 15 item 13: a gzip capture cut short gives the frames inflated
// before the damage, then says what the damage is, as a plain capture does.
TEST(FileSource, GzipCutShortGivesTheFramesBeforeTheDamage) {
  const auto plain_path = temp_path("plain.pcap");
  {
    // Random bytes, so that half of the compressed file is about half of the frames.
    std::mt19937 rnd(15);
    capture::PcapWriter w(plain_path, 101);
    for (std::uint64_t n = 1; n <= 40; ++n) {
      std::vector<std::uint8_t> frame(200);
      for (auto& b : frame) b = static_cast<std::uint8_t>(rnd());
      w.write(static_cast<std::int64_t>(n) * 1'000'000'000, frame);
    }
    w.close();
  }
  const auto plain = read_bytes(plain_path);
  const auto packed = gzip(plain);
  const auto path = temp_path("cut.pcap.gz");
  auto count = [&](std::string& error) {
    capture::FileSource src(path);
    dissect::Frame f;
    std::uint64_t n = 0;
    while (src.next(f)) {
      ++n;
      EXPECT_EQ(f.ts_ns, static_cast<std::int64_t>(n) * 1'000'000'000);
    }
    error = src.error();
    return n;
  };
  std::string error;
  write_bytes(path, std::vector<std::uint8_t>(packed.begin(), packed.begin() + static_cast<long>(packed.size() / 2)));
  const std::uint64_t half = count(error);
  EXPECT_GT(half, 5u);
  EXPECT_LT(half, 40u);
  EXPECT_EQ(error.find("gzip data ends early (file cut short): pcap record"), 0u) << error;
  // Cut in the gzip trailer: every frame is there, and the damage still said.
  write_bytes(path, std::vector<std::uint8_t>(packed.begin(), packed.end() - 4));
  EXPECT_EQ(count(error), 40u);
  EXPECT_EQ(error, "gzip data ends early (file cut short)");
  // Damaged before the capture header ends: nothing to read.
  write_bytes(path, std::vector<std::uint8_t>(packed.begin(), packed.begin() + 12));
  try {
    capture::FileSource src(path);
    ADD_FAILURE() << "opened";
  } catch (const capture::CaptureError& e) {
    EXPECT_NE(std::string(e.what()).find("gzip data ends early"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  std::filesystem::remove(plain_path);
}

// Issue 17: a gzip capture is inflated a step at a time. Writes a pcap of
// about 3.5 steps (frames of every size, one larger than a step, some of them
// compressible so that deflate codes them) and its gzip.
struct SteppedCapture {
  std::filesystem::path plain = temp_path("stepped.pcap");
  std::filesystem::path packed = temp_path("stepped.pcap.gz");
  std::vector<std::uint8_t> plain_bytes;
  std::vector<std::uint8_t> packed_bytes;
  std::uint64_t frames = 0;
  SteppedCapture() {
    std::mt19937 rnd(17);
    capture::PcapWriter w(plain, 101);
    std::uint64_t at = 24;
    while (at < capture::FileSource::kInflateStep * 7 / 2) {
      ++frames;
      std::size_t len = 1 + rnd() % 1600;
      if (frames == 1500) len = capture::FileSource::kInflateStep + 12345;
      std::vector<std::uint8_t> frame(len);
      for (std::size_t i = 0; i < len; ++i) {
        frame[i] = frames % 3 == 0 ? static_cast<std::uint8_t>(rnd()) : static_cast<std::uint8_t>(i * frames);
      }
      w.write(static_cast<std::int64_t>(frames) * 1000, frame);
      at += 16 + len;
    }
    w.close();
    plain_bytes = read_bytes(plain);
    packed_bytes = gzip(plain_bytes);
    write_bytes(packed, packed_bytes);
  }
  ~SteppedCapture() {
    std::filesystem::remove(plain);
    std::filesystem::remove(packed);
  }
};

TEST(FileSource, GzipFramesStraddleInflateStepsAndStayWhereTheyAre) {
  SteppedCapture cap;
  ASSERT_GT(cap.packed_bytes.size(), capture::FileSource::kInflateStep);  // read in several pieces too
  std::size_t straddling = 0;
  for (const bool release : {false, true}) {
    capture::FileSource plain(cap.plain);
    capture::FileSource packed(cap.packed);
    EXPECT_FALSE(plain.compressed());
    EXPECT_TRUE(packed.compressed());
    EXPECT_EQ(packed.size(), cap.packed_bytes.size());
    std::vector<dissect::Frame> kept;
    dissect::Frame a;
    dissect::Frame b;
    while (plain.next(a)) {
      ASSERT_TRUE(packed.next(b)) << "frame " << a.number << ": " << packed.error();
      ASSERT_EQ(a.number, b.number);
      ASSERT_EQ(a.ts_ns, b.ts_ns);
      ASSERT_EQ(a.file_offset, b.file_offset);
      ASSERT_TRUE(std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end())) << "frame " << a.number;
      const std::uint64_t start = b.file_offset / capture::FileSource::kInflateStep;
      const std::uint64_t end = (b.file_offset + 16 + b.data.size() - 1) / capture::FileSource::kInflateStep;
      if (!release && start != end) ++straddling;
      if (release) {
        packed.release_before(b.file_offset);
      } else {
        kept.push_back(b);
      }
    }
    EXPECT_FALSE(packed.next(b));
    EXPECT_EQ(plain.error(), "");
    EXPECT_EQ(packed.error(), "");
    EXPECT_EQ(packed.offset(), cap.packed_bytes.size());
    // Without release_before() every frame returned stays readable where it was.
    for (const auto& f : kept) {
      const auto* in_plain = cap.plain_bytes.data() + f.file_offset + 16;
      ASSERT_TRUE(std::equal(f.data.begin(), f.data.end(), in_plain)) << "frame " << f.number << " moved";
    }
  }
  EXPECT_GE(straddling, 3u);  // one frame is larger than a step and spans two boundaries
}

TEST(FileSource, GzipDamagedOrCutAfterSeveralStepsKeepsTheFramesBefore) {
  SteppedCapture cap;
  // The frames read that are those of the plain capture, in order from the first.
  auto read_all = [&](const std::vector<std::uint8_t>& gz, std::string& error) {
    const auto path = temp_path("damaged.pcap.gz");
    write_bytes(path, gz);
    capture::FileSource src(path);
    const auto* plain = cap.plain_bytes.data();
    dissect::Frame f;
    std::uint64_t good = 0;
    while (src.next(f)) {
      if (good + 1 == f.number && f.file_offset + 16 + f.data.size() <= cap.plain_bytes.size() &&
          std::equal(f.data.begin(), f.data.end(), plain + f.file_offset + 16)) {
        ++good;
      }
      src.release_before(f.file_offset);
    }
    error = src.error();
    std::filesystem::remove(path);
    return good;
  };
  std::string error;
  // Cut at 80 %: the frames inflated from the first 80 %, then the damage named.
  std::vector<std::uint8_t> cut(cap.packed_bytes.begin(),
                                cap.packed_bytes.begin() + static_cast<long>(cap.packed_bytes.size() * 4 / 5));
  const std::uint64_t before_cut = read_all(cut, error);
  EXPECT_GT(before_cut, cap.frames / 2);
  EXPECT_LT(before_cut, cap.frames);
  EXPECT_EQ(error.find("gzip data ends early (file cut short): pcap record"), 0u) << error;
  EXPECT_NE(error.find("of the inflated capture"), std::string::npos) << error;
  // Corrupt data at 70 %. It may inflate to garbage before zlib notices, and
  // the garbage may fail as a capture first: the gzip damage is still named.
  auto corrupt = cap.packed_bytes;
  for (std::size_t i = corrupt.size() * 7 / 10; i < corrupt.size() * 7 / 10 + 64; ++i) corrupt[i] ^= 0x5a;
  const std::uint64_t before_damage = read_all(corrupt, error);
  EXPECT_GT(before_damage, cap.frames / 3);
  EXPECT_LT(before_damage, cap.frames);
  EXPECT_EQ(error.find("gzip data is damaged ("), 0u) << error;
  // A wrong checksum in the trailer: every frame, and the damage still said.
  auto trailer = cap.packed_bytes;
  trailer[trailer.size() - 6] ^= 1;
  EXPECT_EQ(read_all(trailer, error), cap.frames);
  EXPECT_EQ(error, "gzip data is damaged (incorrect data check)");
}

// Issue 15 items 10 and 12: what cannot be a capture is refused at once,
// naming what it is.
TEST(FileSource, RefusesWhatIsNotACaptureItCanRead) {
  const auto dir = temp_path("capdir");
  std::filesystem::create_directories(dir);
  const auto fifo = temp_path("capfifo");
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto wifi = temp_path("wifi.pcap");
  {
    capture::PcapWriter w(wifi, 105);
    w.write(0, frame_bytes(1, 60));
    w.close();
  }
  for (const auto& [path, says] : std::vector<std::pair<std::string, std::string>>{
           {dir.string(), "is a directory"},
           {fifo.string(), "is a named pipe (FIFO)"},
           {"/dev/zero", "is a character device"},
           {wifi.string(), "link type 105 (IEEE 802.11) is not supported"}}) {
    try {
      capture::FileSource src(path);
      ADD_FAILURE() << path << " opened";
    } catch (const capture::CaptureError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove(fifo);
  std::filesystem::remove(wifi);
  std::filesystem::remove(dir);
}

TEST(Exporters, WiresharkEspSaRoundTripsThroughTheImporter) {
  auto cfg = filters::parse_config(R"(
sas:
  - name: a
    spi: 0x1001
    protocol: esp
    src: 192.0.2.1
    dst: 192.0.2.2
    encryption: aes-gcm-16
    enc_key: 0x000102030405060708090a0b0c0d0e0f10111213
  - name: b
    spi: 0x1002
    protocol: esp
    src: 2001:db8::1
    dst: 2001:db8::2
    encryption: aes-cbc
    enc_key: 0x000102030405060708090a0b0c0d0e0f
    auth: hmac-sha256-128
    auth_key: 0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f
  - name: c
    spi: 0x1003
    protocol: ah
    dst: 192.0.2.2
    auth: hmac-sha1-96
    auth_key: 0x000102030405060708090a0b0c0d0e0f10111213
  - name: d
    spi: 0x1004
    protocol: esp
    dst: 192.0.2.2
    encryption: aes-ccm-16
    enc_key: 0x000102030405060708090a0b0c0d0e0f101112
)",
                                   "t.yaml", std::filesystem::temp_directory_path());
  std::vector<std::string> skipped;
  const std::string text = filters::to_wireshark_esp_sa(cfg.sas, skipped);
  ASSERT_EQ(skipped.size(), 2u);  // AH, and CCM which Wireshark lacks
  EXPECT_NE(skipped[0].find("AH"), std::string::npos);
  auto back = filters::import_wireshark_esp_sa(text, "embedded");
  ASSERT_EQ(back.sas.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.sas[i].spi, cfg.sas[i].spi);
    EXPECT_EQ(back.sas[i].cipher, cfg.sas[i].cipher);
    EXPECT_EQ(back.sas[i].integrity, cfg.sas[i].integrity);
    EXPECT_TRUE(back.sas[i].enc_key == cfg.sas[i].enc_key);
    EXPECT_TRUE(back.sas[i].auth_key == cfg.sas[i].auth_key);
    EXPECT_EQ(back.sas[i].dst, cfg.sas[i].dst);
  }
}

TEST(Sad, AddInstallsALookupableSaAtRuntime) {
  ipsec::Sad sad;
  EXPECT_EQ(sad.lookup(0x1234, filters::IpsecProtocol::esp, *dissect::IpAddr::parse("192.0.2.2"),
                       *dissect::IpAddr::parse("192.0.2.1")),
            nullptr);
  filters::SaConfig any;
  any.name = "wide";
  any.spi = 0x1234;
  sad.add(std::move(any));
  filters::SaConfig narrow;
  narrow.name = "narrow";
  narrow.spi = 0x1234;
  narrow.dst = dissect::IpAddr::parse("192.0.2.2");
  sad.add(std::move(narrow));
  auto* sa = sad.lookup(0x1234, filters::IpsecProtocol::esp, *dissect::IpAddr::parse("192.0.2.2"),
                        *dissect::IpAddr::parse("192.0.2.1"));
  ASSERT_NE(sa, nullptr);
  EXPECT_EQ(sa->name(), "narrow");  // the more specific one, though added later
  EXPECT_EQ(sa->index(), 1u);
}
