// Configurations for the IKEv2 daemon tests: one negotiate policy and its
// profile per node, in the YAML users write (docs/ike-keying.md), and test
// certificates made with the openssl command line.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <unistd.h>

namespace ipsentry::test_ikev2 {

// Documentation addresses: A's site 192.0.2.0/25 behind gateway A
// (203.0.113.1), B's site 192.0.2.128/25 behind gateway B (198.51.100.1).
inline constexpr const char* kA = "203.0.113.1";
inline constexpr const char* kB = "198.51.100.1";
inline constexpr const char* kSiteA = "192.0.2.0/25";
inline constexpr const char* kSiteB = "192.0.2.128/25";

struct Cfg {
  std::string me, peer;  // this gateway's address; the peer's, or "any"
  std::string from, to;  // the policy's selectors
  std::string mode = "tunnel";
  std::string inbound = "require";
  std::string auth = R"(method: psk, psk: "a long shared secret for the tests")";
  std::string local_id, remote_id;  // empty: the defaults
  std::string proposals = "[aes256gcm16-prfsha384-ecp384]";
  std::string esp = "[aes128gcm16]";
  std::string ah;           // ah_proposals, with ipsec protocol ah
  std::string extra;        // more profile lines ("pfs: ecp256", "lifetime: {...}")
  std::string tunnel_peer;  // ipsec.peer; empty: `peer`

  [[nodiscard]] std::string yaml() const {
    std::string profile = fmt::format(
        "ike_profiles:\n  - name: prof\n    version: 2\n    auth: {{ {} }}\n    peer: {}\n    proposals: {}\n", auth,
        peer, proposals);
    if (!esp.empty()) profile += fmt::format("    esp_proposals: {}\n", esp);
    if (!ah.empty()) profile += fmt::format("    ah_proposals: {}\n", ah);
    if (!local_id.empty()) profile += fmt::format("    local_id: \"{}\"\n", local_id);
    if (!remote_id.empty()) profile += fmt::format("    remote_id: \"{}\"\n", remote_id);
    if (!extra.empty()) profile += "    " + extra + "\n";
    const std::string proto = ah.empty() ? "esp" : "ah";
    const std::string ipsec = mode == "tunnel" ? fmt::format("{{ protocol: {}, mode: tunnel, peer: {} }}", proto,
                                                             tunnel_peer.empty() ? peer : tunnel_peer)
                                               : fmt::format("{{ protocol: {}, mode: transport }}", proto);
    return fmt::format(
        "interfaces: {{ local: [{}] }}\n{}policies:\n  - name: site\n    from: {}\n    to: {}\n    mirrored: true\n"
        "    action: negotiate\n    ike: prof\n    inbound: {}\n    ipsec: {}\n",
        me, profile, from, to, inbound, ipsec);
  }
};

inline Cfg make_cfg(std::string me, std::string peer, std::string from, std::string to) {
  Cfg c;
  c.me = std::move(me);
  c.peer = std::move(peer);
  c.from = std::move(from);
  c.to = std::move(to);
  return c;
}

/// Gateway A and B of the site-to-site tunnel with a PSK.
inline Cfg tunnel_a() { return make_cfg(kA, kB, kSiteA, kSiteB); }
inline Cfg tunnel_b() { return make_cfg(kB, kA, kSiteB, kSiteA); }
/// Host-to-host transport mode.
inline Cfg transport_a() {
  Cfg c = make_cfg(kA, kB, "me", kB);
  c.mode = "transport";
  return c;
}
inline Cfg transport_b() {
  Cfg c = make_cfg(kB, kA, "me", kA);
  c.mode = "transport";
  return c;
}

/// A CA and two gateway certificates (gw1 for A, gw2 for B), made once per
/// test binary with the openssl command line into a temporary directory.
struct TestPki {
  std::filesystem::path dir;
  bool ok = false;
};

inline bool run_openssl(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

/// `key`: "ec" (P-256) or "rsa".
inline TestPki make_pki(const std::string& key) {
  TestPki p;
  p.dir = std::filesystem::temp_directory_path() / fmt::format("ipsentry-ikev2-pki-{}-{}", key, ::getpid());
  std::filesystem::create_directories(p.dir);
  const std::string d = p.dir.string();
  const std::string newkey = key == "rsa" ? "-newkey rsa:2048" : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
  bool ok =
      run_openssl(fmt::format("openssl req -x509 {} -nodes -keyout {}/ca.key -out {}/ca.pem -days 30 "
                              "-subj '/C=CH/O=ipsentry test/CN=test CA'",
                              newkey, d, d));
  for (const auto& [gw, addr] : {std::pair{"gw1", "203.0.113.1"}, std::pair{"gw2", "198.51.100.1"}}) {
    std::ofstream(fmt::format("{}/{}.ext", d, gw))
        << fmt::format("subjectAltName=DNS:{}.example.org,IP:{}\n", gw, addr);
    ok = ok &&
         run_openssl(fmt::format("openssl req {} -nodes -keyout {}/{}.key -out {}/{}.csr "
                                 "-subj '/C=CH/O=ipsentry test/CN={}.example.org'",
                                 newkey, d, gw, d, gw, gw)) &&
         run_openssl(fmt::format("openssl x509 -req -in {0}/{1}.csr -CA {0}/ca.pem -CAkey {0}/ca.key -CAcreateserial "
                                 "-out {0}/{1}.pem -days 30 -extfile {0}/{1}.ext",
                                 d, gw));
  }
  // A second CA that signed nothing of ours: a peer trusting only it must refuse.
  ok = ok && run_openssl(fmt::format("openssl req -x509 {} -nodes -keyout {}/other.key -out {}/other.pem -days 30 "
                                     "-subj '/C=CH/O=elsewhere/CN=other CA'",
                                     newkey, d, d));
  p.ok = ok;
  return p;
}

inline std::string cert_auth(const TestPki& p, const char* gw, const char* ca = "ca") {
  return fmt::format("method: cert, cert: {0}/{1}.pem, key: {0}/{1}.key, ca: [{0}/{2}.pem]", p.dir.string(), gw, ca);
}

}  // namespace ipsentry::test_ikev2
