#!/usr/bin/python3
"""Gzip captures are inflated as they are read (issue 17, item 4):

- `verify --json` of a gzip capture several times larger than the inflate
  step (FileSource::kInflateStep, 4 MiB) prints byte for byte what the plain
  capture gives, with -j 1 and -j 2;
- peak memory (/usr/bin/time %M) for the gzip of 100,000 packets is within a
  small margin of that for 10,000: it is flat in the file's size.

Run: test_gzip_stream.py --ipsentry build/cli/ipsentry
"""
import argparse
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FAILS = []
STEP = 4 << 20
# Peak memory may differ by a few inflate steps in flight, not by the file:
# inflating the whole 100,000-packet capture into memory costs 80 MB more.
MARGIN_KB = 8 << 10


def check(cond, what):
    if not cond:
        FAILS.append(what)
    return cond


def records(pcap):
    """The pcap header and the list of records (header + data) of a capture."""
    out, at = [], 24
    while at < len(pcap):
        incl = struct.unpack_from("<I", pcap, at + 8)[0]
        out.append(pcap[at:at + 16 + incl])
        at += 16 + incl
    return pcap[:24], out


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def peak_kb(ipsentry, capture, cfg):
    r = subprocess.run(["/usr/bin/time", "-f", "%M", ipsentry, "verify", capture, "-c", cfg, "-q", "--no-progress",
                        "-j", "1"], capture_output=True, text=True, timeout=300)
    # 1: the 100,000-packet file repeats its packets, which are replays.
    check(r.returncode in (0, 1), f"verify {capture}: exit {r.returncode}: {r.stderr[-500:]}")
    return int(r.stderr.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    ipsentry = os.path.abspath(ap.parse_args().ipsentry)
    with tempfile.TemporaryDirectory() as tmp:
        plain, cfg = os.path.join(tmp, "c.pcap"), os.path.join(tmp, "c.yaml")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_capture.py"), "gcm", "20000", plain, cfg,
                        os.path.join(tmp, "c.esp_sa")], check=True, capture_output=True)
        os.chmod(cfg, 0o600)
        with open(plain, "rb") as f:
            data = f.read()
        check(len(data) > 3 * STEP, f"the capture ({len(data)} bytes) is not several inflate steps long")
        packed = write(os.path.join(tmp, "c.pcap.gz"), gzip.compress(data, 1))

        for threads in ("1", "2"):
            runs = [subprocess.run([ipsentry, "verify", p, "-c", cfg, "--json", "--no-progress", "-j", threads],
                                   capture_output=True, timeout=300) for p in (plain, packed)]
            # Everything but the capture's own header line, and the run time.
            a, b = (re.sub(rb'"seconds":[0-9.e+-]+', b'"seconds":0', r.stdout).split(b"\n", 1) for r in runs)
            check(runs[0].returncode == runs[1].returncode == 0,
                  f"-j {threads}: exits {runs[0].returncode}, {runs[1].returncode}: {runs[1].stderr[-300:]}")
            check(b"\"compressed\":false" in a[0] and b"\"compressed\":true" in b[0],
                  f"-j {threads}: capture headers {a[0][:120]} / {b[0][:120]}")
            check(len(a) == 2 and a[1].count(b"\"verdict\":\"ok\"") == 20000,
                  f"-j {threads}: the plain capture did not verify 20000 packets")
            check(len(a) == len(b) == 2 and a[1] == b[1], f"-j {threads}: gzip output differs from the plain capture's")

        # 10,000 packets, and 100,000 (the 20,000 five times over: replays, but
        # every frame read and inflated).
        header, recs = records(data)
        small = write(os.path.join(tmp, "small.pcap.gz"), gzip.compress(header + b"".join(recs[:10000]), 1))
        big = os.path.join(tmp, "big.pcap.gz")
        with open(big, "wb") as f:
            z = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1)
            z.write(header)
            for _ in range(5):
                z.write(b"".join(recs))
            z.close()
        peaks = {name: min(peak_kb(ipsentry, p, cfg) for _ in range(3)) for name, p in (("10k", small), ("100k", big))}
        print(f"peak RSS: {peaks['10k']} kB for 10,000 packets gzipped, {peaks['100k']} kB for 100,000")
        check(peaks["100k"] <= peaks["10k"] + MARGIN_KB,
              f"peak memory grows with the gzip file: {peaks['10k']} kB for 10,000 packets, {peaks['100k']} kB for "
              f"100,000")
    for f in FAILS:
        print("FAIL:", f)
    print("gzip streaming:", "FAILED" if FAILS else "ok")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
