// `ipsentry verify CAPTURE -c CONFIG`: offline verification of a capture.
#pragma once

#include <string>

#include "common.hpp"
#include "report.hpp"

namespace ipsentry::cli {

struct VerifyOptions {
  std::string capture;
  KeySources keys;
  AuditSources audit;  // --policy CONFIG --as ADDRESS
  bool json = false;
  bool quiet = false;
  std::string write_decrypted;  // pcap of the decrypted / rebuilt cleartext packets
  unsigned threads = 1;         // threads (0: one per core)
  TimeFormat time = TimeFormat::relative;
  bool progress = true;  // on stderr, when it is a terminal
  bool stats = false;    // where the time went, on stderr
};

/// Runs the verification and returns the exit code.
int run_verify(const VerifyOptions& options);

}  // namespace ipsentry::cli
