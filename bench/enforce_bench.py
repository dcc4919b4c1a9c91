#!/usr/bin/python3
"""Enforcement throughput: iperf3 TCP and UDP between two namespaces.

Same topology for every contender: namespaces A and B on one veth
(192.0.2.1, 192.0.2.2); for tunnel mode the traffic runs between addresses
on loopback (203.0.113.1 and 203.0.113.2) so that it can be tunnelled.

  ceiling      nfq_accept: the same NFQUEUE code, every packet accepted
               unchanged, queued on the same hooks in both namespaces
  ipsentry     `ipsentry enforce` in both namespaces: ESP AES-128-GCM
               transport, ESP AES-128-CBC + HMAC-SHA256-128 tunnel (and
               AES-128-GCM tunnel, to compare with strongSwan), 1 and 2 queues;
               with each crypto backend (`--crypto openssl|ipsec-mb`) when
               `ipsentry enforce --help` lists the option
  strongSwan   charon with kernel-libipsec (user-space ESP over a TUN
               device; tunnel mode only), IKEv2 PSK, the same algorithms

Reported: Mbit/s (iperf3 receiver), packets/s (B's veth receive counter),
CPU of the IPsec processes in both namespaces (% of one core, from
/proc/PID/stat: user + system time of every thread; the kernel's own
NFQUEUE and TUN work in softirq is not in it), the percentage of the
NFQUEUE ceiling with as many queues, and CPU seconds per Gbit carried (CPU
cores busy per Gbit/s). The whole sequence runs --rounds times, in turn,
and each leg keeps its best round (this machine's speed drifts between
runs). Needs root.
Usage: enforce_bench.py IPSENTRY NFQ_ACCEPT [--seconds S] [--rounds N] [--json FILE]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "support"))
from netns import remove_namespace, sh  # noqa: E402

TAG = f"ipsb{os.getpid() % 10000}"
NA, NB = f"{TAG}a", f"{TAG}b"
A, B = "192.0.2.1", "192.0.2.2"
IA, IB = "203.0.113.1", "203.0.113.2"
CHARON = "/usr/lib/ipsec/charon"
KEYS = {
    "gcm_ab": "00112233445566778899aabbccddeeff01020304",
    "gcm_ba": "ffeeddccbbaa99887766554433221100a1a2a3a4",
    "cbc_ab": "2b7e151628aed2a6abf7158809cf4f3c",
    "cbc_ba": "3c4f4fcf098815f7a6d2ae2816157e2b",
    "sha_ab": "11" * 32,
    "sha_ba": "22" * 32,
}


def nsx(ns, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, **kw)


def setup():
    for ns in (NA, NB):
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "bva", "netns", NA, "type", "veth", "peer", "name", "bvb", "netns", NB)
    for ns, dev, addr, inner in ((NA, "bva", A, IA), (NB, "bvb", B, IB)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"{inner}/32", "dev", "lo")
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", NA, "route", "add", f"{IB}/32", "via", B)
    sh("ip", "-n", NB, "route", "add", f"{IA}/32", "via", A)


def cleanup():
    for ns in (NA, NB):
        remove_namespace(ns)


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except (FileNotFoundError, IndexError):
            pass
    return total


def rx_packets():
    # sysfs shows the namespace of whoever mounted it: read it from inside B.
    return int(nsx(NB, "cat", "/sys/class/net/bvb/statistics/rx_packets").stdout)


def iperf(udp, seconds, inner):
    dst, src = (IB, IA) if inner else (B, A)
    srv = subprocess.Popen(["ip", "netns", "exec", NB, "iperf3", "-s", "-1", "-B", dst],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    args = ["iperf3", "-c", dst, "-B", src, "-t", str(seconds), "--json"]
    if udp:
        args += ["-u", "-b", "0", "-l", "1300"]
    try:
        r = nsx(NA, *args, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()
        return None
    try:
        srv.wait(timeout=10)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        return None
    if "error" in j:
        return None
    end = j["end"]
    if udp:
        s = end["sum"]
        return s["bits_per_second"] * (1 - s.get("lost_percent", 0) / 100.0), s.get("lost_percent", 0)
    return end["sum_received"]["bits_per_second"], 0.0


def measure(name, pids, seconds, inner, results, queues=1, alive=None):
    """alive: returns an error text when the contender has died."""
    for udp in (False, True):
        p0, c0, t0 = rx_packets(), cpu_seconds(pids), time.time()
        got = iperf(udp, seconds, inner)
        p1, c1, t1 = rx_packets(), cpu_seconds(pids), time.time()
        kind = "UDP" if udp else "TCP"
        dead = alive() if alive else None
        if got is None or dead:
            print(f"{name:<68} {kind}  failed{': ' + dead if dead else ''}", flush=True)
            results.append({"name": name, "proto": kind, "queues": queues, "failed": True})
            continue
        bps, loss = got
        row = {"name": name, "proto": kind, "queues": queues, "mbit_s": bps / 1e6, "pps": (p1 - p0) / (t1 - t0),
               "cpu_pct": 100.0 * (c1 - c0) / (t1 - t0), "udp_loss_pct": loss}
        # CPU seconds per Gbit carried = CPU cores busy at 1 Gbit/s.
        row["cpu_s_per_gbit"] = (c1 - c0) / (bps * (t1 - t0) / 1e9) if bps > 0 else None
        results.append(row)
        print(f"{name:<68} {kind}  {row['mbit_s']:8.0f} Mbit/s  {row['pps']:9.0f} pkt/s  CPU {row['cpu_pct']:5.0f} %"
              + (f"  (UDP loss {loss:.1f} %)" if udp else ""), flush=True)


def queue_rules(queues):
    target = ["--queue-num", "0"] if queues == 1 else ["--queue-balance", f"0:{queues - 1}"]
    for ns, dev in ((NA, "bva"), (NB, "bvb")):
        sh("ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-A", "OUTPUT", "-o", dev, "-j", "NFQUEUE", *target)
        sh("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-A", "PREROUTING", "-i", dev, "-j", "NFQUEUE",
           *target)


def flush_rules():
    for ns in (NA, NB):
        nsx(ns, "iptables", "-t", "mangle", "-F", "OUTPUT")
        nsx(ns, "iptables", "-t", "raw", "-F", "PREROUTING")


def run_ceiling(nfq, queues, seconds, results):
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, nfq, "0", str(queues)], stdout=subprocess.PIPE, text=True)
             for ns in (NA, NB)]
    for p in procs:
        p.stdout.readline()
    queue_rules(queues)
    measure(f"NFQUEUE accept-all (ceiling), {queues} queue(s)", [p.pid for p in procs], seconds, False, results,
            queues)
    flush_rules()
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def ipsentry_config(path, me, peer, mode, alg, out_keys, in_keys, inner_me, inner_peer):
    def sa(name, direction, spi, src, dst, keys):
        s = f"""  - name: {name}
    spi: {spi}
    direction: {direction}
    src: {src}
    dst: {dst}
    protocol: esp
    mode: {mode}
"""
        if alg == "gcm":
            s += f"    encryption: aes-gcm-16\n    enc_key: 0x{keys[0]}\n"
        else:
            s += f"    encryption: aes-cbc\n    enc_key: 0x{keys[0]}\n    auth: hmac-sha256-128\n    auth_key: 0x{keys[1]}\n"
        return s + "    replay_window: 1024\n"
    tunnel = mode == "tunnel"
    frm, to = (inner_me, inner_peer) if tunnel else ("me", peer)
    ipsec = f"{{ protocol: esp, mode: tunnel, peer: {peer} }}" if tunnel else "{ protocol: esp, mode: transport }"
    open(path, "w").write(f"""policies:
  - name: bench
    from: {frm}
    to: {to}
    mirrored: true
    action: protect
    ipsec: {ipsec}
    sas: [out, in]
sas:
{sa("out", "outbound", "0x5001" if me == A else "0x5002", me, peer, out_keys)}{sa("in", "inbound", "0x5002" if me == A else "0x5001", peer, me, in_keys)}""")


def run_ipsentry(ipsentry, tmp, mode, alg, queues, seconds, results, backend=None):
    ka = (KEYS[f"{alg}_ab"], KEYS["sha_ab"]) if alg == "cbc" else (KEYS["gcm_ab"], None)
    kb = (KEYS[f"{alg}_ba"], KEYS["sha_ba"]) if alg == "cbc" else (KEYS["gcm_ba"], None)
    procs = []
    for ns, me, peer, out_k, in_k, im, ip in ((NA, A, B, ka, kb, IA, IB), (NB, B, A, kb, ka, IB, IA)):
        cfg = os.path.join(tmp, f"{ns}-{mode}-{alg}.yaml")
        ipsentry_config(cfg, me, peer, mode, alg, out_k, in_k, im, ip)
        # A fresh state directory per leg: sequence numbers start again with the same keys.
        state = tempfile.mkdtemp(prefix=f"state-{ns}-", dir=tmp)
        crypto = ["--crypto", backend] if backend else []
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, ipsentry, "enforce", "-c", cfg, "--queues",
                                       str(queues), "--socket", os.path.join(tmp, f"{ns}.sock"), "--state-dir", state,
                                       *crypto],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{ns}.log"), "a")))
    time.sleep(1.0)
    names = {"gcm": "AES-128-GCM", "cbc": "AES-128-CBC + HMAC-SHA256-128"}
    log = os.path.join(tmp, f"{NB}.log")

    def alive():
        # Fail-closed: a dead enforcement drops the traffic, but say why rather than report a rate of nothing.
        for p in procs:
            if p.poll() is not None:
                return f"ipsentry enforce exited ({p.returncode}): " + open(log).read()[-300:].strip()
        return None

    label = f"ipsentry {names[alg]} {mode}, {queues} queue(s)" + (f", {backend}" if backend else "")
    measure(label, [p.pid for p in procs], seconds, mode == "tunnel", results, queues, alive)
    # Traffic that was not ESP would make the rate meaningless: B must have verified packets on its inbound SA.
    stats = nsx(NB, ipsentry, "stats", "--socket", os.path.join(tmp, f"{NB}.sock"), "--json")
    if stats.returncode == 0:
        ok = sum_key(json.loads(stats.stdout), "ok")
        if not ok:
            print(f"{label}: the enforcement in B verified no packet: the rates above are not ESP", flush=True)
            for r in results[-2:]:
                r["failed"] = True
        shown = crypto_fields(json.loads(stats.stdout))
        if shown:
            print(f"  statistics: {shown}", flush=True)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def sum_key(v, key):
    """The sum of the numbers under every `key` in a JSON document."""
    if isinstance(v, dict):
        return sum((x if k == key and isinstance(x, (int, float)) else sum_key(x, key)) for k, x in v.items())
    if isinstance(v, list):
        return sum(sum_key(x, key) for x in v)
    return 0


def crypto_fields(v, path=""):
    """What the statistics say about the crypto backend (key names containing crypto or backend)."""
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            out += crypto_fields(x, f"{path}/{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += crypto_fields(x, f"{path}[{i}]")
    elif "crypto" in path.lower() or "backend" in path.lower():
        out.append(f"{path}={v}")
    return "; ".join(sorted(set(out))[:6])


def run_strongswan(tmp, alg, seconds, results):
    esp = "aes128gcm16" if alg == "gcm" else "aes128-sha256"
    # charon takes an algorithm from the first plugin loaded that has it: openssl first (AES-NI, as ipsentry's
    # OpenSSL backend), not the portable C of the aes, gcm and sha plugins, which would put strongSwan at a
    # disadvantage that is not its design's.
    dirs, procs = [], []
    for side, (ns, me, peer, im, ip) in enumerate(((NA, A, B, IA, IB), (NB, B, A, IB, IA))):
        d = os.path.join(tmp, f"ss-{alg}-{side}")
        # A fresh directory: a vici socket left by an earlier round would pass for the new charon's being ready.
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        open(os.path.join(d, "strongswan.conf"), "w").write(f"""charon {{
  load = openssl kdf gcm random nonce aes sha1 sha2 hmac gmp kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  filelog {{ log {{ path = {d}/charon.log
    default = 1 }} }}
  plugins {{ vici {{ socket = unix://{d}/charon.vici }} }}
}}
""")
        open(os.path.join(d, "swanctl.conf"), "w").write(f"""connections {{
  bench {{
    version = 2
    local_addrs = {me}
    remote_addrs = {peer}
    proposals = aes128-sha256-modp2048
    local {{ auth = psk
      id = {me} }}
    remote {{ auth = psk
      id = {peer} }}
    children {{ bench {{ local_ts = {im}/32
      remote_ts = {ip}/32
      mode = tunnel
      esp_proposals = {esp} }} }}
  }}
}}
secrets {{ ike {{ id-1 = {A}
    id-2 = {B}
    secret = "0sdG9wc2VjcmV0" }} }}
""")
        dirs.append(d)
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c",
                                       f"mount -t tmpfs none /run && STRONGSWAN_CONF={d}/strongswan.conf exec {CHARON}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # The inner routes point at the tunnel: drop ours so charon's TUN routes win.
    sh("ip", "-n", NA, "route", "del", f"{IB}/32", check=False)
    sh("ip", "-n", NB, "route", "del", f"{IA}/32", check=False)
    try:
        for side, ns in enumerate((NA, NB)):
            for _ in range(100):
                if os.path.exists(os.path.join(dirs[side], "charon.vici")):
                    break
                time.sleep(0.1)
            nsx(ns, "swanctl", "--load-all", "--file", os.path.join(dirs[side], "swanctl.conf"), "--uri",
                f"unix://{dirs[side]}/charon.vici")
        r = nsx(NA, "swanctl", "--initiate", "--child", "bench", "--uri", f"unix://{dirs[0]}/charon.vici", timeout=30)
        if r.returncode != 0:
            print(f"strongSwan could not establish the tunnel: {(r.stdout + r.stderr)[-500:]}", flush=True)
            return
        time.sleep(0.5)
        # charon's worker threads do the ESP work; count the whole process.
        names = {"gcm": "AES-128-GCM", "cbc": "AES-128-CBC + HMAC-SHA256-128"}
        pids = []
        for ns in (NA, NB):
            pids += [int(x) for x in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
        measure(f"strongSwan kernel-libipsec {names[alg]} tunnel", pids, seconds, True, results, 1)
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        for ns in (NA, NB):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.5)
        for ns, dst, via in ((NA, IB, B), (NB, IA, A)):
            nsx(ns, "ip", "link", "del", "ipsec0")
            sh("ip", "-n", ns, "route", "replace", f"{dst}/32", "via", via, check=False)


def summary(results, rounds):
    """One row per leg and protocol: its best round, the share of the ceiling with as many queues, CPU per Gbit."""
    best = {}
    order = []
    for r in results:
        key = (r["name"], r["proto"])
        if key not in best:
            order.append(key)
            best[key] = r
        elif not r.get("failed") and (best[key].get("failed") or r["mbit_s"] > best[key]["mbit_s"]):
            best[key] = r
    ceiling = {(r["queues"], r["proto"]): r for k, r in best.items()
               if k[0].startswith("NFQUEUE") and not r.get("failed")}
    print(f"\n## enforcement, best of {rounds} round(s) ({'; '.join(sorted({k[1] for k in order}))})\n")
    print(f"| {'contender':<68} | proto | {'Mbit/s':>7} | {'pkt/s':>8} | {'CPU %':>6} | {'% of ceiling':>12} |"
          f" {'CPU s/Gbit':>10} |")
    print(f"|{'-' * 70}|-------|{'-' * 9}|{'-' * 10}|{'-' * 8}|{'-' * 14}|{'-' * 12}|")
    rows = []
    for key in order:
        r = best[key]
        if r.get("failed"):
            print(f"| {key[0]:<68} | {key[1]:<5} | {'failed':>7} | {'':>8} | {'':>6} | {'':>12} | {'':>10} |")
            continue
        c = ceiling.get((r["queues"], r["proto"]))
        share = 100.0 * r["mbit_s"] / c["mbit_s"] if c and c["mbit_s"] > 0 else None
        r = dict(r, ceiling_pct=share)
        rows.append(r)
        cpg = f"{r['cpu_s_per_gbit']:.2f}" if r.get("cpu_s_per_gbit") is not None else "n/a"
        print(f"| {key[0]:<68} | {key[1]:<5} | {r['mbit_s']:7.0f} | {r['pps']:8.0f} | {r['cpu_pct']:6.0f} |"
              f" {(f'{share:.0f} %' if share is not None else 'n/a'):>12} | {cpg:>10} |")
    print("\n% of ceiling: Mbit/s against the NFQUEUE accept-all program with as many queues (strongSwan: one);"
          "\nCPU s/Gbit: CPU seconds of the contender's processes (both namespaces) per Gbit carried.")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ipsentry")
    ap.add_argument("nfq_accept")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="run every leg this many times, in turn; keep the best")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("enforce_bench: needs root")
        return 2
    start = time.time()
    ipsentry = os.path.abspath(a.ipsentry)
    helptext = subprocess.run([ipsentry, "enforce", "--help"], capture_output=True, text=True).stdout
    backends = ["openssl", "ipsec-mb"] if "--crypto" in helptext else [None]
    version = subprocess.run([ipsentry, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# enforcement benchmark: {version.replace(chr(10), '; ')}; "
          + ("crypto backends openssl and ipsec-mb (--crypto)" if backends[0] else
             "no --crypto option in this ipsentry: its OpenSSL code only")
          + f"; {a.seconds} s per iperf3 run, {a.rounds} round(s)\n", flush=True)
    results = []
    tmp = tempfile.mkdtemp(prefix="ipsentry-ebench-")
    try:
        cleanup()
        setup()
        for _ in range(a.rounds):
            for q in (1, 2):
                run_ceiling(os.path.abspath(a.nfq_accept), q, a.seconds, results)
            for mode, alg in (("transport", "gcm"), ("tunnel", "cbc"), ("tunnel", "gcm")):
                for q in (1, 2):
                    for backend in backends:
                        run_ipsentry(ipsentry, tmp, mode, alg, q, a.seconds, results, backend)
            for alg in ("gcm", "cbc"):
                run_strongswan(tmp, alg, a.seconds, results)
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = summary(results, a.rounds)
    print(f"\nmake bench-enforce took {time.time() - start:.0f} s")
    if a.json:
        json.dump({"runs": results, "best": rows}, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
