#include "ipsentry/dissect/capture_file.hpp"

#include <fmt/format.h>

namespace ipsentry::dissect {

namespace {

constexpr std::uint32_t kPcapMagicUsec = 0xa1b2c3d4;
constexpr std::uint32_t kPcapMagicNsec = 0xa1b23c4d;
constexpr std::uint32_t kBlockSectionHeader = 0x0a0d0d0a;
constexpr std::uint32_t kBlockInterface = 0x00000001;
constexpr std::uint32_t kBlockObsoletePacket = 0x00000002;
constexpr std::uint32_t kBlockSimplePacket = 0x00000003;
constexpr std::uint32_t kBlockEnhancedPacket = 0x00000006;
constexpr std::uint32_t kBlockDecryptionSecrets = 0x0000000a;
constexpr std::uint32_t kByteOrderMagic = 0x1a2b3c4d;
// Frames larger than this are not real captures but corruption; refusing them
// keeps a flipped length bit from swallowing the rest of the file.
constexpr std::uint32_t kMaxFrame = 16u * 1024 * 1024;
// While the image is still growing, a block longer than this is taken for
// corruption at once: waiting for it would hold everything up to its claimed
// end in memory (a length bit flipped in a gzip capture would inflate the
// rest of the file). A complete image reports such a block as cut short.
constexpr std::uint32_t kMaxGrowingBlock = 64u * 1024 * 1024;

std::uint32_t bswap32(std::uint32_t v) noexcept { return __builtin_bswap32(v); }

std::int64_t clamp_timestamp(std::int64_t ns) noexcept {
  return ns > kMaxTimestampNs ? kMaxTimestampNs : ns < -kMaxTimestampNs ? -kMaxTimestampNs : ns;
}

// value * mul / div exactly: value < 2^64 and mul <= 10^9, so the product
// fits in 128 bits whatever resolution the interface declared.
std::int64_t scale_timestamp(std::uint64_t value, std::uint64_t mul, std::uint64_t div) noexcept {
  __extension__ using U128 = unsigned __int128;
  const U128 ns = static_cast<U128>(value) * mul / div;
  return ns > static_cast<U128>(kMaxTimestampNs) ? kMaxTimestampNs : static_cast<std::int64_t>(ns);
}

// if_tsoffset is a signed count of seconds; clamped before it is scaled so
// that neither the product nor the later sum with a clamped time overflows.
std::int64_t offset_ns(std::int64_t seconds) noexcept {
  constexpr std::int64_t kLimit = kMaxTimestampNs / 1'000'000'000;
  const std::int64_t s = seconds > kLimit ? kLimit : seconds < -kLimit ? -kLimit : seconds;
  return s * 1'000'000'000;
}

}  // namespace

const char* link_type_name(std::uint32_t linktype) noexcept {
  switch (static_cast<LinkType>(linktype)) {
    case LinkType::null_bsd: return "NULL (BSD loopback)";
    case LinkType::ethernet: return "Ethernet";
    case LinkType::raw: return "raw IP";
    case LinkType::loop: return "OpenBSD loopback";
    case LinkType::linux_sll: return "Linux cooked (SLL)";
    case LinkType::ipv4: return "raw IPv4";
    case LinkType::ipv6: return "raw IPv6";
    case LinkType::linux_sll2: return "Linux cooked v2 (SLL2)";
  }
  // Link types ipsentry does not dissect, named so that the refusal says what
  // the capture holds (numbers from the tcpdump.org LINKTYPE registry).
  if (linktype >= 147 && linktype <= 162) return "DLT_USER (private use)";
  switch (linktype) {
    case 6: return "IEEE 802.5 Token Ring";
    case 9: return "PPP";
    case 10: return "FDDI";
    case 50: return "PPP in HDLC framing";
    case 51: return "PPPoE";
    case 104: return "Cisco HDLC";
    case 105: return "IEEE 802.11";
    case 119: return "IEEE 802.11 with Prism header";
    case 127: return "IEEE 802.11 with radiotap header";
    case 163: return "IEEE 802.11 with AVS header";
    case 189:
    case 220: return "Linux USB";
    case 192: return "PPI";
    case 195:
    case 215: return "IEEE 802.15.4";
    case 201: return "Bluetooth HCI";
    case 204: return "PPP (pppd)";
    case 239: return "Linux NFLOG";
    case 252: return "Wireshark upper PDU";
    case 253: return "Linux netlink";
    default: break;
  }
  return "unknown";
}

bool link_type_supported(std::uint32_t linktype) noexcept {
  switch (static_cast<LinkType>(linktype)) {
    case LinkType::null_bsd:
    case LinkType::ethernet:
    case LinkType::raw:
    case LinkType::loop:
    case LinkType::linux_sll:
    case LinkType::ipv4:
    case LinkType::ipv6:
    case LinkType::linux_sll2: return true;
  }
  return false;
}

std::string unsupported_link_type_message(std::uint32_t linktype) {
  return fmt::format(
      "link type {} ({}) is not supported; ipsentry reads Ethernet (with 802.1Q), Linux SLL and SLL2, raw IP, and "
      "BSD/OpenBSD loopback",
      linktype, link_type_name(linktype));
}

std::uint32_t CaptureFileParser::rd32(const std::uint8_t* p) const noexcept {
  std::uint32_t v = load_le32(p);
  return swapped_ ? bswap32(v) : v;
}

std::uint16_t CaptureFileParser::rd16(const std::uint8_t* p) const noexcept {
  std::uint16_t v = load_le16(p);
  return swapped_ ? static_cast<std::uint16_t>((v >> 8) | (v << 8)) : v;
}

void CaptureFileParser::note_link_type(std::uint32_t linktype) noexcept {
  if (link_type_supported(linktype)) return;
  if (unsupported_frames_++ == 0) unsupported_link_type_ = linktype;
}

CaptureFileParser::Next CaptureFileParser::fail(const char* message, std::uint64_t at) noexcept {
  error_ = message;
  error_offset_ = at;
  pos_ = image_.size();
  failed_ = true;
  return Next::error;
}

CaptureFileParser::Next CaptureFileParser::short_of_bytes(const char* message, std::uint64_t at) noexcept {
  return final_ ? fail(message, at) : Next::more;
}

void CaptureFileParser::grow(Bytes image, bool final) noexcept {
  image_ = image;
  final_ = final;
}

bool CaptureFileParser::open(Bytes image, std::string& error) {
  image_ = image;
  final_ = true;
  failed_ = false;
  pos_ = 0;
  number_ = 0;
  interfaces_.clear();
  secrets_.clear();
  unsupported_frames_ = 0;
  unsupported_link_type_ = 0;
  if (image.size() < 4) {
    error = "file is too short to be a pcap or pcapng capture";
    return false;
  }
  std::uint32_t magic_le = load_le32(image.data());
  if (magic_le == kBlockSectionHeader) {
    format_ = Format::pcapng;
    if (image.size() < 28) {
      error = "pcapng section header block is truncated";
      return false;
    }
    std::uint32_t bom = load_le32(image.data() + 8);
    if (bom == kByteOrderMagic) {
      swapped_ = false;
    } else if (bom == bswap32(kByteOrderMagic)) {
      swapped_ = true;
    } else {
      error = "pcapng section header has an invalid byte-order magic";
      return false;
    }
    return true;  // the section header is parsed by next()
  }
  format_ = Format::pcap;
  if (magic_le == kPcapMagicUsec || magic_le == kPcapMagicNsec) {
    swapped_ = false;
  } else if (magic_le == bswap32(kPcapMagicUsec) || magic_le == bswap32(kPcapMagicNsec)) {
    swapped_ = true;
  } else if (image.size() >= 2 && image[0] == 0x1f && image[1] == 0x8b) {
    error = "file is gzip-compressed (it should have been inflated before parsing)";
    return false;
  } else {
    error = fmt::format("not a pcap or pcapng file (magic number 0x{:08x})", magic_le);
    return false;
  }
  if (image.size() < 24) {
    error = "pcap file header is truncated (24 bytes needed)";
    return false;
  }
  nanosecond_ = rd32(image.data()) == kPcapMagicNsec;
  pcap_snaplen_ = rd32(image.data() + 16);
  // The upper bits of the link-type field carry FCS information.
  pcap_linktype_ = rd32(image.data() + 20) & 0x0fffffff;
  if (!link_type_supported(pcap_linktype_)) {
    error = unsupported_link_type_message(pcap_linktype_);
    return false;
  }
  InterfaceInfo info;
  info.linktype = pcap_linktype_;
  info.snaplen = pcap_snaplen_;
  info.ts_mul = 1;
  interfaces_.push_back(info);
  pos_ = 24;
  return true;
}

CaptureFileParser::Next CaptureFileParser::next(Frame& out) {
  if (failed_) return Next::end;
  if (pos_ >= image_.size()) return final_ ? Next::end : Next::more;
  return format_ == Format::pcap ? next_pcap(out) : next_pcapng(out);
}

CaptureFileParser::Next CaptureFileParser::next_pcap(Frame& out) {
  const std::uint64_t at = pos_;
  if (image_.size() - at < 16) return short_of_bytes("pcap record header is truncated (file cut short)", at);
  const std::uint8_t* h = image_.data() + at;
  std::uint32_t sec = rd32(h);
  std::uint32_t frac = rd32(h + 4);
  std::uint32_t incl = rd32(h + 8);
  std::uint32_t orig = rd32(h + 12);
  if (incl > kMaxFrame) return fail("pcap record claims an impossible captured length", at);
  if (image_.size() - at - 16 < incl) return short_of_bytes("pcap record data is truncated (file cut short)", at);
  out.number = ++number_;
  // At most 2^32 s plus 2^32 * 1000 ns: within int64_t, and clamped like pcapng times.
  out.ts_ns = clamp_timestamp(static_cast<std::int64_t>(sec) * 1'000'000'000 +
                              static_cast<std::int64_t>(nanosecond_ ? frac : std::uint64_t{frac} * 1000));
  out.linktype = pcap_linktype_;
  out.orig_len = orig < incl ? incl : orig;
  out.interface_id = 0;
  out.file_offset = at;
  out.data = image_.subspan(at + 16, incl);
  out.comment = {};
  pos_ = at + 16 + incl;
  return Next::frame;
}

bool CaptureFileParser::parse_interface(Bytes body) {
  if (body.size() < 8) return false;
  InterfaceInfo info;
  info.linktype = rd16(body.data());
  info.snaplen = rd32(body.data() + 4);
  info.ts_mul = 1000;  // default resolution: microseconds
  info.ts_div = 1;
  Bytes opts = body.subspan(8);
  while (opts.size() >= 4) {
    std::uint16_t code = rd16(opts.data());
    std::uint16_t len = rd16(opts.data() + 2);
    if (code == 0) break;
    std::size_t padded = (std::size_t{len} + 3) & ~std::size_t{3};
    if (opts.size() - 4 < padded) return false;
    Bytes val = opts.subspan(4, len);
    if (code == 2) {
      info.name.assign(val.begin(), val.end());
    } else if (code == 3) {
      info.description.assign(val.begin(), val.end());
    } else if (code == 9 && len >= 1) {
      std::uint8_t r = val[0];
      unsigned exp = r & 0x7f;
      if (r & 0x80) {
        if (exp > 63) return false;
        info.ts_mul = 1'000'000'000;
        info.ts_div = std::uint64_t{1} << exp;
      } else {
        if (exp > 18) return false;
        std::uint64_t p = 1;
        if (exp <= 9) {
          for (unsigned i = exp; i < 9; ++i) p *= 10;
          info.ts_mul = p;
          info.ts_div = 1;
        } else {
          for (unsigned i = 9; i < exp; ++i) p *= 10;
          info.ts_mul = 1;
          info.ts_div = p;
        }
      }
    } else if (code == 14 && len == 8) {
      std::uint64_t off;
      std::memcpy(&off, val.data(), 8);
      if (swapped_) off = __builtin_bswap64(off);
      info.ts_offset_ns = offset_ns(static_cast<std::int64_t>(off));
    }
    opts = opts.subspan(4 + padded);
  }
  interfaces_.push_back(std::move(info));
  return true;
}

bool CaptureFileParser::parse_section_header(std::uint64_t at, std::uint32_t block_len) {
  (void)block_len;
  std::uint32_t bom = load_le32(image_.data() + at + 8);
  if (bom == kByteOrderMagic) {
    swapped_ = false;
  } else if (bom == bswap32(kByteOrderMagic)) {
    swapped_ = true;
  } else {
    return false;
  }
  section_first_interface_ = interfaces_.size();
  return true;
}

CaptureFileParser::Next CaptureFileParser::next_pcapng(Frame& out) {
  for (;;) {
    const std::uint64_t at = pos_;
    if (at >= image_.size()) return final_ ? Next::end : Next::more;
    if (image_.size() - at < 12) return short_of_bytes("pcapng block header is truncated (file cut short)", at);
    const std::uint8_t* h = image_.data() + at;
    std::uint32_t type = load_le32(h);
    if (type == kBlockSectionHeader) {
      // A new section may switch byte order; read its byte-order magic first.
      if (image_.size() - at < 28) return short_of_bytes("pcapng section header is truncated", at);
      if (!parse_section_header(at, 0)) return fail("pcapng section header has an invalid byte-order magic", at);
    }
    type = rd32(h);
    std::uint32_t len = rd32(h + 4);
    if (len < 12 || (len % 4) != 0) return fail("pcapng block has an invalid length", at);
    if (image_.size() - at < len) {
      if (!final_ && len > kMaxGrowingBlock) return fail("pcapng block claims an impossible length", at);
      return short_of_bytes("pcapng block is truncated (file cut short)", at);
    }
    if (rd32(h + len - 4) != len) return fail("pcapng block trailer length does not match its header", at);
    Bytes body = image_.subspan(at + 8, len - 12);
    pos_ = at + len;

    switch (type) {
      case kBlockSectionHeader: continue;
      case kBlockInterface:
        if (!parse_interface(body)) return fail("pcapng interface description block is malformed", at);
        continue;
      case kBlockEnhancedPacket:
      case kBlockObsoletePacket: {
        if (body.size() < 20) return fail("pcapng packet block is truncated", at);
        std::uint32_t ifid;
        std::uint32_t caplen;
        std::uint32_t origlen;
        std::uint64_t ts;
        if (type == kBlockEnhancedPacket) {
          ifid = rd32(body.data());
        } else {
          ifid = rd16(body.data());
        }
        ts = (std::uint64_t{rd32(body.data() + 4)} << 32) | rd32(body.data() + 8);
        caplen = rd32(body.data() + 12);
        origlen = rd32(body.data() + 16);
        std::size_t padded = (std::size_t{caplen} + 3) & ~std::size_t{3};
        if (caplen > kMaxFrame || body.size() - 20 < padded) {
          return fail("pcapng packet block captured length exceeds the block", at);
        }
        std::size_t index = section_first_interface_ + ifid;
        if (index >= interfaces_.size()) {
          return fail("pcapng packet block refers to an undefined interface", at);
        }
        const InterfaceInfo& itf = interfaces_[index];
        note_link_type(itf.linktype);
        out.number = ++number_;
        // Both terms are within +-kMaxTimestampNs, so the sum cannot overflow.
        out.ts_ns = clamp_timestamp(scale_timestamp(ts, itf.ts_mul, itf.ts_div) + itf.ts_offset_ns);
        out.linktype = itf.linktype;
        out.orig_len = origlen < caplen ? caplen : origlen;
        out.interface_id = static_cast<std::uint32_t>(index);
        out.file_offset = at;
        out.data = body.subspan(20, caplen);
        out.comment = {};
        Bytes opts = body.subspan(20 + padded);
        while (opts.size() >= 4) {
          std::uint16_t code = rd16(opts.data());
          std::uint16_t olen = rd16(opts.data() + 2);
          std::size_t opad = (std::size_t{olen} + 3) & ~std::size_t{3};
          if (code == 0 || opts.size() - 4 < opad) break;
          if (code == 1 && out.comment.empty()) out.comment = opts.subspan(4, olen);
          opts = opts.subspan(4 + opad);
        }
        return Next::frame;
      }
      case kBlockSimplePacket: {
        if (body.size() < 4) return fail("pcapng simple packet block is truncated", at);
        std::size_t index = section_first_interface_;
        if (index >= interfaces_.size()) {
          return fail("pcapng simple packet block appears before any interface", at);
        }
        const InterfaceInfo& itf = interfaces_[index];
        std::uint32_t origlen = rd32(body.data());
        std::size_t caplen = body.size() - 4;
        if (origlen < caplen) caplen = origlen;
        if (itf.snaplen != 0 && caplen > itf.snaplen) caplen = itf.snaplen;
        note_link_type(itf.linktype);
        out.number = ++number_;
        out.ts_ns = 0;
        out.linktype = itf.linktype;
        out.orig_len = origlen;
        out.interface_id = static_cast<std::uint32_t>(index);
        out.file_offset = at;
        out.data = body.subspan(4, caplen);
        out.comment = {};
        return Next::frame;
      }
      case kBlockDecryptionSecrets:
        if (body.size() >= 8) {
          std::uint32_t stype = rd32(body.data());
          std::uint32_t slen = rd32(body.data() + 4);
          if (body.size() - 8 >= slen) secrets_.push_back({stype, body.subspan(8, slen)});
        }
        continue;
      default: continue;  // name resolution, statistics and custom blocks are not needed
    }
  }
}

}  // namespace ipsentry::dissect
