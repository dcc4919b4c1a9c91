#!/usr/bin/python3
"""Measures `ipsentry tui` on a large capture, the way a user meets it: the
time from starting the command to the first screen of frames, to the end
of indexing, to a display filter applied over every frame, and how long a
key takes to show its effect while scrolling; plus the resident memory.

The capture is bench/gen_capture.py's (ESP tunnel, AES-GCM, four SAs,
random sizes 64-1400), made once and kept in build/bench-data.

As root it then watches a live capture: the 100,000-frame capture sent
with tcpreplay --topspeed between two network namespaces into `tui -i`,
while keys are pressed; it reports the frames captured and dropped and how
long keys took to show their effect meanwhile.

Usage: tui_bench.py IPSENTRY [FRAMES]   (default 1,000,000)
"""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
from netns import VethPair  # noqa: E402
SOCK = f"ipsentry-tui-bench-{os.getpid()}"


def tmux(*a):
    return subprocess.run(["tmux", "-L", SOCK, *a], capture_output=True, text=True).stdout


def screen():
    return tmux("capture-pane", "-p", "-t", "b")


def wait(pred, timeout=120.0, step=0.002):
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        s = screen()
        if pred(s):
            return time.perf_counter(), s
        time.sleep(step)
    raise SystemExit(f"timed out; screen:\n{screen()}")


def rss_kb(name):
    """(anonymous, file-backed) resident kB: the index and heap, and the
    pages of the mapped capture that have been read."""
    out = subprocess.run(["pgrep", "-f", "ipsentry tui " + name], capture_output=True, text=True).stdout.split()
    for pid in out:
        try:
            vals = {}
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(("RssAnon:", "RssFile:")):
                    vals[line.split(":")[0]] = int(line.split()[1])
            return vals.get("RssAnon", 0), vals.get("RssFile", 0)
        except OSError:
            pass
    return 0, 0


def ensure_capture(data, frames):
    """bench/gen_capture.py's capture of `frames` frames, made once."""
    base = os.path.join(data, f"gcm-{frames}")
    if not os.path.exists(base + ".pcap.meta"):
        print(f"generating {frames} frames (once) ...", flush=True)
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "gen_capture.py"), "gcm", str(frames), base + ".pcap",
                        base + ".yaml", base + ".esp_sa"], check=True)
    return base


def main():
    ipsentry = os.path.abspath(sys.argv[1])
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    data = os.path.join(os.path.dirname(ipsentry), "..", "bench-data")
    os.makedirs(data, exist_ok=True)
    base = ensure_capture(data, frames)
    size = os.path.getsize(base + ".pcap")
    print(f"capture: {frames} frames, {size / 1e6:.0f} MB ({base}.pcap)")
    tmux("new-session", "-d", "-s", "keep", "sleep", "3600")
    try:
        t0 = time.perf_counter()
        tmux("new-session", "-d", "-s", "b", "-x", "200", "-y", "50", "env", "LANG=C.UTF-8", ipsentry, "tui",
             base + ".pcap", "-c", base + ".yaml")
        t_first, s = wait(lambda s: re.search(r"^\s+1 0\.000000 ", s, re.M) is not None)
        print(f"first screen (frame 1 listed):      {(t_first - t0) * 1000:8.0f} ms")
        t_done, s = wait(lambda s: f"│ {frames} frames" in s, 600)
        print(f"indexing done ({frames} frames):   {(t_done - t0) * 1000:8.0f} ms")
        anon, mapped = rss_kb(base + ".pcap")
        print(f"resident after indexing:            {anon / 1024:8.0f} MB anonymous (index, heap), "
              f"{mapped / 1024:.0f} MB of the mapped file")

        def timed_keys(keys, pred, literal=False):
            t = time.perf_counter()
            tmux("send-keys", "-t", "b", *(["-l"] if literal else []), *keys)
            t2, s2 = wait(pred, 120, 0.001)
            return (t2 - t) * 1000, s2

        ms, s = timed_keys(["End"], lambda s: re.search(rf"^\s*{frames} ", s, re.M) is not None)
        print(f"End (to frame {frames}):           {ms:8.1f} ms")
        worst = 0.0
        for i in range(20):
            before = s
            ms, s = timed_keys(["PPage"], lambda x, b=before: x != b)
            worst = max(worst, ms)
        print(f"PgUp, worst of 20:                  {worst:8.1f} ms")
        def filter_step(expr):
            tmux("send-keys", "-t", "b", "/")
            tmux("send-keys", "-t", "b", "C-u")
            tmux("send-keys", "-t", "b", "-l", expr)
            time.sleep(0.3)
            ms, s = timed_keys(["Enter"], lambda s: f"filter: {expr} (" in s)
            m = re.search(r"(\d+) of (\d+) frames match \(([\d.]+) ms\)", s)
            print(f"filter '{expr}' over every frame: {ms:.1f} ms wall  "
                  f"({m.group(1) if m else '?'} of {m.group(2) if m else '?'} match; "
                  f"{m.group(3) if m else '?'} ms inside)")

        filter_step("spi == 0xb0000002 and seq > 200000 and len < 200")
        filter_step("verdict != ok")
        tmux("send-keys", "-t", "b", "q")
    finally:
        tmux("kill-server")


def live(ipsentry, data):
    base = ensure_capture(data, 100000)
    pair = VethPair("tuib")
    tmux("new-session", "-d", "-s", "keep", "sleep", "3600")
    try:
        pair.create("192.0.2.1/24", "192.0.2.2/24")
        tmux("new-session", "-d", "-s", "b", "-x", "200", "-y", "50", "env", "LANG=C.UTF-8", "ip", "netns", "exec",
             pair.ns_rx, ipsentry, "tui", "-i", pair.if_rx, "-c", base + ".yaml", "--ipsec-only", "-b", "2048")
        wait(lambda s: "capturing:" in s)
        rep = subprocess.Popen(["ip", "netns", "exec", pair.ns_tx, "tcpreplay", "--topspeed", "-i", pair.if_tx,
                                base + ".pcap"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lat = []
        s = screen()
        while rep.poll() is None:
            t = time.perf_counter()
            before = s
            tmux("send-keys", "-t", "b", "PPage" if len(lat) % 2 == 0 else "End")
            t2, s = wait(lambda x, b=before: x != b, 10, 0.001)
            lat.append((t2 - t) * 1000)
            time.sleep(0.05)
        out = rep.stdout.read()
        rate = re.search(r"Rated: ([\d.]+) Bps, ([\d.]+) Mbps, ([\d.]+) pps", out)
        # Until the count stops moving (frames the kernel dropped never come).
        last = None
        while True:
            time.sleep(1.0)
            s = screen()
            m = re.search(r"capturing: (\d+) frames, (\d+) MB kept, kernel dropped (\d+)", s)
            if m and m.group(1) == last:
                break
            last = m.group(1) if m else None
        tmux("send-keys", "-t", "b", "3")
        _, st = wait(lambda x: "Quick Mode" in x)
        ok = re.search(r"^  ok\s+(\d+)", st, re.M)
        print(f"live: tcpreplay --topspeed sent 100000 frames at {float(rate.group(3)):.0f} pps "
              f"({float(rate.group(2)):.0f} Mbps)" if rate else "live: tcpreplay rate not reported")
        print(f"live: captured {m.group(1)} frames, kernel dropped {m.group(3)}; verified ok: "
              f"{ok.group(1) if ok else '?'}")
        lat.sort()
        if lat:
            print(f"live: {len(lat)} keys pressed while capturing: median {lat[len(lat) // 2]:.1f} ms, "
                  f"worst {lat[-1]:.1f} ms to show their effect")
        tmux("send-keys", "-t", "b", "q")
    finally:
        tmux("kill-server")
        pair.remove()


if __name__ == "__main__":
    main()
    if os.geteuid() == 0:
        live(os.path.abspath(sys.argv[1]),
             os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "..", "bench-data"))
