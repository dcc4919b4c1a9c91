"""The laboratory of the IKE tests: network namespaces, strongSwan's charon
and ipsentry enforcement as IKEv2 peers described once and rendered as
either, the traffic, the captures and the checks of what they show.

A scenario describes each end as a `Conn` (addresses, identities,
authentication, proposals, lifetimes, the policy) held by a `Peer` placed in
a namespace. The same description becomes a swanctl.conf for charon (5.9.8
with kernel-libipsec: user-space ESP, this kernel has none; its own mount
namespace for /run) or an ipsentry YAML in docs/ike-keying.md's syntax, so
every scenario runs first charon to charon -- proving the topology, the
traffic and the checks with a reference implementation -- and then with
ipsentry in one role or both.

The proof of a run (`prove`): ping and a TCP transfer whose SHA-256 matches;
tcpdump on the wire between the IPsec ends carries nothing but IKE, ESP and
NAT keepalives; `ipsentry verify` with the keys in Wireshark's UAT files
(ipsentry's `--save-keys` files, or for charon the keys of its log mapped to
the capture's SPIs) verifies every ESP packet and decrypts every encrypted
IKE message; tshark with the same files decrypts as many. Where ipsentry
and charon both negotiated an SA, the keys ipsentry saved must equal the
keys charon logged.

charon 5.9.8's kernel-libipsec shapes what charon can be here: it knows
tunnel mode only (libipsec/ipsec_sa.c refuses any other), so host-to-host
with charon is a tunnel between the two host addresses (charon's
allow_peer_ts, its IKE and ESP sockets marked past its routing table 220)
and transport mode is negotiated between ipsentry peers; it has no raw ESP
socket, so charon always forces UDP encapsulation (a faked NAT detection
hash): ESP to and from charon is ESP in UDP 4500 (RFC 3948); and it raises
no acquire for a packet without an SA, so charon initiates by command.
"""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import ikev2_ref as ref  # noqa: E402
import ike_stats  # noqa: E402
from netns import remove_namespace, sh  # noqa: E402
from rawpcap import read_pcap  # noqa: E402

CHARON = "/usr/lib/ipsec/charon"
TCP_XFER = os.path.join(HERE, "..", "support", "tcp_xfer.py")
TAG = f"ik{os.getpid() % 100000}"
FWMARK = "0x4240"  # charon's IKE and ESP sockets past its routing table 220 (ipsentry uses bits 0x3)
PSK = "ipsentry and charon share this secret"


# ---- results -------------------------------------------------------------------

class Results:
    """Every check printed as it is made; failures collected, per run."""

    def __init__(self):
        self.fails = []
        self.lock = threading.Lock()
        self.summary = []  # (run, passed, failed)

    def check(self, ok, what, run=""):
        with self.lock:
            print(("ok   " if ok else "FAIL ") + (f"[{run}] " if run else "") + what, flush=True)
            if not ok:
                self.fails.append(f"[{run}] {what}" if run else what)
        return ok


RESULTS = Results()


def skip_unless_root():
    if os.geteuid() != 0:
        print("skipped: needs root for network namespaces")
        sys.exit(77)
    for tool in (CHARON, shutil.which("swanctl"), shutil.which("tcpdump"), shutil.which("tshark"),
                 shutil.which("openssl")):
        if not tool or not os.path.exists(tool):
            print(f"FAIL: {tool} missing (scripts/install-deps.sh installs strongSwan, tcpdump, tshark)")
            sys.exit(1)


# ---- namespaces ----------------------------------------------------------------

class Lab:
    """Namespaces, processes and files of one run; close() removes them all."""
    count = 0
    count_lock = threading.Lock()  # runs start from several threads

    def __init__(self, tmp, run):
        self.run = run
        self.dir = os.path.join(tmp, run)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        with Lab.count_lock:
            Lab.count += 1
            self.prefix = f"{TAG}r{Lab.count}"  # unique and short: namespace names stay readable
        self.namespaces, self.procs = [], []
        self.failed_before = len(RESULTS.fails)

    def check(self, ok, what):
        return RESULTS.check(ok, what, self.run)

    @property
    def failed(self):
        return len(RESULTS.fails) > self.failed_before

    def ns(self, short):
        name = f"{self.prefix}{short}"
        remove_namespace(name)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for k in ("all", "default"):
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1")
        return name

    def link(self, ns1, if1, addr1, ns2, if2, addr2):
        sh("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
        for ns, dev, addr in ((ns1, if1, addr1), (ns2, if2, addr2)):
            for a in ([addr] if isinstance(addr, str) else addr):
                sh("ip", "-n", ns, "addr", "add", a, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def x(self, ns, *cmd, timeout=120, **kw):
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                              **kw)

    def popen(self, ns, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in self.namespaces:
            remove_namespace(ns)
        self.namespaces.clear()


@dataclass
class Topo:
    """Where things are: namespaces by role, the addresses the traffic uses,
    and the links between the IPsec ends to capture (namespace, device)."""
    ns: dict
    client: str        # the namespace the traffic starts in
    server: str        # the namespace it goes to
    server_addr: str
    wires: list        # [(ns, dev)]


def hosts(lab, n_pairs=1):
    """a 192.0.2.1 --- b 192.0.2.2 (and .3/.4, ... for more address pairs)."""
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "a0", [f"192.0.2.{2 * i + 1}/24" for i in range(n_pairs)],
             b, "b0", [f"192.0.2.{2 * i + 2}/24" for i in range(n_pairs)])
    # Each pair talks from its own addresses, as charon's routes in table 220
    # make it; ipsentry installs no routes, and without these a connection
    # to .4 would leave from .1, outside every policy.
    for i in range(1, n_pairs):
        sh("ip", "-n", a, "route", "add", f"192.0.2.{2 * i + 2}/32", "dev", "a0", "src", f"192.0.2.{2 * i + 1}")
        sh("ip", "-n", b, "route", "add", f"192.0.2.{2 * i + 1}/32", "dev", "b0", "src", f"192.0.2.{2 * i + 2}")
    return Topo({"a": a, "b": b}, a, b, "192.0.2.2", [(b, "b0")])


GW1_OUT, GW2_OUT = "198.51.100.1", "203.0.113.1"
NET_A, NET_B = "192.0.2.0/25", "192.0.2.128/25"
HOST_A, HOST_B = "192.0.2.10", "192.0.2.130"
NAT_PUBLIC = "203.0.113.254"


def gateways(lab, nat=False):
    """The seeds' two sites: hostA 192.0.2.10 - gw1 [192.0.2.1 | 198.51.100.1] - router
    [198.51.100.254 | 203.0.113.254] - gw2 [203.0.113.1 | 192.0.2.129] - hostB 192.0.2.130.
    With nat, the router masquerades gw1's side behind 203.0.113.254, UDP into ports 40000-40099."""
    ha, g1, r, g2, hb = (lab.ns(n) for n in ("ha", "g1", "r", "g2", "hb"))
    lab.link(ha, "ha0", f"{HOST_A}/25", g1, "g1a", "192.0.2.1/25")
    lab.link(g1, "g1o", f"{GW1_OUT}/24", r, "r1", "198.51.100.254/24")
    lab.link(r, "r2", f"{NAT_PUBLIC}/24", g2, "g2o", f"{GW2_OUT}/24")
    lab.link(g2, "g2b", "192.0.2.129/25", hb, "hb0", f"{HOST_B}/25")
    sh("ip", "-n", ha, "route", "add", "default", "via", "192.0.2.1")
    sh("ip", "-n", hb, "route", "add", "default", "via", "192.0.2.129")
    sh("ip", "-n", g1, "route", "add", "default", "via", "198.51.100.254")
    sh("ip", "-n", g2, "route", "add", "default", "via", NAT_PUBLIC)
    for ns in (g1, r, g2):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if nat:
        # UDP into other ports than 500/4500: the far end must answer the mapped port.
        lab.x(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "r2", "-p", "udp", "-j", "MASQUERADE",
              "--to-ports", "40000-40099")
        lab.x(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "r2", "-j", "MASQUERADE")
        # Only what was translated comes back in: gw1 is unreachable from outside.
        lab.x(r, "iptables", "-A", "FORWARD", "-i", "r1", "-j", "ACCEPT")
        lab.x(r, "iptables", "-A", "FORWARD", "-i", "r2", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
              "-j", "ACCEPT")
        lab.x(r, "iptables", "-P", "FORWARD", "DROP")
    return Topo({"ha": ha, "g1": g1, "r": r, "g2": g2, "hb": hb}, ha, hb, HOST_B, [(r, "r1"), (r, "r2")])


# ---- what each end is ----------------------------------------------------------

@dataclass
class Conn:
    """One IKE SA's configuration and its CHILD_SA, as one end sees it."""
    name: str
    addr: str                     # our IKE address
    peer: str | None              # the peer's IKE address; None: any (respond only)
    local_ts: str                 # "192.0.2.0/25"
    remote_ts: str
    mode: str = "tunnel"
    auth: str = "psk"             # psk | cert
    psk: str = PSK
    cert: str | None = None       # PEM paths (cert)
    key: str | None = None
    ca: str | None = None
    local_id: str | None = None   # None: our address (psk) / the certificate's subject (cert)
    remote_id: str | None = None  # None: the peer's address (psk), any (cert)
    proposals: list = field(default_factory=lambda: ["aes128gcm16-prfsha256-curve25519"])
    esp: list = field(default_factory=lambda: ["aes128gcm16"])
    pfs: str | None = None
    ike_lifetime: int = 8 * 3600  # seconds; this end rekeys before it
    child_lifetime: int = 900
    rekeys: bool = True           # False: this end leaves rekeying to the peer
    dpd: int = 30
    inbound: str = "require"      # ipsentry: respond when peer is None (it cannot start a negotiation)
    initiator: bool = False       # charon: initiate (or trap); ipsentry always initiates on traffic


class Peer:
    """One IPsec end in a namespace: charon or ipsentry."""
    kind = "?"

    def __init__(self, lab, name, ns, conns, **opts):
        self.lab, self.name, self.ns, self.conns, self.opts = lab, name, ns, conns, opts
        self.dir = os.path.join(lab.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def __repr__(self):
        return f"{self.kind}:{self.name}"


# ---- charon ------------------------------------------------------------------------

class Charon(Peer):
    kind = "charon"

    def conf(self):
        d = self.dir
        o = self.opts
        open(os.path.join(d, "strongswan.conf"), "w").write(f"""charon {{
  load = random nonce x509 pubkey pkcs1 pkcs8 pem openssl gcm kdf aes sha1 sha2 md5 hmac gmp kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  install_virtual_ip = no
  retransmit_timeout = {o.get("retransmit_timeout", 2)}
  retransmit_tries = {o.get("retransmit_tries", 3)}
  retransmit_base = 1.5
  keep_alive = {o.get("keep_alive", 20)}s
  cookie_threshold = {o.get("cookie_threshold", 30)}
  block_threshold = {o.get("block_threshold", 5)}
  init_limit_half_open = {o.get("half_open_limit", 0)}
  plugins {{
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
    kernel-netlink {{
      fwmark = !{FWMARK}
    }}
    socket-default {{
      fwmark = {FWMARK}
      use_ipv6 = no
    }}
    vici {{
      socket = unix://{d}/charon.vici
    }}
  }}
  filelog {{
    log {{
      path = {d}/charon.log
      flush_line = yes
      default = 1{"" if o.get("quiet") else chr(10) + "      ike = 4" + chr(10) + "      chd = 4" + chr(10) + "      cfg = 2"}
    }}
  }}
}}
""")
        conns, secrets = "", ""
        for i, c in enumerate(self.conns):
            local_id = c.local_id or (c.addr if c.auth == "psk" else None)
            remote_id = c.remote_id or (c.peer if c.auth == "psk" else None)
            esp = ",".join(f"{p}-{c.pfs}" if c.pfs else p for p in c.esp)
            if c.rekeys:
                ike_life = f"rekey_time = {int(c.ike_lifetime * 0.85)}s\n    rand_time = {max(1, int(c.ike_lifetime * 0.05))}s"
                child_life = (f"rekey_time = {int(c.child_lifetime * 0.8)}s\n        life_time = {c.child_lifetime}s\n"
                              f"        rand_time = {max(1, int(c.child_lifetime * 0.1))}s")
            else:
                ike_life = "rekey_time = 0s\n    reauth_time = 0s"
                child_life = "rekey_time = 0s\n        life_time = 24h\n        rand_time = 0s"
            creds = ""
            if c.auth == "cert":
                os.makedirs(os.path.join(d, "x509"), exist_ok=True)
                os.makedirs(os.path.join(d, "x509ca"), exist_ok=True)
                os.makedirs(os.path.join(d, "private"), exist_ok=True)
                shutil.copy(c.cert, os.path.join(d, "x509", os.path.basename(c.cert)))
                shutil.copy(c.ca, os.path.join(d, "x509ca", os.path.basename(c.ca)))
                shutil.copy(c.key, os.path.join(d, "private", os.path.basename(c.key)))
                creds = f"\n      certs = {os.path.basename(c.cert)}"
            ids_l = f"\n      id = \"{local_id}\"" if local_id else ""
            ids_r = f"\n      id = \"{remote_id}\"" if remote_id else ""
            auth = "psk" if c.auth == "psk" else "pubkey"
            start = "none"
            if c.initiator and self.opts.get("trap"):
                start = "trap"
            conns += f"""  {c.name} {{
    version = 2
    local_addrs = {c.addr}
    remote_addrs = {c.peer or "%any"}
    proposals = {",".join(c.proposals)}
    {ike_life}
    dpd_delay = {c.dpd}s
    local {{
      auth = {auth}{ids_l}{creds}
    }}
    remote {{
      auth = {auth}{ids_r}
    }}
    children {{
      {c.name} {{
        local_ts = {c.local_ts}
        remote_ts = {c.remote_ts}
        mode = {c.mode}
        esp_proposals = {esp}
        {child_life}
        start_action = {start}
        dpd_action = {self.opts.get("dpd_action", "clear")}
      }}
    }}
  }}
"""
            if c.auth == "psk":
                secrets += f"""  ike-{i} {{
    id-1 = "{local_id}"
    id-2 = "{remote_id or '%any'}"
    secret = "{c.psk}"
  }}
"""
        open(os.path.join(d, "swanctl.conf"), "w").write(f"connections {{\n{conns}}}\nsecrets {{\n{secrets}}}\n")

    def start(self):
        self.conf()
        vici = os.path.join(self.dir, "charon.vici")
        for f in (vici, os.path.join(self.dir, "charon.log")):
            if os.path.exists(f) and f == vici:
                os.unlink(f)
        self.proc = self.lab.popen(self.ns, [
            "unshare", "-m", "sh", "-c",
            f"mount -t tmpfs none /run && STRONGSWAN_CONF={self.dir}/strongswan.conf exec {CHARON}"],
            stdout=open(os.path.join(self.dir, "stdout"), "a"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(vici):
                break
            time.sleep(0.05)
        missing = re.findall(r"plugin '([\w-]+)': failed to load", self.log())
        if missing:
            raise RuntimeError(f"charon could not load its plugins {missing} "
                               "(scripts/install-deps.sh installs libstrongswan-standard-plugins)")
        r = self.swanctl("--load-all", "--noprompt", "--file", os.path.join(self.dir, "swanctl.conf"))
        if r.returncode != 0:
            raise RuntimeError(f"swanctl --load-all: {r.stdout} {r.stderr}")
        return True

    def swanctl(self, *args, timeout=60):
        return self.lab.x(self.ns, "swanctl", *args, "--uri", f"unix://{self.dir}/charon.vici", timeout=timeout)

    def initiate(self, conn=None, timeout=10):
        c = conn or next(c for c in self.conns if c.initiator)
        if self.opts.get("trap"):
            return True, "trap policy: the first packet initiates"
        r = self.swanctl("--initiate", "--child", c.name, "--timeout", str(timeout), timeout=timeout + 5)
        return r.returncode == 0, r.stdout[-1500:]

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            # The namespace's processes are `ip netns exec` -> unshare -> charon (exec'd by sh).
            for p in sh("ip", "netns", "pids", self.ns, check=False).stdout.split():
                try:
                    if open(f"/proc/{p}/comm").read().strip() == "charon":
                        os.kill(int(p), sig)
                except (OSError, ValueError):
                    pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        p = os.path.join(self.dir, "charon.log")
        return open(p, errors="replace").read() if os.path.exists(p) else ""

    def sas(self):
        """IKE SAs as swanctl --list-sas shows them: [{name, state, spi_i, spi_r, children: [{spi_in, spi_out, state, mode}]}]."""
        out, cur = [], None
        for line in self.swanctl("--list-sas").stdout.splitlines():
            m = re.match(r"^(\S+): #\d+, (\w+), IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r", line)
            if m:
                cur = {"name": m.group(1), "state": m.group(2), "spi_i": int(m.group(3), 16),
                       "spi_r": int(m.group(4), 16), "children": [], "udp_encap": False}
                out.append(cur)
                continue
            m = re.match(r"^\s+(\S+): #\d+, reqid \d+, (\w+), (\w+)(-in-UDP)?, ", line)
            if m and cur is not None:
                cur["children"].append({"name": m.group(1), "state": m.group(2), "mode": m.group(3).lower(),
                                        "udp_encap": bool(m.group(4))})
                continue
            m = re.match(r"^\s+(in|out)\s+([0-9a-f]{8})", line)
            if m and cur is not None and cur["children"]:
                cur["children"][-1]["spi_" + m.group(1)] = int(m.group(2), 16)
            m = re.match(r"^\s+remote\s+'[^']*' @ ([\d.]+)\[(\d+)\]", line)
            if m and cur is not None:
                cur["remote"], cur["remote_port"] = m.group(1), int(m.group(2))
        return out

    # -- what the log tells ------------------------------------------------------------

    def log_count(self, pattern):
        return len(re.findall(pattern, self.log()))

    def keys(self):
        """(IKE key sets, CHILD_SAs) from the log: see charon_log_keys."""
        return charon_log_keys(self.log())


LINE = re.compile(r"(\d+)\[(\w+)\] (.*)$")


def charon_log_keys(text, every_dump=None):
    """The IKE key sets (ref.IkeKeys, in the order derived) and the CHILD_SAs
    ({spi_in, spi_out, enc_i, enc_r, integ_i, integ_r, we_initiated}) of a
    charon log with ike 4 / chd 4. Lines are attributed per thread, so
    derivations running in parallel do not mix. every_dump, a list: receives
    (name, bytes) of every key dump, also of CHILD_SAs never established."""
    dumps = {}     # thread -> (name, bytes wanted, hex so far)
    keys = {}      # thread -> {name: bytes}
    role = {}      # thread -> "request" | "response": the last message it parsed
    ike_sets, children = [], []

    def finish(t):
        name, n, hexs = dumps.pop(t)
        keys.setdefault(t, {})[name] = bytes.fromhex("".join(hexs)[: 2 * n])
        if every_dump is not None:
            every_dump.append((name, keys[t][name]))

    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        t, msg = m.group(1), m.group(3)
        if t in dumps:
            hm = re.match(r"\s*\d+: ((?:[0-9A-F]{2} )+)", msg)
            if hm:
                dumps[t][2].append("".join(hm.group(1).split()))
                if len("".join(dumps[t][2])) >= 2 * dumps[t][1]:
                    finish(t)
                continue
            finish(t)
        dm = re.match(r"(Sk_\w+ secret|(?:encryption|integrity) (?:initiator|responder) key) => (\d+) bytes", msg)
        if dm:
            dumps[t] = (dm.group(1), int(dm.group(2)), [])
            if int(dm.group(2)) == 0:
                finish(t)
            continue
        pm = re.match(r"parsed \w+ (request|response) \d+", msg)
        if pm:
            role[t] = pm.group(1)
            continue
        k = keys.get(t, {})
        if "Sk_pr secret" in k:
            ike_sets.append(ref.IkeKeys(k.get("Sk_ei secret", b""), k.get("Sk_er secret", b""),
                                        k.get("Sk_ai secret", b""), k.get("Sk_ar secret", b""),
                                        k.get("Sk_d secret", b""), k.get("Sk_pi secret", b""), k["Sk_pr secret"]))
            for n in ("Sk_d secret", "Sk_ai secret", "Sk_ar secret", "Sk_ei secret", "Sk_er secret", "Sk_pi secret",
                      "Sk_pr secret"):
                k.pop(n, None)
        # A rekeyed child is logged twice, "inbound CHILD_SA ..." with its keys,
        # then "outbound CHILD_SA ..." when the old one goes.
        cm = re.match(r"(?:inbound |outbound )?CHILD_SA (\S+)\{\d+\} established with SPIs ([0-9a-f]{8})_i "
                      r"([0-9a-f]{8})_o", msg)
        if cm and any(c["spi_in"] == int(cm.group(2), 16) for c in children):
            continue
        if cm:
            k = keys.pop(t, {})
            children.append({
                "name": cm.group(1), "spi_in": int(cm.group(2), 16), "spi_out": int(cm.group(3), 16),
                "enc_i": k.get("encryption initiator key", b""), "enc_r": k.get("encryption responder key", b""),
                "integ_i": k.get("integrity initiator key", b""), "integ_r": k.get("integrity responder key", b""),
                # The initiator of the exchange derives its keys on the response.
                "we_initiated": role.get(t) == "response"})
    return ike_sets, children


# ---- ipsentry ------------------------------------------------------------------------

def yaml_str(s):
    return json.dumps(s)  # a JSON string is a YAML string


class Ipsentry(Peer):
    kind = "ipsentry"
    BINARY = None

    def conf(self):
        addrs = sorted({c.addr for c in self.conns})
        profiles, policies = "", ""
        for c in self.conns:
            if c.auth == "psk":
                auth = f"      method: psk\n      psk: {yaml_str(c.psk)}\n"
            else:
                auth = (f"      method: cert\n      cert: {yaml_str(c.cert)}\n      key: {yaml_str(c.key)}\n"
                        f"      ca: [{yaml_str(c.ca)}]\n")
            ids = ""
            if c.local_id:
                ids += f"    local_id: {yaml_str(c.local_id)}\n"
            remote_id = c.remote_id or (c.peer if c.auth == "psk" and c.peer else None)
            ids += f"    remote_id: {yaml_str(remote_id or 'any')}\n"
            life = (f"ike: {c.ike_lifetime}s, child: {c.child_lifetime}s" if c.rekeys else "ike: 24h, child: 24h")
            profiles += f"""  - name: {c.name}
    version: 2
    auth:
{auth}{ids}    peer: {c.peer or "any"}
    proposals: [{", ".join(c.proposals)}]
    esp_proposals: [{", ".join(c.esp)}]
    lifetime: {{ {life} }}
    pfs: {c.pfs or "none"}
    dpd: {c.dpd}s
"""
            if c.mode == "tunnel":
                ipsec = f"{{ protocol: esp, mode: tunnel{', peer: ' + c.peer if c.peer else ''} }}"
            else:
                ipsec = "{ protocol: esp, mode: transport }"
            policies += f"""  - name: {c.name}
    from: {c.local_ts.removesuffix("/32")}
    to: {c.remote_ts.removesuffix("/32")}
    mirrored: true
    action: negotiate
    ike: {c.name}
    ipsec: {ipsec}
    inbound: {c.inbound if c.peer else "respond"}
"""
        self.config = os.path.join(self.dir, "ipsentry.yaml")
        # It holds the pre-shared keys: 0600, as ipsentry asks of such files.
        with open(os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"interfaces: {{ local: [{', '.join(addrs)}] }}\nike_profiles:\n{profiles}policies:\n{policies}")

    def start(self):
        self.conf()
        self.sock = os.path.join(self.dir, "ipsentry.sock")
        self.state = os.path.join(self.dir, "state")
        self.keydir = os.path.join(self.dir, "keys")
        self.logpath = os.path.join(self.dir, "ipsentry.log")
        r = sh(self.BINARY, "config", "check", self.config, check=False)
        open(os.path.join(self.dir, "config-check.txt"), "w").write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"ipsentry config check refuses {self.config}: {r.stderr.strip()[-600:]}")
        os.makedirs(self.keydir, exist_ok=True)
        self.proc = self.lab.popen(self.ns, [self.BINARY, "enforce", "-c", self.config, "--socket", self.sock,
                                             "--state-dir", self.state,
                                             # save_keys=False: as in production (the bench)
                                             *(["--save-keys", self.keydir] if self.opts.get("save_keys", True)
                                               else []),
                                             # "TIMEOUT,BASE,TRIES": a short schedule for tests that wait it out
                                             *(["--ike-retransmit", self.opts["ike_retransmit"]]
                                               if self.opts.get("ike_retransmit") else []),
                                             *self.opts.get("extra", [])],
                                   stdout=subprocess.DEVNULL, stderr=open(self.logpath, "a"))
        # Its rules, sockets and statistics socket: seconds on a loaded machine.
        end = time.time() + 20
        while time.time() < end:
            if self.proc.poll() is not None:
                break
            if self.stats() is not None:
                return True
            time.sleep(0.1)
        raise RuntimeError(f"ipsentry enforce did not start: {self.log()[-1500:]}")

    def initiate(self, conn=None, timeout=10):
        return True, "ipsentry initiates on the first packet"

    def stats(self):
        r = self.lab.x(self.ns, self.BINARY, "stats", "--json", "--socket", self.sock)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.sanitizer_check()
        return self.proc.returncode if self.proc else None

    def sanitizer_check(self):
        log = self.log()
        if any(s in log for s in ("AddressSanitizer", "runtime error:", "LeakSanitizer")):
            self.lab.check(False, f"{self}: the sanitizers report a problem:\n{log[-3000:]}")

    def log(self):
        return open(self.logpath, errors="replace").read() if os.path.exists(self.logpath) else ""

    def sas(self):
        return ike_stats.ike_sas(self.stats())

    def counter(self, name):
        return ike_stats.counter(self.stats(), name)


# ---- traffic -------------------------------------------------------------------------------

def ping(lab, ns, dst, count=3, interval=0.2, wait=3, src=None):
    """(echo replies received, the icmp_seq numbers answered, output)."""
    r = lab.x(ns, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait),
              *(["-I", src] if src else []), dst, timeout=count * interval + wait + 30)
    seqs = [int(m) for m in re.findall(r"icmp_seq=(\d+)", r.stdout)]
    got = 0
    for line in r.stdout.splitlines():
        if "received" in line:
            got = int(line.split(",")[1].split()[0])
    return got, seqs, r.stdout + r.stderr


def payload(lab, size):
    path = os.path.join(lab.dir, f"payload-{size}")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(os.urandom(size))
    return path


class Transfer:
    """A TCP transfer from the client namespace to the server; result() ->
    (intact, description)."""

    def __init__(self, lab, srv_ns, srv_addr, cli_ns, size, port=5001, rate=0, timeout=90, src=None):
        import hashlib
        self.lab, self.size = lab, size
        self.path = payload(lab, size)
        self.digest = hashlib.sha256(open(self.path, "rb").read()).hexdigest()
        self.srv = lab.popen(srv_ns, ["/usr/bin/python3", TCP_XFER, "serve", srv_addr, str(port), str(timeout)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        self.t0 = time.time()
        self.cli = lab.popen(cli_ns, ["/usr/bin/python3", TCP_XFER, "send", srv_addr, str(port), self.path,
                                      str(rate), *([src] if src else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.timeout = timeout

    def result(self):
        try:
            _, cerr = self.cli.communicate(timeout=self.timeout + 10)
            out, serr = self.srv.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.cli.kill()
            self.srv.kill()
            return False, "timed out"
        got = out.split()
        ok = self.cli.returncode == 0 and len(got) == 3 and int(got[0]) == self.size and got[1] == self.digest
        how = (f"{got[0] if got else 0} of {self.size} bytes in {time.time() - self.t0:.1f} s, "
               f"SHA-256 {'matches' if ok else 'differs'}")
        if self.cli.returncode != 0:
            how += f"; sender: {cerr.strip()[-200:]}"
        if serr.strip():
            how += f"; receiver: {serr.strip()[-200:]}"
        return ok, how


class Capture:
    def __init__(self, lab, ns, dev, name, flt="not arp"):
        self.path = os.path.join(lab.dir, f"{name}.pcap")
        self.proc = lab.popen(ns, ["tcpdump", "--immediate-mode", "-U", "-n", "-s", "0", "-i", dev, "-w", self.path,
                                   flt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(40):
            if os.path.exists(self.path):
                break
            time.sleep(0.05)
        time.sleep(0.3)

    def stop(self):
        time.sleep(0.3)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)
        return self.path


# ---- what a capture holds --------------------------------------------------------------------

def ipv4_packets(path):
    """[(src, dst, proto, l4 bytes, frag)] of the IPv4 packets of a capture
    (Ethernet or raw), IP fragments reassembled (RFC 791): a datagram whose
    fragments all arrived is one entry (frag 0) where its last fragment was;
    a fragment whose datagram stays incomplete is its own entry, l4 empty
    unless it is the first, frag its flags and offset. An IKE message larger
    than the MTU (IKE_AUTH with an RSA certificate, from a peer that does not
    use RFC 7383 fragmentation) crosses the wire in IP fragments."""
    linktype, pkts = read_pcap(path)
    out, pending, done, serial = [], {}, set(), 0
    for p in pkts:
        if linktype == 1:
            if len(p) < 14 or p[12:14] != b"\x08\x00":
                continue
            p = p[14:]
        elif linktype == 113:
            p = p[16:]
        if len(p) < 20 or p[0] >> 4 != 4:
            continue
        ihl = (p[0] & 15) * 4
        total = struct.unpack("!H", p[2:4])[0]
        ident, frag = struct.unpack("!HH", p[4:8])
        src = ".".join(str(b) for b in p[12:16])
        dst = ".".join(str(b) for b in p[16:20])
        body = p[ihl:total] if ihl <= total <= len(p) else p[ihl:]
        if frag & 0x3FFF == 0:  # neither more fragments nor an offset
            out.append((None, (src, dst, p[9], body, 0)))
            continue
        key = (src, dst, p[9], ident)
        if key not in pending:
            serial += 1
            pending[key] = {"serial": serial, "parts": {}, "end": None}
        d = pending[key]
        out.append((d["serial"], (src, dst, p[9], body if frag & 0x1FFF == 0 else b"", frag)))
        d["parts"][8 * (frag & 0x1FFF)] = body
        if not frag & 0x2000:
            d["end"] = 8 * (frag & 0x1FFF) + len(body)
        data, off = b"", 0
        while off in d["parts"]:
            data += d["parts"][off]
            off += len(d["parts"][off])
        if d["end"] is not None and off == d["end"]:
            del pending[key]
            done.add(d["serial"])
            out.append((None, (src, dst, key[2], data, 0)))
    # The fragments of a reassembled datagram go; the datagram stands for them.
    return [x for tag, x in out if tag is None or tag not in done]


def ike_messages(path):
    """[(frame, src, dst, ref.Message)] of the IKE messages of a capture (UDP 500 and 4500)."""
    out = []
    for i, (src, dst, proto, l4, _) in enumerate(ipv4_packets(path), 1):
        if proto != 17 or len(l4) < 8:
            continue
        sport, dport = struct.unpack("!HH", l4[:4])
        data = l4[8:]
        if 500 in (sport, dport):
            pass
        elif 4500 in (sport, dport) and len(data) >= 4 and data[:4] == b"\0\0\0\0":
            data = data[4:]
        else:
            continue
        m = ref.parse(data)
        if m is not None:
            out.append((i, src, dst, m))
    return out


def wire_classes(path):
    """Counts of what the wire between the IPsec ends carried: esp, esp-in-udp,
    ike, nat-keepalive, and anything else by a short description."""
    counts = {}
    for src, dst, proto, l4, frag in ipv4_packets(path):
        if proto == 50:
            k = "esp"
        elif proto == 17 and frag & 0x1FFF == 0 and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            data = l4[8:]
            if 500 in (sport, dport) and ref.parse(data):
                k = "ike"
            elif 4500 in (sport, dport):
                if data == b"\xff":
                    k = "nat-keepalive"
                elif data[:4] == b"\0\0\0\0" and ref.parse(data[4:]):
                    k = "ike"
                elif len(data) >= 8 and data[:4] != b"\0\0\0\0":
                    k = "esp-in-udp"
                else:
                    k = f"udp {src}:{sport}>{dst}:{dport}"
            else:
                k = f"udp {src}:{sport}>{dst}:{dport}"
        else:
            k = f"ip proto {proto} {src}>{dst}"
        counts[k] = counts.get(k, 0) + 1
    return counts


# ---- keys ------------------------------------------------------------------------------------

GCM_ESP = '"AES-GCM with 16 octet ICV [RFC4106]"'
CBC_ESP = '"AES-CBC [RFC3602]"'
INTEG_ESP = {32: '"HMAC-SHA-256-128 [RFC4868]"', 48: '"HMAC-SHA-384-192 [RFC4868]"', 64: '"HMAC-SHA-512-256 [RFC4868]"'}


def esp_rows_from_charon(children):
    """Wireshark esp_sa lines for charon's logged CHILD_SAs: keys 'initiator'
    protect what the exchange's initiator sends."""
    rows = []
    for c in children:
        gcm = not c["integ_i"]
        for spi, who in ((c["spi_out"], "i" if c["we_initiated"] else "r"),
                         (c["spi_in"], "r" if c["we_initiated"] else "i")):
            enc, integ = c["enc_" + who], c["integ_" + who]
            integ_name = '"NULL"' if gcm else INTEG_ESP[len(integ)]
            integ_key = "0x" + integ.hex() if integ else ""
            rows.append(f'"IPv4","*","*","0x{spi:08x}",{GCM_ESP if gcm else CBC_ESP},"0x{enc.hex()}",'
                        f'{integ_name},"{integ_key}"')
    return rows


def ike_rows_from_keysets(pcap, keysets):
    """Wireshark ikev2_decryption_table lines: each IKE SA of the capture with
    the logged key set that authenticates its messages."""
    rows, seen = [], set()
    for _, _, _, m in ike_messages(pcap):
        pair = (m.spi_i, m.spi_r)
        if not m.encrypted or pair in seen or m.spi_r == 0:
            continue
        k = next((k for k in keysets if ref.integrity_ok(m, k)), None)
        if k is not None:
            seen.add(pair)
            rows.append(k.wireshark_row(*pair))
    return rows


def auth_methods(pcap, keysets):
    """[(sender is the initiator, AUTH method)] of the IKE_AUTH messages of a
    capture that carry AUTH, decrypted (fragments reassembled) with the key set
    that fits."""
    out, frags = [], {}
    for _, _, _, m in ike_messages(pcap):
        if m.exchange != ref.IKE_AUTH or not m.encrypted:
            continue
        k = next((k for k in keysets if ref.integrity_ok(m, k)), None)
        if k is None:
            continue
        if m.payload(ref.SKF) is not None:
            key = (m.spi_i, m.spi_r, m.mid, m.flags)
            frags.setdefault(key, {})[m.payload(ref.SKF)[:2]] = m
            total = struct.unpack("!H", m.payload(ref.SKF)[2:4])[0]
            if len(frags[key]) < total:
                continue
            inner = ref.reassemble(list(frags.pop(key).values()), k)
        else:
            inner = ref.decrypt(m, k)
        auth = next((b for t, b in inner or [] if t == ref.AUTH), None)
        if auth:
            out.append((m.initiator, auth[0]))
    return out


def uat_dir(lab, name, ike_rows, esp_rows):
    d = os.path.join(lab.dir, name)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "ikev2_decryption_table"), "w").write("".join(r + "\n" for r in ike_rows))
    open(os.path.join(d, "esp_sa"), "w").write("".join(r + "\n" for r in esp_rows))
    return d


def keys_for(lab, peer, pcaps):
    """The UAT directory that proves `peer`'s traffic: ipsentry's --save-keys
    directory, or charon's logged keys mapped to the capture."""
    if peer.kind == "ipsentry":
        return peer.keydir
    ike_sets, children = peer.keys()
    ike_rows = []
    for p in pcaps:
        ike_rows += [r for r in ike_rows_from_keysets(p, ike_sets) if r not in ike_rows]
    return uat_dir(lab, f"keys-{peer.name}", ike_rows, esp_rows_from_charon(children))


def read_uat(d):
    rows = {}
    for name in ("ikev2_decryption_table", "esp_sa"):
        p = os.path.join(d, name)
        rows[name] = [l.strip() for l in open(p).read().splitlines()
                      if l.strip() and not l.startswith("#")] if os.path.exists(p) else []
    return rows


def saved_ike_keysets(d):
    """The IKE key sets of a UAT directory as ref.IkeKeys (for decrypting with the reference)."""
    return [ref.IkeKeys(bytes.fromhex(ei), bytes.fromhex(er), bytes.fromhex(ai), bytes.fromhex(ar))
            for ei, er, ai, ar in ike_keys_of_uat(read_uat(d)["ikev2_decryption_table"]).values()]


def esp_keys_of_uat(rows):
    """{spi: (enc key hex, integ key hex)} of esp_sa lines."""
    out = {}
    for f in uat_fields(rows):
        if len(f) >= 8:
            out[int(f[3], 16)] = (f[5].lower().removeprefix("0x"), f[7].lower().removeprefix("0x"))
    return out


def ike_keys_of_uat(rows):
    """{(spi_i, spi_r): (sk_ei, sk_er, sk_ai, sk_ar)} of ikev2_decryption_table lines."""
    out = {}
    for f in uat_fields(rows):
        if len(f) >= 8:
            out[(int(f[0], 16), int(f[1], 16))] = (f[2].lower(), f[3].lower(), f[5].lower(), f[6].lower())
    return out


def uat_fields(rows):
    """The fields of UAT lines, quoted or not; empty ones kept (an AEAD IKE
    SA's integrity keys are empty: `...,"AES-GCM-128 ...",,,"NONE ..."`)."""
    import csv
    return list(csv.reader(rows))


# ---- the proofs ------------------------------------------------------------------------------

def verify(lab, pcap, keydir):
    """ipsentry verify with the UAT files: (ESP packets, ok verdicts, encrypted IKE
    messages, decrypted, output)."""
    args = [Ipsentry.BINARY, "verify", "--json", "--no-progress"]
    for fmt, name in (("wireshark-ikev2", "ikev2_decryption_table"), ("wireshark", "esp_sa")):
        p = os.path.join(keydir, name)
        if os.path.exists(p) and os.path.getsize(p) > 0:
            args += ["--keys-from", fmt, p]
    r = subprocess.run(args + [pcap], capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        return None, f"exit {r.returncode}: {r.stderr.strip()[-500:]}"
    st = out["statistics"]
    msgs = out["ike"].get("messages", [])
    enc = [m for m in msgs if m["status"] != "cleartext"]
    # A fragment (RFC 7383) is decrypted on its own and waits for the others.
    dec = [m for m in enc if m["status"] == "decrypted" or
           (m["status"] == "fragment" and (m.get("detail") or "").startswith("decrypted"))]
    return {"esp": st["ipsec_packets"], "ok": st["verdicts"].get("ok", 0), "verdicts": st["verdicts"],
            "ike": len(msgs), "ike_encrypted": len(enc), "ike_decrypted": len(dec),
            "undecrypted": [(m["frame"], m["status"], m.get("detail")) for m in enc if m not in dec],
            "messages": msgs, "exit": r.returncode}, ""


def negotiations(pcap, keydir=None):
    """`ipsentry verify --json`'s ike.negotiations of a capture (with the IKE keys of keydir)."""
    args = [Ipsentry.BINARY, "verify", "--json", "--no-progress"]
    if keydir and os.path.getsize(os.path.join(keydir, "ikev2_decryption_table")):
        args += ["--keys-from", "wireshark-ikev2", os.path.join(keydir, "ikev2_decryption_table")]
    r = subprocess.run(args + [pcap], capture_output=True, text=True, timeout=120)
    try:
        return json.loads(r.stdout)["ike"]["negotiations"]
    except (ValueError, KeyError):
        return []


def tshark_counts(pcap, keydir):
    """What tshark decrypts with the same UAT files: (ESP packets, decrypted with a
    good or unchecked ICV, encrypted IKE messages, decrypted)."""
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=keydir)
    r = subprocess.run(["tshark", "-n", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE",
                        "-o", "esp.enable_authentication_check:TRUE", "-o", "esp.enable_null_encryption_decode_heuristic:FALSE",
                        "-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "esp.spi",
                        "-e", "esp.protocol", "-e", "esp.icv_bad", "-e", "isakmp.typepayload",
                        "-e", "isakmp.enc.pad_length"],
                       capture_output=True, text=True, env=env, timeout=300)
    esp = esp_dec = ike_enc = ike_dec = 0
    for line in r.stdout.splitlines():
        f = line.split("|")
        if len(f) < 6:
            continue
        if f[1]:
            esp += 1
            if f[2] and f[3] not in ("1", "True"):
                esp_dec += 1
        if f[4] and {"46", "53"} & set(f[4].split(",")):  # SK or SKF (RFC 7383)
            ike_enc += 1
            if f[5]:
                ike_dec += 1
    return esp, esp_dec, ike_enc, ike_dec


def prove_wire(lab, pcap, where, expect_udp_encap=None):
    """The wire between the IPsec ends carries only IKE, ESP (or ESP in UDP) and NAT keepalives."""
    w = wire_classes(pcap)
    other = {k: n for k, n in w.items() if k not in ("esp", "esp-in-udp", "ike", "nat-keepalive")}
    lab.check(not other and w.get("ike", 0) > 0 and (w.get("esp", 0) + w.get("esp-in-udp", 0)) > 0,
              f"{where}: only IKE and ESP on the wire ({w})")
    if expect_udp_encap is not None:
        lab.check(bool(w.get("esp-in-udp")) == expect_udp_encap and bool(w.get("esp")) != expect_udp_encap,
                  f"{where}: ESP {'in UDP 4500' if expect_udp_encap else 'as IP protocol 50'}")
    return w


def prove_keys(lab, pcap, keydir, where, expect_esp_min=10):
    """verify and tshark with the UAT files of `keydir` agree: every ESP packet ok,
    every encrypted IKE message decrypted."""
    v, err = verify(lab, pcap, keydir)
    if v is None:
        lab.check(False, f"{where}: ipsentry verify --keys-from wireshark-ikev2/wireshark fails: {err}")
        return None
    bad = {k: n for k, n in v["verdicts"].items() if n and k != "ok"}
    lab.check(v["esp"] >= expect_esp_min and v["ok"] == v["esp"] and not bad,
              f"{where}: ipsentry verify with the saved keys: {v['ok']} of {v['esp']} ESP packets ok {bad or ''}")
    # What the wire holds, IP fragments reassembled: verify must see each one.
    on_wire = sum(1 for _, _, _, m in ike_messages(pcap) if m.encrypted)
    broken = [(m["frame"], m["malformed"]) for m in v["messages"] if m.get("malformed")]
    lab.check(on_wire > 0 and v["ike_decrypted"] == v["ike_encrypted"] == on_wire,
              f"{where}: ipsentry verify decrypts every encrypted IKE message ({v['ike_decrypted']} of "
              f"{v['ike_encrypted']} it found, {on_wire} on the wire; {v['ike']} in all)"
              f"{' not: ' + str(v['undecrypted'][:5]) if v['undecrypted'] else ''}"
              f"{' malformed to it: ' + str(broken[:3]) if broken else ''}")
    esp, esp_dec, ike_enc, ike_dec = tshark_counts(pcap, keydir)
    lab.check(esp == v["esp"] and esp_dec == v["ok"],
              f"{where}: tshark decrypts as many ESP packets with the same files ({esp_dec} of {esp}, ipsentry "
              f"{v['ok']} of {v['esp']})")
    lab.check(ike_enc == v["ike_encrypted"] and ike_dec == v["ike_decrypted"],
              f"{where}: tshark decrypts as many IKE messages ({ike_dec} of {ike_enc}, ipsentry "
              f"{v['ike_decrypted']} of {v['ike_encrypted']})")
    return v


def prove_same_keys(lab, ips, charon, where):
    """The keys ipsentry saved equal the keys charon logged, SA by SA."""
    saved = read_uat(ips.keydir)
    ike_sets, children = charon.keys()
    s_esp = esp_keys_of_uat(saved["esp_sa"])
    c_esp = esp_keys_of_uat(esp_rows_from_charon(children))
    common = set(s_esp) & set(c_esp)
    same = [spi for spi in common if s_esp[spi] == c_esp[spi]]
    lab.check(len(common) >= 2 and len(same) == len(common) and len(common) == len(c_esp),
              f"{where}: ipsentry's saved ESP keys equal charon's for every CHILD_SA SPI charon logged "
              f"({len(same)} of {len(c_esp)} SPIs, ipsentry saved {len(s_esp)})")
    s_ike = ike_keys_of_uat(saved["ikev2_decryption_table"])
    c_ike = {(k.sk_ei.hex(), k.sk_er.hex(), k.sk_ai.hex(), k.sk_ar.hex()) for k in ike_sets}
    lab.check(len(s_ike) >= 1 and all(v in c_ike for v in s_ike.values()),
              f"{where}: every IKE key set ipsentry saved ({len(s_ike)}) is one charon derived ({len(c_ike)})")


def captures(lab, topo, name):
    """Captures of the wires between the IPsec ends, started before the peers so
    that they hold the whole negotiation."""
    return [Capture(lab, ns, dev, f"{name}-{dev}") for ns, dev in topo.wires]


def prove(lab, topo, peers, name, caps, size=10 * 1024 * 1024, first_ping=None, udp_encap=None, key_wires=None):
    """Ping and a TCP transfer through the IPsec ends, captured on the wires
    between them, then proven with each peer's keys. first_ping: check that the
    first echo request (the one that triggered the negotiation) was answered.
    udp_encap: ESP on the last wire must be in UDP 4500 (True) or protocol 50 (False).
    key_wires: for each peer, the capture whose addresses its keys name (default the last)."""
    if first_ping is not None:
        got, seqs, out = ping(lab, topo.client, topo.server_addr, count=3, wait=5)
        lab.check(got == 3 and 1 in seqs, f"{name}: the first ping ({first_ping}) triggers the negotiation and "
                                          f"is answered once the SA is up: {got}/3, answered {seqs}")
    got, seqs, out = ping(lab, topo.client, topo.server_addr, count=5)
    lab.check(got == 5, f"{name}: ping through the SA ({got}/5)")
    got2, _, _ = ping(lab, topo.server, "192.0.2.10" if topo.server_addr == HOST_B else "192.0.2.1", count=2)
    lab.check(got2 == 2, f"{name}: ping the other way ({got2}/2)")
    if got or got2:  # nothing passes: the transfer would only wait for its timeout
        t = Transfer(lab, topo.server, topo.server_addr, topo.client, size)
        ok, how = t.result()
    else:
        ok, how = False, "not tried: no ping passed"
    lab.check(ok, f"{name}: a {size // (1024 * 1024)} MB TCP transfer arrives intact ({how})")
    pcaps = [c.stop() for c in caps]
    for i, ((ns, dev), p) in enumerate(zip(topo.wires, pcaps)):
        prove_wire(lab, p, f"{name} {dev}", expect_udp_encap=udp_encap if i == len(pcaps) - 1 else None)
    for i, peer in enumerate(peers):
        pcap = pcaps[key_wires[i]] if key_wires else pcaps[-1]
        kd = keys_for(lab, peer, pcaps)
        prove_keys(lab, pcap, kd, f"{name}, {peer}'s keys")
    ips = [p for p in peers if p.kind == "ipsentry"]
    chs = [p for p in peers if p.kind == "charon"]
    if ips and chs:
        prove_same_keys(lab, ips[0], chs[0], name)
    return pcaps


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def established(peer, n=1):
    """Whether `peer` has n IKE SAs with a child installed."""
    try:
        sas = peer.sas()
    except Exception:  # noqa: BLE001 - a peer that is down has none
        return False
    return len([s for s in sas if s["children"] and s.get("state", "").upper() in ("ESTABLISHED", "")]) >= n


# ---- certificates ----------------------------------------------------------------------------

def make_pki(d):
    """A CA (RSA 2048) and two gateway certificates made with the openssl CLI:
    gw1 RSA 2048, named by its DN; gw2 ECDSA P-256, named by its SAN FQDN."""
    os.makedirs(d, exist_ok=True)

    def ossl(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=d)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/C=CH/O=ipsentry test/CN=ipsentry test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": os.path.join(d, "ca.pem")}
    for gw, newkey, opts in (("gw1", "rsa:2048", []), ("gw2", "ec", ["-pkeyopt", "ec_paramgen_curve:P-256"])):
        ossl("req", "-new", "-newkey", newkey, *opts, "-nodes", "-keyout", f"{gw}.key", "-out", f"{gw}.csr",
             "-subj", f"/C=CH/O=ipsentry test/CN={gw}.example.net")
        open(os.path.join(d, f"{gw}.ext"), "w").write(
            f"subjectAltName=DNS:{gw}.example.net\nkeyUsage=critical,digitalSignature\n"
            "basicConstraints=critical,CA:FALSE\n")
        ossl("x509", "-req", "-in", f"{gw}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-out", f"{gw}.pem", "-extfile", f"{gw}.ext")
        out[gw] = (os.path.join(d, f"{gw}.pem"), os.path.join(d, f"{gw}.key"))
    out["gw1_dn"] = "C=CH, O=ipsentry test, CN=gw1.example.net"
    out["gw2_fqdn"] = "gw2.example.net"
    return out


# ---- runs --------------------------------------------------------------------------------------

ROLES = {
    # name: (initiator kind, responder kind)
    "cc": ("charon", "charon"),
    "ci": ("charon", "ipsentry"),
    "ic": ("ipsentry", "charon"),
    "ii": ("ipsentry", "ipsentry"),
}


def make_peer(kind, lab, name, ns, conns, **opts):
    return (Charon if kind == "charon" else Ipsentry)(lab, name, ns, conns, **opts)


def parse_args(doc):
    import argparse
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ipsentry", required=True)
    ap.add_argument("--roles", default=os.environ.get("IKE_ROLES", "cc,ci,ic,ii"),
                    help="which runs: cc (charon both ends), ci (charon initiates, ipsentry responds), ic, ii")
    ap.add_argument("--only", default=os.environ.get("ONLY"), help="one scenario by name")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (logs, captures, keys)")
    a = ap.parse_args()
    Ipsentry.BINARY = os.path.abspath(a.ipsentry)
    a.roles = [r for r in a.roles.split(",") if r]
    return a


def run_scenarios(doc, scenarios, parallel=False):
    """scenarios: [(name, fn(lab, role), roles it runs in)] -> exit status.
    parallel: True, every run at the same time (for scenarios that mostly
    wait, such as rekeying and retransmissions); "roles", the roles of one
    scenario at the same time and the scenarios one after the other (for
    scenarios that move data: a few transfers at once, not all)."""
    a = parse_args(doc)
    skip_unless_root()
    import tempfile
    tmp = tempfile.mkdtemp(prefix="ipsentry-ike-")
    os.chmod(tmp, 0o755)
    t0 = time.time()
    table, threads = [], []

    def one(name, fn, role):
        t = time.time()
        print(f"# {name} [{role}: {ROLES[role][0]} initiates, {ROLES[role][1]} responds]", flush=True)
        lab = Lab(tmp, f"{name[:6]}{role}")
        before = len(RESULTS.fails)
        try:
            fn(lab, role)
        except Exception as e:  # noqa: BLE001 - a crash of the run is a failure of it
            import traceback
            traceback.print_exc()
            lab.check(False, f"exception: {e}")
        finally:
            lab.close()
            nf = len([f for f in RESULTS.fails[before:] if f.startswith(f"[{lab.run}]")])
            if nf:
                print(f"  ({lab.run}: logs, captures and keys of the failed run: {lab.dir})", flush=True)
            table.append((name, role, nf, time.time() - t))

    try:
        for name, fn, roles in scenarios:
            if a.only and a.only != name:
                continue
            roles = [r for r in roles if r in a.roles]
            for r in roles:
                if parallel:
                    threads.append(threading.Thread(target=one, args=(name, fn, r)))
                    threads[-1].start()
                    time.sleep(1)
                else:
                    one(name, fn, r)
            if parallel == "roles":
                for th in threads:
                    th.join()
                threads.clear()
        for th in threads:
            th.join()
    finally:
        # What failed runs left stays for the report; the rest goes.
        if not RESULTS.fails and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nscenario       role  result   seconds")
    for name, role, nf, secs in table:
        print(f"{name:<14} {role:<5} {'pass' if nf == 0 else f'{nf} fail':<8} {secs:6.1f}")
    print(f"{len(RESULTS.fails)} failure(s) in {time.time() - t0:.0f} s" if RESULTS.fails
          else f"all checks passed in {time.time() - t0:.0f} s")
    return 1 if RESULTS.fails else 0
