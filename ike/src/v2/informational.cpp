// INFORMATIONAL exchanges (RFC 7296 1.4): Delete of CHILD_SAs and of the
// IKE SA, dead-peer detection (an empty request), and the
// AUTHENTICATION_FAILED an initiator sends after our AUTH (2.21.2).
#include <fmt/format.h>

#include "ipsentry/dissect/ike.hpp"
#include "state.hpp"

namespace ipsentry::ike::v2 {

namespace pt = dissect::ike::pt;
namespace xt = dissect::ike::xt;
using detail::ChildState;
using detail::kNever;
using detail::SaState;

void Daemon::Impl::on_informational_request(IkeSa& sa, const Datagram& d, const Message& m, Bytes hash, TimeNs now,
                                            Actions& out) {
  Message resp = response_to(sa, m);
  bool delete_ike = false;
  bool auth_failed = false;
  for (const auto& p : m.payloads) {
    if (const auto* del = std::get_if<DeletePayload>(&p.body)) {
      if (del->protocol == ProtocolId::ike) {
        delete_ike = true;
      } else {
        delete_children_request(sa, *del, resp, out);
      }
    } else if (const auto* n = std::get_if<NotifyPayload>(&p.body)) {
      // Other notifies (INVALID_SPI, status types) change nothing here.
      auth_failed = auth_failed || n->type == notify::authentication_failed;
    }
  }
  send_response(sa, resp, d, hash, out);
  if (auth_failed) {
    // As the IP Security Monitor counts them: every authentication failure is
    // also a failed negotiation.
    ++counters.authentication_failures;
    ++counters.negotiation_failures;
    event(out, EventKind::auth_failed,
          fmt::format("IKE SA {}: {} rejected our authentication: AUTHENTICATION_FAILED", sa.id, sa.remote.str()));
    destroy_sa(sa, now, out, "the peer rejected our authentication");
  } else if (delete_ike) {
    destroy_sa(sa, now, out, "deleted by the peer");
  }
}

void Daemon::Impl::delete_children_request(IkeSa& sa, const DeletePayload& del, Message& resp, Actions& out) {
  DeletePayload ours{del.protocol, {}};
  for (auto spi : del.spis) {
    // The peer names the SPI it receives on: our outbound one.
    Child* c = child_by_spi_out(sa.id, spi);
    if (c == nullptr || (c->suite.protocol == filters::IpsecProtocol::ah) != (del.protocol == ProtocolId::ah)) {
      continue;
    }
    // RFC 7296 1.4.1/2.25.1: a child we are deleting ourselves is not named again.
    if (c->state != ChildState::deleting) ours.spis.push_back(c->spi_in);
    remove_child(*c, "deleted by the peer", out);
  }
  if (!ours.spis.empty()) resp.payloads.push_back({pt::v2_delete, std::move(ours)});
}

void Daemon::Impl::send_informational(IkeSa& sa, Work work, TimeNs now, Actions& out) {
  Message m = request_of(sa, xt::v2_informational);
  if (auto* d = std::get_if<detail::DeleteChildWork>(&work)) {
    if (d->child != 0) {
      Child* c = find_child(d->child);
      if (c == nullptr || c->ike_sa != sa.id) return;  // gone meanwhile
      d->protocol = c->suite.protocol == filters::IpsecProtocol::ah ? ProtocolId::ah : ProtocolId::esp;
      d->spi = c->spi_in;
    }
    m.payloads.push_back({pt::v2_delete, DeletePayload{d->protocol, {d->spi}}});
  } else if (std::holds_alternative<detail::DeleteIkeWork>(work)) {
    m.payloads.push_back({pt::v2_delete, DeletePayload{ProtocolId::ike, {}}});
    sa.state = SaState::deleting;
  } else if (auto* n = std::get_if<detail::NotifyWork>(&work)) {
    m.payloads.push_back(detail::notify_payload(n->type));
  }
  send_request(sa, std::move(work), std::move(m), now, out);
}

void Daemon::Impl::on_informational_response(IkeSa& sa, Work& work, const Message&, TimeNs now, Actions& out) {
  if (auto* d = std::get_if<detail::DeleteChildWork>(&work)) {
    if (d->child == 0) {
      release_child_spi(d->spi);
    } else if (Child* c = find_child(d->child); c != nullptr && c->ike_sa == sa.id) {
      remove_child(*c, c->outbound_replaced ? "rekeyed" : "deleted", out);
    }
  } else if (std::holds_alternative<detail::DeleteIkeWork>(work)) {
    destroy_sa(sa, now, out, "deleted");
  }
  // DPD and notify answers: the peer is alive (last_received was updated).
}

void Daemon::Impl::queue_delete_child(IkeSa& sa, Child& c, TimeNs now, Actions& out) {
  if (c.state == ChildState::deleting) return;
  c.state = ChildState::deleting;
  queue(sa, detail::DeleteChildWork{c.id, 0, ProtocolId::esp}, now, out);
}

void Daemon::Impl::queue_delete_ike(IkeSa& sa, TimeNs now, Actions& out) {
  if (sa.state == SaState::init_sent || sa.state == SaState::auth_sent || sa.state == SaState::half_open) {
    destroy_sa(sa, now, out, "its profile changed");
    return;
  }
  if (sa.state == SaState::deleting) return;
  // Work still waiting will not happen on this SA.
  fail_acquires(sa, now, out);
  for (auto& w : sa.queue) {
    if (auto* r = std::get_if<ChildRequest>(&w); r != nullptr && r->spi != 0) release_child_spi(r->spi);
    if (auto* d = std::get_if<detail::DeleteChildWork>(&w); d != nullptr && d->child == 0) release_child_spi(d->spi);
  }
  sa.queue.clear();
  queue(sa, detail::DeleteIkeWork{}, now, out);
}

void Daemon::Impl::delete_now(IkeSa& sa, Actions& out) {
  Message m = request_of(sa, xt::v2_informational);
  m.message_id = sa.next_mid++;
  m.payloads.push_back({pt::v2_delete, DeletePayload{ProtocolId::ike, {}}});
  emit_send(out, sa.local, sa.remote, encode(m, sa.sk_out.get(), *random));
}

}  // namespace ipsentry::ike::v2
