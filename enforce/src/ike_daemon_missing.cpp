// Until ike::v2::Daemon is built (issue 16, in progress on another
// branch), a configuration with negotiate policies is refused at start
// with this message instead of failing to link. CMake picks this file
// only while no source in ike/src defines the daemon.
#include <fmt/format.h>

#include "ipsentry/enforce/ike_driver.hpp"

namespace ipsentry::enforce {

std::unique_ptr<IkeProtocol> make_ike_daemon(const filters::Config& config, const filters::LocalAddresses&,
                                             ike::v2::Options) {
  throw filters::ConfigError(config.policies.empty() ? "" : config.policies.front().origin.file, 0, "policies",
                             "negotiate policies need the IKE daemon, which this build does not have yet");
}

}  // namespace ipsentry::enforce
