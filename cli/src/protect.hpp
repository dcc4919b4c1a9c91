// `ipsentry protect IN.pcap -c CONFIG --sa NAME -o OUT.pcap`: applies an
// outbound SA to the IP packets of a cleartext capture, with the same
// transform code enforcement uses. It produces reference ESP/AH traffic to
// test a peer's decryption (or ipsentry's own verification) against.
#pragma once

#include <string>

#include "common.hpp"

namespace ipsentry::cli {

struct ProtectOptions {
  std::string input;
  std::string output;
  KeySources keys;
  std::string sa;
  std::string only_src;  // protect only packets from this address; copy others
  std::string only_dst;
  std::string iv;  // fixed IV (hex) for reproducing published vectors
};

int run_protect(const ProtectOptions& options);

}  // namespace ipsentry::cli
