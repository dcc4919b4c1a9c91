#!/usr/bin/python3
"""Seed corpora for the fuzz targets, from the bundled samples and the peer
corpus: whole captures, single frames (prefixed with the fuzz_packet selector
byte for their link type), configurations and key files.

Usage: make_seeds.py OUTDIR
"""
import glob
import os
import struct
import sys
import warnings

warnings.filterwarnings("ignore")
from scapy.config import conf  # noqa: E402

conf.verb = 0
from scapy.utils import RawPcapNgReader, RawPcapReader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINKTYPES = [0, 1, 101, 108, 113, 228, 229, 276]  # fuzz_packet's selector order


def put(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(path):
    with open(path, "rb") as f:
        ng = f.read(4) == b"\x0a\x0d\x0d\x0a"
    try:
        reader = RawPcapNgReader(path) if ng else RawPcapReader(path)
        for pkt, meta in reader:
            lt = getattr(meta, "linktype", None)
            if lt is None:
                lt = reader.linktype
            yield lt, pkt
    except Exception:  # a damaged capture still seeds fuzz_capture_file
        return


def main():
    out = sys.argv[1]
    captures = sorted(glob.glob(os.path.join(ROOT, "samples", "*.pcap")) +
                      [p for p in glob.glob(os.path.join(ROOT, "tests/corpus/peers/**/*.pcap*"), recursive=True)
                       if os.path.getsize(p) < 64 * 1024])
    n = 0
    for cap in captures:
        base = os.path.basename(os.path.dirname(cap)) + "-" + os.path.basename(cap)
        with open(cap, "rb") as f:
            put(os.path.join(out, "fuzz_capture_file"), base, f.read())
        for i, (lt, pkt) in enumerate(frames(cap)):
            if lt in LINKTYPES and i < 40:
                put(os.path.join(out, "fuzz_packet"), f"{base}-{i}", bytes([LINKTYPES.index(lt)]) + pkt)
                n += 1
    # Cleartext for the authenticated modes: an inner IPv4 ICMP echo (tunnel,
    # next header 4) and a UDP datagram (transport, next header 17), padded.
    icmp4 = bytes.fromhex("4500001c000100004001f78dc0000201c000020208000000f7fe00010001")
    udp = struct.pack("!HHHH", 53, 5353, 12, 0) + b"abcd"
    for sel, body in ((8, icmp4 + b"\x01\x02\x02\x04"), (9, udp + b"\x01\x02\x02\x11"),
                      (12, icmp4 + b"\x01\x02\x02\x04"), (13, udp + b"\x00\x11")):
        put(os.path.join(out, "fuzz_packet"), f"authenticated-{sel}", bytes([sel]) + body)
    for y in glob.glob(os.path.join(ROOT, "samples", "*.yaml")):
        with open(y, "rb") as f:
            put(os.path.join(out, "fuzz_config"), os.path.basename(y), f.read())
    for sel, pattern in ((0, "**/esp_sa*"), (1, "**/*secrets*.txt")):
        for p in glob.glob(os.path.join(ROOT, "tests/corpus/peers", pattern), recursive=True):
            with open(p, "rb") as f:
                put(os.path.join(out, "fuzz_importers"), f"{sel}-{os.path.basename(os.path.dirname(p))}-"
                    f"{os.path.basename(p)}", bytes([sel]) + f.read())
    put(os.path.join(out, "fuzz_importers"), "2-xfrm", b"\x02" + (
        b"src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00000100 reqid 1 mode tunnel\n"
        b"\treplay-window 32 flag af-unspec\n\taead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128\n"
        b"src 192.0.2.2 dst 192.0.2.1\n\tproto esp spi 0x00000101 reqid 1 mode transport\n"
        b"\tauth-trunc hmac(sha256) 0x" + b"11" * 32 + b" 128\n\tenc cbc(aes) 0x" + b"22" * 16 + b"\n"))
    # IKE messages of the corpus (UDP 500 / 4500 payloads, non-ESP marker
    # removed), two per seed so that the second sees the first's state.
    ike = []
    for cap in captures:
        for lt, pkt in frames(cap):
            for port in (b"\x01\xf4\x01\xf4", b"\x11\x94\x11\x94"):
                at = pkt.find(port)
                if at >= 0 and len(pkt) > at + 8 + 28:
                    body = pkt[at + 8:]
                    if port[0] == 0x11:
                        if body[:4] != b"\0\0\0\0":
                            continue
                        body = body[4:]
                    ike.append(body)
                    break
    for i in range(0, len(ike), 2):
        put(os.path.join(out, "fuzz_ike"), f"ike-{i}", b"IKE!".join(ike[i:i + 2]))
    for i, p in enumerate(glob.glob(os.path.join(ROOT, "tests/corpus/peers", "wireshark/ikev*_decryption_table*"))):
        with open(p, "rb") as f:
            put(os.path.join(out, "fuzz_importers"), f"ike-table-{i}", bytes([3 + i % 2]) + f.read())
    put(os.path.join(out, "fuzz_importers"), "5-charon", b"\x05" + (
        b"Nov 22 19:48:52 02[CFG] selected proposal: IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048\n"
        b"Nov 22 19:48:52 02[IKE] SKEYSEED => 4 bytes @ 0x1\n"
        b"Nov 22 19:48:52 02[IKE]    0: 01 02 03 04                                      ....\n"
        b"Nov 22 19:48:52 02[IKE] Sk_ei secret => 16 bytes @ 0x4\n"
        b"Nov 22 19:48:52 02[IKE]    0: AA 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................\n"))
    # fuzz_ike_responder replays the exchange it records at start: op 0 is
    # "recorded datagram k as is", op 6 "time passes" (two bytes, 0.1 s units).
    responder = os.path.join(out, "fuzz_ike_responder")
    put(responder, "replay", b"".join(bytes([0, k]) for k in range(20)))
    put(responder, "replay-ticks", b"".join(bytes([0, k, 6, 0, 1, 44]) for k in range(20)))
    put(responder, "init-twice-then-auth", bytes([0, 0, 0, 0, 0, 1, 0, 1]))
    put(responder, "idle-for-a-day", bytes([0, 0, 0, 1]) + bytes([6, 0, 0xff, 0xff]) * 14)
    print(f"seeds: {len(captures)} captures, {n} frames, {len(ike)} IKE messages")


if __name__ == "__main__":
    main()
