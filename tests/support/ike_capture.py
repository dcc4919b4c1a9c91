"""Cleartext IKE negotiations that fail, built byte by byte (RFC 2408 3.1,
RFC 7296 3.1) for the CLI and TUI tests: how a negotiation ended is in
cleartext Notify payloads, so no keys are needed to tell.

failed_negotiations(path) writes a raw-IP pcap of
  1-2  IKEv1 Main Mode: the initiator's SA, answered by an Informational
       with NO-PROPOSAL-CHOSEN
  3-4  IKEv2 IKE_SA_INIT, answered with NO_PROPOSAL_CHOSEN
  5-6  IKEv1 Main Mode offered again and accepted (its SA echoed back)
and returns {frame: verdict} as ipsentry must give it."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from rawpcap import ipv4, write_pcap  # noqa: E402

INITIATOR = "192.0.2.1"
RESPONDER = "192.0.2.2"


def payloads(chain):
    """[(type, body)] -> (first payload type, bytes of the chain)."""
    out = b""
    for i, (_, body) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 0
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return (chain[0][0] if chain else 0), out


def isakmp(spi_i, spi_r, version, exchange, flags, mid, chain):
    first, body = payloads(chain)
    return struct.pack("!QQBBBBII", spi_i, spi_r, first, version << 4, exchange, flags, mid, 28 + len(body)) + body


def udp500(src, dst, msg):
    return ipv4(src, dst, 17, struct.pack("!HHHH", 500, 500, 8 + len(msg), 0) + msg)


def notify(v2, kind):
    return (b"" if v2 else struct.pack("!I", 1)) + struct.pack("!BBH", 1, 0, kind)


def failed_negotiations(path):
    sa_v1 = struct.pack("!II", 1, 1)  # DOI IPsec, situation identity only
    frames = [
        udp500(INITIATOR, RESPONDER, isakmp(0x1111, 0, 1, 2, 0, 0, [(1, sa_v1)])),
        udp500(RESPONDER, INITIATOR, isakmp(0x1111, 0x2222, 1, 5, 0, 0x01020304, [(11, notify(False, 14))])),
        udp500(INITIATOR, RESPONDER, isakmp(0x3333, 0, 2, 34, 0x08, 0, [(33, b""), (34, b"\0" * 36), (40, b"n" * 16)])),
        udp500(RESPONDER, INITIATOR, isakmp(0x3333, 0, 2, 34, 0x20, 0, [(41, notify(True, 14))])),
        udp500(INITIATOR, RESPONDER, isakmp(0x5555, 0, 1, 2, 0, 0, [(1, sa_v1)])),
        udp500(RESPONDER, INITIATOR, isakmp(0x5555, 0x6666, 1, 2, 0, 0, [(1, sa_v1)])),
    ]
    write_pcap(path, frames)
    return {1: "ok", 2: "ike-fail", 3: "ok", 4: "ike-fail", 5: "ok", 6: "ok"}
