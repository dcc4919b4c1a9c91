#!/usr/bin/python3
"""Builds the sample captures in this folder with scapy (an implementation of
ESP and AH independent of ipsentry). Deterministic: running it again gives
byte-identical files.

  seed-ah.pcap       the seed scenario: two IPv6 link-local hosts
                     FE80::2AA:FF:FE53:A92C and FE80::2AA:FF:FE92:D0F1 ping
                     each other under AH with HMAC-MD5, SPI 3001 towards host 2
                     and 3000 towards host 1, key file "This is a test"
  esp-tunnel.pcap    a gateway-to-gateway ESP tunnel with a modern suite
                     (AES-256-GCM-16): pings, DNS and a TCP exchange between
                     NetA and NetB, IPv4 and IPv6 inside an IPv4 tunnel
  esp-tunnel-faults.pcap  the same tunnel with the faults ipsentry must catch:
                     a changed byte, a replayed packet, an unknown SPI, a
                     truncated frame
  esp-tunnel-leak.pcap  the same tunnel with what only the policy audit
                     catches (verify --policy esp-tunnel.yaml): the TCP
                     handshake's SYN sent again in the clear, and an
                     authentic tunnel packet from outside NetB

Usage: /usr/bin/python3 samples/make_samples.py [OUTPUT_DIR]
"""
import os
import sys
from decimal import Decimal

from scapy.all import AH, ESP, Ether, ICMP, ICMPv6EchoReply, ICMPv6EchoRequest, IP, IPv6, Raw, TCP, UDP, wrpcap
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.ipsec import SecurityAssociation

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
T0 = Decimal("1700000000")  # fixed capture start, exact decimal times: reproducible files

# ---------------------------------------------------------------- seed (AH)

HOST1 = "fe80::2aa:ff:fe53:a92c"
HOST2 = "fe80::2aa:ff:fe92:d0f1"
MAC1 = "00:aa:00:53:a9:2c"  # the EUI-64 interface identifiers' MAC addresses
MAC2 = "00:aa:00:92:d0:f1"
KEY = b"This is a test"  # Test.key of the seed document, no newline

with open(os.path.join(OUT, "Test.key"), "wb") as f:
    f.write(KEY)

to_host2 = SecurityAssociation(AH, spi=3001, auth_algo="HMAC-MD5-96", auth_key=KEY)
to_host1 = SecurityAssociation(AH, spi=3000, auth_algo="HMAC-MD5-96", auth_key=KEY)

frames = []
t = T0
# Step 11 of the seed: host 2 pings host 1; then host 1 pings host 2.
for (src, dst, smac, dmac, req_sa, rep_sa) in (
    (HOST2, HOST1, MAC2, MAC1, to_host1, to_host2),
    (HOST1, HOST2, MAC1, MAC2, to_host2, to_host1),
):
    for i in range(1, 5):
        payload = bytes(range(32))
        req = IPv6(src=src, dst=dst, hlim=128) / ICMPv6EchoRequest(id=1, seq=i, data=payload)
        rep = IPv6(src=dst, dst=src, hlim=128) / ICMPv6EchoReply(id=1, seq=i, data=payload)
        for pkt, sa, (a, b) in ((req, req_sa, (smac, dmac)), (rep, rep_sa, (dmac, smac))):
            p = Ether(src=a, dst=b) / sa.encrypt(IPv6(bytes(pkt)))
            p.time = t
            frames.append(p)
            t += Decimal("0.25")
    t += 1
wrpcap(os.path.join(OUT, "seed-ah.pcap"), frames)

# ---------------------------------------------------------------- ESP tunnel

GW1, GW2 = "203.0.113.1", "198.51.100.1"
MAC_GW1, MAC_GW2 = "02:00:00:00:01:01", "02:00:00:00:02:02"
A4, B4 = "192.0.2.10", "192.0.2.130"
A6, B6 = "2001:db8:a::10", "2001:db8:b::10"
# AES-256-GCM with a 16-byte ICV: 32-byte key followed by the 4-byte salt.
KEY_AB = bytes.fromhex("6a1f0b3e9d2c4b5a6f7e8d9cabbacdcedff0e1d2c3b4a5968778695a4b3c2d1e" "a1b2c3d4")
KEY_BA = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0" "d4c3b2a1")
sa_ab = SecurityAssociation(ESP, spi=0xC0FFEE01, crypt_algo="AES-GCM", crypt_key=KEY_AB,
                            tunnel_header=IP(src=GW1, dst=GW2, ttl=64))
sa_ba = SecurityAssociation(ESP, spi=0xC0FFEE02, crypt_algo="AES-GCM", crypt_key=KEY_BA,
                            tunnel_header=IP(src=GW2, dst=GW1, ttl=64))

clear = []
for i in range(1, 4):
    clear.append(("ab", IP(src=A4, dst=B4, id=0x100 + i) / ICMP(id=0x4a, seq=i) / Raw(bytes(range(48)))))
    clear.append(("ba", IP(src=B4, dst=A4, id=0x200 + i) / ICMP(type=0, id=0x4a, seq=i) / Raw(bytes(range(48)))))
clear.append(("ab", IP(src=A4, dst=B4) / UDP(sport=53001, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="www.example.org"))))
clear.append(("ba", IP(src=B4, dst=A4) / UDP(sport=53, dport=53001) /
              DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.example.org"),
                  an=DNSRR(rrname="www.example.org", rdata="192.0.2.200"))))
clear.append(("ab", IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="S", seq=1000)))
clear.append(("ba", IP(src=B4, dst=A4) / TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001)))
clear.append(("ab", IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5001)))
clear.append(("ab", IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=5001) /
              Raw(b"GET / HTTP/1.1\r\nHost: netb.example\r\n\r\n")))
clear.append(("ba", IP(src=B4, dst=A4) / TCP(sport=80, dport=40000, flags="PA", seq=5001, ack=1039) /
              Raw(b"HTTP/1.1 204 No Content\r\n\r\n")))
clear.append(("ab", IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=9, seq=1, data=b"ipv6 through an ipv4 tunnel")))
clear.append(("ba", IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=9, seq=1, data=b"ipv6 through an ipv4 tunnel")))

tunnel = []
t = T0
for direction, pkt in clear:
    sa = sa_ab if direction == "ab" else sa_ba
    macs = (MAC_GW1, MAC_GW2) if direction == "ab" else (MAC_GW2, MAC_GW1)
    inner = pkt.__class__(bytes(pkt))
    # A per-packet IV taken from the sequence number keeps the file reproducible.
    esp = sa.encrypt(inner, iv=sa.seq_num.to_bytes(8, "big"))
    frame = Ether(src=macs[0], dst=macs[1]) / esp
    frame.time = t
    tunnel.append(frame)
    t += Decimal("0.1")
wrpcap(os.path.join(OUT, "esp-tunnel.pcap"), tunnel)

# ---------------------------------------------------------------- faults

faults = []
t = T0
for i, f in enumerate(tunnel[:6]):
    g = f.copy()
    g.time = t
    faults.append(g)
    t += Decimal("0.1")
tampered = bytearray(bytes(tunnel[6]))
tampered[14 + 20 + 8 + 8 + 5] ^= 0x01  # one ciphertext byte
g = Ether(bytes(tampered))
g.time = t
faults.append(g)                        # icv-fail
t += Decimal("0.1")
g = tunnel[2].copy()
g.time = t
faults.append(g)                        # replay of an earlier packet
t += Decimal("0.1")
unknown = bytearray(bytes(tunnel[7]))
unknown[14 + 20:14 + 24] = bytes.fromhex("deadbeef")
g = Ether(bytes(unknown))
g.time = t
faults.append(g)                        # unknown SPI
t += Decimal("0.1")
g = tunnel[8].copy()
g.time = t
faults.append(g)                        # written cut to 60 bytes below
t += Decimal("0.1")
g = tunnel[9].copy()
g.time = t
faults.append(g)                        # fine again
wrpcap(os.path.join(OUT, "esp-tunnel-faults.pcap"), faults)

# Cut the truncated frame the way a small snaplen would (keep orig length).
path = os.path.join(OUT, "esp-tunnel-faults.pcap")
data = bytearray(open(path, "rb").read())
off = 24
for n in range(len(faults)):
    incl = int.from_bytes(data[off + 8:off + 12], "little")
    if n == 9:
        data[off + 8:off + 12] = (60).to_bytes(4, "little")
        del data[off + 16 + 60:off + 16 + incl]
        incl = 60
    off += 16 + incl
open(path, "wb").write(bytes(data))

# ---------------------------------------------------------------- leak

leak = []
t = T0
extra = [
    # The SYN again, bypassing the tunnel: a cleartext leak.
    Ether(src=MAC_GW1, dst=MAC_GW2) / IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="S", seq=1000),
    # Gateway 2's SA, its keys, but a source outside NetB: a policy mismatch.
    Ether(src=MAC_GW2, dst=MAC_GW1) / sa_ba.encrypt(IP(src="198.51.100.99", dst=A4) / ICMP(id=0x4b, seq=1),
                                                     iv=sa_ba.seq_num.to_bytes(8, "big")),
]
for f in tunnel[:8] + extra + tunnel[8:]:
    g = f.copy()
    g.time = t
    leak.append(g)
    t += Decimal("0.1")
wrpcap(os.path.join(OUT, "esp-tunnel-leak.pcap"), leak)
print("wrote seed-ah.pcap (%d frames), esp-tunnel.pcap (%d), esp-tunnel-faults.pcap (%d), esp-tunnel-leak.pcap (%d)" %
      (len(frames), len(tunnel), len(faults), len(leak)))
