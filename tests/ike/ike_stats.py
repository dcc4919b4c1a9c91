"""Where the IKE tests read `ipsentry stats --json`: every field name of its
IKE section is used here and nowhere else, so that a change of the JSON is
one edit. The names are ik-driver's IkeDriver::snapshot_json (the IP
Security Monitor's Main Mode table as `main_mode`, with the half-open count
and whether cookies are on; `ike_sas` with their children; `acquires`;
`driver`), which follow ike::v2::Snapshot (ike/ikev2.hpp)."""

# The counters the tests read, by the name the tests use -> the JSON's name.
COUNTERS = {
    "ike_established": "ike_sas_established",
    "child_established": "quick_modes",
    "negotiation_failures": "negotiation_failures",
    "authentication_failures": "authentication_failures",
    "invalid_cookies": "invalid_cookies",
    "invalid_packets": "invalid_packets",
    "soft_associations": "soft_associations",
    "retransmissions": "retransmissions",
    "cookies_sent": "cookies_sent",
    "half_open_dropped": "half_open_dropped",
    "rekeys": "rekeys",
    "dpd_timeouts": "dpd_timeouts",
    # Counted by Notify reason; NO_PROPOSAL_CHOSEN has no counter of its own
    # in the Monitor's table: see no_proposal_chosen().
}


def section(stats):
    """The IKE part of the statistics document ({} when there is none)."""
    return (stats or {}).get("ike") or {}


def _table(stats):
    s = section(stats)
    return s.get("main_mode") or s.get("counters") or {}


def counter(stats, name):
    return int(_table(stats).get(COUNTERS[name], 0) or 0)


def counters(stats):
    return {k: counter(stats, k) for k in COUNTERS}


def no_proposal_chosen(stats):
    """Negotiations that ended with NO_PROPOSAL_CHOSEN (by reason, if the JSON
    counts failures by Notify, else the failures as a whole)."""
    s = section(stats)
    reasons = s.get("failure_reasons") or _table(stats).get("failure_reasons") or {}
    if reasons:
        return int(reasons.get("NO_PROPOSAL_CHOSEN", 0))
    return counter(stats, "negotiation_failures")


def half_open(stats):
    return int(_table(stats).get("half_open", section(stats).get("half_open", 0)) or 0)


def cookies_on(stats):
    return bool(_table(stats).get("cookies_on", section(stats).get("cookies_on", False)))


def acquires(stats):
    """{started, in_flight, packets_held, sent_protected, sent_cleartext, discarded, ...}"""
    return section(stats).get("acquires") or {}


def active_soft_associations(stats):
    return int(_table(stats).get("active_soft_associations", 0) or 0)


def driver(stats):
    """{datagrams_received, keepalives_received, stray_esp, installs, removes, ...}"""
    return section(stats).get("driver") or {}


def _spi64(v):
    return int(v, 16) if isinstance(v, str) else int(v or 0)


def _spi32(v):
    return int(v, 16) if isinstance(v, str) else int(v or 0)


def ike_sas(stats):
    """[{spi_i, spi_r, state, initiator, remote, udp_encap, children: [{spi_in, spi_out, mode}]}] as ints and strings."""
    out = []
    for sa in section(stats).get("ike_sas") or []:
        remote = sa.get("remote") or {}
        if isinstance(remote, str):  # "192.0.2.1:4500", "[2001:db8::1]:500"
            host, _, port = remote.rpartition(":")
            remote = {"address": host.strip("[]"), "port": int(port) if port.isdigit() else None}
        out.append({
            "spi_i": _spi64(sa.get("spi_i")),
            "spi_r": _spi64(sa.get("spi_r")),
            "state": sa.get("state", ""),
            "initiator": bool(sa.get("initiator")),
            "remote": remote.get("address") if isinstance(remote, dict) else remote,
            "remote_port": remote.get("port") if isinstance(remote, dict) else None,
            "nat_local": bool(sa.get("nat_local")),
            "nat_remote": bool(sa.get("nat_remote")),
            "children": [{"spi_in": _spi32(c.get("inbound_spi")), "spi_out": _spi32(c.get("outbound_spi")),
                          "mode": c.get("mode", ""), "udp_encap": bool(c.get("udp_encap"))}
                         for c in sa.get("children") or []],
        })
    return out
