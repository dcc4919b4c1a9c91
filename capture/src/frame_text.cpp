#include "ipsentry/capture/frame_text.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "ipsentry/dissect/summary.hpp"
#include "ipsentry/dissect/text_table.hpp"

namespace ipsentry::capture {

using ipsec::Verdict;

std::string hex_bytes(const std::uint8_t* p, std::size_t n) { return dissect::hex_string(dissect::Bytes(p, n), n); }

std::string selector_protocol(const filters::PacketSelector& s) {
  if (const char* n = dissect::ip_protocol_name(s.protocol); n != nullptr && *n != '\0') return n;
  return fmt::format("proto {}", s.protocol);
}

std::string selector_text(const filters::PacketSelector& s) {
  std::string out = fmt::format("{} → {} {}", s.src.str(), s.dst.str(), selector_protocol(s));
  if (s.has_ports) out += fmt::format(" {} → {}", s.sport, s.dport);
  if (s.has_icmp_type) out += fmt::format(" type {}", s.sport);
  return out;
}

std::string audit_details(const AuditResult& a) {
  const char* sense = a.sense == filters::Sense::inbound ? "inbound" : "outbound";
  std::string out;
  if (a.sel.has_ports) out = fmt::format("port {} → {} ", a.sel.sport, a.sel.dport);
  if (a.sel.has_icmp_type) out = fmt::format("type {} ", a.sel.sport);
  if (a.entry != nullptr) {
    out += fmt::format("[{} '{}', {}]", a.entry->exemption ? "exemption" : "policy", a.entry->name, sense);
  } else {
    out += fmt::format("[no policy, {}]", sense);
  }
  if (a.why != nullptr) out += fmt::format(": {}", a.why);
  if (a.verdict == AuditVerdict::policy_mismatch && a.own != nullptr && a.own != a.entry) {
    out += fmt::format(" (its SA belongs to '{}')", a.own->name);
  }
  return out;
}

std::string sa_label(const ipsec::Sad& sad, std::int32_t index) {
  const auto& sa = sad.at(static_cast<std::size_t>(index));
  return sa.config().spi ? fmt::format("0x{:08x}", *sa.config().spi) : sa.name();
}

std::string handover_text(const SaTimeline& t) {
  if (t.successor < 0) return "-";
  std::string out = fmt::format("gap {:.3f} s", t.gap_s);
  if (t.cleartext_in_gap != 0) out += fmt::format(", {} cleartext", t.cleartext_in_gap);
  if (t.overlap_s > 0) out += fmt::format(", overlap {:.3f} s", t.overlap_s);
  return out;
}

std::string audit_counts_text(const PolicyAudit& audit) {
  std::string counts;
  for (std::size_t i = 1; i < kAuditVerdictCount; ++i) {
    if (audit.counts()[i] == 0) continue;
    counts +=
        fmt::format("{}{} {}", counts.empty() ? "" : ", ", audit.counts()[i], audit_name(static_cast<AuditVerdict>(i)));
  }
  return counts.empty() ? "no IP packets judged" : counts;
}

std::vector<std::string> audit_policy_table(const PolicyAudit& audit, std::size_t indent) {
  using dissect::Align;
  std::vector<std::vector<std::string>> rows;
  for (std::size_t e = 0; e < audit.entry_counts().size(); ++e) {
    const auto& c = audit.entry_counts()[e];
    auto n = [&](AuditVerdict v) { return c[static_cast<std::size_t>(v)]; };
    if (n(AuditVerdict::conforms) + n(AuditVerdict::cleartext_leak) + n(AuditVerdict::policy_mismatch) +
            n(AuditVerdict::blocked_seen) + n(AuditVerdict::fallback) + n(AuditVerdict::exempt) ==
        0) {
      continue;
    }
    const auto& entry = audit.entry(e);
    rows.push_back({entry.name, entry.sense == filters::Sense::inbound ? "in" : "out",
                    entry.exemption ? "exempt" : filters::to_string(entry.action),
                    fmt::format("{}", n(AuditVerdict::conforms)), fmt::format("{}", n(AuditVerdict::cleartext_leak)),
                    fmt::format("{}", n(AuditVerdict::policy_mismatch)),
                    fmt::format("{}", n(AuditVerdict::blocked_seen)), fmt::format("{}", n(AuditVerdict::fallback)),
                    fmt::format("{}", n(AuditVerdict::exempt))});
  }
  if (rows.empty()) return {};
  const std::vector<dissect::TableColumn> cols{{"policy"},
                                               {"sense"},
                                               {"action"},
                                               {"conforms", Align::right},
                                               {"cleartext-leak", Align::right},
                                               {"policy-mismatch", Align::right},
                                               {"blocked-seen", Align::right},
                                               {"cleartext-allowed", Align::right},
                                               {"exempt", Align::right}};
  return dissect::text_table(cols, rows, indent);
}

std::vector<std::string> audit_timeline(const PolicyAudit& audit, const ipsec::Sad& sad,
                                        const std::function<std::string(std::int64_t)>& time) {
  std::vector<std::string> out;
  const auto& tl = audit.timelines();
  for (std::size_t i = 0; i < tl.size(); ++i) {
    // Each chain once, from the SA that started it.
    if (!tl[i].seen || tl[i].predecessor >= 0) continue;
    const auto& c0 = sad.at(i).config();
    out.push_back(fmt::format("  '{}' {} {} {}:", audit.entry(tl[i].entry).name, filters::to_string(c0.protocol),
                              c0.src ? c0.src->str() : "*", c0.dst ? c0.dst->str() : "*"));
    for (auto j = static_cast<std::int32_t>(i); j >= 0;) {
      const auto& t = tl[static_cast<std::size_t>(j)];
      std::string late;
      if (t.after_successor != 0) late += fmt::format(", {} after its successor took over", t.after_successor);
      if (t.after_lifetime != 0) late += fmt::format(", {} after its lifetime ({} s)", t.after_lifetime, t.lifetime_s);
      out.push_back(fmt::format("    {:<10}  {} .. {}  {} packet{}{}{}", sa_label(sad, j), time(t.first_ns),
                                time(t.last_ns), t.packets, t.packets == 1 ? "" : "s", late,
                                t.successor >= 0 ? fmt::format("; then {}", handover_text(t)) : std::string()));
      j = t.successor;
    }
  }
  return out;
}

std::string frame_summary(const dissect::Packet& p) {
  if (p.ip.version == 0 && p.malformed == nullptr) {
    return fmt::format("non-IP frame (ethertype 0x{:04x})", p.link.ethertype);
  }
  dissect::SummaryText t;
  dissect::summarize(p, false, t);  // with the reason when it does not parse
  return std::string(t.view());
}

const char* layer_label(const LayerRecord& l) noexcept {
  if (l.protocol == filters::IpsecProtocol::ah) return "AH";
  return l.udp_encap ? "ESP/UDP" : "ESP";
}

std::string layer_details(const LayerRecord& l) {
  if (l.verdict == Verdict::ok) {
    std::string s(l.inner.view());
    if (l.reason == ipsec::Reason::verified_no_integrity) s += " (SA has no integrity protection)";
    return s;
  }
  std::string s(ipsec::reason_description(l.reason));
  if ((l.reason == ipsec::Reason::icv_mismatch || l.reason == ipsec::Reason::tag_mismatch) && l.icv.len != 0) {
    if (l.icv.expected_known) {
      s += fmt::format(": expected {}, got {}", hex_bytes(l.icv.expected.data(), l.icv.len),
                       hex_bytes(l.icv.received.data(), l.icv.len));
    } else {
      s += fmt::format(": got {}", hex_bytes(l.icv.received.data(), l.icv.len));
    }
  }
  if (l.detail != nullptr) s += fmt::format(" ({})", l.detail);
  if (l.reason == ipsec::Reason::icv_unchecked && l.inner.size != 0) s += fmt::format(": {}", l.inner.view());
  return s;
}

void add_verification(dissect::Tree& tree, const FrameResult& r, const ipsec::Sad& sad) {
  if (r.layer_count == 0) return;
  for (std::size_t i = 0; i < r.layer_count; ++i) {
    const LayerRecord& l = r.layers[i];
    if (l.reason != ipsec::Reason::malformed_packet || l.detail == nullptr) continue;
    // The verdict will say why the packet does not parse: the dissector's
    // own note of it would say it a second time.
    const std::string note = fmt::format("[malformed: {}]", l.detail);
    auto& top = tree.root.children;
    top.erase(std::remove_if(top.begin(), top.end(), [&](const dissect::Node& n) { return n.text == note; }),
              top.end());
  }
  // Nested layers are found in decrypted buffers the Verifier does not
  // keep, so every verdict goes under the outermost IPsec header.
  dissect::Node* at = dissect::find_role(tree.root, dissect::NodeRole::ipsec_header, 0);
  if (at == nullptr) at = &tree.root;
  for (std::size_t i = 0; i < r.layer_count; ++i) {
    const LayerRecord& l = r.layers[i];
    std::string text = fmt::format("Verdict{}: {}", r.layer_count > 1 ? fmt::format(" (layer {})", i + 1) : "",
                                   ipsec::verdict_name(l.verdict));
    if (l.verdict != Verdict::ok || l.reason != ipsec::Reason::verified) text += " — " + layer_details(l);
    if (l.verdict == Verdict::ok && l.reason == ipsec::Reason::verified) text += " — ICV verified";
    if (l.sa >= 0) {
      const auto& sa = sad.at(static_cast<std::size_t>(l.sa));
      text +=
          fmt::format(" (SA {}, {}, {})", sa.name(), filters::to_string(sa.config().mode), sa_algorithms(sa.config()));
    }
    at->add_here(std::move(text), at->offset, 0).role =
        l.verdict == Verdict::ok ? dissect::NodeRole::verdict_ok : dissect::NodeRole::verdict_failed;

    if (l.verdict == Verdict::ok && l.next_header != 0) {
      at->add_here(
          fmt::format("Next header: {} ({}), pad length {}",
                      dissect::ip_protocol_name(l.next_header) ? dissect::ip_protocol_name(l.next_header) : "?",
                      l.next_header, l.pad_len),
          at->offset, 0);
    }
  }
  if (r.decrypted.empty()) return;
  const LayerRecord& last = r.layers[r.layer_count - 1];
  const std::uint16_t buf = tree.add_buffer(r.decrypted);
  dissect::Node& n = at->add(fmt::format("Decrypted inner packet ({} SPI 0x{:08x}, {} bytes)", layer_label(last),
                                         last.spi, r.decrypted.size()),
                             0, static_cast<std::uint32_t>(r.decrypted.size()));
  n.buffer = buf;
  n.role = dissect::NodeRole::decrypted_packet;
  dissect::Packet inner;
  dissect::dissect_ip(tree.buffers.back(), inner);
  dissect::add_packet_layers(inner, n, buf);
}

std::string sa_algorithms(const filters::SaConfig& c) {
  if (c.protocol == filters::IpsecProtocol::ah) return std::string(filters::integrity_info(c.integrity).name);
  std::string s(filters::cipher_info(c.cipher).name);
  if (c.integrity != filters::Integrity::none) s += "/" + std::string(filters::integrity_info(c.integrity).name);
  if (!c.enc_key.empty() && filters::cipher_info(c.cipher).mode != filters::CipherMode::none) {
    std::size_t bits = (c.enc_key.size() - filters::cipher_info(c.cipher).salt_len) * 8;
    if (filters::cipher_info(c.cipher).key_sizes[1] != 0) s += fmt::format(" ({}-bit)", bits);
  }
  return s;
}

std::uint64_t active_sas(const ipsec::Sad& sad) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < sad.size(); ++i) {
    const auto& c = sad.at(i).counters;
    std::uint64_t seen = 0;
    for (auto v : c.verdicts) seen += v;
    if (seen != 0 || c.sent.packets != 0) ++n;
  }
  return n;
}

std::vector<StatRow> monitor_rows(const ipsec::GlobalCounters& g, const ipsec::Sad& sad) {
  std::vector<StatRow> rows{
      {"Active Security Associations", active_sas(sad)},
      {"Bad SPI Packets", g.bad_spi_packets},
      {"Packets Not Decrypted", g.packets_not_decrypted},
      {"Packets Not Authenticated", g.packets_not_authenticated},
      {"Packets With Replay Detection", g.packets_with_replay_detection},
      {"Confidential Bytes Received", g.received.confidential_bytes},
      {"Authenticated Bytes Received", g.received.authenticated_bytes},
      {"Transport Bytes Received", g.received.transport_bytes},
      {"Bytes Received In Tunnels", g.received.tunnel_bytes},
  };
  auto count = [&](Verdict v) { return g.verdicts[static_cast<std::size_t>(v)]; };
  if (count(Verdict::malformed) != 0) rows.push_back({"Malformed IPsec Packets", count(Verdict::malformed)});
  if (count(Verdict::unverifiable) != 0) rows.push_back({"Unverifiable IPsec Packets", count(Verdict::unverifiable)});
  if (count(Verdict::unsupported) != 0) {
    rows.push_back({"Packets With Unsupported Algorithms", count(Verdict::unsupported)});
  }
  return rows;
}

std::vector<StatRow> ike_rows(const ike::Statistics& s) {
  return {
      {"IKE Messages", s.messages},
      {"Encrypted Messages", s.encrypted},
      {"Decrypted Messages", s.decrypted},
      {"Main Modes (IKE SAs established)", s.main_modes},
      {"Quick Modes (CHILD SAs established)", s.quick_modes},
      {"Negotiation Failures", s.negotiation_failures},
      {"Authentication Failures", s.authentication_failures},
      {"Invalid Cookies Received", s.invalid_cookies},
      {"Invalid Packets Received", s.invalid_packets},
      {"Unanswered Negotiations", s.no_answer},
      {"Soft Associations", s.soft_associations},
      {"Retransmissions", s.retransmissions},
  };
}

}  // namespace ipsentry::capture
