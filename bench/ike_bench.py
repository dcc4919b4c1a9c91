#!/usr/bin/python3
"""IKEv2 responder benchmark (issue 16): IKE_SA_INIT + IKE_AUTH exchanges
completed per second with ipsentry as the responder, side by side with
charon (strongSwan 5.9.8) on the same machine and with the same initiator;
and the time from the first packet to the SA being up.

The initiator is scripted (tests/support/ikev2_ref.py: PSK, AES-GCM-16-128,
PRF-HMAC-SHA2-256, curve25519, one CHILD_SA per IKE SA), not charon, so
that what is measured is the responder: it keeps CONCURRENCY negotiations
in flight, one per source address (below both responders' per-address and
total half-open thresholds, so no cookie round trips), and counts an
exchange pair complete when the IKE_AUTH response carries AUTH and the
CHILD_SA. Every response is decrypted and checked, so a responder that
answers with errors counts nothing. Both responders run in their own
namespace with the same proposal, PSK and traffic selectors; charon logs at
level 1 (no key dumps), ipsentry as it always does.

  rate       N negotiations with CONCURRENCY in flight: completed per second
  latency    negotiations one at a time: median and 90th percentile from
             sending IKE_SA_INIT to the IKE_AUTH response
  acquire    time from the first packet to the SA being up with ipsentry
             initiating (the first ping's round trip, the negotiation
             included) against charon responding, beside the round trip once
             the SA is up; charon 5.9.8's libipsec raises no acquire, so its
             own figure is `swanctl --initiate`'s wall time

Not a timed test: it prints numbers (and --json writes them).

Usage: ike_bench.py IPSENTRY [-n N] [-c CONCURRENCY] [--json FILE] (root)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ike"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
from ike_lab import Conn, Ipsentry, Lab, make_peer, skip_unless_root  # noqa: E402

RESPONDER = "192.0.2.2"
SOURCES = [f"192.0.2.{i}" for i in range(10, 74)]
PROTECTED = "203.0.113.0/24"
# ipsentry without --save-keys, as in production (--save-keys: rewrite and
# fsync both key files at every SA); --save-keys measures with it.
SAVE_KEYS = False


def topology(lab):
    i, r = lab.ns("i"), lab.ns("r")
    lab.link(i, "i0", [f"{a}/24" for a in SOURCES] + ["192.0.2.1/24"], r, "r0", f"{RESPONDER}/24")
    # The protected network's address on the responder: charon's libipsec
    # routes each CHILD_SA's selectors from an address of its own in them.
    lab.x(r, "ip", "addr", "add", "203.0.113.1/32", "dev", "lo")
    return i, r


def responder_conn():
    """A road-warrior responder: any peer of 192.0.2.0/24 (ipsentry: inbound respond)."""
    return Conn("bench", RESPONDER, None, PROTECTED, "192.0.2.0/24", remote_id=None, mode="tunnel")


INITIATOR = r'''
import asyncio, json, os, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import ikev2_ref as ref
RESP, N, CONC, PSK = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].encode()
SOURCES = sys.argv[6].split(",")
TIMEOUT = 10.0

class Ep(asyncio.DatagramProtocol):
    def __init__(self):
        self.q = asyncio.Queue()
    def datagram_received(self, data, addr):
        self.q.put_nowait(data)

async def one(loop, eps, src):
    e500, e4500 = eps[src]
    ini = ref.Initiator(PSK, src, RESP, (src, src), ("203.0.113.0", "203.0.113.255"))
    t0 = time.perf_counter()
    msg = ini.init(natd=(500, 500))
    for _ in range(3):  # a cookie costs one more round trip
        e500[0].sendto(msg, (RESP, 500))
        data = await asyncio.wait_for(e500[1].q.get(), TIMEOUT)
        nxt = ini.on_init_response(data)
        if nxt is None:
            continue
        if ini.keys is None:  # answered with a COOKIE: again
            msg = nxt
            continue
        # IKE_AUTH on 4500 (RFC 7296 2.23 allows it from the start; charon's
        # libipsec fakes a NAT anyway, so both responders take it there).
        e4500[0].sendto(b"\0\0\0\0" + nxt, (RESP, 4500))
        while True:
            data = await asyncio.wait_for(e4500[1].q.get(), TIMEOUT)
            if data[:4] != b"\0\0\0\0":
                continue
            if ini.on_auth_response(data[4:]):
                return time.perf_counter() - t0
    raise RuntimeError("no IKE SA")

async def main():
    loop = asyncio.get_running_loop()
    eps = {}
    for s in SOURCES:
        pair = []
        for port in (500, 4500):
            tr, pr = await loop.create_datagram_endpoint(Ep, local_addr=(s, port))
            pair.append((tr, pr))
        eps[s] = pair
    free = asyncio.Queue()
    for s in SOURCES[:CONC]:
        free.put_nowait(s)
    times, errors = [], []
    async def worker(k):
        s = await free.get()
        try:
            times.append(await one(loop, eps, s))
        except Exception as e:
            errors.append(repr(e))
        finally:
            free.put_nowait(s)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(N)))
    wall = time.perf_counter() - t0
    print(json.dumps({"completed": len(times), "errors": len(errors), "first_errors": errors[:3], "wall": wall,
                      "times": times, "cpu": time.process_time()}))

asyncio.run(main())
'''


def run_initiator(lab, ns, n, conc):
    script = os.path.join(lab.dir, "initiator.py")
    open(script, "w").write(INITIATOR)
    r = lab.x(ns, "/usr/bin/python3", script, os.path.join(HERE, "..", "tests", "support"), RESPONDER, str(n),
              str(conc), "ipsentry and charon share this secret", ",".join(SOURCES), timeout=900)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"initiator failed: {r.stdout[-500:]} {r.stderr[-1500:]}")


def responder_bench(tmp, kind, n, conc):
    lab = Lab(tmp, f"bench-{kind}")
    try:
        i, r = topology(lab)
        p = make_peer(kind, lab, "r", r, [responder_conn()], quiet=True, cookie_threshold=1000,
                      block_threshold=100, save_keys=SAVE_KEYS)
        p.start()
        time.sleep(0.5)
        warm = run_initiator(lab, i, 20, 4)
        rate = run_initiator(lab, i, n, conc)
        lat = run_initiator(lab, i, 50, 1)
        rss = None
        if p.proc:
            try:
                pid = [int(x) for x in os.popen(f"ip netns pids {r}").read().split()
                       if open(f"/proc/{x}/comm").read().strip() in ("charon", "ipsentry")][0]
                rss = int([ln for ln in open(f"/proc/{pid}/status") if ln.startswith("VmRSS")][0].split()[1])
            except (IndexError, OSError):
                pass
        p.stop()
        return {"warmup_completed": warm["completed"], "completed": rate["completed"], "errors": rate["errors"],
                "first_errors": rate["first_errors"] + lat["first_errors"],
                "per_second": rate["completed"] / rate["wall"] if rate["wall"] else 0,
                # The initiator's own CPU share: near 1.0 it, not the responder, would be the limit.
                "initiator_cpu_share": rate["cpu"] / rate["wall"] if rate["wall"] else None,
                "latency_median_ms": 1000 * statistics.median(lat["times"]) if lat["times"] else None,
                "latency_p90_ms": 1000 * sorted(lat["times"])[int(0.9 * len(lat["times"]))] if lat["times"] else None,
                "rss_kib_after": rss}
    finally:
        lab.close()


def acquire_bench(tmp, rounds=5):
    """ipsentry initiates on the first ping to charon; charon initiates by command."""
    out = {"ipsentry_first_ping_ms": [], "steady_ping_ms": [], "charon_initiate_ms": []}
    for k in range(rounds):
        for kind in ("ipsentry", "charon"):
            lab = Lab(tmp, f"acq-{kind}-{k}")
            try:
                a, b = lab.ns("a"), lab.ns("b")
                lab.link(a, "a0", "192.0.2.1/24", b, "b0", "192.0.2.2/24")
                ci = Conn("acq", "192.0.2.1", "192.0.2.2", "192.0.2.1/32", "192.0.2.2/32", initiator=True)
                cr = Conn("acq", "192.0.2.2", "192.0.2.1", "192.0.2.2/32", "192.0.2.1/32")
                pr = make_peer("charon", lab, "b", b, [cr], quiet=True)
                pi = make_peer(kind, lab, "a", a, [ci], quiet=True, save_keys=SAVE_KEYS)
                pr.start()
                pi.start()
                time.sleep(0.3)
                if kind == "ipsentry":
                    r = lab.x(a, "ping", "-n", "-c", "1", "-W", "5", "192.0.2.2")
                    m = [float(x.split("time=")[1].split()[0]) for x in r.stdout.splitlines() if "time=" in x]
                    if m:
                        out["ipsentry_first_ping_ms"].append(m[0])
                else:
                    t0 = time.perf_counter()
                    ok, _ = pi.initiate()
                    if ok:
                        out["charon_initiate_ms"].append(1000 * (time.perf_counter() - t0))
                r = lab.x(a, "ping", "-n", "-c", "3", "-i", "0.2", "192.0.2.2")
                out["steady_ping_ms"] += [float(x.split("time=")[1].split()[0]) for x in r.stdout.splitlines()
                                          if "time=" in x]
                pi.stop()
                pr.stop()
            finally:
                lab.close()
    return {k: (statistics.median(v) if v else None) for k, v in out.items()} | {
        "rounds": rounds, "ipsentry_first_ping_all_ms": out["ipsentry_first_ping_ms"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ipsentry")
    ap.add_argument("-n", type=int, default=400, help="negotiations per responder for the rate")
    ap.add_argument("-c", "--concurrency", type=int, default=16)
    ap.add_argument("--json")
    ap.add_argument("--skip-acquire", action="store_true")
    ap.add_argument("--save-keys", action="store_true", help="run ipsentry with --save-keys (as the tests do)")
    a = ap.parse_args()
    global SAVE_KEYS
    SAVE_KEYS = a.save_keys
    skip_unless_root()
    Ipsentry.BINARY = os.path.abspath(a.ipsentry)
    tmp = tempfile.mkdtemp(prefix="ipsentry-ike-bench-")
    os.chmod(tmp, 0o755)
    res = {"n": a.n, "concurrency": a.concurrency, "cpus": os.cpu_count(),
           "load_before": os.getloadavg()[0]}
    for kind in ("charon", "ipsentry"):
        try:
            res[kind] = responder_bench(tmp, kind, a.n, a.concurrency)
        except Exception as e:  # noqa: BLE001 - report what could be measured
            res[kind] = {"error": str(e)[-800:]}
    if not a.skip_acquire:
        try:
            res["acquire"] = acquire_bench(tmp)
        except Exception as e:  # noqa: BLE001
            res["acquire"] = {"error": str(e)[-800:]}
    print(f"\nIKEv2 responder benchmark: {a.n} negotiations, {a.concurrency} in flight, {res['cpus']} CPUs "
          f"(load {res['load_before']:.1f} before)")
    print(f"{'responder':<10} {'IKE_SA_INIT+IKE_AUTH/s':>24} {'median ms':>10} {'p90 ms':>8} {'errors':>7} "
          f"{'RSS KiB':>8} {'initiator CPU':>14}")
    for kind in ("charon", "ipsentry"):
        r = res[kind]
        if "error" in r:
            print(f"{kind:<10} failed: {r['error']}")
            continue
        print(f"{kind:<10} {r['per_second']:>24.1f} {r['latency_median_ms'] or 0:>10.2f} "
              f"{r['latency_p90_ms'] or 0:>8.2f} {r['errors']:>7} {r['rss_kib_after'] or 0:>8} "
              f"{100 * (r['initiator_cpu_share'] or 0):>13.0f}%")
        if r["first_errors"]:
            print(f"           first errors: {r['first_errors']}")
    acq = res.get("acquire", {})
    if "error" in acq:
        print(f"acquire: failed: {acq['error']}")
    elif acq:
        print(f"first packet to SA up: ipsentry initiating on the first ping {acq['ipsentry_first_ping_ms']} ms "
              f"(median of {acq['rounds']}; {acq['ipsentry_first_ping_all_ms']}), swanctl --initiate "
              f"{acq['charon_initiate_ms'] and round(acq['charon_initiate_ms'], 1)} ms, ping once up "
              f"{acq['steady_ping_ms']} ms")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
