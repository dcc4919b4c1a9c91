#include "ipsentry/enforce/snapshot.hpp"

namespace ipsentry::enforce {

std::vector<SnapshotRow> quick_mode_rows(const nlohmann::json& snapshot) {
  const auto& q = snapshot.at("quick_mode");
  const auto& sent = q.at("sent");
  const auto& received = q.at("received");
  auto v = [](const nlohmann::json& j, const char* key) { return j.at(key).get<std::uint64_t>(); };
  return {
      {"Active Security Associations", v(q, "active_security_associations")},
      {"Key Additions", v(q, "key_additions")},
      {"Key Deletions", v(q, "key_deletions")},
      {"Active Tunnels", v(q, "active_tunnels")},
      {"Bad SPI Packets", v(q, "bad_spi_packets")},
      {"Packets Not Decrypted", v(q, "packets_not_decrypted")},
      {"Packets Not Authenticated", v(q, "packets_not_authenticated")},
      {"Packets With Replay Detection", v(q, "packets_with_replay_detection")},
      {"Confidential Bytes Sent", v(sent, "confidential_bytes")},
      {"Confidential Bytes Received", v(received, "confidential_bytes")},
      {"Authenticated Bytes Sent", v(sent, "authenticated_bytes")},
      {"Authenticated Bytes Received", v(received, "authenticated_bytes")},
      {"Transport Bytes Sent", v(sent, "transport_bytes")},
      {"Transport Bytes Received", v(received, "transport_bytes")},
      {"Bytes Sent In Tunnels", v(sent, "tunnel_bytes")},
      {"Bytes Received In Tunnels", v(received, "tunnel_bytes")},
  };
}

}  // namespace ipsentry::enforce
