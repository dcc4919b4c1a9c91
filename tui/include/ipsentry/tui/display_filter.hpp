// The display filter language of the packet list, evaluated on index rows.
//
//   esp and verdict != ok
//   (src == 192.0.2.0/25 or dst == 2001:db8::/32) and not icmp
//   spi == 0xc0ffee01 and seq >= 100
//   ike.exchange == IKE_AUTH or ike.exchange == quick
//   frame in {1 3 7-9}
//   verdict == cleartext-leak or audit == policy-mismatch
//
// A bare name tests for presence (a protocol, or a field the frame has).
// Address, port and protocol tests look at the outer packet and at the
// decrypted inner packet, as Wireshark's fields match any layer; a
// comparison with a field the frame does not have is false, so
// `verdict != ok` lists the IPsec and IKE frames that failed and no
// cleartext ones.
//
// With a policy audit (tui --policy), `verdict` is also what the verdict
// column shows of it: cleartext-leak, policy-mismatch, blocked-seen and
// cleartext-allowed match the frames the audit gave that verdict, and such
// a frame is not `ok` even when its IPsec verified, so `verdict != ok`
// lists the audit's findings (and the cleartext it allowed) too. `audit`
// tests every audit verdict: conforms, permitted, exempt, cleartext-allowed,
// cleartext-leak, policy-mismatch, blocked-seen; bare, any verdict (the
// frame was judged).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/tui/index.hpp"

namespace ipsentry::tui {

struct FilterError {
  std::size_t position = 0;  // byte offset in the expression
  std::string message;
};

class DisplayFilter {
 public:
  /// Parses `text`. An empty text matches every frame. On error returns
  /// nullopt and fills `error`.
  static std::optional<DisplayFilter> parse(std::string_view text, FilterError& error);

  [[nodiscard]] bool matches(const Row& row, std::uint64_t number, const AddressTable& addresses) const noexcept;
  [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
  [[nodiscard]] const std::string& text() const noexcept { return text_; }

  enum class Op : std::uint8_t { present, eq, ne, lt, le, gt, ge, in };
  enum class Field : std::uint8_t {
    // Presence-only names.
    esp,
    ah,
    ipsec,
    ike,
    ikev1,
    ikev2,
    nat_keepalive,
    ip,
    ipv4,
    ipv6,
    tcp,
    udp,
    icmp,
    icmpv6,
    cleartext,
    decrypted,
    trigger,
    malformed,
    // Fields with values.
    src,
    dst,
    addr,
    port,
    sport,
    dport,
    spi,
    seq,
    verdict,
    exchange,
    frame,
    len,
    proto,
    audit
  };

  struct Node {
    enum class Type : std::uint8_t { test, and_, or_, not_ } type = Type::test;
    Field field = Field::esp;
    Op op = Op::present;
    std::uint64_t number = 0;
    dissect::IpPrefix prefix;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // `in`: sorted, inclusive
    std::uint32_t left = 0;                                       // child node indexes
    std::uint32_t right = 0;
  };

 private:
  [[nodiscard]] bool eval(std::uint32_t node, const Row& row, std::uint64_t number,
                          const AddressTable& addresses) const noexcept;
  std::vector<Node> nodes_;
  std::uint32_t root_ = 0;
  std::string text_;
  friend class FilterParser;
};

}  // namespace ipsentry::tui
