#!/usr/bin/python3
"""Round trips between ipsentry and independent IPsec implementations.

For every algorithm x mode x address family:
  * packets made by scapy (or, for what scapy lacks, by esp_ref.py on Python's
    `cryptography`) are verified by `ipsentry verify`; their decrypted output
    (`--write-decrypted`) must equal the original cleartext byte for byte;
  * a copy of one packet with any single byte changed after the SPI is an
    ICV failure, a re-sent packet is a replay, an unknown SPI is reported;
  * packets made by `ipsentry protect` are decrypted by scapy / esp_ref.py
    back to the original, and tshark reports a good ICV and the inner protocol
    for every suite it implements.
AH from scapy over IPv4 with options and IPv6 with extension headers must
verify; a changed immutable field must fail, a changed mutable one must pass.

Run: test_interop.py --ipsentry build/cli/ipsentry [-k SUBSTRING] [-v]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scapy.config import conf  # noqa: E402

conf.verb = 0
from scapy.layers.inet import ICMP, IP, UDP, IPOption_RR, IPOption_Router_Alert  # noqa: E402
from scapy.layers.inet6 import (HBHOptUnknown, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,  # noqa: E402
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, RouterAlert)
from scapy.layers.ipsec import AH, ESP, SecurityAssociation  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from esp_ref import IcvError, RefSA  # noqa: E402
from rawpcap import LINKTYPE_RAW, read_pcap, write_pcap  # noqa: E402


# (name, ipsentry encryption, key bytes, ipsentry auth, auth key bytes,
#  implementation, scapy (crypt, icv size, auth) or None, tshark (enc, auth) or None, esn)
SUITES = [
    ("null+sha1", "null", 0, "hmac-sha1-96", 20, "scapy", ("NULL", None, "HMAC-SHA1-96"),
     ("NULL", "HMAC-SHA-1-96 [RFC2404]"), False),
    ("des+md5", "des-cbc", 8, "hmac-md5-96", 16, "scapy", ("DES", None, "HMAC-MD5-96"),
     ("DES-CBC [RFC2405]", "HMAC-MD5-96 [RFC2403]"), False),
    ("3des+sha1", "3des-cbc", 24, "hmac-sha1-96", 20, "scapy", ("3DES", None, "HMAC-SHA1-96"),
     ("TripleDES-CBC [RFC2451]", "HMAC-SHA-1-96 [RFC2404]"), False),
    ("aes128cbc+sha256", "aes-cbc", 16, "hmac-sha256-128", 32, "scapy", ("AES-CBC", None, "SHA2-256-128"),
     ("AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"), False),
    ("aes192cbc+sha384", "aes-cbc", 24, "hmac-sha384-192", 48, "scapy", ("AES-CBC", None, "SHA2-384-192"),
     ("AES-CBC [RFC3602]", "HMAC-SHA-384-192 [RFC4868]"), False),
    ("aes256cbc+sha512", "aes-cbc", 32, "hmac-sha512-256", 64, "scapy", ("AES-CBC", None, "SHA2-512-256"),
     ("AES-CBC [RFC3602]", "HMAC-SHA-512-256 [RFC4868]"), False),
    ("aes128ctr+sha1", "aes-ctr", 20, "hmac-sha1-96", 20, "scapy", ("AES-CTR", None, "HMAC-SHA1-96"),
     ("AES-CTR [RFC3686]", "HMAC-SHA-1-96 [RFC2404]"), False),
    ("aes256ctr+sha256", "aes-ctr", 36, "hmac-sha256-128", 32, "scapy", ("AES-CTR", None, "SHA2-256-128"),
     ("AES-CTR [RFC3686]", "HMAC-SHA-256-128 [RFC4868]"), False),
    # scapy 2.5 appends a 16-byte tag whatever the ICV size: truncated GCM is on esp_ref.
    ("aes128gcm8", "aes-gcm-8", 20, "none", 0, "ref", None,
     ("AES-GCM with 8 octet ICV [RFC4106]", "NULL"), False),
    ("aes192gcm12", "aes-gcm-12", 28, "none", 0, "ref", None,
     ("AES-GCM with 12 octet ICV [RFC4106]", "NULL"), False),
    ("aes256gcm16", "aes-gcm-16", 36, "none", 0, "scapy", ("AES-GCM", 16, None),
     ("AES-GCM with 16 octet ICV [RFC4106]", "NULL"), False),
    ("aes128ccm8", "aes-ccm-8", 19, "none", 0, "scapy", ("AES-CCM", 8, None), None, False),
    ("aes192ccm12", "aes-ccm-12", 27, "none", 0, "scapy", ("AES-CCM", 12, None), None, False),
    ("aes256ccm16", "aes-ccm-16", 35, "none", 0, "scapy", ("AES-CCM", 16, None), None, False),
    ("chacha20poly1305", "chacha20-poly1305", 36, "none", 0, "scapy", ("CHACHA20-POLY1305", 16, None), None, False),
    ("aes128gcm16-esn", "aes-gcm-16", 20, "none", 0, "scapy", ("AES-GCM", 16, None), None, True),
    ("aes128gmac", "aes-gmac", 20, "none", 0, "ref", None, None, False),
    ("aes256gmac", "aes-gmac", 36, "none", 0, "ref", None, None, False),
    ("aes128cbc+xcbc", "aes-cbc", 16, "aes-xcbc-96", 16, "ref", None, None, False),
    ("aes128cbc+sha256-96", "aes-cbc", 16, "hmac-sha256-96", 32, "ref", None,
     ("AES-CBC [RFC3602]", "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]"), False),
    ("aes128cbc+sha1-esn", "aes-cbc", 16, "hmac-sha1-96", 20, "ref", None, None, True),
    ("aes128gcm16-iiv", "aes-gcm-16-iiv", 20, "none", 0, "ref", None, None, False),
    ("aes256ccm8-iiv", "aes-ccm-8-iiv", 35, "none", 0, "ref", None, None, False),
    ("chacha20poly1305-iiv", "chacha20-poly1305-iiv", 36, "none", 0, "ref", None, None, False),
]

REF_ENC = {"aes-cbc": "aes-cbc", "aes-gmac": "aes-gmac", "aes-gcm-8": "aes-gcm-8", "aes-gcm-12": "aes-gcm-12",
           "aes-gcm-16-iiv": "aes-gcm-16-iiv",
           "aes-ccm-8-iiv": "aes-ccm-8-iiv", "chacha20-poly1305-iiv": "chacha20-poly1305-iiv"}

H4A, H4B = "192.0.2.10", "192.0.2.20"
H6A, H6B = "2001:db8:1::10", "2001:db8:1::20"
G4A, G4B = "203.0.113.1", "198.51.100.1"
G6A, G6B = "2001:db8:ffff::1", "2001:db8:eeee::1"
N4A, N4B = "192.0.2.130", "192.0.2.140"
N6A, N6B = "2001:db8:a::10", "2001:db8:b::20"

# name: (mode, outer src, outer dst, inner family)
MODES = {
    "transport4": ("transport", H4A, H4B, 4),
    "transport6": ("transport", H6A, H6B, 6),
    "tunnel4in4": ("tunnel", G4A, G4B, 4),
    "tunnel6in6": ("tunnel", G6A, G6B, 6),
    "tunnel4in6": ("tunnel", G6A, G6B, 4),
    "tunnel6in4": ("tunnel", G4A, G4B, 6),
}


def key_bytes(n, seed):
    return bytes((seed * 31 + i * 7 + 1) & 0xff for i in range(n))


def cleartext(mode_name, count, size_seed):
    """Inner packets of the given family: ICMP echo requests and a UDP datagram."""
    mode, _, _, fam = MODES[mode_name]
    if mode == "transport":
        src, dst = (H4A, H4B) if fam == 4 else (H6A, H6B)
    else:
        src, dst = (N4A, N4B) if fam == 4 else (N6A, N6B)
    pkts = []
    for i in range(count):
        body = bytes((size_seed + i + j) & 0xff for j in range(7 + 13 * i + size_seed % 5))
        if fam == 4:
            inner = IP(src=src, dst=dst, id=0x100 + i, ttl=64)
            l4 = ICMP(type=8, id=0x4242, seq=i + 1) if i % 3 != 2 else UDP(sport=40000, dport=40001)
        else:
            inner = IPv6(src=src, dst=dst, hlim=64)
            l4 = ICMPv6EchoRequest(id=0x4242, seq=i + 1) if i % 3 != 2 else UDP(sport=40000, dport=40001)
        pkts.append(bytes(inner / l4 / Raw(body)))
    return pkts


def parse_ip(b):
    return IP(b) if b[0] >> 4 == 4 else IPv6(b)


class Suite:
    """One ESP SA of one suite in one mode, on scapy or on esp_ref."""

    def __init__(self, suite, mode_name, spi):
        (self.name, self.enc, klen, self.auth, alen, self.impl, self.scapy_args, self.tshark,
         self.esn) = suite
        self.mode_name = mode_name
        self.mode, self.src, self.dst, self.fam = MODES[mode_name]
        self.spi = spi
        self.enc_key = key_bytes(klen, spi)
        self.auth_key = key_bytes(alen, spi + 1)
        self._new_sa()

    def _new_sa(self, seq=1):
        if self.impl == "scapy":
            crypt, icv, auth = self.scapy_args
            tunnel = None
            if self.mode == "tunnel":
                tunnel = IP(src=self.src, dst=self.dst) if ":" not in self.src else IPv6(src=self.src, dst=self.dst)
            kw = dict(spi=self.spi, seq_num=seq, crypt_algo=crypt, crypt_key=self.enc_key,
                      tunnel_header=tunnel, esn_en=self.esn, esn=0)
            if icv:
                kw["crypt_icv_size"] = icv
            if auth:
                kw.update(auth_algo=auth, auth_key=self.auth_key)
            self.sa = SecurityAssociation(ESP, **kw)
        else:
            self.sa = RefSA(self.spi, REF_ENC[self.enc], self.enc_key, self.auth, self.auth_key, self.esn)
            self.sa.seq = seq - 1

    def protect(self, clear, seq):
        """The ESP packet for `clear` with sequence number `seq`."""
        if self.impl == "scapy":
            self.sa.seq_num = seq
            return bytes(self.sa.encrypt(parse_ip(clear)))
        self.sa.seq = seq - 1
        if self.mode == "tunnel":
            esp = self.sa.encrypt(clear, 4 if clear[0] >> 4 == 4 else 41)
            outer = IP(src=self.src, dst=self.dst, proto=50) if ":" not in self.src else IPv6(
                src=self.src, dst=self.dst, nh=50)
            return bytes(outer / Raw(esp))
        ip = parse_ip(clear)
        if ip.version == 4:
            hdr_len = ip.ihl * 4
            esp = self.sa.encrypt(clear[hdr_len:], ip.proto)
            out = IP(clear[:hdr_len])
            out.proto, out.len, out.chksum = 50, None, None
            return bytes(out / Raw(esp))
        esp = self.sa.encrypt(clear[40:], ip.nh)
        out = IPv6(clear[:40])
        out.nh, out.plen = 50, None
        return bytes(out / Raw(esp))

    def unprotect(self, packet):
        """Decrypts a packet made by ipsentry; returns the cleartext bytes."""
        ip = parse_ip(packet)
        if self.impl == "scapy":
            return bytes(self.sa.decrypt(ip))
        hdr_len = ip.ihl * 4 if ip.version == 4 else 40
        esp = packet[hdr_len:]
        seq = struct.unpack("!I", esp[4:8])[0]
        payload, nh = self.sa.decrypt(esp, seq)
        if self.mode == "tunnel":
            return payload
        if ip.version == 4:
            out = IP(packet[:hdr_len])
            out.proto, out.len, out.chksum = nh, None, None
        else:
            out = IPv6(packet[:40])
            out.nh, out.plen = nh, None
        return bytes(out / Raw(payload))

    def yaml(self, direction="inbound"):
        lines = [f"  - name: {self.name}-{self.mode_name}", f"    spi: {self.spi:#x}", "    protocol: esp",
                 f"    direction: {direction}", f"    src: {self.src}", f"    dst: {self.dst}",
                 f"    mode: {self.mode}", f"    encryption: {self.enc}"]
        if self.enc_key:
            lines.append(f"    enc_key: 0x{self.enc_key.hex()}")
        lines.append(f"    auth: {self.auth}")
        if self.auth_key:
            lines.append(f"    auth_key: 0x{self.auth_key.hex()}")
        if self.esn:
            lines.append("    esn: true")
        return "\n".join(lines) + "\n"

    def tshark_uat(self):
        enc, auth = self.tshark
        fam = "IPv6" if ":" in self.src else "IPv4"
        return (f'"{fam}","*","*","{self.spi:#010x}","{enc}","0x{self.enc_key.hex() if self.enc_key else ""}",'
                f'"{auth}","0x{self.auth_key.hex() if self.auth_key else ""}"')


class Failures:
    def __init__(self, verbose):
        self.items, self.checks, self.verbose = [], 0, verbose

    def check(self, cond, what):
        self.checks += 1
        if not cond:
            self.items.append(what)
            if self.verbose:
                print("FAIL:", what, flush=True)
        return cond


# --crypto BACKEND: passed to every verify and protect; BACKENDS_SEEN counts
# the SAs each backend did, so that a run meant for one backend proves it ran.
CRYPTO = []
BACKENDS_SEEN = {}


def run_verify(ipsentry, pcap, config, decrypted=None):
    cmd = [ipsentry, "verify", pcap, "-c", config, "--json", "--no-progress"] + CRYPTO
    if decrypted:
        cmd += ["-w", decrypted]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    doc = json.loads(r.stdout)
    for sa in doc["security_associations"]:
        if sa["crypto"]:
            BACKENDS_SEEN[sa["crypto"]] = BACKENDS_SEEN.get(sa["crypto"], 0) + 1
    return doc


def flip_positions(esp_offset, length):
    """Every byte from the sequence number to the end of the packet."""
    return range(esp_offset + 4, length)


def esp_offset_of(packet):
    ip = parse_ip(packet)
    if ip.version == 4:
        return ip.ihl * 4
    return 40


def esp_round_trip(ipsentry, suite_def, mode_name, spi, tmp, fails, tshark_jobs):
    s = Suite(suite_def, mode_name, spi)
    tag = f"{s.name}/{mode_name}"
    clear = cleartext(mode_name, 4, spi)
    # Frames: 4 good packets (seq 1..4), a replay of seq 2, the same packet with an
    # unknown SPI (seq 5), then for seq 100 every single-byte change after the SPI.
    good = [s.protect(c, i + 1) for i, c in enumerate(clear)]
    frames = list(good)
    frames.append(good[1])
    unknown = bytearray(s.protect(clear[0], 5))
    off = esp_offset_of(bytes(unknown))
    unknown[off:off + 4] = struct.pack("!I", spi ^ 0x5a5a0000)
    frames.append(bytes(unknown))
    base = s.protect(clear[3], 100)
    off = esp_offset_of(base)
    flips = []
    for pos in flip_positions(off, len(base)):
        t = bytearray(base)
        t[pos] ^= 0x01 if pos != off + 7 else 0x80  # keep seq 100 a new, in-window number
        flips.append(bytes(t))
    frames += flips

    cfg = os.path.join(tmp, f"{spi:x}.yaml")
    with open(cfg, "w") as f:
        f.write("sas:\n" + s.yaml())
    cap = os.path.join(tmp, f"{spi:x}.pcap")
    write_pcap(cap, frames)
    dec = os.path.join(tmp, f"{spi:x}-dec.pcap")
    out = run_verify(ipsentry, cap, cfg, dec)
    verdicts = [p["verdict"] for p in out["packets"]]
    fails.check(len(verdicts) == len(frames), f"{tag}: {len(verdicts)} verdicts for {len(frames)} frames")
    expected = ["ok"] * 4 + ["replay", "unknown-spi"] + ["icv-fail"] * len(flips)
    for i, (got, want) in enumerate(zip(verdicts, expected)):
        if not fails.check(got == want, f"{tag}: frame {i + 1}: {got}, expected {want}"
                           f" ({out['packets'][i].get('description')})"):
            break
    _, decrypted = read_pcap(dec)
    fails.check(decrypted == clear, f"{tag}: decrypted output differs from the cleartext "
                f"({len(decrypted)} packets)")

    # ipsentry protect -> the independent implementation decrypts.
    clear_cap = os.path.join(tmp, f"{spi:x}-clear.pcap")
    write_pcap(clear_cap, clear)
    ocfg = os.path.join(tmp, f"{spi:x}-out.yaml")
    with open(ocfg, "w") as f:
        f.write("sas:\n" + s.yaml("outbound"))
    prot = os.path.join(tmp, f"{spi:x}-prot.pcap")
    r = subprocess.run([ipsentry, "protect", clear_cap, "-c", ocfg, "--sa", f"{s.name}-{mode_name}", "-o", prot]
                       + CRYPTO,
                       capture_output=True, text=True)
    if not fails.check(r.returncode == 0, f"{tag}: protect exited {r.returncode}: {r.stderr.strip()}"):
        return
    linktype, protected = read_pcap(prot)
    fails.check(linktype == LINKTYPE_RAW, f"{tag}: protect wrote linktype {linktype}")
    fails.check(len(protected) == len(clear), f"{tag}: protect wrote {len(protected)} of {len(clear)} packets")
    s._new_sa()
    for i, (p, c) in enumerate(zip(protected, clear)):
        seq = struct.unpack("!I", p[esp_offset_of(p) + 4:esp_offset_of(p) + 8])[0]
        fails.check(seq == i + 1, f"{tag}: protected packet {i + 1} has sequence number {seq}")
        try:
            back = s.unprotect(p)
        except (IcvError, Exception) as e:  # scapy raises IPSecIntegrityError
            fails.check(False, f"{tag}: {s.impl} cannot decrypt ipsentry's packet {i + 1}: {e!r}")
            continue
        fails.check(back == c, f"{tag}: {s.impl} decrypted ipsentry's packet {i + 1} to different bytes")
    if s.tshark:
        tshark_jobs.append((s, protected, clear))


def tshark_check(jobs, tmp, fails):
    """One tshark run over every protected packet of every suite tshark implements."""
    conf_dir = os.path.join(tmp, "wireshark")
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "esp_sa"), "w") as f:
        for s, _, _ in jobs:
            f.write(s.tshark_uat() + "\n")
    frames, expect = [], []
    for s, protected, clear in jobs:
        for p, c in zip(protected, clear):
            frames.append(p)
            inner = parse_ip(c)
            l4 = "udp" if inner.haslayer(UDP) else ("icmp" if inner.version == 4 else "icmpv6")
            expect.append((s, l4))
    cap = os.path.join(tmp, "tshark.pcap")
    write_pcap(cap, frames)
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=conf_dir)
    r = subprocess.run(["tshark", "-n", "-r", cap, "-o", "esp.enable_encryption_decode:TRUE",
                        "-o", "esp.enable_authentication_check:TRUE", "-T", "fields", "-E", "separator=|",
                        "-e", "frame.number", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "esp.icv_bad",
                        "-e", "frame.protocols"], capture_output=True, text=True, env=env)
    fails.check(r.returncode == 0, f"tshark exited {r.returncode}: {r.stderr.strip()}")
    rows = [line.split("|") for line in r.stdout.splitlines()]
    fails.check(len(rows) == len(frames), f"tshark printed {len(rows)} rows for {len(frames)} frames")
    for row, (s, l4) in zip(rows, expect):
        tag = f"tshark {s.name}/{s.mode_name} frame {row[0]}"
        fails.check(row[2] in ("1", "True"), f"{tag}: ICV not good (icv_good={row[2]!r} icv_bad={row[3]!r})")
        fails.check(row[4].endswith(":" + l4) or f":{l4}:" in row[4] or row[4].endswith(l4 + ":data"),
                    f"{tag}: inner protocol not decoded: {row[4]}")
    return len(frames)


# ---------------------------------------------------------------------------
# AH

AH_SUITES = [("hmac-md5-96", "HMAC-MD5-96", 16), ("hmac-sha1-96", "HMAC-SHA1-96", 20),
             ("hmac-sha256-128", "SHA2-256-128", 32), ("hmac-sha384-192", "SHA2-384-192", 48),
             ("hmac-sha512-256", "SHA2-512-256", 64)]


def ah_v4_packet(i):
    return IP(src=H4A, dst=H4B, id=0x200 + i, ttl=64, tos=0, flags=0,
              options=[IPOption_Router_Alert(), IPOption_RR(routers=["192.0.2.1", "0.0.0.0"])]) / \
        ICMP(type=8, id=7, seq=i) / Raw(b"ipsentry-ah-%d" % i)


def ah_v6_packet(i):
    # Hop-by-hop: an immutable option (type 0x1e: action bits 00, change bit 0) and a
    # mutable one (0x3e: change bit set); destination options for the
    # intermediate nodes with a mutable option; a type 0 routing header with two
    # hops to go. scapy puts AH after the routing header.
    return IPv6(src=H6A, dst="2001:db8:1::99", hlim=64, tc=0, fl=0) / \
        IPv6ExtHdrHopByHop(options=[RouterAlert(), HBHOptUnknown(otype=0x1e, optdata=b"keep"),
                                    HBHOptUnknown(otype=0x3e, optdata=b"hops")]) / \
        IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3f, optdata=b"dd")]) / \
        IPv6ExtHdrRouting(type=0, addresses=["2001:db8:1::98", H6B], segleft=2) / \
        ICMPv6EchoRequest(id=7, seq=i, data=b"ipsentry-ah-%d" % i)


def rebuild(pkt):
    """Re-serialises after a field change, with the IPv4 checksum recomputed."""
    if pkt.version == 4:
        pkt.chksum = None
    return bytes(pkt)


def ah_variants(sa, make, fam):
    """(description, packet bytes, expected verdict) for one AH SA."""
    out = []
    seq = [0]

    def fresh(i):
        seq[0] += 1
        sa.seq_num = seq[0]
        return parse_ip(bytes(sa.encrypt(make(i))))

    for i in range(3):
        out.append((f"good {i}", bytes(fresh(i)), "ok"))
    if fam == 4:
        p = fresh(10)
        p.ttl = 3
        out.append(("ttl changed (mutable)", rebuild(p), "ok"))
        p = fresh(11)
        p.tos = 0xb8
        out.append(("tos changed (mutable)", rebuild(p), "ok"))
        p = fresh(12)
        p.flags = "DF"
        out.append(("DF set (mutable)", rebuild(p), "ok"))
        p = fresh(13)
        p.options[1].routers = ["192.0.2.1", "192.0.2.2"]
        p.options[1].pointer = 12
        out.append(("record route filled in (mutable option)", rebuild(p), "ok"))
        p = fresh(14)
        p.id ^= 1
        out.append(("IP id changed (immutable)", rebuild(p), "icv-fail"))
        p = fresh(15)
        p.src = "192.0.2.11"
        out.append(("source address changed (immutable)", rebuild(p), "icv-fail"))
        p = fresh(16)
        p.options[0].alert = 1
        out.append(("router alert value changed (immutable option)", rebuild(p), "icv-fail"))
    else:
        p = fresh(10)
        p.hlim = 3
        out.append(("hop limit changed (mutable)", rebuild(p), "ok"))
        p = fresh(11)
        p.tc, p.fl = 0xb8, 0x12345
        out.append(("traffic class and flow label changed (mutable)", rebuild(p), "ok"))
        p = fresh(12)
        p[IPv6ExtHdrHopByHop].options[2].optdata = b"HOPS"
        out.append(("mutable hop-by-hop option data changed", rebuild(p), "ok"))
        p = fresh(13)
        p[IPv6ExtHdrDestOpt].options[0].optdata = b"DD"
        out.append(("mutable destination option data changed", rebuild(p), "ok"))
        p = fresh(14)
        # Delivered: the routing header processed at both intermediate nodes.
        p[IPv6ExtHdrRouting].segleft = 0
        p[IPv6ExtHdrRouting].addresses = [p.dst, "2001:db8:1::98"]
        p.dst = H6B
        out.append(("routing header as delivered to the final destination", rebuild(p), "ok"))
        p = fresh(15)
        p[IPv6ExtHdrHopByHop].options[1].optdata = b"KEEP"
        out.append(("immutable hop-by-hop option data changed", rebuild(p), "icv-fail"))
        p = fresh(16)
        p.src = "2001:db8:1::11"
        out.append(("source address changed (immutable)", rebuild(p), "icv-fail"))
        p = fresh(17)
        p[IPv6ExtHdrRouting].addresses = ["2001:db8:1::97", H6B]
        out.append(("intermediate hop changed (immutable)", rebuild(p), "icv-fail"))
        p = fresh(18)
        p[IPv6ExtHdrRouting].addresses = ["2001:db8:1::98", "2001:db8:1::21"]
        # The SA belongs to the final destination, so another one has no SA.
        out.append(("final destination changed", rebuild(p), "unknown-spi"))
    p = bytearray(bytes(fresh(21)))
    p[-1] ^= 0x40
    out.append(("payload byte changed", bytes(p), "icv-fail"))
    p = fresh(22)
    icv = bytearray(p[AH].icv)
    icv[0] ^= 1
    p[AH].icv = bytes(icv)
    out.append(("ICV changed", rebuild(p), "icv-fail"))
    out.append(("replay of good 0", out[0][1], "replay"))
    return out


def ah_tests(ipsentry, tmp, fails):
    spi = 0x3000
    for ours, theirs, klen in AH_SUITES:
        for fam in (4, 6):
            spi += 1
            key = key_bytes(klen, spi)
            sa = SecurityAssociation(AH, spi=spi, auth_algo=theirs, auth_key=key)
            variants = ah_variants(sa, ah_v4_packet if fam == 4 else ah_v6_packet, fam)
            dst = H4B if fam == 4 else H6B
            cfg = os.path.join(tmp, f"ah{spi:x}.yaml")
            with open(cfg, "w") as f:
                f.write(f"sas:\n  - name: ah{fam}\n    spi: {spi:#x}\n    protocol: ah\n    dst: {dst}\n"
                        f"    mode: transport\n    auth: {ours}\n    auth_key: 0x{key.hex()}\n")
            cap = os.path.join(tmp, f"ah{spi:x}.pcap")
            write_pcap(cap, [v[1] for v in variants])
            out = run_verify(ipsentry, cap, cfg)
            got = [p["verdict"] for p in out["packets"]]
            fails.check(len(got) == len(variants), f"AH {ours}/IPv{fam}: {len(got)} verdicts")
            for (what, _, want), (g, p) in zip(variants, zip(got, out["packets"])):
                fails.check(g == want, f"AH {ours}/IPv{fam}: {what}: {g} ({p.get('description')}), expected {want}")
    # AH tunnel mode, both outer families, from scapy.
    for fam, (src, dst) in ((4, (G4A, G4B)), (6, (G6A, G6B))):
        spi += 1
        key = key_bytes(32, spi)
        hdr = IP(src=src, dst=dst) if fam == 4 else IPv6(src=src, dst=dst)
        sa = SecurityAssociation(AH, spi=spi, auth_algo="SHA2-256-128", auth_key=key, tunnel_header=hdr)
        clear = cleartext("tunnel4in6" if fam == 6 else "tunnel6in4", 3, spi)
        frames = []
        for i, c in enumerate(clear):
            sa.seq_num = i + 1
            frames.append(bytes(sa.encrypt(parse_ip(c))))
        sa.seq_num = 9
        bad = bytearray(bytes(sa.encrypt(parse_ip(clear[0]))))
        bad[-3] ^= 0x10
        frames.append(bytes(bad))
        cfg = os.path.join(tmp, f"ah{spi:x}.yaml")
        with open(cfg, "w") as f:
            f.write(f"sas:\n  - name: aht{fam}\n    spi: {spi:#x}\n    protocol: ah\n    dst: {dst}\n"
                    f"    src: {src}\n    mode: tunnel\n    auth: hmac-sha256-128\n    auth_key: 0x{key.hex()}\n")
        cap = os.path.join(tmp, f"ah{spi:x}.pcap")
        write_pcap(cap, frames)
        dec = os.path.join(tmp, f"ah{spi:x}-dec.pcap")
        out = run_verify(ipsentry, cap, cfg, dec)
        got = [p["verdict"] for p in out["packets"]]
        fails.check(got == ["ok", "ok", "ok", "icv-fail"], f"AH tunnel IPv{fam}: {got}")
        fails.check(read_pcap(dec)[1] == clear, f"AH tunnel IPv{fam}: decrypted output differs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    ap.add_argument("-k", default="", help="run only suites whose name contains this")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--crypto", help="the ESP crypto backend to verify and protect with (--crypto)")
    args = ap.parse_args()
    if args.crypto:
        CRYPTO.extend(["--crypto", args.crypto])
    fails = Failures(args.v)
    with tempfile.TemporaryDirectory(prefix="ipsentry-interop-") as tmp:
        spi = 0x1000
        jobs = []
        cases = 0
        for suite in SUITES:
            if args.k not in suite[0]:
                continue
            for mode_name in MODES:
                spi += 0x10
                cases += 1
                esp_round_trip(args.ipsentry, suite, mode_name, spi, tmp, fails, jobs)
        tshark_frames = tshark_check(jobs, tmp, fails) if jobs else 0
        if not args.k:
            ah_tests(args.ipsentry, tmp, fails)
    print(f"{cases} ESP suite x mode cases, {tshark_frames} ipsentry-protected frames checked by tshark, "
          f"{fails.checks} checks, {len(fails.items)} failures; ESP SAs per crypto backend: {BACKENDS_SEEN}")
    if args.crypto and args.crypto != "auto":
        fails.check(BACKENDS_SEEN.get(args.crypto, 0) > 0, f"--crypto {args.crypto}: no SA ran on it")
    for f in fails.items[:60]:
        print("FAIL:", f)
    return 1 if fails.items else 0


if __name__ == "__main__":
    sys.exit(main())
