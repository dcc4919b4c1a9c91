#!/usr/bin/python3
"""Enforcement in network namespaces: ipsentry is the IPsec implementation on
both ends (the kernel here has no ESP/AH), checked with ping, TCP transfers,
tcpdump captures read by `ipsentry verify`, tshark and scapy.

Scenarios: the seed's IPv6 link-local AH host-to-host configuration imported
from ipsec6 files; ESP transport with AES-GCM; the seed's gateway-to-gateway
ESP tunnel with four namespaces; scapy interop and attacks; faults (kill -9,
--cleanup, restart, reload, sequence-number exhaustion).

Needs root (exit 77 = skipped otherwise). Documentation and link-local
addresses only; every namespace is removed whatever happens.
ONLY=name runs one scenario.
"""
import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from netns import remove_namespace, sh  # noqa: E402
from ipsec_configs import GCM_AB, GCM_BA, esp_config  # noqa: E402

TAG = f"ipse{os.getpid() % 10000}"
IPSENTRY = None
FAILS = []
NAMESPACES = []
PROCS = []



def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILS.append(what)
    return ok


def ns_add(name, ipv6=False):
    name = f"{TAG}{name}"
    sh("ip", "netns", "add", name)
    NAMESPACES.append(name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    for k in ("all", "default"):
        sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6={0 if ipv6 else 1}")
        if ipv6:
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{k}.accept_dad=0")
    return name


def link(ns1, if1, ns2, if2, mac1=None, mac2=None):
    a = [if1, "netns", ns1] + (["address", mac1] if mac1 else [])
    b = [if2, "netns", ns2] + (["address", mac2] if mac2 else [])
    sh("ip", "link", "add", *a, "type", "veth", "peer", "name", *b)


def up(ns, dev, addr=None):
    if addr:
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
    sh("ip", "-n", ns, "link", "set", dev, "up")


def nsx(ns, *cmd, check=False, timeout=60, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check,
                          timeout=timeout, **kw)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for ns in NAMESPACES:
        remove_namespace(ns)
    NAMESPACES.clear()


class Enforcer:
    def __init__(self, ns, config, tmp, name, extra=()):
        self.ns, self.name = ns, name
        self.sock = os.path.join(tmp, f"{name}.sock")
        self.state = os.path.join(tmp, f"{name}-state")
        self.log = os.path.join(tmp, f"{name}.log")
        self.config = config
        self.extra = list(extra)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, IPSENTRY, "enforce", "-c", self.config,
                                      "--socket", self.sock, "--state-dir", self.state, *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        PROCS.append(self.proc)
        for _ in range(100):
            if self.proc.poll() is not None:
                break
            if nsx(self.ns, IPSENTRY, "stats", "--json", "--socket", self.sock).returncode == 0:
                return True
            time.sleep(0.05)
        print(open(self.log).read())
        return False

    def stats(self):
        r = nsx(self.ns, IPSENTRY, "stats", "--json", "--socket", self.sock)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        log = self.log_text()
        if "AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log:
            check(False, f"{self.name}: the sanitizers report a problem:\n{log[-3000:]}")
        return self.proc.returncode if self.proc else None

    def log_text(self):
        return open(self.log).read() if os.path.exists(self.log) else ""


def ping(ns, dst, count=3, extra=()):
    r = nsx(ns, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", *extra, dst)
    for line in r.stdout.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0]), r.stdout
    return 0, r.stdout + r.stderr


def rules(ns, fam="iptables"):
    return nsx(ns, f"{fam}-save").stdout.count("IPSENTRY")


class Capture:
    def __init__(self, ns, dev, path, flt=""):
        self.path = path
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-U", "-n", "-i", dev, "-w", path] +
                                     ([flt] if flt else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        PROCS.append(self.proc)
        time.sleep(0.6)

    def stop(self):
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


def tshark(path, *args, env=None):
    return subprocess.run(["tshark", "-n", "-r", path, *args], capture_output=True, text=True, env=env).stdout


TCP_SERVER = r"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest())
"""

TCP_CLIENT = r"""
import socket, sys, time
data = open(sys.argv[3], 'rb').read()
for i in range(50):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); break
    except OSError:
        time.sleep(0.1)
s.sendall(data); s.close()
"""


def tcp_transfer(ns_srv, srv_addr, ns_cli, size, tmp, port=5001):
    payload = os.urandom(size)
    path = os.path.join(tmp, f"payload-{port}")
    open(path, "wb").write(payload)
    srv = subprocess.Popen(["ip", "netns", "exec", ns_srv, "/usr/bin/python3", "-c", TCP_SERVER, srv_addr, str(port)],
                           stdout=subprocess.PIPE, text=True)
    PROCS.append(srv)
    time.sleep(0.3)
    t0 = time.time()
    nsx(ns_cli, "/usr/bin/python3", "-c", TCP_CLIENT, srv_addr, str(port), path, timeout=60)
    try:
        out, _ = srv.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        srv.kill()
        return False, "server timed out"
    got = out.split()
    ok = len(got) == 2 and int(got[0]) == size and got[1] == hashlib.sha256(payload).hexdigest()
    return ok, f"{got[0] if got else 0} of {size} bytes in {time.time() - t0:.2f} s, sha256 {'matches' if ok else 'differs'}"


# ---------------------------------------------------------------------------
# The seed: ipsec6 manual keying, AH + HMAC-MD5, IPv6 link-local

H1_MAC, H2_MAC = "00:aa:00:53:a9:2c", "00:aa:00:92:d0:f1"
H1, H2 = "fe80::2aa:ff:fe53:a92c", "fe80::2aa:ff:fe92:d0f1"


def ipsec6_files(d, remote, local_spi_out, out_dst, in_spi, in_dst):
    """Test.spd / Test.sad as the Windows documentation lays them out."""
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "Test.key"), "w").write("This is a test")
    open(os.path.join(d, "Test.spd"), "w").write(
        "Security Policy List\n\n"
        "Policy RemoteIPAddr LocalIPAddr Protocol RemotePort LocalPort IPSecProtocol IPSecMode RemoteGWIPAddr "
        "SABundleIndex Direction Action InterfaceIndex\n" + "_" * 100 + "\n\n"
        f"2 - {remote.upper()} - * - * - * - * AH TRANSPORT * NONE BIDIRECT APPLY 0 ;\n"
        "1 + * + * + * + * + * NONE NONE * NONE BIDIRECT BYPASS 0 ;\n")
    open(os.path.join(d, "Test.sad"), "w").write(
        "Security Association List\n\n"
        "SAEntry SPI SADestIPAddr DestIPAddr SrcIPAddr Protocol DestPort SrcPort AuthAlg KeyFile Direction "
        "SecPolicyIndex\n" + "_" * 100 + "\n\n"
        f"2 {local_spi_out} {out_dst.upper()} POLICY POLICY POLICY POLICY POLICY HMAC-MD5 Test.key OUTBOUND 2 ;\n"
        f"1 {in_spi} {in_dst.upper()} POLICY POLICY POLICY POLICY POLICY HMAC-MD5 Test.key INBOUND 2 ;\n")
    r = sh(IPSENTRY, "config", "import", "--ipsec6", os.path.join(d, "Test.spd"), os.path.join(d, "Test.sad"),
           "-o", os.path.join(d, "host.yaml"), check=False)
    return r, os.path.join(d, "host.yaml")


SCAPY_AH_VERIFY = r"""
import sys
from scapy.all import rdpcap, IPv6, AH
from scapy.layers.ipsec import SecurityAssociation
sas = {spi: SecurityAssociation(AH, spi=spi, auth_algo='HMAC-MD5-96', auth_key=b'This is a test')
       for spi in (3000, 3001)}
ok = bad = 0
for p in rdpcap(sys.argv[1]):
    if IPv6 in p and AH in p:
        try:
            sas[p[AH].spi].decrypt(p[IPv6]); ok += 1
        except Exception:
            bad += 1
print(ok, bad)
"""


def scenario_seed(tmp):
    print("# seed: two link-local hosts, AH transport, HMAC-MD5, SPIs 3000/3001, key file 'This is a test'")
    h1, h2 = ns_add("h1", ipv6=True), ns_add("h2", ipv6=True)
    link(h1, "h1e", h2, "h2e", H1_MAC, H2_MAC)
    up(h1, "h1e")
    up(h2, "h2e")
    r1, cfg1 = ipsec6_files(os.path.join(tmp, "host1"), H2, 3001, H2, 3000, H1)
    r2, cfg2 = ipsec6_files(os.path.join(tmp, "host2"), H1, 3000, H1, 3001, H2)
    check(r1.returncode == 0 and r2.returncode == 0, "config import --ipsec6 converts both hosts' files")
    check("hmac-md5-96 is deprecated" in r1.stderr, "the import warns that HMAC-MD5 is deprecated")
    c = sh(IPSENTRY, "config", "check", cfg1, check=False)
    check(c.returncode == 0 and "protect ah transport; sends on sa-2" in c.stdout and "cleartext: require" in c.stdout,
          "config check prints the effective policy (AH transport, mirrored, require)")
    time.sleep(0.5)
    n, out = ping(h1, f"{H2}%h1e", 2)
    check(n == 2, "before enforcement the hosts reach each other")
    e1 = Enforcer(h1, cfg1, tmp, "h1")
    e2 = Enforcer(h2, cfg2, tmp, "h2")
    check(e1.start(), "enforcement starts on host 1")
    n, out = ping(h1, f"{H2}%h1e", 3)
    check(n == 0, "with enforcement on host 1 only, host 1 cannot ping host 2")
    n, out = ping(h2, f"{H1}%h2e", 3)
    check(n == 0, "... nor host 2 host 1")
    s = e1.stats()
    check(s and s["packets"]["protected"] >= 3 and s["packets"]["cleartext_dropped"] >= 3,
          f"host 1's counters say why: AH sent ({s and s['packets']['protected']}), "
          f"cleartext from host 2 dropped ({s and s['packets']['cleartext_dropped']})")
    check("cleartext-dropped" in e1.log_text() and "requires IPsec" in e1.log_text(), "the log names the dropped cleartext")
    check(e2.start(), "enforcement starts on host 2")
    cap = Capture(h2, "h2e", os.path.join(tmp, "seed.pcap"))
    n1, _ = ping(h1, f"{H2}%h1e", 3)
    n2, _ = ping(h2, f"{H1}%h2e", 3)
    cap.stop()
    check(n1 == 3 and n2 == 3, f"with both enforcing, pings work both ways ({n1}/3, {n2}/3)")
    rows = [l.split("\t") for l in tshark(cap.path, "-Y", "ah", "-T", "fields", "-e", "ipv6.nxt", "-e",
                                          "ah.next_header", "-e", "ah.spi", "-e", "icmpv6.type").splitlines()]
    check(len(rows) == 12 and all(r[0] == "51" and r[1] == "58" for r in rows),
          f"tshark: AH between the IPv6 header and ICMPv6 in all {len(rows)} echo packets")
    spis = sorted(set(r[2] for r in rows))
    check(spis == ["0x00000bb8", "0x00000bb9"], f"tshark: SPIs 3000 and 3001 ({spis})")
    clear = tshark(cap.path, "-Y", "icmpv6.type == 128 and not ah")
    check(clear.strip() == "", "no echo request crosses the link without AH")
    v = sh(IPSENTRY, "verify", cap.path, "-c", cfg1, "-q", check=False)
    check(v.returncode == 0 and "12 ok" in v.stdout, "ipsentry verify with host 1's configuration: 12 ok")
    r = subprocess.run(["/usr/bin/python3", "-c", SCAPY_AH_VERIFY, cap.path], capture_output=True, text=True)
    check(r.stdout.split() == ["12", "0"], f"scapy verifies the ICV of every AH packet ('This is a test', HMAC-MD5-96): "
                                          f"{r.stdout.strip() or r.stderr.strip()[-200:]} (ok, failed)")
    s1, s2 = e1.stats(), e2.stats()
    check(s1["quick_mode"]["authenticated_bytes_sent" if False else "sent"]["authenticated_bytes"] > 0 and
          s1["quick_mode"]["sent"]["confidential_bytes"] == 0, "AH bytes count as authenticated, not confidential")
    check(e1.stop() == 0 and e2.stop() == 0 and rules(h1, "ip6tables") == 0,
          "SIGTERM stops enforcement and removes its rules")


# ---------------------------------------------------------------------------
# ESP transport, AES-GCM, IPv4

A, B = "192.0.2.1", "192.0.2.2"


def pair_v4():
    a, b = ns_add("a"), ns_add("b")
    link(a, "ea", b, "eb", "02:00:00:00:0a:01", "02:00:00:00:0b:01")
    up(a, "ea", f"{A}/24")
    up(b, "eb", f"{B}/24")
    return a, b


def scenario_esp(tmp):
    print("# ESP transport, AES-GCM-16, IPv4: TCP transfer, wire only ESP, tshark decrypts")
    a, b = pair_v4()
    ca = esp_config(os.path.join(tmp, "a.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    cb = esp_config(os.path.join(tmp, "b.yaml"), B, A, "0x1002", GCM_BA, "0x1001", GCM_AB)
    ea, eb = Enforcer(a, ca, tmp, "a"), Enforcer(b, cb, tmp, "b")
    check(ea.start() and eb.start(), "enforcement starts on both hosts")
    cap = Capture(b, "eb", os.path.join(tmp, "esp.pcap"), "not arp")
    ok, how = tcp_transfer(b, B, a, 2_000_000, tmp)
    n, _ = ping(a, B, 3)
    cap.stop()
    check(ok, f"a 2 MB TCP transfer arrives intact ({how})")
    check(n == 3, "ping works")
    protos = tshark(cap.path, "-T", "fields", "-e", "ip.proto").split()
    check(len(protos) > 100 and set(protos) == {"50"}, f"the wire carries only ESP ({len(protos)} packets)")
    conf = os.path.join(tmp, "wireshark")
    os.makedirs(conf, exist_ok=True)
    open(os.path.join(conf, "esp_sa"), "w").write(
        f'"IPv4","{A}","{B}","0x00001001","AES-GCM with 16 octet ICV [RFC4106]","0x{GCM_AB}","NULL",""\n'
        f'"IPv4","{B}","{A}","0x00001002","AES-GCM with 16 octet ICV [RFC4106]","0x{GCM_BA}","NULL",""\n')
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=conf)
    dec = tshark(cap.path, "-o", "esp.enable_encryption_decode:TRUE", "-T", "fields", "-e", "tcp.srcport", "-e",
                 "icmp.type", env=env).splitlines()
    decoded = sum(1 for l in dec if l.strip())
    check(decoded == len(protos), f"tshark decrypts every ESP packet with the same keys ({decoded}/{len(protos)})")
    v = sh(IPSENTRY, "verify", cap.path, "-c", ca, "-q", check=False)
    check(v.returncode == 0, "ipsentry verify agrees (every packet ok)")
    return a, b, ea, eb, ca, cb, cap.path


SCAPY_ATTACKS = r"""
import sys
from scapy.all import Ether, IP, UDP, Raw, ESP, sendp
from scapy.layers.ipsec import SecurityAssociation
key = bytes.fromhex(sys.argv[1])
sa = SecurityAssociation(ESP, spi=0x1001, crypt_algo='AES-GCM', crypt_key=key)
def pkt(seq, payload):
    return sa.encrypt(IP(src='192.0.2.1', dst='192.0.2.2') / UDP(sport=40000, dport=6000) / Raw(payload), seq_num=seq)
eth = Ether(src='02:00:00:00:0a:01', dst='02:00:00:00:0b:01')
good = [pkt(100000 + i, b'scapy-%d' % i) for i in range(3)]
mode = sys.argv[2]
if mode == 'good':
    sendp([eth / p for p in good], iface='ea', verbose=False)
elif mode == 'replay':
    sendp([eth / p for p in good], iface='ea', verbose=False)
elif mode == 'tamper':
    raw = bytearray(bytes(pkt(100010, b'tampered')))
    raw[-20] ^= 0x01
    sendp(eth / IP(bytes(raw)), iface='ea', verbose=False)
elif mode == 'unknown':
    other = SecurityAssociation(ESP, spi=0xdead, crypt_algo='AES-GCM', crypt_key=key)
    sendp(eth / other.encrypt(IP(src='192.0.2.1', dst='192.0.2.2') / UDP(sport=40000, dport=6000) / Raw(b'x'), seq_num=5), iface='ea', verbose=False)
elif mode == 'natt':
    natt = SecurityAssociation(ESP, spi=0x1001, crypt_algo='AES-GCM', crypt_key=key,
                               nat_t_header=UDP(sport=4500, dport=4500))
    p = natt.encrypt(IP(src='192.0.2.1', dst='192.0.2.2') / UDP(sport=40000, dport=6000) / Raw(b'scapy-natt'),
                     seq_num=100020)
    # scapy leaves the UDP length at 8 (the header alone): set it to cover the ESP.
    raw = bytearray(bytes(p))
    raw[24:26] = (len(raw) - 20).to_bytes(2, 'big')
    p = IP(bytes(raw))
    ike = IP(src='192.0.2.1', dst='192.0.2.2') / UDP(sport=4500, dport=4500) / Raw(bytes(4) + bytes(range(28)))
    sendp([eth / p, eth / ike], iface='ea', verbose=False)
elif mode == 'clear':
    sendp(eth / IP(src='192.0.2.1', dst='192.0.2.2') / UDP(sport=40000, dport=6000) / Raw(b'clear'), iface='ea', verbose=False)
"""

UDP_SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('192.0.2.2', 6000)); s.settimeout(0.5)
got = []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        d = s.recv(2000).decode(errors='replace')
    except socket.timeout:
        continue
    if d == 'sink-done':
        break
    got.append(d)
print('\n'.join(got))
"""
# Ends a UDP_SINK: sent over the namespace's loopback, which enforcement
# never queues, after everything else was sent, so a slow machine cannot
# close the sink before the last datagram of the test arrived.
SINK_DONE = r"""
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'sink-done', ('192.0.2.2', 6000))
"""

SCAPY_DECRYPT = r"""
import sys
from scapy.all import rdpcap, IP, ESP
from scapy.layers.ipsec import SecurityAssociation
key = bytes.fromhex(sys.argv[2])
sa = SecurityAssociation(ESP, spi=0x1002, crypt_algo='AES-GCM', crypt_key=key)
ok = bad = 0
for p in rdpcap(sys.argv[1]):
    if IP in p and ESP in p and p[ESP].spi == 0x1002:
        try:
            sa.decrypt(p[IP]); ok += 1
        except Exception:
            bad += 1
print(ok, bad)
"""


def scenario_interop_attacks(tmp, ctx):
    print("# interop with scapy, and attacks: replayed, tampered, unknown-SPI and cleartext packets")
    a, b, ea, eb, ca, cb, pcap = ctx
    r = subprocess.run(["/usr/bin/python3", "-c", SCAPY_DECRYPT, pcap, GCM_BA], capture_output=True, text=True)
    okb = r.stdout.split()
    check(len(okb) == 2 and int(okb[0]) > 50 and okb[1] == "0",
          f"scapy decrypts and authenticates the ESP enforcement sent ({' ok, '.join(okb)} failed)")
    # scapy speaks for host a on the wire (raw frames bypass a's netfilter).
    before = eb.stats()
    sink = subprocess.Popen(["ip", "netns", "exec", b, "/usr/bin/python3", "-c", UDP_SINK, "120"],
                            stdout=subprocess.PIPE, text=True)
    PROCS.append(sink)
    time.sleep(0.5)
    for mode in ("good", "replay", "tamper", "unknown", "natt", "clear"):
        r = nsx(a, "/usr/bin/python3", "-c", SCAPY_ATTACKS, GCM_AB, mode)
        if r.returncode != 0:
            check(False, f"scapy sends the {mode} packets: {r.stderr.strip().splitlines()[-1:]}")
        time.sleep(0.2)
    time.sleep(1)
    nsx(b, "/usr/bin/python3", "-c", SINK_DONE)
    got = sink.communicate(timeout=130)[0].split()
    after = eb.stats()
    d = lambda *k: (lambda x, y: x - y)(*(  # noqa: E731
        [s[k[0]][k[1]] if len(k) == 2 else s[k[0]] for s in (after, before)]))
    check(sorted(got) == ["scapy-0", "scapy-1", "scapy-2", "scapy-natt"],
          f"the application receives exactly the 3 genuine scapy datagrams and the one sent as ESP in UDP 4500 "
          f"(RFC 3948) ({got})")
    check(d("packets", "exempted") >= 1, "IKE with the non-ESP marker on UDP 4500 is let through as key management")
    check(d("quick_mode", "packets_with_replay_detection") == 3, "3 replayed packets dropped and counted as replays")
    check(d("quick_mode", "packets_not_authenticated") == 1, "the tampered packet is dropped (not authenticated)")
    check(d("quick_mode", "bad_spi_packets") == 1, "the unknown-SPI packet is dropped (bad SPI)")
    check(d("packets", "cleartext_dropped") == 1, "the cleartext datagram is dropped and counted")
    log = eb.log_text()
    check("replay" in log and "icv-fail" in log and "unknown-spi" in log, "each attack is logged")
    check(GCM_AB not in log and GCM_BA not in log, "no key material in the log")
    st = nsx(b, IPSENTRY, "stats", "--socket", eb.sock).stdout
    check("Packets With Replay Detection" in st and "Bad SPI Packets" in st and "Cleartext dropped" in st,
          "ipsentry stats prints the IP Security Monitor counters")


def scenario_faults(tmp, ctx):
    print("# faults: kill -9 stays closed, --cleanup, restart, reload, sequence-number exhaustion")
    a, b, ea, eb, ca, cb, _ = ctx
    # The scapy packets moved b's replay window far ahead of a's own sequence
    # numbers: start from fresh SAs on both sides.
    ea.stop()
    eb.stop()
    sh("rm", "-rf", ea.state, eb.state)
    check(ea.start() and eb.start(), "fresh start of both hosts")
    ping(a, B, 3)
    seq_before = [s for s in eb.stats()["sas"] if s["name"] == "out"][0]["last_sent_seq"]
    eb.stop(signal.SIGKILL)
    n, _ = ping(b, A, 3)
    check(n == 0 and rules(b) > 0, "after kill -9 the rules stay and b's traffic to a is dropped, not sent in clear")
    cap = Capture(a, "ea", os.path.join(tmp, "killed.pcap"), "icmp and not ip proto 50")
    ping(b, A, 2)
    cap.stop()
    check(tshark(cap.path).strip() == "", "nothing leaves b in cleartext while it is down")
    r = nsx(b, IPSENTRY, "enforce", "--cleanup", "--socket", eb.sock)
    check(r.returncode == 0 and "removed" in r.stdout and rules(b) == 0 and rules(b, "ip6tables") == 0,
          "enforce --cleanup removes the leftover rules")
    check(eb.start(), "enforcement restarts")
    # After a crash b refuses the few sequence numbers it had recorded ahead
    # for a's SA (at most 8 at this rate): they may have been accepted.
    n, _ = ping(b, A, 12)
    check(n >= 4, f"after the restart traffic flows again once a's sequence numbers pass what b recorded ({n}/12)")
    seq_after = [s for s in eb.stats()["sas"] if s["name"] == "out"][0]["last_sent_seq"]
    check(seq_after > seq_before, f"the restarted SA resumed above every sequence number used before ({seq_before} -> "
                                  f"{seq_after})")
    # Reload during a transfer: unchanged SAs keep their state.
    pinger = subprocess.Popen(["ip", "netns", "exec", a, "ping", "-n", "-c", "20", "-i", "0.1", B],
                              stdout=subprocess.PIPE, text=True)
    PROCS.append(pinger)
    time.sleep(0.5)
    ea.proc.send_signal(signal.SIGHUP)
    out = pinger.communicate(timeout=20)[0]
    got = int([l for l in out.splitlines() if "received" in l][0].split(",")[1].split()[0])
    check(got == 20, f"a SIGHUP reload keeps established traffic flowing ({got}/20 pings)")
    check("SA out unchanged" in ea.log_text() and "reloaded" in ea.log_text(), "the reload keeps the unchanged SAs")
    check(ea.stats()["reloads"] == 1, "the statistics count the reload")
    # A bad file on reload: the running configuration stays.
    good = open(ca).read()
    open(ca, "w").write(good + "  - this is: [not valid\n")
    ea.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    n, _ = ping(a, B, 2)
    check(n == 2 and "reload-failed" in ea.log_text(), "a broken file on reload is reported and the old policy stays")
    open(ca, "w").write(good)
    # An SA started near the end of its sequence space stops cleanly.
    ea.stop()
    eb.stop()
    sh("rm", "-rf", ea.state, eb.state)
    esp_config(ca, A, B, "0x1001", GCM_AB, "0x1002", GCM_BA, extra_out="    first_seq: 4294967290\n")
    check(ea.start() and eb.start(), "restart with an outbound SA at sequence number 4294967290")
    n, _ = ping(a, B, 8)
    s = ea.stats()
    out_sa = [x for x in s["sas"] if x["name"] == "out"][0]
    check(n == 6 and out_sa["last_sent_seq"] == 4294967295 and s["packets"]["seq_exhausted"] == 2,
          f"6 pings use sequence numbers ...90 to ...95, the next 2 are dropped, never wrapped ({n} replies, last "
          f"{out_sa['last_sent_seq']}, {s['packets']['seq_exhausted']} dropped)")
    check(out_sa["state"] == "exhausted" and "seq-exhausted" in ea.log_text(), "the SA shows as exhausted and it is logged")
    ea.stop()
    eb.stop()


# ---------------------------------------------------------------------------
# The seed's gateway-to-gateway tunnel

CBC_KEY_12, SHA_KEY_12 = "2b7e151628aed2a6abf7158809cf4f3c", "11" * 32
CBC_KEY_21, SHA_KEY_21 = "3c4f4fcf098815f7a6d2ae2816157e2b", "22" * 32


def gw_config(path, me, peer, net_me, net_peer, spi_out, spi_in, k_out, a_out, k_in, a_in):
    open(path, "w").write(f"""interfaces: {{ local: [{me}] }}
policies:
  - name: {net_me}-{net_peer}
    from: {net_me}
    to: {net_peer}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: tunnel, peer: {peer} }}
    sas: [out, in]
sas:
  - name: out
    spi: {spi_out}
    direction: outbound
    src: {me}
    dst: {peer}
    mode: tunnel
    protocol: esp
    encryption: aes-cbc
    enc_key: 0x{k_out}
    auth: hmac-sha256-128
    auth_key: 0x{a_out}
  - name: in
    spi: {spi_in}
    direction: inbound
    src: {peer}
    dst: {me}
    mode: tunnel
    protocol: esp
    encryption: aes-cbc
    enc_key: 0x{k_in}
    auth: hmac-sha256-128
    auth_key: 0x{a_in}
""")
    return path


def gateway_namespaces():
    """NetA host 192.0.2.10 - gw1 (192.0.2.1, 198.51.100.1) - gw2 (198.51.100.2,
    203.0.113.1) - NetB host 203.0.113.10, forwarding on the gateways."""
    ha, g1, g2, hb = ns_add("ha"), ns_add("g1"), ns_add("g2"), ns_add("hb")
    link(ha, "ha0", g1, "g1a")
    link(g1, "g1m", g2, "g2m", "02:00:00:00:01:01", "02:00:00:00:02:01")
    link(g2, "g2b", hb, "hb0")
    up(ha, "ha0", "192.0.2.10/25")
    up(g1, "g1a", "192.0.2.1/25")
    up(g1, "g1m", "198.51.100.1/24")
    up(g2, "g2m", "198.51.100.2/24")
    up(g2, "g2b", "203.0.113.1/24")
    up(hb, "hb0", "203.0.113.10/24")
    sh("ip", "-n", ha, "route", "add", "default", "via", "192.0.2.1")
    sh("ip", "-n", hb, "route", "add", "default", "via", "203.0.113.1")
    # The routes to the protected networks lead to the peer gateway: forwarded
    # packets leave by the inner destination's route (NFQUEUE.md Q3).
    sh("ip", "-n", g1, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    sh("ip", "-n", g2, "route", "add", "192.0.2.0/25", "via", "198.51.100.1")
    for g in (g1, g2):
        sh("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return ha, g1, g2, hb


def scenario_gateway(tmp):
    print("# gateway to gateway: NetA host - gw1 - ESP tunnel - gw2 - NetB host")
    ha, g1, g2, hb = gateway_namespaces()
    c1 = gw_config(os.path.join(tmp, "gw1.yaml"), "198.51.100.1", "198.51.100.2", "192.0.2.0/25", "203.0.113.0/24",
                   "0x2001", "0x2002", CBC_KEY_12, SHA_KEY_12, CBC_KEY_21, SHA_KEY_21)
    c2 = gw_config(os.path.join(tmp, "gw2.yaml"), "198.51.100.2", "198.51.100.1", "203.0.113.0/24", "192.0.2.0/25",
                   "0x2002", "0x2001", CBC_KEY_21, SHA_KEY_21, CBC_KEY_12, SHA_KEY_12)
    e1, e2 = Enforcer(g1, c1, tmp, "gw1"), Enforcer(g2, c2, tmp, "gw2")
    check(e1.start() and e2.start(), "enforcement starts on both gateways")
    cap = Capture(g2, "g2m", os.path.join(tmp, "middle.pcap"), "not arp")
    n, _ = ping(ha, "203.0.113.10", 3)
    check(n == 3, "NetA host pings NetB host through the tunnel")
    ok, how = tcp_transfer(hb, "203.0.113.10", ha, 1_000_000, tmp, port=5002)
    check(ok, f"TCP from NetA to NetB arrives intact through the tunnel ({how})")
    r = nsx(ha, "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "203.0.113.10")
    check("mtu = " in r.stdout and "Frag needed" in r.stdout,
          f"a DF packet too big once wrapped is answered with ICMP fragmentation needed: "
          f"{[l for l in r.stdout.splitlines() if 'mtu' in l][:1]}")
    r = nsx(ha, "ping", "-n", "-c", "2", "-W", "2", "-s", "1472", "203.0.113.10")
    check(" 0% packet loss" in r.stdout, "the same size without DF is fragmented after wrapping and arrives")
    cap.stop()
    pairs = set(tuple(l.split("\t")) for l in tshark(cap.path, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e",
                                                      "ip.proto").splitlines())
    check(pairs <= {("198.51.100.1", "198.51.100.2", "50"), ("198.51.100.2", "198.51.100.1", "50"),
                    ("198.51.100.1", "198.51.100.2", ""), ("198.51.100.2", "198.51.100.1", "")} and len(pairs) >= 2,
          f"the middle link carries only ESP between the gateways ({sorted(pairs)})")
    v = sh(IPSENTRY, "verify", cap.path, "-c", c1, "--json", check=False)
    verdicts = json.loads(v.stdout)["statistics"]["verdicts"] if v.stdout.startswith("{") else {}
    bad = {k: n for k, n in verdicts.items() if n and k not in ("ok", "unverifiable")}
    check(verdicts.get("ok", 0) > 100 and not bad,
          f"ipsentry verify: tunnel packets on the middle link ok ({verdicts.get('ok')}), none failed "
          f"(fragments of the large pings without DF are 'unverifiable': {verdicts.get('unverifiable', 0)})")
    # The policy audit watches gateway 1's outside link, live and offline.
    audit_pcap = os.path.join(tmp, "audit.pcapng")
    live = subprocess.Popen(["ip", "netns", "exec", g1, IPSENTRY, "capture", "-i", "g1m", "-f", "not arp", "--policy",
                             c1, "--stop-on", "cleartext-leak", "--after-time", "1", "-L", "30", "--no-status", "-o",
                             audit_pcap], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(live)
    for _ in range(100):
        line = live.stderr.readline()
        if not line or "capturing on" in line:
            break
    cap2 = Capture(g1, "g1m", os.path.join(tmp, "outside.pcap"), "not arp")
    n, _ = ping(ha, "203.0.113.10", 3)
    before = e1.stats()["packets"]["cleartext_dropped"]
    nsx(g2, "/usr/bin/python3", "-c",
        "from scapy.all import *; sendp([Ether(dst='02:00:00:00:01:01')/IP(src='203.0.113.10',dst='192.0.2.10')/"
        "ICMP()/Raw(b'outside')]*4, iface='g2m', verbose=False)")
    time.sleep(0.5)
    check(e1.stats()["packets"]["cleartext_dropped"] - before == 4,
          "cleartext sent from outside towards NetA is dropped by gateway 1 and counted (4/4)")
    n2, _ = ping(ha, "203.0.113.10", 2)
    cap2.stop()
    try:
        out, err = live.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        live.kill()
        out, err = live.communicate()
    fired = [ln for ln in out.splitlines() if ln.startswith("--stop-on fired")]
    check(live.returncode == 1 and "stopped: an IPsec event" in out and fired and "cleartext-leak" in fired[0] and
          "203.0.113.10" in fired[0], f"capture --policy --stop-on cleartext-leak stops on the injected packet "
                                     f"(exit {live.returncode}): {fired} {err.strip()[-300:]}")
    for path, what in ((cap2.path, "tcpdump's capture of the outside link"), (audit_pcap, "the stopped capture")):
        v = sh(IPSENTRY, "verify", path, "--policy", c1, "--json", check=False)
        doc = json.loads(v.stdout) if v.stdout.startswith("{") else {"packets": [], "statistics": {}}
        leaks = [p for p in doc["packets"] if p.get("verdict") == "cleartext-leak"]
        other = [p for p in doc["packets"] if p.get("audit") not in (None, "conforms") and p["layer"] != 0]
        esp = [p for p in doc["packets"] if p["layer"] == 1]
        check(len(leaks) == 4 and all(p["src"] == "203.0.113.10" and p["dst"] == "192.0.2.10" for p in leaks) and
              not other and len(esp) >= 2 * (n + n2 if what.startswith("tcpdump") else 1),
              f"verify --policy of {what}: exactly the 4 injected frames are cleartext leaks, every one of the "
              f"{len(esp)} ESP packets conforms ({[p['frame'] for p in leaks]}, {other[:2]})")
    s1 = e1.stats()
    check(s1["quick_mode"]["active_tunnels"] == 1 and s1["quick_mode"]["sent"]["tunnel_bytes"] > 0,
          "gateway 1 counts one active tunnel and tunnel bytes")
    e1.stop()
    e2.stop()


def subnet_config(path, me_net, peer_net, spi_out, key_out, spi_in, key_in):
    """One SA pair for every address of two /24s: several flows share each SA."""
    open(path, "w").write(f"""policies:
  - name: nets
    from: {me_net}
    to: {peer_net}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out, in]
sas:
  - name: out
    spi: {spi_out}
    direction: outbound
    protocol: esp
    encryption: aes-gcm-16
    enc_key: 0x{key_out}
    replay_window: 1024
  - name: in
    spi: {spi_in}
    direction: inbound
    protocol: esp
    encryption: aes-gcm-16
    enc_key: 0x{key_in}
    replay_window: 1024
""")
    return path


def scenario_queues(tmp):
    print("# two queues and two workers: flows spread, sequence numbers unique per SA, replay windows correct")
    a, b = pair_v4()
    for i in range(11, 15):
        sh("ip", "-n", a, "addr", "add", f"192.0.2.{i}/24", "dev", "ea")
        sh("ip", "-n", b, "addr", "add", f"192.0.2.{i + 10}/24", "dev", "eb")
    ca = subnet_config(os.path.join(tmp, "qa.yaml"), "192.0.2.0/24", "192.0.2.0/24", "0x3001", GCM_AB, "0x3002", GCM_BA)
    cb = subnet_config(os.path.join(tmp, "qb.yaml"), "192.0.2.0/24", "192.0.2.0/24", "0x3002", GCM_BA, "0x3001", GCM_AB)
    ea = Enforcer(a, ca, tmp, "qa", ["--queues", "2"])
    eb = Enforcer(b, cb, tmp, "qb", ["--queues", "2"])
    check(ea.start() and eb.start(), "enforcement starts with --queues 2 on both hosts")
    cap = Capture(b, "eb", os.path.join(tmp, "queues.pcap"), "esp")
    servers = []
    for i, dst in enumerate(["192.0.2.2"] + [f"192.0.2.{i + 10}" for i in range(11, 15)]):
        servers.append((dst, 5100 + i))
    results = []
    import threading

    def one(dst, port):
        results.append(tcp_transfer(b, dst, a, 500_000, tmp, port=port))

    threads = [threading.Thread(target=one, args=sp) for sp in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cap.stop()
    check(len(results) == 5 and all(ok for ok, _ in results),
          f"5 parallel TCP transfers over the shared SAs arrive intact ({[h for _, h in results]})")
    qs = eb.stats()["queues"]
    check(len(qs) == 2 and all(q["packets"] > 0 for q in qs),
          f"both of b's workers handled packets ({[q['packets'] for q in qs]})")
    seqs = [int(x, 16) if x.startswith("0x") else int(x) for x in tshark(
        cap.path, "-Y", "esp.spi == 0x3001", "-T", "fields", "-e", "esp.sequence").split()]
    check(len(seqs) > 500 and len(seqs) == len(set(seqs)),
          f"every sequence number on SA 0x3001 is used once ({len(seqs)} packets, {len(set(seqs))} distinct)")
    s = eb.stats()
    check(s["quick_mode"]["packets_with_replay_detection"] == 0 and s["packets"]["ipsec_failed"] == 0,
          "no genuine packet was taken for a replay across the workers")
    ea.stop()
    eb.stop()


def scenario_errors(tmp):
    print("# bad input: privilege, broken configuration, nothing running")
    cfg = esp_config(os.path.join(tmp, "err.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    r = sh("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
           IPSENTRY, "enforce", "-c", cfg, check=False)
    check(r.returncode == 2 and "CAP_NET_ADMIN" in r.stderr, f"without privileges: exit 2 naming CAP_NET_ADMIN "
                                                             f"({r.stderr.strip()[:90]})")
    bad = os.path.join(tmp, "bad.yaml")
    open(bad, "w").write(open(cfg).read().replace("encryption: aes-gcm-16\n    enc_key: 0x" + GCM_AB,
                                                   "encryption: aes-gcm-16\n    enc_key: 0x0011", 1))
    # In a namespace of its own: had it started, its rules would stay there.
    r = nsx(ns_add("err"), IPSENTRY, "enforce", "-c", bad, "--socket", os.path.join(tmp, "x.sock"))
    check(r.returncode == 2 and "bad.yaml:" in r.stderr and "enc_key" in r.stderr,
          f"a wrong key length: exit 2 with file, line and field ({r.stderr.strip()[:100]})")
    r = sh(IPSENTRY, "config", "check", bad, check=False)
    check(r.returncode == 2 and "enc_key" in r.stderr, "config check reports the same error")
    r = sh(IPSENTRY, "stats", "--socket", os.path.join(tmp, "none.sock"), check=False)
    check(r.returncode == 2 and "no enforcement is running" in r.stderr, "stats with nothing running says so")


def main():
    global IPSENTRY
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    args = ap.parse_args()
    IPSENTRY = os.path.abspath(args.ipsentry)
    if os.geteuid() != 0:
        print("skipped: needs root for network namespaces and netfilter")
        return 77
    only = os.environ.get("ONLY")
    with tempfile.TemporaryDirectory(prefix="ipsentry-enforce-") as tmp:
        os.chmod(tmp, 0o755)
        try:
            if only in (None, "errors"):
                scenario_errors(tmp)
                cleanup()
            if only in (None, "seed"):
                scenario_seed(tmp)
                cleanup()
            if only in (None, "esp", "attacks", "faults"):
                ctx = scenario_esp(tmp)
                if only in (None, "attacks"):
                    scenario_interop_attacks(tmp, ctx)
                if only in (None, "faults"):
                    scenario_faults(tmp, ctx)
                cleanup()
            if only in (None, "queues"):
                scenario_queues(tmp)
                cleanup()
            if only in (None, "gateway"):
                scenario_gateway(tmp)
        except Exception as e:  # a crash of the test itself is a failure too
            import traceback
            traceback.print_exc()
            FAILS.append(f"exception: {e}")
        finally:
            cleanup()
    print(f"{len(FAILS)} failure(s)" if FAILS else "all enforcement checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
