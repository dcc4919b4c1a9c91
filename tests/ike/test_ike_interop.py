#!/usr/bin/python3
"""IKEv2 interoperability of ipsentry enforcement with strongSwan's charon
(issue 16, "What it must show"), in network namespaces.

Scenarios, each run in the roles given by --roles (cc: charon on both ends,
the proof that topology, traffic and checks are right; ci: charon initiates,
ipsentry responds; ic: ipsentry initiates on the first ping, charon
responds; ii: two ipsentry peers, no charon):
  hosts    host to host, PSK, IKE aes128gcm16-prfsha256-curve25519, ESP
           aes128gcm16; transport mode between ipsentry peers, a tunnel
           between the two host addresses with charon (kernel-libipsec has
           no transport mode)
  gateway  the seeds' sites: hostA - gw1 - router - gw2 - hostB, PSK, IKE
           aes256-sha256-modp2048, ESP aes256-sha256 (AES-CBC + HMAC-SHA-256)
  certs    certificates made with openssl at test time: a CA, gw1 RSA 2048
           named by its DN, gw2 ECDSA P-256 named by its SAN FQDN; IKE
           aes256gcm16-prfsha384-ecp384, ESP aes256gcm16
  transport  transport mode with charon as far as it goes here: the
           USE_TRANSPORT_MODE negotiation and its keys (kernel-libipsec
           then refuses the SA; cc shows that limit on charon's side)
Each: ping both ways and a 10 MB TCP transfer with the same SHA-256; the
wire between the IPsec ends carries only IKE and ESP; `ipsentry verify`
with the keys each end holds (ipsentry's --save-keys files, charon's log)
verifies every ESP packet and decrypts every IKE message, tshark with the
same files as many; ipsentry's saved keys equal the ones charon derived;
both ends list the same SPIs; the IKE statistics count one IKE SA and one
CHILD_SA.

Usage: test_ike_interop.py --ipsentry PATH [--roles cc,ci,ic,ii] [--only NAME] (root; 77 = skipped)
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import ike_stats  # noqa: E402
import ikev2_ref as ref  # noqa: E402
from ike_lab import (GW1_OUT, GW2_OUT, NET_A, NET_B, ROLES, Conn, auth_methods, captures,  # noqa: E402
                     charon_log_keys, esp_keys_of_uat, gateways, hosts, ike_messages, ipv4_packets, make_peer,
                     make_pki, ping, prove, read_uat, run_scenarios, saved_ike_keysets)


def start_pair(lab, role, topo, name, ns_i, conns_i, ns_r, conns_r, names=("i", "r"), expect_up=True):
    """The wires captured, both ends started, the negotiation begun if charon
    initiates. Returns (initiator, responder, captures, how the first packet
    should be checked)."""
    ki, kr = ROLES[role]
    caps = captures(lab, topo, name)
    # charon initiates by command: 5.9.8's libipsec drops a packet without
    # an SA and raises no acquire, so a trap policy never starts anything.
    pi = make_peer(ki, lab, names[0], ns_i, conns_i)
    pr = make_peer(kr, lab, names[1], ns_r, conns_r)
    pr.start()
    pi.start()
    first = None
    if ki == "ipsentry":
        first = "ipsentry's acquire"
    else:
        ok, out = pi.initiate()
        if expect_up:
            lab.check(ok, f"charon initiates and the IKE SA with its CHILD_SA comes up{'' if ok else ': ' + out}")
    return pi, pr, caps, first


def check_state(lab, pi, pr, n=1):
    """Both ends list n IKE SAs with one CHILD_SA each, with matching SPIs;
    ipsentry counts them."""
    si, sr = pi.sas(), pr.sas()
    lab.check(len(si) == n and len(sr) == n and all(len(s["children"]) == 1 for s in si + sr),
              f"each end has {n} IKE SA(s) with one CHILD_SA ({pi}: {[len(s['children']) for s in si]}, "
              f"{pr}: {[len(s['children']) for s in sr]})")
    pairs_i = {(s["spi_i"], s["spi_r"]) for s in si}
    pairs_r = {(s["spi_i"], s["spi_r"]) for s in sr}
    lab.check(pairs_i == pairs_r and pairs_i, f"both ends name the IKE SA by the same SPIs "
                                              f"({[f'{a:016x}/{b:016x}' for a, b in pairs_i]})")
    out_i = {c["spi_out"] for s in si for c in s["children"]}
    in_r = {c["spi_in"] for s in sr for c in s["children"]}
    out_r = {c["spi_out"] for s in sr for c in s["children"]}
    in_i = {c["spi_in"] for s in si for c in s["children"]}
    lab.check(out_i == in_r and out_r == in_i and out_i,
              f"the CHILD_SA SPIs match: {pi} sends on {sorted(f'{x:08x}' for x in out_i)}, {pr} receives on "
              f"{sorted(f'{x:08x}' for x in in_r)}")
    for p in (pi, pr):
        if p.kind == "ipsentry":
            st = p.stats()
            c = ike_stats.counters(st)
            lab.check(c["ike_established"] == n and c["child_established"] == n and c["negotiation_failures"] == 0
                      and c["authentication_failures"] == 0,
                      f"{p}'s statistics: {c['ike_established']} IKE SA(s), {c['child_established']} CHILD_SA(s) "
                      f"established, {c['negotiation_failures']} failures")


def finish(lab, *peers):
    for p in peers:
        rc = p.stop()
        if p.kind == "ipsentry":
            lab.check(rc == 0, f"{p} stops cleanly on SIGTERM (exit {rc})")


def scenario_hosts(lab, role):
    topo = hosts(lab)
    a, b = "192.0.2.1", "192.0.2.2"
    # kernel-libipsec knows tunnel mode only: with charon the hosts' tunnel.
    mode = "transport" if role == "ii" else "tunnel"
    ci = Conn("h2h", a, b, f"{a}/32", f"{b}/32", mode=mode, initiator=True)
    cr = Conn("h2h", b, a, f"{b}/32", f"{a}/32", mode=mode)
    pi, pr, caps, first = start_pair(lab, role, topo, "hosts", topo.ns["a"], [ci], topo.ns["b"], [cr], ("a", "b"))
    prove(lab, topo, [pi, pr], f"hosts {mode}", caps, first_ping=first, udp_encap=(role != "ii"))
    check_state(lab, pi, pr)
    for p in (pi, pr):
        if p.kind == "ipsentry":
            modes = {c["mode"] for s in p.sas() for c in s["children"]}
            lab.check(modes == {mode}, f"{p} runs its CHILD_SA in {mode} mode ({modes})")
    finish(lab, pi, pr)


def gateway_conns(auth=None, **kw):
    c1 = Conn("sites", GW1_OUT, GW2_OUT, NET_A, NET_B, proposals=["aes256-sha256-modp2048"],
              esp=["aes256-sha256"], initiator=True, **kw)
    c2 = Conn("sites", GW2_OUT, GW1_OUT, NET_B, NET_A, proposals=["aes256-sha256-modp2048"],
              esp=["aes256-sha256"], **kw)
    return c1, c2


def scenario_gateway(lab, role):
    topo = gateways(lab)
    c1, c2 = gateway_conns()
    pi, pr, caps, first = start_pair(lab, role, topo, "sites", topo.ns["g1"], [c1], topo.ns["g2"], [c2],
                                     ("gw1", "gw2"))
    prove(lab, topo, [pi, pr], "sites", caps, first_ping=first, udp_encap=(role != "ii"))
    check_state(lab, pi, pr)
    finish(lab, pi, pr)


PKI = {}
PKI_LOCK = threading.Lock()  # the roles run at the same time: one CA for all


def scenario_certs(lab, role):
    with PKI_LOCK:
        if not PKI:
            PKI.update(make_pki(os.path.join(os.path.dirname(lab.dir), "pki")))
    topo = hosts(lab)
    a, b = "192.0.2.1", "192.0.2.2"
    mode = "transport" if role == "ii" else "tunnel"
    common = dict(mode=mode, auth="cert", ca=PKI["ca"], proposals=["aes256gcm16-prfsha384-ecp384"],
                  esp=["aes256gcm16"])
    ci = Conn("certs", a, b, f"{a}/32", f"{b}/32", cert=PKI["gw1"][0], key=PKI["gw1"][1], local_id=PKI["gw1_dn"],
              remote_id=PKI["gw2_fqdn"], initiator=True, **common)
    cr = Conn("certs", b, a, f"{b}/32", f"{a}/32", cert=PKI["gw2"][0], key=PKI["gw2"][1], local_id=PKI["gw2_fqdn"],
              remote_id=PKI["gw1_dn"], **common)
    pi, pr, caps, first = start_pair(lab, role, topo, "certs", topo.ns["a"], [ci], topo.ns["b"], [cr],
                                     ("gw1", "gw2"))
    prove(lab, topo, [pi, pr], "certificates", caps, first_ping=first, udp_encap=(role != "ii"))
    check_state(lab, pi, pr)
    # RFC 7427 both ways: AUTH method 14 in the decrypted IKE_AUTH request and response.
    keysets = [k for p in (pi, pr) if p.kind == "charon" for k in p.keys()[0]]
    if not keysets:  # two ipsentry peers: the keys one of them saved
        keysets = [ref_keys for ref_keys in saved_ike_keysets(pi.keydir)]
    methods = auth_methods(caps[-1].path, keysets)
    lab.check(sorted(methods) == [(False, ref.AUTH_DIGITAL_SIGNATURE), (True, ref.AUTH_DIGITAL_SIGNATURE)],
              f"both ends authenticate with RFC 7427 digital signatures (AUTH method 14): {methods}")
    for p in (pi, pr):
        if p.kind == "charon":
            log = p.log()
            # gw1's RSA key signs with SHA-256 in charon, with the strongest
            # hash both announced (SHA-512) in ipsentry (docs/ike-keying.md).
            rsa_hash = "SHA2_512" if pi.kind == "ipsentry" else "SHA2_256"
            peer_id, scheme = ((PKI["gw2_fqdn"], "ECDSA_WITH_SHA256_DER") if p is pi else
                               (PKI["gw1_dn"], f"RSA_EMSA_PKCS1_{rsa_hash}"))
            lab.check(f"authentication of '{peer_id}' with {scheme} successful" in log,
                      f"{p} verified its peer '{peer_id}' by its certificate ({scheme})")
    finish(lab, pi, pr)


def scenario_transport(lab, role):
    """Transport mode with charon, as far as kernel-libipsec lets charon go:
    the negotiation (USE_TRANSPORT_MODE both ways, the keys) but no SA in
    charon's kernel, which refuses any mode but tunnel."""
    topo = hosts(lab)
    a, b = "192.0.2.1", "192.0.2.2"
    ci = Conn("tr", a, b, f"{a}/32", f"{b}/32", mode="transport", initiator=True)
    cr = Conn("tr", b, a, f"{b}/32", f"{a}/32", mode="transport")
    pi, pr, caps, first = start_pair(lab, role, topo, "transport", topo.ns["a"], [ci], topo.ns["b"], [cr],
                                     ("a", "b"), expect_up=False)
    if pi.kind == "ipsentry":
        got, _, _ = ping(lab, topo.ns["a"], b, count=2, wait=3)
        lab.check(got == 0, f"the ping that starts the negotiation gets no answer: charon cannot run the SA ({got}/2)")
    time.sleep(2)
    pcap = caps[-1].stop()
    ch = next(p for p in (pi, pr) if p.kind == "charon")
    dumps = []
    ike_sets, _ = charon_log_keys(ch.log(), dumps)
    auth, deletes = [], []
    for _, src, _, m in ike_messages(pcap):
        k = next((k for k in ike_sets if ref.integrity_ok(m, k)), None)
        inner = ref.decrypt(m, k) if k else None
        if m.exchange == ref.IKE_AUTH:
            auth.append((m.response, m.notifies(inner or []), [t for t, _ in inner or []]))
        elif m.exchange == ref.INFORMATIONAL and not m.response and any(t == ref.DELETE for t, _ in inner or []):
            deletes.append(src)
    req = [x for x in auth if not x[0]]
    resp = [x for x in auth if x[0]]
    lab.check(len(req) == 1 and ref.USE_TRANSPORT_MODE in req[0][1],
              f"{pi}'s IKE_AUTH request asks for transport mode (USE_TRANSPORT_MODE): {req}")
    if pr.kind == "charon":
        log = pr.log()
        lab.check("failed to create SAD entry" in log and len(resp) == 1 and ref.NO_PROPOSAL_CHOSEN in resp[0][1],
                  f"{pr}: kernel-libipsec refuses the transport-mode SA and charon answers NO_PROPOSAL_CHOSEN "
                  f"(the limit of charon here, not of {pi}): {resp}")
    else:
        lab.check(len(resp) == 1 and ref.USE_TRANSPORT_MODE in resp[0][1] and
                  {ref.SA, ref.TSI, ref.TSR} <= set(resp[0][2]),
                  f"{pr} accepts transport mode: USE_TRANSPORT_MODE, SA and selectors in its response: {resp}")
        saved = esp_keys_of_uat(read_uat(pr.keydir)["esp_sa"])
        derived = {v.hex() for n, v in dumps if n.startswith("encryption")}
        lab.check(len(saved) == 2 and all(enc in derived for enc, _ in saved.values()),
                  f"{pr}'s saved ESP keys are the keys charon derived for the transport CHILD_SA "
                  f"({sum(enc in derived for enc, _ in saved.values())} of {len(saved)})")
        lab.check("failed to create SAD entry" in pi.log(), f"{pi}'s kernel-libipsec then refuses the SA")
        lab.check(deletes == [a] and not any(s["children"] for s in pr.sas()),
                  f"{pi} deletes the CHILD_SA it could not install (Delete from {deletes}) and {pr} removes it: "
                  f"{pr.sas()}")
    for p in (pi, pr):
        if p.kind == "ipsentry":
            st = p.stats()
            c = ike_stats.counters(st)
            lab.check(c["ike_established"] == 1, f"{p} keeps the IKE SA ({c['ike_established']} established)")
            if p is pi:
                lab.check(c["negotiation_failures"] >= 1, f"{p} counts the refused CHILD_SA "
                                                          f"({c['negotiation_failures']} negotiation failures)")
            leak = [x for x in ipv4_packets(pcap) if x[0] == p.conns[0].addr and x[2] == 1]
            lab.check(not leak, f"nothing leaves {p} in the clear (require): {len(leak)} ICMP packets")
    finish(lab, pi, pr)


def main():
    return run_scenarios(__doc__, [
        ("hosts", scenario_hosts, ["cc", "ci", "ic", "ii"]),
        ("gateway", scenario_gateway, ["cc", "ci", "ic", "ii"]),
        ("certs", scenario_certs, ["cc", "ci", "ic", "ii"]),
        ("transport", scenario_transport, ["cc", "ci", "ic"]),
    ], parallel="roles")


if __name__ == "__main__":
    sys.exit(main())
