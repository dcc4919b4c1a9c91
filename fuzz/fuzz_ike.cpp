// IKE messages: any bytes after an IPv4/UDP 500 header go through the
// dissector's tree, the payload walker and the analyzer (with IKEv1 and
// IKEv2 keys that are tried on every encrypted message), in sequences of
// up to four messages so that state carries from one to the next.
#include <cstdint>
#include <cstring>
#include <vector>

#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/tree.hpp"
#include "ipsentry/ike/analyzer.hpp"

namespace {

std::vector<ipsentry::filters::IkeSaConfig> keys() {
  using namespace ipsentry::filters;
  std::vector<IkeSaConfig> k(2);
  const std::vector<std::uint8_t> key16(16, 0x11);
  const std::vector<std::uint8_t> key20(20, 0x22);
  k[0].version = 2;
  k[0].sk_ei = SecretBytes(key16);
  k[0].sk_er = SecretBytes(key16);
  k[0].sk_ai = SecretBytes(key20);
  k[0].sk_ar = SecretBytes(key20);
  k[0].sk_d = SecretBytes(key20);
  k[0].name = "v2";
  k[1].version = 1;
  k[1].enc_key = SecretBytes(key16);
  k[1].sk_d = SecretBytes(key20);
  k[1].prf = Prf::hmac_sha1;
  k[1].name = "v1";
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsentry;
  if (size > 8192) return 0;
  ike::Analyzer analyzer(keys());
  // Messages are separated by the 4-byte marker "IKE!".
  std::size_t start = 0;
  std::uint64_t number = 0;
  while (start <= size && number < 4) {
    std::size_t end = start;
    while (end + 4 <= size && std::memcmp(data + end, "IKE!", 4) != 0) ++end;
    if (end + 4 > size) end = size;
    const std::size_t len = end - start;
    std::vector<std::uint8_t> pkt(28 + len);
    const std::uint16_t total = static_cast<std::uint16_t>(pkt.size());
    const std::uint8_t ip[20] = {0x45, 0, static_cast<std::uint8_t>(total >> 8), static_cast<std::uint8_t>(total), 0, 1,
                                 0, 0, 64, 17, 0, 0, 192, 0, 2, static_cast<std::uint8_t>(1 + (number & 1)), 192, 0,
                                 2, static_cast<std::uint8_t>(2 - (number & 1))};
    std::memcpy(pkt.data(), ip, 20);
    const std::uint16_t ulen = static_cast<std::uint16_t>(8 + len);
    const std::uint8_t udp[8] = {0x01, 0xf4, 0x01, 0xf4, static_cast<std::uint8_t>(ulen >> 8),
                                 static_cast<std::uint8_t>(ulen), 0, 0};
    std::memcpy(pkt.data() + 20, udp, 8);
    if (len != 0) std::memcpy(pkt.data() + 28, data + start, len);
    dissect::Frame f;
    f.number = ++number;
    f.linktype = static_cast<std::uint32_t>(dissect::LinkType::raw);
    f.orig_len = total;
    f.data = pkt;
    dissect::Packet p;
    dissect::dissect_frame(f, p);
    analyzer.observe(f, p);
    dissect::Tree tree;
    dissect::build_frame_tree(f, p, tree);
    analyzer.add_decrypted(f.number, tree);
    (void)dissect::render_tree(tree.root);
    start = end + 4;
  }
  analyzer.finish();
  (void)analyzer.learned_sas();
  return 0;
}
