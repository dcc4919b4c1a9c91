#!/usr/bin/python3
"""Seed corpora for the fuzz targets, from the bundled samples and the peer
corpus: whole captures, single frames (prefixed with the fuzz_packet selector
byte for their link type), configurations and key files.

Usage: make_seeds.py OUTDIR
"""
import glob
import gzip
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


# Configurations that reach what the samples do not: IKE SAs, policies with
# ports and exemptions, lifetimes, encapsulation, replay windows.
CONFIGS = [
    "interfaces: { local: [192.0.2.1, 2001:db8::1] }\ndefault_exemptions: false\npolicies:\n"
    "  - name: web\n    from: me\n    to: 198.51.100.0/24\n    protocol: tcp\n    to_port: 80-443\n"
    "    mirrored: true\n    action: protect\n    inbound: require\n"
    "    ipsec: { protocol: esp, mode: tunnel, peer: 198.51.100.1 }\n    sas: [out, in]\n"
    "  - name: rest\n    from: any\n    to: any\n    action: block\n"
    "sas:\n  - name: out\n    spi: 0x1000\n    direction: outbound\n    src: 192.0.2.1\n    dst: 198.51.100.1\n"
    "    protocol: esp\n    mode: tunnel\n    encryption: aes-gcm-16\n    enc_key: 0x" + "11" * 20 + "\n"
    "    replay_window: 0\n    lifetime: { seconds: 900, bytes: 2G, soft_packets: 100 }\n"
    "    encap: { sport: 4500, dport: 4500 }\n    esn: true\n    first_seq: 4294967290\n"
    "  - name: in\n    spi: 0x1001\n    direction: inbound\n    src: 198.51.100.1\n    dst: 192.0.2.1\n"
    "    protocol: esp\n    encryption: aes-cbc\n    enc_key: 0x" + "22" * 16 + "\n    auth: hmac-sha256-128\n"
    "    auth_key: 0x" + "33" * 32 + "\n    replay_window: 65536\n",
    "ike_sas:\n  - version: 2\n    spi_i: 0001020304050607\n    spi_r: 08090a0b0c0d0e0f\n"
    "    encryption: aes-cbc\n    integrity: hmac-sha256-128\n    prf: sha256\n    sk_ei: 0x" + "44" * 16 + "\n"
    "    sk_er: 0x" + "55" * 16 + "\n    sk_ai: 0x" + "66" * 32 + "\n    sk_ar: 0x" + "77" * 32 + "\n"
    "    sk_d: 0x" + "88" * 32 + "\n  - version: 1\n    spi_i: fafaeb49382a763c\n    enc_key: 0x" + "99" * 16 + "\n"
    "    hash: md5\n    skeyid_d: 0x" + "aa" * 16 + "\n",
    "sas:\n  - spi: any\n    protocol: ah\n    auth: hmac-md5-96\n    key_file: Test.key\n"
    "  - spi: 3001\n    protocol: esp\n    encryption: null\n    auth: unchecked-96\n",
]


def pcapng_variants(frame):
    """Synthesized pcapng files around one raw-IP frame: every interface
    option the parser reads (resolutions in both bases, time offsets of
    both signs), both byte orders, several sections and interfaces, the
    simple, obsolete and enhanced packet blocks, comments, secrets and
    statistics. Real captures rarely hold these; the parser must."""
    def blocks(order):
        def block(kind, body):
            body += b"\0" * (-len(body) % 4)
            return struct.pack(order + "II", kind, 12 + len(body)) + body + struct.pack(order + "I", 12 + len(body))

        def opt(code, value):
            return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

        def shb():
            return block(0x0a0d0d0a, struct.pack(order + "IHHq", 0x1a2b3c4d, 1, 0, -1))

        def idb(linktype, *options):
            return block(1, struct.pack(order + "HHI", linktype, 0, 0) + b"".join(options) + opt(0, b""))

        def epb(iface, ts, data, *options):
            return block(6, struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xffffffff, len(data), len(data)) + data
                         + b"\0" * (-len(data) % 4) + (b"".join(options) + opt(0, b"") if options else b""))
        return block, opt, shb, idb, epb

    out = {}
    for order, name in (("<", "le"), (">", "be")):
        block, opt, shb, idb, epb = blocks(order)
        q = order + "q"
        for resol in (6, 9, 0, 18, 0x80, 0x80 | 30, 0x80 | 63):
            for offset in (0, 1, -1, 2 ** 62, -2 ** 63):
                options = [opt(9, bytes([resol]))]
                if offset:
                    options.append(opt(14, struct.pack(q, offset)))
                out[f"ng-{name}-resol{resol}-off{offset}"] = (
                    shb() + idb(101, opt(2, b"eth0"), *options) + epb(0, 1700000000123456, frame)
                    + epb(0, 2 ** 64 - 1, frame))
        out[f"ng-{name}-sections"] = (
            shb() + idb(1, opt(2, b"a")) + idb(101) + epb(1, 5, frame, opt(1, b"comment"))
            + block(3, struct.pack(order + "I", len(frame)) + frame)
            + block(2, struct.pack(order + "HHIIII", 1, 0, 0, 7, len(frame), len(frame)) + frame)
            + block(10, struct.pack(order + "II", 0x45535053, 8) + b"\"IPv4\",")
            + block(5, struct.pack(order + "III", 0, 0, 0) + opt(4, struct.pack(q, 10)) + opt(0, b""))
            + shb() + idb(229) + idb(105) + epb(0, 9, frame) + epb(1, 10, b"\x08\x02" + b"\0" * 22))
    return out


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
    esp = bytes.fromhex("4500002c0001000040320000c0000201c0000202000001000000000100000000000000000000000000000000")
    for name, data in pcapng_variants(esp).items():
        put(os.path.join(out, "fuzz_capture_file"), name, data)
    # gzip: whole, cut short, cut in the trailer, corrupt (FileSource inflates them).
    with open(os.path.join(ROOT, "samples", "esp-tunnel-faults.pcap"), "rb") as f:
        packed = gzip.compress(f.read())
    for name, data in (("gz-whole", packed), ("gz-cut", packed[:len(packed) // 2]), ("gz-trailer", packed[:-4]),
                       ("gz-corrupt", packed[:40] + bytes(b ^ 0x55 for b in packed[40:60]) + packed[60:])):
        put(os.path.join(out, "fuzz_capture_file"), name, data)
    # Cleartext for the authenticated modes: an inner IPv4 ICMP echo (tunnel,
    # next header 4) and a UDP datagram (transport, next header 17), padded.
    icmp4 = bytes.fromhex("4500001c000100004001f78dc0000201c000020208000000f7fe00010001")
    udp = struct.pack("!HHHH", 53, 5353, 12, 0) + b"abcd"
    for sel, body in ((8, icmp4 + b"\x01\x02\x02\x04"), (9, udp + b"\x01\x02\x02\x11"),
                      (12, icmp4 + b"\x01\x02\x02\x04"), (13, udp + b"\x00\x11")):
        put(os.path.join(out, "fuzz_packet"), f"authenticated-{sel}", bytes([sel]) + body)
    for i, y in enumerate(CONFIGS):
        put(os.path.join(out, "fuzz_config"), f"synth-{i}.yaml", y.encode())
    for y in glob.glob(os.path.join(ROOT, "samples", "*.yaml")):
        with open(y, "rb") as f:
            put(os.path.join(out, "fuzz_config"), os.path.basename(y), f.read())
    for sel, pattern in ((0, "**/esp_sa*"), (1, "**/*secrets*.txt")):
        for p in glob.glob(os.path.join(ROOT, "tests/corpus/peers", pattern), recursive=True):
            with open(p, "rb") as f:
                put(os.path.join(out, "fuzz_importers"), f"{sel}-{os.path.basename(os.path.dirname(p))}-"
                    f"{os.path.basename(p)}", bytes([sel]) + f.read())
    put(os.path.join(out, "fuzz_importers"), "2-xfrm-s", b"\x02" + (
        b"src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00000100(256) reqid 1(0x00000001) mode tunnel\n"
        b"\treplay-window 0 seq 0x00000000 flag af-unspec esn (0x10100000)\n"
        b"\taead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 (160 bits) 128\n"
        b"\tanti-replay esn context:\n\t seq-hi 0x0, seq 0x5, oseq-hi 0x0, oseq 0x0\n"
        b"\t replay_window 64, bitmap-length 2\n\t 00000000 0000001f \n\tdir in\n"
        b"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0\n\tlifetime config:\n"
        b"\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n\tlifetime current:\n\t  0(bytes), 0(packets)\n"
        b"\tstats:\n\t  replay-window 0 replay 0 failed 0\n"
        b"src 192.0.2.2 dst 192.0.2.1\\\tproto esp spi 0x00000101(257) reqid 1(0x00000001) mode transport\\"
        b"\treplay-window 32 flag af-unspec\\\tauth-trunc hmac(sha1) 0x" + b"11" * 20 + b" (160 bits) 96\\"
        b"\tenc ecb(cipher_null) \\\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0\\\n"))
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
    print(f"seeds: {len(captures)} captures, {n} frames, {len(ike)} IKE messages")


if __name__ == "__main__":
    main()
