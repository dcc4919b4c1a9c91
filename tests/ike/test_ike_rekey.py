#!/usr/bin/python3
"""Rekeying under traffic (issue 16): child lifetime 20 s, a 60 s transfer
survives three rekeys with no lost connection, old SPIs are deleted, one
IKE SA rekey; PFS on and off.

Two address pairs between two hosts, each its own IKE SA:
  pfs    192.0.2.1 <-> 192.0.2.2, CHILD_SA rekeyed with a curve25519 KE
  nopfs  192.0.2.3 <-> 192.0.2.4, CHILD_SA rekeyed without KE; its IKE SA
         (lifetime 40 s) is rekeyed once
The end that initiates also rekeys (charon: rekey_time 16 s, life_time
20 s; ipsentry: lifetime child 20 s); the other end never starts a rekey,
so in `ci` ipsentry answers every rekey and in `ic` it starts every one.
Over 60 s a paced TCP transfer and a ping run on each pair. Checked: both
transfers arrive intact and their connections never break; no ping is
lost; at least four SPIs per direction on the wire; at the end each end
lists one IKE SA per pair with one CHILD_SA, the newest, and the same SPIs
(charon's swanctl --list-sas, ipsentry's stats); the nopfs IKE SA has new
SPIs, the pfs one not; every CREATE_CHILD_SA of the pfs pair carries a KE
payload and none of the nopfs children's do (decrypted with the keys);
every ESP packet of the whole run verifies with the saved keys and every
IKE message decrypts, tshark agreeing.

The roles run at the same time (they are mostly waiting). --soak SECONDS
runs the transfers longer (not in ctest).

Usage: test_ike_rekey.py --ipsentry PATH [--roles cc,ci,ic,ii] [--soak S] (root; 77 = skipped)
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import ike_stats  # noqa: E402
import ikev2_ref as ref  # noqa: E402
from ike_lab import (ROLES, Conn, Transfer, captures, hosts, ike_messages,  # noqa: E402
                     ipv4_packets, make_peer, ping, prove_keys, prove_wire, run_scenarios, saved_ike_keysets,
                     wait_for)

DURATION = int(os.environ.get("IKE_SOAK", "60"))
RATE = 150_000  # bytes/s per transfer
PAIRS = {"pfs": ("192.0.2.1", "192.0.2.2"), "nopfs": ("192.0.2.3", "192.0.2.4")}


def conns(initiator_side, rekeys_i):
    out = []
    for name, (a, b) in PAIRS.items():
        me, peer = (a, b) if initiator_side else (b, a)
        out.append(Conn(name, me, peer, f"{me}/32", f"{peer}/32", pfs="curve25519" if name == "pfs" else None,
                        child_lifetime=20, ike_lifetime=40 if name == "nopfs" else 8 * 3600,
                        rekeys=rekeys_i if initiator_side else not rekeys_i, initiator=initiator_side,
                        mode="tunnel"))
    return out


class Poller(threading.Thread):
    """What both ends list, once a second: {(peer, conn address): [(t, ike pair, [(in, out)])]}."""

    def __init__(self, peers):
        super().__init__(daemon=True)
        self.peers, self.stop_flag, self.seen = peers, threading.Event(), []

    def run(self):
        while not self.stop_flag.wait(1.0):
            for p in self.peers:
                try:
                    self.seen.append((time.time(), p.name, p.sas()))
                except Exception:  # noqa: BLE001 - a busy peer: try again next second
                    pass


def scenario_rekey(lab, role):
    topo = hosts(lab, n_pairs=2)
    ki, kr = ROLES[role]
    mode = "transport" if role == "ii" else "tunnel"
    ci, cr = conns(True, True), conns(False, True)
    for c in ci + cr:
        c.mode = mode
    caps = captures(lab, topo, "rekey")
    pi = make_peer(ki, lab, "a", topo.ns["a"], ci)
    pr = make_peer(kr, lab, "b", topo.ns["b"], cr)
    pr.start()
    pi.start()
    if ki == "charon":
        for c in ci:
            ok, out = pi.initiate(c)
            lab.check(ok, f"charon initiates {c.name}{'' if ok else ': ' + out}")
    else:
        for name, (a, b) in PAIRS.items():
            got, seqs, _ = ping(lab, topo.ns["a"], b, count=2, wait=5, src=a)
            lab.check(got >= 1, f"the first pings from {a} bring up {name} ({got}/2, answered {seqs})")
    if not wait_for(lambda: len([s for s in pr.sas() if s["children"]]) == 2, 10):
        lab.check(False, f"both IKE SAs up on {pr}: {pr.sas()}")
        return
    initial = {p.name: p.sas() for p in (pi, pr)}
    poll = Poller([pi, pr])
    poll.start()
    transfers, pingers = [], []
    for i, (name, (a, b)) in enumerate(PAIRS.items()):
        transfers.append((name, Transfer(lab, topo.ns["b"], b, topo.ns["a"], RATE * DURATION, port=5100 + i,
                                         rate=RATE, timeout=DURATION + 60, src=a)))
        pingers.append((name, lab.popen(topo.ns["a"], ["ping", "-n", "-i", "0.5", "-c", str(DURATION * 2), "-W", "2",
                                                       "-I", a, b], stdout=__import__("subprocess").PIPE, text=True)))
    for name, t in transfers:
        ok, how = t.result()
        lab.check(ok, f"{name}: a {DURATION} s TCP transfer survives the rekeys intact ({how})")
    for name, p in pingers:
        out = p.communicate(timeout=60)[0]
        line = next((ln for ln in out.splitlines() if "received" in ln), "")
        sent, got = (int(line.split(",")[0].split()[0]), int(line.split(",")[1].split()[0])) if line else (0, 0)
        lab.check(sent > 0 and got == sent, f"{name}: no ping lost across the rekeys ({got}/{sent})")
    # The old inbound SAs go with their DELETE (or 10 s after the switch).
    settled = wait_for(lambda: all(len(s["children"]) == 1 for p in (pi, pr) for s in p.sas()) and
                       all(len(p.sas()) == 2 for p in (pi, pr)), 20, step=1)
    poll.stop_flag.set()
    poll.join()
    pcaps = [c.stop() for c in caps]
    final = {p.name: p.sas() for p in (pi, pr)}
    lab.check(bool(settled), f"at the end each end lists one IKE SA per pair with one CHILD_SA: "
                             f"{ {n: [len(s['children']) for s in v] for n, v in final.items()} }")

    # SPIs on the wire, per direction.
    spis = {}
    for src, dst, proto, l4, _ in ipv4_packets(pcaps[-1]):
        if proto == 50:
            spi = int.from_bytes(l4[:4], "big")
        elif proto == 17 and len(l4) > 16 and 4500 in (int.from_bytes(l4[:2], "big"), int.from_bytes(l4[2:4], "big")) \
                and l4[8:12] != b"\0\0\0\0":
            spi = int.from_bytes(l4[8:12], "big")
        else:
            continue
        spis.setdefault((src, dst), []).append(spi)
    for name, (a, b) in PAIRS.items():
        for src, dst in ((a, b), (b, a)):
            seq = spis.get((src, dst), [])
            distinct = list(dict.fromkeys(seq))
            lab.check(len(distinct) >= 4, f"{name} {src} -> {dst}: {len(distinct)} SPIs used in turn "
                                          f"(the first and at least three rekeys)")
            last = distinct[-1] if distinct else None
            for p in (pi, pr):
                mine = [c for s in final[p.name] for c in s["children"]
                        if c.get("spi_out") == last or c.get("spi_in") == last]
                lab.check(len(mine) == 1, f"{name}: {p} still has the last SPI {last or 0:08x} and "
                                          f"({'no' if len(mine) == 1 else 'not'}) older ones")
    # The IKE SAs: nopfs rekeyed once (new SPIs), pfs unchanged.
    for p in (pi, pr):
        init = {(s["spi_i"], s["spi_r"]) for s in initial[p.name]}
        fin = {(s["spi_i"], s["spi_r"]) for s in final[p.name]}
        lab.check(len(init & fin) == 1 and len(fin) == 2,
                  f"{p}: one IKE SA rekeyed (new SPIs), the other kept ({len(init & fin)} of 2 unchanged)")
    seen_ike = {}
    for _, name, sas in poll.seen:
        for s in sas:
            seen_ike.setdefault(name, set()).add((s["spi_i"], s["spi_r"]))
    # A 40 s IKE SA may be rekeyed twice before the run settles (rekey at 80-90 %).
    lab.check(all(3 <= len(v) <= 4 for v in seen_ike.values()),
              f"three or four IKE SAs in the whole run on each end (two pairs, one or two rekeys of one): "
              f"{ {k: len(v) for k, v in seen_ike.items()} }")

    # PFS: KE in the pfs children's CREATE_CHILD_SA, none in the nopfs ones'.
    keysets = [k for p in (pi, pr) for k in (p.keys()[0] if p.kind == "charon" else saved_ike_keysets(p.keydir))]
    ke = {"pfs": [], "nopfs": []}
    for _, src, dst, m in ike_messages(pcaps[-1]):
        if m.exchange != ref.CREATE_CHILD_SA or m.response:
            continue
        k = next((k for k in keysets if ref.integrity_ok(m, k)), None)
        inner = ref.decrypt(m, k) if k else None
        if inner is None:
            lab.check(False, f"a CREATE_CHILD_SA request {src} -> {dst} does not decrypt with the keys")
            continue
        kinds = [t for t, _ in inner]
        rekey_ike = any(t == ref.SA and b[5] == 1 for t, b in inner)  # proposal protocol IKE
        pair = "pfs" if src in PAIRS["pfs"] else "nopfs"
        if not rekey_ike:
            ke[pair].append(ref.KE in kinds)
    lab.check(len(ke["pfs"]) >= 3 and all(ke["pfs"]),
              f"pfs: every child rekey carries a KE payload ({ke['pfs']})")
    lab.check(len(ke["nopfs"]) >= 3 and not any(ke["nopfs"]),
              f"nopfs: no child rekey carries a KE payload ({ke['nopfs']})")

    prove_wire(lab, pcaps[-1], "rekey run", expect_udp_encap=(role != "ii"))
    for p in (pi, pr):
        if p.kind == "ipsentry":
            prove_keys(lab, pcaps[-1], p.keydir, f"{p}'s keys, rewritten at every rekey", expect_esp_min=1000)
            c = ike_stats.counters(p.stats())
            lab.check(c["rekeys"] >= 7, f"{p} counts the rekeys (6 CHILD_SA, 1 IKE SA): {c['rekeys']}")
            # A packet on a new SPI before this end installed it is one lost.
            early = [ln.split(": ", 1)[-1] for ln in p.log().splitlines() if "dropped: unknown-spi" in ln]
            lab.check(not early, f"{p} dropped no ESP packet for an SPI it had not installed yet "
                                 f"({len(early)}: {early[:3]})")
    if ki == kr == "charon":
        from ike_lab import keys_for
        prove_keys(lab, pcaps[-1], keys_for(lab, pi, pcaps), f"{pi}'s keys", expect_esp_min=1000)
    audit_rekeys(lab, ci, pi, pr, pcaps)
    for p in (pi, pr):
        rc = p.stop()
        if p.kind == "ipsentry":
            lab.check(rc == 0, f"{p} stops cleanly (exit {rc})")


def audit_rekeys(lab, ci, pi, pr, pcaps):
    """The policy audit (issue 20) of the rekey run's capture, from a's side with
    a's policy: per pair and direction the successive CHILD_SAs are linked
    (each successor's predecessor is the SA before it), the overlap or gap of
    each handover is measured, and nothing leaked or mismatched."""
    from ike_lab import Ipsentry, keys_for
    import json
    import subprocess
    policy = Ipsentry(lab, "audit-a", pi.ns, ci)
    policy.conf()
    keydir = next((p.keydir for p in (pi, pr) if p.kind == "ipsentry"), None) or keys_for(lab, pi, pcaps)
    args = [Ipsentry.BINARY, "verify", "--json", "--no-progress", "--policy", policy.config]
    for fmt, name in (("wireshark-ikev2", "ikev2_decryption_table"), ("wireshark", "esp_sa")):
        path = os.path.join(keydir, name)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            args += ["--keys-from", fmt, path]
    r = subprocess.run(args + [pcaps[-1]], capture_output=True, text=True, timeout=300)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        lab.check(False, f"verify --policy of the rekey capture: exit {r.returncode}: {r.stderr.strip()[-500:]}")
        return
    counts = doc["statistics"]["policy_audit"]["verdicts"]
    lab.check(r.returncode == 0 and not any(counts[k] for k in ("cleartext-leak", "policy-mismatch", "blocked-seen"))
              and counts["conforms"] > 1000,
              f"the policy audit of the rekey run finds no leak or mismatch (exit {r.returncode}): {counts}")
    timelines = {s["name"]: s["audit"] for s in doc["security_associations"] if s.get("audit")}
    for name in PAIRS:
        for entry in (name, f"{name} (mirrored)"):
            mine = {n: t for n, t in timelines.items() if t["policy"] == entry}
            firsts = [n for n, t in mine.items() if t["predecessor"] is None]
            chain = []
            while firsts and len(chain) <= len(mine):
                chain.append(firsts[0] if not chain else mine[chain[-1]]["successor"])
                if chain[-1] is None or mine.get(chain[-1], {}).get("successor") is None:
                    break
            chain = [c for c in chain if c is not None]
            linked = all(mine[b]["predecessor"] == a for a, b in zip(chain, chain[1:]))
            handovers = [(mine[a]["overlap_seconds"], mine[a]["gap_seconds"]) for a in chain[:-1]]
            lab.check(len(firsts) == 1 and len(chain) == len(mine) >= 4 and linked and
                      all(o is not None and g is not None for o, g in handovers),
                      f"{entry}: the audit links its {len(mine)} SAs into one chain of successors "
                      f"(overlap/gap seconds per rekey: {[(round(o, 3), round(g, 3)) for o, g in handovers]})")


def main():
    if "--soak" in sys.argv:
        i = sys.argv.index("--soak")
        os.environ["IKE_SOAK"] = sys.argv[i + 1]
        del sys.argv[i: i + 2]
        global DURATION
        DURATION = int(os.environ["IKE_SOAK"])
    return run_scenarios(__doc__, [("rekey", scenario_rekey, ["cc", "ci", "ic", "ii"])], parallel=True)


if __name__ == "__main__":
    sys.exit(main())
