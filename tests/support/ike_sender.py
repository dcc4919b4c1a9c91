#!/usr/bin/python3
"""Sends IKE datagrams from a namespace through a raw socket, so that the
source address and port can be anything (run with `ip netns exec`).

  ike_sender.py flood DST COUNT RATE NET...  IKE_SA_INIT requests (curve25519, AES-GCM-16,
                                             PRF-HMAC-SHA2-256: what the responder accepts),
                                             each from a random address of the NETs
                                             (/24s, "198.51.100.0"), port 500
  ike_sender.py cookieflood DST COUNT RATE IFACE NET...
                                             the same, but an attacker who sees the answers:
                                             each COOKIE is sent back (RFC 7296 2.6 lets a
                                             flood from real addresses through), so every
                                             request costs the responder a half-open SA;
                                             prints "sent cookies_answered full_answers
                                             other_answers"
  ike_sender.py send FILE                    the datagrams of a JSON list
                                             [{src, sport, dst, dport, hex, plain}] (4500: with
                                             the non-ESP marker already in hex; plain: through
                                             a UDP socket, fragmented by the kernel)
Prints how many were sent."""
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import ikev2_ref as ref  # noqa: E402
from rawpcap import ipv4  # noqa: E402


def udp(src, dst, sport, dport, data):
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


# The mark of charon's own IKE and ESP sockets in these tests (ike_lab.FWMARK):
# it routes past charon's table 220, whose routes would swallow the packets
# into its TUN device.
MARK = int(os.environ.get("IKE_SENDER_MARK", "0x4240"), 16)


def sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    return s


def flood(dst, count, rate, nets):
    s = sender()
    t0 = time.time()
    sent = 0
    for i in range(count):
        net = random.choice(nets).rsplit(".", 1)[0]
        src = f"{net}.{random.randint(1, 254)}"
        msg = ref.Initiator(b"x", src, dst, None, None).init()
        try:
            s.sendto(udp(src, dst, 500, 500, msg), (dst, 0))
            sent += 1
        except OSError:
            pass
        wait = t0 + (i + 1) / rate - time.time()
        if wait > 0:
            time.sleep(wait)
    print(sent, flush=True)


def cookieflood(dst, count, rate, iface, nets):
    """The answers to the spoofed sources come back through this namespace
    (the responder routes them here), so a packet socket on IFACE reads them
    although no address of ours is theirs."""
    s = sender()
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    rx.bind((iface, 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.setblocking(False)
    pending = {}  # spi_i -> (Initiator, its source address)
    counts = {"sent": 0, "cookies": 0, "full": 0, "other": 0}

    def out(src, msg):
        try:
            s.sendto(udp(src, dst, 500, 500, msg), (dst, 0))
            return True
        except OSError:
            return False

    def drain():
        while True:
            try:
                pkt = rx.recv(65535)
            except BlockingIOError:
                return
            if len(pkt) < 28 or pkt[9] != 17 or socket.inet_ntoa(pkt[12:16]) != dst:
                continue
            ihl = (pkt[0] & 15) * 4
            sport, dport = struct.unpack("!HH", pkt[ihl:ihl + 4])
            if sport != 500 or dport != 500:
                continue
            m = ref.parse(pkt[ihl + 8:])
            if m is None or m.spi_i not in pending or not m.response:
                continue
            ini, src = pending[m.spi_i]
            if ref.COOKIE in m.notifies():
                if not ini.cookie and out(src, ini.on_init_response(pkt[ihl + 8:])):
                    counts["cookies"] += 1
                continue
            del pending[m.spi_i]
            counts["full" if m.payload(ref.KE) is not None else "other"] += 1

    t0 = time.time()
    for i in range(count):
        net = random.choice(nets).rsplit(".", 1)[0]
        src = f"{net}.{random.randint(1, 254)}"
        ini = ref.Initiator(b"x", src, dst, None, None)
        if out(src, ini.init()):
            counts["sent"] += 1
            pending[ini.spi_i] = (ini, src)
        drain()
        due = t0 + (i + 1) / rate
        while due > time.time():
            drain()
            time.sleep(min(0.002, max(0.0, due - time.time())))
    end = time.time() + 3  # the last cookies' round trips
    while time.time() < end:
        drain()
        time.sleep(0.01)
    print(counts["sent"], counts["cookies"], counts["full"], counts["other"], flush=True)


def send(path):
    s = sender()
    sent = 0
    for d in json.load(open(path)):
        data = bytes.fromhex(d["hex"])
        try:
            if d.get("plain"):
                # Larger than the MTU: a UDP socket, so that the kernel fragments it
                # (a raw socket with our own header refuses with EMSGSIZE).
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
                u.bind((d["src"], 0))
                u.sendto(data, (d["dst"], d["dport"]))
                u.close()
            else:
                s.sendto(udp(d["src"], d["dst"], d["sport"], d["dport"], data), (d["dst"], 0))
            sent += 1
        except OSError as e:
            print(f"{len(data)} bytes: {e}", file=sys.stderr)
        time.sleep(0.01)
    print(sent, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "flood":
        flood(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
    elif sys.argv[1] == "cookieflood":
        cookieflood(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6:])
    else:
        send(sys.argv[2])
