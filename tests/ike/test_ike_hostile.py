#!/usr/bin/python3
"""Hostile input to an IKE responder (issue 16): a flood of IKE_SA_INIT
from many spoofed sources, then malformed, oversized and replayed
messages. Roles cc (charon responds: the harness's reference) and ci
(ipsentry responds).

  a 192.0.2.1, .3 ---- b 192.0.2.2, .4 (the responder; also accepts any
  peer from 198.51.100.0/24 and 203.0.113.0/24, as a gateway for road
  warriors does, so the flood is answered with DH work, not refused)

Before the flood an SA between .1 and .2 carries a ping every 50 ms. The
flood: 3000 IKE_SA_INITs at 1000/s from random addresses of the two
documentation /24s (a raw socket in a). Checked: the responder turns
cookies on (COOKIE notifies on the wire; ipsentry's cookies_sent and
cookies_on) and keeps its half-open SAs bounded; no ping of the established
SA is lost; a new peer (.3 -> .4) negotiates during the flood (answering
the cookie). Then one of each malformed message (short, lengths that lie,
payload chains that overrun or do not advance, garbage, a truncated
IKE_SA_INIT, a message for the established SA whose integrity fails),
oversized datagrams (fragmented by IP) and replays of the captured
IKE_SA_INIT and IKE_AUTH requests: ipsentry counts each broken message as
invalid, keeps running, establishes nothing from them, and the established
SA keeps carrying traffic. Last, a flood that answers the cookies
(from addresses whose answers come back: the responder routes them
through a, where a packet socket reads them): every request now costs a
half-open SA, and the responder's half-open limit (ipsentry's 1000,
charon's init_limit_half_open set to 200 here) caps them: the attacker
gets at most the limit's worth of full IKE_SA_INIT answers, the rest are
dropped (ipsentry's half_open_dropped), and the established SA loses no
ping. Under ASan+UBSan (the test in build-asan) the
ipsentry log must hold no report.

Usage: test_ike_hostile.py --ipsentry PATH [--roles cc,ci] (root; 77 = skipped)
"""
import json
import os
import random
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
import ike_stats  # noqa: E402
import ikev2_ref as ref  # noqa: E402
from ike_lab import (ROLES, Capture, Conn, captures, hosts, ike_messages, make_peer, ping,  # noqa: E402
                     run_scenarios, wait_for)

SENDER = os.path.join(HERE, "..", "support", "ike_sender.py")
A, B, A2, B2 = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"
FLOOD, RATE = 3000, 1000
FLOOD_NETS = ["198.51.100.0", "203.0.113.0"]
# The responders' half-open limits: ipsentry's (ike::v2::Options, not
# configurable), charon's init_limit_half_open as set here.
HALF_OPEN_LIMIT = {"ipsentry": 1000, "charon": 200}
# Fast enough to fill the limit before the first half-open SAs expire (30 s),
# slow enough for a responder on a loaded 2-core machine to take in.
COOKIE_FLOOD_RATE = {"ipsentry": 100, "charon": 300}


def responder_conns():
    out = [Conn("est", B, A, f"{B}/32", f"{A}/32"), Conn("new", B2, A2, f"{B2}/32", f"{A2}/32")]
    # Road warriors: any peer from the flood's networks (psk for any identity;
    # ipsentry: inbound respond, as a policy without its peer must be).
    for i, net in enumerate(FLOOD_NETS):
        out.append(Conn(f"rw{i}", B, None, f"{B}/32", f"{net}/24", remote_id=None))
    return out


def malformed_messages(est_spi_i, est_spi_r):
    """(name, bytes, counted as invalid) -- each one broken in its own way."""
    rnd = random.Random(16)
    hdr = ref.HEADER
    good = ref.Initiator(b"x", A, B, None, None).init()
    spi = rnd.getrandbits(64) | 1
    out = [
        ("10 bytes", bytes(10), True),
        ("length says 1000, 28 sent", hdr.pack(spi, 0, 0, 0x20, 34, 8, 0, 1000), True),
        ("length says 20", hdr.pack(spi, 0, 0, 0x20, 34, 8, 0, 20), True),
        ("payload overruns", hdr.pack(spi, 0, ref.SA, 0x20, 34, 8, 0, 36) + struct.pack("!BBH", 0, 0, 200) + bytes(4),
         True),
        ("payload length 0", hdr.pack(spi, 0, ref.NONCE, 0x20, 34, 8, 0, 40) + struct.pack("!BBH", ref.NONCE, 0, 0) +
         bytes(8), True),
        ("truncated IKE_SA_INIT", good[: len(good) * 6 // 10], True),
        ("IKE_SA_INIT whose length field is one short", good[:24] + struct.pack("!I", len(good) - 1) + good[28:], True),
        ("INFORMATIONAL for an unknown SPI", hdr.pack(spi, spi + 1, ref.SK, 0x20, 37, 8, 3, 28 + 4 + 40) +
         struct.pack("!BBH", 0, 0, 44) + bytes(40), True),
    ]
    for i in range(12):
        out.append((f"garbage {i}", bytes(rnd.getrandbits(8) for _ in range(rnd.randint(28, 1400))), True))
    # The established SA's SPIs, an SK payload that does not authenticate.
    body = bytes(rnd.getrandbits(8) for _ in range(64))
    out.append(("established SA, integrity fails",
                hdr.pack(est_spi_i, est_spi_r, ref.SK, 0x20, 37, 8, 7, 28 + 4 + len(body)) +
                struct.pack("!BBH", 0, 0, 4 + len(body)) + body, True))
    return out


def scenario_hostile(lab, role):
    topo = hosts(lab, 2)
    ki, kr = ROLES[role]
    # b answers the spoofed sources through a, which drops what is not its own.
    lab.x(topo.ns["b"], "ip", "route", "add", "default", "via", A)
    ci = [Conn("est", A, B, f"{A}/32", f"{B}/32", initiator=True),
          Conn("new", A2, B2, f"{A2}/32", f"{B2}/32", initiator=True)]
    caps = captures(lab, topo, "hostile")
    pi = make_peer(ki, lab, "a", topo.ns["a"], ci)
    pr = make_peer(kr, lab, "b", topo.ns["b"], responder_conns(), cookie_threshold=30, block_threshold=5,
                   half_open_limit=HALF_OPEN_LIMIT["charon"])
    pr.start()
    pi.start()
    if pi.kind == "charon":
        ok, out = pi.initiate(ci[0])
        lab.check(ok, f"the established SA comes up{'' if ok else ': ' + out}")
    got, _, _ = ping(lab, topo.ns["a"], B, count=3, src=A, wait=5)
    lab.check(got >= 2, f"the SA between {A} and {B} carries pings ({got}/3)")
    # ipsentry's statistics are a snapshot republished within a second or two.
    est = wait_for(lambda: [s for s in pr.sas() if s["children"]], 5) or []
    before = ike_stats.counters(pr.stats()) if pr.kind == "ipsentry" else {}

    # The flood, with a ping on the established SA all along.
    pinger = lab.popen(topo.ns["a"], ["ping", "-n", "-i", "0.05", "-W", "2", "-w", str(FLOOD // RATE + 6),
                                      "-I", A, B], stdout=subprocess.PIPE, text=True)
    flood = lab.popen(topo.ns["a"], ["/usr/bin/python3", SENDER, "flood", B, str(FLOOD), str(RATE), *FLOOD_NETS],
                      stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    mid = pr.stats() if pr.kind == "ipsentry" else None
    # A new peer during the flood: it must get through the cookie.
    if pi.kind == "charon":
        ok, out = pi.initiate(ci[1], timeout=15)
    else:
        n, _, _ = ping(lab, topo.ns["a"], B2, count=3, src=A2, wait=5)
        ok, out = n >= 1, f"{n}/3 pings"
    lab.check(ok, f"a new peer negotiates during the flood{'' if ok else ': ' + out}")
    sent = int((flood.communicate(timeout=60)[0] or "0").split()[0])
    out = pinger.communicate(timeout=60)[0]
    line = next((ln for ln in out.splitlines() if "received" in ln), "")
    tx, rx = (int(line.split(",")[0].split()[0]), int(line.split(",")[1].split()[0])) if line else (0, 0)
    lab.check(sent >= FLOOD * 0.95, f"the flood: {sent} IKE_SA_INITs from spoofed sources")
    lab.check(tx > 50 and rx == tx, f"the established SA lost no ping during the flood ({rx}/{tx})")
    time.sleep(1)
    cap_path = caps[-1].stop()
    msgs = ike_messages(cap_path)
    cookies = [m for _, src, dst, m in msgs if src == B and m.exchange == ref.IKE_SA_INIT and m.response and
               ref.COOKIE in m.notifies()]
    flood_answers = [m for _, src, dst, m in msgs if src == B and dst.split(".")[0] in ("198", "203")]
    full = [m for m in flood_answers if m.payload(ref.KE) is not None]
    lab.check(len(cookies) > 0, f"the responder asks for cookies ({len(cookies)} COOKIE notifies; it answered "
                                f"{len(flood_answers)} of the flood's requests, {len(full)} with a KE)")
    if pr.kind == "ipsentry":
        st = pr.stats()
        c = ike_stats.counters(st)
        lab.check(c["cookies_sent"] - before["cookies_sent"] >= len(cookies) > 0,
                  f"{pr} counts the cookies it sent ({c['cookies_sent']}; {len(cookies)} on the wire)")
        lab.check(ike_stats.cookies_on(mid), f"{pr} had cookies on during the flood")
        lab.check(ike_stats.half_open(mid) <= 1000, f"{pr}'s half-open SAs stay bounded during the flood "
                                                    f"({ike_stats.half_open(mid)})")
        lab.check(len(full) <= 30 * 2 + 5,
                  f"{pr} did the DH work for at most about the cookie threshold of spoofed requests ({len(full)})")
    lab.check(pr.alive(), f"{pr} survives the flood")

    # Malformed, oversized, replayed.
    est_spi = (est[0]["spi_i"], est[0]["spi_r"]) if est else (1, 2)
    bad = malformed_messages(*est_spi)
    items = []
    for name, data, _ in bad:
        items.append({"src": A, "sport": 500, "dst": B, "dport": 500, "hex": data.hex()})
        items.append({"src": A, "sport": 4500, "dst": B, "dport": 4500, "hex": (b"\0\0\0\0" + data).hex()})
    n_invalid = 2 * sum(1 for _, _, counted in bad if counted)
    big = ref.HEADER.pack(random.getrandbits(64) | 1, 0, ref.NOTIFY, 0x20, 34, 8, 0, 28 + 4 + 60000) + \
        struct.pack("!BBH", 0, 0, 4 + 60000) + bytes(60000)
    items.append({"src": A, "sport": 0, "dst": B, "dport": 500, "hex": big.hex(), "plain": True})
    items.append({"src": A, "sport": 0, "dst": B, "dport": 4500, "hex": (b"\0\0\0\0" + big[:9000]).hex(),
                  "plain": True})
    n_oversized = 2
    # Replays of the established SA's own IKE_SA_INIT and IKE_AUTH requests.
    replay = [(m, src) for _, src, dst, m in msgs if src == A and dst == B and not m.response and
              (m.spi_i, m.spi_r if m.exchange != ref.IKE_SA_INIT else est_spi[1]) == est_spi and
              m.exchange in (ref.IKE_SA_INIT, ref.IKE_AUTH)]
    for m, src in replay:
        port = 500 if m.exchange == ref.IKE_SA_INIT else 4500
        items.append({"src": A, "sport": port, "dst": B, "dport": port,
                      "hex": ((b"\0\0\0\0" if port == 4500 else b"") + m.raw).hex()})
    lab.check(len(replay) == 2, f"the established SA's IKE_SA_INIT and IKE_AUTH requests are in the capture "
                                f"to replay ({len(replay)})")
    path = os.path.join(lab.dir, "hostile.json")
    json.dump(items, open(path, "w"))
    cap2 = Capture(lab, topo.ns["b"], "b0", "hostile-2", "udp")
    r = lab.x(topo.ns["a"], "/usr/bin/python3", SENDER, "send", path)
    lab.check(r.stdout.strip() == str(len(items)), f"sent {r.stdout.strip()} of {len(items)} malformed, oversized "
                                                   f"and replayed messages {r.stderr.strip()[-200:]}")
    time.sleep(2)
    cap2.stop()
    lab.check(pr.alive(), f"{pr} keeps running")
    got, _, _ = ping(lab, topo.ns["a"], B, count=5, src=A)
    lab.check(got == 5, f"the established SA still carries traffic ({got}/5)")
    after = [s for s in pr.sas() if s["children"]]
    lab.check({(s["spi_i"], s["spi_r"]) for s in after} >= {est_spi} and len(after) <= 2,
              f"nothing was established from the hostile messages ({len(after)} IKE SAs with children)")
    if pr.kind == "ipsentry":
        c, c0 = ike_stats.counters(pr.stats()), ike_stats.counters(st)
        d_invalid = (c["invalid_packets"] + c["invalid_cookies"]) - (c0["invalid_packets"] + c0["invalid_cookies"])
        lab.check(d_invalid >= n_invalid + n_oversized,
                  f"{pr} counts every malformed and oversized message as invalid ({d_invalid} counted, "
                  f"{n_invalid + n_oversized} sent)")
    cookie_flood(lab, topo, pr)
    if pr.kind == "ipsentry":
        log = pr.log()
        lab.check(len(log) < 200_000, f"{pr}'s log stays small under attack ({len(log)} bytes: rate-limited)")
    for p in (pi, pr):
        rc = p.stop()
        if p.kind == "ipsentry":
            lab.check(rc == 0, f"{p} stops cleanly (exit {rc})")


def cookie_flood(lab, topo, pr):
    """Requests whose cookies come back: the half-open limit, not the cookie, is what holds."""
    limit = HALF_OPEN_LIMIT[pr.kind]
    n = limit + (900 if pr.kind == "ipsentry" else 300)  # ipsentry: some are lost in its socket buffer under load
    st0 = pr.stats() if pr.kind == "ipsentry" else None
    before = ike_stats.counters(st0) if st0 else {}
    cap = Capture(lab, topo.ns["b"], "b0", "cookieflood", "udp port 500")
    pinger = lab.popen(topo.ns["a"], ["ping", "-n", "-i", "0.05", "-W", "2", "-w", str(n // COOKIE_FLOOD_RATE[pr.kind] + 6),
                                      "-I", A, B], stdout=subprocess.PIPE, text=True)
    flood = lab.popen(topo.ns["a"], ["/usr/bin/python3", SENDER, "cookieflood", B, str(n), str(COOKIE_FLOOD_RATE[pr.kind]),
                                     "a0", *FLOOD_NETS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while flood.poll() is None:
        if pr.kind == "ipsentry":
            st = pr.stats()
            peak = max(peak, ike_stats.half_open(st) if st else 0)
        time.sleep(0.5)
    fout, ferr = flood.communicate(timeout=30)
    cap.stop()
    f = (fout or "").split()
    sent, answered, full, other = (int(x) for x in f) if len(f) == 4 else (0, 0, 0, 0)
    out = pinger.communicate(timeout=60)[0]
    line = next((ln for ln in out.splitlines() if "received" in ln), "")
    tx, rx = (int(line.split(",")[0].split()[0]), int(line.split(",")[1].split()[0])) if line else (0, 0)
    lab.check(sent >= n * 0.95 and answered >= limit,
              f"cookie-answering flood: {sent} IKE_SA_INITs, {answered} cookies sent back {ferr.strip()[-200:]}")
    lab.check(limit // 2 <= full <= limit + 10,
              f"{pr}'s half-open limit ({limit}) caps the flood: {full} full IKE_SA_INIT answers (DH done), "
              f"{other} other answers, {sent - full - other} unanswered")
    lab.check(tx > 50 and rx == tx, f"the established SA lost no ping during the cookie-answering flood ({rx}/{tx})")
    lab.check(pr.alive(), f"{pr} survives the cookie-answering flood")
    if pr.kind == "ipsentry":
        time.sleep(2)  # the snapshot
        st = pr.stats()
        c = ike_stats.counters(st)
        dropped = c["half_open_dropped"] - before["half_open_dropped"]
        d0, d1 = ike_stats.driver(st0), ike_stats.driver(st)
        got = {k: d1.get(k, 0) - d0.get(k, 0) for k in ("datagrams_received", "datagrams_sent", "receive_errors",
                                                         "send_errors")}
        lab.check(dropped >= 1 and peak <= limit,
                  f"{pr} counts what the limit dropped ({dropped}) and its half-open SAs peak at {peak} (limit "
                  f"{limit}); its IKE sockets meanwhile: {got}, cookies sent "
                  f"{c['cookies_sent'] - before['cookies_sent']}, invalid {c['invalid_packets'] - before['invalid_packets']}"
                  f"/{c['invalid_cookies'] - before['invalid_cookies']}")
    else:
        lab.check(f"half-open IKE_SA limit of {limit} reached" in pr.log(),
                  f"{pr}'s log: the half-open IKE_SA limit of {limit} reached")


def main():
    return run_scenarios(__doc__, [("hostile", scenario_hostile, ["cc", "ci"])])


if __name__ == "__main__":
    sys.exit(main())
