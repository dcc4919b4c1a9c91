// The IKEv2 message codec (RFC 7296 section 3). Decoding reads through
// dissect::ike's bounds-checked views (the analyzer's parsers, in their
// strict mode) and copies what it keeps into the Message value; encoding
// writes the same layout back.
#include "ipsentry/ike/message.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/wire.hpp"

namespace ipsentry::ike::v2 {

namespace dik = dissect::ike;
namespace pt = dissect::ike::pt;

namespace {

// Key Length, the one transform attribute IKEv2 defines (RFC 7296 3.3.5).
constexpr std::uint16_t kKeyLengthAttribute = 14;
constexpr std::size_t kMaxPayloadBody = 0xffff - 4;

// ---- encoding ------------------------------------------------------------

void put8(Buffer& b, std::uint8_t v) { b.push_back(v); }
void put16(Buffer& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put32(Buffer& b, std::uint32_t v) {
  put16(b, static_cast<std::uint16_t>(v >> 16));
  put16(b, static_cast<std::uint16_t>(v));
}
void put64(Buffer& b, std::uint64_t v) {
  put32(b, static_cast<std::uint32_t>(v >> 32));
  put32(b, static_cast<std::uint32_t>(v));
}
void put(Buffer& b, Bytes d) { b.insert(b.end(), d.begin(), d.end()); }

std::uint8_t narrow8(std::size_t v, const char* what) {
  if (v > 0xff) throw std::length_error(fmt::format("IKEv2 encoder: {} ({}) does not fit in one byte", what, v));
  return static_cast<std::uint8_t>(v);
}
std::uint16_t narrow16(std::size_t v, const char* what) {
  if (v > 0xffff) throw std::length_error(fmt::format("IKEv2 encoder: {} ({}) does not fit in 16 bits", what, v));
  return static_cast<std::uint16_t>(v);
}

// Writes a substructure's 16-bit length at `at` once its end is known.
void patch16(Buffer& b, std::size_t at, std::size_t len, const char* what) {
  dissect::store_be16(b.data() + at, narrow16(len, what));
}

void encode_sa(Buffer& b, const SaPayload& sa) {
  for (std::size_t i = 0; i < sa.proposals.size(); ++i) {
    const Proposal& p = sa.proposals[i];
    const std::size_t start = b.size();
    put8(b, i + 1 == sa.proposals.size() ? 0 : 2);
    put8(b, 0);
    put16(b, 0);
    put8(b, p.number);
    put8(b, static_cast<std::uint8_t>(p.protocol));
    put8(b, narrow8(p.spi.size(), "proposal SPI size"));
    put8(b, narrow8(p.transforms.size(), "transform count"));
    put(b, p.spi);
    for (std::size_t k = 0; k < p.transforms.size(); ++k) {
      const Transform& t = p.transforms[k];
      put8(b, k + 1 == p.transforms.size() ? 0 : 3);
      put8(b, 0);
      put16(b, t.key_bits ? 12 : 8);
      put8(b, t.type);
      put8(b, 0);
      put16(b, t.id);
      if (t.key_bits) {
        put16(b, 0x8000 | kKeyLengthAttribute);
        put16(b, *t.key_bits);
      }
    }
    patch16(b, start + 2, b.size() - start, "proposal length");
  }
}

void encode_ts(Buffer& b, const TsPayload& ts) {
  put8(b, narrow8(ts.selectors.size(), "traffic selector count"));
  put8(b, 0);
  put16(b, 0);
  for (const auto& s : ts.selectors) {
    if (s.start.family() != s.end.family() || s.start.empty()) {
      throw std::invalid_argument("IKEv2 encoder: a traffic selector's start and end are not of one address family");
    }
    const bool v4 = s.start.is_v4();
    put8(b, v4 ? 7 : 8);
    put8(b, s.ip_protocol);
    put16(b, v4 ? 16 : 40);
    put16(b, s.start_port);
    put16(b, s.end_port);
    put(b, Bytes(s.start.data(), s.start.size()));
    put(b, Bytes(s.end.data(), s.end.size()));
  }
}

// Whether a payload body of this variant may be sent as `type`: the
// daemon names the type, the variant carries the body, and a mismatch is
// a bug to catch here rather than bytes a peer cannot parse.
bool fits(std::uint8_t type, const Payload& body) {
  switch (type) {
    case pt::v2_sa: return std::holds_alternative<SaPayload>(body);
    case pt::v2_ke: return std::holds_alternative<KePayload>(body);
    case pt::v2_idi:
    case pt::v2_idr: return std::holds_alternative<IdPayload>(body);
    case pt::v2_cert: return std::holds_alternative<CertPayload>(body);
    case pt::v2_certreq: return std::holds_alternative<CertReqPayload>(body);
    case pt::v2_auth: return std::holds_alternative<AuthPayload>(body);
    case pt::v2_nonce: return std::holds_alternative<NoncePayload>(body);
    case pt::v2_notify: return std::holds_alternative<NotifyPayload>(body);
    case pt::v2_delete: return std::holds_alternative<DeletePayload>(body);
    case pt::v2_vid: return std::holds_alternative<VendorPayload>(body);
    case pt::v2_tsi:
    case pt::v2_tsr: return std::holds_alternative<TsPayload>(body);
    case pt::none:
    case pt::v2_sk:
    case pt::v2_skf: return false;
    default: return std::holds_alternative<UnknownPayload>(body);
  }
}

void encode_body(Buffer& b, const Payload& body) {
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, SaPayload>) {
          encode_sa(b, p);
        } else if constexpr (std::is_same_v<T, KePayload>) {
          put16(b, p.group);
          put16(b, 0);
          put(b, p.data);
        } else if constexpr (std::is_same_v<T, IdPayload>) {
          put(b, p.body());
        } else if constexpr (std::is_same_v<T, CertPayload> || std::is_same_v<T, CertReqPayload>) {
          put8(b, p.encoding);
          put(b, p.data);
        } else if constexpr (std::is_same_v<T, AuthPayload>) {
          put8(b, static_cast<std::uint8_t>(p.method));
          put8(b, 0);
          put16(b, 0);
          put(b, p.data);
        } else if constexpr (std::is_same_v<T, NoncePayload> || std::is_same_v<T, VendorPayload>) {
          put(b, p.data);
        } else if constexpr (std::is_same_v<T, NotifyPayload>) {
          // RFC 7296 3.10: the Protocol ID is zero when there is no SPI.
          put8(b, p.spi.empty() ? 0 : static_cast<std::uint8_t>(p.protocol));
          put8(b, narrow8(p.spi.size(), "notify SPI size"));
          put16(b, p.type);
          put(b, p.spi);
          put(b, p.data);
        } else if constexpr (std::is_same_v<T, DeletePayload>) {
          const bool ike = p.protocol == ProtocolId::ike;
          if (ike && !p.spis.empty()) throw std::invalid_argument("IKEv2 encoder: an IKE SA delete lists no SPIs");
          put8(b, static_cast<std::uint8_t>(p.protocol));
          put8(b, ike ? 0 : 4);
          put16(b, narrow16(p.spis.size(), "delete SPI count"));
          for (auto spi : p.spis) put32(b, spi);
        } else if constexpr (std::is_same_v<T, TsPayload>) {
          encode_ts(b, p);
        } else {
          static_assert(std::is_same_v<T, UnknownPayload>);
          put(b, p.body);
        }
      },
      body);
}

// Appends a payload chain; returns the type of its first payload.
std::uint8_t encode_chain(Buffer& b, const std::vector<TypedPayload>& payloads) {
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    const TypedPayload& p = payloads[i];
    if (!fits(p.type, p.body)) {
      throw std::invalid_argument(fmt::format("IKEv2 encoder: payload type {} does not carry this body", p.type));
    }
    const std::size_t start = b.size();
    put8(b, i + 1 < payloads.size() ? payloads[i + 1].type : pt::none);
    const auto* unknown = std::get_if<UnknownPayload>(&p.body);
    put8(b, unknown != nullptr && unknown->critical ? 0x80 : 0);
    put16(b, 0);
    encode_body(b, p.body);
    if (b.size() - start - 4 > kMaxPayloadBody)
      throw std::length_error("IKEv2 encoder: payload longer than 65535 bytes");
    patch16(b, start + 2, b.size() - start, "payload length");
  }
  return payloads.empty() ? pt::none : payloads.front().type;
}

void encode_header(Buffer& b, const Message& m, std::uint8_t first) {
  put64(b, m.spi_i);
  put64(b, m.spi_r);
  put8(b, first);
  put8(b, 0x20);  // major 2, minor 0
  put8(b, m.exchange);
  put8(b, static_cast<std::uint8_t>((m.initiator ? dik::kV2Initiator : 0) | (m.response ? dik::kV2Response : 0)));
  put32(b, m.message_id);
  put32(b, 0);  // length, written when known
}

// ---- decoding --------------------------------------------------------------

Buffer copy(Bytes b) { return Buffer(b.begin(), b.end()); }

// Payload types RFC 7296 defines: their critical bit is ignored (3.2: every
// implementation understands them). CP and EAP are not implemented and are
// kept as Unknown, never refused as critical.
bool rfc7296_type(std::uint8_t type) { return type >= pt::v2_sa && type <= pt::v2_eap; }

dissect::IpAddr address_of(Bytes b) {
  return b.size() == 4 ? dissect::IpAddr::v4(b.data()) : dissect::IpAddr::v6(b.data());
}

// Decodes one payload body; a sentence on failure.
const char* decode_body(const dik::Payload& in, TypedPayload& out) {
  const Bytes b = in.body;
  dissect::Reader r(b);
  switch (in.type) {
    case pt::v2_sa: {
      const dik::SaPayload sa = dik::parse_sa(b, true, true);
      if (sa.error != nullptr) return sa.error;
      SaPayload v;
      for (const auto& p : sa.proposals) {
        Proposal q;
        q.number = p.number;
        if (p.protocol < 1 || p.protocol > 3) return "proposal of a protocol other than IKE, AH or ESP";
        q.protocol = static_cast<ProtocolId>(p.protocol);
        q.spi = copy(p.spi);
        for (const auto& t : p.transforms) {
          Transform x;
          x.type = t.type;
          x.id = t.id;
          if (auto kl = t.attribute(kKeyLengthAttribute)) x.key_bits = static_cast<std::uint16_t>(*kl);
          q.transforms.push_back(x);
        }
        v.proposals.push_back(std::move(q));
      }
      out.body = std::move(v);
      return nullptr;
    }
    case pt::v2_ke: {
      KePayload v;
      std::uint16_t reserved = 0;
      if (!r.be16(v.group) || !r.be16(reserved)) return "KE payload shorter than its fixed part";
      v.data = copy(r.rest());
      out.body = std::move(v);
      return nullptr;
    }
    case pt::v2_idi:
    case pt::v2_idr: {
      IdPayload v;
      if (!r.u8(v.id_type) || !r.skip(3)) return "ID payload shorter than its fixed part";
      v.data = copy(r.rest());
      out.body = std::move(v);
      return nullptr;
    }
    case pt::v2_cert:
    case pt::v2_certreq: {
      std::uint8_t enc = 0;
      if (!r.u8(enc)) return "certificate payload without an encoding";
      if (in.type == pt::v2_cert) {
        out.body = CertPayload{enc, copy(r.rest())};
      } else {
        out.body = CertReqPayload{enc, copy(r.rest())};
      }
      return nullptr;
    }
    case pt::v2_auth: {
      std::uint8_t method = 0;
      if (!r.u8(method) || !r.skip(3)) return "AUTH payload shorter than its fixed part";
      out.body = AuthPayload{static_cast<AuthMethod>(method), copy(r.rest())};
      return nullptr;
    }
    case pt::v2_nonce:
      // RFC 7296 3.9: between 16 and 256 octets.
      if (b.size() < 16 || b.size() > 256) return "nonce shorter than 16 or longer than 256 bytes";
      out.body = NoncePayload{copy(b)};
      return nullptr;
    case pt::v2_notify: {
      auto n = dik::parse_notify(b, true);
      if (!n) return "Notify payload truncated";
      NotifyPayload v;
      v.raw_protocol = n->protocol;
      v.protocol = n->protocol >= 1 && n->protocol <= 3 ? static_cast<ProtocolId>(n->protocol) : ProtocolId::ike;
      v.spi = copy(n->spi);
      v.type = n->type;
      v.data = copy(n->data);
      out.body = std::move(v);
      return nullptr;
    }
    case pt::v2_delete: {
      std::uint8_t proto = 0;
      std::uint8_t spi_size = 0;
      std::uint16_t count = 0;
      if (!r.u8(proto) || !r.u8(spi_size) || !r.be16(count)) return "Delete payload shorter than its fixed part";
      DeletePayload v;
      if (proto == 1) {
        // RFC 7296 3.11: the IKE SA is the one the message belongs to.
        if (spi_size != 0 || count != 0 || !r.empty()) return "an IKE SA Delete with SPIs";
      } else if (proto == 2 || proto == 3) {
        if (spi_size != 4) return "an ESP/AH Delete whose SPI size is not 4";
        if (r.remaining() != std::size_t{count} * 4) return "Delete SPI count does not match its length";
        for (unsigned i = 0; i < count; ++i) {
          std::uint32_t spi = 0;
          if (!r.be32(spi)) return "Delete SPI list truncated";
          v.spis.push_back(spi);
        }
      } else {
        return "Delete of a protocol other than IKE, AH or ESP";
      }
      v.protocol = static_cast<ProtocolId>(proto);
      out.body = std::move(v);
      return nullptr;
    }
    case pt::v2_vid: out.body = VendorPayload{copy(b)}; return nullptr;
    case pt::v2_tsi:
    case pt::v2_tsr: {
      auto ts = dik::parse_ts(b, true);
      if (!ts) return "traffic selectors malformed (type, length or count)";
      TsPayload v;
      for (const auto& s : *ts) {
        TrafficSelector x;
        x.ip_protocol = s.protocol;
        x.start_port = s.start_port;
        x.end_port = s.end_port;
        x.start = address_of(s.start);
        x.end = address_of(s.end);
        v.selectors.push_back(x);
      }
      out.body = std::move(v);
      return nullptr;
    }
    default: out.body = UnknownPayload{in.type, in.critical, copy(b)}; return nullptr;
  }
}

// Decodes a payload chain (the cleartext one or the one inside SK) that
// must end exactly at the end of `chain`. Fills `out`; returns the status
// and a reason in `why`.
DecodeStatus decode_chain(Bytes chain, std::uint8_t first, bool inner, std::vector<TypedPayload>& out,
                          std::optional<dik::Payload>& sk, std::string& why) {
  const dik::Chain c = dik::walk(chain, first);
  if (c.error != nullptr) {
    why = c.error;
    return DecodeStatus::malformed;
  }
  std::size_t end = 0;
  for (const auto& p : c.payloads) {
    end = p.offset + 4 + p.body.size();
    if (p.type == pt::v2_sk || p.type == pt::v2_skf) {
      if (inner) {
        why = "an Encrypted payload inside the Encrypted payload";
        return DecodeStatus::malformed;
      }
      if (p.type == pt::v2_skf) {
        why = "IKEv2 fragments (RFC 7383) are not reassembled";
        return DecodeStatus::malformed;
      }
      sk = p;
      break;
    }
    TypedPayload tp;
    tp.type = p.type;
    if (const char* e = decode_body(p, tp)) {
      why = fmt::format("{} payload: {}", dik::payload_abbrev(p.type) ? dik::payload_abbrev(p.type) : "?", e);
      return DecodeStatus::malformed;
    }
    out.push_back(std::move(tp));
  }
  if (end != chain.size()) {
    // walk() stops at the SK payload: anything after it means SK was not last.
    why = sk && !inner ? "the Encrypted payload is not the last payload" : "bytes after the last payload";
    return DecodeStatus::malformed;
  }
  // Unknown critical payloads are reported once the chain is known to be
  // well formed, so a truncated message is called malformed, not unsupported.
  for (const auto& p : out) {
    if (const auto* u = std::get_if<UnknownPayload>(&p.body); u != nullptr && u->critical && !rfc7296_type(u->type)) {
      why = fmt::format("critical payload of unknown type {}", u->type);
      return DecodeStatus::unsupported_critical;
    }
  }
  return DecodeStatus::ok;
}

}  // namespace

Buffer IdPayload::body() const {
  Buffer b;
  b.reserve(4 + data.size());
  put8(b, id_type);
  put8(b, 0);
  put16(b, 0);
  put(b, data);
  return b;
}

std::string TrafficSelector::str() const {
  dik::TrafficSelector t;
  t.type = start.is_v4() ? 7 : 8;
  t.protocol = ip_protocol;
  t.start_port = start_port;
  t.end_port = end_port;
  t.start = Bytes(start.data(), start.size());
  t.end = Bytes(end.data(), end.size());
  return t.str();
}

const NotifyPayload* Message::notify(std::uint16_t type) const noexcept {
  for (const auto& p : payloads) {
    if (const auto* n = std::get_if<NotifyPayload>(&p.body); n != nullptr && n->type == type) return n;
  }
  return nullptr;
}

const NotifyPayload* Message::error_notify() const noexcept {
  for (const auto& p : payloads) {
    if (const auto* n = std::get_if<NotifyPayload>(&p.body); n != nullptr && n->error()) return n;
  }
  return nullptr;
}

std::string Message::summary() const {
  const char* ex = dik::exchange_name(exchange);
  std::string s = fmt::format("{} {} {} [", ex != nullptr ? ex : fmt::format("exchange-{}", exchange),
                              response ? "response" : "request", message_id);
  for (const auto& p : payloads) {
    const char* a = dik::payload_abbrev(p.type);
    s += ' ';
    s += a != nullptr ? a : fmt::format("PAY{}", p.type);
    if (const auto* n = std::get_if<NotifyPayload>(&p.body)) s += "(" + dik::notify_str(true, n->type) + ")";
  }
  s += " ]";
  return s;
}

Buffer encode(const Message& m, const SkCipher* sk, Random& random) {
  Buffer b;
  b.reserve(512);
  if (!m.encrypted) {
    encode_header(b, m, m.payloads.empty() ? pt::none : m.payloads.front().type);
    encode_chain(b, m.payloads);
    dissect::store_be32(b.data() + 24, static_cast<std::uint32_t>(b.size()));
    return b;
  }
  if (sk == nullptr) throw CryptoError("an encrypted IKEv2 message needs its SK keys to be encoded");
  Buffer inner;
  const std::uint8_t first = encode_chain(inner, m.payloads);
  encode_header(b, m, pt::v2_sk);
  put8(b, first);
  put8(b, 0);
  const std::size_t sealed = sk->sealed_size(inner.size());
  if (sealed > kMaxPayloadBody) throw std::length_error("IKEv2 encoder: Encrypted payload longer than 65535 bytes");
  put16(b, static_cast<std::uint16_t>(4 + sealed));
  dissect::store_be32(b.data() + 24, static_cast<std::uint32_t>(b.size() + sealed));
  sk->seal(b, inner, random);
  // The SK payload's contents are the IKE SA's plaintext: not left in memory.
  filters::cleanse(inner.data(), inner.size());
  return b;
}

std::optional<Message> decode_header(Bytes bytes, std::string& why) {
  dik::Header h;
  if (const char* e = dik::parse_header(bytes, h)) {
    why = e;
    return std::nullopt;
  }
  if (h.major != 2) {
    why = fmt::format("IKE major version {} is not 2", h.major);
    return std::nullopt;
  }
  if (h.length != bytes.size()) {
    why = h.length > bytes.size() ? fmt::format("message truncated: {} of {} bytes", bytes.size(), h.length)
                                  : fmt::format("{} bytes after the message's {}", bytes.size() - h.length, h.length);
    return std::nullopt;
  }
  Message m;
  m.spi_i = h.spi_i;
  m.spi_r = h.spi_r;
  m.exchange = h.exchange;
  m.initiator = h.initiator_v2();
  m.response = h.response_v2();
  m.message_id = h.message_id;
  m.encrypted = h.next_payload == pt::v2_sk || h.next_payload == pt::v2_skf;
  return m;
}

DecodeStatus decode(Bytes bytes, const SkCipher* sk, Message& out, std::string& why) {
  out = Message{};
  auto header = decode_header(bytes, why);
  if (!header) {
    // Keep what can be read of a header, for logs and routing.
    dik::Header h;
    if (dik::parse_header(bytes, h) == nullptr) {
      out.spi_i = h.spi_i;
      out.spi_r = h.spi_r;
      out.exchange = h.exchange;
      out.initiator = h.initiator_v2();
      out.response = h.response_v2();
      out.message_id = h.message_id;
    }
    return DecodeStatus::malformed;
  }
  out = std::move(*header);
  dik::Header h;
  (void)dik::parse_header(bytes, h);
  const Bytes chain = bytes.subspan(dik::kHeaderLen);
  std::optional<dik::Payload> skp;
  std::vector<TypedPayload> clear;
  DecodeStatus st = decode_chain(chain, h.next_payload, false, clear, skp, why);
  if (st != DecodeStatus::ok) return st;
  if (!skp) {
    out.encrypted = false;
    out.payloads = std::move(clear);
    return DecodeStatus::ok;
  }
  out.encrypted = true;
  if (!clear.empty()) {
    // RFC 7296 3.14 allows payloads before SK, but no exchange uses them and
    // they are not confidential; a Message cannot tell them from the inner
    // ones, so they are refused rather than silently mixed in.
    why = "payloads outside the Encrypted payload";
    return DecodeStatus::malformed;
  }
  if (sk == nullptr) {
    why = "encrypted, and no keys for it";
    return DecodeStatus::no_keys;
  }
  const std::size_t body_offset = dik::kHeaderLen + skp->offset + 4;
  auto plain = sk->open(bytes, body_offset, why);
  if (!plain) return DecodeStatus::integrity_failed;
  std::optional<dik::Payload> nested;
  st = decode_chain(*plain, skp->next, true, out.payloads, nested, why);
  filters::cleanse(plain->data(), plain->size());
  if (st != DecodeStatus::ok) out.payloads.clear();
  return st;
}

// ---- IKE fragmentation (RFC 7383) ------------------------------------------

bool is_fragment(Bytes bytes) noexcept { return bytes.size() > 16 && bytes[16] == pt::v2_skf; }

std::vector<Buffer> encode_fragments(const Message& m, const SkCipher& sk, Random& random, std::size_t max_message) {
  Buffer whole = encode(m, &sk, random);
  std::vector<Buffer> out;
  if (whole.size() <= max_message) {
    out.push_back(std::move(whole));
    return out;
  }
  Buffer inner;
  const std::uint8_t first = encode_chain(inner, m.payloads);
  // The most plaintext a fragment carries: IKE header, SKF header with its
  // two fragment fields, and the sealed data (IV, padding, ICV) must fit.
  constexpr std::size_t kOverhead = dik::kHeaderLen + 8;
  std::size_t chunk = max_message > kOverhead ? max_message - kOverhead : 0;
  while (chunk > 0 && kOverhead + sk.sealed_size(chunk) > max_message) --chunk;
  if (chunk == 0) {
    filters::cleanse(inner.data(), inner.size());
    throw std::length_error("IKEv2 encoder: the fragment size leaves no room for data");
  }
  const std::size_t total = (inner.size() + chunk - 1) / chunk;
  if (total > FragmentSet::kMaxFragments) {
    filters::cleanse(inner.data(), inner.size());
    throw std::length_error(
        fmt::format("IKEv2 encoder: {} fragments needed, at most {}", total, FragmentSet::kMaxFragments));
  }
  for (std::size_t i = 0; i < total; ++i) {
    const Bytes part = Bytes(inner).subspan(i * chunk, std::min(chunk, inner.size() - i * chunk));
    Buffer b;
    b.reserve(max_message);
    encode_header(b, m, pt::v2_skf);
    put8(b, i == 0 ? first : pt::none);  // RFC 7383 2.5: the first payload's type in fragment 1 only
    put8(b, 0);
    const std::size_t sealed = sk.sealed_size(part.size());
    put16(b, static_cast<std::uint16_t>(8 + sealed));
    put16(b, static_cast<std::uint16_t>(i + 1));
    put16(b, static_cast<std::uint16_t>(total));
    dissect::store_be32(b.data() + 24, static_cast<std::uint32_t>(b.size() + sealed));
    sk.seal(b, part, random);
    out.push_back(std::move(b));
  }
  filters::cleanse(inner.data(), inner.size());
  return out;
}

DecodeStatus decode_fragment(Bytes bytes, const SkCipher* sk, Message& header, Fragment& out, std::string& why) {
  header = Message{};
  out = Fragment{};
  auto h = decode_header(bytes, why);
  if (!h) return DecodeStatus::malformed;
  header = std::move(*h);
  if (!is_fragment(bytes)) {
    why = "not an Encrypted Fragment message";
    return DecodeStatus::malformed;
  }
  // SKF is the only payload (RFC 7383 2.5) and runs to the message's end.
  const Bytes p = bytes.subspan(dik::kHeaderLen);
  if (p.size() < 8 || dissect::load_be16(p.data() + 2) != p.size()) {
    why = "the Encrypted Fragment payload's length is not the rest of the message";
    return DecodeStatus::malformed;
  }
  const std::uint16_t number = dissect::load_be16(p.data() + 4);
  const std::uint16_t total = dissect::load_be16(p.data() + 6);
  if (number == 0 || total == 0 || number > total) {
    why = fmt::format("fragment {} of {}", number, total);
    return DecodeStatus::malformed;
  }
  if (sk == nullptr) {
    why = "encrypted, and no keys for it";
    return DecodeStatus::no_keys;
  }
  auto plain = sk->open(bytes, dik::kHeaderLen + 8, why);
  if (!plain) return DecodeStatus::integrity_failed;
  out.number = number;
  out.total = total;
  out.first_payload = p[0];
  out.plain = std::move(*plain);
  return DecodeStatus::ok;
}

DecodeStatus decode_reassembled(Bytes plain, std::uint8_t first_payload, Message& out, std::string& why) {
  out.encrypted = true;
  out.payloads.clear();
  std::optional<dik::Payload> nested;
  const DecodeStatus st = decode_chain(plain, first_payload, true, out.payloads, nested, why);
  if (st != DecodeStatus::ok) out.payloads.clear();
  return st;
}

FragmentSet::Added FragmentSet::add(std::uint32_t mid, Fragment f) {
  if (f.total > kMaxFragments) return Added::too_many;
  if (f.number == 0 || f.number > f.total) return Added::inconsistent;
  if (!parts_.empty() && mid == mid_) {
    if (f.total < total_) return Added::inconsistent;
    if (f.total > total_) clear();  // re-fragmented smaller: start anew (RFC 7383 2.6)
  } else if (!parts_.empty()) {
    clear();
  }
  mid_ = mid;
  total_ = f.total;
  auto it = std::lower_bound(parts_.begin(), parts_.end(), f.number,
                             [](const auto& part, std::uint16_t n) { return part.first < n; });
  if (it != parts_.end() && it->first == f.number) {
    filters::cleanse(f.plain.data(), f.plain.size());
    return Added::duplicate;
  }
  if (bytes_ + f.plain.size() > kMaxBytes) {
    filters::cleanse(f.plain.data(), f.plain.size());
    clear();
    return Added::too_big;
  }
  if (f.number == 1) first_ = f.first_payload;
  bytes_ += f.plain.size();
  parts_.insert(it, {f.number, std::move(f.plain)});
  return parts_.size() == total_ ? Added::complete : Added::kept;
}

Buffer FragmentSet::take(std::uint8_t& first_payload) {
  Buffer out;
  out.reserve(bytes_);
  for (const auto& [n, part] : parts_) out.insert(out.end(), part.begin(), part.end());
  first_payload = first_;
  clear();
  return out;
}

void FragmentSet::clear() noexcept {
  for (auto& [n, part] : parts_) filters::cleanse(part.data(), part.size());
  parts_.clear();
  total_ = 0;
  first_ = 0;
  bytes_ = 0;
}

}  // namespace ipsentry::ike::v2
