#!/usr/bin/python3
"""The inputs a user hands `ipsentry verify` and `protect`, and what comes
back (issue 15, items 9-14):

- `--keys-from xfrm` with `ip xfrm state` output exactly as iproute2 prints
  it (`ip -s` decorations, `ip -o`, a pipe), ESN taken from the state's flag,
  replay-window 0 of outbound states, a file holding no state;
- link types ipsentry cannot dissect, refused with their name;
- `replay_window: 0` accepted with a warning;
- paths that are directories, devices or named pipes: an error at once,
  naming the file, line and setting, never a hang;
- a gzip capture cut short: the frames before the damage, then exit 2;
- an output path that is an input (by name, symbolic or hard link) refused;
  `protect` accounting for every frame it could not protect.

Run: test_inputs.py --ipsentry build/cli/ipsentry
"""
import argparse
import gzip
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
from rawpcap import LINKTYPE_ETHERNET, ipv4, write_pcap  # noqa: E402

FAILS = []
CHECKS = [0]
FAULTS = "samples/esp-tunnel-faults.pcap"
TUNNEL = "samples/esp-tunnel.pcap"
TUNNEL_CFG = "samples/esp-tunnel.yaml"
KEY1 = "6a1f0b3e9d2c4b5a6f7e8d9cabbacdcedff0e1d2c3b4a5968778695a4b3c2d1ea1b2c3d4"
KEY2 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0d4c3b2a1"


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
    return cond


def run(args, timeout=20, **kw):
    """A run that hangs is a failure of its own, not of the whole test."""
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", f"(no answer within {timeout} s)")


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def verdicts(r):
    try:
        return [p["verdict"] for p in json.loads(r.stdout)["packets"]]
    except (json.JSONDecodeError, KeyError):
        return None


# ------------------------------------------------------------------ item 9, 11 (xfrm)

def xfrm_state(src, dst, spi, key, *, stats, window, flags="af-unspec", esn_window=None, direction=None):
    """One state as iproute2 prints it (ip/ipxfrm.c: xfrm_state_info_print),
    with `stats` as `ip -s` adds: the SPI and reqid in both bases, the key's
    bit count, the flags' bit mask, the lifetime and statistics blocks."""
    t = "\t"
    spi_text = f"0x{spi:08x}({spi})" if stats else f"0x{spi:08x}"
    reqid = "1(0x00000001)" if stats else "1"
    lines = [f"src {src} dst {dst}",
             f"{t}proto esp spi {spi_text} reqid {reqid} mode tunnel",
             f"{t}replay-window {window} " + ("seq 0x00000000 " if stats else "") + f"flag {flags}"
             + (" (0x00100000)" if stats else ""),
             f"{t}aead rfc4106(gcm(aes)) 0x{key}" + (f" ({len(key) * 4} bits)" if stats else "") + " 128"]
    if esn_window is None:
        lines.append(f"{t}anti-replay context: seq 0x0, oseq 0x5, bitmap 0x00000000")
    else:
        lines += [f"{t}anti-replay esn context:",
                  f"{t} seq-hi 0x0, seq 0x5, oseq-hi 0x0, oseq 0x0",
                  f"{t} replay_window {esn_window}, bitmap-length {esn_window // 32}",
                  f"{t} " + "00000000 " * (esn_window // 32 - 1) + "0000001f "]
    if direction:
        lines.append(f"{t}dir {direction}")
    lines.append(f"{t}sel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0")
    if stats:
        lines += [f"{t}lifetime config:",
                  f"{t}  limit: soft (INF)(bytes), hard (INF)(bytes)",
                  f"{t}  limit: soft (INF)(packets), hard (INF)(packets)",
                  f"{t}  expire add: soft 0(sec), hard 0(sec)",
                  f"{t}  expire use: soft 0(sec), hard 0(sec)",
                  f"{t}lifetime current:",
                  f"{t}  540(bytes), 5(packets)",
                  f"{t}  add 2026-12-07 10:00:00 use 2026-12-07 10:00:01",
                  f"{t}stats:",
                  # The count of packets dropped outside the window, not its size.
                  f"{t}  replay-window 3 replay 1 failed 2"]
    return "\n".join(lines) + "\n"


def tunnel_states(stats, direction=False):
    """The sample tunnel's two SAs as the kernel of gateway 1 holds them: the
    outbound one with replay-window 0 (a sender keeps no window), the
    inbound one with its 128-packet window in an ESN anti-replay context
    although ESN is off (the kernel uses that context for any window over 32)."""
    return (xfrm_state("203.0.113.1", "198.51.100.1", 0xc0ffee01, KEY1, stats=stats, window=0,
                       direction="out" if direction else None)
            + xfrm_state("198.51.100.1", "203.0.113.1", 0xc0ffee02, KEY2, stats=stats, window=0, esn_window=128,
                         direction="in" if direction else None))


def test_xfrm(ipsentry, tmp):
    want = verdicts(run([ipsentry, "verify", FAULTS, "-c", TUNNEL_CFG, "--json"]))
    check(want and want.count("replay") == 1, f"reference verdicts from the YAML keys: {want}")
    for name, text in (("ip -s xfrm state", tunnel_states(True)),
                       ("ip xfrm state", tunnel_states(False)),
                       ("ip -s xfrm state with dir", tunnel_states(True, direction=True)),
                       # ip -o joins a state's lines with backslashes.
                       ("ip -o -s xfrm state", "".join(
                           s.replace("\n", "\\", s.count("\n") - 1) for s in
                           (xfrm_state("203.0.113.1", "198.51.100.1", 0xc0ffee01, KEY1, stats=True, window=0),
                            xfrm_state("198.51.100.1", "203.0.113.1", 0xc0ffee02, KEY2, stats=True, window=0,
                                       esn_window=128))))):
        path = write(os.path.join(tmp, name.replace(" ", "_") + ".txt"), text)
        r = run([ipsentry, "verify", FAULTS, "--keys-from", "xfrm", path, "--json"])
        got = verdicts(r)
        check(r.returncode == 1 and got == want,
              f"{name}: exit {r.returncode}, verdicts {got} (want {want}): {r.stderr.strip()[:300]}")
        if got is None:
            continue
        sas = {s["spi"]: s for s in json.loads(r.stdout)["security_associations"]}
        # ESN comes from the flag only; the window from the ESN context, not from the statistics.
        check(not any(s["esn"] for s in sas.values()), f"{name}: ESN turned on without the esn flag")
        check(sas.get(0xc0ffee02, {}).get("replay_window") == 128 and sas.get(0xc0ffee01, {}).get("replay_window")
              == 64, f"{name}: replay windows {[(hex(k), s['replay_window']) for k, s in sas.items()]}")
        # The outbound state's replay-window 0 is said, unless the state says it is outbound.
        said = "replay-window 0" in r.stderr
        check(said != ("with dir" in name), f"{name}: replay-window 0 warning {said}: {r.stderr.strip()[:300]}")
    # The esn flag does turn ESN on.
    esn = write(os.path.join(tmp, "esn.txt"), xfrm_state("198.51.100.1", "203.0.113.1", 0xc0ffee02, KEY2,
                                                         stats=True, window=0, flags="af-unspec esn",
                                                         esn_window=128))
    r = run([ipsentry, "verify", FAULTS, "--keys-from", "xfrm", esn, "--json"])
    sas = json.loads(r.stdout)["security_associations"] if r.stdout else []
    check(len(sas) == 1 and sas[0]["esn"] and sas[0]["replay_window"] == 128, f"flag esn: {sas} {r.stderr}")
    # From a pipe, as with `--keys-from xfrm <(ip -s xfrm state)`.
    r = run([ipsentry, "verify", FAULTS, "--keys-from", "xfrm", "/dev/stdin", "--json"], input=tunnel_states(True))
    check(verdicts(r) == want, f"xfrm state from a pipe: exit {r.returncode}: {r.stderr.strip()[:300]}")
    # A key whose bit count disagrees with its digits was edited or cut.
    bad = write(os.path.join(tmp, "bits.txt"), tunnel_states(True).replace("(288 bits)", "(256 bits)", 1))
    r = run([ipsentry, "verify", FAULTS, "--keys-from", "xfrm", bad])
    check(r.returncode == 2 and "bits.txt:4" in r.stderr and "288 bits" in r.stderr,
          f"key bit count mismatch: exit {r.returncode}: {r.stderr.strip()}")
    hidden = write(os.path.join(tmp, "nokeys.txt"),
                   tunnel_states(False).replace("0x" + KEY1, "<<Keys hidden>>"))
    r = run([ipsentry, "verify", FAULTS, "--keys-from", "xfrm", hidden])
    check(r.returncode == 2 and "nokeys.txt:4" in r.stderr and "hidden" in r.stderr,
          f"hidden keys: exit {r.returncode}: {r.stderr.strip()}")
    # A file that holds no state says so instead of verifying with no keys.
    for name, text in (("empty", ""), ("policies", "src 192.0.2.0/24 dst 198.51.100.0/24\n\tdir out priority 0\n"),
                       ("yaml", open(os.path.join(ROOT, TUNNEL_CFG)).read())):
        path = write(os.path.join(tmp, f"nostate-{name}.txt"), text)
        r = run([ipsentry, "verify", TUNNEL, "--keys-from", "xfrm", path])
        check(r.returncode == 2 and "holds no xfrm state" in r.stderr and path in r.stderr
              and ("ip xfrm policy" in r.stderr) == (name == "policies"),
              f"xfrm file without a state ({name}): exit {r.returncode}: {r.stderr.strip()}")


def test_replay_window_zero(ipsentry, tmp):
    with open(os.path.join(ROOT, TUNNEL_CFG)) as f:
        text = f.read().replace("replay_window: 128", "replay_window: 0")
    cfg = write(os.path.join(tmp, "zero.yaml"), text)
    r = run([ipsentry, "verify", FAULTS, "-c", cfg, "--json"])
    line = text.splitlines().index("    replay_window: 0") + 1
    check(f"zero.yaml:{line}: sas[0].replay_window: 0 turns anti-replay off" in r.stderr,
          f"replay_window 0 is not silent: {r.stderr.strip()[:400]}")
    # What the warning says: the replayed frame 8 passes.
    check((verdicts(r) or [None] * 8)[7] == "ok", f"replay_window 0: frame 8 {verdicts(r)}")


# ------------------------------------------------------------------ item 10

def pcapng(interfaces, packets):
    """Section header, one interface per link type, enhanced packet blocks
    (interface, bytes)."""
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    out = block(0x0a0d0d0a, struct.pack("<IHHq", 0x1a2b3c4d, 1, 0, -1))
    for lt in interfaces:
        out += block(1, struct.pack("<HHI", lt, 0, 0))
    for i, (iface, data) in enumerate(packets):
        out += block(6, struct.pack("<IIIII", iface, 0, 1000 + i, len(data), len(data)) + data)
    return out


def test_link_types(ipsentry, tmp):
    with open(os.path.join(ROOT, TUNNEL), "rb") as f:
        plain = f.read()
    for lt, name in ((105, "IEEE 802.11"), (127, "IEEE 802.11 with radiotap header"), (9, "PPP"), (147, "DLT_USER"), (12345, "unknown")):
        path = write(os.path.join(tmp, f"lt{lt}.pcap"), plain[:20] + struct.pack("<I", lt) + plain[24:], "wb")
        r = run([ipsentry, "verify", path, "-c", TUNNEL_CFG])
        check(r.returncode == 2 and f"link type {lt} ({name}" in r.stderr and "not supported" in r.stderr,
              f"pcap of link type {lt}: exit {r.returncode}: {r.stderr.strip()}")
    # pcapng: the Ethernet frames are verified, the 802.11 one is named and the exit is 2.
    frames = []
    off = 24
    while off < len(plain):
        n = struct.unpack("<I", plain[off + 8:off + 12])[0]
        frames.append(plain[off + 16:off + 16 + n])
        off += 16 + n
    path = write(os.path.join(tmp, "mixed.pcapng"),
                 pcapng([1, 105], [(0, frames[0]), (1, b"\x08\x00" + b"\0" * 30), (0, frames[1])]), "wb")
    r = run([ipsentry, "verify", path, "-c", TUNNEL_CFG, "--json"])
    check(r.returncode == 2 and verdicts(r) == ["ok", "ok"]
          and "1 frame was not looked into: link type 105 (IEEE 802.11)" in r.stderr,
          f"pcapng with an 802.11 interface: exit {r.returncode}, {verdicts(r)}: {r.stderr.strip()}")


# ------------------------------------------------------------------ item 12

def test_unreadable_paths(ipsentry, tmp):
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    directory = os.path.join(tmp, "dir")
    os.mkdir(directory)
    big = write(os.path.join(tmp, "big.key"), "k" * 5000)
    kinds = ((directory, "is a directory"), (fifo, "nothing was written to it"), ("/dev/zero", "character device"),
             (big, "5000 bytes"))
    for path, needle in kinds:
        cfg = write(os.path.join(tmp, "keyfile.yaml"),
                    "sas:\n  - name: x\n    spi: 5\n    protocol: ah\n    auth: hmac-sha1-96\n"
                    f"    key_file: {path}\n")
        r = run([ipsentry, "verify", TUNNEL, "-c", cfg], timeout=10)
        check(r.returncode == 2 and "keyfile.yaml:6: sas[0].key_file:" in r.stderr and path in r.stderr
              and needle in r.stderr, f"key_file {path}: exit {r.returncode}: {r.stderr.strip()}")
        r = run([ipsentry, "verify", TUNNEL, "--keys-from", "xfrm", path], timeout=10)
        check(r.returncode == 2 and path in r.stderr and (needle in r.stderr or path == big),
              f"--keys-from xfrm {path}: exit {r.returncode}: {r.stderr.strip()}")
    for path, needle in ((directory, "is a directory"), (fifo, "named pipe"), ("/dev/zero", "character device")):
        r = run([ipsentry, "verify", path, "-c", TUNNEL_CFG], timeout=10)
        check(r.returncode == 2 and path in r.stderr and needle in r.stderr,
              f"capture {path}: exit {r.returncode}: {r.stderr.strip()}")
    # capture -F (a BPF filter file) is a file the user names too (a directory
    # is refused by the option parser already).
    for path, needle in ((fifo, "nothing was written to it"), ("/dev/zero", "character device")):
        r = run([ipsentry, "capture", "-i", "lo", "--count", "1", "-F", path, "-o", os.path.join(tmp, "x.pcapng")],
                timeout=10)
        check(r.returncode == 2 and f"cannot read the filter file '{path}'" in r.stderr and needle in r.stderr,
              f"capture -F {path}: exit {r.returncode}: {r.stderr.strip()}")
    # A key file from a pipe that does write works (bash's <(...)).
    rd, wr = os.pipe()
    os.write(wr, b"\x11" * 20)
    os.close(wr)
    cfg = write(os.path.join(tmp, "pipekey.yaml"),
                "sas:\n  - name: x\n    spi: 5\n    protocol: ah\n    auth: hmac-sha1-96\n"
                f"    key_file: /dev/fd/{rd}\n")
    r = run([ipsentry, "verify", TUNNEL, "-c", cfg, "-q"], timeout=10, pass_fds=(rd,))
    os.close(rd)
    check(r.returncode == 1 and "error" not in r.stderr, f"key_file from a pipe: exit {r.returncode}: {r.stderr}")


# ------------------------------------------------------------------ item 13

def test_gzip_cut(ipsentry, tmp):
    with open(os.path.join(ROOT, FAULTS), "rb") as f:
        plain = f.read()
    full = verdicts(run([ipsentry, "verify", FAULTS, "-c", TUNNEL_CFG, "--json"]))
    packed = gzip.compress(plain)
    # Cut inside the compressed data, and (a file whose gzip trailer is
    # missing) exactly after the sixth record.
    sixth, off = 0, 24
    for _ in range(6):
        off += 16 + struct.unpack("<I", plain[off + 8:off + 12])[0]
    sixth = off
    for name, data in (("cut", packed[:len(packed) * 2 // 3]), ("no-trailer", gzip.compress(plain[:sixth])[:-8])):
        path = write(os.path.join(tmp, f"{name}.pcap.gz"), data, "wb")
        r = run([ipsentry, "verify", path, "-c", TUNNEL_CFG, "--json"])
        got = verdicts(r) or []
        check(r.returncode == 2 and got and got == full[:len(got)] and "gzip" in r.stderr,
              f"gzip {name}: exit {r.returncode}, {len(got)} frames reported: {r.stderr.strip()}")
        if name == "no-trailer":
            check(len(got) == 6, f"gzip without its trailer: {len(got)} of the 6 frames inside")
        d = json.loads(r.stdout) if r.stdout else {}
        check("gzip" in (d.get("read_error") or ""), f"gzip {name}: JSON read_error {d.get('read_error')}")


# ------------------------------------------------------------------ item 14

def test_output_is_input(ipsentry, tmp):
    cap = os.path.join(tmp, "in.pcap")
    with open(os.path.join(ROOT, FAULTS), "rb") as f:
        write(cap, f.read(), "wb")
    cfg = os.path.join(tmp, "keys.yaml")
    with open(os.path.join(ROOT, TUNNEL_CFG)) as f:
        write(cfg, f.read())
    link = os.path.join(tmp, "link.pcap")
    os.symlink(cap, link)
    hard = os.path.join(tmp, "hard.pcap")
    os.link(cap, hard)
    before = digest(cap), digest(cfg)
    for out, what in ((cap, "input capture"), (link, "input capture"), (hard, "input capture"),
                      (cfg, "configuration")):
        r = run([ipsentry, "verify", cap, "-c", cfg, "-w", out])
        check(r.returncode == 2 and f"-w '{out}' is the {what}" in r.stderr,
              f"verify -w {os.path.basename(out)}: exit {r.returncode}: {r.stderr.strip()}")
        check((digest(cap), digest(cfg)) == before and os.path.islink(link),
              f"verify -w {os.path.basename(out)} changed an input")
        r = run([ipsentry, "protect", cap, "-c", cfg, "--sa", "gw1-to-gw2", "-o", out])
        check(r.returncode == 2 and f"-o '{out}' is the {what}" in r.stderr,
              f"protect -o {os.path.basename(out)}: exit {r.returncode}: {r.stderr.strip()}")
        check((digest(cap), digest(cfg)) == before, f"protect -o {os.path.basename(out)} changed an input")
    r = run([ipsentry, "verify", cap, "-c", cfg, "-w", os.path.join(tmp, "clear.pcap"), "-q"])
    check(r.returncode == 1 and os.path.getsize(os.path.join(tmp, "clear.pcap")) > 24, "verify -w elsewhere writes")


def test_protect_counts(ipsentry, tmp):
    cfg = write(os.path.join(tmp, "transport.yaml"),
                "sas:\n  - name: out\n    spi: 0x1000\n    direction: outbound\n    src: 192.0.2.1\n"
                "    dst: 192.0.2.2\n    protocol: esp\n    mode: transport\n    encryption: aes-gcm-16\n"
                "    enc_key: 0x" + "11" * 20 + "\n")

    def eth(ethertype, payload):
        return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload
    udp = struct.pack("!HHHH", 5000, 5001, 12, 0) + b"abcd"
    frag = bytearray(ipv4("192.0.2.1", "192.0.2.2", 17, udp))
    frag[6] = 0x20  # more fragments: transport mode cannot protect a fragment
    frames = [eth(0x0800, ipv4("192.0.2.1", "192.0.2.2", 17, udp)),
              eth(0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20),  # ARP
              eth(0x0800, bytes(frag)),
              eth(0x0800, ipv4("192.0.2.1", "192.0.2.2", 17, udp)[:12]),  # IPv4 header cut short
              eth(0x0800, ipv4("192.0.2.1", "192.0.2.2", 17, udp))]
    cap = os.path.join(tmp, "clear.pcap")
    write_pcap(cap, frames, LINKTYPE_ETHERNET)
    out = os.path.join(tmp, "protected.pcap")
    r = run([ipsentry, "protect", cap, "-c", cfg, "--sa", "out", "-o", out])
    check(r.returncode == 1 and "2 packets protected with SA out, 0 copied unchanged, 3 frames left out "
          "(1 not IP, 1 malformed, 1 could not be protected)" in r.stderr
          and "frame 3: not protected: " in r.stderr and "frame 4: not protected" in r.stderr,
          f"protect accounts for every frame: exit {r.returncode}: {r.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    args = ap.parse_args()
    ipsentry = os.path.abspath(args.ipsentry)
    with tempfile.TemporaryDirectory(prefix="ipsentry-inputs-") as tmp:
        for test in (test_xfrm, test_replay_window_zero, test_link_types, test_unreadable_paths, test_gzip_cut,
                     test_output_is_input, test_protect_counts):
            sub = os.path.join(tmp, test.__name__)
            os.mkdir(sub)
            test(ipsentry, sub)
    print(f"{CHECKS[0]} checks, {len(FAILS)} failures")
    for f in FAILS:
        print("FAIL:", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
