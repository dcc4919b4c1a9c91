// IKE profiles and negotiate policies (docs/ike-keying.md, "Configuration"):
// every form the loader accepts, what it completes (defaults, PRFs, PFS
// groups), the deprecation warnings, and every refusal with its file, line
// and field.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/spd.hpp"

namespace ipsentry::filters {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("ipsentry-ike-profile-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::string& content, fs::perms mode) {
  {
    std::ofstream o(p, std::ios::binary | std::ios::trunc);
    o << content;
  }
  fs::permissions(p, mode);
}

// Lines joined, so that a test names line numbers as they are counted here.
std::string lines(std::initializer_list<const char*> ls) {
  std::string s;
  for (const char* l : ls) s += std::string(l) + "\n";
  return s;
}

Config parse(const std::string& yaml) { return parse_config(yaml, "test.yaml", temp_dir()); }

bool has_warning(const Config& c, const std::string& part) {
  for (const auto& w : c.warnings) {
    if (w.find(part) != std::string::npos) return true;
  }
  return false;
}

struct Refusal {
  int line;
  std::string field;
  std::string message_part;
};

// "test.yaml:7: ike_profiles[0].pfs: "
std::string fmt_where(int line, const std::string& field) {
  return "test.yaml:" + std::to_string(line) + ": " + field + ": ";
}

void expect_refused(const std::string& yaml, const Refusal& r) {
  try {
    (void)parse(yaml);
    ADD_FAILURE() << "accepted:\n" << yaml;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), "test.yaml");
    EXPECT_EQ(e.line(), r.line) << e.what();
    EXPECT_EQ(e.field(), r.field) << e.what();
    EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos) << e.what();
    // Every error reads file:line: field: message.
    EXPECT_EQ(std::string(e.what()).rfind(fmt_where(r.line, r.field), 0), 0u) << e.what();
  }
}

// ---- accepted forms -----------------------------------------------------------

// The example of docs/ike-keying.md, as written there.
TEST(IkeProfile, DesignExample) {
  const Config c = parse(lines({
      "interfaces: { local: [203.0.113.1] }",
      "ike_profiles:",
      "  - name: to-gw2",
      "    version: 2",
      "    auth:",
      "      method: psk",
      "      psk: \"a long shared secret\"",
      "    local_id: 203.0.113.1",
      "    remote_id: 198.51.100.1",
      "    peer: 198.51.100.1",
      "    proposals: [aes256-sha384-ecp384, aes128gcm16-prfsha256-curve25519]",
      "    esp_proposals: [aes128gcm16, aes256-sha256-modp2048]",
      "    lifetime: { ike: 8h, child: 15m, child_bytes: 2G }",
      "    pfs: none",
      "    dpd: 30s",
      "    soft_timeout: 5m",
      "policies:",
      "  - name: site-to-site",
      "    from: 192.0.2.0/25",
      "    to: 192.0.2.128/25",
      "    mirrored: true",
      "    action: negotiate",
      "    ike: to-gw2",
      "    ipsec: { protocol: esp, mode: tunnel, peer: 198.51.100.1 }",
      "    inbound: require",
  }));
  ASSERT_EQ(c.ike_profiles.size(), 1u);
  const IkeProfile& p = c.ike_profiles[0];
  EXPECT_EQ(p.name, "to-gw2");
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.method, IkeAuthMethod::psk);
  const std::string secret = "a long shared secret";
  ASSERT_EQ(p.psk.size(), secret.size());
  EXPECT_TRUE(std::equal(p.psk.bytes().begin(), p.psk.bytes().end(), secret.begin()));
  EXPECT_EQ(p.local_id.kind, IkeIdentity::Kind::address);
  EXPECT_EQ(p.local_id.str(), "203.0.113.1");
  EXPECT_EQ(p.remote_id.str(), "198.51.100.1");
  ASSERT_TRUE(p.peer);
  EXPECT_EQ(p.peer->str(), "198.51.100.1");
  EXPECT_EQ(p.origin.line, 3);

  ASSERT_EQ(p.proposals.size(), 2u);
  const IkeProposal& a = p.proposals[0];
  ASSERT_EQ(a.encryption.size(), 1u);
  EXPECT_EQ(a.encryption[0], (KeyedCipher{Cipher::aes_cbc, 32}));
  EXPECT_EQ(a.integrity, std::vector<Integrity>{Integrity::hmac_sha384_192});
  EXPECT_EQ(a.prf, std::vector<Prf>{Prf::hmac_sha384});  // strongSwan's: from the integrity algorithm
  EXPECT_EQ(a.dh, std::vector<DhGroup>{DhGroup::ecp384});
  const IkeProposal& b = p.proposals[1];
  EXPECT_EQ(b.encryption[0], (KeyedCipher{Cipher::aes_gcm_16, 16}));
  EXPECT_TRUE(b.integrity.empty());
  EXPECT_EQ(b.prf, std::vector<Prf>{Prf::hmac_sha256});
  EXPECT_EQ(b.dh, std::vector<DhGroup>{DhGroup::curve25519});

  ASSERT_EQ(p.esp_proposals.size(), 2u);
  EXPECT_EQ(p.esp_proposals[0].encryption[0], (KeyedCipher{Cipher::aes_gcm_16, 16}));
  EXPECT_TRUE(p.esp_proposals[0].integrity.empty());
  EXPECT_TRUE(p.esp_proposals[0].dh.empty());  // pfs: none, so nothing is added
  EXPECT_EQ(p.esp_proposals[0].esn, std::vector<bool>{false});
  EXPECT_EQ(p.esp_proposals[1].integrity, std::vector<Integrity>{Integrity::hmac_sha256_128});
  EXPECT_EQ(p.esp_proposals[1].dh, std::vector<DhGroup>{DhGroup::modp2048});
  EXPECT_TRUE(p.ah_proposals.empty());

  EXPECT_EQ(p.ike_lifetime, 8u * 3600);
  EXPECT_EQ(p.child_lifetime, 900u);
  EXPECT_EQ(p.child_lifetime_bytes, 2ull << 30);
  EXPECT_EQ(p.pfs, DhGroup::none);  // written: none wins over the group in esp_proposals
  EXPECT_EQ(p.dpd, 30u);
  EXPECT_EQ(p.soft_timeout, 300u);

  ASSERT_EQ(c.policies.size(), 1u);
  const PolicyConfig& pol = c.policies[0];
  EXPECT_EQ(pol.action, PolicyAction::negotiate);
  EXPECT_EQ(pol.ike, "to-gw2");
  EXPECT_EQ(pol.mode, SaMode::tunnel);
  EXPECT_EQ(pol.inbound, InboundCleartext::require);
  EXPECT_EQ(c.find_ike_profile("to-gw2"), &p);
  EXPECT_EQ(c.find_ike_profile("nope"), nullptr);
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
}

// What a profile that gives only its name and key gets: the seeds' lifetimes
// (Main Mode 8 h, Quick Mode 15 min / 2 GB) and the design's proposals.
TEST(IkeProfile, Defaults) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: minimal",
      "    auth: { method: psk, psk: 0x00112233445566778899aabbccddeeff }",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.psk.size(), 16u);
  EXPECT_EQ(p.psk.bytes()[0], 0x00);
  EXPECT_EQ(p.psk.bytes()[15], 0xff);
  EXPECT_EQ(p.local_id.kind, IkeIdentity::Kind::any);  // filled from our address when negotiating
  EXPECT_EQ(p.remote_id.kind, IkeIdentity::Kind::any);
  EXPECT_FALSE(p.peer);
  ASSERT_EQ(p.proposals.size(), 3u);
  EXPECT_EQ(p.proposals[0].text, "aes256gcm16-prfsha384-ecp384");
  EXPECT_EQ(p.proposals[0].prf, std::vector<Prf>{Prf::hmac_sha384});
  EXPECT_EQ(p.proposals[1].text, "aes256-sha384-ecp384");
  EXPECT_EQ(p.proposals[2].dh, std::vector<DhGroup>{DhGroup::modp2048});
  ASSERT_EQ(p.esp_proposals.size(), 3u);
  EXPECT_EQ(p.esp_proposals[0].encryption[0], (KeyedCipher{Cipher::aes_gcm_16, 32}));
  EXPECT_EQ(p.esp_proposals[1].encryption[0], (KeyedCipher{Cipher::aes_gcm_16, 16}));
  EXPECT_EQ(p.esp_proposals[2].integrity, std::vector<Integrity>{Integrity::hmac_sha256_128});
  EXPECT_EQ(p.ike_lifetime, 28800u);
  EXPECT_EQ(p.child_lifetime, 900u);
  EXPECT_EQ(p.child_lifetime_bytes, 2147483648ull);
  EXPECT_EQ(p.child_lifetime_packets, 0u);
  EXPECT_EQ(p.pfs, DhGroup::none);
  EXPECT_EQ(p.dpd, 30u);
  EXPECT_EQ(p.soft_timeout, 300u);
  EXPECT_TRUE(c.warnings.empty());
}

// The lists of strongSwan's own ecdsa-certs scenario (testing/tests/ikev2/
// ecdsa-certs/hosts/moon/etc/swanctl/swanctl.conf), written once as a
// YAML list and once as the comma-separated line of swanctl.conf, and
// the most common lines of its test suite (x25519, aes128gcm128).
TEST(IkeProfile, CopiedFromSwanctlConf) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: moon",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    proposals: aes256-aes128-sha384-sha256-ecp384-ecp256",
      "    esp_proposals: aes256gcm16-aes128gcm16-ecp384-ecp256",
      "  - name: moon-commas",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    proposals: aes128-sha256-x25519,aes256-sha384-ecp384",
      "    esp_proposals: [\"aes128gcm128-x25519, aes128-sha256-ecp256\"]",
  }));
  const IkeProfile& m = c.ike_profiles.at(0);
  ASSERT_EQ(m.proposals.size(), 1u);
  const IkeProposal& i = m.proposals[0];
  EXPECT_EQ(i.encryption, (std::vector<KeyedCipher>{{Cipher::aes_cbc, 32}, {Cipher::aes_cbc, 16}}));
  EXPECT_EQ(i.integrity, (std::vector<Integrity>{Integrity::hmac_sha384_192, Integrity::hmac_sha256_128}));
  EXPECT_EQ(i.prf, (std::vector<Prf>{Prf::hmac_sha384, Prf::hmac_sha256}));
  EXPECT_EQ(i.dh, (std::vector<DhGroup>{DhGroup::ecp384, DhGroup::ecp256}));
  ASSERT_EQ(m.esp_proposals.size(), 1u);
  const ChildProposal& e = m.esp_proposals[0];
  EXPECT_EQ(e.encryption, (std::vector<KeyedCipher>{{Cipher::aes_gcm_16, 32}, {Cipher::aes_gcm_16, 16}}));
  EXPECT_EQ(e.dh, (std::vector<DhGroup>{DhGroup::ecp384, DhGroup::ecp256}));
  // A group in esp_proposals turns PFS on, as in swanctl.conf: the first one.
  EXPECT_EQ(m.pfs, DhGroup::ecp384);

  const IkeProfile& n = c.ike_profiles.at(1);
  ASSERT_EQ(n.proposals.size(), 2u);
  EXPECT_EQ(n.proposals[0].dh, std::vector<DhGroup>{DhGroup::curve25519});
  EXPECT_EQ(n.proposals[1].text, "aes256-sha384-ecp384");
  ASSERT_EQ(n.esp_proposals.size(), 2u);
  EXPECT_EQ(n.esp_proposals[0].encryption[0], (KeyedCipher{Cipher::aes_gcm_16, 16}));  // ICV in bits
  EXPECT_EQ(n.esp_proposals[0].dh, std::vector<DhGroup>{DhGroup::curve25519});
  EXPECT_EQ(n.esp_proposals[1].text, "aes128-sha256-ecp256");
  EXPECT_EQ(n.pfs, DhGroup::curve25519);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(IkeProfile, PfsGroupCompletesProposalsWithoutGroups) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    esp_proposals: [aes128gcm16, aes256-sha256-ecp256-modp2048]",
      "    ah_proposals: [sha256]",
      "    pfs: modp2048",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_EQ(p.pfs, DhGroup::modp2048);
  // The proposal without groups takes the profile's, so a rekey offers and
  // accepts the same group; the one that names groups keeps them.
  EXPECT_EQ(p.esp_proposals[0].dh, std::vector<DhGroup>{DhGroup::modp2048});
  EXPECT_EQ(p.esp_proposals[1].dh, (std::vector<DhGroup>{DhGroup::ecp256, DhGroup::modp2048}));
  ASSERT_EQ(p.ah_proposals.size(), 1u);
  EXPECT_EQ(p.ah_proposals[0].protocol, IpsecProtocol::ah);
  EXPECT_EQ(p.ah_proposals[0].integrity, std::vector<Integrity>{Integrity::hmac_sha256_128});
  EXPECT_EQ(p.ah_proposals[0].dh, std::vector<DhGroup>{DhGroup::modp2048});
}

TEST(IkeProfile, MixedPfsProposalsWithoutPfsFieldWarn) {
  // swanctl.conf would read the second proposal as "no PFS accepted"; here it
  // takes the group, and the loader says so (the line of esp_proposals).
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    esp_proposals: [aes128gcm16-modp2048, aes128gcm16]",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_EQ(p.pfs, DhGroup::modp2048);
  EXPECT_EQ(p.esp_proposals[1].dh, std::vector<DhGroup>{DhGroup::modp2048});
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("test.yaml:4: IKE profile 'p': proposal 'aes128gcm16' names no DH group"),
            std::string::npos)
      << c.warnings[0];
  // Written with pfs:, the same list is what the user asked for: no warning.
  const Config d = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    esp_proposals: [aes128gcm16-modp2048, aes128gcm16]",
      "    pfs: modp2048",
  }));
  EXPECT_TRUE(d.warnings.empty()) << d.warnings.front();
}

TEST(IkeProfile, EsnChaChaAndOtherChildAlgorithms) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    proposals: [chacha20poly1305-prfsha512-curve25519, aes192-sha512-modp3072]",
      "    esp_proposals: [aes256gcm16-esn-noesn, chacha20poly1305, aes128ctr-sha256, aes128gmac, null-sha512]",
      "    ah_proposals: [sha384-esn, aesxcbc]",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_EQ(p.proposals[0].encryption[0].cipher, Cipher::chacha20_poly1305);
  EXPECT_EQ(p.proposals[0].prf, std::vector<Prf>{Prf::hmac_sha512});
  EXPECT_EQ(p.proposals[1].encryption[0], (KeyedCipher{Cipher::aes_cbc, 24}));
  EXPECT_EQ(p.proposals[1].dh, std::vector<DhGroup>{DhGroup::modp3072});
  EXPECT_EQ(p.esp_proposals[0].esn, (std::vector<bool>{true, false}));
  EXPECT_EQ(p.esp_proposals[1].encryption[0].cipher, Cipher::chacha20_poly1305);
  EXPECT_EQ(p.esp_proposals[2].encryption[0], (KeyedCipher{Cipher::aes_ctr, 16}));
  EXPECT_EQ(p.esp_proposals[3].encryption[0].cipher, Cipher::aes_gmac);
  EXPECT_EQ(p.esp_proposals[4].encryption[0].cipher, Cipher::null);
  EXPECT_EQ(p.ah_proposals[0].esn, std::vector<bool>{true});
  EXPECT_EQ(p.ah_proposals[1].integrity, std::vector<Integrity>{Integrity::aes_xcbc_96});
  EXPECT_TRUE(c.warnings.empty());
}

TEST(IkeProfile, Identities) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: fqdn",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    local_id: \"@gw1.example.org\"",
      "    remote_id: gw2.example.org",
      "  - name: mail",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    local_id: user@example.org",
      "    remote_id: \"@@peer@example.org\"",
      "  - name: dn-keyid",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    local_id: \"C=CH, O=example, CN=gw1\"",
      "    remote_id: keyid:0a1B2c",
      "  - name: any-v6",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    local_id: 2001:db8::1",
      "    remote_id: any",
      "    peer: any",
  }));
  const auto& f = c.ike_profiles.at(0);
  EXPECT_EQ(f.local_id.kind, IkeIdentity::Kind::fqdn);
  EXPECT_EQ(f.local_id.text, "gw1.example.org");
  EXPECT_EQ(f.remote_id.kind, IkeIdentity::Kind::fqdn);
  EXPECT_EQ(f.remote_id.id_type(), 2);  // ID_FQDN
  const auto& m = c.ike_profiles.at(1);
  EXPECT_EQ(m.local_id.kind, IkeIdentity::Kind::email);
  EXPECT_EQ(m.remote_id.kind, IkeIdentity::Kind::email);
  EXPECT_EQ(m.remote_id.text, "peer@example.org");
  const auto& d = c.ike_profiles.at(2);
  EXPECT_EQ(d.local_id.kind, IkeIdentity::Kind::dn);
  EXPECT_EQ(d.local_id.id_type(), 9);  // ID_DER_ASN1_DN
  EXPECT_FALSE(d.local_id.der.empty());
  EXPECT_NE(d.local_id.str().find("CN=gw1"), std::string::npos);
  EXPECT_EQ(d.remote_id.kind, IkeIdentity::Kind::key_id);
  EXPECT_EQ(d.remote_id.id_data(), (std::vector<std::uint8_t>{0x0a, 0x1b, 0x2c}));
  const auto& a = c.ike_profiles.at(3);
  EXPECT_EQ(a.local_id.kind, IkeIdentity::Kind::address);
  EXPECT_EQ(a.local_id.id_type(), 5);  // ID_IPV6_ADDR
  EXPECT_EQ(a.remote_id.kind, IkeIdentity::Kind::any);
  EXPECT_FALSE(a.peer);
}

TEST(IkeProfile, PskFileAndItsModeWarning) {
  const auto dir = temp_dir();
  write_file(dir / "ok.psk", "a pre-shared key of 32 bytes....", fs::perms::owner_read | fs::perms::owner_write);
  write_file(dir / "open.psk", "another shared key, 29 bytes.",
             fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: private",
      "    auth: { method: psk, psk_file: ok.psk }",
      "  - name: exposed",
      "    auth: { method: psk, psk_file: open.psk }",
  }));
  EXPECT_EQ(c.ike_profiles.at(0).psk.size(), 32u);
  EXPECT_EQ(c.ike_profiles.at(1).psk.size(), 29u);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("open.psk"), std::string::npos) << c.warnings[0];
  EXPECT_NE(c.warnings[0].find("chmod go-rwx"), std::string::npos) << c.warnings[0];
}

TEST(IkeProfile, PskFileIsReadBounded) {
  const auto dir = temp_dir();
  write_file(dir / "big.psk", std::string(5000, 'k'), fs::perms::owner_read | fs::perms::owner_write);
  expect_refused(lines({
                     "ike_profiles:",
                     "  - name: p",
                     "    auth: { method: psk, psk_file: big.psk }",
                 }),
                 {3, "ike_profiles[0].auth.psk_file", "4096"});
  expect_refused(lines({
                     "ike_profiles:",
                     "  - name: p",
                     "    auth: { method: psk, psk_file: /dev/null }",
                 }),
                 {3, "ike_profiles[0].auth.psk_file", "/dev/null"});
  // Never an endless read.
  expect_refused(lines({
                     "ike_profiles:",
                     "  - name: p",
                     "    auth: { method: psk, psk_file: /dev/zero }",
                 }),
                 {3, "ike_profiles[0].auth.psk_file", "/dev/zero"});
}

TEST(IkeProfile, CertificateProfile) {
  const auto dir = temp_dir();
  const auto rw = fs::perms::owner_read | fs::perms::owner_write;
  write_file(dir / "gw1.pem", "-----BEGIN CERTIFICATE-----\n", rw | fs::perms::others_read);
  write_file(dir / "gw1.key", "-----BEGIN PRIVATE KEY-----\n", rw | fs::perms::group_read);
  write_file(dir / "ca1.pem", "-----BEGIN CERTIFICATE-----\n", rw | fs::perms::others_read);
  write_file(dir / "ca2.pem", "-----BEGIN CERTIFICATE-----\n", rw | fs::perms::others_read);
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: one-ca",
      "    auth: { method: cert, cert: gw1.pem, key: gw1.key, ca: ca1.pem }",
      "    remote_id: \"C=CH, O=example, CN=gw2\"",
      "  - name: two-cas",
      "    auth:",
      "      method: cert",
      "      cert: gw1.pem",
      "      key: gw1.key",
      "      ca: [ca1.pem, ca2.pem]",
  }));
  const IkeProfile& a = c.ike_profiles.at(0);
  EXPECT_EQ(a.method, IkeAuthMethod::cert);
  EXPECT_TRUE(a.psk.empty());
  EXPECT_EQ(a.cert, dir / "gw1.pem");
  EXPECT_EQ(a.key, dir / "gw1.key");
  EXPECT_EQ(a.ca, std::vector<fs::path>{dir / "ca1.pem"});
  EXPECT_EQ(a.remote_id.kind, IkeIdentity::Kind::dn);
  EXPECT_EQ(c.ike_profiles.at(1).ca, (std::vector<fs::path>{dir / "ca1.pem", dir / "ca2.pem"}));
  // The private key readable by its group is named (once per mention);
  // certificates are public and are not.
  EXPECT_TRUE(has_warning(c, "gw1.key"));
  EXPECT_FALSE(has_warning(c, "gw1.pem"));
  EXPECT_FALSE(has_warning(c, "ca1.pem"));
  EXPECT_NE(a.describe().find("certificate"), std::string::npos);
}

TEST(IkeProfile, LifetimesDpdAndSoftTimeout) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    lifetime: { ike: 1d, child: 20s, child_bytes: 100M, child_packets: 1000000 }",
      "    dpd: off",
      "    soft_timeout: 90",
      "  - name: q",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    lifetime: { child: 3600, child_bytes: 0 }",
      "    dpd: 0",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_EQ(p.ike_lifetime, 86400u);
  EXPECT_EQ(p.child_lifetime, 20u);
  EXPECT_EQ(p.child_lifetime_bytes, 100ull << 20);
  EXPECT_EQ(p.child_lifetime_packets, 1000000u);
  EXPECT_EQ(p.dpd, 0u);
  EXPECT_EQ(p.soft_timeout, 90u);
  const IkeProfile& q = c.ike_profiles.at(1);
  EXPECT_EQ(q.ike_lifetime, 28800u);
  EXPECT_EQ(q.child_lifetime, 3600u);
  EXPECT_EQ(q.child_lifetime_bytes, 0u);  // 0: no byte limit
  EXPECT_EQ(q.dpd, 0u);
}

// RFC 8247 and RFC 8221: accepted for old peers, never silently.
TEST(IkeProfile, DeprecatedAlgorithmsWarn) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: old",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    proposals: [3des-sha1-modp1024, aes128-md5-modp2048]",
      "    esp_proposals: [3des-md5, aes128-sha1]",
      "    ah_proposals: [md5]",
      "    pfs: modp1024",
      "  - name: new",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
  }));
  EXPECT_EQ(c.ike_profiles.at(0).pfs, DhGroup::modp1024);
  EXPECT_TRUE(has_warning(c,
                          "test.yaml:4: ike_profiles[0].proposals[0]: IKE profile 'old': proposal "
                          "'3des-sha1-modp1024' uses deprecated 3des, sha1, prfsha1, modp1024"));
  EXPECT_TRUE(has_warning(c, "'aes128-md5-modp2048' uses deprecated md5, prfmd5"));
  EXPECT_TRUE(has_warning(c,
                          "test.yaml:5: ike_profiles[0].esp_proposals[0]: IKE profile 'old': proposal '3des-md5' "
                          "uses deprecated 3des, md5"));
  EXPECT_TRUE(has_warning(c, "'aes128-sha1' uses deprecated sha1"));
  EXPECT_TRUE(has_warning(c, "'md5' uses deprecated md5"));
  EXPECT_TRUE(has_warning(c, "test.yaml:7: IKE profile 'old': pfs modp1024 is deprecated"));
  for (const auto& w : c.warnings) EXPECT_EQ(w.find("'new'"), std::string::npos) << w;
}

// strongSwan accepts an integrity algorithm beside AEAD encryption and drops
// it (an IKE proposal without a PRF takes its PRF from it): the same here,
// so a copied line means the same, with a warning since it protects nothing.
TEST(IkeProfile, IntegrityBesideAeadIsDroppedWithAWarning) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
      "    proposals: [aes256gcm16-sha384-ecp384]",
      "    esp_proposals: [aes128gcm16-sha256]",
  }));
  const IkeProfile& p = c.ike_profiles.at(0);
  EXPECT_TRUE(p.proposals[0].integrity.empty());
  EXPECT_EQ(p.proposals[0].prf, std::vector<Prf>{Prf::hmac_sha384});
  EXPECT_TRUE(p.esp_proposals[0].integrity.empty());
  EXPECT_TRUE(has_warning(c,
                          "test.yaml:4: ike_profiles[0].proposals[0]: IKE profile 'p': proposal "
                          "'aes256gcm16-sha384-ecp384' names integrity "
                          "sha384 beside AEAD encryption"));
  EXPECT_TRUE(has_warning(c,
                          "test.yaml:5: ike_profiles[0].esp_proposals[0]: IKE profile 'p': proposal "
                          "'aes128gcm16-sha256' names integrity sha256"));
  EXPECT_EQ(ignored_integrity("aes128-sha256-ecp256"), std::vector<std::string>{});
  EXPECT_EQ(ignored_integrity("aes128gcm16-prfsha256-ecp256"), std::vector<std::string>{});
}

TEST(IkeProfile, ShortPskWarns) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: p",
      "    auth: { method: psk, psk: short }",
  }));
  EXPECT_TRUE(has_warning(c, "test.yaml:3: IKE profile 'p': the pre-shared key is shorter than 16 bytes"));
}

// `config check` prints the profile: never the key, only that it is set.
TEST(IkeProfile, DescribeNeverShowsTheKey) {
  const Config c = parse(lines({
      "ike_profiles:",
      "  - name: to-gw2",
      "    auth: { method: psk, psk: \"SecretPassphrase-123\" }",
      "    remote_id: gw2.example.org",
      "    peer: 198.51.100.1",
      "    proposals: [aes256-sha384-ecp384]",
      "    esp_proposals: [aes128gcm16-ecp256]",
      "    lifetime: { child: 1h30m }",
  }));
  const std::string d = c.ike_profiles.at(0).describe();
  EXPECT_EQ(d.find("SecretPassphrase"), std::string::npos) << d;
  EXPECT_EQ(d.find("5365637265"), std::string::npos) << d;  // nor as hex
  EXPECT_NE(d.find("IKE profile 'to-gw2' (test.yaml:2): IKEv2, psk: set (20 bytes)"), std::string::npos) << d;
  EXPECT_NE(d.find("identities: local (our address), remote gw2.example.org; peer 198.51.100.1"), std::string::npos)
      << d;
  EXPECT_NE(d.find("IKE proposals: aes256-sha384-prfsha384-ecp384"), std::string::npos) << d;
  EXPECT_NE(d.find("ESP proposals: aes128gcm16-ecp256-noesn"), std::string::npos) << d;
  EXPECT_NE(d.find("IKE SA 8h, CHILD_SA 1h30m or 2GB; pfs ecp256; dpd 30s; soft association 5m"), std::string::npos)
      << d;
}

// ---- negotiate policies -----------------------------------------------------------

const char* const kProfile[] = {
    "ike_profiles:",
    "  - name: gw",
    "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
    "    peer: 198.51.100.1",
    "  - name: anyone",
    "    auth: { method: psk, psk: \"0123456789abcdef0123\" }",
    "    ah_proposals: [sha256]",
    "policies:",
};

std::string with_profiles(std::initializer_list<const char*> policy) {
  std::string s;
  for (const char* l : kProfile) s += std::string(l) + "\n";
  for (const char* l : policy) s += std::string(l) + "\n";
  return s;
}

TEST(NegotiatePolicy, InboundModesAndPeers) {
  const Config c = parse(with_profiles({
      "  - name: tunnel-peer-from-profile",  // 9
      "    from: 192.0.2.0/25",
      "    to: 192.0.2.128/25",
      "    action: negotiate",
      "    ike: gw",
      "    ipsec: { mode: tunnel }",
      "    inbound: request",
      "  - name: transport-one-host",
      "    to: 198.51.100.7",
      "    action: negotiate",
      "    ike: anyone",
      "  - name: road-warriors",
      "    to: 198.51.100.0/24",
      "    action: negotiate",
      "    ike: anyone",
      "    ipsec: { protocol: ah }",
      "    inbound: respond",
      "  - name: tunnel-responder",
      "    from: 192.0.2.0/24",
      "    to: 10.0.0.0/8",
      "    action: negotiate",
      "    ike: anyone",
      "    ipsec: { mode: tunnel }",
      "    inbound: respond",
      "  - name: transport-to-the-peer",
      "    to: 198.51.100.1/32",
      "    action: negotiate",
      "    ike: gw",
  }));
  ASSERT_EQ(c.policies.size(), 5u);
  EXPECT_EQ(c.policies[0].inbound, InboundCleartext::request);
  ASSERT_TRUE(c.policies[0].peer);  // the tunnel ends at the profile's peer
  EXPECT_EQ(c.policies[0].peer->str(), "198.51.100.1");
  EXPECT_EQ(c.policies[1].mode, SaMode::transport);
  EXPECT_EQ(c.policies[1].ipsec, PolicyIpsec::esp);
  EXPECT_EQ(c.policies[1].inbound, InboundCleartext::require);
  EXPECT_EQ(c.policies[2].ipsec, PolicyIpsec::ah);
  EXPECT_EQ(c.policies[2].inbound, InboundCleartext::respond);
  EXPECT_FALSE(c.policies[3].peer);  // learned from whoever negotiates
  EXPECT_TRUE(c.warnings.empty());   // both profiles are used
}

// The SPD shows what each negotiate entry does, in each sense.
TEST(NegotiatePolicy, SpdDescribesNegotiateEntries) {
  const Config c = parse(std::string("interfaces: { local: [203.0.113.1] }\n") + with_profiles({
                                                                                     "  - name: s2s",
                                                                                     "    from: 192.0.2.0/25",
                                                                                     "    to: 192.0.2.128/25",
                                                                                     "    mirrored: true",
                                                                                     "    action: negotiate",
                                                                                     "    ike: gw",
                                                                                     "    ipsec: { mode: tunnel }",
                                                                                     "    inbound: request",
                                                                                 }));
  // Profile 'anyone' is named by no policy.
  EXPECT_TRUE(has_warning(c, "test.yaml:6: IKE profile 'anyone' is not named by any negotiate policy"));
  const Spd spd(c, LocalAddresses::for_config(c));
  const std::string d = spd.describe();
  EXPECT_NE(d.find("negotiate esp tunnel peer 198.51.100.1; IKE profile gw"), std::string::npos) << d;
  EXPECT_NE(d.find("cleartext: request"), std::string::npos) << d;
}

// ---- refusals, each with file:line:field ----------------------------------------------

TEST(IkeProfileRefusal, Auth) {
  auto profile = [](const char* auth) {
    return std::string("ike_profiles:\n  - name: p\n") + auth;  // the auth lines start at line 3
  };
  expect_refused(profile("    auth: { method: psk, psk: \"0123456789abcdef0123\", cert: gw.pem }\n"),
                 {3, "ike_profiles[0].auth.cert", "cert belongs to method: cert"});
  expect_refused(profile("    auth: { method: cert, psk: x, cert: a, key: b, ca: c }\n"),
                 {3, "ike_profiles[0].auth.psk", "psk belongs to method: psk"});
  expect_refused(profile("    auth: { method: psk }\n"), {3, "ike_profiles[0].auth.psk", "needs psk"});
  expect_refused(profile("    auth: { method: psk, psk: abc, psk_file: x }\n"),
                 {3, "ike_profiles[0].auth.psk_file", "either psk or psk_file"});
  expect_refused(profile("    auth: { psk: abc }\n"), {3, "ike_profiles[0].auth.method", "needs a method"});
  expect_refused(profile("    auth: { method: kerberos }\n"), {3, "ike_profiles[0].auth.method", "not psk or cert"});
  expect_refused(profile("    auth: { method: psk, psk: \"\" }\n"), {3, "ike_profiles[0].auth.psk", "empty"});
  expect_refused(profile("    auth: { method: psk, psk: 0xZZ00 }\n"), {3, "ike_profiles[0].auth.psk", "not hex"});
  expect_refused(profile("    auth: { method: psk, psk_file: missing.psk }\n"),
                 {3, "ike_profiles[0].auth.psk_file", "missing.psk"});
  expect_refused(profile("    auth: psk\n"), {3, "ike_profiles[0].auth", "mapping"});
  expect_refused(profile("    auth: { method: psk, psk: abc, pin: 1 }\n"),
                 {3, "ike_profiles[0].auth.pin", "unknown setting"});
  expect_refused("ike_profiles:\n  - name: p\n    peer: any\n", {2, "ike_profiles[0].auth", "needs auth"});
}

TEST(IkeProfileRefusal, CertificateFiles) {
  const auto dir = temp_dir();
  const auto rw = fs::perms::owner_read | fs::perms::owner_write;
  write_file(dir / "c.pem", "x", rw);
  write_file(dir / "k.pem", "x", rw);
  fs::create_directories(dir / "a-directory");
  auto profile = [](const char* auth) { return std::string("ike_profiles:\n  - name: p\n") + auth; };
  expect_refused(profile("    auth: { method: cert, cert: c.pem, ca: c.pem }\n"),
                 {3, "ike_profiles[0].auth.key", "needs key"});
  expect_refused(profile("    auth: { method: cert, key: k.pem, ca: c.pem }\n"),
                 {3, "ike_profiles[0].auth.cert", "needs cert"});
  expect_refused(profile("    auth: { method: cert, cert: c.pem, key: k.pem }\n"),
                 {3, "ike_profiles[0].auth.ca", "needs ca"});
  expect_refused(profile("    auth: { method: cert, cert: nope.pem, key: k.pem, ca: c.pem }\n"),
                 {3, "ike_profiles[0].auth.cert", "nope.pem"});
  expect_refused(profile("    auth: { method: cert, cert: c.pem, key: k.pem, ca: [c.pem, a-directory] }\n"),
                 {3, "ike_profiles[0].auth.ca[1]", "is a directory, not a file"});
}

TEST(IkeProfileRefusal, ProfileSettings) {
  auto profile = [](const char* extra) {
    return std::string("ike_profiles:\n  - name: p\n    auth: { method: psk, psk: \"0123456789abcdef0123\" }\n") +
           extra;  // `extra` starts at line 4
  };
  expect_refused(profile("    version: 1\n"), {4, "ike_profiles[0].version", "IKEv1 is not built yet"});
  expect_refused(profile("    version: 3\n"), {4, "ike_profiles[0].version", "must be 2"});
  expect_refused(profile("    local_id: any\n"), {4, "ike_profiles[0].local_id", "cannot be any"});
  expect_refused(profile("    remote_id: \"not an id!\"\n"), {4, "ike_profiles[0].remote_id", "not an address"});
  expect_refused(profile("    remote_id: \"CN\"\n    local_id: \"C=CH, XX=y\"\n"),
                 {5, "ike_profiles[0].local_id", "not a distinguished name"});
  expect_refused(profile("    peer: gw2.example.org\n"), {4, "ike_profiles[0].peer", ""});
  expect_refused(profile("    lifetime: { ike: 8x }\n"), {4, "ike_profiles[0].lifetime.ike", "not a duration"});
  expect_refused(profile("    lifetime: { child: 5s }\n"), {4, "ike_profiles[0].lifetime.child", "minimum"});
  expect_refused(profile("    lifetime: { child_bytes: lots }\n"),
                 {4, "ike_profiles[0].lifetime.child_bytes", "not a count"});
  expect_refused(profile("    lifetime: { rekey: 1h }\n"), {4, "ike_profiles[0].lifetime.rekey", "unknown setting"});
  expect_refused(profile("    lifetime: 8h\n"), {4, "ike_profiles[0].lifetime", "mapping"});
  expect_refused(profile("    dpd: often\n"), {4, "ike_profiles[0].dpd", "not a duration"});
  expect_refused(profile("    soft_timeout: 0\n"), {4, "ike_profiles[0].soft_timeout", "minimum"});
  expect_refused(profile("    pfs: modp768\n"), {4, "ike_profiles[0].pfs", "not none or a DH group"});
  expect_refused(profile("    esp_proposals: [aes128-sha256-ecp256]\n    pfs: curve25519\n"),
                 {5, "ike_profiles[0].pfs", "not among the groups"});
  expect_refused(profile("    mode: main\n"), {4, "ike_profiles[0].mode", "unknown setting"});
  expect_refused("ike_profiles:\n  - auth: { method: psk, psk: abc }\n", {2, "ike_profiles[0].name", "needs a name"});
  expect_refused("ike_profiles: { name: p }\n", {1, "ike_profiles", "list"});
  expect_refused(std::string("ike_profiles:\n") + "  - name: p\n    auth: { method: psk, psk: abc }\n" +
                     "  - name: p\n    auth: { method: psk, psk: abc }\n",
                 {4, "ike_profiles[1].name", "already used at test.yaml:2"});
}

TEST(IkeProfileRefusal, Proposals) {
  auto profile = [](const char* extra) {
    return std::string("ike_profiles:\n  - name: p\n    auth: { method: psk, psk: \"0123456789abcdef0123\" }\n") +
           extra;
  };
  expect_refused(profile("    proposals: [aes256-sha384-ecp384, aes256-sha384-ecp521]\n"),
                 {4, "ike_profiles[0].proposals[1]", "'ecp521' in 'aes256-sha384-ecp521' is not an algorithm"});
  expect_refused(profile("    proposals: aes256-sha384-ecp384,aes128-sha256-modp1536\n"),
                 {4, "ike_profiles[0].proposals", "'modp1536'"});
  expect_refused(profile("    proposals: \"aes256-sha384-ecp384,,aes128-sha256-ecp256\"\n"),
                 {4, "ike_profiles[0].proposals", "empty entry"});
  expect_refused(profile("    proposals: [aes256-sha384]\n"), {4, "ike_profiles[0].proposals[0]", "no DH group"});
  expect_refused(profile("    proposals: [aes128gcm16-ecp256]\n"), {4, "ike_profiles[0].proposals[0]", "no PRF"});
  expect_refused(profile("    proposals: [aes128-ecp256]\n"), {4, "ike_profiles[0].proposals[0]", "no PRF"});
  expect_refused(profile("    proposals: [aes128-prfsha256-ecp256]\n"),
                 {4, "ike_profiles[0].proposals[0]", "no integrity algorithm"});
  expect_refused(profile("    proposals: [sha256-ecp256]\n"), {4, "ike_profiles[0].proposals[0]", "no encryption"});
  expect_refused(profile("    proposals: [aes128-aes128gcm16-sha256-ecp256]\n"),
                 {4, "ike_profiles[0].proposals[0]", "mixes AEAD and classic"});
  expect_refused(profile("    proposals: [aes128ctr-sha256-ecp256]\n"),
                 {4, "ike_profiles[0].proposals[0]", "not offered for IKE SAs"});
  expect_refused(profile("    proposals: [aes128-sha256-ecp256-esn]\n"),
                 {4, "ike_profiles[0].proposals[0]", "extended sequence numbers"});
  expect_refused(profile("    proposals: [aes128--sha256-ecp256]\n"), {4, "ike_profiles[0].proposals[0]", "empty"});
  expect_refused(profile("    proposals: []\n"), {4, "ike_profiles[0].proposals", "empty"});
  expect_refused(profile("    esp_proposals: [aes128-sha256, camellia128-sha256]\n"),
                 {4, "ike_profiles[0].esp_proposals[1]", "'camellia128'"});
  expect_refused(profile("    esp_proposals: [sha256]\n"),
                 {4, "ike_profiles[0].esp_proposals[0]", "no encryption algorithm"});
  expect_refused(profile("    esp_proposals: [aes128gcm16-aes128-sha256]\n"),
                 {4, "ike_profiles[0].esp_proposals[0]", "mixes AEAD and classic"});
  expect_refused(profile("    ah_proposals: [aes128-sha256]\n"),
                 {4, "ike_profiles[0].ah_proposals[0]", "AH does not encrypt"});
  expect_refused(profile("    ah_proposals: [ecp256]\n"), {4, "ike_profiles[0].ah_proposals[0]", "no integrity"});
}

TEST(NegotiatePolicyRefusal, PolicyAndProfile) {
  // Policies start at line 9 (kProfile has 8 lines).
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: negotiate", "    ike: nope"}),
                 {11, "policies[0].ike", "no IKE profile is named 'nope' (ike_profiles: gw, anyone)"});
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: negotiate"}),
                 {9, "policies[0].ike", "names its IKE profile"});
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: permit", "    ike: gw"}),
                 {11, "policies[0].ike", "only a negotiate policy"});
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: negotiate", "    ike: gw", "    sas: [a, b]"}),
                 {12, "policies[0].sas", "gets its SAs from IKE"});
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: negotiate", "    ike: gw",
                                "    ipsec: { protocol: ah+esp }"}),
                 {12, "policies[0].ipsec.protocol", "one protocol per CHILD_SA"});
  expect_refused(
      with_profiles({"  - to: 198.51.100.1", "    action: negotiate", "    ike: gw", "    ipsec: { protocol: ah }"}),
      {11, "policies[0].ike", "has no ah_proposals"});
  // Transport: the IKE peer is the host the traffic goes to.
  expect_refused(with_profiles({"  - to: 198.51.100.0/24", "    action: negotiate", "    ike: anyone"}),
                 {9, "policies[0].to", "with inbound: require negotiates with the host it talks to"});
  expect_refused(
      with_profiles({"  - to: 198.51.100.0/24", "    action: negotiate", "    ike: anyone", "    inbound: request"}),
      {9, "policies[0].to", "with inbound: request"});
  expect_refused(with_profiles({"  - to: 198.51.100.9", "    action: negotiate", "    ike: gw"}),
                 {9, "policies[0].to", "transport mode protects only traffic with the IKE peer 198.51.100.1 itself"});
  expect_refused(with_profiles({"  - to: 198.51.100.0/24", "    action: negotiate", "    ike: gw"}),
                 {9, "policies[0].to", "`to` must be that address (it is 198.51.100.0/24)"});
  expect_refused(with_profiles({"  - name: all", "    action: negotiate", "    ike: gw", "    inbound: respond"}),
                 {9, "policies[0].to", "(it is any)"});
  // Tunnel: one endpoint, agreed between the policy and the profile.
  expect_refused(with_profiles({"  - to: 192.0.2.128/25", "    action: negotiate", "    ike: anyone",
                                "    ipsec: { mode: tunnel }"}),
                 {12, "policies[0].ipsec.peer", "starts negotiations and needs the remote tunnel endpoint"});
  expect_refused(with_profiles({"  - to: 192.0.2.128/25", "    action: negotiate", "    ike: gw",
                                "    ipsec: { mode: tunnel, peer: 198.51.100.2 }"}),
                 {12, "policies[0].ipsec.peer", "the tunnel ends at 198.51.100.2 but IKE profile 'gw'"});
  expect_refused(
      with_profiles({"  - to: 198.51.100.1", "    action: negotiate", "    ike: gw", "    inbound: sometimes"}),
      {12, "policies[0].inbound", ""});
  expect_refused(with_profiles({"  - to: 198.51.100.1", "    action: haggle"}),
                 {10, "policies[0].action", "not permit, block, protect or negotiate"});
}

}  // namespace
}  // namespace ipsentry::filters
