#include "protect.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/pcap_writer.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/filters/secret.hpp"
#include "ipsentry/ipsec/engine.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::cli {

int run_protect(const ProtectOptions& opt) {
  if (auto e = output_is_input("-o", opt.output, opt.input, opt.keys); !e.empty()) {
    fmt::print(stderr, "ipsentry: error: {}\n", e);
    return kExitUsage;
  }
  std::vector<std::string> described;
  filters::Config cfg;
  try {
    cfg = load_keys(opt.keys, described);
  } catch (const filters::ConfigError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  for (const auto& w : cfg.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);
  ipsec::Sad sad(std::move(cfg.sas), opt.keys.crypto);
  ipsec::SecurityAssociation* sa = sad.find(opt.sa);
  if (sa == nullptr) {
    fmt::print(stderr, "ipsentry: error: no SA is named '{}'\n", opt.sa);
    return kExitUsage;
  }
  if (sa->unsupported()) {
    fmt::print(stderr, "ipsentry: error: SA {}: {}\n", sa->name(), sa->unsupported_detail());
    return kExitUsage;
  }
  std::optional<dissect::IpAddr> only_src;
  std::optional<dissect::IpAddr> only_dst;
  if (!opt.only_src.empty() && !(only_src = dissect::IpAddr::parse(opt.only_src))) {
    fmt::print(stderr, "ipsentry: error: --src '{}' is not an IP address\n", opt.only_src);
    return kExitUsage;
  }
  if (!opt.only_dst.empty() && !(only_dst = dissect::IpAddr::parse(opt.only_dst))) {
    fmt::print(stderr, "ipsentry: error: --dst '{}' is not an IP address\n", opt.only_dst);
    return kExitUsage;
  }
  filters::SecretBytes iv;
  if (!opt.iv.empty()) {
    std::string why;
    if (!filters::parse_hex_key(opt.iv, iv, why)) {
      fmt::print(stderr, "ipsentry: error: --iv: {}\n", why);
      return kExitUsage;
    }
    if (sa->esp() == nullptr || iv.size() != sa->esp()->iv_len()) {
      fmt::print(stderr, "ipsentry: error: --iv must be {} bytes for SA {}\n", sa->esp() ? sa->esp()->iv_len() : 0,
                 sa->name());
      return kExitUsage;
    }
  }

  std::optional<capture::FileSource> src;
  std::unique_ptr<capture::PcapWriter> out;
  try {
    src.emplace(opt.input);
    std::uint32_t linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
    out = std::make_unique<capture::PcapWriter>(opt.output, linktype);
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }

  ipsec::Engine engine;
  ipsec::OutboundOptions o;
  if (!iv.empty()) o.iv = iv.bytes().data();
  dissect::Frame frame;
  dissect::Packet p;
  std::uint64_t protected_count = 0;
  std::uint64_t copied = 0;
  std::uint64_t not_ip = 0;     // raw-IP output has no place for them
  std::uint64_t malformed = 0;  // an IP header that does not parse
  std::uint64_t failed = 0;     // the transform refused the packet
  int rc = kExitOk;
  try {
    while (src->next(frame)) {
      dissect::dissect_frame(frame, p);
      dissect::Bytes ip = p.ip_bytes();
      if (p.ip.version == 0 || ip.empty()) {
        if (p.network == dissect::Network::ipv4 || p.network == dissect::Network::ipv6) {
          ++malformed;
          fmt::print(stderr, "ipsentry: error: frame {}: not protected: {}\n", frame.number,
                     p.malformed != nullptr ? p.malformed : "the IP header does not parse");
          rc = kExitNotVerified;
        } else {
          ++not_ip;
        }
        continue;
      }
      bool selected = (!only_src || p.ip.src == *only_src) && (!only_dst || p.ip.dst == *only_dst);
      if (!selected) {
        out->write(frame.ts_ns, ip);
        ++copied;
        continue;
      }
      o.ts_ns = frame.ts_ns;
      ipsec::OutboundResult r = engine.outbound(*sa, ip, o);
      if (r.status != ipsec::OutboundStatus::ok) {
        fmt::print(stderr, "ipsentry: error: frame {}: not protected: {}\n", frame.number, ipsec::to_string(r.status));
        ++failed;
        rc = kExitNotVerified;
        if (r.status == ipsec::OutboundStatus::seq_exhausted) break;
        continue;
      }
      out->write(frame.ts_ns, r.packet);
      ++protected_count;
    }
    if (!src->error().empty()) {
      fmt::print(stderr, "ipsentry: error: capture '{}' is damaged: {}\n", opt.input, src->error());
      rc = kExitUsage;
    }
    if (const std::string e = src->unsupported_link(); !e.empty()) {
      fmt::print(stderr, "ipsentry: error: capture '{}': {}\n", opt.input, e);
      rc = kExitUsage;
    }
    out->close();
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  // Every frame read is accounted for: written (protected or copied) or left out, and why.
  std::string left_out;
  if (not_ip + malformed + failed != 0) {
    std::vector<std::string> why;
    if (not_ip != 0) why.push_back(fmt::format("{} not IP", not_ip));
    if (malformed != 0) why.push_back(fmt::format("{} malformed", malformed));
    if (failed != 0) why.push_back(fmt::format("{} could not be protected", failed));
    left_out = fmt::format(", {} frames left out ({})", not_ip + malformed + failed, fmt::join(why, ", "));
  }
  fmt::print(stderr, "ipsentry: {} packets protected with SA {}, {} copied unchanged{}, written to {}\n",
             protected_count, sa->name(), copied, left_out, opt.output);
  return rc;
}

}  // namespace ipsentry::cli
