#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::ipsec {

std::string_view verdict_name(Verdict v) noexcept {
  switch (v) {
    case Verdict::ok: return "ok";
    case Verdict::icv_fail: return "icv-fail";
    case Verdict::decrypt_fail: return "decrypt-fail";
    case Verdict::replay: return "replay";
    case Verdict::unknown_spi: return "unknown-spi";
    case Verdict::malformed: return "malformed";
    case Verdict::unverifiable: return "unverifiable";
    case Verdict::unsupported: return "unsupported";
  }
  return "?";
}

Verdict verdict_of(Reason r) noexcept {
  switch (r) {
#define IPSENTRY_REASON_VERDICT(name, verdict, text) \
  case Reason::name:                                 \
    return Verdict::verdict;
    IPSENTRY_REASONS(IPSENTRY_REASON_VERDICT)
#undef IPSENTRY_REASON_VERDICT
  }
  return Verdict::malformed;
}

std::string_view reason_name(Reason r) noexcept {
  switch (r) {
#define IPSENTRY_REASON_NAME(name, verdict, text) \
  case Reason::name:                              \
    return #name;
    IPSENTRY_REASONS(IPSENTRY_REASON_NAME)
#undef IPSENTRY_REASON_NAME
  }
  return "?";
}

std::string_view reason_description(Reason r) noexcept {
  switch (r) {
#define IPSENTRY_REASON_TEXT(name, verdict, text) \
  case Reason::name:                              \
    return text;
    IPSENTRY_REASONS(IPSENTRY_REASON_TEXT)
#undef IPSENTRY_REASON_TEXT
  }
  return "?";
}

}  // namespace ipsentry::ipsec
