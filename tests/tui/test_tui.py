#!/usr/bin/python3
"""`ipsentry tui` driven through tmux (send-keys, capture-pane), as a user
would: the packet list's verdicts, the decrypted tree, the hex highlight of
the SPI, the display filter, the statistics against `ipsentry verify
--json`, the IKE screen, saving, resizing, the terminal restored after
Ctrl-C and a crash, then (as root) a live capture between two network
namespaces and the SA monitor attached to a running enforcement.

Documentation addresses only; every namespace and tmux server is removed
at the end, whatever happened."""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from netns import VethPair, remove_namespace, sh  # noqa: E402
from ike_capture import failed_negotiations  # noqa: E402
from ipsec_configs import GCM_AB, GCM_BA, esp_config, wide_config  # noqa: E402
from table_check import columns_aligned  # noqa: E402

IPSENTRY = None
SOCKET = f"ipsentry-tui-test-{os.getpid()}"
FAILED = []
SAMPLES = os.path.join(ROOT, "samples")
FAULTS = os.path.join(SAMPLES, "esp-tunnel-faults.pcap")
TUNNEL_CFG = os.path.join(SAMPLES, "esp-tunnel.yaml")
PEERS = os.path.join(ROOT, "tests", "corpus", "peers")
IKE_PCAP = os.path.join(PEERS, "wireshark", "ikev2-decrypt-aes256cbc.pcapng")
IKE_KEYS = os.path.join(PEERS, "wireshark", "ikev2_decryption_table.tmpl")


def check(ok, what):
    print(("ok     " if ok else "FAILED ") + what, flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def tmux(*args, check_rc=True):
    r = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class Tui:
    """One `ipsentry tui` in its own tmux window of a given size. The command
    runs under sh so that the terminal state after ipsentry exits can be
    read back (stty -a)."""

    count = 0

    def __init__(self, args, width=200, height=50, tmp=None, prefix=""):
        Tui.count += 1
        self.name = f"w{Tui.count}"
        self.stty = os.path.join(tmp, f"{self.name}.stty")
        self.rc = os.path.join(tmp, f"{self.name}.rc")
        cmd = " ".join(f"'{a}'" for a in [IPSENTRY, "tui", *args])
        # The shell ignores SIGINT so that it outlives a Ctrl-C meant for
        # ipsentry (which installs its own handler) and can report on it.
        shell = (f"trap '' INT; {prefix}{cmd} 2>{tmp}/{self.name}.err; echo $? > {self.rc}; "
                 f"stty -a > {self.stty}; sleep 600")
        tmux("new-window", "-d", "-t", "main", "-n", self.name, "env", "LANG=C.UTF-8", "TERM=screen-256color",
             "sh", "-c", shell)
        self.resize(width, height)

    def resize(self, width, height):
        tmux("resize-window", "-t", f"main:{self.name}", "-x", str(width), "-y", str(height))

    def keys(self, *keys, literal=False):
        tmux("send-keys", "-t", f"main:{self.name}", *(["-l"] if literal else []), *keys)
        time.sleep(0.15)

    def type(self, text):
        self.keys(text, literal=True)

    def screen(self, escapes=False):
        return tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", f"main:{self.name}")

    def wait_for(self, pred, timeout=10.0, escapes=False):
        """The screen once `pred` holds for it and still holds a moment
        later: tmux may show a redraw half-written (the terminal receives
        it in pieces), so one matching capture is not yet the screen."""
        end = time.time() + timeout
        s = self.screen(escapes)
        while time.time() < end:
            s = self.screen(escapes)
            if pred(s):
                time.sleep(0.08)
                s = self.screen(escapes)
                if pred(s):
                    return s
            time.sleep(0.05)
        return s

    def pid(self):
        out = tmux("list-panes", "-t", f"main:{self.name}", "-F", "#{pane_pid}").split()
        shell = int(out[0])
        kids = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
        return [int(k) for k in kids]

    def exit_code(self, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.stty) and os.path.getsize(self.stty) > 0:
                return int(open(self.rc).read().strip() or -1)
            time.sleep(0.05)
        return None

    def terminal_restored(self):
        text = open(self.stty).read() if os.path.exists(self.stty) else ""
        words = text.split()
        return "icanon" in words and "echo" in words

    def dump(self, name):
        """With DUMP_DIR set, keeps the screen as text at this size and at
        80x24 (for the record of what each screen looks like)."""
        out = os.environ.get("DUMP_DIR")
        if not out:
            return
        size = tmux("display-message", "-p", "-t", f"main:{self.name}", "#{window_width} #{window_height}").split()
        for w, h in ((int(size[0]), int(size[1])), (80, 24)):
            self.resize(w, h)
            time.sleep(0.5)
            with open(os.path.join(out, f"{name}-{w}x{h}.txt"), "w") as f:
                f.write("\n".join(l.rstrip() for l in self.screen().splitlines()) + "\n")
        self.resize(int(size[0]), int(size[1]))
        time.sleep(0.3)

    def close(self):
        tmux("kill-window", "-t", f"main:{self.name}", check_rc=False)


def list_rows(screen):
    """(frame, verdict) of the packet list's rows."""
    rows = {}
    for line in screen.splitlines()[2:]:
        if line.startswith("─"):
            break
        m = re.match(r"^\s*(\d+) \S+\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            rows[int(m.group(1))] = m.group(5)
    return rows


def verify_json(*args):
    r = subprocess.run([IPSENTRY, "verify", "--json", *args], capture_output=True, text=True)
    return json.loads(r.stdout)


# ---------------------------------------------------------------------------


def scenario_offline(tmp):
    print("# offline: the tampered sample")
    ref = verify_json(FAULTS, "-c", TUNNEL_CFG)
    expected = {p["frame"]: p["verdict"] for p in ref["packets"]}
    t = Tui([FAULTS, "-c", TUNNEL_CFG], 200, 50, tmp)
    s = t.wait_for(lambda s: len(list_rows(s)) == len(expected) and " 11 of 11 frames" in s)
    rows = list_rows(s)
    check(rows == expected, f"the list shows the verdicts verify gives, frame by frame ({rows})")
    check(" 11 of 11 frames" in s, "the status line counts the frames")
    t.dump("offline-packets")

    # Frame 1: the tree shows the decrypted inner ICMP under the ESP node.
    t.keys("Home")
    s = t.wait_for(lambda s: "Decrypted inner packet" in s)
    tree = s[s.index("─ Frame 1"):]
    check("Verdict: ok — ICV verified (SA gw1-to-gw2" in tree, "the tree gives the verdict and the SA under ESP")
    check("Decrypted inner packet (ESP SPI 0xc0ffee01, 76 bytes)" in tree and
          "Internet Control Message Protocol, echo request" in tree and
          "Internet Protocol Version 4, 192.0.2.10 → 192.0.2.130" in tree,
          "the tree shows the decrypted inner IPv4 / ICMP echo request")

    # The SPI node selected: its four bytes are highlighted in the hex pane.
    t.keys("Tab")
    t.keys("Home")
    for _ in range(40):
        sel = [l for l in t.screen(escapes=True).splitlines() if "\x1b[1;7m" in l and "SPI: 0x" in l]
        if sel:
            break
        t.keys("Down")
    check(bool(sel), "the SPI node can be selected in the tree")
    s = t.wait_for(lambda s: "selected: 0x0022-0x0025 (4 bytes)" in s, 3)
    check("selected: 0x0022-0x0025 (4 bytes)" in s, "the hex pane names the SPI's bytes (offset 0x22, 4 bytes)")

    def marked(screen):
        found = []
        for line in screen.splitlines():
            if re.match(r"^[0-9a-f]{4}  ", line):
                found += re.findall(r"\x1b\[1;7m([0-9a-f]{2})\x1b", line)
        return "".join(found)
    s = t.wait_for(lambda s: marked(s) == "c0ffee01", 3, escapes=True)
    check(marked(s) == "c0ffee01", f"exactly the SPI bytes are highlighted ({marked(s)})")
    t.dump("offline-packets-spi")

    # Decrypted bytes.
    t.keys("d")
    s = t.wait_for(lambda s: "Decrypted inner packet (76 bytes)" in s)
    check("─ Decrypted inner packet (76 bytes)" in s and "0000  45 00 00 4c" in s,
          "d shows the decrypted inner packet's bytes (an IPv4 header, 76 bytes)")
    t.keys("d")

    # The display filter: errors inline, then exactly the failed frames.
    t.keys("Escape")
    t.keys("/")
    t.type("verdict == fine")
    s = t.wait_for(lambda s: "is not a verdict" in s)
    check("at 12: 'fine' is not a verdict: ok, icv-fail" in s, "a bad filter shows its error inline as it is typed")
    t.keys("Enter")
    # The error (with the audit's verdicts, longer than the room beside the
    # input) may cover the status line: the list itself must stay whole.
    s = t.wait_for(lambda s: len(list_rows(s)) == 11 and "is not a verdict" in s, 3)
    check(len(list_rows(s)) == 11 and "is not a verdict" in s, "Enter does not apply a filter with an error")
    t.keys("C-u")
    t.type("verdict != ok")
    t.keys("Enter")
    s = t.wait_for(lambda s: "4 of 11 frames" in s)
    failed = sorted(f for f, v in expected.items() if v != "ok")
    check(sorted(list_rows(s)) == failed, f"'verdict != ok' lists exactly the failed frames {failed}")
    t.dump("offline-filter")
    save = os.path.join(tmp, "failed.pcap")
    t.keys("w")
    t.keys("C-u")
    t.type(save)
    t.keys("Enter")
    s = t.wait_for(lambda s: "wrote" in s)
    n = subprocess.run(["tshark", "-r", save, "-T", "fields", "-e", "esp.sequence"], capture_output=True,
                       text=True).stdout.split()
    check("wrote 4 frames" in s and n == ["4", "2", "4", "5"],
          f"w saves the displayed frames; tshark reads them back ({n})")
    t.keys("/")
    t.keys("C-u")
    t.keys("Enter")
    t.wait_for(lambda s: " 11 of 11 frames" in s)

    # Decrypted frames saved: the same packets verify -w writes.
    dec = os.path.join(tmp, "decrypted.pcap")
    ref_dec = os.path.join(tmp, "verify-decrypted.pcap")
    subprocess.run([IPSENTRY, "verify", FAULTS, "-c", TUNNEL_CFG, "-q", "-w", ref_dec], capture_output=True)
    t.keys("W")
    t.keys("C-u")
    t.type(dec)
    t.keys("Enter")
    s = t.wait_for(lambda s: "wrote" in s)
    fields = ["-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.seq", "-e", "tcp.srcport"]
    ours = subprocess.run(["tshark", "-r", dec, *fields], capture_output=True, text=True).stdout
    theirs = subprocess.run(["tshark", "-r", ref_dec, *fields], capture_output=True, text=True).stdout
    check("wrote 7 decrypted frames" in s and ours == theirs and ours.count("\n") == 7,
          "W saves the decrypted packets: the same 7 as 'verify -w' (tshark)")

    # Go to, find.
    t.keys("g")
    t.type("9")
    t.keys("Enter")
    s = t.wait_for(lambda s: "─ Frame 9" in s)
    check("─ Frame 9" in s, "g 9 selects frame 9")
    t.keys("Home")
    t.keys("f")
    t.type("spi == 0xdeadbeef")
    t.keys("Enter")
    s = t.wait_for(lambda s: "─ Frame 9" in s)
    check("─ Frame 9" in s, "find 'spi == 0xdeadbeef' goes to frame 9")

    # Statistics screen = verify --json.
    t.keys("3")
    s = t.wait_for(lambda s: "Quick Mode" in s)
    def value(name):
        m = re.search(r"^  " + re.escape(name) + r"\s+(\d+)\s*$", s, re.M)
        return int(m.group(1)) if m else None
    mon = ref["statistics"]["ip_security_monitor"]
    pairs = [("Active Security Associations", mon["active_security_associations"]),
             ("Bad SPI Packets", mon["bad_spi_packets"]),
             ("Packets Not Decrypted", mon["packets_not_decrypted"]),
             ("Packets Not Authenticated", mon["packets_not_authenticated"]),
             ("Packets With Replay Detection", mon["packets_with_replay_detection"]),
             ("Confidential Bytes Received", mon["confidential_bytes_received"]),
             ("Authenticated Bytes Received", mon["authenticated_bytes_received"]),
             ("Transport Bytes Received", mon["transport_bytes_received"]),
             ("Bytes Received In Tunnels", mon["bytes_received_in_tunnels"]),
             ("IPsec packets", ref["statistics"]["ipsec_packets"]),
             ("Total", ref["statistics"]["frames"]["total"]),
             ("Bytes", ref["statistics"]["frames"]["bytes"])]
    pairs += [(k, v) for k, v in ref["statistics"]["verdicts"].items()]
    bad = [(k, value(k), v) for k, v in pairs if value(k) != v]
    check(not bad, f"the statistics screen shows the numbers of verify --json ({len(pairs)} rows; differ: {bad})")
    t.dump("offline-stats")

    # SA monitor.
    t.keys("2")
    s = t.wait_for(lambda s: "gw1-to-gw2" in s)
    sas = {sa["name"]: sa for sa in ref["security_associations"]}
    ok = True
    for name, sa in sas.items():
        line = next((l for l in s.splitlines() if l.startswith(name + " ")), "")
        total = sum(sa["verdicts"].values())
        errors = total - sa["verdicts"]["ok"]
        nums = re.findall(r"\s(\d+)\s+(\d+)\s+(\d+)\s+top (\d+)", line)
        ok = ok and bool(nums) and nums[0][0] == str(total) and nums[0][1] == str(sa["received"]["bytes"]) and \
            nums[0][2] == str(errors) and nums[0][3] == str(sa["highest_seq"])
    check(ok, "the SA monitor shows each SA's packets, bytes, errors and replay top as verify --json")
    t.dump("offline-sas")

    # Help, resize, quit.
    t.keys("?")
    s = t.wait_for(lambda s: "Display filter" in s)
    check("Display filter" in s and "verdict != ok" in s, "? shows the keys and the filter language")
    t.dump("help")
    t.keys("Escape")
    t.keys("1")
    t.resize(80, 24)
    s = t.wait_for(lambda s: len(s.splitlines()) == 24 and "─ Frame" in s)
    lines = s.splitlines()
    check(len(lines) == 24 and lines[0].startswith(" ipsentry") and "frames" in lines[22] and
          max(len(l) for l in lines) <= 80, "after a resize to 80×24 every pane is redrawn to fit")
    t.resize(200, 50)
    s = t.wait_for(lambda s: len(list_rows(s)) == 11)
    check(len(list_rows(s)) == 11, "and back at 200×50 the list shows every frame again")
    t.keys("q")
    check(t.exit_code() == 0 and t.terminal_restored(), "q exits 0 and the terminal is back in canonical mode")
    t.close()


def scenario_ike(tmp):
    print("# IKE negotiations")
    if not os.path.exists(IKE_PCAP):
        check(False, f"the peer corpus capture {IKE_PCAP} is missing")
        return
    ref = verify_json(IKE_PCAP, "--keys-from", "wireshark-ikev2", IKE_KEYS)
    t = Tui([IKE_PCAP, "--keys-from", "wireshark-ikev2", IKE_KEYS], 200, 50, tmp)
    t.wait_for(lambda s: "4 of 4 frames" in s)
    t.keys("4")
    s = t.wait_for(lambda s: "established" in s)
    negs = ref["ike"]["negotiations"]
    rows = [l for l in s.splitlines() if re.match(r"^\s+\d+ v\d ", l)]
    same = len(rows) == len(negs) and all(n["exchange"] in r and n["outcome"] in r and
                                          (n["proposal"] or "") in r for r, n in zip(rows, negs))
    check(same, f"one row per negotiation with exchange, outcome and proposal as verify --json ({len(rows)})")
    t.dump("ike-negotiations")
    for i in range(len(negs)):
        t.keys("4")
        t.keys("Home")
        for _ in range(i):
            t.keys("Down")
        t.keys("Enter")
        s = t.wait_for(lambda s, i=i: f"negotiation {i + 1} " in s)
        frames = sorted(list_rows(s))
        check(frames == sorted(negs[i]["frames"]),
              f"Enter on negotiation {i + 1} ({negs[i]['exchange']}) lists its packets {frames}")
    t.keys("Home")
    t.keys("Tab")
    def tree_pane(s):
        """The tree pane's lines: from its title to the bytes pane's."""
        lines = s.splitlines()
        start = next((i for i, l in enumerate(lines) if l.startswith("─ Frame 3")), None)
        if start is None:
            return ""
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("─ ")), len(lines))
        return "\n".join(lines[start:end])
    s = t.wait_for(lambda s: "Identification - Initiator payload" in tree_pane(s))
    tree = tree_pane(s)
    check("- Decryption: decrypted" in tree and "Identification - Initiator payload: ID_IPV4_ADDR (1) 192.168.1.2"
          in tree and "Authentication payload" in tree,
          "the tree opens at the IKE message with its decrypted payloads in view")
    t.dump("ike-tree")
    t.keys("C-c")
    check(t.exit_code() is not None and t.terminal_restored(), "Ctrl-C ends the TUI and restores the terminal")
    t.close()


def scenario_crash_and_errors(tmp):
    print("# crash signal, errors")
    t = Tui([FAULTS, "-c", TUNNEL_CFG], 80, 24, tmp)
    t.wait_for(lambda s: "11 frames" in s)
    pids = t.pid()
    for p in pids:
        os.kill(p, signal.SIGSEGV)
    rc = t.exit_code()
    check(rc is not None and rc >= 128 and t.terminal_restored(),
          f"after SIGSEGV (exit {rc}) the terminal is restored (stty shows icanon echo)")
    t.close()
    r = subprocess.run([IPSENTRY, "tui", FAULTS], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    check(r.returncode == 2 and "needs a terminal" in r.stderr, "without a terminal: exit 2 and a clear message")
    for args, words in (([os.path.join(tmp, "missing.pcap")], "missing.pcap"),
                        ([FAULTS, "-i", "lo"], "give one of"),
                        ([FAULTS, "-Y", "verdict ="], "display filter"),
                        ([FAULTS, "--attach"], "give one of")):
        t = Tui(args, 120, 20, tmp)
        rc = t.exit_code()
        err = open(os.path.join(tmp, f"{t.name}.err")).read()
        check(rc == 2 and words in err, f"tui {' '.join(os.path.basename(a) for a in args)}: exit 2, '{err.strip()}'")
        t.close()


def scenario_reporting(tmp):
    print("# IKE verdicts, TERM, narrow hex pane, long and non-ASCII filters, SA columns")
    cap = os.path.join(tmp, "ike-failed.pcap")
    want = failed_negotiations(cap)
    t = Tui([cap], 200, 50, tmp)
    s = t.wait_for(lambda s: list_rows(s) == want)
    check(list_rows(s) == want, f"IKE frames carry the verdicts verify gives ({list_rows(s)}, expected {want})")
    failing = sorted(f for f, v in want.items() if v != "ok")
    t.keys("/")
    t.type("ike and verdict != ok")
    t.keys("Enter")
    s = t.wait_for(lambda s: sorted(list_rows(s)) == failing)
    check(sorted(list_rows(s)) == failing, f"'ike and verdict != ok' finds the failed negotiations ({list_rows(s)})")
    t.keys("/")
    t.keys("C-u")
    t.type("verdict == ike-fail")
    t.keys("Enter")
    s = t.wait_for(lambda s: sorted(list_rows(s)) == failing)
    check(sorted(list_rows(s)) == failing, f"'verdict == ike-fail' names them ({list_rows(s)})")
    t.keys("q")
    t.close()

    for prefix, words in (("TERM=xterm-nosuch ", "TERM=xterm-nosuch is not a terminal type this system knows"),
                          ("env -u TERM ", "TERM is not set")):
        t = Tui([FAULTS, "-c", TUNNEL_CFG], 80, 24, tmp, prefix=prefix)
        rc = t.exit_code()
        err = open(os.path.join(tmp, f"{t.name}.err")).read()
        check(rc == 2 and err.startswith("ipsentry: error: ") and words in err and "TERM=xterm-256color" in err,
              f"{prefix.strip()}: exit 2 and what to do ({rc}, '{err.strip()}')")
        t.close()

    # Under 72 columns the bytes pane shows 8 bytes a line, every line whole.
    t = Tui([FAULTS, "-c", TUNNEL_CFG], 60, 40, tmp)
    t.wait_for(lambda s: "11 of 11 frames" in s)
    t.keys("Home")

    def hex_lines(screen):
        return [l.rstrip() for l in screen.splitlines() if re.match(r"^[0-9a-f]{4}  [0-9a-f]{2} ", l)]
    s = t.wait_for(lambda s: len(hex_lines(s)) >= 3)
    lines = hex_lines(s)
    whole = r"^([0-9a-f]{4})  (?:[0-9a-f]{2} ){7}[0-9a-f]{2}  (.{8})$"
    ok = len(lines) >= 3 and all(re.match(whole, l) for l in lines[:-1])
    ok = ok and [int(re.match(r"^[0-9a-f]{4}", l).group(0), 16) for l in lines] == [8 * i for i in range(len(lines))]
    check(ok, "at 60 columns each bytes line holds 8 bytes and their characters: " + " | ".join(lines[:3]))
    t.dump("narrow-hex")

    # A filter longer than the line scrolls, its end and the cursor in view.
    expr = "frame in {" + " ".join(str(i) for i in range(1, 40)) + "}"
    t.keys("/")
    t.type(expr)
    s = t.wait_for(lambda s: s.splitlines()[-1].rstrip().endswith("38 39}"))
    last = s.splitlines()[-1].rstrip()
    check(last.startswith("Filter: …") and last.endswith("38 39}") and "ok (Enter applies" in s,
          f"a filter longer than the screen scrolls to its end ({last!r})")
    t.keys("Enter")
    s = t.wait_for(lambda s: "11 of 11 frames match" in s)
    check("11 of 11 frames match" in s, "and it applies")
    # Non-ASCII is taken, shown and named in the error, and Backspace takes it back whole.
    t.keys("/")
    t.keys("C-u")
    t.type("é")
    s = t.wait_for(lambda s: "unexpected character" in s)
    check("Filter: é" in s and "at 1: unexpected character 'é'" in s, "a non-ASCII character reaches the filter")
    t.keys("BSpace")
    s = t.wait_for(lambda s: "unexpected character" not in s)
    check(s.splitlines()[-1].rstrip() == "Filter:", f"Backspace removes it whole ({s.splitlines()[-1]!r})")
    t.keys("Escape")
    t.keys("q")
    t.close()

    # The SA monitor: long IPv6 peers and an SA without a mode keep the columns in line.
    cfg = wide_config(os.path.join(tmp, "wide.yaml"))
    t = Tui([FAULTS, "-c", TUNNEL_CFG, "-c", cfg], 250, 30, tmp)
    t.wait_for(lambda s: "11 of 11 frames" in s)
    t.keys("2")
    s = t.wait_for(lambda s: "unspecified" in s and "Algorithms" in s)
    lines = s.splitlines()
    head = next((i for i, l in enumerate(lines) if l.startswith("Name ")), None)
    table = [l.rstrip() for l in lines[head:head + 5]] if head is not None else [""]
    err = columns_aligned(table, ["Name", "SPI", "Dir", ">Packets", ">Bytes", ">Errors", "Replay", "State",
                                  "Lifetime left", "Proto", "Mode", "Algorithms", "Peers"])
    check(err is None, f"the SA monitor's columns line up with an unspecified mode and long IPv6 peers: {err}")
    t.dump("sa-monitor-wide")


def scenario_save_prompt(tmp):
    """w and W never replace a file unasked, and never the capture on screen
    (issue 15 item 14)."""
    print("# save: existing files and the open capture")
    shown = os.path.join(tmp, "shown.pcap")
    shutil.copyfile(FAULTS, shown)
    link = os.path.join(tmp, "shown-link.pcap")
    os.symlink(shown, link)
    other = os.path.join(tmp, "other.pcap")
    with open(other, "w") as f:
        f.write("keep me\n")

    def digest(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    before = digest(shown)
    t = Tui([shown, "-c", TUNNEL_CFG], 160, 30, tmp)
    t.wait_for(lambda s: " 11 of 11 frames" in s)

    def save(key, path):
        t.keys(key)
        t.keys("C-u")
        t.type(path)
        t.keys("Enter")

    for key in ("w", "W"):
        for path in (shown, link):
            save(key, path)
            s = t.wait_for(lambda s: "is the capture being shown" in s or "wrote" in s, 3)
            check("is the capture being shown" in s and digest(shown) == before and os.path.islink(link),
                  f"{key} to the open capture ({os.path.basename(path)}) is refused and leaves it as it was")
    for key in ("w", "W"):
        save(key, other)
        s = t.wait_for(lambda s: "exists: overwrite it? (y/n)" in s or "wrote" in s, 3)
        check("other.pcap' exists: overwrite it? (y/n)" in s, f"{key} to an existing file asks first")
        t.keys("n")
        s = t.wait_for(lambda s: "not saved" in s, 3)
        check("not saved" in s and open(other).read() == "keep me\n", f"{key}, then n: the file is left as it was")
    save("w", other)
    t.wait_for(lambda s: "exists: overwrite it?" in s, 3)
    t.keys("y")
    s = t.wait_for(lambda s: "wrote" in s, 3)
    n = subprocess.run(["tshark", "-r", other, "-T", "fields", "-e", "frame.number"], capture_output=True,
                       text=True).stdout.split()
    check("wrote 11 frames" in s and len(n) == 11, f"w, then y: the file is replaced ({len(n)} frames)")
    fresh = os.path.join(tmp, "fresh.pcap")
    save("w", fresh)
    s = t.wait_for(lambda s: "wrote" in s, 3)
    check("wrote 11 frames" in s and os.path.exists(fresh), "w to a new file writes without asking")
    t.keys("q")
    t.close()


def leak_capture(path):
    """The sample tunnel with one ICMP echo from NetA to NetB in the clear
    after its 4th frame (frame 5): what the tunnel policy protects, leaked.
    Made with scapy, as the policy audit's own tests make theirs."""
    from scapy.all import ICMP, IP, Ether, rdpcap, wrpcap
    frames = list(rdpcap(os.path.join(SAMPLES, "esp-tunnel.pcap")))
    leak = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:02:02") / IP(src="192.0.2.10", dst="192.0.2.130") / \
        ICMP(id=0x4a, seq=99)
    leak.time = frames[3].time + 0.05
    wrpcap(path, frames[:4] + [leak] + frames[4:])
    return 5


def scenario_audit(tmp):
    print("# the policy audit: --policy on a capture with one cleartext leak")
    cap = os.path.join(tmp, "leak.pcap")
    leak = leak_capture(cap)
    ref = verify_json(cap, "--policy", TUNNEL_CFG)
    flagged = sorted(p["frame"] for p in ref["packets"] if p.get("verdict") == "cleartext-leak")
    check(flagged == [leak], f"verify --policy flags frame {leak} alone ({flagged})")
    t = Tui([cap, "--policy", TUNNEL_CFG], 200, 50, tmp)
    s = t.wait_for(lambda s: len(list_rows(s)) == 16 and " 16 of 16 frames" in s)
    rows = list_rows(s)
    check(rows.get(leak) == "cleartext-leak" and all(v == "ok" for f, v in rows.items() if f != leak),
          f"the verdict column names the leak on frame {leak}, the tunnel's frames ok ({rows})")
    t.keys("/")
    t.type("verdict == cleartext-leak")
    t.keys("Enter")
    s = t.wait_for(lambda s: "1 of 16 frames" in s)
    check(sorted(list_rows(s)) == [leak] and "1 of 16 frames" in s,
          f"'verdict == cleartext-leak' lists exactly frame {leak} ({sorted(list_rows(s))})")
    s = t.wait_for(lambda s: "Policy audit: cleartext-leak" in s)
    check("Policy audit: cleartext-leak — 192.0.2.10 → 192.0.2.130 ICMP type 8 [policy 'neta-netb', outbound]"
          in s, "the tree of the frame says why: the policy that asks for IPsec, and the sense")
    t.dump("audit-filter")
    t.keys("/")
    t.keys("C-u")
    t.type("audit == conforms")
    t.keys("Enter")
    s = t.wait_for(lambda s: "15 of 16 frames" in s)
    check("15 of 16 frames" in s and leak not in list_rows(s), "'audit == conforms' lists the 15 tunnel frames")
    t.keys("/")
    t.keys("C-u")
    t.type("audit == leak")
    s = t.wait_for(lambda s: "is not an audit verdict" in s)
    check("'leak' is not an audit verdict: conforms, permitted, exempt, cleartext-allowed, cleartext-leak" in s,
          "an unknown audit verdict is an error listing the valid ones")
    t.keys("Escape")
    t.keys("3")
    s = t.wait_for(lambda s: "Policy audit (" in s and "SA timeline" in s)
    check(re.search(r"(?<!\d)1 cleartext-leak\b", s) is not None and "15 conforms" in s,
          "the statistics screen counts 1 cleartext-leak and 15 conforms")
    check(re.search(r"^\s+neta-netb\s+out\s+protect\s+\d+\s+1\s", s, re.M) is not None,
          "the per-policy table puts the leak on the outbound 'neta-netb'")
    check(re.search(r"0xc0ffee01\s+\S+ \.\. \S+\s+\d+ packets", s) is not None,
          "the SA timeline lists the tunnel's SAs with their first and last packet")
    t.dump("audit-stats")
    t.keys("q")
    check(t.exit_code() == 0, "q exits 0")
    t.close()

    # Usage errors: each names the problem (exit 2).
    r = subprocess.run([IPSENTRY, "tui", "-i", "lo", "--stop-on", "cleartext-leak"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    check(r.returncode == 2 and "--stop-on cleartext-leak is a finding of the policy audit: give --policy CONFIG too"
          in r.stderr, f"tui -i lo --stop-on cleartext-leak without --policy: exit 2, '{r.stderr.strip()}'")
    nolocal = os.path.join(tmp, "nolocal.yaml")
    with open(TUNNEL_CFG) as f:
        open(nolocal, "w").write(re.sub(r"^interfaces:\n  local: \[[^]]*\]\n", "", f.read(), flags=re.M))
    for args, words in (([cap, "--as", "203.0.113.1"], "--as names the vantage point of the policy audit"),
                        (["--attach", "--policy", TUNNEL_CFG], "not --attach"),
                        ([cap, "--policy", TUNNEL_CFG, "--as", "gateway1"], "'gateway1' is not an IPv4 or IPv6"),
                        ([cap, "--policy", nolocal], "give --as ADDRESS")):
        r = subprocess.run([IPSENTRY, "tui", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if "needs a terminal" in r.stderr:
            t = Tui(args, 120, 20, tmp)
            rc = t.exit_code()
            err = open(os.path.join(tmp, f"{t.name}.err")).read()
            t.close()
        else:
            rc, err = r.returncode, r.stderr
        check(rc == 2 and words in err, f"tui {' '.join(os.path.basename(a) for a in args)}: exit 2, '{err.strip()}'")


# ---------------------------------------------------------------------------
# Root only: live capture and attaching to enforcement.

def scenario_live(tmp):
    print("# live capture between two namespaces")
    pair = VethPair("tuil")
    try:
        pair.create("192.0.2.1/24", "192.0.2.2/24")
        tunnel = os.path.join(SAMPLES, "esp-tunnel.pcap")
        ref = verify_json(tunnel, "-c", TUNNEL_CFG)
        n = len({p["frame"] for p in ref["packets"]})
        t = Tui(["-i", pair.if_rx, "-c", TUNNEL_CFG, "--ipsec-only"], 200, 50, tmp,
                prefix=f"ip netns exec {pair.ns_rx} ")
        s = t.wait_for(lambda s: "capturing:" in s)
        check("following" in s, "a live session starts following new frames")
        replay = ["ip", "netns", "exec", pair.ns_tx, "tcpreplay", "-q", "-i", pair.if_tx, "--pps", "200", tunnel]
        sh(*replay)
        s = t.wait_for(lambda s: f"{n} of {n} frames" in s)
        rows = list_rows(s)
        t.dump("live-packets")
        check(len(rows) == n and all(v == "ok" for v in rows.values()),
              f"the {n} ESP frames sent onto the link appear live, all ok ({len(rows)})")
        t.keys("p")
        sh(*replay)
        s = t.wait_for(lambda s: f"{n} of {2 * n} frames" in s, 5)
        check(f"{n} of {2 * n} frames" in s and "PAUSED" in s and max(list_rows(s)) == n,
              "paused, the list holds still while capturing goes on")
        t.keys("p")
        s = t.wait_for(lambda s: f"{2 * n} of {2 * n} frames" in s)
        rows = list_rows(s)
        replays = sum(1 for v in rows.values() if v == "replay")
        check(f"{2 * n} of {2 * n} frames" in s and max(rows) == 2 * n,
              f"resumed, the list catches up and follows to frame {2 * n}")
        t.keys("3")
        s = t.wait_for(lambda s: "Replay Detection" in s)
        m = re.search(r"Packets With Replay Detection\s+(\d+)", s)
        check(m is not None and int(m.group(1)) == n, f"the same packets sent again are counted as replays ({m and m.group(1)})")
        del replays
        t.keys("q")
        check(t.exit_code() == 0, "q ends the live session")
        t.close()
        t = Tui(["-i", "nosuchif0"], 120, 20, tmp)
        err = open(os.path.join(tmp, f"{t.name}.err")).read() if t.exit_code() is not None else ""
        check("nosuchif0" in err, f"an unknown interface is named in the error ({err.strip()})")
        t.close()
    finally:
        pair.remove()


def scenario_live_triggers(tmp):
    print("# live triggers: --stop-on and -t")
    pair = VethPair("tuit")
    try:
        pair.create("192.0.2.1/24", "192.0.2.2/24")
        replay = ["ip", "netns", "exec", pair.ns_tx, "tcpreplay", "-q", "-i", pair.if_tx, "--pps", "50", FAULTS]
        ref = verify_json(FAULTS, "-c", TUNNEL_CFG)
        icv = next(p["frame"] for p in ref["packets"] if p["verdict"] == "icv-fail")

        # --stop-on icv-fail --after 2: the capture ends two frames after the
        # first ICV failure, which is marked and selected.
        t = Tui(["-i", pair.if_rx, "-c", TUNNEL_CFG, "--ipsec-only", "--stop-on", "icv-fail", "--after", "2"],
                200, 50, tmp, prefix=f"ip netns exec {pair.ns_rx} ")
        t.wait_for(lambda s: "capturing:" in s)
        sh(*replay)
        s = t.wait_for(lambda s: "stopped:" in s and f"─ Frame {icv}" in s)
        rows = list_rows(s)
        marked = [l for l in s.splitlines() if "▶ trigger" in l]
        check(sorted(rows) == list(range(1, icv + 3)) and rows[icv] == "icv-fail",
              f"--stop-on icv-fail --after 2: the list ends 2 frames after the failure (frames 1-{max(rows or [0])})")
        check(len(marked) == 1 and re.match(rf"^\s*{icv} ", marked[0]) is not None,
              f"the failing frame {icv} is marked as the trigger in the list")
        check(f"stopped: frame {icv}: icv-fail on ESP SPI 0xc0ffee01 (--stop-on icv-fail), then 2 frames" in s,
              "the status line says what stopped the capture")
        check(f"Capture trigger: frame {icv}: icv-fail on ESP SPI 0xc0ffee01" in s,
              f"the trigger frame is selected and its tree says why ({icv})")
        t.dump("live-stop-on")
        t.keys("/")
        t.type("trigger")
        t.keys("Enter")
        s = t.wait_for(lambda s: "1 of " in s)
        check(sorted(list_rows(s)) == [icv], "the display filter 'trigger' finds the trigger frame")
        t.keys("q")
        t.close()

        # -t P: the first frame with SPI 0xc0ffee02 (offset 0x22 behind
        # Ethernet and IPv4) fires and stops.
        t = Tui(["-i", pair.if_rx, "-c", TUNNEL_CFG, "--ipsec-only", "-t", "P", "0x22", "c0ffee02"], 200, 50, tmp,
                prefix=f"ip netns exec {pair.ns_rx} ")
        t.wait_for(lambda s: "capturing:" in s)
        sh(*replay)
        s = t.wait_for(lambda s: "stopped:" in s)
        check(sorted(list_rows(s)) == [1, 2] and "stopped: frame 2: the trigger fired (P: 0xc0ffee02 at offset 0x22)"
              in s, "-t P 0x22 c0ffee02 stops on frame 2, the first reply")
        t.keys("q")
        t.close()

        # --policy --stop-on cleartext-leak: the capture ends on the leaked
        # echo among the tunnel's frames.
        cap = os.path.join(tmp, "live-leak.pcap")
        leak_capture(cap)
        t = Tui(["-i", pair.if_rx, "--policy", TUNNEL_CFG, "--stop-on", "cleartext-leak"], 200, 50, tmp,
                prefix=f"ip netns exec {pair.ns_rx} ")
        t.wait_for(lambda s: "capturing:" in s)
        sh("ip", "netns", "exec", pair.ns_tx, "tcpreplay", "-q", "-i", pair.if_tx, "--pps", "50", cap)
        s = t.wait_for(lambda s: "stopped:" in s)
        marked = [l for l in s.splitlines() if "▶ trigger" in l]
        rows = list_rows(s)
        check(len(marked) == 1 and "cleartext-leak" in marked[0] and list(rows.values()).count("cleartext-leak") == 1,
              f"--policy --stop-on cleartext-leak: the leaked frame is the trigger ({marked})")
        # The status line is cut at the screen's width; the trigger node of
        # the tree has the whole reason.
        check(re.search(r"stopped: frame \d+: cleartext-leak: 192\.0\.2\.10 → 192\.0\.2\.130 ICMP", s) is not None
              and "Capture trigger: frame" in s and
              "cleartext-leak: 192.0.2.10 → 192.0.2.130 ICMP type 8 [policy 'neta-netb', outbound]: left in the clear"
              in s, "the status line and the tree say which packet leaked and under which policy")
        t.dump("live-stop-on-leak")
        t.keys("q")
        t.close()

        for args, words in ((["-i", pair.if_rx, "-t", "N"], "-t N (circular)"),
                            ([FAULTS, "--stop-on", "icv-fail"], "stop a live capture: give -i IFACE"),
                            (["-i", pair.if_rx, "--after", "3"], "give --stop-on too"),
                            (["-i", pair.if_rx, "-t", "P", "0x22", "abc"], "even number of hexadecimal digits")):
            t = Tui(args, 120, 20, tmp, prefix=f"ip netns exec {pair.ns_rx} ")
            rc = t.exit_code()
            err = open(os.path.join(tmp, f"{t.name}.err")).read()
            check(rc == 2 and words in err, f"tui {' '.join(args[2:] if args[0] == '-i' else args[1:])}: exit 2, "
                  f"'{err.strip()}'")
            t.close()
    finally:
        pair.remove()


def scenario_attach(tmp):
    print("# attached to a running enforcement")
    pair = VethPair("tuie")
    procs = []
    try:
        pair.create("192.0.2.1/24", "192.0.2.2/24")
        ca = esp_config(os.path.join(tmp, "a.yaml"), "192.0.2.1", "192.0.2.2", "0x1001", GCM_AB, "0x1002", GCM_BA)
        cb = esp_config(os.path.join(tmp, "b.yaml"), "192.0.2.2", "192.0.2.1", "0x1002", GCM_BA, "0x1001", GCM_AB)
        socks = []
        for ns, cfg, name in ((pair.ns_tx, ca, "a"), (pair.ns_rx, cb, "b")):
            sock = os.path.join(tmp, f"{name}.sock")
            socks.append(sock)
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, IPSENTRY, "enforce", "-c", cfg, "--socket",
                                           sock, "--state-dir", os.path.join(tmp, f"{name}-state")],
                                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{name}.log"), "w")))
        for sock in socks:
            for _ in range(100):
                if subprocess.run([IPSENTRY, "stats", "--socket", sock], capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
        r = subprocess.run(["ip", "netns", "exec", pair.ns_tx, "ping", "-n", "-c", "4", "-i", "0.2", "-W", "1",
                            "192.0.2.2"], capture_output=True, text=True)
        check(" 4 received" in r.stdout, "enforcement on both hosts: 4/4 pings through ESP")
        t = Tui(["--attach", "--socket", socks[0], "--refresh", "1"], 200, 50, tmp)
        s = t.wait_for(lambda s: re.search(r"^out .* (\d+)\s+\d+\s+\d+ sent up to", s, re.M) is not None)
        snap = json.loads(subprocess.run([IPSENTRY, "stats", "--json", "--socket", socks[0]], capture_output=True,
                                         text=True).stdout)
        by_name = {sa["name"]: sa for sa in snap["sas"]}
        line_out = next((l for l in s.splitlines() if l.startswith("out ")), "")
        line_in = next((l for l in s.splitlines() if l.startswith("in ")), "")
        m_out = re.search(r"(\d+)\s+(\d+)\s+(\d+) sent up to (\d+)", line_out)
        m_in = re.search(r"(\d+)\s+(\d+)\s+(\d+) top (\d+)", line_in)
        t.dump("attach-sas")
        check(m_out is not None and int(m_out.group(1)) == by_name["out"]["sent"]["packets"] == 4 and
              int(m_out.group(4)) == by_name["out"]["last_sent_seq"],
              f"the SA monitor shows the outbound SA as 'ipsentry stats' does: {line_out.strip()}")
        check(m_in is not None and int(m_in.group(1)) == by_name["in"]["received"]["packets"] == 4 and
              int(m_in.group(4)) == by_name["in"]["replay"]["highest_seq"],
              f"and the inbound SA with its replay window: {line_in.strip()}")
        subprocess.run(["ip", "netns", "exec", pair.ns_tx, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1",
                        "192.0.2.2"], capture_output=True)
        s = t.wait_for(lambda s: re.search(r"^out .*\s6\s+\d+\s+\d+ sent up to 6", s, re.M) is not None, 5)
        check(re.search(r"^out .*\s6\s+\d+\s+\d+ sent up to 6", s, re.M) is not None,
              "it refreshes on the interval: two more pings show as 6 packets")
        t.keys("3")
        s = t.wait_for(lambda s: "Quick Mode (enforcement)" in s)
        m = re.search(r"Active Security Associations\s+(\d+)", s)
        t.dump("attach-stats")
        check(m is not None and int(m.group(1)) == snap["quick_mode"]["active_security_associations"],
              "the statistics screen shows the enforcement's Quick Mode table")
        t.keys("q")
        check(t.exit_code() == 0 and t.terminal_restored(), "q leaves the attached TUI; the enforcement goes on")
        t.close()
        procs[0].send_signal(signal.SIGTERM)
        procs[0].wait(timeout=10)
        t = Tui(["--attach", "--socket", socks[0]], 120, 20, tmp)
        rc = t.exit_code()
        err = open(os.path.join(tmp, f"{t.name}.err")).read()
        check(rc == 2 and "no enforcement is running" in err, f"--attach with nothing running: exit 2, '{err.strip()}'")
        t.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        pair.remove()


def main():
    global IPSENTRY
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    args = ap.parse_args()
    IPSENTRY = os.path.abspath(args.ipsentry)
    if shutil.which("tmux") is None:
        print("tmux is not installed")
        return 1
    tmp = tempfile.mkdtemp(prefix="ipsentry-tui-")
    # A window that outlives the tests' own, so the server stays up.
    tmux("new-session", "-d", "-s", "main", "-n", "keep", "-x", "200", "-y", "50", "sleep", "3600")
    only = os.environ.get("ONLY", "")
    try:
        for name, fn, root in (("offline", scenario_offline, False), ("ike", scenario_ike, False),
                               ("crash", scenario_crash_and_errors, False),
                               ("reporting", scenario_reporting, False), ("save", scenario_save_prompt, False),
                               ("audit", scenario_audit, False),
                               ("live", scenario_live, True),
                               ("triggers", scenario_live_triggers, True),
                               ("attach", scenario_attach, True)):
            if only and only != name:
                continue
            if root and os.geteuid() != 0:
                print(f"# {name}: skipped (needs root for network namespaces)")
                continue
            fn(tmp)
        reports = []
        for f in sorted(os.listdir(tmp)):
            if f.endswith(".err") or f.endswith(".log"):
                text = open(os.path.join(tmp, f), errors="replace").read()
                if "AddressSanitizer" in text or "runtime error:" in text or "LeakSanitizer" in text:
                    reports.append(f"{f}:\n{text[-2000:]}")
        check(not reports, "no sanitizer report from any ipsentry run" + ("\n" + "\n".join(reports) if reports else ""))
    finally:
        tmux("kill-server", check_rc=False)
        for ns in ("tuiltx", "tuilrx", "tuittx", "tuitrx", "tuietx", "tuierx"):
            remove_namespace(ns)
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILED:
        print(f"\n{len(FAILED)} check(s) failed:")
        for f in FAILED:
            print("  " + f)
        return 1
    print("\nall TUI checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
