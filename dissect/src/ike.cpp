#include "ipsentry/dissect/ike.hpp"

#include <fmt/format.h>

#include "ipsentry/dissect/ip_address.hpp"

namespace ipsentry::dissect::ike {

namespace {

// A message cannot hold more payloads than this in 64 KiB; stopping here
// also bounds hostile chains of empty payloads.
constexpr std::size_t kMaxPayloads = 512;

std::string name_or(const char* name, std::uint32_t value) {
  return name != nullptr ? fmt::format("{} ({})", name, value) : fmt::format("unknown ({})", value);
}

std::string printable(Bytes b, std::size_t max = 128) {
  std::string s;
  for (std::size_t i = 0; i < b.size() && i < max; ++i) {
    const char c = static_cast<char>(b[i]);
    s += (c >= 0x20 && c < 0x7f) ? c : '.';
  }
  if (b.size() > max) s += "…";
  return s;
}

bool parse_attributes(Reader r, std::vector<Attribute>& out) {
  while (!r.empty()) {
    std::uint16_t t = 0;
    std::uint16_t v = 0;
    if (!r.be16(t) || !r.be16(v)) return false;
    Attribute a;
    a.type = t & 0x7fff;
    if ((t & 0x8000) != 0) {
      a.tv = true;
      a.value = v;
    } else {
      if (!r.bytes(v, a.data)) return false;
      for (std::size_t i = 0; i < a.data.size() && i < 4; ++i) a.value = (a.value << 8) | a.data[i];
    }
    out.push_back(a);
    if (out.size() > 256) return false;
  }
  return true;
}

}  // namespace

const char* parse_header(Bytes msg, Header& out) noexcept {
  Reader r(msg);
  std::uint8_t ver = 0;
  if (!r.be64(out.spi_i) || !r.be64(out.spi_r) || !r.u8(out.next_payload) || !r.u8(ver) || !r.u8(out.exchange) ||
      !r.u8(out.flags) || !r.be32(out.message_id) || !r.be32(out.length)) {
    return "ISAKMP header truncated";
  }
  out.major = ver >> 4;
  out.minor = ver & 0x0f;
  if (out.major != 1 && out.major != 2) return "ISAKMP major version is neither 1 nor 2";
  if (out.length < kHeaderLen) return "ISAKMP length is shorter than its header";
  return nullptr;
}

Chain walk(Bytes chain, std::uint8_t first) {
  Chain c;
  Reader r(chain);
  std::uint8_t type = first;
  std::uint32_t offset = 0;
  while (type != pt::none) {
    if (c.payloads.size() >= kMaxPayloads) {
      c.error = "too many payloads";
      break;
    }
    Payload p;
    p.type = type;
    p.offset = offset;
    std::uint8_t flags = 0;
    std::uint16_t len = 0;
    if (!r.u8(p.next) || !r.u8(flags) || !r.be16(len)) {
      c.error = "payload header truncated";
      break;
    }
    p.critical = (flags & 0x80) != 0;
    if (len < 4) {
      c.error = "payload length shorter than its header";
      break;
    }
    if (!r.bytes(len - 4u, p.body)) {
      c.error = "payload length runs past the message";
      break;
    }
    offset += len;
    c.payloads.push_back(p);
    if (type == pt::v2_sk || type == pt::v2_skf) break;
    type = p.next;
  }
  return c;
}

std::optional<std::uint32_t> Transform::attribute(std::uint16_t t) const noexcept {
  for (const auto& a : attributes) {
    if (a.type == t) return a.value;
  }
  return std::nullopt;
}

SaPayload parse_sa(Bytes body, bool v2, bool strict) {
  SaPayload sa;
  strict = strict && v2;
  Reader r(body);
  if (!v2) {
    if (!r.be32(sa.doi)) {
      sa.error = "SA payload truncated";
      return sa;
    }
    // Only the IPsec DOI (1) has a situation field followed by proposals.
    if (sa.doi != 1) return sa;
    if (!r.be32(sa.situation)) {
      sa.error = "SA payload truncated";
      return sa;
    }
    // Labeled-domain situations carry more fields before the proposals.
    if ((sa.situation & ~1u) != 0) return sa;
  }
  std::uint8_t more = 2;
  while (more != 0) {
    std::uint8_t reserved = 0;
    std::uint16_t len = 0;
    Bytes pbody;
    if (!r.u8(more) || !r.u8(reserved) || !r.be16(len) || len < 8 || !r.bytes(len - 4u, pbody)) {
      sa.error = "proposal runs past the SA payload";
      return sa;
    }
    if (strict && more != 0 && more != 2) {
      sa.error = "proposal substructure is neither last (0) nor more (2)";
      return sa;
    }
    Reader pr(pbody);
    Proposal p;
    std::uint8_t spi_size = 0;
    std::uint8_t ntrans = 0;
    if (!pr.u8(p.number) || !pr.u8(p.protocol) || !pr.u8(spi_size) || !pr.u8(ntrans) || !pr.bytes(spi_size, p.spi)) {
      sa.error = "proposal truncated";
      return sa;
    }
    std::uint8_t tmore = ntrans > 0 ? 3 : 0;
    for (unsigned i = 0; i < ntrans && tmore != 0; ++i) {
      std::uint16_t tlen = 0;
      Bytes tbody;
      if (!pr.u8(tmore) || !pr.u8(reserved) || !pr.be16(tlen) || tlen < 8 || !pr.bytes(tlen - 4u, tbody)) {
        sa.error = "transform runs past the proposal";
        return sa;
      }
      if (strict && (tmore == 0) != (i + 1 == ntrans)) {
        sa.error = "the transforms do not end where the proposal's transform count says";
        return sa;
      }
      if (strict && tmore != 0 && tmore != 3) {
        sa.error = "transform substructure is neither last (0) nor more (3)";
        return sa;
      }
      Reader tr(tbody);
      Transform t;
      std::uint8_t b1 = 0;
      std::uint8_t b2 = 0;
      if (v2) {
        if (!tr.u8(t.type) || !tr.u8(b1) || !tr.be16(t.id)) {
          sa.error = "transform truncated";
          return sa;
        }
      } else {
        std::uint16_t res = 0;
        if (!tr.u8(t.number) || !tr.u8(b2) || !tr.be16(res)) {
          sa.error = "transform truncated";
          return sa;
        }
        t.id = b2;
      }
      if (!parse_attributes(tr, t.attributes)) {
        sa.error = "transform attribute runs past the transform";
        return sa;
      }
      if (strict) {
        // RFC 7296 3.3.5 defines Key Length (14), in TV format, and nothing
        // else; a transform cannot be judged with attributes we cannot read.
        for (const auto& a : t.attributes) {
          if (a.type != 14 || !a.tv) {
            sa.error = "transform attribute other than a Key Length (TV)";
            return sa;
          }
        }
        if (t.attributes.size() > 1) {
          sa.error = "transform with more than one Key Length";
          return sa;
        }
      }
      p.transforms.push_back(std::move(t));
    }
    if (strict && !pr.empty()) {
      sa.error = "bytes left over after the proposal's transforms";
      return sa;
    }
    sa.proposals.push_back(std::move(p));
    if (sa.proposals.size() > 64) {
      sa.error = "too many proposals";
      return sa;
    }
  }
  if (strict && !r.empty()) sa.error = "bytes left over after the last proposal";
  return sa;
}

std::optional<Notify> parse_notify(Bytes body, bool v2) noexcept {
  Reader r(body);
  Notify n;
  std::uint8_t spi_size = 0;
  if (!v2) {
    std::uint32_t doi = 0;
    if (!r.be32(doi)) return std::nullopt;
  }
  if (!r.u8(n.protocol) || !r.u8(spi_size) || !r.be16(n.type) || !r.bytes(spi_size, n.spi)) return std::nullopt;
  n.data = r.rest();
  return n;
}

std::string TrafficSelector::str() const {
  std::string out;
  auto addr = [](Bytes b) -> std::string {
    if (b.size() == 4) return IpAddr::v4(b.data()).str();
    if (b.size() == 16) return IpAddr::v6(b.data()).str();
    return "?";
  };
  // Print a range as a prefix when it is one.
  const Bytes s = start;
  const Bytes e = end;
  int prefix = -1;
  if (s.size() == e.size() && !s.empty()) {
    std::size_t bits = 0;
    bool ok = true;
    bool in_host = false;
    for (std::size_t i = 0; i < s.size() && ok; ++i) {
      for (int b = 7; b >= 0; --b) {
        const bool sb = ((s[i] >> b) & 1) != 0;
        const bool eb = ((e[i] >> b) & 1) != 0;
        if (!in_host && sb == eb) {
          ++bits;
        } else {
          in_host = true;
          if (sb || !eb) ok = false;
        }
      }
    }
    if (ok) prefix = static_cast<int>(bits);
  }
  if (prefix >= 0) {
    out = fmt::format("{}/{}", addr(s), prefix);
  } else {
    out = fmt::format("{}-{}", addr(s), addr(e));
  }
  if (protocol != 0) {
    const char* pn = ip_protocol_name(protocol);
    out += pn != nullptr ? fmt::format("[{}", pn) : fmt::format("[proto {}", protocol);
    if (start_port == 0 && end_port == 65535) {
      out += "]";
    } else if (start_port == end_port) {
      out += fmt::format("/{}]", start_port);
    } else {
      out += fmt::format("/{}-{}]", start_port, end_port);
    }
  } else if (!(start_port == 0 && end_port == 65535)) {
    out += fmt::format("[ports {}-{}]", start_port, end_port);
  }
  return out;
}

std::optional<std::vector<TrafficSelector>> parse_ts(Bytes body, bool strict) {
  Reader r(body);
  std::uint8_t count = 0;
  if (!r.u8(count) || !r.skip(3)) return std::nullopt;
  std::vector<TrafficSelector> out;
  for (unsigned i = 0; i < count; ++i) {
    TrafficSelector ts;
    std::uint16_t len = 0;
    Bytes rest;
    if (!r.u8(ts.type) || !r.u8(ts.protocol) || !r.be16(len) || len < 8 || !r.bytes(len - 4u, rest)) {
      return std::nullopt;
    }
    Reader tr(rest);
    if (!tr.be16(ts.start_port) || !tr.be16(ts.end_port)) return std::nullopt;
    const std::size_t alen = ts.type == 7 ? 4 : ts.type == 8 ? 16 : 0;
    if (alen != 0 && (!tr.bytes(alen, ts.start) || !tr.bytes(alen, ts.end))) return std::nullopt;
    if (strict && (alen == 0 || !tr.empty())) return std::nullopt;
    out.push_back(ts);
  }
  if (strict && !r.empty()) return std::nullopt;
  return out;
}

std::string v2_transform_str(const Transform& t) {
  const char* n = v2_transform_id_name(t.type, t.id);
  std::string s =
      n != nullptr ? n
                   : fmt::format("{}-{}", v2_transform_type_name(t.type) ? v2_transform_type_name(t.type) : "T", t.id);
  if (auto kl = t.attribute(14)) s += fmt::format("-{}", *kl);
  return s;
}

std::string proposal_str(const Proposal& p, bool v2) {
  std::string s;
  auto sep = [&] {
    if (!s.empty()) s += '/';
  };
  if (v2) {
    for (const auto& t : p.transforms) {
      sep();
      s += v2_transform_str(t);
    }
    const char* proto = protocol_id_name(p.protocol);
    return p.protocol == 1 ? s : fmt::format("{}:{}", proto != nullptr ? proto : "?", s);
  }
  // IKEv1: the first transform is the one a responder chose (it answers
  // with exactly one); for an offer, show the first.
  if (p.transforms.empty()) return "(no transform)";
  const Transform& t = p.transforms.front();
  const bool phase2 = p.protocol != 1;
  if (phase2) {
    const char* id = v1_transform_id_name(p.protocol, t.id);
    s = fmt::format("{} {}", protocol_id_name(p.protocol) ? protocol_id_name(p.protocol) : "?",
                    id != nullptr ? id : fmt::format("id-{}", t.id));
    if (auto kl = t.attribute(6)) s += fmt::format("-{}", *kl);
    if (auto a = t.attribute(5)) {
      const char* an = v1_attribute_value_name(true, 5, *a);
      s += fmt::format("/{}", an != nullptr ? an : "?");
    }
    if (auto m = t.attribute(4)) {
      const char* mn = v1_attribute_value_name(true, 4, *m);
      s += fmt::format(" {}", mn != nullptr ? mn : "?");
    }
    if (auto g = t.attribute(3)) {
      const char* gn = dh_group_name(static_cast<std::uint16_t>(*g));
      s += fmt::format(" PFS {}", gn != nullptr ? gn : "?");
    }
    return s;
  }
  auto val = [&](std::uint16_t type) -> std::string {
    auto v = t.attribute(type);
    if (!v) return "?";
    const char* n = v1_attribute_value_name(false, type, *v);
    return n != nullptr ? n : fmt::format("{}", *v);
  };
  s = val(1);
  if (auto kl = t.attribute(14)) s += fmt::format("-{}", *kl);
  s += "/" + val(2) + "/" + val(3) + "/" + val(4);
  return s;
}

std::string id_str(bool v2, std::uint8_t type, Bytes d) {
  auto addr = [&](std::size_t off, std::size_t len) -> std::string {
    if (d.size() < off + len) return "(truncated)";
    return len == 4 ? IpAddr::v4(d.data() + off).str() : IpAddr::v6(d.data() + off).str();
  };
  auto mask_len = [&](std::size_t off, std::size_t len) -> int {
    if (d.size() < off + len) return -1;
    int bits = 0;
    for (std::size_t i = 0; i < len; ++i) bits += __builtin_popcount(d[off + i]);
    return bits;
  };
  switch (type) {
    case 1: return addr(0, 4);
    case 5: return addr(0, 16);
    case 2:
    case 3: return printable(d);
    case 4:
      if (!v2) return fmt::format("{}/{}", addr(0, 4), mask_len(4, 4));
      break;
    case 6:
      if (!v2) return fmt::format("{}/{}", addr(0, 16), mask_len(16, 16));
      break;
    case 7:
      if (!v2) return fmt::format("{}-{}", addr(0, 4), addr(4, 4));
      break;
    case 8:
      if (!v2) return fmt::format("{}-{}", addr(0, 16), addr(16, 16));
      break;
    case 9: {
      // Show the printable strings of the DER name (CN, O, ...), which is
      // what a user recognises; the hex is in the tree's bytes.
      std::string s;
      std::size_t i = 0;
      while (i + 2 <= d.size()) {
        const std::uint8_t tag = d[i];
        const std::uint8_t l = d[i + 1];
        if ((tag == 0x0c || tag == 0x13 || tag == 0x16 || tag == 0x14) && l < 0x80 && i + 2 + l <= d.size()) {
          if (!s.empty()) s += ", ";
          s += printable(d.subspan(i + 2, l));
          i += 2 + l;
        } else {
          ++i;
        }
      }
      return s.empty() ? hex_string(d) : s;
    }
    case 13: return "(null)";
    default: break;
  }
  return hex_string(d);
}

std::string chain_summary(const Chain& chain, bool v2) {
  std::string s;
  for (const auto& p : chain.payloads) {
    if (!s.empty()) s += ' ';
    const char* a = payload_abbrev(p.type);
    s += a != nullptr ? a : fmt::format("pay{}", p.type);
    if (p.type == pt::v1_notify || p.type == pt::v2_notify) {
      if (auto n = parse_notify(p.body, v2)) s += "(" + notify_str(v2, n->type) + ")";
    }
  }
  if (chain.error != nullptr) s += fmt::format(" [{}]", chain.error);
  return s;
}

namespace {

void add_attributes(const std::vector<Attribute>& attrs, bool v2, bool phase2, Node& t) {
  for (const auto& a : attrs) {
    std::string name;
    if (v2) {
      name = a.type == 14 ? "Key Length" : fmt::format("attribute {}", a.type);
    } else {
      const char* n = v1_attribute_name(phase2, a.type);
      name = n != nullptr ? n : fmt::format("attribute {}", a.type);
    }
    std::string value;
    if (a.tv || a.data.size() <= 4) {
      const char* vn = v2 ? nullptr : v1_attribute_value_name(phase2, a.type, a.value);
      value = vn != nullptr ? fmt::format("{} ({})", vn, a.value) : fmt::format("{}", a.value);
    } else {
      value = hex_string(a.data);
    }
    t.add_here(fmt::format("{}: {}", name, value), t.offset, 0);
  }
}

void add_sa(const Payload& p, bool v2, std::uint32_t body_off, Node& n) {
  SaPayload sa = parse_sa(p.body, v2);
  if (!v2) {
    n.add_here(fmt::format("Domain of Interpretation: {}", sa.doi == 1 ? "IPsec (1)" : fmt::format("{}", sa.doi)),
               body_off, 4);
    if (sa.doi == 1) n.add_here(fmt::format("Situation: 0x{:08x}", sa.situation), body_off + 4, 4);
  }
  for (const auto& pr : sa.proposals) {
    const bool phase2 = pr.protocol != 1;
    const std::uint32_t poff = body_off + static_cast<std::uint32_t>(pr.spi.data() - p.body.data()) - 8;
    Node& pn =
        n.add_here(fmt::format("Proposal #{}: {} ({} transform{})", pr.number,
                               name_or(v2 && pr.protocol == 1 ? "IKE" : protocol_id_name(pr.protocol), pr.protocol),
                               pr.transforms.size(), pr.transforms.size() == 1 ? "" : "s"),
                   poff, 0);
    if (!pr.spi.empty()) {
      pn.add_here(fmt::format("SPI: {}", hex_string(pr.spi)),
                  body_off + static_cast<std::uint32_t>(pr.spi.data() - p.body.data()),
                  static_cast<std::uint32_t>(pr.spi.size()));
    }
    for (const auto& t : pr.transforms) {
      std::string label;
      if (v2) {
        const char* tn = v2_transform_type_name(t.type);
        label = fmt::format("Transform {}: {}", tn != nullptr ? tn : fmt::format("type {}", t.type),
                            name_or(v2_transform_id_name(t.type, t.id), t.id));
      } else {
        label = fmt::format("Transform #{}: {}", t.number, name_or(v1_transform_id_name(pr.protocol, t.id), t.id));
      }
      Node& tn = pn.add_here(label, poff, 0);
      add_attributes(t.attributes, v2, phase2, tn);
    }
  }
  if (sa.error != nullptr) n.add_here(fmt::format("[malformed: {}]", sa.error), body_off, 0);
}

void add_payload(const Payload& p, bool v2, std::uint32_t base, Node& parent) {
  const std::uint32_t off = base + p.offset;
  const std::uint32_t len = static_cast<std::uint32_t>(p.body.size()) + 4;
  const std::uint32_t boff = off + 4;
  const char* pn = payload_name(p.type);
  std::string head = pn != nullptr ? fmt::format("{} payload", pn) : fmt::format("Payload type {}", p.type);
  Node& n = parent.add_here(head, off, len);
  n.add_here(fmt::format("Next payload: {}", name_or(payload_name(p.next), p.next)), off, 1);
  if (v2 && p.critical) n.add_here("Critical bit set", off + 1, 1);
  n.add_here(fmt::format("Payload length: {}", len), off + 2, 2);
  const Bytes b = p.body;
  const auto blen = static_cast<std::uint32_t>(b.size());
  switch (p.type) {
    case pt::v1_sa:
    case pt::v2_sa: add_sa(p, v2, boff, n); break;
    case pt::v1_ke:
    case pt::v2_ke:
      if (v2 && b.size() >= 4) {
        const std::uint16_t g = load_be16(b.data());
        n.text += fmt::format(": {}", name_or(dh_group_name(g), g));
        n.add_here(fmt::format("DH group: {}", name_or(dh_group_name(g), g)), boff, 2);
        n.add_here(fmt::format("Key exchange data ({} bytes): {}", b.size() - 4, hex_string(b.subspan(4), 32)),
                   boff + 4, blen - 4);
      } else {
        n.add_here(fmt::format("Key exchange data ({} bytes): {}", b.size(), hex_string(b, 32)), boff, blen);
      }
      break;
    case pt::v1_id:
    case pt::v2_idi:
    case pt::v2_idr:
    case pt::v1_nat_oa:
    case pt::v1_nat_oa_draft:
      if (b.size() >= 4) {
        const std::uint8_t type = b[0];
        const std::string idtext = id_str(v2 || p.type != pt::v1_id, type, b.subspan(4));
        n.text += fmt::format(": {} {}", name_or(id_type_name(v2, type), type), idtext);
        n.add_here(fmt::format("ID type: {}", name_or(id_type_name(v2, type), type)), boff, 1);
        if (!v2 && p.type == pt::v1_id) {
          const char* proto = ip_protocol_name(b[1]);
          n.add_here(fmt::format("Protocol ID: {}", b[1] == 0 ? "any (0)" : name_or(proto, b[1])), boff + 1, 1);
          n.add_here(fmt::format("Port: {}", load_be16(b.data() + 2)), boff + 2, 2);
        }
        n.add_here(fmt::format("Identification data: {}", idtext), boff + 4, blen - 4);
      }
      break;
    case pt::v1_cert:
    case pt::v2_cert:
    case pt::v1_cr:
    case pt::v2_certreq:
      if (!b.empty()) {
        n.add_here(fmt::format("Encoding: {}", name_or(cert_encoding_name(b[0]), b[0])), boff, 1);
        const std::string strings = id_str(false, 9, b.subspan(1));
        if (b.size() > 1) n.add_here(fmt::format("Data ({} bytes): {}", b.size() - 1, strings), boff + 1, blen - 1);
      }
      break;
    case pt::v1_hash:
    case pt::v1_sig:
    case pt::v1_nat_d:
    case pt::v1_nat_d_draft: n.add_here(fmt::format("Data: {}", hex_string(b)), boff, blen); break;
    case pt::v1_nonce:
    case pt::v2_nonce: n.add_here(fmt::format("Nonce ({} bytes): {}", b.size(), hex_string(b, 64)), boff, blen); break;
    case pt::v2_auth:
      if (b.size() >= 4) {
        n.text += fmt::format(": {}", name_or(v2_auth_method_name(b[0]), b[0]));
        n.add_here(fmt::format("Authentication method: {}", name_or(v2_auth_method_name(b[0]), b[0])), boff, 1);
        n.add_here(fmt::format("Authentication data ({} bytes): {}", b.size() - 4, hex_string(b.subspan(4), 32)),
                   boff + 4, blen - 4);
      }
      break;
    case pt::v1_notify:
    case pt::v2_notify:
      if (auto nt = parse_notify(b, v2)) {
        n.text += fmt::format(": {}", notify_str(v2, nt->type));
        if (!v2) n.add_here("Domain of Interpretation: " + std::to_string(load_be32(b.data())), boff, 4);
        n.add_here(fmt::format("Protocol ID: {}", name_or(protocol_id_name(nt->protocol), nt->protocol)),
                   boff + (v2 ? 0 : 4), 1);
        n.add_here(fmt::format("Notify message type: {} ({})", notify_str(v2, nt->type), nt->type), boff + (v2 ? 2 : 6),
                   2);
        if (!nt->spi.empty()) {
          n.add_here(fmt::format("SPI: {}", hex_string(nt->spi)), boff + (v2 ? 4 : 8),
                     static_cast<std::uint32_t>(nt->spi.size()));
        }
        if (!nt->data.empty()) {
          n.add_here(fmt::format("Notification data: {}", hex_string(nt->data)),
                     boff + static_cast<std::uint32_t>(nt->data.data() - b.data()),
                     static_cast<std::uint32_t>(nt->data.size()));
        }
      } else {
        n.add_here("[malformed: notification truncated]", boff, blen);
      }
      break;
    case pt::v1_delete:
    case pt::v2_delete: {
      Reader r(b);
      std::uint32_t doi = 0;
      std::uint8_t proto = 0;
      std::uint8_t spi_size = 0;
      std::uint16_t count = 0;
      if ((!v2 && !r.be32(doi)) || !r.u8(proto) || !r.u8(spi_size) || !r.be16(count)) {
        n.add_here("[malformed: delete truncated]", boff, blen);
        break;
      }
      n.text += fmt::format(": {} {} SPI{}", protocol_id_name(proto) ? protocol_id_name(proto) : "?", count,
                            count == 1 ? "" : "s");
      for (unsigned i = 0; i < count; ++i) {
        Bytes spi;
        if (!r.bytes(spi_size, spi)) {
          n.add_here("[malformed: SPI list runs past the payload]", boff, blen);
          break;
        }
        if (!spi.empty()) {
          n.add_here(fmt::format("SPI: {}", hex_string(spi)), boff + static_cast<std::uint32_t>(spi.data() - b.data()),
                     spi_size);
        }
        if (i > 64) break;
      }
      break;
    }
    case pt::v1_vid:
    case pt::v2_vid: {
      auto name = vendor_id_name(b);
      if (name) n.text += ": " + *name;
      n.add_here(fmt::format("Vendor ID: {}{}", hex_string(b), name ? " (" + *name + ")" : ""), boff, blen);
      break;
    }
    case pt::v2_tsi:
    case pt::v2_tsr:
      if (auto ts = parse_ts(b)) {
        std::string all;
        for (const auto& t : *ts) {
          n.add_here(fmt::format("Traffic selector: {}", t.str()),
                     boff + static_cast<std::uint32_t>(t.start.empty() ? 4 : t.start.data() - b.data() - 8), 0);
          all += (all.empty() ? "" : " ") + t.str();
        }
        n.text += ": " + all;
      } else {
        n.add_here("[malformed: traffic selector truncated]", boff, blen);
      }
      break;
    case pt::v2_cp:
    case pt::v1_attr: {
      Reader r(b);
      std::uint8_t cfg = 0;
      if (!r.u8(cfg) || !r.skip(3)) break;
      static constexpr const char* kCfg[] = {"?", "REQUEST", "REPLY", "SET", "ACK"};
      n.text += fmt::format(": {}", cfg <= 4 ? kCfg[cfg] : "?");
      std::vector<Attribute> attrs;
      if (!parse_attributes(r, attrs)) {
        n.add_here("[malformed: attribute runs past the payload]", boff, blen);
        break;
      }
      for (const auto& a : attrs) {
        std::string value = a.tv ? std::to_string(a.value)
                            : (a.data.size() == 4 || a.data.size() == 8) && p.type == pt::v2_cp
                                ? IpAddr::v4(a.data.data()).str()
                                : hex_string(a.data);
        const char* xn = p.type == pt::v1_attr ? v1_attribute_name(true, a.type) : nullptr;
        n.add_here(fmt::format("Attribute {}: {}", xn != nullptr ? xn : std::to_string(a.type),
                               a.data.empty() && !a.tv ? "(empty)" : value),
                   boff, 0);
      }
      break;
    }
    case pt::v2_eap:
      if (b.size() >= 4) {
        static constexpr const char* kCode[] = {"?", "Request", "Response", "Success", "Failure"};
        const std::uint8_t code = b[0];
        n.text += fmt::format(": {}", code <= 4 ? kCode[code] : "?");
        n.add_here(fmt::format("Code: {} ({}), identifier {}, length {}", code <= 4 ? kCode[code] : "?", code, b[1],
                               load_be16(b.data() + 2)),
                   boff, 4);
        if (b.size() > 4) n.add_here(fmt::format("Type: {}", b[4]), boff + 4, 1);
      }
      break;
    case pt::v2_sk:
      n.add_here(fmt::format("Encrypted data ({} bytes, IV + ciphertext + ICV)", b.size()), boff, blen);
      break;
    case pt::v2_skf:
      if (b.size() >= 4) {
        n.text += fmt::format(": fragment {} of {}", load_be16(b.data()), load_be16(b.data() + 2));
        n.add_here(fmt::format("Fragment number: {}", load_be16(b.data())), boff, 2);
        n.add_here(fmt::format("Total fragments: {}", load_be16(b.data() + 2)), boff + 2, 2);
        n.add_here(fmt::format("Encrypted data ({} bytes)", b.size() - 4), boff + 4, blen - 4);
      }
      break;
    case pt::v1_frag:
      if (b.size() >= 4) {
        n.add_here(fmt::format("Fragment ID {}, number {}, flags 0x{:02x}", load_be16(b.data()), b[2], b[3]), boff, 4);
      }
      break;
    default:
      if (!b.empty()) n.add_here(fmt::format("Data: {}", hex_string(b)), boff, blen);
      break;
  }
}

}  // namespace

void add_chain(Bytes chain, std::uint8_t first, bool v2, std::uint32_t base, Node& parent) {
  Chain c = walk(chain, first);
  for (const auto& p : c.payloads) add_payload(p, v2, base, parent);
  if (c.error != nullptr) parent.add_here(fmt::format("[malformed: {}]", c.error), base, 0);
}

void add_message(Bytes msg, std::uint32_t base, Node& parent) {
  Header h;
  const char* err = parse_header(msg, h);
  if (err != nullptr) {
    parent.add_here(fmt::format("ISAKMP [malformed: {}]", err), base, static_cast<std::uint32_t>(msg.size()));
    return;
  }
  const bool v2 = h.v2();
  const char* ex = exchange_name(h.exchange);
  std::string title =
      v2 ? fmt::format("IKEv2 {} {}", ex != nullptr ? ex : "exchange", h.response_v2() ? "response" : "request")
         : fmt::format("ISAKMP (IKEv1) {}", ex != nullptr ? ex : "exchange");
  Node& n = parent.add_here(title, base, std::min<std::uint32_t>(h.length, static_cast<std::uint32_t>(msg.size())));
  n.role = NodeRole::ike_message;
  n.add_here(fmt::format("{}: {:016x}", v2 ? "Initiator SPI" : "Initiator cookie", h.spi_i), base, 8);
  n.add_here(fmt::format("{}: {:016x}", v2 ? "Responder SPI" : "Responder cookie", h.spi_r), base + 8, 8);
  n.add_here(fmt::format("Next payload: {}", name_or(payload_name(h.next_payload), h.next_payload)), base + 16, 1);
  n.add_here(fmt::format("Version: {}.{}", h.major, h.minor), base + 17, 1);
  n.add_here(fmt::format("Exchange type: {}", name_or(ex, h.exchange)), base + 18, 1);
  std::string flags;
  if (v2) {
    if (h.flags & kV2Initiator) flags += " Initiator";
    if (h.flags & kV2Version) flags += " Version";
    if (h.flags & kV2Response) flags += " Response";
  } else {
    if (h.flags & kV1Encrypted) flags += " Encryption";
    if (h.flags & kV1Commit) flags += " Commit";
    if (h.flags & kV1AuthOnly) flags += " Authentication";
  }
  n.add_here(fmt::format("Flags: 0x{:02x}{}", h.flags, flags), base + 19, 1);
  n.add_here(fmt::format("Message ID: 0x{:08x}", h.message_id), base + 20, 4);
  n.add_here(fmt::format("Length: {}", h.length), base + 24, 4);
  const std::size_t avail = std::min<std::size_t>(h.length, msg.size());
  const Bytes body = msg.subspan(kHeaderLen, avail - kHeaderLen);
  if (h.length > msg.size()) n.add_here("[truncated: the capture holds less than the message length]", base, 0);
  if (h.encrypted_v1()) {
    n.add_here(fmt::format("Encrypted payloads ({} bytes)", body.size()), base + kHeaderLen,
               static_cast<std::uint32_t>(body.size()));
    return;
  }
  add_chain(body, h.next_payload, v2, base + static_cast<std::uint32_t>(kHeaderLen), n);
}

}  // namespace ipsentry::dissect::ike
