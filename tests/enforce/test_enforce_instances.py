#!/usr/bin/python3
"""Enforcement against other instances, operators and attackers (issue 15,
items 1, 2 and 8), in network namespaces, with what crosses the wire
captured by tcpdump and read by tshark and scapy:

- a second `enforce` (another --socket and --queue) and `enforce --cleanup
  --socket OTHER` while one runs: refused, naming the holder; no rule
  touched, no cleartext on the wire;
- the chains deleted by hand with iptables: the filter-table backstop drops
  what the queue no longer sees, the guard reinstalls the rules (gap
  measured); the backstop flushed as well: the gap and what leaked in it
  are measured and reported;
- an NFQUEUE queue held by another process: the error names it;
- an SA renamed + SIGHUP: its sequence numbers continue (no (key, sequence
  number) pair twice on the wire);
- two enforcements with one --state-dir: the second is refused;
- kill -9 + restart: outbound sequence numbers continue above every one on
  the wire, and a packet accepted just before the crash, replayed after the
  restart, is refused;
- SAs sharing a GCM key: enforce refuses, config check warns; a
  configuration with keys readable by others: warned with the chmod fix.

Needs root (exit 77 = skipped otherwise). Documentation addresses only;
every namespace is removed whatever happens. ONLY=name runs one scenario.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import test_enforce as te  # noqa: E402  (the namespace helpers of the main enforcement test)
from ipsec_configs import GCM_AB, GCM_BA, esp_config  # noqa: E402
from netns import UdpSink, ipsentry_as_root, run_scenario, sh  # noqa: E402

A, B = te.A, te.B
check = te.check

UDP_STREAM = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + float(sys.argv[3]); i = 0
while time.time() < end:
    try:
        s.sendto(b'stream-%d' % i, (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    i += 1
    time.sleep(0.002)
print(i)
"""

# Binds an NFQUEUE queue over raw netlink, as another program would, and
# holds it until killed.
NFQ_HOLDER = r"""
import socket, struct, sys, time
q = int(sys.argv[1])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
def config(cmd_payload, seq):
    nfgen = struct.pack('BBH', 0, 0, socket.htons(q))              # AF_UNSPEC, version 0, queue (big endian)
    attr = struct.pack('HH', 4 + len(cmd_payload), 1) + cmd_payload  # NFQA_CFG_CMD
    body = nfgen + attr
    hdr = struct.pack('IHHII', 16 + len(body), (3 << 8) | 2, 1 | 4, seq, 0)  # NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG, REQUEST|ACK
    s.send(hdr + body)
    data = s.recv(4096)
    return struct.unpack('i', data[16:20])[0]
err = config(struct.pack('BxH', 1, 0), 1)  # NFQNL_CFG_CMD_BIND, pf 0
print('bound' if err == 0 else 'error %d' % err, flush=True)
time.sleep(60)
"""


def ms(seconds):
    return "never (not within 5 s)" if seconds is None else f"{seconds * 1000:.0f} ms"


def our_rules(ns):
    """Our lines of iptables-save (chains, rules, jumps), as a sorted list."""
    out = te.nsx(ns, "iptables-save").stdout.splitlines()
    return sorted(l for l in out if "IPSENTRY" in l)


def wire_cleartext(pcap):
    """IPv4 packets between A and B that are neither ESP nor ARP."""
    rows = te.tshark(pcap, "-Y", f"ip.addr == {A} and ip.addr == {B} and not esp", "-T", "fields", "-e", "frame.number")
    return [r for r in rows.split() if r]


def esp_seqs(pcap, spi):
    out = te.tshark(pcap, "-Y", f"esp.spi == {spi}", "-T", "fields", "-e", "esp.sequence").split()
    return [int(x, 16) if x.startswith("0x") else int(x) for x in out]


def run_briefly(ns, *args, timeout=5):
    """Runs ipsentry in `ns`; one still running after `timeout` s (it was not
    refused) is stopped with SIGTERM. Returns (exit status, standard error)."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, te.IPSENTRY, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    te.PROCS.append(proc)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        err = "(it ran until stopped) " + err
    return proc.returncode, err


def last_line(err):
    return err.strip().splitlines()[-1][:160] if err.strip() else "no message"


def start_pair(tmp, tag, extra=()):
    a, b = te.pair_v4()
    ca = esp_config(os.path.join(tmp, f"{tag}-a.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    cb = esp_config(os.path.join(tmp, f"{tag}-b.yaml"), B, A, "0x1002", GCM_BA, "0x1001", GCM_AB)
    for c in (ca, cb):
        os.chmod(c, 0o600)
    ea, eb = te.Enforcer(a, ca, tmp, f"{tag}a", extra), te.Enforcer(b, cb, tmp, f"{tag}b", extra)
    ok = ea.start() and eb.start()
    check(ok, f"{tag}: enforcement starts on both hosts")
    return a, b, ca, cb, ea, eb


def scenario_second_instance(tmp):
    print("# a second enforcement and a cleanup with another socket while one runs")
    a, b, ca, cb, ea, eb = start_pair(tmp, "two")
    before = our_rules(a)
    cap = te.Capture(b, "eb", os.path.join(tmp, "second.pcap"), "not arp")
    other_sock, other_state = os.path.join(tmp, "other.sock"), os.path.join(tmp, "other-state")
    # Another queue and socket: on main this one starts, replaces the
    # running one's rules, and removes them all when it stops.
    rc, err = run_briefly(a, "enforce", "-c", ca, "--socket", other_sock, "--state-dir", other_state, "--queue", "1")
    check(rc == 2 and "another enforcement is running in this network namespace" in err
          and f"pid {ea.proc.pid}" in err and ea.sock in err,
          f"a second enforce with another --socket and --queue exits 2 naming the running one ({last_line(err)})")
    r = te.nsx(a, te.IPSENTRY, "enforce", "--cleanup", "--socket", other_sock)
    check(r.returncode == 2 and f"pid {ea.proc.pid}" in r.stderr and "stop it with SIGTERM" in r.stderr,
          f"enforce --cleanup --socket OTHER exits 2 naming the running one ({r.stderr.strip()[:140]})")
    r = te.nsx(a, te.IPSENTRY, "enforce", "--cleanup")
    check(r.returncode == 2, "enforce --cleanup with the default socket is refused as well")
    check(our_rules(a) == before and te.rules(a) > 0, "the running enforcement's rules are untouched")
    check(ea.stats() is not None, "the running enforcement still answers on its socket")
    n, _ = te.ping(a, B, 3)
    sink = UdpSink(b, B, 6000, 2, te.PROCS)
    te.nsx(a, "/usr/bin/python3", "-c", UDP_STREAM, B, "6000", "1")
    got = sink.proc.communicate(timeout=10)[0].split()
    cap.stop()
    check(n == 3 and len(got) > 100, f"traffic still flows, protected ({n}/3 pings, {len(got)} datagrams)")
    clear = wire_cleartext(cap.path)
    check(not clear, f"no cleartext between the hosts on the wire ({len(clear)} packets)")
    seqs = esp_seqs(cap.path, "0x00001001")
    check(len(seqs) > 100 and len(seqs) == len(set(seqs)),
          f"every sequence number of SA 0x1001 appears once on the wire ({len(seqs)} packets)")
    ea.stop()
    eb.stop()
    r = te.nsx(a, te.IPSENTRY, "enforce", "--cleanup", "--socket", other_sock)
    check(r.returncode == 0, "once it stopped, --cleanup runs (nothing left to remove)")


def scenario_rules_deleted(tmp):
    print("# someone deletes the chains with iptables: backstop, guard, gap")
    a, b, ca, cb, ea, eb = start_pair(tmp, "del")
    sink = UdpSink(b, B, 6000, 9, te.PROCS)
    cap = te.Capture(b, "eb", os.path.join(tmp, "deleted.pcap"), "not arp")
    stream = subprocess.Popen(["ip", "netns", "exec", a, "/usr/bin/python3", "-c", UDP_STREAM, B, "6000", "7"],
                              stdout=subprocess.PIPE, text=True)
    te.PROCS.append(stream)
    time.sleep(1)

    def attack(cmd, jump):
        """Runs `cmd` in a; returns (seconds until `jump` is back, its log line)."""
        t0 = time.time()
        te.nsx(a, "sh", "-c", cmd)
        while time.time() - t0 < 5:
            if jump in te.nsx(a, "iptables-save").stdout:
                return time.time() - t0
            time.sleep(0.005)
        return None

    gap1 = attack("iptables -t mangle -D OUTPUT -j IPSENTRY-OUT; iptables -t mangle -F IPSENTRY-OUT; "
                  "iptables -t mangle -X IPSENTRY-OUT", "-A OUTPUT -j IPSENTRY-OUT")
    time.sleep(1.5)
    t_second = time.time()
    gap2 = attack("iptables -t mangle -F; iptables -t filter -F", "-A OUTPUT -j IPSENTRY-GUARD-OUT")
    time.sleep(1)
    n_sent = int(stream.communicate(timeout=20)[0] or 0)
    got = sink.proc.communicate(timeout=20)[0].split()
    cap.stop()
    check(gap1 is not None and gap1 < 1.5,
          f"the mangle chain deleted by hand is reinstalled by the guard in {ms(gap1)}")
    check(gap2 is not None and gap2 < 1.5,
          f"mangle and filter flushed (the backstop too) are reinstalled in {ms(gap2)}")
    # Cleartext on the wire, split at the second attack.
    rows = te.tshark(cap.path, "-Y", f"ip.addr == {A} and ip.addr == {B} and not esp", "-T", "fields", "-e",
                     "frame.time_epoch").split()
    first = [float(t) for t in rows if float(t) < t_second]
    second = [float(t) for t in rows if float(t) >= t_second]
    check(not first, f"while only the mangle chain was gone, the filter backstop let no cleartext out "
                     f"({len(first)} packets)")
    print(f"info: with the backstop flushed too, {len(second)} cleartext packet(s) of a {n_sent}-datagram stream "
          f"(one every 2 ms) left in the {ms(gap2)} it took to notice and reinstall")
    check(len(second) <= 100, f"... and what leaked in that gap stays within it ({len(second)} packets)")
    s = ea.stats()
    guard = (s or {}).get("guard", {})
    check(guard.get("rules_restored", 0) >= 2, f"stats count the reinstalls ({guard})")
    log = ea.log_text()
    check("rules-restored" in log and "IPSENTRY-OUT" in log, "the log says what was changed and that it was put back")
    check(len(got) > 0.8 * n_sent, f"the stream kept arriving ({len(got)} of {n_sent} datagrams)")
    n, _ = te.ping(a, B, 3)
    check(n == 3, "traffic flows after the reinstall")
    ea.stop()
    eb.stop()
    check(te.rules(a) == 0, "SIGTERM still removes every rule, the backstop included")


def scenario_queue_busy(tmp):
    print("# an NFQUEUE queue held by another program")
    ns = te.ns_add("qb")
    holder = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", NFQ_HOLDER, "7"],
                              stdout=subprocess.PIPE, text=True)
    te.PROCS.append(holder)
    line = holder.stdout.readline().strip()
    check(line == "bound", f"a raw netlink program binds queue 7 ({line})")
    cfg = esp_config(os.path.join(tmp, "qb.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    r = te.nsx(ns, te.IPSENTRY, "enforce", "-c", cfg, "--queue", "7", "--socket", os.path.join(tmp, "qb.sock"),
               "--state-dir", os.path.join(tmp, "qb-state"))
    check(r.returncode == 2 and "queue 7 is already bound by another process" in r.stderr and "--queue" in r.stderr
          and "CAP_NET_ADMIN" not in r.stderr,
          f"enforce names the real cause, not privileges ({r.stderr.strip().splitlines()[-1][:150]})")
    check(te.rules(ns) == 0, "and leaves no rule behind")
    holder.kill()


def edit(path, *pairs):
    text = open(path).read()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    open(path, "w").write(text)


def rename_config(path, old_name, new_name):
    edit(path, (f"- name: {old_name}\n", f"- name: {new_name}\n"), (f"sas: [{old_name}, in]", f"sas: [{new_name}, in]"))


def scenario_rename(tmp):
    print("# an SA renamed + SIGHUP: same key, sequence numbers continue")
    a, b, ca, cb, ea, eb = start_pair(tmp, "ren")
    cap = te.Capture(b, "eb", os.path.join(tmp, "rename.pcap"), "esp")
    n1, _ = te.ping(a, B, 5)
    rename_config(ca, "out", "out-renamed")
    ea.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    n2, _ = te.ping(a, B, 5)
    # And back, the same key under its first name again.
    rename_config(ca, "out-renamed", "out")
    ea.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    n3, _ = te.ping(a, B, 5)
    cap.stop()
    seqs = esp_seqs(cap.path, "0x00001001")
    dup = sorted({q for q in seqs if seqs.count(q) > 1})
    check(n1 == 5 and n2 == 5 and n3 == 5, f"pings work across both renames ({n1}, {n2}, {n3} of 5)")
    check(len(seqs) == 15 and not dup,
          f"no (key, sequence number) pair twice on the wire: {len(seqs)} packets, repeated {dup[:5]}")
    check(seqs == sorted(seqs) and seqs[-1] - seqs[0] == 14,
          f"the renamed SA continued exactly where it was ({seqs[0]}..{seqs[-1]})")
    check("has the same keys" in ea.log_text(), "the reload says the renamed SA kept its sequence numbers")
    s = eb.stats()
    check(s["quick_mode"]["packets_with_replay_detection"] == 0, "the peer saw no replay")
    # A new key under the old name is a new SA: it starts at 1, on both sides.
    new_key = "0f" * 20
    for path in (ca, cb):
        edit(path, (GCM_AB, new_key))
    cap = te.Capture(b, "eb", os.path.join(tmp, "rekey.pcap"), "esp")
    ea.proc.send_signal(signal.SIGHUP)
    eb.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    n4, _ = te.ping(a, B, 3)
    cap.stop()
    seqs = esp_seqs(cap.path, "0x00001001")
    check(n4 == 3 and seqs == [1, 2, 3],
          f"a new key under the same name starts afresh, not above the old key's numbers ({seqs}, {n4}/3 pings)")
    ea.stop()
    eb.stop()


def scenario_shared_state_dir(tmp):
    print("# two enforcements with one --state-dir")
    a, b, ca, cb, ea, eb = start_pair(tmp, "sd")
    c = te.ns_add("sdc")
    cfg = esp_config(os.path.join(tmp, "sdc.yaml"), "192.0.2.3", B, "0x1101", GCM_AB[::-1], "0x1102", GCM_BA[::-1])
    before = open(os.path.join(ea.state, "sa-state.json")).read()
    rc, err = run_briefly(c, "enforce", "-c", cfg, "--socket", os.path.join(tmp, "sdc.sock"), "--state-dir", ea.state)
    check(rc == 2 and f"state directory {ea.state} is in use" in err and f"pid {ea.proc.pid}" in err,
          f"a second enforcement on the same --state-dir exits 2 naming the holder ({last_line(err)})")
    after = open(os.path.join(ea.state, "sa-state.json")).read()
    check(json.loads(after).get("salt") == json.loads(before).get("salt") and "1101" not in after,
          "the state file is untouched by it")
    check(te.rules(c) == 0, "and it installed nothing in its namespace")
    ea.stop()
    eb.stop()


REPLAY = r"""
import sys
from scapy.all import rdpcap, sendp, Ether, ESP, IP
frames = [p for p in rdpcap(sys.argv[1]) if IP in p and ESP in p and p[ESP].spi == 0x1002]
last = frames[-1]
print(last[ESP].seq, flush=True)
sendp(last, iface=sys.argv[2], verbose=False)
"""


def scenario_kill_restart(tmp):
    print("# kill -9 and restart: sequence numbers continue, a replay of the last accepted packet is refused")
    a, b, ca, cb, ea, eb = start_pair(tmp, "k9")
    cap1 = te.Capture(b, "eb", os.path.join(tmp, "k9-before.pcap"), "esp")
    te.ping(a, B, 5)
    # b sends one datagram to a; the moment a has delivered it, a is killed.
    sink = UdpSink(a, A, 6001, 5, te.PROCS)
    te.nsx(b, "/usr/bin/python3", "-c",
           f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'replay-me', ('{A}', 6001))")
    delivered = False
    for line in sink.proc.stdout:
        if "replay-me" in line:
            delivered = True
            ea.proc.kill()
            break
    ea.proc.wait(timeout=10)
    sink.proc.kill()
    cap1.stop()
    check(delivered, "a delivered b's datagram, then was killed with SIGKILL")
    before_out = esp_seqs(cap1.path, "0x00001001")
    check(ea.start(), "a restarts on the same state directory (no --cleanup needed)")
    cap2 = te.Capture(b, "eb", os.path.join(tmp, "k9-after.pcap"), "esp")
    sink = UdpSink(a, A, 6001, 3, te.PROCS)
    replays_before = ea.stats()["quick_mode"]["packets_with_replay_detection"]
    r = te.nsx(b, "/usr/bin/python3", "-c", REPLAY, cap1.path, "eb")
    got = sink.proc.communicate(timeout=10)[0]
    check(r.returncode == 0 and "replay-me" not in got,
          f"the last packet a accepted before the crash (seq {r.stdout.strip()}), replayed after the restart, is "
          f"not delivered")
    s = ea.stats()
    check(s["quick_mode"]["packets_with_replay_detection"] == replays_before + 1,
          "... and it is counted as a replay")
    te.ping(a, B, 5)
    cap2.stop()
    after_out = esp_seqs(cap2.path, "0x00001001")
    check(before_out and after_out and min(after_out) > max(before_out) and len(set(before_out + after_out)) ==
          len(before_out + after_out),
          f"a's sequence numbers after the restart ({after_out[:1]}..) are above every one it sent before "
          f"(..{before_out[-1:]}): no (key, sequence number) pair twice on the wire")
    check(s.get("key_memory") == "locked", f"key memory is locked ({s.get('key_memory')})")
    ea.stop()
    eb.stop()


def scenario_key_hygiene(tmp):
    print("# keys shared between SAs, and keys other users can read")
    shared = esp_config(os.path.join(tmp, "shared.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_AB)
    os.chmod(shared, 0o600)
    ns = te.ns_add("kh")
    rc, err = run_briefly(ns, "enforce", "-c", shared, "--socket", os.path.join(tmp, "kh.sock"), "--state-dir",
                          os.path.join(tmp, "kh-state"))
    check(rc == 2 and "SAs out" in err and " in " in err and "both directions" in err,
          f"enforce refuses two SAs sharing one AES-GCM key, naming both ({last_line(err)})")
    check(te.rules(ns) == 0, "and installs nothing")
    r = sh(te.IPSENTRY, "config", "check", shared, check=False)
    check(r.returncode == 0 and "share one aes-gcm-16 key" in r.stderr, "config check warns about it")
    loose = esp_config(os.path.join(tmp, "loose.yaml"), A, B, "0x1001", GCM_AB, "0x1002", GCM_BA)
    os.chmod(loose, 0o644)
    r = sh(te.IPSENTRY, "config", "check", loose, check=False)
    check(f"{loose} holds keys and is readable by its group and all other users (mode 0644)" in r.stderr
          and f"chmod go-rwx {loose}" in r.stderr, f"config check warns about a 0644 file holding keys "
                                                   f"({r.stderr.strip()[:140]})")
    keyfile = os.path.join(tmp, "gcm.key")
    open(keyfile, "wb").write(bytes.fromhex(GCM_AB))
    os.chmod(keyfile, 0o640)
    kf = os.path.join(tmp, "keyfile.yaml")
    open(kf, "w").write(open(loose).read().replace(f"enc_key: 0x{GCM_AB}", f"key_file: {keyfile}"))
    os.chmod(kf, 0o600)
    r = sh(te.IPSENTRY, "config", "check", kf, check=False)
    check(f"{keyfile} holds keys and is readable by its group (mode 0640)" in r.stderr and kf not in r.stderr,
          "a key_file its group can read is named; the 0600 configuration that only points at it is not")
    pcap = os.path.join(os.path.dirname(__file__), "..", "..", "samples")
    any_pcap = next((os.path.join(pcap, f) for f in sorted(os.listdir(pcap)) if f.endswith(".pcap")), None)
    if any_pcap:
        r = sh(te.IPSENTRY, "verify", any_pcap, "-c", loose, "-q", check=False)
        check("readable by its group and all other users" in r.stderr, "verify warns the same way")


def main():
    te.IPSENTRY = ipsentry_as_root()
    if te.IPSENTRY is None:
        return 77
    only = os.environ.get("ONLY")
    scenarios = [("second", scenario_second_instance), ("deleted", scenario_rules_deleted),
                 ("queue", scenario_queue_busy), ("rename", scenario_rename), ("statedir", scenario_shared_state_dir),
                 ("kill", scenario_kill_restart), ("keys", scenario_key_hygiene)]
    with tempfile.TemporaryDirectory(prefix="ipsentry-instances-") as tmp:
        os.chmod(tmp, 0o755)
        for name, fn in scenarios:
            if only in (None, name):
                run_scenario(name, fn, tmp, te.FAILS, te.cleanup)
    print(f"{len(te.FAILS)} failure(s)" if te.FAILS else "all instance checks passed")
    return 1 if te.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
