#!/usr/bin/python3
"""Negotiations that fail (issue 16): each failure is counted where it
happened and nothing leaks in the clear under *require*.

  psk      the initiator's pre-shared key differs: AUTHENTICATION_FAILED,
           counted (ipsentry's authentication_failures; charon's log), no
           cleartext from the ipsentry host on the wire, its peer's
           cleartext dropped; `ipsentry verify` with charon's keys names
           AUTHENTICATION_FAILED
  noprop   no common IKE proposal: NO_PROPOSAL_CHOSEN in the IKE_SA_INIT
           response, counted, named by `ipsentry verify`
  ts       the responder's policy covers other addresses than the
           initiator's: the IKE SA comes up, its IKE_AUTH response says
           TS_UNACCEPTABLE (decrypted with charon's keys), no CHILD_SA on
           either end, counted, nothing in the clear
  invalidke  the initiator offers curve25519 and ecp256 and sends its KE
           for curve25519, the responder takes ecp256 only: INVALID_KE_PAYLOAD
           naming ecp256 (RFC 7296 1.3), the initiator's second IKE_SA_INIT
           carries an ecp256 KE, and the SA comes up and carries traffic
  silent   the peer runs no IKE at all (roles ic only: ipsentry initiates):
           a *request* policy falls back to cleartext after the
           retransmissions (a soft association, counted), a *require*
           policy never sends cleartext
  dpd      the peer is killed: dead-peer detection removes its SAs (counted)
           and the restarted peer negotiates afresh (new SPIs, traffic)
           cc: charon detects; ci/ic: ipsentry (responder/initiator) detects
           the killed charon

The cases run at the same time. `silent` and `dpd` wait for ipsentry's
retransmissions to run out, so their ipsentry peers run a short schedule
(`--ike-retransmit 1,1.5,3`: 1 + 1.5 + 2.25 + 3.4 s, about 8 s, instead of
the default 165 s, docs/ike-keying.md): the same sequence of retries and
giving up, only sooner.

Usage: test_ike_failures.py --ipsentry PATH [--roles cc,ci,ic] [--only CASE] (root; 77 = skipped)
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import ike_stats  # noqa: E402
import ikev2_ref as ref  # noqa: E402
import signal  # noqa: E402
from ike_lab import (ROLES, Conn, captures, established, hosts, ike_messages, ike_rows_from_keysets,  # noqa: E402
                     ipv4_packets, make_peer, negotiations, ping, run_scenarios, uat_dir, wait_for)

# The short retransmission schedule of `silent` and `dpd` (TIMEOUT,BASE,TRIES):
# requests sent again after 1 s x 1.5^n, 3 times, the IKE SA given up after
# the sum for n = 0..3; plus slack for a loaded machine.
RETRANSMIT = (1, 1.5, 3)
RETRANSMIT_OPT = ",".join(map(str, RETRANSMIT))
IPSENTRY_GIVE_UP = sum(RETRANSMIT[0] * RETRANSMIT[1] ** n for n in range(RETRANSMIT[2] + 1)) + 30
A, B = "192.0.2.1", "192.0.2.2"


def pair(lab, role, ci_kw=None, cr_kw=None, n_pairs=1, start=True, **peer_kw):
    topo = hosts(lab, n_pairs)
    ki, kr = ROLES[role]
    ci = Conn(**{"name": "c", "addr": A, "peer": B, "local_ts": f"{A}/32", "remote_ts": f"{B}/32",
                 "initiator": True, **(ci_kw or {})})
    cr = Conn(**{"name": "c", "addr": B, "peer": A, "local_ts": f"{B}/32", "remote_ts": f"{A}/32", **(cr_kw or {})})
    caps = captures(lab, topo, "fail")
    pi = make_peer(ki, lab, "a", topo.ns["a"], [ci], retransmit_tries=2, **peer_kw)
    pr = make_peer(kr, lab, "b", topo.ns["b"], [cr], retransmit_tries=2, **peer_kw)
    if start:
        pr.start()
        pi.start()
    return topo, pi, pr, caps


def established_sas(p):
    """IKE SAs that are up (a require policy may be retrying: connecting SAs do not count)."""
    return [s for s in p.sas() if s["state"].lower() == "established"]


def attempt(lab, topo, pi):
    """The initiator tries: charon by command, ipsentry on a ping."""
    if pi.kind == "charon":
        ok, out = pi.initiate(timeout=8)
        return ok
    got, _, _ = ping(lab, topo.ns["a"], B, count=3, wait=3)
    return got > 0


def attempt_fails(lab, topo, pi, pr, what, ends=None):
    """The initiator tries and fails; then each ipsentry end (require) of
    `ends` (default both: those whose policy covers A <-> B) still reaches
    its peer neither protected nor in the clear. -> those ipsentry ends."""
    lab.check(not attempt(lab, topo, pi), f"the negotiation fails: {what}")
    time.sleep(2)
    ips = [p for p in (ends or (pi, pr)) if p.kind == "ipsentry"]
    for p in ips:
        got, _, _ = ping(lab, p.ns, B if p is pi else A, count=3, wait=2)
        lab.check(got == 0, f"{p} (require) reaches its peer neither protected nor in the clear ({got}/3)")
    return ips


def cleartext_from(pcap, addr):
    """Packets from `addr` that are neither IKE nor ESP."""
    w = {}
    for src, dst, proto, l4, _ in ipv4_packets(pcap):
        if src != addr:
            continue
        if proto == 50 or (proto == 17 and len(l4) >= 4 and
                           {int.from_bytes(l4[:2], "big"), int.from_bytes(l4[2:4], "big")} & {500, 4500}):
            continue
        w[proto] = w.get(proto, 0) + 1
    return w


def scenario_psk(lab, role):
    topo, pi, pr, caps = pair(lab, role, ci_kw={"psk": "not the secret the responder has"})
    ips = attempt_fails(lab, topo, pi, pr, "the pre-shared keys differ")
    # Under require its peer's cleartext is dropped too: ping from the other side.
    for p in ips:
        other = pr if p is pi else pi
        got, _, _ = ping(lab, other.ns, A if p is pi else B, count=3, wait=2)
        lab.check(got == 0, f"{other}'s cleartext is not answered by {p} ({got}/3)")
    pcaps = [c.stop() for c in caps]
    for p in ips:
        leak = cleartext_from(pcaps[-1], p.conns[0].addr)
        lab.check(not leak, f"no cleartext from {p}'s address on the wire ({leak or 'none'})")
        c = ike_stats.counters(p.stats())
        lab.check(c["authentication_failures"] >= 1 and c["ike_established"] == 0,
                  f"{p} counts the authentication failure: {c['authentication_failures']} authentication, "
                  f"{c['negotiation_failures']} negotiation failures, {c['ike_established']} IKE SAs")
        lab.check(not established_sas(p), f"{p} holds no established IKE SA after the failure")
    for p in (pi, pr):
        if p.kind == "charon":
            log = p.log()
            if p is pi:
                lab.check("received AUTHENTICATION_FAILED notify error" in log,
                          f"{p} (initiator) received AUTHENTICATION_FAILED")
            else:
                lab.check("MAC mismatched" in log and "N(AUTH_FAILED)" in log,
                          f"{p} (responder) found the MAC mismatched and answered AUTHENTICATION_FAILED")
    # The failed IKE_AUTH decrypted with the keys charon logged: verify names the reason.
    ch = next(p for p in (pi, pr) if p.kind == "charon")
    kd = uat_dir(lab, "keys-charon", ike_rows_from_keysets(pcaps[-1], ch.keys()[0]), [])
    negs = negotiations(pcaps[-1], kd)
    reasons = [n["reason"] for n in negs if n["outcome"] == "failed"]
    lab.check("AUTHENTICATION_FAILED" in reasons and not any(n["outcome"] == "established" for n in negs),
              f"ipsentry verify of the capture: nothing established, failed with {reasons}")
    for p in (pi, pr):
        p.stop()


def scenario_noprop(lab, role):
    topo, pi, pr, caps = pair(lab, role, ci_kw={"proposals": ["aes128-sha256-modp2048"]},
                              cr_kw={"proposals": ["aes256gcm16-prfsha384-ecp384"]})
    ok = attempt(lab, topo, pi)
    lab.check(not ok, "the negotiation without a common proposal fails")
    time.sleep(1)
    pcaps = [c.stop() for c in caps]
    resp = [m for _, src, _, m in ike_messages(pcaps[-1]) if m.exchange == ref.IKE_SA_INIT and m.response]
    lab.check(resp and all(ref.NO_PROPOSAL_CHOSEN in m.notifies() for m in resp),
              f"the responder answers IKE_SA_INIT with NO_PROPOSAL_CHOSEN ({[m.notifies() for m in resp]})")
    for p in (pi, pr):
        if p.kind == "ipsentry":
            st = p.stats()
            lab.check(ike_stats.no_proposal_chosen(st) >= 1 and ike_stats.counter(st, "authentication_failures") == 0,
                      f"{p} counts NO_PROPOSAL_CHOSEN ({ike_stats.no_proposal_chosen(st)}), no authentication "
                      f"failure")
            lab.check(not established_sas(p), f"{p} holds no established IKE SA")
        else:
            log = p.log()
            lab.check(("received NO_PROPOSAL_CHOSEN notify error" in log) if p is pi else
                      ("received proposals unacceptable" in log),
                      f"{p}'s log: {'received NO_PROPOSAL_CHOSEN' if p is pi else 'received proposals unacceptable'}")
    negs = negotiations(pcaps[-1])
    lab.check(any(n["reason"] == "NO_PROPOSAL_CHOSEN" for n in negs),
              f"ipsentry verify of the capture names NO_PROPOSAL_CHOSEN ({[n['reason'] for n in negs]})")
    for p in (pi, pr):
        p.stop()


def scenario_ts(lab, role):
    # The responder protects B with 192.0.2.100, which the initiator's
    # selectors (A and B) do not intersect: RFC 7296 2.9's TS_UNACCEPTABLE.
    topo, pi, pr, caps = pair(lab, role, cr_kw={"remote_ts": "192.0.2.100/32"})
    # The responder's policy does not cover A: its cleartext with A is not its business.
    attempt_fails(lab, topo, pi, pr, "no CHILD_SA with selectors the responder does not accept", ends=(pi,))
    pcaps = [c.stop() for c in caps]
    ch = next(p for p in (pi, pr) if p.kind == "charon")
    keysets = ch.keys()[0]
    auth_resp = []
    for _, _, _, m in ike_messages(pcaps[-1]):
        if m.exchange == ref.IKE_AUTH and m.response:
            k = next((k for k in keysets if ref.integrity_ok(m, k)), None)
            inner = ref.decrypt(m, k) if k else None
            auth_resp.append(m.notifies(inner) if inner is not None else None)
    lab.check(auth_resp and auth_resp[0] is not None and ref.TS_UNACCEPTABLE in auth_resp[0],
              f"the IKE_AUTH response, decrypted with charon's keys, carries TS_UNACCEPTABLE ({auth_resp})")
    for p in (pi, pr):
        kids = [c for s in p.sas() for c in s["children"]]
        lab.check(not kids, f"{p} has no CHILD_SA ({kids})")
        if p.kind == "ipsentry":
            c = ike_stats.counters(p.stats())
            lab.check(c["negotiation_failures"] >= 1 and c["child_established"] == 0
                      and c["authentication_failures"] == 0,
                      f"{p} counts the refused CHILD_SA: {c['negotiation_failures']} negotiation failures, "
                      f"{c['child_established']} CHILD_SAs, {c['authentication_failures']} authentication failures")
            if p is pi:
                leak = cleartext_from(pcaps[-1], p.conns[0].addr)
                lab.check(not leak, f"no cleartext from {p}'s address on the wire ({leak or 'none'})")
        elif p is pi:
            lab.check("received TS_UNACCEPTABLE notify" in p.log(), f"{p}'s log: received TS_UNACCEPTABLE")
        else:
            lab.check(re.search(r"traffic selectors .* === .* unacceptable", p.log()) is not None,
                      f"{p}'s log: the initiator's traffic selectors are unacceptable")
    for p in (pi, pr):
        p.stop()


def scenario_invalidke(lab, role):
    topo, pi, pr, caps = pair(lab, role, ci_kw={"proposals": ["aes128gcm16-prfsha256-curve25519-ecp256"]},
                              cr_kw={"proposals": ["aes128gcm16-prfsha256-ecp256"]})
    if pi.kind == "charon":
        ok, out = pi.initiate()
        lab.check(ok, f"the negotiation succeeds after the KE retry{'' if ok else ': ' + out}")
    got, _, _ = ping(lab, topo.ns["a"], B, count=3, wait=5)
    lab.check(got >= 2, f"the SA carries traffic ({got}/3)")
    pcaps = [c.stop() for c in caps]
    inits = [m for _, _, _, m in ike_messages(pcaps[-1]) if m.exchange == ref.IKE_SA_INIT]
    seq = []
    for m in inits:
        ke = m.payload(ref.KE)
        n = [x for x in m.notifies() if x < 16384]
        bad_ke = next((b[4:6] for t, b in m.payloads if t == ref.NOTIFY and len(b) >= 6 and
                       int.from_bytes(b[2:4], "big") == ref.INVALID_KE_PAYLOAD), None)
        seq.append(("response" if m.response else "request",
                    int.from_bytes(ke[:2], "big") if ke else None,
                    int.from_bytes(bad_ke, "big") if bad_ke else (n or None)))
    lab.check(seq[:4] == [("request", 31, None), ("response", None, 19), ("request", 19, None),
                          ("response", 19, None)],
              f"IKE_SA_INIT: KE curve25519 (31), INVALID_KE_PAYLOAD naming ecp256 (19), KE ecp256, accepted: {seq}")
    for p in (pi, pr):
        if p.kind == "ipsentry":
            # The statistics are a snapshot republished within a second or two.
            wait_for(lambda: ike_stats.counter(p.stats(), "child_established") >= 1, 3)
            st = p.stats()
            c = ike_stats.counters(st)
            lab.check(c["ike_established"] == 1 and c["child_established"] == 1,
                      f"{p} counts one IKE SA and one CHILD_SA ({c['ike_established']}, {c['child_established']})"
                      f"{'' if st else ': no statistics'}")
    for p in (pi, pr):
        p.stop()


def scenario_silent(lab, role):
    """ipsentry initiates to a host that runs no IKE: pair 1 request, pair 2 require."""
    topo = hosts(lab, 2)
    conns = [Conn("req", A, B, f"{A}/32", f"{B}/32", inbound="request", initiator=True),
             Conn("req2", "192.0.2.3", "192.0.2.4", "192.0.2.3/32", "192.0.2.4/32", inbound="require",
                  initiator=True)]
    caps = captures(lab, topo, "silent")
    pi = make_peer("ipsentry", lab, "a", topo.ns["a"], conns, ike_retransmit=RETRANSMIT_OPT)
    pi.start()
    pingers = {c.name: lab.popen(topo.ns["a"], ["ping", "-n", "-i", "1", "-W", "1", "-w", str(int(IPSENTRY_GIVE_UP)),
                                                "-I", c.addr, c.peer], stdout=subprocess.DEVNULL)
               for c in conns}
    soft = wait_for(lambda: ike_stats.counter(pi.stats(), "soft_associations") >= 1, IPSENTRY_GIVE_UP, step=2)
    lab.check(bool(soft), f"the request policy's silent peer becomes a soft association "
                          f"({ike_stats.counter(pi.stats(), 'soft_associations')} counted)")
    time.sleep(5)
    got, _, _ = ping(lab, topo.ns["a"], B, count=3, src=A)
    lab.check(got == 3, f"request: cleartext flows to the silent peer after the fallback ({got}/3)")
    got, _, _ = ping(lab, topo.ns["a"], "192.0.2.4", count=3, src="192.0.2.3")
    lab.check(got == 0, f"require: nothing reaches the silent peer ({got}/3)")
    for p in pingers.values():
        p.kill()
    pcaps = [c.stop() for c in caps]
    first_clear = None
    ike_req = {"req": 0, "req2": 0}
    leak = 0
    for i, (src, dst, proto, l4, _) in enumerate(ipv4_packets(pcaps[-1])):
        if proto == 1 and src == A and first_clear is None:
            first_clear = i
        if proto == 1 and src == "192.0.2.3":
            leak += 1
        if proto == 17 and len(l4) > 8 and 500 in (int.from_bytes(l4[:2], "big"), int.from_bytes(l4[2:4], "big")):
            ike_req["req" if src == A else "req2"] += 1
    lab.check(leak == 0, f"require: no cleartext from 192.0.2.3 on the wire ({leak} packets)")
    lab.check(ike_req["req"] >= 3 and ike_req["req2"] >= 3,
              f"both policies tried IKE first and retransmitted ({ike_req} IKE_SA_INIT sent)")
    lab.check(first_clear is not None, "request: the cleartext follows the unanswered IKE_SA_INITs on the wire")
    st = pi.stats()
    lab.check(ike_stats.counter(st, "retransmissions") >= 4 and ike_stats.counter(st, "ike_established") == 0,
              f"ipsentry counts the retransmissions ({ike_stats.counter(st, 'retransmissions')}) and no IKE SA")
    acq = ike_stats.acquires(st)
    lab.check(acq.get("sent_cleartext", 0) >= 1 and acq.get("discarded", 0) >= 1,
              f"held packets: released in the clear for request ({acq.get('sent_cleartext')}), discarded for "
              f"require ({acq.get('discarded')})")
    pi.stop()


def scenario_dpd(lab, role):
    ki, kr = ROLES[role]
    # Who is killed: the charon facing ipsentry (ipsentry detects), or in cc the responder.
    topo, pi, pr, caps = pair(lab, role, ci_kw={"dpd": 2}, cr_kw={"dpd": 2}, ike_retransmit=RETRANSMIT_OPT)
    if not established(pr) and pi.kind == "charon":
        pi.initiate()
    got, _, _ = ping(lab, topo.ns["a"], B, count=3, wait=5)
    lab.check(got >= 2, f"the SA is up and carries pings ({got}/3)")
    victim = pr if role in ("cc", "ic") else pi
    survivor = pi if victim is pr else pr
    old = {(s["spi_i"], s["spi_r"]) for s in survivor.sas()}
    lab.check(len(old) == 1, f"{survivor} has the IKE SA before {victim} is killed")
    victim.stop(signal.SIGKILL)
    budget = IPSENTRY_GIVE_UP if survivor.kind == "ipsentry" else 40
    t0 = time.time()
    gone = wait_for(lambda: not survivor.sas(), budget, step=1)
    lab.check(bool(gone), f"{survivor}'s dead-peer detection removes the IKE SA and its CHILD_SA "
                          f"({time.time() - t0:.0f} s after the kill)")
    if survivor.kind == "ipsentry":
        c = ike_stats.counters(survivor.stats())
        lab.check(c["dpd_timeouts"] == 1, f"{survivor} counts one DPD timeout ({c['dpd_timeouts']})")
    else:
        lab.check("giving up after" in survivor.log() or "DPD" in survivor.log(),
                  f"{survivor}'s log: the liveness check went unanswered")
    victim.start()
    if pi.kind == "charon":
        ok, out = pi.initiate()
        lab.check(ok, f"the restarted pair negotiates afresh{'' if ok else ': ' + out}")
    got, seqs, _ = ping(lab, topo.ns["a"], B, count=4, wait=5)
    lab.check(got >= 3, f"traffic flows over the new SA ({got}/4)")
    new = {(s["spi_i"], s["spi_r"]) for s in survivor.sas()}
    lab.check(len(new) == 1 and not (new & old), f"{survivor} has one new IKE SA (new SPIs)")
    for c in caps:
        c.stop()
    for p in (pi, pr):
        p.stop()


def main():
    return run_scenarios(__doc__, [
        ("psk", scenario_psk, ["cc", "ci", "ic"]),
        ("noprop", scenario_noprop, ["cc", "ci", "ic"]),
        ("ts", scenario_ts, ["cc", "ci", "ic"]),
        ("invalidke", scenario_invalidke, ["cc", "ci", "ic", "ii"]),
        ("silent", scenario_silent, ["ic"]),
        ("dpd", scenario_dpd, ["cc", "ci", "ic"]),
    ], parallel=True)


if __name__ == "__main__":
    sys.exit(main())
