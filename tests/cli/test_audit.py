#!/usr/bin/python3
"""The policy audit (`verify --policy CONFIG --as ADDR`, issue 20) on captures
made with scapy, an ESP implementation independent of ipsentry.

gateway.pcap, seen from gateway 1 (203.0.113.1) of an ESP tunnel NetA
192.0.2.0/25 <-> NetB 192.0.2.128/25 with gateway 2 (198.51.100.1), holds
tunnel traffic and, mixed into it, one packet of each kind the audit must
tell apart:
  - cleartext NetA -> NetB on the wire (injected): cleartext-leak
  - an authentic tunnel packet (right SA, right keys) whose inner source
    198.51.100.99 is outside NetB: policy-mismatch
  - cleartext telnet NetA -> NetB, which a block policy selects: blocked-seen
  - IKE between the gateways: exempt; DNS to a resolver a permit policy
    allows: permitted; cleartext from a host whose policy has `inbound:
    request`: cleartext-allowed; ESP on that host's transport SAs: conforms
Only the three findings are flagged, each on exactly its frame.

rekey.pcap, seen from host 192.0.2.1 talking to 192.0.2.2 under two
policies, each rekeyed once by hand (two SA pairs): `web` with an overlap
(the new SA starts 0.5 s before the old one's last packet, which comes after
the successor took over) and `mail` with a 1 s gap holding one cleartext
packet, its second SA used beyond its 5 s lifetime. The timeline must link
the successors and tell the overlap from the gap.

Also: -j 2 gives the same audit as -j 1, text and JSON agree, and bad
inputs (no vantage point, an address that is not one, a broken policy
file) are refused with an error naming the problem. And what attacking the
audit found (test_attacks): exemptions for multicast, broadcast and
Neighbor Discovery from other hosts; non-IKE on IKE's ports and UDP on
port 4500 that no SA knows; the later fragments of a leaked datagram; two
SAs with one SPI; a negotiated tunnel from another gateway; a judgement
remembered across SA modes (order and thread independence); a vantage
point the capture never shows.

Run: test_audit.py --ipsentry build/cli/ipsentry
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from scapy.all import ESP, ICMP, IP, TCP, UDP, Ether, IPv6, Raw, fragment, wrpcap
from scapy.layers.inet6 import ICMPv6ND_NS
from scapy.layers.isakmp import ISAKMP
from scapy.layers.ipsec import SecurityAssociation

FAILS = []
CHECKS = [0]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
    return cond


GW1, GW2 = "203.0.113.1", "198.51.100.1"
HOST_R = "198.51.100.7"  # a host gateway 1 talks to directly, under a request policy
KEYS = {  # AES-128-GCM key + 4-byte salt (RFC 4106): test values only
    0xC0FFEE01: "00112233445566778899aabbccddeeff01020304",
    0xC0FFEE02: "ffeeddccbbaa99887766554433221100a1a2a3a4",
    0x7001: "0102030405060708090a0b0c0d0e0f1011121314",
    0x7002: "1112131415161718191a1b1c1d1e1f2021222324",
    0x101: "2122232425262728292a2b2c2d2e2f3031323334",
    0x201: "3132333435363738393a3b3c3d3e3f4041424344",
    0x102: "4142434445464748494a4b4c4d4e4f5051525354",
    0x202: "5152535455565758595a5b5c5d5e5f6061626364",
}


def sa(spi, src=None, dst=None):
    tunnel = {"src": src, "dst": dst} if src else None
    return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-GCM", crypt_key=bytes.fromhex(KEYS[spi]),
                               auth_algo="NULL", tunnel_header=IP(src=src, dst=dst) if tunnel else None)


def sa_yaml(name, spi, direction, src, dst, mode, extra=""):
    return f"""  - name: {name}
    spi: {spi:#x}
    direction: {direction}
    src: {src}
    dst: {dst}
    protocol: esp
    mode: {mode}
    encryption: aes-gcm-16
    enc_key: 0x{KEYS[spi]}
{extra}"""


GATEWAY_YAML = f"""interfaces: {{ local: [{GW1}] }}
policies:
  - name: dns
    from: me
    to: 198.51.100.53/32
    protocol: udp
    to_port: 53
    action: permit
  - name: no-telnet
    from: 192.0.2.0/25
    to: 192.0.2.128/25
    protocol: tcp
    to_port: 23
    mirrored: true
    action: block
  - name: neta-netb
    from: 192.0.2.0/25
    to: 192.0.2.128/25
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: tunnel, peer: {GW2} }}
    sas: [gw1-gw2, gw2-gw1]
  - name: mgmt
    from: me
    to: {HOST_R}/32
    mirrored: true
    action: protect
    inbound: request
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [mgmt-out, mgmt-in]
sas:
{sa_yaml("gw1-gw2", 0xC0FFEE01, "outbound", GW1, GW2, "tunnel")}{sa_yaml("gw2-gw1", 0xC0FFEE02, "inbound", GW2, GW1, "tunnel")}{sa_yaml("mgmt-out", 0x7001, "outbound", GW1, HOST_R, "transport")}{sa_yaml("mgmt-in", 0x7002, "inbound", HOST_R, GW1, "transport")}"""


def frame(pkt, t):
    f = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x86DD if pkt.haslayer(IPv6) else 0x0800) / pkt
    f.time = t
    return f


def gateway_capture(path):
    """-> {frame number: expected audit verdict} of the frames that are not plain tunnel traffic."""
    out12, in21 = sa(0xC0FFEE01, GW1, GW2), sa(0xC0FFEE02, GW2, GW1)
    mgmt_out, mgmt_in = sa(0x7001), sa(0x7002)
    frames, special = [], {}
    t = 1700000000.0

    def add(pkt, verdict=None):
        nonlocal t
        frames.append(frame(pkt, t))
        t += 0.1
        if verdict:
            special[len(frames)] = verdict

    for i in range(1, 4):
        add(out12.encrypt(IP(src="192.0.2.10", dst="192.0.2.130") / ICMP(id=7, seq=i)))
        add(in21.encrypt(IP(src="192.0.2.130", dst="192.0.2.10") / ICMP(type=0, id=7, seq=i)))
    add(IP(src="192.0.2.10", dst="192.0.2.130") / ICMP(id=7, seq=99), "cleartext-leak")
    # Hosts protecting their own traffic end to end inside the tunnel (an SA
    # the gateway has no key for): the tunnel's policy judges the ESP packet.
    add(out12.encrypt(IP(src="192.0.2.12", dst="192.0.2.132") / ESP(spi=0x9999, seq=1) / Raw(b"x" * 32)), "conforms")
    add(out12.encrypt(IP(src="192.0.2.10", dst="192.0.2.130") / TCP(sport=40000, dport=80, flags="S")))
    add(in21.encrypt(IP(src="198.51.100.99", dst="192.0.2.10") / ICMP(id=8, seq=1)), "policy-mismatch")
    add(IP(src="192.0.2.11", dst="192.0.2.131") / TCP(sport=40001, dport=23, flags="S"), "blocked-seen")
    add(IP(src=GW1, dst=GW2) / UDP(sport=500, dport=500) /
        ISAKMP(init_cookie=b"\x11" * 8, exch_type=34, version=0x20, flags=0x08), "exempt")  # IKE_SA_INIT
    add(IP(src=GW1, dst="198.51.100.53") / UDP(sport=53000, dport=53) / Raw(b"\0" * 12), "permitted")
    add(IP(src=HOST_R, dst=GW1) / ICMP(id=9, seq=1), "cleartext-allowed")
    add(mgmt_out.encrypt(IP(src=GW1, dst=HOST_R) / ICMP(id=10, seq=1)), "conforms")
    add(mgmt_in.encrypt(IP(src=HOST_R, dst=GW1) / ICMP(type=0, id=10, seq=1)), "conforms")
    add(in21.encrypt(IP(src="192.0.2.130", dst="192.0.2.10") / TCP(sport=80, dport=40000, flags="SA")))
    # A leak cut short (its TCP header incomplete) is still a leak.
    add(Raw(bytes(IP(src="192.0.2.10", dst="192.0.2.130") / TCP(sport=40002, dport=443))[:26]), "cleartext-leak")
    wrpcap(path, frames)
    return special


A, B = "192.0.2.1", "192.0.2.2"
LIFETIME_5S = "    lifetime: { seconds: 5 }\n"

REKEY_YAML = f"""interfaces: {{ local: [{A}] }}
policies:
  - name: web
    from: me
    to: {B}
    protocol: tcp
    to_port: 80
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [web1-out, web2-out, web-in]
  - name: mail
    from: me
    to: {B}
    protocol: tcp
    to_port: 25
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [mail1-out, mail2-out, mail-in]
sas:
{sa_yaml("web1-out", 0x101, "outbound", A, B, "transport")}{sa_yaml("web2-out", 0x201, "outbound", A, B, "transport")}{sa_yaml("web-in", 0x7002, "inbound", B, A, "transport")}{sa_yaml("mail1-out", 0x102, "outbound", A, B, "transport")}{sa_yaml("mail2-out", 0x202, "outbound", A, B, "transport", LIFETIME_5S)}{sa_yaml("mail-in", 0x7001, "inbound", B, A, "transport")}"""


def rekey_capture(path):
    web1, web2, mail1, mail2 = sa(0x101), sa(0x201), sa(0x102), sa(0x202)
    t0 = 1700000000.0
    events = []
    for i in range(11):  # web1 at 0..10 s; web2 from 9.5 s: 0.5 s overlap, web1's 10 s packet after the switch
        events.append((t0 + i, web1.encrypt(IP(src=A, dst=B) / TCP(sport=41000, dport=80, seq=i))))
    for i in range(6):
        events.append((t0 + 9.5 + 2 * i, web2.encrypt(IP(src=A, dst=B) / TCP(sport=41000, dport=80, seq=100 + i))))
    for i in range(11):  # mail1 at 0..10 s, cleartext at 10.5 s, mail2 from 11 s to 20 s (lifetime 5 s)
        events.append((t0 + i + 0.25, mail1.encrypt(IP(src=A, dst=B) / TCP(sport=42000, dport=25, seq=i))))
    events.append((t0 + 10.5, IP(src=A, dst=B) / TCP(sport=42000, dport=25, seq=50)))
    for i in range(10):
        events.append((t0 + 11 + i, mail2.encrypt(IP(src=A, dst=B) / TCP(sport=42000, dport=25, seq=200 + i))))
    events.sort(key=lambda e: e[0])
    wrpcap(path, [frame(p, t) for t, p in events])
    return t0


def write_cfg(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path


def run(ipsentry, *args):
    return subprocess.run([ipsentry, *args, "--no-progress"], capture_output=True, text=True)


def verdicts(doc):
    """{frame: audit verdict} of the packets array: cleartext objects, and the audit of IPsec layer 1."""
    out = {}
    for p in doc["packets"]:
        if p["layer"] == 0:
            out[p["frame"]] = p["verdict"]
        elif p["layer"] == 1 and "audit" in p:
            out[p["frame"]] = p["audit"]
    return out


def test_gateway(ipsentry, tmp):
    pcap, cfg = os.path.join(tmp, "gateway.pcap"), os.path.join(tmp, "gateway.yaml")
    special = gateway_capture(pcap)
    write_cfg(cfg, GATEWAY_YAML)
    r = run(ipsentry, "verify", pcap, "--policy", cfg, "--json")
    check(r.returncode == 1, f"gateway: verify --policy exits 1 on findings (got {r.returncode}): {r.stderr}")
    doc = json.loads(r.stdout)
    got = verdicts(doc)
    flagged = {f: v for f, v in got.items() if v in ("cleartext-leak", "policy-mismatch", "blocked-seen")}
    want_flagged = {f: v for f, v in special.items() if v in ("cleartext-leak", "policy-mismatch", "blocked-seen")}
    check(flagged == want_flagged, f"gateway: the findings are exactly {want_flagged}, got {flagged}")
    for f, v in special.items():
        if v in ("cleartext-allowed", "conforms"):
            check(got.get(f) == v, f"gateway: frame {f} is reported as {v} (got {got.get(f)})")
    audit = doc["statistics"]["policy_audit"]
    counts = audit["verdicts"]
    check(counts["cleartext-leak"] == 2 and counts["policy-mismatch"] == 1 and counts["blocked-seen"] == 1,
          f"gateway: one of each finding counted: {counts}")
    check(counts["exempt"] == 1 and counts["permitted"] == 1 and counts["cleartext-allowed"] == 1,
          f"gateway: the IKE frame exempt, DNS permitted, request-policy cleartext allowed: {counts}")
    esp_frames = len([p for p in doc["packets"] if p["layer"] == 1])
    check(counts["conforms"] == esp_frames - 1, f"gateway: every other ESP frame conforms ({counts['conforms']} of "
                                                f"{esp_frames - 1})")
    check(audit["vantage"] == [GW1], f"gateway: the vantage point is the configuration's interfaces.local: "
                                     f"{audit['vantage']}")
    by_frame = {p["frame"]: p for p in doc["packets"] if p["layer"] <= 1}
    leak = min(f for f, v in special.items() if v == "cleartext-leak")
    mism = next(f for f, v in special.items() if v == "policy-mismatch")
    blk = next(f for f, v in special.items() if v == "blocked-seen")
    check(by_frame[leak]["policy"] == "neta-netb" and by_frame[leak]["src"] == "192.0.2.10",
          f"gateway: the leak names its policy and addresses: {by_frame[leak]}")
    check(by_frame[mism]["verdict"] == "ok" and by_frame[mism]["inner_src"] == "198.51.100.99" and
          by_frame[mism]["sa"] == "gw2-gw1" and by_frame[mism]["sa_policy"] == "neta-netb (mirrored)",
          f"gateway: the mismatch verified (the SA is authentic) and names the inner packet and the SA's policy: "
          f"{by_frame[mism]}")
    check(by_frame[blk]["policy"] == "no-telnet", f"gateway: blocked-seen names the block policy: {by_frame[blk]}")

    # The text report says the same, on the same frames.
    t = run(ipsentry, "verify", pcap, "--policy", cfg)
    lines = t.stdout.splitlines()
    for f, v in want_flagged.items():
        mine = [ln for ln in lines if ln.split()[:1] in ([str(f)], [f"{f}.p"]) and " → " in ln and v in ln]
        check(len(mine) == 1, f"gateway text: frame {f} has one {v} line ({mine})")
    check("2 cleartext-leak" in t.stdout and "1 policy-mismatch" in t.stdout and "1 blocked-seen" in t.stdout,
          "gateway text: the policy audit summary counts each finding")
    nested = next(f for f, v in special.items() if v == "conforms" and by_frame[f]["spi"] == 0xC0FFEE01)
    check(by_frame[nested]["audit"] == "conforms" and by_frame[nested]["inner_protocol"] == 50,
          f"gateway: hosts' own ESP inside the tunnel is judged by the tunnel's policy: {by_frame[nested]}")
    # Without the policy the findings are gone: what remains is the inner
    # ESP nobody has the key for.
    plain = json.loads(run(ipsentry, "verify", pcap, "-c", cfg, "--json").stdout)["statistics"]["verdicts"]
    check({k: n for k, n in plain.items() if n and k != "ok"} == {"unknown-spi": 1},
          f"gateway: plain verify of the same capture finds only the inner ESP's unknown SPI: {plain}")
    # Threads: the same verdicts and counts.
    j2 = run(ipsentry, "verify", pcap, "--policy", cfg, "--json", "-j", "2")
    d2 = json.loads(j2.stdout)
    check(verdicts(d2) == got and d2["statistics"]["policy_audit"] == audit,
          "gateway: -j 2 gives the same audit as -j 1")


def test_rekey(ipsentry, tmp):
    pcap, cfg = os.path.join(tmp, "rekey.pcap"), os.path.join(tmp, "rekey.yaml")
    t0 = rekey_capture(pcap)
    write_cfg(cfg, REKEY_YAML)
    r = run(ipsentry, "verify", pcap, "--policy", cfg, "--json")
    doc = json.loads(r.stdout)
    check(r.returncode == 1, f"rekey: the cleartext in the mail gap is a finding (exit {r.returncode})")
    sas = {s["name"]: s.get("audit") for s in doc["security_associations"]}
    w1, w2, m1, m2 = sas["web1-out"], sas["web2-out"], sas["mail1-out"], sas["mail2-out"]
    if not check(all((w1, w2, m1, m2)), f"rekey: every outbound SA has a timeline: {sas}"):
        return
    check(w1["successor"] == "web2-out" and w2["predecessor"] == "web1-out" and w2["successor"] is None,
          f"rekey: web1 -> web2 linked: {w1}, {w2}")
    check(m1["successor"] == "mail2-out" and m2["predecessor"] == "mail1-out", f"rekey: mail1 -> mail2 linked: {m1}")
    check(abs(w1["overlap_seconds"] - 0.5) < 1e-6 and abs(w1["gap_seconds"] - 0.5) < 1e-6 and
          w1["cleartext_in_gap"] == 0,
          f"rekey: web1 went on 0.5 s after web2 took over (overlap); between its last packet before (9 s) and "
          f"web2's first (9.5 s) no cleartext: {w1}")
    check(w1["after_successor"] == 1, f"rekey: web1's packet at 10 s came after web2 took over at 9.5 s: {w1}")
    check(abs(m1["gap_seconds"] - 0.75) < 1e-6 and m1["overlap_seconds"] == 0 and m1["cleartext_in_gap"] == 1,
          f"rekey: mail has a 0.75 s gap (10.25 s to 11 s) holding the one cleartext packet: {m1}")
    check(m2["lifetime_seconds"] == 5 and m2["after_lifetime"] == 4,
          f"rekey: mail2 (lifetime 5 s, packets at 11..20 s) carried 4 packets after its lifetime: {m2}")
    check(abs(w1["first_timestamp"] - t0) < 1e-6 and abs(w1["last_timestamp"] - (t0 + 10)) < 1e-6,
          f"rekey: web1's first and last packets: {w1}")
    leaks = [p for p in doc["packets"] if p.get("verdict") == "cleartext-leak"]
    check(len(leaks) == 1 and leaks[0]["policy"] == "mail" and leaks[0]["dport"] == 25,
          f"rekey: the gap's cleartext packet is the one leak, under 'mail': {leaks}")
    t = run(ipsentry, "verify", pcap, "--policy", cfg).stdout
    check("gap 0.500 s, overlap 0.500 s" in t and "gap 0.750 s, 1 cleartext" in t and
          "1 after its successor took over" in t and
          "4 after its lifetime (5 s)" in t, f"rekey text: the SA timeline tells overlap from gap:\n{t[-1500:]}")


def test_errors(ipsentry, tmp):
    pcap = os.path.join(tmp, "gateway.pcap")
    bare = os.path.join(tmp, "bare.yaml")
    write_cfg(bare, GATEWAY_YAML.replace(f"interfaces: {{ local: [{GW1}] }}\n", ""))
    r = run(ipsentry, "verify", pcap, "--policy", bare)
    check(r.returncode == 2 and "--as" in r.stderr and "interfaces.local" in r.stderr,
          f"no vantage point: exit 2 naming --as and interfaces.local ({r.returncode}: {r.stderr.strip()})")
    r = run(ipsentry, "verify", pcap, "--policy", bare, "--as", "gateway-one")
    check(r.returncode == 2 and "'gateway-one' is not an IPv4 or IPv6 address" in r.stderr,
          f"--as garbage: exit 2 naming it ({r.stderr.strip()})")
    r = run(ipsentry, "verify", pcap, "--policy", bare, "--as", GW1, "--json")
    check(r.returncode == 1 and json.loads(r.stdout)["statistics"]["policy_audit"]["vantage"] == [GW1],
          f"--as gives the vantage point when the configuration has none ({r.returncode})")
    r = run(ipsentry, "verify", pcap, "--as", GW1)
    check(r.returncode == 2 and "give --policy" in r.stderr, f"--as without --policy: exit 2 ({r.stderr.strip()})")
    broken = os.path.join(tmp, "broken.yaml")
    open(broken, "w").write("policies:\n  - name: x\n    from: [\n")
    r = run(ipsentry, "verify", pcap, "--policy", broken, "--as", GW1)
    check(r.returncode == 2 and "broken.yaml" in r.stderr, f"broken YAML: exit 2 naming the file ({r.stderr.strip()})")
    r = run(ipsentry, "verify", pcap, "--policy", os.path.join(tmp, "missing.yaml"))
    check(r.returncode == 2 and "missing.yaml" in r.stderr, f"missing file: exit 2 naming it ({r.stderr.strip()})")
    for out in (r.stdout, r.stderr):
        check(KEYS[0xC0FFEE01] not in out, "no key in any output")


def audit_of(ipsentry, pcap, cfg, *extra):
    r = run(ipsentry, "verify", pcap, "--policy", cfg, "--json", *extra)
    doc = json.loads(r.stdout)
    return {p["frame"]: p.get("audit") for p in doc["packets"] if p["layer"] <= 1}, doc, r


def test_attacks(ipsentry, tmp):
    # Exemptions for what other hosts send to groups and broadcasts.
    cfg = write_cfg(os.path.join(tmp, "any.yaml"), f"""interfaces: {{ local: [{A}, fe80::1] }}
exemptions: [ike, neighbor-discovery, multicast, broadcast]
policies:
  - name: everything
    from: any
    to: any
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [o, i]
sas:
{sa_yaml("o", 0x101, "outbound", A, B, "transport")}{sa_yaml("i", 0x201, "inbound", B, A, "transport")}""")
    frames = [IPv6(src="fe80::2", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="fe80::1"),
              IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(b"x" * 50),
              IP(src=B, dst="224.0.0.251") / UDP(sport=5353, dport=5353) / Raw(b"x" * 20),
              IP(src=B, dst=A) / UDP(sport=40000, dport=500) / Raw(b"not ike, just the port" * 3),
              IP(src=A, dst=B) / UDP(sport=40000, dport=4500) / Raw(b"PASSWORD=hunter2 " * 3)]
    pcap = os.path.join(tmp, "exempt.pcap")
    wrpcap(pcap, [frame(p, 1700000000.0 + i) for i, p in enumerate(frames)])
    _, doc, _ = audit_of(ipsentry, pcap, cfg)
    counts = doc["statistics"]["policy_audit"]["verdicts"]
    check(counts["exempt"] == 3 and counts["cleartext-leak"] == 2,
          f"attacks: ND, broadcast DHCP and mDNS from another host are exempt; non-IKE on port 500 and UDP on "
          f"port 4500 that no SA knows are leaks: {counts}")

    # The later fragments of a leaked datagram, and two SAs with one SPI.
    cfg = write_cfg(os.path.join(tmp, "frag.yaml"), f"""interfaces: {{ local: [{A}] }}
policies:
  - name: web
    from: me
    to: {B}
    protocol: tcp
    to_port: 80
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [web-out, web-in]
  - name: mail
    from: me
    to: 192.0.2.3
    protocol: tcp
    to_port: 25
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [mail-out, mail-in]
sas:
{sa_yaml("web-out", 0x101, "outbound", A, B, "transport")}{sa_yaml("web-in", 0x201, "inbound", B, A, "transport")}\
{sa_yaml("mail-out", 0x101, "outbound", A, "192.0.2.3", "transport").replace(KEYS[0x101], KEYS[0x102])}\
{sa_yaml("mail-in", 0x202, "inbound", "192.0.2.3", A, "transport")}""")
    mail = SecurityAssociation(ESP, spi=0x101, crypt_algo="AES-GCM", crypt_key=bytes.fromhex(KEYS[0x102]),
                               auth_algo="NULL")
    frags = fragment(IP(src=A, dst=B, id=77) / TCP(sport=40000, dport=80) / Raw(b"y" * 3000), fragsize=1000)
    frames = frags + [mail.encrypt(IP(src=A, dst="192.0.2.3") / TCP(sport=40001, dport=80))]
    pcap = os.path.join(tmp, "frag.pcap")
    wrpcap(pcap, [frame(p, 1700000000.0 + i) for i, p in enumerate(frames)])
    got, _, _ = audit_of(ipsentry, pcap, cfg)
    n = len(frags)
    check(n >= 3 and all(got.get(i) == "cleartext-leak" for i in range(1, n + 1)),
          f"attacks: every fragment of a leaked TCP/80 datagram is a leak, not only the first: {got}")
    check(got.get(n + 1) == "policy-mismatch",
          f"attacks: TCP/80 on mail's SA (the same SPI as web's, another peer) is a mismatch: {got.get(n + 1)}")

    # A judgement is not remembered across SA modes: an SA given without a
    # mode, a transport packet and a tunnel one, in either order and with
    # either number of threads.
    no_mode = sa_yaml("o", 0x101, "outbound", A, B, "transport").replace("    mode: transport\n", "")
    cfg = write_cfg(os.path.join(tmp, "mode.yaml"), f"""interfaces: {{ local: [{A}] }}
policies:
  - name: all-b
    from: me
    to: {B}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [o, i]
sas:
{no_mode}{sa_yaml("i", 0x201, "inbound", B, A, "transport")}""")
    for order in (("transport", "tunnel"), ("tunnel", "transport")):
        pkts = []
        for seq, kind in enumerate(order, 1):
            s = sa(0x101) if kind == "transport" else sa(0x101, A, B)
            s.seq_num = seq
            pkts.append(s.encrypt(IP(src=A, dst=B) / TCP(sport=1, dport=2)))
        pcap = os.path.join(tmp, "mode.pcap")
        wrpcap(pcap, [frame(p, 1700000000.0 + i) for i, p in enumerate(pkts)])
        want = {i + 1: "conforms" if k == "transport" else "policy-mismatch" for i, k in enumerate(order)}
        for j in ("1", "2"):
            got, _, _ = audit_of(ipsentry, pcap, cfg, "-j", j)
            check(got == want, f"attacks: {' then '.join(order)} on an SA without a mode, -j {j}: {got}")

    # A negotiated tunnel ends at its policy's peer.
    g1, g2, g3 = "203.0.113.1", "198.51.100.1", "198.51.100.3"
    cfg = write_cfg(os.path.join(tmp, "nego.yaml"), f"""interfaces: {{ local: [{g1}] }}
ike_profiles:
  - name: to-gw2
    auth: {{ method: psk, psk: "a long shared secret for testing" }}
    peer: {g2}
policies:
  - name: s2s
    from: 192.0.2.0/25
    to: 192.0.2.128/25
    mirrored: true
    action: negotiate
    ike: to-gw2
    ipsec: {{ protocol: esp, mode: tunnel, peer: {g2} }}
""")
    keys = write_cfg(os.path.join(tmp, "nego-keys.yaml"), "sas:\n" + sa_yaml("n-in", 0x201, "inbound", g2, g1, "tunnel")
                     + sa_yaml("rogue", 0x102, "inbound", g3, g1, "tunnel"))
    inner = IP(src="192.0.2.130", dst="192.0.2.10") / TCP(sport=80, dport=1)
    pcap = os.path.join(tmp, "nego.pcap")
    wrpcap(pcap, [frame(sa(0x201, g2, g1).encrypt(inner), 1700000000.0),
                  frame(sa(0x102, g3, g1).encrypt(inner), 1700000001.0)])
    got, _, _ = audit_of(ipsentry, pcap, cfg, "-c", keys)
    check(got == {1: "conforms", 2: "policy-mismatch"},
          f"attacks: a negotiated tunnel's packet from another gateway is a mismatch: {got}")
    # A vantage point the capture never shows is said to be one.
    r = run(ipsentry, "verify", pcap, "--policy", cfg, "-c", keys, "--as", "192.0.2.99")
    check("sent or received none of the 2 frames" in r.stderr, f"attacks: a wrong --as is warned about: {r.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    a = ap.parse_args()
    ipsentry = os.path.abspath(a.ipsentry)
    with tempfile.TemporaryDirectory(prefix="ipsentry-audit-") as tmp:
        test_gateway(ipsentry, tmp)
        test_rekey(ipsentry, tmp)
        test_errors(ipsentry, tmp)
        test_attacks(ipsentry, tmp)
    for f in FAILS:
        print(f"FAIL: {f}")
    print(f"{CHECKS[0] - len(FAILS)}/{CHECKS[0]} checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
