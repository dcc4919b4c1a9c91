#!/usr/bin/python3
"""Enforcement policy in network namespaces, run as an attacker would:

* exemptions: cleartext spoofed from source port 88, 500 or 4500 is dropped
  and counted under `inbound: require`, on a host and through a gateway; a
  local unprivileged user cannot send cleartext from UDP port 4500, nor
  anyone from port 88, to a protected peer; IKE to the host's port 500
  still passes and is counted per exemption;
* RFC 4301 section 5.2: authentic tunnel packets (made with esp_ref.py and
  the SA's keys) whose inner source is outside the peer's network or whose
  inner destination is the gateway itself are dropped and counted as policy
  mismatches, while a good one is delivered;
* RFC 4303 section 2.6: authentic ESP dummy packets (next header 59) are not
  delivered, are counted and not logged, and `verify` calls them dummies;
* the seeds' gateway tunnel (002) written literally, two one-way rules per
  gateway, the second naming the gateway itself as the tunnel endpoint.

What leaves is checked on the wire with tcpdump and tshark. Needs root (exit
77 = skipped otherwise); documentation addresses only; every namespace is
removed whatever happens. ONLY=host|gateway runs one scenario.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
sys.path.insert(0, HERE)
import test_enforce as base  # noqa: E402
from test_enforce import Capture, Enforcer, check, link, ns_add, nsx, tshark, up  # noqa: E402
from ipsec_configs import GCM_AB, GCM_BA, esp_config  # noqa: E402
from netns import UdpSink, ipsentry_as_root, run_scenario  # noqa: E402
from esp_ref import RefSA  # noqa: E402

import warnings  # noqa: E402

warnings.filterwarnings("ignore")
from scapy.all import IP, UDP, Raw  # noqa: E402

A, B = "192.0.2.1", "192.0.2.2"
A_MAC, B_MAC = "02:00:00:00:0a:01", "02:00:00:00:0b:01"

# Sends one UDP datagram from SPORT (as whoever runs it).
UDP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.sendto(sys.argv[5].encode(), (sys.argv[3], int(sys.argv[4])))
"""

# Puts raw IP packets (hex) on the wire as frames to DSTMAC: the sender's
# own netfilter never sees them.
SEND_RAW = r"""
import sys, warnings
warnings.filterwarnings('ignore')
from scapy.all import Ether, IP, sendp
sendp([Ether(dst=sys.argv[2]) / IP(bytes.fromhex(h)) for h in sys.argv[3:]], iface=sys.argv[1], verbose=False)
"""


def send_raw(ns, iface, dst_mac, packets):
    r = nsx(ns, "/usr/bin/python3", "-c", SEND_RAW, iface, dst_mac, *[bytes(p).hex() for p in packets])
    if r.returncode != 0:
        check(False, f"scapy sends frames on {iface}: {r.stderr.strip().splitlines()[-1:]}")
    time.sleep(0.3)


def spoof_from_exempt_ports(ns, iface, mac, src, dst, sink_ns, enforcer):
    """Cleartext from source ports 88, 500 and 4500 put on the wire (from `ns`)
    towards UDP port 6000 of `dst`: what the application there received, and
    how many packets `enforcer` dropped and counted meanwhile."""
    before = enforcer.stats()
    sink = UdpSink(sink_ns, dst, 6000, 4, base.PROCS)
    send_raw(ns, iface, mac, [IP(src=src, dst=dst) / UDP(sport=p, dport=6000) / Raw(f"spoof-from-{p}".encode())
                              for p in (88, 500, 4500)])
    got = sink.received()
    return got, delta(enforcer.stats(), before, "cleartext_dropped", "ipsec_failed")


def send_udp(ns, src, sport, dst, dport, text, user=None):
    cmd = ["ip", "netns", "exec", ns]
    if user:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user if user != 'nobody' else 'nogroup'}", "--clear-groups"]
    cmd += ["/usr/bin/python3", "-c", UDP_SEND, src, str(sport), dst, str(dport), text]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def delta(after, before, *keys):
    """after - before for stats["packets"][key], summed; a missing key counts as 0 (older builds)."""
    return sum(after["packets"].get(k, 0) - before["packets"].get(k, 0) for k in keys)


def exempted(stats, exemption, direction):
    for x in stats.get("exemptions", []):
        if x["exemption"] == exemption and x["direction"] == direction:
            return x["packets"]
    return 0


def nstat(ns, counter):
    out = nsx(ns, "nstat", "-az", counter).stdout.split()
    return int(out[out.index(counter) + 1]) if counter in out else -1


def clear_udp(path, *texts):
    """(src, sport, dst, dport, text) of every UDP datagram in a capture whose
    payload shows one of `texts` in clear (whatever a dissector makes of its
    ports: tshark takes port 4500 for ESP in UDP)."""
    from scapy.all import rdpcap
    rows = []
    for p in rdpcap(path):
        if IP in p and UDP in p:
            data = bytes(p[UDP].payload)
            for t in texts:
                if t.encode() in data:
                    rows.append((p[IP].src, p[UDP].sport, p[IP].dst, p[UDP].dport, t))
    return rows


def esp_count(path):
    return len(tshark(path, "-Y", "esp").splitlines())


def verify_reasons(path, config):
    r = subprocess.run([base.IPSENTRY, "verify", path, "-c", config, "--json"], capture_output=True, text=True)
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        return []
    return [(p.get("spi"), p["verdict"], p["reason"]) for p in doc.get("packets", [])]


# ---------------------------------------------------------------------------
# Two hosts, ESP transport, `inbound: require`

def scenario_host(tmp):
    print("# host: spoofed source ports, IKE, a local user's port 4500, dummy packets (A 192.0.2.1 <-> B 192.0.2.2)")
    a, b = ns_add("a"), ns_add("b")
    link(a, "ea", b, "eb", A_MAC, B_MAC)
    up(a, "ea", f"{A}/24")
    up(b, "eb", f"{B}/24")
    ca = esp_config(os.path.join(tmp, "a.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    cb = esp_config(os.path.join(tmp, "b.yaml"), B, A, "0x1002", GCM_BA, "0x1001", GCM_AB)
    ea, eb = Enforcer(a, ca, tmp, "pa"), Enforcer(b, cb, tmp, "pb", ["--print-policy"])
    check(ea.start() and eb.start(), "enforcement starts on both hosts")
    log = eb.log_text()
    check("exemptions: ike in: udp any -> me port 500" in log and "none for forwarded traffic" in log,
          "the start log lists every exemption with its selectors")
    check("exempt ike out" in log and "from root's sockets only" in log and "exempt kerberos" not in log,
          "--print-policy shows the exemptions (IKE out only from root's sockets; no Kerberos)")
    n, _ = base.ping(a, B, 2)
    check(n == 2, "protected traffic flows")

    # Spoofed cleartext from the source ports the old defaults exempted.
    got, dropped = spoof_from_exempt_ports(a, "ea", B_MAC, A, B, b, eb)
    check(got == [], f"cleartext to B's port 6000 from source ports 88, 500 and 4500 never reaches the application "
                     f"({got})")
    check(dropped == 3, f"... all three are dropped and counted ({dropped}; from port 4500 it is taken for ESP in UDP "
                        f"and fails as an unknown SPI)")
    # IKE to B's own port 500 still passes, from 500 and from a NAT's port.
    before = eb.stats()
    sink = UdpSink(b, B, 500, 3, base.PROCS)
    send_raw(a, "ea", B_MAC, [IP(src=A, dst=B) / UDP(sport=sp, dport=500) / Raw(f"ike-from-{sp}".encode())
                              for sp in (500, 31234)])
    got = sink.received()
    after = eb.stats()
    check(sorted(got) == ["ike-from-31234", "ike-from-500"], f"IKE to B's port 500 passes ({got})")
    check(exempted(after, "ike", "in") - exempted(before, "ike", "in") == 2,
          f"stats count it under the ike exemption ({exempted(before, 'ike', 'in')} -> {exempted(after, 'ike', 'in')})")
    st = nsx(b, base.IPSENTRY, "stats", "--socket", eb.sock).stdout
    check("Exemptions" in st and "ike in" in st, "ipsentry stats shows the exemptions' counts")

    # What leaves B: a local user on port 4500 and anybody on port 88 are
    # protected; root's IKE from port 500 goes out in clear.
    cap = Capture(b, "eb", os.path.join(tmp, "host-out.pcap"), "not arp")
    r1 = send_udp(b, B, 4500, A, 6000, "user-from-4500", user="nobody")
    r2 = send_udp(b, B, 88, A, 6000, "root-from-88")
    r3 = send_udp(b, B, 500, A, 500, "root-ike-500")
    cap.stop()
    check(r1.returncode == 0 and r2.returncode == 0 and r3.returncode == 0,
          f"the datagrams are sent ({(r1.stderr + r2.stderr + r3.stderr).strip()[-200:]})")
    leaked = clear_udp(cap.path, "user-from-4500", "root-from-88")
    check(leaked == [], f"nothing B's unprivileged user sends from UDP 4500, nor anything from port 88, leaves in clear "
                        f"({leaked})")
    check(esp_count(cap.path) >= 2, f"... they leave as ESP ({esp_count(cap.path)} ESP packets)")
    check(clear_udp(cap.path, "root-ike-500") == [(B, 500, A, 500, "root-ike-500")],
          "root's IKE from port 500 leaves in clear (exempt)")

    # An authentic ESP dummy packet (next header 59), made with A's keys.
    sa = RefSA(0x1001, "aes-gcm-16", bytes.fromhex(GCM_AB))
    sa.seq = 500_000  # above anything A's enforcement sent: this ends the scenario
    dummy = IP(src=A, dst=B, proto=50) / Raw(sa.encrypt(b"traffic flow confidentiality padding", 59))
    before = eb.stats()
    unknown_before = nstat(b, "IpInUnknownProtos")
    log_before = len(eb.log_text())
    cap = Capture(b, "eb", os.path.join(tmp, "dummy.pcap"), "esp")
    send_raw(a, "ea", B_MAC, [dummy])
    cap.stop()
    after = eb.stats()
    check(delta(after, before, "dummy") == 1 and delta(after, before, "decapsulated") == 0,
          f"the dummy packet is counted as a dummy, not delivered (dummy +{delta(after, before, 'dummy')}, "
          f"decapsulated +{delta(after, before, 'decapsulated')})")
    check(nstat(b, "IpInUnknownProtos") == unknown_before,
          "B's stack never saw a protocol-59 packet (IpInUnknownProtos unchanged)")
    check(len(eb.log_text()) == log_before, "and nothing is logged for it")
    reasons = verify_reasons(cap.path, cb)
    check(reasons == [(0x1001, "ok", "dummy_packet")], f"ipsentry verify calls it a dummy: {reasons}")
    check(ea.stop() == 0 and eb.stop() == 0, "both enforcements stop cleanly")


# ---------------------------------------------------------------------------
# The seeds' gateway tunnel (002), written literally

G1, G2 = "198.51.100.1", "198.51.100.2"
NET_A, NET_B = "192.0.2.0/25", "203.0.113.0/24"
HOST_A, HOST_B = "192.0.2.10", "203.0.113.10"
G1_MAC = "02:00:00:00:01:01"


def gateway_config(path, me, peer, net_me, net_peer, spi_out, keys_out, spi_in, keys_in, literal=True):
    """The gateway configuration of test_enforce, its mirrored rule written
    `literal`ly as the seed builds the tunnel: two one-way rules, ours to
    theirs with the peer as endpoint, theirs to ours with this gateway as
    endpoint."""
    base.gw_config(path, me, peer, net_me, net_peer, spi_out, spi_in, *keys_out, *keys_in)
    if literal:
        text = open(path).read()
        mirrored = text[text.index("  - name: "):text.index("sas:\n")]
        one_way = mirrored.replace("    mirrored: true\n", "").replace("sas: [out, in]", "sas: [out]")
        back = (one_way.replace(f"name: {net_me}-{net_peer}", f"name: {net_peer}-to-{net_me}")
                .replace(f"from: {net_me}\n    to: {net_peer}", f"from: {net_peer}\n    to: {net_me}")
                .replace(f"peer: {peer}", f"peer: {me}").replace("sas: [out]", "sas: [in]"))
        open(path, "w").write(text.replace(mirrored, one_way + back))
    return path


def scenario_gateway(tmp):
    print("# gateway: hostA - gw1 - ESP tunnel - gw2 - hostB, each gateway's policy written as the seed's two rules")
    ha, g1, g2, hb = base.gateway_namespaces()
    def configs(literal):
        k12, k21 = (base.CBC_KEY_12, base.SHA_KEY_12), (base.CBC_KEY_21, base.SHA_KEY_21)
        return (gateway_config(os.path.join(tmp, "gw1.yaml"), G1, G2, NET_A, NET_B, "0x2001", k12, "0x2002", k21,
                               literal),
                gateway_config(os.path.join(tmp, "gw2.yaml"), G2, G1, NET_B, NET_A, "0x2002", k21, "0x2001", k12,
                               literal))

    c1, c2 = configs(literal=True)
    r = nsx(g1, base.IPSENTRY, "config", "check", c1)
    if not check(r.returncode == 0 and "this gateway: the tunnel's inbound half" in r.stdout,
                 f"config check accepts the literal layout on gw1 and names the inbound half "
                 f"({(r.stdout + r.stderr).strip().splitlines()[-1:]})"):
        # Go on with the mirrored form, so that the other checks still say what they find.
        c1, c2 = configs(literal=False)
    e1, e2 = Enforcer(g1, c1, tmp, "pg1"), Enforcer(g2, c2, tmp, "pg2")
    check(e1.start() and e2.start(), "enforcement starts on both gateways with the literal layout")
    if e1.proc.poll() is not None or e2.proc.poll() is not None:
        return
    cap = Capture(g2, "g2m", os.path.join(tmp, "gw-middle.pcap"), "not arp")
    n, _ = base.ping(ha, HOST_B, 3)
    check(n == 3, "hostA pings hostB through the tunnel")
    # Through the gateway: what hostA sends from the old exempt ports is tunneled.
    sink_b = UdpSink(hb, HOST_B, 6000, 4, base.PROCS)
    for p in (88, 500, 4500):
        send_udp(ha, HOST_A, p, HOST_B, 6000, f"netA-from-{p}")
    got = sink_b.received()
    cap.stop()
    check(sorted(got) == ["netA-from-4500", "netA-from-500", "netA-from-88"],
          f"hostA's datagrams from ports 88, 500 and 4500 reach hostB ({got})")
    leaked = clear_udp(cap.path, *[f"netA-from-{p}" for p in (88, 500, 4500)])
    check(leaked == [], f"... through the tunnel: none crosses the middle link in clear ({leaked})")

    # Spoofed cleartext towards NetA from outside, from the old exempt ports.
    got, dropped = spoof_from_exempt_ports(g2, "g2m", G1_MAC, HOST_B, HOST_A, ha, e1)
    check(got == [], f"spoofed cleartext from ports 88, 500, 4500 does not get through gw1 to hostA ({got})")
    check(dropped == 3, f"... gw1 drops and counts all three ({dropped})")
    # IKE from gw2 to gw1's port 500 is gw1's own and passes.
    before = e1.stats()
    sink_ike = UdpSink(g1, G1, 500, 3, base.PROCS)
    send_udp(g2, G2, 500, G1, 500, "ike-gw2")
    got = sink_ike.received()
    after = e1.stats()
    check(got == ["ike-gw2"] and exempted(after, "ike", "in") > exempted(before, "ike", "in"),
          f"IKE from gw2 to gw1's port 500 passes and is counted as exempt ({got})")

    # Authentic tunnel packets, made with gw2's outbound SA (its keys).
    sa = RefSA(0x2002, "aes-cbc", bytes.fromhex(base.CBC_KEY_21), "hmac-sha256-128", bytes.fromhex(base.SHA_KEY_21))
    sa.seq = 1_000_000  # above anything gw2 sent: the last thing this scenario does

    def tunnel(inner, nh=4):
        return IP(src=G2, dst=G1, proto=50) / Raw(sa.encrypt(bytes(inner), nh))

    def inner(src, dst, text):
        return IP(src=src, dst=dst) / UDP(sport=40000, dport=6000) / Raw(text.encode())

    before = e1.stats()
    log_before = e1.log_text()
    sink_a = UdpSink(ha, HOST_A, 6000, 5, base.PROCS)
    sink_g = UdpSink(g1, "0.0.0.0", 6000, 5, base.PROCS)
    cap = Capture(g1, "g1m", os.path.join(tmp, "gw-forged.pcap"), "esp")
    send_raw(g2, "g2m", G1_MAC, [
        tunnel(inner(HOST_B, HOST_A, "tunnel-good")),
        tunnel(inner("198.51.100.77", HOST_A, "tunnel-source-outside-netB")),
        tunnel(inner(HOST_B, G1, "tunnel-to-the-gateway")),
        tunnel(inner(HOST_B, HOST_A, "tunnel-dummy"), nh=59),
    ])
    cap.stop()
    got_a, got_g = sink_a.received(), sink_g.received()
    after = e1.stats()
    check(got_a == ["tunnel-good"], f"hostA receives only the good tunnel packet ({got_a})")
    check(got_g == [], f"gw1 itself receives nothing through the tunnel ({got_g})")
    mism = delta(after, before, "policy_mismatch")
    check(mism == 2, f"the packets from outside NetB and to the gateway are counted as policy mismatches ({mism})")
    check(delta(after, before, "dummy") == 1, f"the dummy is counted as a dummy ({delta(after, before, 'dummy')})")
    new_log = e1.log_text()[len(log_before):]
    check(new_log.count("policy-mismatch") == 2 and "198.51.100.77 -> 192.0.2.10" in new_log and "dummy" not in new_log,
          f"the mismatches are logged, the dummy is not:\n{new_log.strip()}")
    reasons = [x[2] for x in verify_reasons(cap.path, c1)]
    check(reasons == ["verified", "verified", "verified", "dummy_packet"],
          f"ipsentry verify: the three are authentic, the fourth a dummy ({reasons})")
    check(e1.stop() == 0 and e2.stop() == 0, "both gateways stop cleanly")


def main():
    base.IPSENTRY = ipsentry_as_root()
    if base.IPSENTRY is None:
        return 77
    only = os.environ.get("ONLY")
    with tempfile.TemporaryDirectory(prefix="ipsentry-policy-") as tmp:
        os.chmod(tmp, 0o755)
        for name, fn in (("host", scenario_host), ("gateway", scenario_gateway)):
            if only in (None, name):
                run_scenario(name, fn, tmp, base.FAILS, base.cleanup)
    print(f"{len(base.FAILS)} failure(s)" if base.FAILS else "all enforcement policy checks passed")
    return 1 if base.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
