// Capture-file views and frame dissection, including damaged input.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>

#include "ipsentry/dissect/capture_file.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/summary.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "test_support.hpp"

namespace ipsentry::dissect {
namespace {

using test::hex;

void le32(std::vector<std::uint8_t>& v, std::uint32_t x) {
  for (int i = 0; i < 4; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}
void le16(std::vector<std::uint8_t>& v, std::uint16_t x) {
  v.push_back(static_cast<std::uint8_t>(x));
  v.push_back(static_cast<std::uint8_t>(x >> 8));
}
void be32(std::vector<std::uint8_t>& v, std::uint32_t x) {
  for (int i = 3; i >= 0; --i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

std::vector<std::uint8_t> pcap_file(std::uint32_t linktype, const std::vector<std::vector<std::uint8_t>>& frames,
                                    bool big_endian = false, bool nsec = false) {
  std::vector<std::uint8_t> f;
  auto put32 = [&](std::uint32_t x) { big_endian ? be32(f, x) : le32(f, x); };
  auto put16 = [&](std::uint16_t x) {
    if (big_endian) {
      f.push_back(static_cast<std::uint8_t>(x >> 8));
      f.push_back(static_cast<std::uint8_t>(x));
    } else {
      le16(f, x);
    }
  };
  put32(nsec ? 0xa1b23c4d : 0xa1b2c3d4);
  put16(2);
  put16(4);
  put32(0);
  put32(0);
  put32(65535);
  put32(linktype);
  std::uint32_t t = 1000;
  for (const auto& fr : frames) {
    put32(t++);
    put32(500);
    put32(static_cast<std::uint32_t>(fr.size()));
    put32(static_cast<std::uint32_t>(fr.size()));
    f.insert(f.end(), fr.begin(), fr.end());
  }
  return f;
}

std::vector<std::uint8_t> ether(std::uint16_t ethertype, const std::vector<std::uint8_t>& payload,
                                std::vector<std::uint16_t> vlans = {}) {
  std::vector<std::uint8_t> e(12, 0x02);
  for (auto v : vlans) {
    e.push_back(0x81);
    e.push_back(0x00);
    e.push_back(static_cast<std::uint8_t>(v >> 8));
    e.push_back(static_cast<std::uint8_t>(v));
  }
  e.push_back(static_cast<std::uint8_t>(ethertype >> 8));
  e.push_back(static_cast<std::uint8_t>(ethertype));
  e.insert(e.end(), payload.begin(), payload.end());
  return e;
}

std::vector<Frame> read_all(const std::vector<std::uint8_t>& image, std::string* error_out = nullptr) {
  CaptureFileParser p;
  std::string err;
  EXPECT_TRUE(p.open(image, err)) << err;
  std::vector<Frame> frames;
  Frame f;
  CaptureFileParser::Next n;
  while ((n = p.next(f)) == CaptureFileParser::Next::frame) frames.push_back(f);
  if (error_out) *error_out = n == CaptureFileParser::Next::error ? p.error_message() : "";
  return frames;
}

const auto kEsp = test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("00001001 00000007 0102030405060708090a0b0c"));

TEST(CaptureFile, PcapBothByteOrdersAndResolutions) {
  for (bool be : {false, true}) {
    for (bool ns : {false, true}) {
      auto frames = read_all(pcap_file(1, {ether(0x0800, kEsp), ether(0x0800, kEsp)}, be, ns));
      ASSERT_EQ(frames.size(), 2u);
      EXPECT_EQ(frames[0].number, 1u);
      EXPECT_EQ(frames[1].ts_ns, 1001ll * 1'000'000'000 + (ns ? 500 : 500'000));
      EXPECT_EQ(frames[0].linktype, 1u);
    }
  }
}

TEST(CaptureFile, TruncatedPcapEndsWithAnError) {
  auto file = pcap_file(1, {ether(0x0800, kEsp), ether(0x0800, kEsp)});
  file.resize(file.size() - 5);
  std::string err;
  auto frames = read_all(file, &err);
  EXPECT_EQ(frames.size(), 1u);
  EXPECT_NE(err.find("truncated"), std::string::npos);
}

TEST(CaptureFile, RejectsNonCaptures) {
  CaptureFileParser p;
  std::string err;
  auto junk = hex("0102030405060708090a0b0c0d0e0f101112131415161718");
  EXPECT_FALSE(p.open(junk, err));
  EXPECT_NE(err.find("not a pcap"), std::string::npos);
  auto gz = hex("1f8b0800");
  EXPECT_FALSE(p.open(gz, err));
  EXPECT_NE(err.find("gzip"), std::string::npos);
}

std::vector<std::uint8_t> block(std::uint32_t type, const std::vector<std::uint8_t>& body) {
  std::vector<std::uint8_t> b;
  std::uint32_t len = static_cast<std::uint32_t>(12 + (body.size() + 3) / 4 * 4);
  le32(b, type);
  le32(b, len);
  b.insert(b.end(), body.begin(), body.end());
  while (b.size() % 4) b.push_back(0);
  le32(b, len);
  return b;
}

// A little-endian pcapng section header, version 1.0, section length unknown.
std::vector<std::uint8_t> section_header_block() {
  std::vector<std::uint8_t> shb;
  le32(shb, 0x1a2b3c4d);
  le16(shb, 1);
  le16(shb, 0);
  le32(shb, 0xffffffff);
  le32(shb, 0xffffffff);
  return block(0x0a0d0d0a, shb);
}

TEST(CaptureFile, PcapngWithResolutionCommentAndSimpleBlocks) {
  std::vector<std::uint8_t> f;
  auto b = section_header_block();
  f.insert(f.end(), b.begin(), b.end());
  std::vector<std::uint8_t> idb;
  le16(idb, 101);  // raw IP
  le16(idb, 0);
  le32(idb, 0);
  le16(idb, 9);  // if_tsresol: nanoseconds
  le16(idb, 1);
  idb.push_back(9);
  idb.insert(idb.end(), {0, 0, 0});
  le16(idb, 0);
  le16(idb, 0);
  b = block(1, idb);
  f.insert(f.end(), b.begin(), b.end());
  std::vector<std::uint8_t> epb;
  le32(epb, 0);
  le32(epb, 0);
  le32(epb, 1234567891);
  le32(epb, static_cast<std::uint32_t>(kEsp.size()));
  le32(epb, static_cast<std::uint32_t>(kEsp.size()));
  epb.insert(epb.end(), kEsp.begin(), kEsp.end());
  while (epb.size() % 4) epb.push_back(0);
  le16(epb, 1);  // opt_comment
  le16(epb, 5);
  epb.insert(epb.end(), {'h', 'e', 'l', 'l', 'o', 0, 0, 0});
  le16(epb, 0);
  le16(epb, 0);
  b = block(6, epb);
  f.insert(f.end(), b.begin(), b.end());
  std::vector<std::uint8_t> spb;
  le32(spb, static_cast<std::uint32_t>(kEsp.size()));
  spb.insert(spb.end(), kEsp.begin(), kEsp.end());
  b = block(3, spb);
  f.insert(f.end(), b.begin(), b.end());

  auto frames = read_all(f);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].ts_ns, 1234567891);
  EXPECT_EQ(std::string(frames[0].comment.begin(), frames[0].comment.end()), "hello");
  EXPECT_EQ(frames[0].linktype, 101u);
  EXPECT_EQ(frames[1].data.size(), kEsp.size());
}

// A pcapng file: section header, one interface description block per
// (link type, options) pair, then one enhanced packet block of kEsp per
// (interface, 64-bit timestamp).
std::vector<std::uint8_t> pcapng_file(const std::vector<std::pair<std::uint16_t, std::vector<std::uint8_t>>>& ifaces,
                                      const std::vector<std::pair<std::uint32_t, std::uint64_t>>& packets) {
  std::vector<std::uint8_t> f;
  auto b = section_header_block();
  f.insert(f.end(), b.begin(), b.end());
  for (const auto& [linktype, options] : ifaces) {
    std::vector<std::uint8_t> idb;
    le16(idb, linktype);
    le16(idb, 0);
    le32(idb, 0);
    idb.insert(idb.end(), options.begin(), options.end());
    le16(idb, 0);
    le16(idb, 0);
    b = block(1, idb);
    f.insert(f.end(), b.begin(), b.end());
  }
  for (const auto& [iface, ts] : packets) {
    std::vector<std::uint8_t> epb;
    le32(epb, iface);
    le32(epb, static_cast<std::uint32_t>(ts >> 32));
    le32(epb, static_cast<std::uint32_t>(ts));
    le32(epb, static_cast<std::uint32_t>(kEsp.size()));
    le32(epb, static_cast<std::uint32_t>(kEsp.size()));
    epb.insert(epb.end(), kEsp.begin(), kEsp.end());
    b = block(6, epb);
    f.insert(f.end(), b.begin(), b.end());
  }
  return f;
}

std::vector<std::uint8_t> option(std::uint16_t code, const std::vector<std::uint8_t>& value) {
  std::vector<std::uint8_t> o;
  le16(o, code);
  le16(o, static_cast<std::uint16_t>(value.size()));
  o.insert(o.end(), value.begin(), value.end());
  while (o.size() % 4) o.push_back(0);
  return o;
}

std::vector<std::uint8_t> le64(std::int64_t v) {
  std::vector<std::uint8_t> o;
  le32(o, static_cast<std::uint32_t>(static_cast<std::uint64_t>(v)));
  le32(o, static_cast<std::uint32_t>(static_cast<std::uint64_t>(v) >> 32));
  return o;
}

// Issue 15 item 20: if_tsoffset (seconds) times 10^9 overflowed a signed
// 64-bit integer (UBSan aborted; a release build made up a time), and so
// could a timestamp in a coarse resolution. Every such time is clamped to
// +-kMaxTimestampNs, where the difference of two still fits.
// Issue 17: an image that grows while it is read (gzip inflated step by step)
// gives the same frames, whatever the steps, and a cut only at its final end.
TEST(CaptureFile, GrowingImageGivesTheSameFramesAtEveryStep) {
  auto pcap = pcap_file(1, {ether(0x0800, kEsp), ether(0x0800, kEsp), ether(0x0800, kEsp)});
  auto pcapng = pcapng_file({{101, {}}}, {{0, 1}, {0, 2}, {0, 3}});
  for (const auto* file : {&pcap, &pcapng}) {
    const auto whole = read_all(*file);
    ASSERT_EQ(whole.size(), 3u);
    // Grown one byte at a time from the 28 bytes open() needs; then cut short.
    for (const bool cut : {false, true}) {
      const std::size_t end = cut ? file->size() - 3 : file->size();
      CaptureFileParser p;
      std::string err;
      std::size_t have = 28;
      ASSERT_TRUE(p.open(Bytes(file->data(), have), err)) << err;
      p.grow(Bytes(file->data(), have), false);
      std::vector<Frame> got;
      Frame f;
      for (;;) {
        const auto n = p.next(f);
        if (n == CaptureFileParser::Next::frame) {
          got.push_back(f);
        } else if (n == CaptureFileParser::Next::more) {
          ASSERT_LT(have, end);
          ++have;
          p.grow(Bytes(file->data(), have), have == end);
        } else {
          EXPECT_EQ(n == CaptureFileParser::Next::error, cut);
          if (cut) {
            EXPECT_NE(std::string(p.error_message()).find("truncated"), std::string::npos);
          }
          break;
        }
      }
      ASSERT_EQ(got.size(), cut ? 2u : 3u);
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].file_offset, whole[i].file_offset);
        EXPECT_EQ(got[i].ts_ns, whole[i].ts_ns);
        EXPECT_TRUE(std::equal(got[i].data.begin(), got[i].data.end(), whole[i].data.begin(), whole[i].data.end()));
      }
      EXPECT_EQ(p.next(f), CaptureFileParser::Next::end);  // an error is final
    }
  }
  // A pcapng block claiming 100 MiB is not waited for while the image grows.
  auto bogus = pcapng_file({{101, {}}}, {});
  auto huge = block(6, std::vector<std::uint8_t>(64));
  huge[4] = 0;
  huge[5] = 0;
  huge[6] = 0x40;
  huge[7] = 0x06;  // 0x06400000 bytes
  bogus.insert(bogus.end(), huge.begin(), huge.end());
  CaptureFileParser p;
  std::string err;
  ASSERT_TRUE(p.open(bogus, err)) << err;
  p.grow(bogus, false);
  Frame f;
  EXPECT_EQ(p.next(f), CaptureFileParser::Next::error);
  EXPECT_STREQ(p.error_message(), "pcapng block claims an impossible length");
}

TEST(CaptureFile, PcapngTimesFromAnyOffsetAndResolutionStayInRange) {
  const std::uint64_t max_ts = ~std::uint64_t{0};
  struct Case {
    std::vector<std::uint8_t> options;
    std::uint64_t ts;
    std::int64_t want;
  };
  const std::vector<Case> cases = {
      // The offset is clamped in whole seconds, 4611686018 of them.
      {option(14, le64(INT64_MAX)), 0, 4'611'686'018'000'000'000},
      {option(14, le64(INT64_MIN)), 0, -4'611'686'018'000'000'000},
      // Clamped before they are added: (2^62 - 1) ns less 4611686018 s.
      {option(14, le64(INT64_MIN)), max_ts, 427'387'903},
      {option(14, le64(-1)), 2'000'000, 1'000'000'000},  // 2 s in microseconds, one second earlier
      {option(9, {0x00}), max_ts, kMaxTimestampNs},      // whole seconds
      {option(9, {0x80}), max_ts, kMaxTimestampNs},      // 2^0 s
      {option(9, {0x80 | 63}), max_ts, 1'999'999'999},   // 2^-63 s
      {option(9, {18}), max_ts, 18'446'744'073},         // attoseconds
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    auto frames = read_all(pcapng_file({{101, cases[i].options}}, {{0, cases[i].ts}}));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].ts_ns, cases[i].want);
  }
  // Two extreme frames can be subtracted, as the report and the TUI do.
  auto frames = read_all(
      pcapng_file({{101, option(14, le64(INT64_MAX))}, {101, option(14, le64(INT64_MIN))}}, {{0, max_ts}, {1, 0}}));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].ts_ns, kMaxTimestampNs);
  EXPECT_EQ(frames[1].ts_ns, -4'611'686'018'000'000'000);  // whole seconds of the offset, clamped
  EXPECT_EQ(frames[0].ts_ns - frames[1].ts_ns, 9'223'372'036'427'387'903);
}

// Issue 15 item 10: a link type ipsentry cannot dissect is named, not read
// as frames without IP.
TEST(CaptureFile, UnsupportedLinkTypesAreNamed) {
  for (auto [lt, name] : std::vector<std::pair<std::uint32_t, std::string>>{{105, "IEEE 802.11"},
                                                                            {127, "radiotap"},
                                                                            {9, "PPP"},
                                                                            {147, "DLT_USER"},
                                                                            {162, "DLT_USER"},
                                                                            {4000, "unknown"}}) {
    SCOPED_TRACE(lt);
    CaptureFileParser p;
    std::string err;
    EXPECT_FALSE(p.open(pcap_file(lt, {kEsp}), err));
    EXPECT_NE(err.find(fmt::format("link type {} (", lt)), std::string::npos) << err;
    EXPECT_NE(err.find(name), std::string::npos) << err;
    EXPECT_NE(err.find("not supported"), std::string::npos) << err;
  }
  // pcapng: frames of an unsupported interface keep their numbers and are counted.
  CaptureFileParser p;
  std::string err;
  const auto file = pcapng_file({{101, {}}, {105, {}}}, {{0, 1}, {1, 2}, {1, 3}, {0, 4}});
  ASSERT_TRUE(p.open(file, err)) << err;
  Frame f;
  std::vector<std::uint64_t> numbers;
  while (p.next(f) == CaptureFileParser::Next::frame) numbers.push_back(f.number);
  EXPECT_EQ(numbers, (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(p.unsupported_frames(), 2u);
  EXPECT_EQ(p.unsupported_link_type(), 105u);
  EXPECT_TRUE(link_type_supported(276));
  EXPECT_FALSE(link_type_supported(105));
}

TEST(Dissect, LinkTypesReachTheSameEspHeader) {
  std::vector<std::pair<std::uint32_t, std::vector<std::uint8_t>>> frames = {
      {1, ether(0x0800, kEsp)},
      {1, ether(0x0800, kEsp, {10, 20})},
      {101, kEsp},
      {228, kEsp},
      {0,
       [] {
         std::vector<std::uint8_t> v = {2, 0, 0, 0};
         v.insert(v.end(), kEsp.begin(), kEsp.end());
         return v;
       }()},
      {108,
       [] {
         std::vector<std::uint8_t> v = {0, 0, 0, 2};
         v.insert(v.end(), kEsp.begin(), kEsp.end());
         return v;
       }()},
      {113,
       [] {
         std::vector<std::uint8_t> v(14, 0);
         v.push_back(0x08);
         v.push_back(0x00);
         v.insert(v.end(), kEsp.begin(), kEsp.end());
         return v;
       }()},
      {276,
       [] {
         std::vector<std::uint8_t> v = {0x08, 0x00};
         v.resize(20, 0);
         v.insert(v.end(), kEsp.begin(), kEsp.end());
         return v;
       }()},
  };
  for (const auto& [lt, data] : frames) {
    SCOPED_TRACE(link_type_name(lt));
    Frame f;
    f.linktype = lt;
    f.data = data;
    f.orig_len = static_cast<std::uint32_t>(data.size());
    Packet p;
    dissect_frame(f, p);
    ASSERT_EQ(p.malformed, nullptr) << p.malformed;
    EXPECT_EQ(p.ipsec.kind, IpsecKind::esp);
    EXPECT_EQ(p.ipsec.spi, 0x1001u);
    EXPECT_EQ(p.ipsec.seq, 7u);
    EXPECT_EQ(p.ip.src.str(), "192.0.2.1");
  }
  Frame f;
  f.linktype = 1;
  auto vlan = ether(0x0800, kEsp, {10, 20});
  f.data = vlan;
  f.orig_len = static_cast<std::uint32_t>(vlan.size());
  Packet p;
  dissect_frame(f, p);
  EXPECT_EQ(p.link.vlan_count, 2);
  EXPECT_EQ(p.link.vlan[1], 20);
}

Packet dissect_bytes(const std::vector<std::uint8_t>& ip) {
  Packet p;
  dissect_ip(ip, p);
  return p;
}

TEST(Dissect, EveryPrefixOfAPacketIsSafe) {
  // Each truncation of a valid packet must dissect without reading past the
  // end (ASan would catch it) and must say what is wrong.
  auto v6 = test::ipv6("2001:db8::1", "2001:db8::2", 0, hex("3300 1e04 05060708"), hex("00001001 00000001 aabbccdd"));
  v6[40] = 60;
  v6[48] = 50;
  for (auto full :
       {kEsp, v6, test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(4500, 4500, hex("00001002 00000003")))}) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
      Packet p = dissect_bytes(cut);
      SummaryText s;
      summarize(p, true, s);
      if (n < 8) {
        EXPECT_TRUE(p.malformed != nullptr || p.truncated) << n;
      }
    }
  }
}

TEST(Dissect, Ipv6ExtensionChainAndFragments) {
  // hop-by-hop -> routing (type 0, no segments left) -> destination options -> ESP
  auto ext = hex("2b00 0104 00000000  3c02 00 00 00000000 20010db8000000000000000000000009  3200 0104 00000000");
  auto p = dissect_bytes(test::ipv6("2001:db8::1", "2001:db8::2", 0, ext, hex("00000100 00000009 00112233")));
  ASSERT_EQ(p.malformed, nullptr) << p.malformed;
  EXPECT_EQ(p.ip.ext_count, 3);
  EXPECT_EQ(p.ip.ext[1].type, 43);
  EXPECT_EQ(p.ip.ext[1].length, 24);
  EXPECT_EQ(p.ipsec.kind, IpsecKind::esp);
  EXPECT_EQ(p.ipsec.spi, 0x100u);

  // A non-first fragment carries no upper headers.
  auto frag = hex("3200 0008 00000042");  // offset 1 (8 bytes), next header ESP
  p = dissect_bytes(test::ipv6("2001:db8::1", "2001:db8::2", 44, frag, hex("0011223344556677")));
  EXPECT_TRUE(p.ip.fragment);
  EXPECT_FALSE(p.ip.first_fragment);
  EXPECT_EQ(p.ip.protocol, 50);
  EXPECT_EQ(p.ipsec.kind, IpsecKind::none);

  // Hop-by-hop anywhere but first is invalid (RFC 8200 section 4.1).
  auto bad = hex("0000 0104 00000000  3a00 0104 00000000");
  p = dissect_bytes(test::ipv6("2001:db8::1", "2001:db8::2", 60, bad, hex("80000000")));
  ASSERT_NE(p.malformed, nullptr);
}

TEST(IpAddr, FormatsEveryDigitCount) {
  for (const char* a : {"0.9.10.255", "100.99.1.0", "192.0.2.1", "255.255.255.255", "0.0.0.0"}) {
    EXPECT_EQ(test::addr(a).str(), a);
  }
  char small[8];
  EXPECT_EQ(test::addr("192.0.2.1").format(small, sizeof small), 0u);  // does not fit: empty, no overrun
  EXPECT_EQ(test::addr("2001:db8::1").str(), "2001:db8::1");
}

TEST(Dissect, FinalDestinationOfSourceRoutes) {
  // Type 0 routing header, one hop to go: the SA is the last address's.
  auto ext = hex("3202 00 01 00000000 20010db8000000000000000000000009");
  auto p = dissect_bytes(test::ipv6("2001:db8::1", "2001:db8::2", 43, ext, hex("00000100 00000009 00112233")));
  ASSERT_EQ(p.malformed, nullptr) << p.malformed;
  EXPECT_EQ(p.ip.dst, test::addr("2001:db8::2"));
  EXPECT_EQ(p.ip.final_dst, test::addr("2001:db8::9"));
  // No segments left: the destination is final.
  ext[3] = 0;
  p = dissect_bytes(test::ipv6("2001:db8::1", "2001:db8::2", 43, ext, hex("00000100 00000009 00112233")));
  EXPECT_EQ(p.ip.final_dst, test::addr("2001:db8::2"));

  // IPv4 loose source route with its pointer at the second of two addresses.
  auto lsrr = hex("01 83 0b 08 c0000201 c0000263");  // NOP, LSRR len 11 ptr 8
  p = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("0000000a 00000001"), lsrr));
  ASSERT_EQ(p.malformed, nullptr) << p.malformed;
  EXPECT_EQ(p.ip.final_dst, test::addr("192.0.2.99"));
  lsrr[3] = 12;  // route exhausted: the destination field is final
  p = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("0000000a 00000001"), lsrr));
  EXPECT_EQ(p.ip.final_dst, test::addr("192.0.2.2"));
}

TEST(Dissect, Ipv4OptionsFragmentsAndLengths) {
  auto p = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("0000000a 00000001"), hex("94040000")));
  EXPECT_EQ(p.malformed, nullptr);
  EXPECT_EQ(p.ip.header_len, 24);

  auto broken = test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("0000000a 00000001"), hex("07ff0000"));
  EXPECT_STREQ(dissect_bytes(broken).malformed, "IPv4 options are malformed");

  auto frag = test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("0011223344556677"));
  store_be16(frag.data() + 6, 0x0010);  // offset 128
  p = dissect_bytes(frag);
  EXPECT_TRUE(p.ip.fragment);
  EXPECT_FALSE(p.ip.first_fragment);

  auto small_ihl = test::ipv4("192.0.2.1", "192.0.2.2", 50, hex("00"));
  small_ihl[0] = 0x44;
  EXPECT_STREQ(dissect_bytes(small_ihl).malformed, "IPv4 header length below 20 bytes");

  // Ethernet padding after the IP packet is not part of the ESP packet.
  auto padded = kEsp;
  padded.insert(padded.end(), 6, 0);
  p = dissect_bytes(padded);
  EXPECT_EQ(p.ipsec.length, kEsp.size() - 20);
}

TEST(Dissect, NatTraversalPort4500) {
  auto keepalive = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(4500, 4500, hex("ff"))));
  EXPECT_EQ(keepalive.encap, UdpEncap::nat_keepalive);
  auto ike =
      dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(4500, 4500, hex("00000000 1122334455667788"))));
  EXPECT_EQ(ike.encap, UdpEncap::ike_marker);
  EXPECT_TRUE(ike.is_ike());
  auto esp =
      dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(4500, 4500, hex("c0ffee01 00000002 aabb"))));
  EXPECT_EQ(esp.encap, UdpEncap::esp);
  EXPECT_TRUE(esp.ipsec.udp_encap);
  EXPECT_EQ(esp.ipsec.spi, 0xc0ffee01u);
  auto isakmp = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(500, 500, hex("1122334455667788"))));
  EXPECT_EQ(isakmp.encap, UdpEncap::ike);
}

TEST(Dissect, AhHeaderChecks) {
  auto ah = hex("3a04 0000 00000100 0000001e 0a6ab0b271917e05f7a01c58 00000000");  // 24-byte AH + 4 bytes
  auto p = dissect_bytes(test::ipv6("fe80::1", "fe80::2", 51, {}, ah));
  EXPECT_EQ(p.malformed, nullptr);
  EXPECT_EQ(p.ipsec.kind, IpsecKind::ah);
  EXPECT_EQ(p.ipsec.ah_header_len, 24);
  EXPECT_EQ(p.ipsec.seq, 0x1eu);

  auto long_ah = hex("3a30 3030 30303030 30303030 30303030");  // claims 200 bytes
  p = dissect_bytes(test::ipv4("192.0.2.1", "192.0.2.2", 51, long_ah));
  EXPECT_STREQ(p.malformed, "AH length runs past the end of the packet");

  auto v6_odd = hex("3a05 0000 00000100 00000001 000000000000000000000000 00000000");  // 28 bytes over IPv6
  p = dissect_bytes(test::ipv6("fe80::1", "fe80::2", 51, {}, v6_odd));
  EXPECT_STREQ(p.malformed, "AH length is not a multiple of 8 bytes (required over IPv6)");
}

TEST(Summary, InnerDescriptions) {
  auto s = [](const std::vector<std::uint8_t>& ip, bool addrs) {
    Packet p = dissect_bytes(ip);
    SummaryText t;
    summarize(p, addrs, t);
    return std::string(t.view());
  };
  EXPECT_EQ(s(test::ipv4("192.0.2.1", "192.0.1.1", 1, test::icmp_echo(0x6f00, 1280, 56, false)), true),
            "192.0.2.1 → 192.0.1.1 ICMP echo request id=0x6f00 seq=1280");
  EXPECT_EQ(s(test::ipv4("192.0.2.1", "192.0.2.2", 17, test::udp(53, 5353, hex("00"))), false),
            "UDP 53 → 5353 DNS len=1");
  EXPECT_EQ(s(test::ipv6("2001:db8::1", "2001:db8::2", 58, {}, test::icmp_echo(1, 2, 4, true)), false),
            "ICMPv6 echo request id=0x0001 seq=2");
}

TEST(TextTable, ColumnsAreAsWideAsTheirWidestCell) {
  // "→" is one column, not three bytes; the last column is not padded.
  const std::vector<TableColumn> cols{{"name"}, {"n", Align::right}, {"peers"}};
  const auto lines = text_table(cols, {{"a", "7", "2001:db8::1 → 2001:db8::2"}, {"unspecified", "1234", "x"}}, 2);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "  name           n peers");
  EXPECT_EQ(lines[1], "  a              7 2001:db8::1 → 2001:db8::2");
  EXPECT_EQ(lines[2], "  unspecified 1234 x");
  EXPECT_EQ(display_width("a → b…"), 6u);
  // Without titles there is no title line; a short row leaves its cells empty.
  const auto bare = text_table({{""}, {""}}, {{"x"}, {"yy", "z"}});
  EXPECT_EQ(bare, (std::vector<std::string>{"x", "yy z"}));
}

}  // namespace
}  // namespace ipsentry::dissect
