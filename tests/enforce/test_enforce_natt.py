#!/usr/bin/python3
"""NAT traversal in enforcement (RFC 3948), through a real NAT.

    hostA 192.0.2.1 --- 192.0.2.254 natbox 198.51.100.254 --- 198.51.100.2 hostB

The natbox masquerades UDP into source ports 40000-40099, so hostA's ESP in
UDP 4500 reaches hostB from 198.51.100.254 and a port hostB must learn.
ipsentry protects everything between the hosts with ESP in UDP, transport
mode, on both. Checked:
- UDP and TCP (3 MB, SHA-256 both ways of the connection) arrive intact and
  the replies reach hostA; neither kernel counts a checksum error (nstat);
- hostB sends to the port the NAT mapped (tcpdump on hostB's link), and
  `ipsentry stats` shows that mapping;
- hostA's NAT keepalives (1 s here) appear on the wire when nothing else was
  sent, and hostB (keepalives off) sends none;
- forged ESP in UDP from another port (bad ICV) does not move the mapping,
  while an authentic one does, and hostA's next packet moves it back;
- a SIGHUP reload with the same SAs keeps the mapping;
- tshark dissects the ESP in UDP and the keepalives; `ipsentry verify -w`
  of hostB's capture writes packets whose checksums scapy finds valid.

Needs root (exit 77 = skipped otherwise). Documentation addresses only;
every namespace is removed whatever happens.
"""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.dirname(__file__))
from netns import ipsentry_as_root, run_scenario, sh  # noqa: E402
from ipsec_configs import GCM_AB, GCM_BA  # noqa: E402
import test_enforce as te  # noqa: E402  (its namespaces, enforcers, captures and checks)
from test_enforce import Capture, Enforcer, check, cleanup, ns_add, nsx, ping, tshark  # noqa: E402

A, NAT_IN, NAT_OUT, B = "192.0.2.1", "192.0.2.254", "198.51.100.254", "198.51.100.2"
GCM_SCAPY = "0123456789abcdef0123456789abcdef0a0b0c0d"  # the key of the SA scapy speaks on
PORTS = (40000, 40099)
KEEPALIVE = 1


def sa_stats(e, name):
    return next((x for x in (e.stats() or {}).get("sas", []) if x.get("name") == name), {})


def peers(e, name="out"):
    nat = sa_stats(e, name).get("nat") or {}
    return nat.get("peers") or []


def mapped_port(e):
    p = [x for x in peers(e) if x.get("address") == NAT_OUT and x.get("learned")]
    return p[0]["port"] if p else None


def rows(path, flt, *fields):
    args = ["-Y", flt, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    return [line.split("\t") for line in tshark(path, *args).splitlines() if line.strip()]


def csum_errors(ns):
    r = nsx(ns, "nstat", "-asz", "UdpInCsumErrors", "TcpInCsumErrors")
    got = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("UdpInCsumErrors", "TcpInCsumErrors"):
            got[parts[0]] = int(parts[1])
    return got


def topology():
    a, n, b = ns_add("a"), ns_add("n"), ns_add("b")
    sh("ip", "link", "add", "ea", "netns", a, "type", "veth", "peer", "name", "na", "netns", n)
    sh("ip", "link", "add", "nb", "netns", n, "type", "veth", "peer", "name", "eb", "netns", b)
    for ns, dev, addr in ((a, "ea", f"{A}/24"), (n, "na", f"{NAT_IN}/24"), (n, "nb", f"{NAT_OUT}/24"),
                          (b, "eb", f"{B}/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", a, "route", "add", "default", "via", NAT_IN)
    # hostB knows only the NAT's public address, as on the Internet.
    nsx(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    r = nsx(n, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "nb", "-p", "udp", "-j", "MASQUERADE",
            "--to-ports", f"{PORTS[0]}-{PORTS[1]}")
    check(r.returncode == 0, f"the natbox masquerades UDP into ports {PORTS[0]}-{PORTS[1]} {r.stderr.strip()}")
    # The NAT forwards only what it translated: nothing of hostA in clear.
    nsx(n, "iptables", "-A", "FORWARD", "-i", "na", "-p", "udp", "--dport", "4500", "-j", "ACCEPT")
    nsx(n, "iptables", "-A", "FORWARD", "-i", "nb", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
    nsx(n, "iptables", "-P", "FORWARD", "DROP")
    return a, n, b


def sa(name, spi, direction, src, dst, key, encap):
    return f"""  - name: {name}
    spi: {spi}
    direction: {direction}
    src: {src}
    dst: {dst}
    protocol: esp
    encryption: aes-gcm-16
    enc_key: 0x{key}
    encap: {{ {encap} }}
"""


def config(path, me, peer, sas, names):
    open(path, "w").write(f"""interfaces: {{ local: [{me}] }}
policies:
  - name: natt
    from: me
    to: {peer}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [{", ".join(names)}]
sas:
{sas}""")
    return path


UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 6000)); s.settimeout(20)
try:
    while True:
        d, peer = s.recvfrom(65535)
        s.sendto(d, peer)
except socket.timeout:
    pass
"""

UDP_CLIENT = r"""
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
ok = 0
for n in (1, 17, 100, 512, 1000, 1200, 1300, 1371):
    d = os.urandom(n)
    s.sendto(d, (sys.argv[1], 6000))
    try:
        back, _ = s.recvfrom(65535)
        ok += back == d
    except socket.timeout:
        pass
print(ok)
"""

# The server answers with what it received, so data goes both ways.
TCP_SERVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
answer = f"{n} {h.hexdigest()}"
c.sendall(answer.encode()); c.close()
print(answer)
"""

TCP_CLIENT = r"""
import socket, sys, time
data = open(sys.argv[2], 'rb').read()
end = time.time() + 15
while True:
    try:
        s = socket.create_connection((sys.argv[1], 5001), timeout=5); break
    except OSError:
        if time.time() > end:
            print("no connection"); sys.exit(1)
        time.sleep(0.1)
s.settimeout(30)
s.sendall(data); s.shutdown(socket.SHUT_WR)
print(s.recv(200).decode())
"""

# scapy on the natbox's public link speaks as 198.51.100.254 from ports the
# NAT never used: a forgery with SA 0x1001's SPI but not its key, and an
# authentic packet on SA 0x2001 whose key it holds.
SCAPY_SEND = r"""
import sys
from scapy.all import Ether, IP, UDP, Raw, ESP, sendp, get_if_hwaddr
from scapy.layers.ipsec import SecurityAssociation
mode, port, dst_mac = sys.argv[1], int(sys.argv[2]), sys.argv[3]
eth = Ether(src=get_if_hwaddr('nb'), dst=dst_mac)
if mode == 'forged':
    esp = (0x1001).to_bytes(4, 'big') + (10**6).to_bytes(4, 'big') + bytes(8) + b'forged' * 8 + bytes(16)
    sendp(eth / IP(src='198.51.100.254', dst='198.51.100.2') / UDP(sport=port, dport=4500, chksum=0) / Raw(esp),
          iface='nb', verbose=False)
else:
    sa = SecurityAssociation(ESP, spi=0x2001, crypt_algo='AES-GCM', crypt_key=bytes.fromhex(sys.argv[4]),
                             nat_t_header=UDP(sport=port, dport=4500))
    p = sa.encrypt(IP(src='198.51.100.254', dst='198.51.100.2') / UDP(sport=5353, dport=6000) / Raw(b'authentic'),
                   seq_num=1)
    raw = bytearray(bytes(p))
    raw[24:26] = (len(raw) - 20).to_bytes(2, 'big')  # scapy leaves the UDP length at 8
    raw[26:28] = bytes(2)
    sendp(eth / IP(bytes(raw)), iface='nb', verbose=False)
"""

SCAPY_CHECKSUMS = r"""
import sys
from scapy.all import rdpcap, IP, TCP, UDP
good = bad = 0
for p in rdpcap(sys.argv[1]):
    if IP not in p:
        continue
    for layer in (TCP, UDP):
        if layer in p[IP]:
            got = p[layer].chksum
            if layer is UDP and got == 0:
                continue
            q = IP(bytes(p[IP])); del q[layer].chksum
            want = IP(bytes(q))[layer].chksum
            good, bad = (good + 1, bad) if got == want else (good, bad + 1)
print(good, bad)
"""


def scenario(tmp):
    a, n, b = topology()
    ca = config(os.path.join(tmp, "a.yaml"), A, B,
                sa("out", "0x1001", "outbound", A, B, GCM_AB, f"sport: 4500, dport: 4500, keepalive: {KEEPALIVE}") +
                sa("in", "0x1002", "inbound", B, A, GCM_BA, "sport: 4500, dport: 4500"), ["out", "in"])
    cb = config(os.path.join(tmp, "b.yaml"), B, NAT_OUT,
                sa("out", "0x1002", "outbound", B, NAT_OUT, GCM_BA, "sport: 4500, dport: 4500, keepalive: off") +
                sa("in", "0x1001", "inbound", NAT_OUT, B, GCM_AB, "sport: 4500, dport: 4500") +
                sa("scapy", "0x2001", "inbound", NAT_OUT, B, GCM_SCAPY, "sport: 4500, dport: 4500"),
                ["out", "in", "scapy"])
    r = sh(te.IPSENTRY, "config", "check", ca, check=False)
    row = next((line.strip() for line in r.stdout.splitlines() if "in UDP" in line), r.stderr.strip())
    check(r.returncode == 0 and "NAT keepalive after 1 s idle" in row,
          f"config check shows ESP in UDP and the keepalive interval ('{row}')")
    ea, eb = Enforcer(a, ca, tmp, "a"), Enforcer(b, cb, tmp, "b")
    if not check(ea.start() and eb.start(), "enforcement starts on both hosts"):
        return
    cap_b = Capture(b, "eb", os.path.join(tmp, "b-side.pcap"), "ip")
    cap_a = Capture(a, "ea", os.path.join(tmp, "a-side.pcap"), "ip")

    n_ping, _ = ping(a, B, 3)
    check(n_ping == 3, f"hostA pings hostB through the NAT ({n_ping}/3)")
    echo = subprocess.Popen(["ip", "netns", "exec", b, "/usr/bin/python3", "-c", UDP_ECHO, B])
    te.PROCS.append(echo)
    time.sleep(0.3)
    r = nsx(a, "/usr/bin/python3", "-c", UDP_CLIENT, B)
    got = int(r.stdout.strip() or 0)
    check(got == 8, f"8 UDP datagrams (1 to 1371 bytes) reach hostB and come back intact ({got}/8)")
    echo.kill()

    size = 3_000_000
    payload = os.urandom(size)
    path = os.path.join(tmp, "payload")
    open(path, "wb").write(payload)
    srv = subprocess.Popen(["ip", "netns", "exec", b, "/usr/bin/python3", "-c", TCP_SERVER, B],
                           stdout=subprocess.PIPE, text=True)
    te.PROCS.append(srv)
    time.sleep(0.3)
    t0 = time.time()
    try:
        cli = nsx(a, "/usr/bin/python3", "-c", TCP_CLIENT, B, path, timeout=90)
    except subprocess.TimeoutExpired:
        cli = subprocess.CompletedProcess([], 1, "client timed out", "")
    try:
        srv_out = srv.communicate(timeout=40)[0].strip()
    except subprocess.TimeoutExpired:
        srv.kill()
        srv_out = "server timed out"
    want = f"{size} {hashlib.sha256(payload).hexdigest()}"
    check(srv_out == want, f"3 MB of TCP arrive at hostB intact (sha256) in {time.time() - t0:.1f} s ({srv_out[:40]})")
    check(cli.stdout.strip() == want, f"hostB's answer on the connection reaches hostA ({cli.stdout.strip()[:40]})")
    t_traffic_end = time.time()

    for ns, who in ((b, "hostB"), (a, "hostA")):
        errs = csum_errors(ns)
        check(errs.get("UdpInCsumErrors") == 0 and errs.get("TcpInCsumErrors") == 0,
              f"{who}'s kernel counts no UDP or TCP checksum error (nstat {errs})")

    port = mapped_port(eb)
    check(port is not None and PORTS[0] <= port <= PORTS[1],
          f"hostB's stats show the mapping it learned: {NAT_OUT} port {port}")
    text = nsx(b, te.IPSENTRY, "stats", "--socket", eb.sock).stdout
    row = next((line.strip() for line in text.splitlines() if f"{NAT_OUT} -> {port}" in line), "")
    check("NAT traversal" in text and row, f"ipsentry stats prints it: '{row}'")

    # Idle: only keepalives should cross now.
    time.sleep(4 * KEEPALIVE + 0.6)
    t_idle_end = time.time()

    # A forgery from another port does not move the mapping; an authentic
    # packet from another port does; hostA's next packet moves it back.
    mac_b = nsx(b, "cat", "/sys/class/net/eb/address").stdout.strip()
    before = eb.stats()
    r = nsx(n, "/usr/bin/python3", "-c", SCAPY_SEND, "forged", "41234", mac_b)
    check(r.returncode == 0, f"scapy sends a forged ESP in UDP from port 41234 {r.stderr.strip()[-200:]}")
    time.sleep(0.5)
    after = eb.stats()
    failed = after["packets"]["ipsec_failed"] - before["packets"]["ipsec_failed"]
    check(failed == 1 and port is not None and mapped_port(eb) == port,
          f"the forgery is dropped ({failed} failed) and the mapping stays at port {mapped_port(eb)}")
    r = nsx(n, "/usr/bin/python3", "-c", SCAPY_SEND, "authentic", "41235", mac_b, GCM_SCAPY)
    time.sleep(0.5)
    check(mapped_port(eb) == 41235, f"an authentic packet from port 41235 moves it there ({mapped_port(eb)})")
    n_ping, _ = ping(a, B, 2)
    moved_back = mapped_port(eb)
    moves = next((p["moves"] for p in peers(eb) if p["address"] == NAT_OUT), None)
    check(n_ping == 2 and moved_back == port and moves == 2,
          f"hostA's next packets move it back to {moved_back} ({moves} moves) and pings work ({n_ping}/2)")
    check("nat-mapping" in eb.log_text() and "moved from port" in eb.log_text(), "the log names each move")

    eb.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    check("reloaded" in eb.log_text() and port is not None and mapped_port(eb) == port,
          f"a reload with the same SAs keeps the mapping ({mapped_port(eb)})")
    ka_a = (sa_stats(ea, "out").get("nat") or {}).get("keepalives_sent", 0)
    ka_b = (sa_stats(eb, "out").get("nat") or {}).get("keepalives_sent", 0)
    dropped = eb.stats()["packets"].get("nat_keepalive", 0)
    cap_b.stop()
    cap_a.stop()
    check(ka_a >= 4 and ka_b == 0, f"hostA sent {ka_a} keepalives, hostB (keepalive: off) {ka_b}")
    check(dropped >= 4, f"hostB counted and discarded the {dropped} keepalives it received")

    # The wire on hostB's side: who sent what to which port.
    udp = rows(cap_b.path, "udp", "frame.time_epoch", "ip.src", "udp.srcport", "ip.dst", "udp.dstport", "udp.length",
               "esp.spi", "udpencap.nat_keepalive")
    from_b = [r for r in udp if r[1] == B]
    esp_in = [r for r in udp if r[1] == NAT_OUT and r[6]]
    to_ports = {r[4] for r in from_b}
    check(len(from_b) > 100 and str(port) in to_ports and to_ports <= {str(port), "41235"} and
          sum(r[4] == "41235" for r in from_b) <= 3,
          f"hostB sends its {len(from_b)} packets to the mapped port {port} (41235 only while the authentic "
          f"packet held the mapping): {sorted(to_ports)}")
    check(all(r[2] == "4500" for r in from_b), "... always from its NAT-T port 4500")
    from_nat = {r[2] for r in esp_in}
    check(from_nat == {str(port), "41234", "41235"},
          f"ESP in UDP reaches hostB from the NAT's port {port} and scapy's two ({sorted(from_nat)})")
    kas = [float(r[0]) for r in udp if r[7] and r[1] == NAT_OUT]
    dissected = [r for r in udp if r[7]]
    check(dissected and all(r[5] == "9" for r in dissected),
          f"tshark dissects the {len(dissected)} keepalives as 1-octet NAT-keepalives")
    idle = [t for t in kas if t_traffic_end + 0.2 < t <= t_idle_end]
    gaps = [b2 - a2 for a2, b2 in zip(idle, idle[1:])]
    check(len(idle) >= 3 and all(0.7 * KEEPALIVE <= g <= 1.6 * KEEPALIVE for g in gaps),
          f"while idle, hostA's keepalives arrive every {KEEPALIVE} s ({len(idle)}: gaps "
          f"{', '.join(f'{g:.2f}' for g in gaps)})")
    check(not any(r[7] for r in from_b), "hostB sends no keepalive")
    # "only when nothing else was sent": none right after hostA's own ESP.
    a_rows = rows(cap_a.path, "udp.srcport == 4500 and ip.src == " + A, "frame.time_epoch", "esp.spi",
                  "udpencap.nat_keepalive")
    a_esp = [float(r[0]) for r in a_rows if r[1]]
    a_ka = [float(r[0]) for r in a_rows if r[2]]
    early = [t for t in a_ka if any(t - 0.8 * KEEPALIVE < e < t for e in a_esp)]
    check(a_ka and a_esp and not early,
          f"hostA sends no keepalive within {KEEPALIVE} s of its own ESP ({len(a_ka)} keepalives, {len(early)} early)")
    spis = {r[6] for r in udp if r[6]}
    check({"0x00001001", "0x00001002", "0x00002001"} <= spis,
          f"tshark dissects the ESP inside UDP on both directions ({sorted(spis)})")

    # Offline: ipsentry verify decrypts hostB's side of the NAT; scapy
    # recomputes every TCP/UDP checksum of what it writes.
    dec = os.path.join(tmp, "b-side-clear.pcap")
    v = sh(te.IPSENTRY, "verify", cap_b.path, "-c", cb, "-q", "-w", dec, check=False)
    verdicts = next((line.strip() for line in v.stdout.splitlines() if " ok" in line and "icv-fail" in line), "")
    check("1 icv-fail" in verdicts and os.path.exists(dec),
          f"ipsentry verify of hostB's capture: only the forgery fails ({verdicts or v.stdout.strip()[-200:]})")
    r = subprocess.run(["/usr/bin/python3", "-c", SCAPY_CHECKSUMS, dec], capture_output=True, text=True)
    good_bad = r.stdout.split()
    check(len(good_bad) == 2 and int(good_bad[0]) > 100 and good_bad[1] == "0",
          f"scapy: every TCP/UDP checksum in the decrypted packets is right ({' ok, '.join(good_bad)} wrong)")
    check(ea.stop() == 0 and eb.stop() == 0, "both enforcements stop cleanly")


def main():
    te.IPSENTRY = ipsentry_as_root()
    if te.IPSENTRY is None:
        return 77
    with tempfile.TemporaryDirectory(prefix="ipsentry-natt-") as tmp:
        os.chmod(tmp, 0o755)
        run_scenario("natt", scenario, tmp, te.FAILS, cleanup)
    print(f"{len(te.FAILS)} failure(s)" if te.FAILS else "all NAT traversal checks passed")
    return 1 if te.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
