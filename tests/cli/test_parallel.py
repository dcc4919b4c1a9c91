#!/usr/bin/python3
"""`ipsentry verify -j N` gives exactly the output of `-j 1`: the same text
lines, the same JSON (packets, statistics, SAs, IKE), the same decrypted
capture and the same exit status, for N = 2, 3, 4, on captures built to make
the parallel pipeline's ordered stage matter:

  - many SAs interleaved, and one SA alone (every packet in one replay window);
  - replays of recent and of old packets, duplicates in a row, bad ICVs, cut
    and unknown-SPI packets;
  - ESN SAs crossing 2^32 with reordering around the wrap and, with a small
    window, replays of pre-wrap packets after it (whose high half a worker
    guessing from a stale window gets wrong: the ordered stage must redo them);
  - ESP inside ESP (nested tunnels), and cleartext IKE messages between them;
  - the bundled samples (AH included).

The captures are several thousand frames, so the frames of one SA are spread
over many chunks and threads.

Run: test_parallel.py --ipsentry build/cli/ipsentry
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from esp_ref import RefSA  # noqa: E402
from ike_capture import INITIATOR, RESPONDER, isakmp, notify, udp500  # noqa: E402
from rawpcap import ipv4, write_pcap  # noqa: E402

FAILS = []
CHECKS = [0]
THREADS = (1, 2, 3, 4)


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
    return cond


def run(args):
    return subprocess.run(args, capture_output=True, cwd=ROOT)


def udp(sport, dport, n, tag):
    body = bytes((tag + i) & 0xff for i in range(n))
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body


class Sa:
    """A RefSA with its configuration lines."""

    def __init__(self, rnd, name, spi, dst, enc, integ="none", esn=False, window=None, first=None):
        klen = {"aes-cbc": 16, "chacha20-poly1305-iiv": 36}.get(enc, 20)
        key = bytes(rnd.randrange(256) for _ in range(klen))
        alen = 32 if integ.startswith("hmac-sha256") else 20
        akey = bytes(rnd.randrange(256) for _ in range(alen)) if integ != "none" else b""
        self.ref = RefSA(spi, enc, key, integ, akey, esn=esn)
        if first is not None:
            self.ref.seq = first - 1
        self.dst = dst
        self.sent = []
        self.lines = [f"  - name: {name}", f"    spi: {spi:#x}", "    protocol: esp", f"    dst: {dst}",
                      "    mode: tunnel", f"    encryption: {enc}", f"    enc_key: 0x{key.hex()}", f"    auth: {integ}"]
        if akey:
            self.lines.append(f"    auth_key: 0x{akey.hex()}")
        if esn:
            self.lines.append("    esn: true")
        if window is not None:
            self.lines.append(f"    replay_window: {window}")

    def packet(self, inner, src="203.0.113.1", ident=1):
        return ipv4(src, self.dst, 50, self.ref.encrypt(inner, 4), ident & 0xffff)


def write_config(path, sas):
    with open(path, "w") as f:
        f.write("sas:\n" + "\n".join(line for sa in sas for line in sa.lines) + "\n")
    return path


def ike_frames():
    sa_v1 = struct.pack("!II", 1, 1)
    return [
        udp500(INITIATOR, RESPONDER, isakmp(0x1111, 0, 1, 2, 0, 0, [(1, sa_v1)])),
        udp500(RESPONDER, INITIATOR, isakmp(0x1111, 0x2222, 1, 5, 0, 0x01020304, [(11, notify(False, 14))])),
        udp500(INITIATOR, RESPONDER, isakmp(0x3333, 0, 2, 34, 0x08, 0, [(33, b""), (34, b"\0" * 36), (40, b"n" * 16)])),
        udp500(RESPONDER, INITIATOR, isakmp(0x3333, 0, 2, 34, 0x20, 0, [(41, notify(True, 14))])),
    ]


def tamper(rnd, pkt, sa_sent, n):
    """Returns the frame to write in place of `pkt`, and what was done."""
    pkt = bytearray(pkt)
    kind = rnd.random()
    if kind < 0.03:
        pkt[-1 - rnd.randrange(4)] ^= 1 << rnd.randrange(8)  # bad ICV
        return bytes(pkt), "icv"
    if kind < 0.05 and sa_sent:
        return rnd.choice(sa_sent[-40:]), "replay-recent"
    if kind < 0.06 and len(sa_sent) > 300:
        return rnd.choice(sa_sent[:-200]), "replay-old"
    if kind < 0.065:
        pkt[20:24] = struct.pack("!I", 0xdead0000 + n)
        return bytes(pkt), "unknown-spi"
    if kind < 0.07:
        return bytes(pkt[:30]), "cut"
    return bytes(pkt), "ok"


def many_sas_capture(tmp, rnd):
    wrap = 0x100000000
    sas = [
        Sa(rnd, "gcm", 0x7100, "198.51.100.1", "aes-gcm-16"),
        Sa(rnd, "cbc", 0x7101, "198.51.100.2", "aes-cbc", "hmac-sha1-96"),
        Sa(rnd, "iiv", 0x7102, "198.51.100.3", "aes-gcm-16-iiv"),
        Sa(rnd, "chacha", 0x7103, "198.51.100.4", "chacha20-poly1305-iiv", window=32),
        # ESN across 2^32: a big window, and a small one that old replays fall out of.
        Sa(rnd, "esn-gcm", 0x7104, "198.51.100.5", "aes-gcm-16-iiv", esn=True, first=wrap - 700),
        Sa(rnd, "esn-cbc", 0x7105, "198.51.100.6", "aes-cbc", "hmac-sha256-128", esn=True, window=32,
           first=wrap - 500),
        # The tunnel that carries the nested one, and the nested one.
        Sa(rnd, "outer", 0x7106, "198.51.100.7", "aes-gcm-16"),
        Sa(rnd, "inner", 0x7107, "192.0.2.77", "aes-cbc", "hmac-sha1-96"),
    ]
    outer, inner = sas[6], sas[7]
    frames, kinds = [], {}
    ike = ike_frames()
    pending = None  # a frame held back one slot: reordering
    for n in range(6000):
        if n % 1500 == 700 and ike:
            frames += [ike.pop(0), ike.pop(0)]
        i = rnd.randrange(len(sas) - 1)  # the inner SA only inside the outer one
        sa = sas[i]
        payload = ipv4("192.0.2.1", "192.0.2.200", 17, udp(4000 + i, 5000, rnd.randrange(16, 900), n), n)
        if sa is outer:
            nested = inner.packet(payload, src="192.0.2.66", ident=n)
            if rnd.random() < 0.05 and inner.sent:
                nested = rnd.choice(inner.sent[-20:])  # a replay inside the tunnel
            inner.sent.append(nested)
            pkt = outer.packet(nested, ident=n)
        else:
            pkt = sa.packet(payload, ident=n)
        frame, kind = tamper(rnd, pkt, sa.sent, n)
        kinds[kind] = kinds.get(kind, 0) + 1
        sa.sent.append(pkt)
        if sa.ref.esn and pending is None and rnd.random() < 0.2:
            pending = frame  # sent after the next frame
            continue
        frames.append(frame)
        if rnd.random() < 0.01:
            frames.append(frame)  # a duplicate right behind
        if pending is not None:
            frames.append(pending)
            pending = None
    if pending is not None:
        frames.append(pending)
    # Pre-wrap packets of the small-window ESN SA replayed long after the wrap.
    esn_cbc = sas[5]
    for k in range(40):
        frames.insert(len(frames) - 200 + k * 4, esn_cbc.sent[k])
    cap = os.path.join(tmp, "many.pcap")
    write_pcap(cap, frames)
    check(all(sa.ref.seq > wrap for sa in sas[4:6]), "the ESN SAs crossed 2^32")
    check(kinds.get("replay-old", 0) > 10 and kinds.get("icv", 0) > 50, f"tampering spread {kinds}")
    return cap, write_config(os.path.join(tmp, "many.yaml"), sas)


def one_sa_capture(tmp, rnd):
    sa = Sa(rnd, "only", 0x7200, "198.51.100.9", "aes-cbc", "hmac-sha1-96", window=64)
    frames = []
    for n in range(5000):
        pkt = sa.packet(ipv4("192.0.2.1", "192.0.2.200", 17, udp(4000, 5000, rnd.randrange(16, 1200), n), n),
                        ident=n)
        frame, _ = tamper(rnd, pkt, sa.sent, n)
        sa.sent.append(pkt)
        frames.append(frame)
    cap = os.path.join(tmp, "one.pcap")
    write_pcap(cap, frames)
    return cap, write_config(os.path.join(tmp, "one.yaml"), [sa])


def outputs(ipsentry, tmp, cap, cfg, j):
    """Text, JSON (without the run time) and decrypted capture of one run."""
    dec = os.path.join(tmp, f"dec-{j}.pcap")
    text = run([ipsentry, "verify", cap, "-c", cfg, "--no-progress", "-j", str(j)])
    js = run([ipsentry, "verify", cap, "-c", cfg, "--json", "--no-progress", "-j", str(j), "-w", dec])
    d = json.loads(js.stdout) if js.returncode in (0, 1) else {}
    d.get("statistics", {}).pop("seconds", None)
    with open(dec, "rb") as f:
        decrypted = f.read()
    # The text summary names the run time too.
    lines = [line for line in text.stdout.decode().splitlines() if " s (" not in line and "seconds" not in line]
    return {"exit": (text.returncode, js.returncode), "text": lines, "json": d, "decrypted": decrypted}


def compare(ipsentry, tmp, name, cap, cfg):
    base = outputs(ipsentry, tmp, cap, cfg, 1)
    check(len(base["text"]) > 10 and base["json"].get("packets"), f"{name}: -j 1 produced output")
    for j in THREADS[1:]:
        got = outputs(ipsentry, tmp, cap, cfg, j)
        for k in ("exit", "text", "json", "decrypted"):
            if not check(got[k] == base[k], f"{name}: -j {j}: {k} differs from -j 1"):
                if k == "text":
                    diff = [(a, b) for a, b in zip(base[k], got[k]) if a != b][:3]
                    print(f"{name} -j {j} first differing lines: {diff}")
    return base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    args = ap.parse_args()
    ipsentry = os.path.abspath(args.ipsentry)
    rnd = random.Random(17)
    with tempfile.TemporaryDirectory(prefix="ipsentry-parallel-") as tmp:
        cap, cfg = many_sas_capture(tmp, rnd)
        base = compare(ipsentry, tmp, "many SAs", cap, cfg)
        v = base["json"]["statistics"]["verdicts"]
        check(v["ok"] > 4000 and v["icv-fail"] > 50 and v["replay"] > 100 and v["unknown-spi"] > 10
              and v["malformed"] > 10, f"many SAs: verdicts {v}")
        pk = base["json"]["packets"]
        check(any(p["layer"] == 2 and p["verdict"] == "ok" for p in pk), "nested ESP verified")
        check(any(p["layer"] == 2 and p["verdict"] == "replay" for p in pk), "nested replay seen")
        above = [p for p in pk if p["sa"] in ("esn-gcm", "esn-cbc") and p["seq"] and p["seq"] > 0xffffffff]
        check(sum(p["verdict"] == "ok" for p in above) > 500, "ESN packets above 2^32 verified")
        check(any(p["sa"] == "esn-cbc" and p["verdict"] == "replay" and p["seq"] <= 0xffffffff for p in pk)
              or any(p["sa"] == "esn-cbc" and p["verdict"] == "icv-fail" and p["seq"] > 0x1ffffffff for p in pk),
              "pre-wrap replays after the wrap")
        check(len(base["json"].get("ike", {}).get("messages", [])) >= 4, "IKE messages reported")
        cap, cfg = one_sa_capture(tmp, rnd)
        base = compare(ipsentry, tmp, "one SA", cap, cfg)
        v = base["json"]["statistics"]["verdicts"]
        check(v["ok"] > 4000 and v["replay"] > 50 and v["icv-fail"] > 50, f"one SA: verdicts {v}")
        for cap, cfg in (("esp-tunnel-faults", "esp-tunnel"), ("esp-tunnel", "esp-tunnel"), ("seed-ah", "seed-ah")):
            compare(ipsentry, tmp, cap, os.path.join(ROOT, "samples", f"{cap}.pcap"),
                    os.path.join(ROOT, "samples", f"{cfg}.yaml"))
    print(f"{CHECKS[0]} checks, {len(FAILS)} failures")
    for f in FAILS:
        print("FAIL:", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
