#include "ipsentry/enforce/exemption_counters.hpp"

#include <charconv>

#include "ipsentry/enforce/rules.hpp"

namespace ipsentry::enforce {

namespace {

std::uint64_t number(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

void add_exemption_counters(std::string_view save, std::vector<ExemptionCount>& into) {
  while (!save.empty()) {
    const std::size_t eol = save.find('\n');
    std::string_view line = save.substr(0, eol);
    save = eol == std::string_view::npos ? std::string_view{} : save.substr(eol + 1);
    // "[packets:bytes] -A CHAIN ... --comment ipsentry-exempt:TAG -j RETURN"
    const std::size_t at = line.find(kExemptionComment);
    if (line.size() < 5 || line[0] != '[' || at == std::string_view::npos) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon > line.find(']')) continue;
    std::string_view tag = line.substr(at + kExemptionComment.size());
    tag = tag.substr(0, tag.find_first_of(" \"'"));
    ExemptionCount* c = nullptr;
    for (auto& x : into) {
      if (x.tag == tag) c = &x;
    }
    if (c == nullptr) c = &into.emplace_back(ExemptionCount{std::string(tag), 0});
    c->packets += number(line.substr(1, colon - 1));
  }
}

std::vector<ExemptionCount> exemption_counters() {
  std::vector<ExemptionCount> out;
  for (const char* prog : {"iptables-save", "ip6tables-save"}) {
    std::string text;
    std::string err;
    if (run_program({prog, "-c"}, "", &text, err) == 0) add_exemption_counters(text, out);
  }
  return out;
}

}  // namespace ipsentry::enforce
