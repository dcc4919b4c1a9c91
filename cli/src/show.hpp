// `ipsentry show CAPTURE [-c CONFIG] [-V]`: one line per frame, or the full
// dissection tree (the one the TUI shows), with IPsec verified and IKE
// decrypted when keys are given.
#pragma once

#include <cstdint>
#include <string>

#include "common.hpp"

namespace ipsentry::cli {

struct ShowOptions {
  std::string capture;
  KeySources keys;
  bool verbose = false;     // -V: the dissection tree of every frame
  std::uint64_t count = 0;  // 0: every frame
};

int run_show(const ShowOptions& options);

}  // namespace ipsentry::cli
