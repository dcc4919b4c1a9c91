"""Two network namespaces joined by a veth pair, for tests and benchmarks
that need real interfaces. Documentation addresses only; IPv6 is off so
nothing but the traffic a test sends is on the wire. remove() kills what
still runs in the namespaces and deletes them, whatever state they are in."""
import argparse
import os
import signal
import subprocess
import traceback


def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


class VethPair:
    def __init__(self, tag):
        self.ns_tx, self.ns_rx = f"{tag}tx", f"{tag}rx"
        self.if_tx, self.if_rx = f"{tag}a", f"{tag}b"

    def create(self, addr_tx, addr_rx, mac_tx=None, mac_rx=None):
        """addr_*: "192.0.2.1/24"."""
        for ns in (self.ns_tx, self.ns_rx):
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        tx = [self.if_tx, "netns", self.ns_tx] + (["address", mac_tx] if mac_tx else [])
        rx = [self.if_rx, "netns", self.ns_rx] + (["address", mac_rx] if mac_rx else [])
        sh("ip", "link", "add", *tx, "type", "veth", "peer", "name", *rx)
        for ns, dev, addr in ((self.ns_tx, self.if_tx, addr_tx), (self.ns_rx, self.if_rx, addr_rx)):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def remove(self):
        for ns in (self.ns_tx, self.ns_rx):
            remove_namespace(ns)


# Receives UDP datagrams on ADDR:PORT for SECONDS and prints each payload,
# after a "ready" line once it is bound.
UDP_SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(0.3)
print('ready', flush=True)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    try:
        print(s.recv(4000).decode(errors='replace'), flush=True)
    except socket.timeout:
        pass
"""


class UdpSink:
    """UDP_SINK in namespace `ns`, bound before the constructor returns.
    `procs`: the test's list of processes to kill at cleanup."""

    def __init__(self, ns, addr, port, seconds, procs):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", UDP_SINK, addr, str(port),
                                      str(seconds)], stdout=subprocess.PIPE, text=True)
        procs.append(self.proc)
        self.proc.stdout.readline()  # "ready"

    def received(self, timeout=60):
        out = self.proc.communicate(timeout=timeout)[0]
        return [l for l in out.splitlines() if l]


def remove_namespace(ns):
    """Kills what still runs in `ns` and deletes it, whatever its state."""
    for p in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False)


def ipsentry_as_root():
    """The --ipsentry argument as an absolute path, or None (after saying
    so) when not root: namespace tests then exit 77, skipped."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    path = os.path.abspath(ap.parse_args().ipsentry)
    if os.geteuid() != 0:
        print("skipped: needs root for network namespaces and netfilter")
        return None
    return path


def run_scenario(name, fn, tmp, fails, cleanup):
    """Runs fn(tmp); an exception of the test itself counts as a failure in
    `fails`. `cleanup` runs whatever happens."""
    try:
        fn(tmp)
    except Exception as e:  # noqa: BLE001 (any crash of the test is a failure)
        traceback.print_exc()
        fails.append(f"{name}: exception: {e}")
    finally:
        cleanup()
