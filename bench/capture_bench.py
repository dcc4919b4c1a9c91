#!/usr/bin/python3
"""Live capture benchmark: the highest packet rate `ipsentry capture` takes
with zero kernel drops while verifying ESP live, side by side with
`tcpdump -w` on the same traffic (no verification), and the peak memory of
the capture against its buffer size.

Two network namespaces joined by a veth pair (documentation addresses);
tcpreplay sends a generated ESP capture (bench/gen_capture.py: AES-GCM-16,
four SAs, inner packets 64-1400 bytes, encrypted by Python's cryptography)
at fixed rates; the receiver captures on the other end. Root only.

Usage: capture_bench.py IPSENTRY [PACKETS]
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
from netns import VethPair, sh  # noqa: E402

PAIR = VethPair(f"ipsb{os.getpid() % 100000}")
NS_TX, NS_RX, IF_TX, IF_RX = PAIR.ns_tx, PAIR.ns_rx, PAIR.if_tx, PAIR.if_rx
RATES = [50000, 100000, 150000, 200000, 250000, 300000, 400000]


def replay(pcap, pps):
    r = sh("ip", "netns", "exec", NS_TX, "tcpreplay", "-i", IF_TX, f"--pps={pps}", pcap, check=False)
    m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", r.stdout)
    sent = re.search(r"Successful packets:\s+(\d+)", r.stdout)
    return float(m.group(1)) if m else 0.0, int(sent.group(1)) if sent else 0


def wait_ready(proc, word):
    deadline = time.time() + 15
    buf = ""
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        buf += line
        if word in line:
            return
    raise RuntimeError(f"receiver did not start: {buf}")


def run_ipsentry(ipsentry, cfg, pcap, pps, out, buffer_mb):
    cmd = ["ip", "netns", "exec", NS_RX, "/usr/bin/time", "-f", "maxrss_kb %M", ipsentry, "capture", "-i", IF_RX,
           "-b", str(buffer_mb), "-B", "64", "-t", "N", "--ipsec-only", "-c", cfg, "--no-status", "-o", out]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(p, "capturing on")
    rate, sent = replay(pcap, pps)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    # /usr/bin/time forwards nothing: signal the capture itself.
    sh("pkill", "-INT", "-f", f"capture -i {IF_RX}", check=False)
    out_s, err_s = p.communicate(timeout=120)
    got = lambda name: int(re.search(rf"{re.escape(name)}\s+(\d+)", out_s).group(1))  # noqa: E731
    ok = re.search(r"IPsec packets in \d+ frames: (\d+) ok", out_s)
    rss = int(re.search(r"maxrss_kb (\d+)", err_s).group(1))
    used_pct = float(re.search(r"Buffer used\s+([\d.]+)%", out_s).group(1))
    return {"used_mb": used_pct / 100 * buffer_mb, "rate": rate, "sent": sent, "captured": got("Frames captured"), "dropped": got("Kernel: dropped (ring full)"),
            "ok": int(ok.group(1)) if ok else 0, "rss_kb": rss}


def run_tcpdump(pcap, pps, out):
    cmd = ["ip", "netns", "exec", NS_RX, "tcpdump", "-i", IF_RX, "-B", str(64 * 1024), "-s", "262144", "-w", out, "esp"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(p, "listening on")
    rate, sent = replay(pcap, pps)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err_s = p.communicate(timeout=60)
    captured = int(re.search(r"(\d+) packets? captured", err_s).group(1))
    dropped = int(re.search(r"(\d+) packets? dropped by kernel", err_s).group(1))
    return {"rate": rate, "sent": sent, "captured": captured, "dropped": dropped}


def main():
    if os.geteuid() != 0:
        print("needs root (network namespaces)")
        return 77
    ipsentry = os.path.abspath(sys.argv[1])
    packets = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    data = os.path.join(os.path.dirname(ipsentry), "..", "bench-data")
    os.makedirs(data, exist_ok=True)
    prefix = os.path.join(data, f"gcm-{packets}")
    if not os.path.exists(prefix + ".pcap"):
        sh("/usr/bin/python3", os.path.join(HERE, "gen_capture.py"), "gcm", str(packets), prefix + ".pcap",
           prefix + ".yaml", prefix + ".esp_sa")
    pcap, cfg = prefix + ".pcap", prefix + ".yaml"
    try:
        PAIR.create("198.51.100.200/24", "198.51.100.1/24")
        with tempfile.TemporaryDirectory(prefix="ipsentry-capbench-") as tmp:
            print(f"{packets} ESP packets (AES-GCM-16, 64-1400 B inner) per run; kernel ring 64 MiB for both")
            print(f"{'target pps':>10} | {'tcpdump -w: pps':>15} {'captured':>9} {'dropped':>8} | "
                  f"{'ipsentry capture + verify: pps':>30} {'captured':>9} {'ok':>9} {'dropped':>8}")
            best = {"tcpdump": 0, "ipsentry": 0}
            for pps in RATES:
                t = run_tcpdump(pcap, pps, os.path.join(tmp, "t.pcap"))
                i = run_ipsentry(ipsentry, cfg, pcap, pps, os.path.join(tmp, "i.pcapng"), 256)
                print(f"{pps:>10} | {t['rate']:>15.0f} {t['captured']:>9} {t['dropped']:>8} | "
                      f"{i['rate']:>30.0f} {i['captured']:>9} {i['ok']:>9} {i['dropped']:>8}", flush=True)
                if t["dropped"] == 0 and t["captured"] == t["sent"]:
                    best["tcpdump"] = max(best["tcpdump"], t["rate"])
                if i["dropped"] == 0 and i["captured"] == i["sent"] and i["ok"] == i["sent"]:
                    best["ipsentry"] = max(best["ipsentry"], i["rate"])
            print(f"zero-drop rate: tcpdump -w {best['tcpdump']:.0f} pps; ipsentry capture verifying every "
                  f"packet {best['ipsentry']:.0f} pps")
            print("peak memory against the buffer (-b; the 64 MiB kernel ring -B 64 is part of the rest):")
            for mb in (16, 64, 256):
                i = run_ipsentry(ipsentry, cfg, pcap, 100000, os.path.join(tmp, "m.pcapng"), mb)
                print(f"  -b {mb:>4}: max RSS {i['rss_kb'] / 1024:7.1f} MiB = {i['used_mb']:6.1f} MiB of frames held + "
                      f"{i['rss_kb'] / 1024 - i['used_mb']:6.1f} MiB")
    finally:
        PAIR.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
