"""Classic pcap files and IPv4 headers built by hand, for the test and
benchmark scripts (no scapy: it is slow for 100,000 packets)."""
import struct

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def write_pcap(path, packets, linktype=LINKTYPE_RAW, step_us=1000, start=1700000000):
    """Microsecond pcap; packet i is stamped start + i * step_us. `packets`
    may be any iterable, so large captures are streamed."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, linktype))
        for i, p in enumerate(packets):
            ts = start * 1000000 + i * step_us
            f.write(struct.pack("<IIII", ts // 1000000, ts % 1000000, len(p), len(p)))
            f.write(p)


def read_pcap(path):
    """(linktype, [packet bytes]) of a classic pcap, µs or ns, little-endian."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xa1b2c3d4, 0xa1b23c4d), hex(magic)
    linktype = struct.unpack("<I", data[20:24])[0]
    out, off = [], 24
    while off < len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return linktype, out


def checksum(b):
    """The Internet checksum (RFC 1071)."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ipv4(src, dst, proto, payload, ident=1):
    """An IPv4 packet with a correct header checksum; addresses dotted."""
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xffff, 0, 64, proto, 0,
                              bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))))
    struct.pack_into("!H", h, 10, checksum(bytes(h)))
    return bytes(h) + payload
