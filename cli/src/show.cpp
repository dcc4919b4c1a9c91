#include "show.hpp"

#include <fmt/format.h>

#include <optional>

#include "ipsentry/capture/file_source.hpp"
#include "ipsentry/capture/frame_text.hpp"
#include "ipsentry/capture/verifier.hpp"
#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/sad.hpp"

namespace ipsentry::cli {

namespace {

// `outer` is the frame's packet: a layer without an SPI is its non-first
// fragment or a header cut too short to hold one, and says which.
std::string layer_text(const capture::LayerRecord& l, const dissect::Packet& outer, const ipsec::Sad& sad) {
  std::string s = fmt::format("{} {}", filters::to_string(l.protocol), l.udp_encap ? "(UDP) " : "");
  if (l.has_spi) {
    s += fmt::format("SPI 0x{:08x}", l.spi);
  } else if (l.depth == 0 && outer.ip.fragment && !outer.ip.first_fragment) {
    s += fmt::format("fragment id=0x{:x} offset={}", outer.ip.fragment_id, outer.ip.fragment_offset);
  } else {
    s += "(no SPI)";
  }
  if (l.has_seq) s += fmt::format(" seq {}", l.seq);
  s += fmt::format(" {}", ipsec::verdict_name(l.verdict));
  if (l.verdict != ipsec::Verdict::ok) s += fmt::format(" ({})", capture::layer_details(l));
  if (l.sa >= 0) s += fmt::format(" sa={}", sad.at(static_cast<std::size_t>(l.sa)).name());
  if (l.inner.size != 0) s += fmt::format(": {}", l.inner.view());
  return s;
}

}  // namespace

int run_show(const ShowOptions& opt) {
  filters::Config cfg;
  std::vector<std::string> sources;
  try {
    cfg = load_keys_for(opt.keys, opt.capture, sources);
    learn_ike_sas(opt.capture, cfg);
  } catch (const filters::ConfigError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  for (const auto& w : cfg.warnings) fmt::print(stderr, "ipsentry: warning: {}\n", w);
  std::optional<capture::FileSource> src;
  try {
    src.emplace(opt.capture);
  } catch (const capture::CaptureError& e) {
    fmt::print(stderr, "ipsentry: error: {}\n", e.what());
    return kExitUsage;
  }
  ike::Analyzer analyzer(std::move(cfg.ike_sas));
  ipsec::Sad sad(std::move(cfg.sas), opt.keys.crypto);
  capture::Verifier verifier(sad, opt.verbose);
  dissect::Frame frame;
  capture::FrameResult result;
  std::int64_t first_ts = 0;
  bool first = true;
  while (src->next(frame)) {
    if (opt.count != 0 && frame.number > opt.count) break;
    if (first) {
      first_ts = frame.ts_ns;
      first = false;
    }
    verifier.process(frame, result);
    const dissect::Packet& p = verifier.outer();
    const ike::MessageRecord* m = analyzer.observe(frame, p);
    const double rel = static_cast<double>(frame.ts_ns - first_ts) / 1e9;
    std::string line;
    if (m != nullptr) {
      line = fmt::format("{} {}", m->summary, ike::verdict_name(ike::verdict(*m)));
    } else if (result.layer_count != 0) {
      for (std::size_t i = 0; i < result.layer_count; ++i) {
        line += (i ? " | " : "") + layer_text(result.layers[i], p, sad);
      }
    } else {
      line = capture::frame_summary(p);
    }
    // A header too broken to give its addresses gives none.
    std::string addrs = p.ip.version != 0 && !p.ip.src.empty() ? p.ip.src.str() + " → " + p.ip.dst.str() : "";
    fmt::print("{:>6} {:>11.6f} {:<33} {}\n", frame.number, rel, addrs, line);
    if (opt.verbose) {
      dissect::Tree tree;
      dissect::build_frame_tree(frame, p, tree);
      analyzer.add_decrypted(frame.number, tree);
      capture::add_verification(tree, result, sad);
      fmt::print("{}\n", dissect::render_tree(tree.root, 1));
    }
    src->release_before(frame.file_offset);
  }
  analyzer.finish();
  std::fflush(stdout);
  if (!src->error().empty()) {
    fmt::print(stderr, "ipsentry: error: capture '{}' is damaged: {}\n", opt.capture, src->error());
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace ipsentry::cli
