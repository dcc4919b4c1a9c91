#!/usr/bin/python3
"""The `ipsentry verify` command line as a user meets it: exit codes, error
messages for every kind of bad input, the text output of the bundled samples
(golden files), JSON that parses and agrees with the text, decrypted output
that tshark reads, keys kept out of every output, and `--threads N` giving the
same answers as one thread.

Run: test_cli.py --ipsentry build/cli/ipsentry [--update-golden]
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
from ike_capture import failed_negotiations  # noqa: E402
from ipsec_configs import wide_config  # noqa: E402
from rawpcap import checksum, ipv4, write_pcap  # noqa: E402
from table_check import columns_aligned, table_after  # noqa: E402

FAILS = []
CHECKS = [0]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
    return cond


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kw)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def icmp_echo(ident, seq, n):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + bytes((seq + i) & 0xff for i in range(n))
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def without_crypto_block(text):
    """The output less its "ESP crypto" block, which depends on the build
    (with or without libipsec-mb) and the CPU; test_crypto_block checks it."""
    out, skipping = [], False
    for line in text.splitlines(True):
        if line.startswith("ESP crypto ("):
            skipping = True
            if out and out[-1] == "\n":
                out.pop()
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def test_crypto_block(ipsentry):
    """--crypto: the choice and each SA's backend are shown; a bad name is refused."""
    cfg = "samples/esp-tunnel.yaml"
    r = run([ipsentry, "verify", "samples/esp-tunnel.pcap", "-c", cfg, "--no-progress", "-q", "--crypto", "openssl"])
    check(r.returncode == 0, f"--crypto openssl: exit {r.returncode}: {r.stderr}")
    check("ESP crypto (--crypto openssl): libipsec-mb" in r.stdout, f"no crypto block: {r.stdout}")
    check("gw1-to-gw2           openssl (--crypto openssl)" in r.stdout, f"SA backend not shown: {r.stdout}")
    r = run([ipsentry, "verify", "samples/esp-tunnel.pcap", "-c", cfg, "--no-progress", "-q", "--crypto", "fast"])
    check(r.returncode != 0 and "--crypto: unknown backend 'fast'" in r.stderr,
          f"--crypto fast: exit {r.returncode}: {r.stderr}")
    v = run([ipsentry, "--version"])
    check(v.returncode == 0 and "libipsec-mb" in v.stdout, f"--version says nothing of libipsec-mb: {v.stdout}")
    built = "not built" not in v.stdout
    r = run([ipsentry, "verify", "samples/esp-tunnel.pcap", "-c", cfg, "--no-progress", "-q", "--crypto", "ipsec-mb"])
    if built:
        check(r.returncode == 0, f"--crypto ipsec-mb: exit {r.returncode}: {r.stderr}")
        # aes-gcm-16: libipsec-mb does it wherever the CPU has AES-NI.
        check("gw1-to-gw2           ipsec-mb" in r.stdout or "(no AES-NI)" in r.stdout,
              f"--crypto ipsec-mb: SA not on libipsec-mb: {r.stdout}")
    else:
        check(r.returncode != 0 and "built without libipsec-mb" in r.stderr,
              f"--crypto ipsec-mb without the library: exit {r.returncode}: {r.stderr}")


def test_exit_codes_and_golden(ipsentry, tmp, update):
    for cap, cfg, code in (("seed-ah", "seed-ah", 0), ("esp-tunnel-faults", "esp-tunnel", 1),
                           ("esp-tunnel", "esp-tunnel", 0)):
        r = run([ipsentry, "verify", f"samples/{cap}.pcap", "-c", f"samples/{cfg}.yaml", "--no-progress"])
        check(r.returncode == code, f"verify {cap}: exit {r.returncode}, expected {code}: {r.stderr}")
        golden = os.path.join(HERE, "golden", f"{cap}.txt")
        got = without_crypto_block(r.stdout)
        if update:
            write(golden, got)
        elif os.path.exists(golden):
            with open(golden) as f:
                want = f.read()
            if not check(got == want, f"verify {cap}: text output differs from {golden}"):
                import difflib
                sys.stdout.writelines(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                           "golden", "ipsentry"))
    # The deprecated algorithm and the short key of the seed are warned about.
    r = run([ipsentry, "verify", "samples/seed-ah.pcap", "-c", "samples/seed-ah.yaml", "-q"])
    check("hmac-md5-96 is deprecated" in r.stderr, f"no deprecation warning for hmac-md5-96: {r.stderr}")
    check("key is 14 bytes" in r.stderr, f"no short-key warning: {r.stderr}")
    check("echo request" not in r.stdout and "16 ok" in r.stdout, f"--quiet printed packet lines: {r.stdout[:200]}")
    # Without keys every packet is listed as unknown-spi, with a warning saying why.
    r = run([ipsentry, "verify", "samples/esp-tunnel.pcap", "--no-progress"])
    check(r.returncode == 1 and "no SAs given" in r.stderr and "unknown-spi" in r.stdout,
          f"verify without keys: exit {r.returncode}: {r.stderr}")


def test_bad_inputs(ipsentry, tmp):
    sample = "samples/esp-tunnel.pcap"
    cases = []

    def case(name, args, needles):
        cases.append((name, args, needles))

    case("missing capture", ["verify", os.path.join(tmp, "nope.pcap"), "-c", "samples/esp-tunnel.yaml"],
         ["nope.pcap", "No such file"])
    case("missing config", ["verify", sample, "-c", os.path.join(tmp, "nope.yaml")], ["nope.yaml"])
    case("not a capture", ["verify", "samples/esp-tunnel.yaml", "-c", "samples/esp-tunnel.yaml"],
         ["not a pcap or pcapng file"])
    bad_yaml = write(os.path.join(tmp, "syntax.yaml"), "sas:\n  - name: x\n   spi: 5\n")
    case("YAML syntax", ["verify", sample, "-c", bad_yaml], ["syntax.yaml:3", "YAML syntax error"])
    short = write(os.path.join(tmp, "short.yaml"),
                  "sas:\n  - name: x\n    spi: 5\n    protocol: esp\n    encryption: aes-cbc\n"
                  "    enc_key: 0x0011\n    auth: hmac-sha1-96\n    auth_key: 0x" + "11" * 20 + "\n")
    case("key length", ["verify", sample, "-c", short], ["short.yaml:6", "enc_key", "16, 24 or 32 byte"])
    auth_short = write(os.path.join(tmp, "authshort.yaml"),
                       "sas:\n  - name: x\n    spi: 5\n    protocol: esp\n    encryption: null\n"
                       "    auth: hmac-sha256-128\n    auth_key: 0x1122\n")
    case("auth key length", ["verify", sample, "-c", auth_short], ["authshort.yaml:7", "auth_key", "32"])
    unknown = write(os.path.join(tmp, "unknown.yaml"),
                    "sas:\n  - name: x\n    spi: 5\n    protocol: esp\n    encryption: rot13\n")
    case("unknown algorithm", ["verify", sample, "-c", unknown],
         ["unknown.yaml:5", "encryption", "unknown encryption algorithm 'rot13'"])
    unknown_auth = write(os.path.join(tmp, "unknownauth.yaml"),
                         "sas:\n  - name: x\n    spi: 5\n    protocol: esp\n    encryption: null\n    auth: crc32\n")
    case("unknown integrity", ["verify", sample, "-c", unknown_auth], ["unknownauth.yaml:6", "auth", "crc32"])
    nospi = write(os.path.join(tmp, "nospi.yaml"), "sas:\n  - name: x\n    protocol: esp\n    encryption: null\n")
    case("missing spi", ["verify", sample, "-c", nospi], ["nospi.yaml:2", "spi"])
    badhex = write(os.path.join(tmp, "badhex.yaml"),
                   "sas:\n  - name: x\n    spi: 5\n    protocol: esp\n    encryption: aes-cbc\n"
                   "    enc_key: 0x00zz\n")
    case("bad hex", ["verify", sample, "-c", badhex], ["badhex.yaml:6", "enc_key"])
    keyfile = write(os.path.join(tmp, "keyfile.yaml"),
                    "sas:\n  - name: x\n    spi: 5\n    protocol: ah\n    auth: hmac-sha1-96\n"
                    f"    key_file: {os.path.join(tmp, 'absent.key')}\n")
    case("missing key file", ["verify", sample, "-c", keyfile], ["keyfile.yaml:6", "absent.key"])
    case("unknown key format", ["verify", sample, "--keys-from", "foo", "x"], ["unknown key format 'foo'"])
    bad_esp_sa = write(os.path.join(tmp, "esp_sa"), '"IPv4","*","*","0x10","ROT13","0x00","NULL",""\n')
    case("bad wireshark table", ["verify", sample, "--keys-from", "wireshark", bad_esp_sa], ["esp_sa:1", "ROT13"])
    # --keys-from is repeatable (IKE and ESP tables side by side): the second
    # one is read too, so its error is the one reported.
    good_esp_sa = write(os.path.join(tmp, "good_esp_sa"),
                        '"IPv4","*","*","0x00000010","AES-CBC [RFC3602]","0x00112233445566778899aabbccddeeff",'
                        '"HMAC-SHA-256-128 [RFC4868]","0x' + "11" * 32 + '"\n')
    second = write(os.path.join(tmp, "second_esp_sa"), '"IPv4","*","*","0x11","ROT13","0x00","NULL",""\n')
    case("second --keys-from", ["verify", sample, "--keys-from", "wireshark", good_esp_sa, "--keys-from", "wireshark",
                                second], ["second_esp_sa:1", "ROT13"])
    cut = os.path.join(tmp, "cut.pcap")
    with open(os.path.join(ROOT, sample), "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[:len(data) - 7])
    case("damaged capture", ["verify", cut, "-c", "samples/esp-tunnel.yaml"], ["cut.pcap", "damaged", "truncated"])
    frames = len(json.loads(run([ipsentry, "verify", sample, "-c", "samples/esp-tunnel.yaml", "--json"]).stdout)[
        "packets"])
    case("bad option", ["verify", sample, "--threads", "x"], ["--threads"])

    for name, args, needles in cases:
        r = run([ipsentry] + args + ["--no-progress"])
        check(r.returncode == 2, f"{name}: exit {r.returncode}, expected 2 (stderr: {r.stderr.strip()})")
        for n in needles:
            check(n in r.stderr, f"{name}: stderr does not mention {n!r}: {r.stderr.strip()}")
    # The damaged capture still reports the frames before the damage.
    r = run([ipsentry, "verify", cut, "-c", "samples/esp-tunnel.yaml", "--json"])
    try:
        d = json.loads(r.stdout)
        check(d["read_error"] and len(d["packets"]) == frames - 1, f"damaged capture JSON: {d['read_error']}, "
              f"{len(d['packets'])} packets of {frames}")
    except json.JSONDecodeError as e:
        check(False, f"damaged capture: JSON does not parse: {e}")


def test_json_and_decrypted(ipsentry, tmp):
    dec = os.path.join(tmp, "dec.pcap")
    r = run([ipsentry, "verify", "samples/esp-tunnel-faults.pcap", "-c", "samples/esp-tunnel.yaml", "--json",
             "-w", dec])
    check(r.returncode == 1, f"--json exit {r.returncode}")
    d = json.loads(r.stdout)
    verdicts = [p["verdict"] for p in d["packets"]]
    check(verdicts == ["ok"] * 6 + ["icv-fail", "replay", "unknown-spi", "malformed", "ok"], f"verdicts {verdicts}")
    check(d["statistics"]["verdicts"]["ok"] == 7, "statistics.verdicts.ok")
    ism = d["statistics"]["ip_security_monitor"]
    check(ism["bad_spi_packets"] == 1 and ism["packets_not_authenticated"] == 1
          and ism["packets_with_replay_detection"] == 1, f"ip_security_monitor {ism}")
    for p in d["packets"]:
        for k in ("frame", "time", "timestamp", "src", "dst", "protocol", "spi", "spi_hex", "seq", "verdict",
                  "reason", "description"):
            check(k in p, f"packet {p.get('frame')} lacks {k}")
    check(d["packets"][6]["icv"]["received"] != d["packets"][6]["icv"]["expected"], "icv-fail shows both ICVs")
    # The text statistics agree with the JSON ones.
    t = run([ipsentry, "verify", "samples/esp-tunnel-faults.pcap", "-c", "samples/esp-tunnel.yaml", "-q"]).stdout
    check(f"Bytes Received In Tunnels {ism['bytes_received_in_tunnels']:>20}" in t.replace("  ", " ")
          or str(ism["bytes_received_in_tunnels"]) in t, "text and JSON statistics differ")
    # tshark reads the decrypted packets: the 7 good ones, as the inner ICMP/TCP.
    r = run(["tshark", "-n", "-r", dec, "-T", "fields", "-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst"])
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    check(r.returncode == 0 and len(rows) == 7, f"tshark read {len(rows)} decrypted packets: {r.stderr}")
    for row in rows:
        check(row[0].startswith("raw:ip:") and (":icmp" in row[0] or ":tcp" in row[0]),
              f"decrypted packet protocols {row[0]}")
        check(row[1].startswith("192.0.2.") and row[2].startswith("192.0.2."), f"inner addresses {row[1:]}")
    # Keys never appear in any output.
    with open(os.path.join(ROOT, "samples/esp-tunnel.yaml")) as f:
        keys = [line.split("0x", 1)[1].strip() for line in f if "enc_key:" in line]
    r2 = run([ipsentry, "verify", "samples/esp-tunnel-faults.pcap", "-c", "samples/esp-tunnel.yaml"])
    for k in keys:
        for name, text in (("json", r.stdout), ("text", r2.stdout), ("stderr", r2.stderr)):
            check(k[:16] not in text.lower(), f"a key appears in the {name} output")


def test_threads(ipsentry, tmp):
    """Eight SAs, interleaved, with tampered, replayed, unknown-SPI and cut
    packets: every thread count gives the same per-packet answers and totals."""
    rnd = random.Random(7)
    sas, lines = [], ["sas:"]
    for i in range(8):
        spi = 0x7000 + i
        key = bytes(rnd.randrange(256) for _ in range(20))
        enc, auth, akey = ("aes-gcm-16-iiv", "none", b"") if i % 2 else ("aes-cbc", "hmac-sha1-96",
                                                                       bytes(rnd.randrange(256) for _ in range(20)))
        sa = RefSA(spi, enc, key if enc != "aes-cbc" else key[:16], auth, akey)
        sas.append(sa)
        dst = f"198.51.100.{i + 1}"
        lines += [f"  - name: sa{i}", f"    spi: {spi:#x}", "    protocol: esp", f"    dst: {dst}",
                  "    mode: tunnel", f"    encryption: {enc}",
                  f"    enc_key: 0x{(key if enc != 'aes-cbc' else key[:16]).hex()}", f"    auth: {auth}"]
        if akey:
            lines.append(f"    auth_key: 0x{akey.hex()}")
    cfg = write(os.path.join(tmp, "threads.yaml"), "\n".join(lines) + "\n")
    frames, sent = [], {i: [] for i in range(8)}
    for n in range(4000):
        i = rnd.randrange(8)
        inner = ipv4("192.0.2.1", "192.0.2.200", 1, icmp_echo(i, n & 0xffff, rnd.randrange(16, 600)), n & 0xffff)
        esp = sas[i].encrypt(inner, 4)
        pkt = bytearray(ipv4("203.0.113.1", f"198.51.100.{i + 1}", 50, esp, n & 0xffff))
        kind = rnd.random()
        if kind < 0.03:
            pkt[-1] ^= 1
        elif kind < 0.05 and sent[i]:
            pkt = bytearray(rnd.choice(sent[i]))
        elif kind < 0.06:
            pkt[20:24] = struct.pack("!I", 0xdead0000 + n)
        elif kind < 0.07:
            pkt = pkt[:30]
        sent[i].append(bytes(pkt))
        frames.append(bytes(pkt))
    cap = os.path.join(tmp, "threads.pcap")
    write_pcap(cap, frames)
    results = {}
    for j in (1, 2, 3):
        dec = os.path.join(tmp, f"threads-{j}.pcap")
        r = run([ipsentry, "verify", cap, "-c", cfg, "--json", "-j", str(j), "-w", dec])
        check(r.returncode == 1, f"-j {j}: exit {r.returncode}: {r.stderr}")
        d = json.loads(r.stdout)
        d["statistics"].pop("seconds", None)
        with open(dec, "rb") as f:
            results[j] = (d["packets"], d["statistics"], d["security_associations"], f.read())
    v = results[1][1]["verdicts"]
    check(v["ok"] > 3000 and v["icv-fail"] > 50 and v["replay"] > 30 and v["unknown-spi"] > 20
          and v["malformed"] > 20, f"threads capture verdicts {v}")
    for j in (2, 3):
        for k, name in enumerate(("packets", "statistics", "security associations", "decrypted output")):
            check(results[j][k] == results[1][k], f"-j {j}: {name} differ from one thread")


def test_ike_vocabulary(ipsentry, tmp):
    """One word for an IKE message in verify's text and JSON and in show: the
    ESP verdicts plus ike-fail for the message that ended its negotiation;
    a failed negotiation makes verify exit 1."""
    cap = os.path.join(tmp, "ike-failed.pcap")
    want = failed_negotiations(cap)
    r = run([ipsentry, "verify", cap, "--no-progress"])
    check(r.returncode == 1, f"verify of failed IKE negotiations: exit {r.returncode}, expected 1")
    text = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) > 8 and f[0].isdigit() and f[5].startswith("IKEv"):
            text[int(f[0])] = f[8]
    check(text == want, f"verify text: IKE verdicts {text}, expected {want}")
    d = json.loads(run([ipsentry, "verify", cap, "--json", "--no-progress"]).stdout)
    js = {m["frame"]: m.get("verdict") for m in d["ike"]["messages"]}
    check(js == want, f"verify --json: IKE verdicts {js}, expected {want}")
    check(d["ike"]["statistics"]["negotiation_failures"] == 2, "two failed negotiations counted")
    r = run([ipsentry, "show", cap])
    shown = {int(l.split()[0]): l.split()[-1] for l in r.stdout.splitlines() if l.strip()}
    check(shown == want, f"show: IKE verdicts {shown}, expected {want}")


def test_show_odd_frames(ipsentry, tmp):
    """show names what a frame lacks instead of inventing it: no SPI in a
    one-byte ESP packet or a non-first fragment, no addresses in an IPv4
    header that does not parse; and says a malformation once."""
    frames = [ipv4("203.0.113.1", "198.51.100.1", 50, b"\x01")]
    frag = bytearray(ipv4("203.0.113.1", "198.51.100.1", 50, b"\xc0\xff\xee\x01" + b"\x00" * 28, 0x77))
    frag[6:8] = struct.pack("!H", 4)  # offset 32: a non-first fragment whose first bytes look like an SPI
    frag[10:12] = b"\0\0"
    frag[10:12] = struct.pack("!H", checksum(bytes(frag[:20])))
    frames.append(bytes(frag))
    bad = bytearray(ipv4("203.0.113.1", "198.51.100.1", 17, b"\0" * 16))
    bad[0] = 0x44  # header length 16 bytes
    frames.append(bytes(bad))
    cap = os.path.join(tmp, "odd.pcap")
    write_pcap(cap, frames)
    lines = run([ipsentry, "show", cap]).stdout.splitlines()
    check(len(lines) == 3, f"show odd.pcap: {len(lines)} lines")
    if len(lines) != 3:
        return
    check("SPI 0x" not in lines[0] and "(no SPI)" in lines[0], f"one-byte ESP: {lines[0]}")
    check("SPI 0x" not in lines[1] and "fragment id=0x77 offset=32" in lines[1], f"non-first fragment: {lines[1]}")
    check(lines[2].count("IPv4 header length below 20 bytes") == 1 and "→" not in lines[2] and
          "HOPOPT" not in lines[2], f"bad IPv4 header: {lines[2]}")
    tree = run([ipsentry, "show", "-V", "-n", "1", cap]).stdout.split("\n", 1)[-1]  # below the one-line summary
    check(tree.count("ESP header truncated") == 1, f"show -V says the malformation once:\n{tree}")


def test_column_alignment(ipsentry, tmp):
    """Long IPv6 addresses, an SA without a mode (unspecified) and an ICMPv6
    type range widen their column in verify's SA table and in config
    check's SA and policy tables instead of pushing the rest out of line."""
    cfg = wide_config(os.path.join(tmp, "v6.yaml"))
    r = run([ipsentry, "verify", "samples/esp-tunnel.pcap", "-c", cfg, "-c", "samples/esp-tunnel.yaml",
             "--no-progress"])
    sas = table_after(r.stdout, "Security associations")
    err = columns_aligned(sas, ["name", "spi", "proto", "mode", "algorithms", ">ok", ">icv-fail", ">bytes"])
    check(err is None and any("unspecified" in l for l in sas), f"verify SA table: {err}")
    r = run([ipsentry, "config", "check", cfg])
    check(r.returncode == 0, f"config check v6.yaml: exit {r.returncode}: {r.stderr}")
    if r.returncode == 0:
        err = columns_aligned(table_after(r.stdout, "SAs (keys not shown):"),
                              ["name", "spi", "proto", "src", "dst", "direction", "mode", "algorithms", "lifetime"])
        check(err is None, f"config check SA table: {err}")
        pol = table_after(r.stdout, "Effective policy, first match wins:")
        err = columns_aligned([l for l in pol if "anything else" not in l],
                              ["name", "source", "destination", "proto", "src port", "dst port", "action"])
        check(err is None and any("icmpv6 type" in l for l in pol), f"config check policy table: {err}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    ap.add_argument("--update-golden", action="store_true")
    args = ap.parse_args()
    ipsentry = os.path.abspath(args.ipsentry)
    with tempfile.TemporaryDirectory(prefix="ipsentry-cli-") as tmp:
        test_exit_codes_and_golden(ipsentry, tmp, args.update_golden)
        test_crypto_block(ipsentry)
        test_bad_inputs(ipsentry, tmp)
        test_json_and_decrypted(ipsentry, tmp)
        test_threads(ipsentry, tmp)
        test_ike_vocabulary(ipsentry, tmp)
        test_show_odd_frames(ipsentry, tmp)
        test_column_alignment(ipsentry, tmp)
    print(f"{CHECKS[0]} checks, {len(FAILS)} failures")
    for f in FAILS:
        print("FAIL:", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
