#include "ipsentry/tui/display_filter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/packet.hpp"
#include "ipsentry/dissect/text_table.hpp"
#include "ipsentry/ike/analyzer.hpp"
#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::tui {

using Field = DisplayFilter::Field;
using Op = DisplayFilter::Op;
using Node = DisplayFilter::Node;

namespace {

struct NameEntry {
  std::string_view name;
  Field field;
};

// Presence-only names first, then fields that take values.
constexpr NameEntry kNames[] = {
    {"esp", Field::esp},
    {"ah", Field::ah},
    {"ipsec", Field::ipsec},
    {"ike", Field::ike},
    {"isakmp", Field::ike},
    {"ikev1", Field::ikev1},
    {"ikev2", Field::ikev2},
    {"nat-keepalive", Field::nat_keepalive},
    {"ip", Field::ip},
    {"ipv4", Field::ipv4},
    {"ipv6", Field::ipv6},
    {"tcp", Field::tcp},
    {"udp", Field::udp},
    {"icmp", Field::icmp},
    {"icmpv6", Field::icmpv6},
    {"cleartext", Field::cleartext},
    {"decrypted", Field::decrypted},
    {"trigger", Field::trigger},
    {"malformed", Field::malformed},
    {"src", Field::src},
    {"ip.src", Field::src},
    {"dst", Field::dst},
    {"ip.dst", Field::dst},
    {"addr", Field::addr},
    {"ip.addr", Field::addr},
    {"host", Field::addr},
    {"port", Field::port},
    {"sport", Field::sport},
    {"srcport", Field::sport},
    {"dport", Field::dport},
    {"dstport", Field::dport},
    {"spi", Field::spi},
    {"seq", Field::seq},
    {"verdict", Field::verdict},
    {"ike.exchange", Field::exchange},
    {"exchange", Field::exchange},
    {"frame", Field::frame},
    {"len", Field::len},
    {"proto", Field::proto},
    {"audit", Field::audit},
};

bool presence_only(Field f) noexcept { return f <= Field::malformed; }
bool is_address(Field f) noexcept { return f == Field::src || f == Field::dst || f == Field::addr; }
bool is_named(Field f) noexcept {
  return f == Field::verdict || f == Field::exchange || f == Field::proto || f == Field::audit;
}

// A `verdict` test's value that names an audit verdict rather than an
// IPsec or IKE one (those stay below 256).
constexpr std::uint64_t kAuditValue = 0x100;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Token {
  enum class Kind { word, op, lparen, rparen, lbrace, rbrace, and_, or_, not_, end } kind = Kind::end;
  std::string_view text;
  std::size_t pos = 0;
  Op op = Op::eq;
};

bool word_char(char c) noexcept {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == ':' || c == '/' || c == '-' ||
         c == '%';
}

std::optional<std::uint64_t> parse_number(std::string_view s) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

const char* kVerdictList =
    "ok, icv-fail, decrypt-fail, replay, unknown-spi, malformed, unverifiable, unsupported, ike-fail, and with "
    "--policy cleartext-leak, policy-mismatch, blocked-seen, cleartext-allowed";

/// "conforms, permitted, ..." : every audit verdict a filter can name.
std::string audit_list() {
  std::string out;
  for (std::size_t i = 1; i < capture::kAuditVerdictCount; ++i) {
    out += fmt::format("{}{}", out.empty() ? "" : ", ", capture::audit_name(static_cast<capture::AuditVerdict>(i)));
  }
  return out;
}

/// The audit verdicts the verdict column shows (see audit_shown()).
bool shown_as_verdict(capture::AuditVerdict v) noexcept {
  return capture::flagged(v) || v == capture::AuditVerdict::fallback;
}

}  // namespace

class FilterParser {
 public:
  FilterParser(std::string_view text, DisplayFilter& out, FilterError& error) : text_(text), out_(out), error_(error) {}

  bool run() {
    if (!lex()) return false;
    if (tokens_.size() == 1) return true;  // empty: matches everything
    std::uint32_t root = 0;
    if (!parse_or(root)) return false;
    if (peek().kind != Token::Kind::end) {
      return fail(peek().pos, peek().kind == Token::Kind::rparen
                                  ? std::string("')' without a matching '('")
                                  : fmt::format("expected 'and', 'or' or the end, not '{}'", peek().text));
    }
    out_.root_ = root;
    return true;
  }

 private:
  bool fail(std::size_t pos, std::string message) {
    error_.position = pos;
    error_.message = std::move(message);
    return false;
  }

  bool lex() {
    std::size_t i = 0;
    while (i < text_.size()) {
      const char c = text_[i];
      if (std::isspace(static_cast<unsigned char>(c)) != 0) {
        ++i;
        continue;
      }
      Token t;
      t.pos = i;
      auto two = [&](std::string_view s) { return text_.substr(i, 2) == s; };
      if (c == ',') {
        ++i;  // a separator in `in {1, 2}`, like a space
        continue;
      }
      if (c == '(' || c == ')' || c == '{' || c == '}') {
        t.kind = c == '('   ? Token::Kind::lparen
                 : c == ')' ? Token::Kind::rparen
                 : c == '{' ? Token::Kind::lbrace
                            : Token::Kind::rbrace;
        t.text = text_.substr(i, 1);
        ++i;
      } else if (two("==") || two("!=") || two("<=") || two(">=") || two("&&") || two("||")) {
        t.text = text_.substr(i, 2);
        i += 2;
        if (t.text == "&&")
          t.kind = Token::Kind::and_;
        else if (t.text == "||")
          t.kind = Token::Kind::or_;
        else {
          t.kind = Token::Kind::op;
          t.op = t.text == "==" ? Op::eq : t.text == "!=" ? Op::ne : t.text == "<=" ? Op::le : Op::ge;
        }
      } else if (c == '=' || c == '<' || c == '>') {
        t.kind = Token::Kind::op;
        t.op = c == '=' ? Op::eq : c == '<' ? Op::lt : Op::gt;
        t.text = text_.substr(i, 1);
        ++i;
      } else if (c == '!') {
        t.kind = Token::Kind::not_;
        t.text = text_.substr(i, 1);
        ++i;
      } else if (word_char(c)) {
        std::size_t j = i;
        while (j < text_.size() && word_char(text_[j])) ++j;
        t.text = text_.substr(i, j - i);
        i = j;
        const std::string w = lower(t.text);
        if (w == "and")
          t.kind = Token::Kind::and_;
        else if (w == "or")
          t.kind = Token::Kind::or_;
        else if (w == "not")
          t.kind = Token::Kind::not_;
        else if (w == "in") {
          t.kind = Token::Kind::op;
          t.op = Op::in;
        } else if (w == "eq" || w == "ne" || w == "lt" || w == "le" || w == "gt" || w == "ge") {
          t.kind = Token::Kind::op;
          t.op = w == "eq"   ? Op::eq
                 : w == "ne" ? Op::ne
                 : w == "lt" ? Op::lt
                 : w == "le" ? Op::le
                 : w == "gt" ? Op::gt
                             : Op::ge;
        } else {
          t.kind = Token::Kind::word;
        }
      } else {
        // The whole character, not the first byte of its UTF-8 sequence.
        return fail(i, fmt::format("unexpected character '{}'", text_.substr(i, dissect::utf8_length(c))));
      }
      tokens_.push_back(t);
    }
    Token end;
    end.pos = text_.size();
    tokens_.push_back(end);
    return true;
  }

  const Token& peek() const { return tokens_[at_]; }
  const Token& take() { return tokens_[at_++]; }

  std::uint32_t add(Node n) {
    out_.nodes_.push_back(n);
    return static_cast<std::uint32_t>(out_.nodes_.size() - 1);
  }

  bool parse_or(std::uint32_t& out) {
    if (!parse_and(out)) return false;
    while (peek().kind == Token::Kind::or_) {
      take();
      std::uint32_t rhs = 0;
      if (!parse_and(rhs)) return false;
      Node n;
      n.type = Node::Type::or_;
      n.left = out;
      n.right = rhs;
      out = add(n);
    }
    return true;
  }

  bool parse_and(std::uint32_t& out) {
    if (!parse_unary(out)) return false;
    while (peek().kind == Token::Kind::and_) {
      take();
      std::uint32_t rhs = 0;
      if (!parse_unary(rhs)) return false;
      Node n;
      n.type = Node::Type::and_;
      n.left = out;
      n.right = rhs;
      out = add(n);
    }
    return true;
  }

  bool parse_unary(std::uint32_t& out) {
    if (peek().kind == Token::Kind::not_) {
      take();
      std::uint32_t inner = 0;
      if (!parse_unary(inner)) return false;
      Node n;
      n.type = Node::Type::not_;
      n.left = inner;
      out = add(n);
      return true;
    }
    return parse_primary(out);
  }

  bool parse_primary(std::uint32_t& out) {
    const Token& t = take();
    switch (t.kind) {
      case Token::Kind::lparen: {
        if (!parse_or(out)) return false;
        if (peek().kind != Token::Kind::rparen) {
          return fail(peek().pos, fmt::format("expected ')' to close the '(' at {}", t.pos + 1));
        }
        take();
        return true;
      }
      case Token::Kind::word: return parse_test(t, out);
      case Token::Kind::end: return fail(t.pos, "expected a protocol or field name");
      default: return fail(t.pos, fmt::format("expected a protocol or field name, not '{}'", t.text));
    }
  }

  bool parse_test(const Token& name, std::uint32_t& out) {
    const std::string w = lower(name.text);
    const NameEntry* entry = nullptr;
    for (const auto& e : kNames) {
      if (e.name == w) entry = &e;
    }
    if (entry == nullptr) {
      return fail(name.pos, fmt::format("unknown name '{}' (press ? for the list)", name.text));
    }
    Node n;
    n.field = entry->field;
    // tcpdump habit: "host 192.0.2.1", "port 500" mean ==.
    const bool implicit_eq = !presence_only(n.field) && peek().kind == Token::Kind::word;
    if (peek().kind != Token::Kind::op && !implicit_eq) {
      out = add(n);
      return true;
    }
    Token eq;
    eq.kind = Token::Kind::op;
    eq.op = Op::eq;
    eq.text = "==";
    eq.pos = peek().pos;
    const Token& op = implicit_eq ? eq : take();
    if (presence_only(n.field)) {
      return fail(op.pos, fmt::format("'{}' is a protocol test and takes no value", name.text));
    }
    n.op = op.op;
    if (n.op == Op::in) return parse_set(name, n, out);
    const Token& value = take();
    if (value.kind != Token::Kind::word) {
      return fail(value.pos, fmt::format("expected a value after '{}'", op.text));
    }
    const bool ordered = n.op != Op::eq && n.op != Op::ne;
    if (is_address(n.field)) {
      if (ordered)
        return fail(op.pos, "addresses take == or != (a prefix such as 192.0.2.0/24 matches every address in it)");
      if (auto p = dissect::IpPrefix::parse(value.text)) {
        n.prefix = *p;
      } else if (auto a = dissect::IpAddr::parse(value.text)) {
        n.prefix.addr = *a;
        n.prefix.length = static_cast<std::uint8_t>(a->size() * 8);
      } else {
        return fail(value.pos, fmt::format("'{}' is not an IPv4 or IPv6 address or prefix", value.text));
      }
    } else if (is_named(n.field)) {
      if (ordered) return fail(op.pos, fmt::format("'{}' takes == or !=", name.text));
      if (!parse_name_value(n, value)) return false;
    } else {
      auto v = parse_number(value.text);
      if (!v)
        return fail(value.pos, fmt::format("'{}' takes a number (decimal or 0x hex), not '{}'", name.text, value.text));
      n.number = *v;
    }
    out = add(n);
    return true;
  }

  // `frame in {1 3 7-9}`: numbers and inclusive ranges.
  bool parse_set(const Token& name, Node& n, std::uint32_t& out) {
    if (n.field != Field::frame && n.field != Field::spi && n.field != Field::seq && n.field != Field::len) {
      return fail(name.pos,
                  fmt::format("'in {{...}}' takes frame, spi, seq or len; combine '{}' tests with 'or'", name.text));
    }
    const Token& open = take();
    if (open.kind != Token::Kind::lbrace) return fail(open.pos, "expected '{' after 'in'");
    while (peek().kind == Token::Kind::word) {
      const Token& v = take();
      const std::size_t dash = v.text.find('-', 1);
      auto lo = parse_number(v.text.substr(0, dash));
      auto hi = dash == std::string_view::npos ? lo : parse_number(v.text.substr(dash + 1));
      if (!lo || !hi || *hi < *lo) {
        return fail(v.pos, fmt::format("'{}' is not a number or a range such as 7-9", v.text));
      }
      n.ranges.emplace_back(*lo, *hi);
    }
    if (peek().kind != Token::Kind::rbrace) return fail(peek().pos, "expected a number or '}'");
    take();
    if (n.ranges.empty()) return fail(open.pos, "the set is empty");
    // Sorted and merged, so a lookup is one binary search.
    std::sort(n.ranges.begin(), n.ranges.end());
    std::vector<std::pair<std::uint64_t, std::uint64_t>> merged;
    for (const auto& r : n.ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    n.ranges = std::move(merged);
    out = add(n);
    return true;
  }

  bool parse_name_value(Node& n, const Token& value) {
    const std::string v = lower(value.text);
    if (n.field == Field::verdict) {
      for (std::uint8_t i = 0; i < ipsec::kVerdictCount; ++i) {
        if (ipsec::verdict_name(static_cast<ipsec::Verdict>(i)) == v) {
          n.number = i;
          return true;
        }
      }
      if (ike::verdict_name(ike::MessageVerdict::ike_fail) == v) {
        n.number = static_cast<std::uint8_t>(ike::MessageVerdict::ike_fail);
        return true;
      }
      if (const auto a = capture::find_audit_verdict(v)) {
        if (!shown_as_verdict(*a)) {
          return fail(value.pos, fmt::format("'{}' is an audit verdict the verdict column does not show: use "
                                             "'audit == {}'",
                                             value.text, v));
        }
        n.number = kAuditValue | static_cast<std::uint8_t>(*a);
        return true;
      }
      return fail(value.pos, fmt::format("'{}' is not a verdict: {}", value.text, kVerdictList));
    }
    if (n.field == Field::audit) {
      if (const auto a = capture::find_audit_verdict(v)) {
        n.number = static_cast<std::uint8_t>(*a);
        return true;
      }
      return fail(value.pos, fmt::format("'{}' is not an audit verdict: {}", value.text, audit_list()));
    }
    if (n.field == Field::proto) {
      if (auto num = parse_number(v); num && *num < 256) {
        n.number = *num;
        return true;
      }
      for (unsigned p = 0; p < 256; ++p) {
        const char* pn = dissect::ip_protocol_name(static_cast<std::uint8_t>(p));
        if (pn != nullptr && lower(pn) == v) {
          n.number = p;
          return true;
        }
      }
      if (v == "icmpv6") {
        n.number = dissect::proto::icmpv6;
        return true;
      }
      return fail(value.pos, fmt::format("'{}' is not an IP protocol name or number", value.text));
    }
    // IKE exchange types: a set, since "informational" names both the IKEv1
    // and the IKEv2 exchange.
    std::uint64_t mask = 0;
    if (auto num = parse_number(v); num && *num < 64) mask = std::uint64_t{1} << *num;
    if (v == "main" || v == "main-mode" || v == "identity-protection") mask |= std::uint64_t{1} << 2;
    if (v == "aggressive" || v == "aggressive-mode") mask |= std::uint64_t{1} << 4;
    if (v == "quick" || v == "quick-mode") mask |= std::uint64_t{1} << 32;
    for (unsigned x = 0; x < 64; ++x) {
      const char* en = dissect::ike::exchange_name(static_cast<std::uint8_t>(x));
      if (en == nullptr) continue;
      std::string name = lower(en);
      std::replace(name.begin(), name.end(), ' ', '-');
      if (name == v) mask |= std::uint64_t{1} << x;
    }
    if (mask == 0) {
      return fail(value.pos, fmt::format("'{}' is not an IKE exchange: IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, "
                                         "INFORMATIONAL, main, aggressive, quick, or a number",
                                         value.text));
    }
    n.number = mask;
    return true;
  }

  std::string_view text_;
  DisplayFilter& out_;
  FilterError& error_;
  std::vector<Token> tokens_;
  std::size_t at_ = 0;
};

std::optional<DisplayFilter> DisplayFilter::parse(std::string_view text, FilterError& error) {
  DisplayFilter f;
  f.text_ = std::string(text);
  FilterParser p(text, f, error);
  if (!p.run()) return std::nullopt;
  return f;
}

namespace {

bool in_ranges(std::uint64_t v, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& r) noexcept {
  auto it = std::upper_bound(r.begin(), r.end(), v, [](std::uint64_t x, const auto& p) { return x < p.first; });
  return it != r.begin() && v <= std::prev(it)->second;
}

template <typename T>
bool compare(T a, Op op, T b) noexcept {
  switch (op) {
    case Op::in: return false;  // value_test() handles sets
    case Op::eq: return a == b;
    case Op::ne: return a != b;
    case Op::lt: return a < b;
    case Op::le: return a <= b;
    case Op::gt: return a > b;
    case Op::ge: return a >= b;
    case Op::present: return true;
  }
  return false;
}

bool value_test(std::uint64_t v, const Node& n) noexcept {
  return n.op == Op::in ? in_ranges(v, n.ranges) : compare<std::uint64_t>(v, n.op, n.number);
}

bool ports_valid(std::uint8_t l4) noexcept {
  return l4 == dissect::proto::tcp || l4 == dissect::proto::udp || l4 == dissect::proto::sctp;
}

// A field with a value in the outer and maybe the inner packet: `!=` means
// "present, and no layer has the value"; the other operators "some layer".
template <typename Pred>
bool any_layer(bool outer_present, bool inner_present, Op op, Pred equal_or_cmp) noexcept {
  if (!outer_present && !inner_present) return false;
  if (op == Op::present) return true;
  if (op == Op::ne) {
    return !((outer_present && equal_or_cmp(0, Op::eq)) || (inner_present && equal_or_cmp(1, Op::eq)));
  }
  return (outer_present && equal_or_cmp(0, op)) || (inner_present && equal_or_cmp(1, op));
}

}  // namespace

bool DisplayFilter::matches(const Row& row, std::uint64_t number, const AddressTable& addresses) const noexcept {
  if (nodes_.empty()) return true;
  return eval(root_, row, number, addresses);
}

bool DisplayFilter::eval(std::uint32_t index, const Row& row, std::uint64_t number,
                         const AddressTable& addresses) const noexcept {
  const Node& n = nodes_[index];
  switch (n.type) {
    case Node::Type::and_: return eval(n.left, row, number, addresses) && eval(n.right, row, number, addresses);
    case Node::Type::or_: return eval(n.left, row, number, addresses) || eval(n.right, row, number, addresses);
    case Node::Type::not_: return !eval(n.left, row, number, addresses);
    case Node::Type::test: break;
  }
  const bool inner = (row.flags & row_flag::decrypted) != 0;
  auto l4_is = [&](std::uint8_t p) { return row.l4 == p || (inner && row.inner_l4 == p); };
  auto addr_test = [&](std::size_t slot_src, std::size_t slot_dst) {
    const bool outer_present = row.addr[0] != 0;
    const bool inner_present = row.addr[2] != 0;
    return any_layer(outer_present, inner_present, n.op, [&](int layer, Op) {
      const std::size_t base = layer == 0 ? 0 : 2;
      const std::uint32_t a = row.addr[base + slot_src];
      const std::uint32_t b = slot_dst < 2 ? row.addr[base + slot_dst] : 0;
      return (a != 0 && n.prefix.contains(addresses.at(a))) || (b != 0 && n.prefix.contains(addresses.at(b)));
    });
  };
  auto port_test = [&](bool src, bool dst) {
    const bool outer_present = ports_valid(row.l4);
    const bool inner_present = inner && ports_valid(row.inner_l4);
    return any_layer(outer_present, inner_present, n.op, [&](int layer, Op op) {
      const std::size_t base = layer == 0 ? 0 : 2;
      return (src && compare<std::uint64_t>(row.port[base], op, n.number)) ||
             (dst && compare<std::uint64_t>(row.port[base + 1], op, n.number));
    });
  };
  switch (n.field) {
    case Field::esp: return row.kind == FrameKind::esp;
    case Field::ah: return row.kind == FrameKind::ah;
    case Field::ipsec: return row.kind == FrameKind::esp || row.kind == FrameKind::ah;
    case Field::ike: return row.kind == FrameKind::ike;
    case Field::ikev1: return row.kind == FrameKind::ike && (row.flags & row_flag::ike_v2) == 0;
    case Field::ikev2: return row.kind == FrameKind::ike && (row.flags & row_flag::ike_v2) != 0;
    case Field::nat_keepalive: return row.kind == FrameKind::nat_keepalive;
    case Field::ip: return (row.flags & (row_flag::ipv4 | row_flag::ipv6)) != 0;
    case Field::ipv4: return (row.flags & row_flag::ipv4) != 0;
    case Field::ipv6: return (row.flags & row_flag::ipv6) != 0;
    case Field::tcp: return l4_is(dissect::proto::tcp);
    case Field::udp: return l4_is(dissect::proto::udp);
    case Field::icmp: return l4_is(dissect::proto::icmp);
    case Field::icmpv6: return l4_is(dissect::proto::icmpv6);
    case Field::cleartext: return row.kind == FrameKind::cleartext;
    case Field::decrypted: return inner;
    case Field::trigger: return (row.flags & row_flag::trigger) != 0;
    case Field::malformed:
      return row.kind == FrameKind::malformed || row.verdict == static_cast<std::uint8_t>(ipsec::Verdict::malformed);
    case Field::src: return addr_test(0, 2);
    case Field::dst: return addr_test(1, 2);
    case Field::addr: return addr_test(0, 1);
    case Field::port: return port_test(true, true);
    case Field::sport: return port_test(true, false);
    case Field::dport: return port_test(false, true);
    case Field::spi: return (row.flags & row_flag::has_spi) != 0 && value_test(row.spi, n);
    case Field::seq: return (row.flags & row_flag::has_seq) != 0 && value_test(row.seq, n);
    case Field::verdict: {
      const bool audited = audit_shown(row);
      const bool checked = row.verdict != kNoVerdict;
      if (!audited && !checked) return false;
      if (n.op == Op::present) return true;
      bool has = false;
      if ((n.number & kAuditValue) != 0) {
        has = audited && row.audit == (n.number & 0xff);
      } else {
        // A finding takes the place of "ok": the packet verified, but it
        // is not what the policy asks for.
        has = checked && row.verdict == n.number &&
              !(audited && n.number == static_cast<std::uint8_t>(ipsec::Verdict::ok));
      }
      return n.op == Op::eq ? has : !has;
    }
    case Field::audit:
      if (audit_of(row) == capture::AuditVerdict::none) return false;
      if (n.op == Op::present) return true;
      return n.op == Op::eq ? row.audit == n.number : row.audit != n.number;
    case Field::exchange: {
      if (row.kind != FrameKind::ike) return false;
      if (n.op == Op::present) return true;
      const bool in = row.exchange < 64 && ((n.number >> row.exchange) & 1U) != 0;
      return n.op == Op::eq ? in : !in;
    }
    case Field::frame: return value_test(number, n);
    case Field::len: return value_test(row.orig_len, n);
    case Field::proto:
      if ((row.flags & (row_flag::ipv4 | row_flag::ipv6)) == 0) return false;
      if (n.op == Op::present) return true;
      return n.op == Op::eq ? l4_is(static_cast<std::uint8_t>(n.number)) : !l4_is(static_cast<std::uint8_t>(n.number));
  }
  return false;
}

}  // namespace ipsentry::tui
