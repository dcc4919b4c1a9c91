// Checks of the configuration loader that need no YAML, shared by
// config.cpp and ike_profile.cpp.
#pragma once

#include "ipsentry/filters/config.hpp"

namespace ipsentry::filters {

/// The consistency of negotiate policies with their IKE profiles
/// (docs/ike-keying.md, "Configuration"): the profile exists, a transport
/// policy has one peer, a tunnel policy's peer is the profile's (taken
/// from it when the policy gives none), IKEv2 can negotiate what the
/// policy protects with. Throws ConfigError with the policy's file, line
/// and field.
void check_negotiate_policies(Config& cfg);

}  // namespace ipsentry::filters
