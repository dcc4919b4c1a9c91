#!/usr/bin/python3
"""Live capture in network namespaces: triggers, limits, IPsec stop events,
pcapng comments and embedded keys, checked with tshark and scapy.

Two namespaces joined by a veth pair; scapy sends crafted frames from one
side (documentation addresses only), `ipsentry capture` runs on the other.
Needs root (exit 77 = skipped otherwise). The namespaces are removed
whatever happens.
"""
import argparse
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from scapy.all import ESP, IP, UDP, Ether, Raw, wrpcap  # noqa: E402
from scapy.layers.ipsec import SecurityAssociation  # noqa: E402
from netns import VethPair, sh  # noqa: E402

PAIR = VethPair(f"ipsc{os.getpid() % 100000}")
NS_TX, NS_RX, IF_TX, IF_RX = PAIR.ns_tx, PAIR.ns_rx, PAIR.if_tx, PAIR.if_rx
MAC_TX, MAC_RX = "02:00:00:00:00:01", "02:00:00:00:00:02"
SRC, DST = "192.0.2.1", "192.0.2.2"
PORT = 7777
PAT_OFF = 14 + 20 + 8 + 8          # Ethernet, IPv4, UDP, then our 8-byte frame index
PATTERN = "feedface"
BUF = 1 << 20                      # -b 1
OVERHEAD = 64                      # documented per-frame bookkeeping


def record_size(caplen):
    return (OVERHEAD + caplen + 7) & ~7


def setup():
    PAIR.create(f"{SRC}/24", f"{DST}/24", MAC_TX, MAC_RX)


def cleanup():
    PAIR.remove()


def udp_frame(index, size=1000, pattern=False):
    body = struct.pack(">Q", index) + (bytes.fromhex(PATTERN) if pattern else b"\0" * 4)
    body += bytes(size - 42 - len(body))
    return Ether(src=MAC_TX, dst=MAC_RX) / IP(src=SRC, dst=DST, id=index & 0xffff) / UDP(sport=40000, dport=PORT) / Raw(body)


class Run:
    """One capture in the receiving namespace, and scapy sending from the other."""

    def __init__(self, args, tmp, name):
        self.out = os.path.join(tmp, name)
        self.tmp = tmp
        self.name = name
        cmd = ["ip", "netns", "exec", NS_RX, IPSENTRY, "capture", "-i", IF_RX, "-o", self.out, "--no-status"] + args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        # Wait for the capture to be ready before sending anything.
        deadline = time.time() + 10
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            if "capturing on" in line:
                return
        raise AssertionError(f"capture did not start: {''.join(self.stderr_lines)}")

    def send(self, frames, inter=0.0):
        path = os.path.join(self.tmp, self.name + ".send.pcap")
        wrpcap(path, frames)
        code = (f"from scapy.all import rdpcap, sendp; sendp(rdpcap({path!r}), iface={IF_TX!r}, "
                f"inter={inter}, verbose=False)")
        sh("ip", "netns", "exec", NS_TX, "/usr/bin/python3", "-c", code)

    def wait(self, timeout=30):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"capture did not stop in {timeout} s:\n{out}\n{err}")
        self.stdout = out
        self.stderr = "".join(self.stderr_lines) + err
        return self.proc.returncode


def tshark_fields(path, *fields, extra=()):
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t"] + list(extra)
    for f in fields:
        cmd += ["-e", f]
    r = sh(*cmd, check=False)
    warnings = [l for l in r.stderr.splitlines() if l.strip() and "Running as user" not in l]
    assert r.returncode == 0 and not warnings, f"tshark on {path}: rc {r.returncode}: {r.stderr}"
    return [line.split("\t") for line in r.stdout.splitlines()]


def frames_of(path):
    """(index, caplen, comments) of each UDP test frame, in file order."""
    rows = tshark_fields(path, "frame.cap_len", "data.data", "frame.comment")
    out = []
    for caplen, data, comment in rows:
        index = int(data[:16], 16) if len(data) >= 16 else None
        out.append((index, int(caplen), comment))
    return out


FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def test_pattern(tmp):
    r = Run(["-f", f"udp port {PORT}", "-t", "P", hex(PAT_OFF), PATTERN], tmp, "p.pcapng")
    r.send([udp_frame(i, pattern=(i == 21)) for i in range(1, 41)])
    rc = r.wait()
    fr = frames_of(r.out)
    check(rc == 0 and fr and fr[-1][0] == 21, f"P trigger stops on exactly the pattern frame (rc {rc}, last {fr[-1][0] if fr else None})")
    check("trigger fired on this frame" in fr[-1][2] and all("trigger" not in c for _, _, c in fr[:-1]),
          "P: only the frame that fired carries the trigger comment")
    check([i for i, _, _ in fr] == list(range(1, 22)), "P: frames 1..21 kept in order")


def test_pattern_pcap(tmp):
    r = Run(["-f", f"udp port {PORT}", "--pcap", "-t", "P", hex(PAT_OFF), PATTERN], tmp, "p.pcap")
    r.send([udp_frame(i, pattern=(i == 5)) for i in range(1, 10)])
    rc = r.wait()
    fr = frames_of(r.out)
    kind = sh("capinfos", "-t", r.out, check=False).stdout if shutil_which("capinfos") else "pcap"
    check(rc == 0 and [i for i, _, _ in fr] == [1, 2, 3, 4, 5] and "pcap" in kind, "--pcap writes a classic pcap that tshark reads")


def shutil_which(name):
    import shutil
    return shutil.which(name)


def test_buffer_50(tmp):
    r = Run(["-f", f"udp port {PORT}", "-b", "1", "-t", "B", "50"], tmp, "b50.pcapng")
    r.send([udp_frame(i, size=700 + (i * 37) % 600) for i in range(1, 1500)])
    rc = r.wait()
    fr = frames_of(r.out)
    sizes = [record_size(c) for _, c, _ in fr]
    total = sum(sizes)
    check(rc == 0 and total >= BUF // 2 and total - sizes[-1] < BUF // 2,
          f"B 50 stops between 50% and 50% + one frame ({total} bytes of {BUF}, last frame {sizes[-1] if sizes else 0})")
    check("trigger fired" in fr[-1][2], "B 50: the last frame is marked")


def test_circular(tmp):
    r = Run(["-f", f"udp port {PORT}", "-b", "1", "-t", "N", "--count", "3000"], tmp, "n.pcapng")
    r.send([udp_frame(i) for i in range(1, 3001)])
    rc = r.wait()
    fr = frames_of(r.out)
    idx = [i for i, _, _ in fr]
    expect_kept = BUF // record_size(1000)
    check(rc == 0 and idx and idx[-1] == 3000 and idx == list(range(idx[0], 3001)) and idx[0] > 1,
          f"N keeps the newest frames in order ({idx[0] if idx else None}..{idx[-1] if idx else None})")
    check(expect_kept - 2 <= len(idx) <= expect_kept, f"N: the buffer holds what fits ({len(idx)} of ~{expect_kept} frames)")
    check("Frames overwritten (circular)" in r.stdout and re.search(r"Frames overwritten \(circular\)\s+(\d+)", r.stdout)
          and int(re.search(r"Frames overwritten \(circular\)\s+(\d+)", r.stdout).group(1)) == 3000 - len(idx),
          "N: the report counts the overwritten frames")


def test_bp(tmp):
    r = Run(["-f", f"udp port {PORT}", "-b", "1", "-t", "BP", "50", hex(PAT_OFF), PATTERN], tmp, "bp.pcapng")
    frames = [udp_frame(i, pattern=(i in (5, 600))) for i in range(1, 651)]
    r.send(frames)
    rc = r.wait()
    fr = frames_of(r.out)
    idx = [i for i, _, _ in fr]
    check(rc == 0 and idx and idx[-1] == 600 and 5 in idx, f"BP ignores the pattern before 50% and stops on it after (last {idx[-1] if idx else None})")
    check("trigger" not in dict((i, c) for i, _, c in fr).get(5, "x") and "trigger fired" in fr[-1][2],
          "BP: only the later pattern frame is marked")


def test_pb(tmp):
    r = Run(["-f", f"udp port {PORT}", "-b", "1", "-t", "PB", "25", hex(PAT_OFF), PATTERN], tmp, "pb.pcapng")
    r.send([udp_frame(i, pattern=(i == 100)) for i in range(1, 1000)])
    rc = r.wait()
    fr = frames_of(r.out)
    pos = [k for k, (i, _, _) in enumerate(fr) if i == 100]
    ok = rc == 0 and len(pos) == 1 and "trigger fired" in fr[pos[0]][2]
    after = [record_size(c) for _, c, _ in fr[pos[0] + 1:]] if pos else []
    total = sum(after)
    check(ok and total >= BUF // 4 and total - after[-1] < BUF // 4,
          f"PB 25 stops once 25% more of the buffer filled after the pattern ({total} bytes after it)")


def test_duration(tmp):
    t0 = time.time()
    r = Run(["-f", f"udp port {PORT}", "-t", "N", "-L", "00:00:02"], tmp, "l.pcapng")
    r.send([udp_frame(i) for i in range(1, 11)], inter=0.05)
    rc = r.wait()
    elapsed = time.time() - t0
    fr = frames_of(r.out)
    check(rc == 0 and 1.9 <= elapsed <= 5 and len(fr) == 10 and "the time limit" in r.stdout,
          f"-L 00:00:02 stops on time ({elapsed:.1f} s, {len(fr)} frames)")


def esp_config(tmp):
    enc = bytes(range(16))
    auth = bytes(range(32, 52))
    path = os.path.join(tmp, "sa.yaml")
    with open(path, "w") as f:
        f.write(f"""sas:
  - name: tx-to-rx
    spi: 0x0000c0de
    protocol: esp
    src: {SRC}
    dst: {DST}
    mode: transport
    encryption: aes-cbc
    enc_key: 0x{enc.hex()}
    auth: hmac-sha1-96
    auth_key: 0x{auth.hex()}
""")
    sa = SecurityAssociation(ESP, spi=0xc0de, crypt_algo="AES-CBC", crypt_key=enc, auth_algo="HMAC-SHA1-96",
                             auth_key=auth)
    return path, sa


def esp_frames(sa, n, bad):
    out = []
    for i in range(1, n + 1):
        inner = IP(src=SRC, dst=DST) / UDP(sport=40000, dport=PORT) / Raw(b"esp test %d" % i)
        e = bytearray(bytes(sa.encrypt(inner, seq_num=i)))
        if i == bad:
            e[-1] ^= 0x01  # the last byte of the ICV
        out.append(Ether(src=MAC_TX, dst=MAC_RX) / IP(bytes(e)))
    return out


def test_stop_on_icv(tmp):
    cfg, sa = esp_config(tmp)
    r = Run(["--ipsec-only", "-c", cfg, "--stop-on", "icv-fail", "--after", "5", "--embed-keys", "-L", "20"],
            tmp, "icv.pcapng")
    r.send(esp_frames(sa, 20, bad=11), inter=0.01)
    rc = r.wait()
    rows = tshark_fields(r.out, "esp.sequence", "frame.comment")
    seqs = [int(s) for s, _ in rows]
    check(rc == 1 and seqs == list(range(1, 17)),
          f"--stop-on icv-fail --after 5 stops five frames after the bad one (rc {rc}, seqs {seqs})")
    bad = dict((int(s), c) for s, c in rows).get(11, "")
    check("icv-fail" in bad and "--stop-on icv-fail fired" in bad, "the bad frame carries its verdict comment (tshark)")
    good = dict((int(s), c) for s, c in rows).get(3, "")
    check("ESP SPI 0x0000c0de seq 3: ok" in good and "tx-to-rx" in good, "good frames carry 'ok' and the SA name")
    check("--stop-on fired on frame 11 (frame 11 in the file)" in r.stdout, "the report names the event frame")
    # The capture travels with its keys: verify needs no configuration.
    v = sh(IPSENTRY, "verify", r.out, check=False)
    check(v.returncode == 1 and "16 IPsec packets in 16 frames: 15 ok, 1 icv-fail" in v.stdout,
          "verify uses the embedded keys (15 ok, 1 icv-fail)")
    # What is embedded is Wireshark's esp_sa record: tshark decrypts with it.
    secrets = embedded_secrets(r.out)
    conf = os.path.join(tmp, "wsconf")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "esp_sa"), "w") as f:
        f.write(secrets)
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=conf)
    t = subprocess.run(["tshark", "-n", "-r", r.out, "-o", "esp.enable_encryption_decode:TRUE",
                        "-o", "esp.enable_authentication_check:TRUE", "-T", "fields", "-e", "udp.dstport"],
                       capture_output=True, text=True, env=env)
    decrypted = sum(1 for l in t.stdout.splitlines() if l.split("\t")[0] == str(PORT))
    check(decrypted >= 15, f"tshark decrypts the capture with the embedded esp_sa records ({decrypted} of 16)")


def embedded_secrets(path):
    data = open(path, "rb").read()
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 0x0000000A:
            stype, slen = struct.unpack_from("<II", data, pos + 8)
            assert stype == 0x45535053
            return data[pos + 16:pos + 16 + slen].decode()
        pos += blen
    return ""


def test_sigterm(tmp):
    def rx_packets():
        return int(sh("ip", "netns", "exec", NS_RX, "cat", f"/sys/class/net/{IF_RX}/statistics/rx_packets").stdout)

    base = rx_packets()
    r = Run(["-f", f"udp port {PORT}", "-t", "N", "-b", "4"], tmp, "term.pcapng")
    sender = subprocess.Popen(["ip", "netns", "exec", NS_TX, "/usr/bin/python3", "-c",
                               f"from scapy.all import *; import struct\n"
                               f"fr=[Ether(src={MAC_TX!r},dst={MAC_RX!r})/IP(src={SRC!r},dst={DST!r})/UDP(sport=40000,dport={PORT})/Raw(struct.pack('>Q',i)+bytes(200)) for i in range(1,5001)]\n"
                               f"sendp(fr, iface={IF_TX!r}, inter=0.0005, verbose=False)"])
    # Terminate once frames are flowing (scapy takes a while to build them).
    deadline = time.time() + 20
    while time.time() < deadline and sender.poll() is None:
        time.sleep(0.5)
        if rx_packets() > base + 500:
            break
    r.proc.send_signal(signal.SIGTERM)
    rc = r.wait()
    sender.kill()
    sender.wait()
    fr = frames_of(r.out)
    if not fr:
        print(r.stdout, r.stderr)
    check(rc == 0 and len(fr) > 0 and "interrupted" in r.stdout,
          f"SIGTERM mid-capture leaves a valid file tshark reads ({len(fr)} frames)")


def test_errors(tmp):
    # Without CAP_NET_RAW: a clear error saying what to do.
    exe = os.path.join(tmp, "ipsentry")
    sh("cp", IPSENTRY, exe)
    os.chmod(tmp, 0o755)
    os.chmod(exe, 0o755)
    r = sh("ip", "netns", "exec", NS_RX, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all", exe, "capture", "-i", IF_RX, "-L", "1", "-o", "/tmp/never.pcapng", check=False)
    check(r.returncode == 2 and "CAP_NET_RAW" in r.stderr and "setcap" in r.stderr,
          f"without privileges: exit 2 naming CAP_NET_RAW and setcap ({r.stderr.strip()[:160]})")
    bad = [
        (["-i", "nosuchif0"], "no capture device 'nosuchif0'"),
        (["-i", IF_RX, "-f", "esp and and"], "does not compile"),
        (["-i", IF_RX, "-t", "P", "17", "abc"], "even number of hexadecimal digits"),
        (["-i", IF_RX, "--after", "3"], "give --stop-on too"),
        (["-i", IF_RX, "--stop-on", "icv-fail,nonsense"], "unknown --stop-on event 'nonsense'"),
        (["-i", IF_RX, "-L", "1:99"], "not a duration"),
        (["-i", IF_RX, "-b", "1001"], "1001"),
        (["-n", "999"], "no interface number 999"),
    ]
    for args, want in bad:
        r = sh("ip", "netns", "exec", NS_RX, IPSENTRY, "capture", "-o", os.path.join(tmp, "x.pcapng"), *args,
               check=False)
        check(r.returncode == 2 and want in (r.stderr + r.stdout), f"capture {' '.join(args)}: exit 2 with '{want}'")
    r = sh("ip", "netns", "exec", NS_RX, IPSENTRY, "capture", "-i", IF_RX, "-o", "/nonexistent-dir/x.pcapng",
           check=False)
    check(r.returncode == 2 and "cannot write the capture to '/nonexistent-dir'" in r.stderr,
          "an output that cannot be written is refused before capturing, not after")
    ifs = sh("ip", "netns", "exec", NS_RX, IPSENTRY, "interfaces")
    check(re.search(rf"\s{IF_RX}\s.*{re.escape(DST)}/24", ifs.stdout) is not None and " any " in ifs.stdout,
          "interfaces lists the veth with its address, and 'any'")
    idx = re.search(rf"^\s*(\d+)\s+{IF_RX}\s", ifs.stdout, re.M).group(1)
    r = sh("ip", "netns", "exec", NS_RX, IPSENTRY, "capture", "-n", idx, "-L", "1", "--no-status", "-o",
           os.path.join(tmp, "idx.pcapng"), check=False)
    check(r.returncode == 0 and f"capturing on {IF_RX}" in r.stderr, f"-n {idx} selects {IF_RX}")


def main():
    global IPSENTRY
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    a = ap.parse_args()
    IPSENTRY = os.path.abspath(a.ipsentry)
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces")
        return 77
    only = os.environ.get('ONLY')
    tests = [test_pattern, test_pattern_pcap, test_buffer_50, test_circular, test_bp, test_pb, test_duration,
             test_stop_on_icv, test_sigterm, test_errors]
    try:
        setup()
        with tempfile.TemporaryDirectory(prefix="ipsentry-capture-") as tmp:
            for t in tests:
                if only and t.__name__ != only:
                    continue
                try:
                    t(tmp)
                except Exception as e:  # one broken test must not hide the others
                    check(False, f"{t.__name__}: {type(e).__name__}: {e}")
    finally:
        cleanup()
    print(f"{len(FAILS)} failures")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
