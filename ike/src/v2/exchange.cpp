// Message-ID windows (RFC 7296 2.3, window size 1), retransmission (2.4),
// the response cache, and the queue of work waiting for the window.
//
// A request from the peer is processed only with the next expected ID and
// only once it authenticates; one with the previous ID and the same bytes
// (hash compared in constant time) gets the cached response; anything else
// is dropped and counted. A response is taken only for our outstanding
// request and only once it authenticates, so nothing unauthenticated
// changes an IKE SA.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "ipsentry/dissect/ike.hpp"
#include "ipsentry/dissect/wire.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace xt = dissect::ike::xt;
using detail::kNever;
using detail::SaState;

void Daemon::Impl::on_sa_datagram(IkeSa& sa, const Datagram& d, const Message& h, TimeNs now, Actions& out) {
  const std::uint64_t peer = sa.initiator ? h.spi_r : h.spi_i;
  const bool init_response = h.exchange == xt::v2_sa_init && h.response && sa.state == SaState::init_sent;
  if (!init_response && peer != sa.peer_spi()) {
    ++counters.invalid_cookies;
    invalid(out, now, fmt::format("message from {} with the wrong peer SPI {}", d.remote.str(), detail::hex_spi(peer)));
    return;
  }
  if (h.response) {
    on_response(sa, d, h, now, out);
  } else {
    on_request(sa, d, h, now, out);
  }
}

namespace {

/// Which of the peer's exchanges an IKE SA in `state` takes.
bool request_allowed(SaState state, std::uint8_t exchange, std::uint32_t mid) {
  switch (state) {
    case SaState::half_open: return exchange == xt::v2_auth && mid == 1;
    case SaState::established:
    case SaState::rekeyed:
    case SaState::deleting: return exchange == xt::v2_create_child || exchange == xt::v2_informational;
    case SaState::init_sent:
    case SaState::auth_sent: break;
  }
  return false;
}

/// The payload type an UNSUPPORTED_CRITICAL_PAYLOAD notify names (one octet).
Buffer critical_type(const Message& m) {
  for (const auto& p : m.payloads) {
    if (const auto* u = std::get_if<UnknownPayload>(&p.body); u != nullptr && u->critical) return {u->type};
  }
  return {0};
}

}  // namespace

void Daemon::Impl::on_request(IkeSa& sa, const Datagram& d, const Message& h, TimeNs now, Actions& out) {
  Buffer hash = detail::sha256(d.data);
  const bool fragment = is_fragment(d.data);
  if (sa.cache.valid && h.message_id == sa.cache.mid) {
    bool again = detail::equal_const(hash, sa.cache.request_hash);
    if (fragment) {
      // RFC 7383 2.6.1: of a fragmented request only fragment 1 brings the
      // response again, the others are ignored. The same bytes as the
      // fragment 1 answered (what the cache's hash is of), or a fragment 1
      // of that message that authenticates (the peer may have
      // re-fragmented it, 2.5.3).
      if (d.data.size() < dissect::ike::kHeaderLen + 8 ||
          dissect::load_be16(d.data.data() + dissect::ike::kHeaderLen + 4) != 1) {
        return;
      }
      if (!again) {
        Message header;
        Fragment f;
        std::string why;
        again = decode_fragment(d.data, sa.sk_in.get(), header, f, why) == DecodeStatus::ok;
        filters::cleanse(f.plain.data(), f.plain.size());
      }
    }
    if (again) {
      for (const auto& p : sa.cache.packets) emit_send(out, d.local, d.remote, p);
    } else {
      invalid(out, now,
              fmt::format("IKE SA {}: a different request with the answered message ID {}", sa.id, h.message_id));
    }
    return;
  }
  if (h.message_id != sa.peer_mid || !request_allowed(sa.state, h.exchange, h.message_id)) {
    invalid(out, now,
            fmt::format("IKE SA {}: unexpected request {} from {} (expected message ID {})", sa.id, h.summary(),
                        d.remote.str(), sa.peer_mid));
    return;
  }
  Message m;
  std::string why;
  DecodeStatus st = DecodeStatus::ok;
  if (fragment) {
    if (!collect_fragment(sa, d, sa.request_frags, m, st, why, now, out)) return;
    hash = sa.request_frag1_hash;  // what a retransmitted fragment 1 is compared with
  } else {
    st = decode(d.data, sa.sk_in.get(), m, why);
  }
  if (st == DecodeStatus::unsupported_critical) {
    // Authenticated (the SK payload opened), so it is answered.
    Message resp = response_to(sa, m);
    resp.payloads.push_back(detail::notify_payload(notify::unsupported_critical_payload, critical_type(m)));
    ++sa.peer_mid;
    send_response(sa, resp, d, hash, out);
    invalid(out, now, fmt::format("IKE SA {}: {}", sa.id, why));
    return;
  }
  if (st != DecodeStatus::ok) {
    invalid(out, now, fmt::format("IKE SA {}: request from {} dropped: {}", sa.id, d.remote.str(), why));
    return;
  }
  sa.last_received = now;
  ++sa.peer_mid;
  if (sa.state != SaState::half_open) peer_moved(sa, d, out);
  const std::uint64_t id = sa.id;
  dispatch_request(sa, d, m, hash, now, out);
  start_next(id, now, out);
}

void Daemon::Impl::dispatch_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                    Actions& out) {
  switch (m.exchange) {
    case xt::v2_auth: on_auth_request(sa, d, m, hash, now, out); break;
    case xt::v2_create_child: on_create_child_request(sa, d, m, hash, now, out); break;
    case xt::v2_informational: on_informational_request(sa, d, m, hash, now, out); break;
    default: break;
  }
}

void Daemon::Impl::on_response(IkeSa& sa, const Datagram& d, const Message& h, TimeNs now, Actions& out) {
  if (!sa.outstanding || h.message_id != sa.outstanding->mid || h.exchange != sa.outstanding->exchange) {
    invalid(out, now, fmt::format("IKE SA {}: unexpected response {} from {}", sa.id, h.summary(), d.remote.str()));
    return;
  }
  Message m;
  std::string why;
  const bool init = h.exchange == xt::v2_sa_init;
  DecodeStatus st = DecodeStatus::ok;
  if (!init && is_fragment(d.data)) {
    if (!collect_fragment(sa, d, sa.response_frags, m, st, why, now, out)) return;
  } else {
    st = decode(d.data, init ? nullptr : sa.sk_in.get(), m, why);
  }
  if (st != DecodeStatus::ok) {
    // Dropped without a trace on the SA: a forgery must not stop us from
    // taking the real response (we keep retransmitting meanwhile).
    invalid(out, now, fmt::format("IKE SA {}: response from {} dropped: {}", sa.id, d.remote.str(), why));
    return;
  }
  const std::uint64_t id = sa.id;
  if (init) {
    on_init_response(sa, d, m, now, out);
  } else {
    sa.last_received = now;
    if (sa.state != SaState::auth_sent) peer_moved(sa, d, out);
    Work work = std::move(sa.outstanding->work);
    sa.outstanding.reset();
    dispatch_response(sa, std::move(work), m, now, out);
  }
  start_next(id, now, out);
}

void Daemon::Impl::dispatch_response(IkeSa& sa, Work work, const Message& m, TimeNs now, Actions& out) {
  if (std::holds_alternative<detail::AuthWork>(work)) {
    on_auth_response(sa, m, now, out);
  } else if (auto* r = std::get_if<ChildRequest>(&work)) {
    on_create_child_response(sa, std::move(*r), m, now, out);
  } else if (auto* k = std::get_if<detail::IkeRekeyWork>(&work)) {
    on_ike_rekey_response(sa, std::move(*k), m, now, out);
  } else {
    on_informational_response(sa, work, m, now, out);
  }
}

Message Daemon::Impl::request_of(const IkeSa& sa, std::uint8_t exchange) const {
  Message m;
  m.spi_i = sa.spi_i;
  m.spi_r = sa.spi_r;
  m.exchange = exchange;
  m.initiator = sa.initiator;
  m.response = false;
  m.encrypted = exchange != xt::v2_sa_init;
  return m;
}

Message Daemon::Impl::response_to(const IkeSa& sa, const Message& request) const {
  Message m = request_of(sa, request.exchange);
  m.response = true;
  m.message_id = request.message_id;
  return m;
}

void Daemon::Impl::emit_send(Actions& out, const Endpoint& l, const Endpoint& r, Buffer bytes) {
  // Everything on the port 4500 socket carries the non-ESP marker (RFC 3948 2.2).
  out.emplace_back(SendAction{l, r, std::move(bytes), l.port == 4500});
}

std::vector<Buffer> Daemon::Impl::encode_out(const IkeSa& sa, const Message& m, const Endpoint& from,
                                             const Endpoint& remote) {
  if (!m.encrypted) return {encode(m, nullptr, *random)};
  if (!sa.fragmentation || options.fragment_size == 0) return {encode(m, sa.sk_out.get(), *random)};
  // The fragment size is that of the IP datagram, as charon's: without the
  // IP and UDP headers and the non-ESP marker on port 4500.
  const std::size_t headers = (remote.addr.is_v4() ? 20 : 40) + 8 + (from.port == 4500 ? 4 : 0);
  const std::size_t max = options.fragment_size > headers + 64 ? options.fragment_size - headers : 64;
  return encode_fragments(m, *sa.sk_out, *random, max);
}

bool Daemon::Impl::collect_fragment(IkeSa& sa, const Datagram& d, FragmentSet& set, Message& m, DecodeStatus& st,
                                    std::string& why, TimeNs now, Actions& out) {
  Fragment f;
  Message header;
  if (!sa.fragmentation) {
    why = "a fragment, and IKE fragmentation was not negotiated";
    st = DecodeStatus::malformed;
  } else {
    st = decode_fragment(d.data, sa.sk_in.get(), header, f, why);
  }
  if (st != DecodeStatus::ok) {
    // Unauthenticated fragments are not kept (RFC 7383 2.6): a forgery
    // cannot displace the real ones.
    invalid(out, now, fmt::format("IKE SA {}: fragment from {} dropped: {}", sa.id, d.remote.str(), why));
    return false;
  }
  const std::uint16_t number = f.number;
  const std::uint16_t total = f.total;
  if (number == 1 && !header.response) sa.request_frag1_hash = detail::sha256(d.data);
  switch (set.add(header.message_id, std::move(f))) {
    case FragmentSet::Added::kept: return false;
    case FragmentSet::Added::duplicate: return false;
    case FragmentSet::Added::complete: break;
    case FragmentSet::Added::inconsistent:
      invalid(out, now,
              fmt::format("IKE SA {}: fragment {} of {} of message {} dropped: other fragments say more", sa.id, number,
                          total, header.message_id));
      return false;
    case FragmentSet::Added::too_many:
      invalid(out, now,
              fmt::format("IKE SA {}: fragment {} of {} dropped: more than {} fragments", sa.id, number, total,
                          FragmentSet::kMaxFragments));
      return false;
    case FragmentSet::Added::too_big:
      invalid(out, now,
              fmt::format("IKE SA {}: message {} dropped: its fragments exceed {} bytes", sa.id, header.message_id,
                          FragmentSet::kMaxBytes));
      return false;
  }
  std::uint8_t first = 0;
  Buffer plain = set.take(first);
  m = std::move(header);
  st = decode_reassembled(plain, first, m, why);
  filters::cleanse(plain.data(), plain.size());
  return true;
}

void Daemon::Impl::send_request(IkeSa& sa, Work work, Message m, TimeNs now, Actions& out) {
  m.message_id = sa.next_mid++;
  detail::Outstanding o;
  o.mid = m.message_id;
  o.exchange = m.exchange;
  o.work = std::move(work);
  o.packets = encode_out(sa, m, sa.local, sa.remote);
  o.deadline = now + retransmit_delay(0);
  for (const auto& p : o.packets) emit_send(out, sa.local, sa.remote, p);
  sa.outstanding = std::move(o);
}

void Daemon::Impl::send_response(IkeSa& sa, const Message& m, const Datagram& request, Bytes request_hash,
                                 Actions& out) {
  sa.cache.valid = true;
  sa.cache.mid = m.message_id;
  sa.cache.request_hash.assign(request_hash.begin(), request_hash.end());
  // RFC 7296 2.11: a response goes where the request came from. RFC 7383
  // 2.5: a response to a fragmented request may itself be fragmented.
  sa.cache.packets = encode_out(sa, m, request.local, request.remote);
  for (const auto& p : sa.cache.packets) emit_send(out, request.local, request.remote, p);
}

void Daemon::Impl::queue(IkeSa& sa, Work w, TimeNs now, Actions& out) {
  sa.queue.push_back(std::move(w));
  start_next(sa.id, now, out);
}

void Daemon::Impl::start_next(std::uint64_t sa_id, TimeNs now, Actions& out) {
  for (;;) {
    IkeSa* sa = find_sa(sa_id);
    if (sa == nullptr || sa->outstanding || sa->queue.empty()) return;
    if (sa->state != SaState::established && sa->state != SaState::rekeyed && sa->state != SaState::deleting) return;
    // The first work that is due (a retry after TEMPORARY_FAILURE waits).
    auto it = std::find_if(sa->queue.begin(), sa->queue.end(), [&](const Work& w) {
      const auto* r = std::get_if<ChildRequest>(&w);
      return r == nullptr || r->not_before <= now;
    });
    if (it == sa->queue.end()) return;
    Work w = std::move(*it);
    sa->queue.erase(it);
    start_work(*sa, std::move(w), now, out);
  }
}

void Daemon::Impl::start_work(IkeSa& sa, Work work, TimeNs now, Actions& out) {
  if (auto* r = std::get_if<ChildRequest>(&work)) {
    if (sa.state != SaState::established) {
      child_request_failed(sa, *r, "the IKE SA is going away", now, out);
      return;
    }
    send_create_child(sa, std::move(*r), now, out);
  } else if (auto* k = std::get_if<detail::IkeRekeyWork>(&work)) {
    if (sa.state == SaState::established) send_ike_rekey(sa, std::move(*k), now, out);
  } else {
    send_informational(sa, std::move(work), now, out);
  }
}

TimeNs Daemon::Impl::retransmit_delay(unsigned retransmits) const noexcept {
  const double f = std::pow(options.retransmit_base, static_cast<double>(retransmits));
  return static_cast<TimeNs>(static_cast<double>(options.retransmit_timeout) * f);
}

void Daemon::Impl::retransmit(IkeSa& sa, TimeNs now, Actions& out) {
  auto& o = *sa.outstanding;
  if (o.retransmits >= options.retransmit_tries) {
    request_timed_out(sa, now, out);
    return;
  }
  ++o.retransmits;
  o.deadline = now + retransmit_delay(o.retransmits);
  ++counters.retransmissions;
  event(out, EventKind::retransmit,
        fmt::format("IKE SA {}: retransmit {} of {} request {} to {}", sa.id, o.retransmits, detail::work_name(o.work),
                    o.mid, sa.remote.str()));
  for (const auto& p : o.packets) emit_send(out, sa.local, sa.remote, p);
}

void Daemon::Impl::request_timed_out(IkeSa& sa, TimeNs now, Actions& out) {
  const Work& w = sa.outstanding->work;
  if (sa.state == SaState::init_sent || sa.state == SaState::auth_sent) {
    sa.failed_silent = sa.state == SaState::init_sent;
    initiator_failed(sa, fmt::format("no answer from {} to {}", sa.remote.str(), detail::work_name(w)), now, out);
    return;
  }
  if (!std::holds_alternative<detail::DeleteIkeWork>(w)) {
    ++counters.dpd_timeouts;
    event(out, EventKind::dpd_timeout,
          fmt::format("IKE SA {}: {} did not answer {}: removing the IKE SA and its children", sa.id, sa.remote.str(),
                      detail::work_name(w)));
  }
  destroy_sa(sa, now, out, "the peer does not answer");
}

void Daemon::Impl::peer_moved(IkeSa& sa, const Datagram& d, Actions& out) {
  if (d.remote == sa.remote && d.local == sa.local) return;
  // RFC 7296 2.23: only a peer behind a NAT may move, and only an
  // authenticated message (we are called after decode succeeded) moves it.
  if (!sa.nat_remote) return;
  event(out, EventKind::peer_moved,
        fmt::format("IKE SA {}: peer moved from {} to {} (authenticated IKE message)", sa.id, sa.remote.str(),
                    d.remote.str()));
  sa.remote = d.remote;
  sa.local = d.local;
  // The children's ESP in UDP follows (the driver updates their outbound SAs).
  out.emplace_back(UpdatePeerAction{sa.id, sa.remote});
}

void Daemon::Impl::child_mapping(std::uint64_t child, const Endpoint& from, TimeNs /*now*/, Actions& out) {
  const Child* c = find_child(child);
  if (c == nullptr) return;
  IkeSa* sa = find_sa(c->ike_sa);
  // The data path learns a mapping per peer address and only from the
  // newest authenticated packet; the IKE SA takes the port it found, for a
  // peer behind a NAT only (RFC 7296 2.23), and only while that peer is who
  // it talks to.
  if (sa == nullptr || !sa->established() || !sa->nat_remote || sa->remote.addr != from.addr ||
      sa->remote.port == from.port) {
    return;
  }
  event(out, EventKind::peer_moved,
        fmt::format("IKE SA {}: peer's NAT mapping moved from {} to {} (authenticated ESP of CHILD_SA {})", sa->id,
                    sa->remote.str(), from.str(), child));
  sa->remote.port = from.port;
  out.emplace_back(UpdatePeerAction{sa->id, sa->remote});
}

}  // namespace ipsentry::ike::v2
