#!/usr/bin/python3
"""NAT traversal of negotiated SAs (issue 16): gw1 sits behind a NAT.

  hostA - gw1 198.51.100.1 - router [MASQUERADE to 203.0.113.254] - gw2 203.0.113.1 - hostB

gw1 initiates (gw2 cannot reach it); gw2 accepts any peer address
(`peer: any` / remote_addrs %any) and knows gw1 by its FQDN. Checked: the
NAT detection moves IKE to UDP 4500 (the IKE_AUTH and everything after it
on 4500, on both sides of the NAT); ESP is in UDP 4500 (RFC 3948) outside
the NAT; traffic flows both ways (ping both ways, a 10 MB TCP transfer with
the same SHA-256); `ipsentry verify` and tshark decrypt everything with the
keys; ipsentry says which end is behind the NAT; the end behind the NAT
sends NAT keepalives when it has nothing else to send. Then the NAT maps
gw1 anew (other ports, its state flushed): traffic flows both ways again
and an ipsentry gw2 moves its IKE SA to the new port, where its DPD is
answered.

Usage: test_ike_nat.py --ipsentry PATH [--roles cc,ci,ic,ii] (root; 77 = skipped)
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import ikev2_ref as ref  # noqa: E402
from ike_lab import (GW1_OUT, GW2_OUT, NAT_PUBLIC, NET_A, NET_B, ROLES, Capture, Conn, captures,  # noqa: E402
                     gateways, ipv4_packets, make_peer, ping, prove)

GW1_ID = "gw1.example.net"
KEEPALIVE_WAIT = 25  # ipsentry's NAT keepalive interval is 20 s (enforce's encap default)


def scenario_nat(lab, role):
    topo = gateways(lab, nat=True)
    ki, kr = ROLES[role]
    c1 = Conn("nat", GW1_OUT, GW2_OUT, NET_A, NET_B, local_id=GW1_ID, remote_id=GW2_OUT, initiator=True)
    # gw2 probes a silent peer after 5 s: the probe must find gw1 after its NAT mapping moved.
    c2 = Conn("nat", GW2_OUT, None, NET_B, NET_A, remote_id=GW1_ID, dpd=5)
    caps = captures(lab, topo, "nat")
    p1 = make_peer(ki, lab, "gw1", topo.ns["g1"], [c1], keep_alive=2)
    p2 = make_peer(kr, lab, "gw2", topo.ns["g2"], [c2])
    p2.start()
    p1.start()
    first = None
    if p1.kind == "charon":
        ok, out = p1.initiate()
        lab.check(ok, f"gw1 behind the NAT initiates{'' if ok else ': ' + out}")
    else:
        first = "ipsentry's acquire behind the NAT"
    # Each end's keys name the addresses it sees: gw1's the inside of the NAT, gw2's the outside.
    pcaps = prove(lab, topo, [p1, p2], "nat", caps, first_ping=first, udp_encap=True, key_wires=[0, 1])
    # IKE: IKE_SA_INIT on 500, then 4500 from IKE_AUTH on, on both sides of the NAT.
    for pcap, side in zip(pcaps, ("inside", "outside")):
        ports = []
        for src, dst, proto, l4, _ in ipv4_packets(pcap):
            if proto != 17 or len(l4) < 12:
                continue
            sport, dport = struct.unpack("!HH", l4[:4])
            data = l4[8:]
            if 500 in (sport, dport) and data[:4] != b"\0\0\0\0":
                m = ref.parse(data)
            elif 4500 in (sport, dport) and data[:4] == b"\0\0\0\0":
                m = ref.parse(data[4:])
            else:
                continue
            if m:
                ports.append((m.exchange, 500 if 500 in (sport, dport) else 4500, src, sport))
        # Seen from gw2's port: the NAT maps gw1's ports into 40000-40099.
        init = {p for e, p, _, _ in ports if e == ref.IKE_SA_INIT}
        later = {p for e, p, _, _ in ports if e != ref.IKE_SA_INIT}
        lab.check(init == {500} and later == {4500}, f"{side} the NAT: IKE_SA_INIT on UDP 500, IKE_AUTH and "
                                                     f"later on 4500 ({sorted(set(ports))[:6]})")
        if side == "outside":
            srcs = {(s, sp) for _, p, s, sp in ports if s != GW2_OUT}
            lab.check({s for s, _ in srcs} == {NAT_PUBLIC} and all(40000 <= sp <= 40099 for _, sp in srcs),
                      f"outside: gw1's IKE comes from the NAT's address and mapped ports ({sorted(srcs)})")
    for p, behind in ((p1, True), (p2, False)):
        if p.kind == "ipsentry":
            sas = p.sas()
            other = p2 if p is p1 else p1
            # charon with kernel-libipsec fakes its NAT detection hash (it always
            # wants UDP encapsulation): seen from its peer it is behind a NAT.
            remote_nat = (not behind) or other.kind == "charon"
            lab.check(len(sas) == 1 and sas[0]["nat_local"] == behind and sas[0]["nat_remote"] == remote_nat,
                      f"{p} knows {'it is' if behind else 'its peer is'} behind the NAT "
                      f"(nat_local {sas[0]['nat_local'] if sas else None}, nat_remote "
                      f"{sas[0]['nat_remote'] if sas else None})")
            lab.check(sas and all(c["udp_encap"] for c in sas[0]["children"]),
                      f"{p}'s CHILD_SA is UDP-encapsulated")
            if not behind and sas:
                lab.check(sas[0]["remote"] == NAT_PUBLIC, f"{p} talks to the NAT's address ({sas[0]['remote']}:"
                                                          f"{sas[0]['remote_port']})")
    # Keepalives from gw1 while nothing else is sent.
    cap = Capture(lab, topo.ns["r"], "r2", "keepalive", "udp port 4500")
    time.sleep(KEEPALIVE_WAIT if p1.kind == "ipsentry" else 6)
    cap.stop()
    ka = [(src, l4) for src, dst, proto, l4, _ in ipv4_packets(cap.path) if proto == 17 and l4[8:] == b"\xff"]
    lab.check(len(ka) >= 1 and all(src == NAT_PUBLIC for src, _ in ka),
              f"gw1 behind the NAT sends NAT keepalives through it when idle ({len(ka)} in "
              f"{KEEPALIVE_WAIT if p1.kind == 'ipsentry' else 6} s)")
    if p2.kind == "ipsentry":
        rebind(lab, topo, p2)
    for p in (p1, p2):
        rc = p.stop()
        if p.kind == "ipsentry":
            lab.check(rc == 0, f"{p} stops cleanly (exit {rc})")


def rebind(lab, topo, gw2):
    """The NAT forgets gw1 and maps it anew (a NAT reboot, a timed-out
    mapping): UDP leaves through ports 41000-41099 from now on. gw2 learns
    the new port from gw1's next authenticated ESP packet; its IKE SA must
    follow, or its DPD, rekeys and Deletes go to a mapping that is gone.
    (charon as gw2 learns it from the kernel's XFRM mapping event, which
    kernel-libipsec does not give; only ipsentry is checked here.)"""
    r = topo.ns["r"]
    lab.x(r, "iptables", "-t", "nat", "-D", "POSTROUTING", "-o", "r2", "-p", "udp", "-j", "MASQUERADE",
          "--to-ports", "40000-40099")
    lab.x(r, "iptables", "-t", "nat", "-I", "POSTROUTING", "1", "-o", "r2", "-p", "udp", "-j", "MASQUERADE",
          "--to-ports", "41000-41099")
    lab.x(r, "conntrack", "-F")
    cap = Capture(lab, r, "r2", "rebind", "udp port 4500 or udp portrange 41000-41099")
    got, _, _ = ping(lab, topo.client, topo.server_addr, count=3)
    lab.check(got == 3, f"after the NAT mapped gw1 anew, hostA reaches hostB ({got}/3)")
    got, _, _ = ping(lab, topo.server, "192.0.2.10", count=3)
    lab.check(got == 3, f"and hostB reaches hostA through the new mapping ({got}/3)")
    sas = gw2.sas()
    port = sas[0]["remote_port"] if sas else 0
    lab.check(41000 <= port <= 41099, f"{gw2}'s IKE SA follows gw1 to its new port ({port})")
    lab.check("peer-moved" in gw2.log(), f"{gw2} says the peer moved")
    # Silence: gw2's DPD (5 s) goes to the new mapping and is answered.
    time.sleep(8)
    cap.stop()
    to_new, from_new = 0, 0
    for src, dst, proto, l4, _ in ipv4_packets(cap.path):
        if proto != 17 or len(l4) < 16 or l4[8:12] != b"\0\0\0\0":
            continue  # ESP in UDP or a keepalive, not IKE
        sport, dport = struct.unpack("!HH", l4[:4])
        to_new += src == GW2_OUT and 41000 <= dport <= 41099
        from_new += dst == GW2_OUT and 41000 <= sport <= 41099
    lab.check(to_new >= 1 and from_new >= 1, f"{gw2}'s IKE (DPD) reaches gw1 at its new port and is answered "
                                              f"({to_new} sent, {from_new} answered)")
    lab.check(len(gw2.sas()) == 1, f"{gw2} keeps the IKE SA ({len(gw2.sas())})")


def main():
    from ike_lab import run_scenarios
    return run_scenarios(__doc__, [("nat", scenario_nat, ["cc", "ci", "ic", "ii"])], parallel=True)


if __name__ == "__main__":
    sys.exit(main())
