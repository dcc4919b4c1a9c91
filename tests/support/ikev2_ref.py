"""A small IKEv2 reference in Python (RFC 7296), independent of ipsentry's
C++: message building and parsing, the key schedule, PSK AUTH and the SK
payload (AES-GCM-16, AES-CBC + HMAC-SHA-2) on Python's `cryptography`.

The tests use it to tell which logged key set belongs to which IKE SA of a
capture (trial integrity checks), to build well-formed and deliberately
broken messages, and as the scripted initiator of the IKE benchmark. It is
a test tool: it checks what it needs and nothing more, and it never runs in
ipsentry."""
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Exchange types, flags and payload types (RFC 7296 3.1, 3.2).
IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 34, 35, 36, 37
FLAG_I, FLAG_R = 0x08, 0x20
SA, KE, IDI, IDR, CERT, CERTREQ, AUTH, NONCE, NOTIFY, DELETE, VENDOR, TSI, TSR, SK = range(33, 47)
SKF = 53  # an encrypted fragment (RFC 7383)
AUTH_DIGITAL_SIGNATURE = 14  # RFC 7427
# Notify types used by the tests.
NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, AUTHENTICATION_FAILED, TS_UNACCEPTABLE = 14, 17, 24, 38
COOKIE, USE_TRANSPORT_MODE = 16390, 16391
NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP = 16388, 16389
# Transform ids.
ENCR, PRF, INTEG, DH, ESN = 1, 2, 3, 4, 5
ENCR_AES_CBC, ENCR_AES_GCM_16 = 12, 20
PRF_HMAC_SHA2 = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}
INTEG_HMAC_SHA2 = {12: (hashlib.sha256, 16), 13: (hashlib.sha384, 24), 14: (hashlib.sha512, 32)}
DH_CURVE25519 = 31
HEADER = struct.Struct("!QQBBBBII")


def prf(h, key, data):
    return hmac.new(key, data, h).digest()


def prf_plus(h, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(h, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


# ---- parsing -----------------------------------------------------------------

@dataclass
class Message:
    spi_i: int
    spi_r: int
    first: int
    version: int
    exchange: int
    flags: int
    mid: int
    raw: bytes
    payloads: list = field(default_factory=list)  # [(type, body)] of the cleartext chain

    @property
    def initiator(self):
        return bool(self.flags & FLAG_I)

    @property
    def response(self):
        return bool(self.flags & FLAG_R)

    def payload(self, kind):
        return next((b for t, b in self.payloads if t == kind), None)

    @property
    def encrypted(self):
        return any(t in (SK, SKF) for t, _ in self.payloads)

    def notifies(self, chain=None):
        return [struct.unpack("!H", b[2:4])[0] for t, b in (chain or self.payloads) if t == NOTIFY and len(b) >= 4]


def walk(first, data):
    """The payload chain [(type, body)]; raises ValueError when it overruns."""
    out, kind, off = [], first, 0
    while kind != 0:
        if off + 4 > len(data):
            raise ValueError("payload header beyond the message")
        nxt, _, length = struct.unpack_from("!BBH", data, off)
        if length < 4 or off + length > len(data):
            raise ValueError("payload length beyond the message")
        out.append((kind, data[off + 4: off + length]))
        if kind in (SK, SKF):  # the rest is encrypted
            break
        kind, off = nxt, off + length
    return out


def parse(data):
    """An IKEv2 message (without the non-ESP marker), or None."""
    if len(data) < HEADER.size:
        return None
    spi_i, spi_r, first, version, exchange, flags, mid, length = HEADER.unpack_from(data)
    if version >> 4 != 2 or length != len(data):
        return None
    m = Message(spi_i, spi_r, first, version, exchange, flags, mid, bytes(data))
    try:
        m.payloads = walk(first, data[HEADER.size:])
    except ValueError:
        return None
    return m


def sk_first_inner(m):
    """The next-payload field of the SK (or SKF) payload's generic header, and its offset."""
    off = HEADER.size
    kind = m.first
    while kind not in (SK, SKF):
        nxt, _, length = struct.unpack_from("!BBH", m.raw, off)
        kind, off = nxt, off + length
    return m.raw[off], off


# ---- keys --------------------------------------------------------------------

@dataclass
class IkeKeys:
    """The keys of one IKE SA. GCM when sk_ai is empty (then sk_e* ends in the 4-byte salt)."""
    sk_ei: bytes
    sk_er: bytes
    sk_ai: bytes = b""
    sk_ar: bytes = b""
    sk_d: bytes = b""
    sk_pi: bytes = b""
    sk_pr: bytes = b""
    prf_hash: object = hashlib.sha256

    @property
    def gcm(self):
        return not self.sk_ai

    def integ(self):
        n = len(self.sk_ai)
        return {32: (hashlib.sha256, 16), 48: (hashlib.sha384, 24), 64: (hashlib.sha512, 32)}[n]

    def wireshark_row(self, spi_i, spi_r):
        """A line of Wireshark's ikev2_decryption_table."""
        if self.gcm:
            enc = f'"AES-GCM-{(len(self.sk_ei) - 4) * 8} with 16 octet ICV [RFC5282]"'
            integ = '"NONE [RFC4306]"'
        else:
            enc = f'"AES-CBC-{len(self.sk_ei) * 8} [RFC3602]"'
            integ = {32: '"HMAC_SHA2_256_128 [RFC4868]"', 48: '"HMAC_SHA2_384_192 [RFC4868]"',
                     64: '"HMAC_SHA2_512_256 [RFC4868]"'}[len(self.sk_ai)]
        return (f"{spi_i:016x},{spi_r:016x},{self.sk_ei.hex()},{self.sk_er.hex()},{enc},"
                f"{self.sk_ai.hex()},{self.sk_ar.hex()},{integ}")


def derive_ike_keys(h, ni, nr, shared, spi_i, spi_r, enc_len, integ_len, gcm):
    """SKEYSEED and SK_* (RFC 7296 2.14); enc_len without the GCM salt."""
    skeyseed = prf(h, ni + nr, shared)
    n = h().digest_size
    e = enc_len + (4 if gcm else 0)
    a = 0 if gcm else integ_len
    km = prf_plus(h, skeyseed, ni + nr + struct.pack("!QQ", spi_i, spi_r), 3 * n + 2 * a + 2 * e)
    parts, off = [], 0
    for size in (n, a, a, e, e, n, n):
        parts.append(km[off: off + size])
        off += size
    d, ai, ar, ei, er, pi, pr = parts
    return IkeKeys(ei, er, ai, ar, d, pi, pr, h)


def integrity_ok(m, keys):
    """Whether `keys` authenticate the SK (or SKF) payload of `m` (who sent it picks SK_ai/SK_ar)."""
    if not m.encrypted:
        return False
    if keys.gcm:
        return decrypt_raw(m, keys) is not None
    h, icv = keys.integ()
    key = keys.sk_ai if m.initiator else keys.sk_ar
    return len(m.raw) > icv and hmac.compare_digest(hmac.new(key, m.raw[:-icv], h).digest()[:icv], m.raw[-icv:])


def decrypt_raw(m, keys):
    """The decrypted contents of `m`'s SK or SKF payload without its padding, or None."""
    frag = m.payload(SKF) is not None
    body = m.payload(SKF) if frag else m.payload(SK)
    if body is None:
        return None
    _, off = sk_first_inner(m)
    hdr = 8 if frag else 4  # an SKF carries its fragment number and total before the IV
    body = body[hdr - 4:]
    try:
        if keys.gcm:
            k = keys.sk_ei if m.initiator else keys.sk_er
            iv, ct = body[:8], body[8:]
            aad = m.raw[: off + hdr]
            plain = AESGCM(k[:-4]).decrypt(k[-4:] + iv, ct, aad)
        else:
            if not integrity_ok(m, keys):
                return None
            _, icv = keys.integ()
            k = keys.sk_ei if m.initiator else keys.sk_er
            iv, ct = body[:16], body[16:-icv]
            d = Cipher(algorithms.AES(k), modes.CBC(iv)).decryptor()
            plain = d.update(ct) + d.finalize()
        pad = plain[-1]
        return plain[: len(plain) - 1 - pad]
    except Exception:  # noqa: BLE001 - any failure means "these keys do not fit"
        return None


def decrypt(m, keys):
    """The inner payload chain [(type, body)] of `m`'s SK payload, or None."""
    if m.payload(SK) is None:
        return None
    plain = decrypt_raw(m, keys)
    try:
        return None if plain is None else walk(sk_first_inner(m)[0], plain)
    except ValueError:
        return None


def reassemble(fragments, keys):
    """The inner payload chain of a message sent as SKF fragments (RFC 7383), or None."""
    parts, first, total = {}, None, 0
    for m in fragments:
        body = m.payload(SKF)
        num, total = struct.unpack("!HH", body[:4])
        plain = decrypt_raw(m, keys)
        if plain is None:
            return None
        parts[num] = plain
        if num == 1:
            first = sk_first_inner(m)[0]
    if first is None or sorted(parts) != list(range(1, total + 1)):
        return None
    try:
        return walk(first, b"".join(parts[i] for i in sorted(parts)))
    except ValueError:
        return None


# ---- building ----------------------------------------------------------------

def chain(payloads):
    """[(type, body)] -> (first type, bytes)."""
    out = b""
    for i, (_, body) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return (payloads[0][0] if payloads else 0), out


def message(spi_i, spi_r, exchange, flags, mid, payloads):
    first, body = chain(payloads)
    return HEADER.pack(spi_i, spi_r, first, 0x20, exchange, flags, mid, HEADER.size + len(body)) + body


def transform(kind, ident, keylen=None, last=False):
    attrs = struct.pack("!HH", 0x800E, keylen) if keylen else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), kind, 0, ident) + attrs


def proposal(num, protocol, spi, transforms, last=True):
    body = b"".join(transform(*t, last=(i == len(transforms) - 1)) for i, t in enumerate(transforms))
    return struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(spi) + len(body), num, protocol, len(spi),
                       len(transforms)) + spi + body


def notify(kind, data=b"", protocol=0, spi=b""):
    return struct.pack("!BBH", protocol, len(spi), kind) + spi + data


def ts_v4(start, end, proto=0):
    a, b = (bytes(int(x) for x in ip.split(".")) for ip in (start, end))
    return struct.pack("!BBHHH", 7, proto, 16, 0, 65535) + a + b  # TS_IPV4_ADDR_RANGE


def id_v4(addr):
    return struct.pack("!BBH", 1, 0, 0) + bytes(int(x) for x in addr.split("."))


def protect(spi_i, spi_r, exchange, flags, mid, inner, keys):
    """An encrypted message: SK{inner} (the sender is the initiator iff FLAG_I)."""
    first, plain = chain(inner)
    initiator = bool(flags & FLAG_I)
    k = keys.sk_ei if initiator else keys.sk_er
    if keys.gcm:
        iv = os.urandom(8)
        plain += b"\0"  # pad length 0
        length = HEADER.size + 4 + 8 + len(plain) + 16
        hdr = HEADER.pack(spi_i, spi_r, SK, 0x20, exchange, flags, mid, length)
        skh = struct.pack("!BBH", first, 0, length - HEADER.size)
        ct = AESGCM(k[:-4]).encrypt(k[-4:] + iv, plain, hdr + skh)
        return hdr + skh + iv + ct
    h, icv = keys.integ()
    pad = (16 - (len(plain) + 1) % 16) % 16
    plain += b"\0" * pad + bytes([pad])
    iv = os.urandom(16)
    e = Cipher(algorithms.AES(k), modes.CBC(iv)).encryptor()
    ct = e.update(plain) + e.finalize()
    length = HEADER.size + 4 + 16 + len(ct) + icv
    hdr = HEADER.pack(spi_i, spi_r, SK, 0x20, exchange, flags, mid, length)
    skh = struct.pack("!BBH", first, 0, length - HEADER.size)
    msg = hdr + skh + iv + ct
    a = keys.sk_ai if initiator else keys.sk_ar
    return msg + hmac.new(a, msg, h).digest()[:icv]


# ---- a PSK initiator (AES-GCM-16-128, PRF-HMAC-SHA2-256, curve25519) ---------

IKE_GCM128_X25519 = [(ENCR, ENCR_AES_GCM_16, 128), (PRF, 5), (DH, DH_CURVE25519)]
ESP_GCM128 = [(ENCR, ENCR_AES_GCM_16, 128), (ESN, 0)]


class Initiator:
    """One IKE SA as initiator: init() -> the IKE_SA_INIT request; on_init_response()
    -> the IKE_AUTH request (or a new IKE_SA_INIT carrying the COOKIE);
    on_auth_response() -> True when the responder sent AUTH and a CHILD_SA."""

    def __init__(self, psk, my_addr, peer_addr, ts_i, ts_r, transport=False):
        self.psk, self.me, self.peer = psk, my_addr, peer_addr
        self.ts_i, self.ts_r, self.transport = ts_i, ts_r, transport
        self.spi_i = int.from_bytes(os.urandom(8), "big") | 1
        self.spi_r = 0
        self.priv = x25519.X25519PrivateKey.generate()
        self.ni = os.urandom(32)
        self.cookie = b""
        self.keys = None

    def init(self, natd=None):
        """natd: (our port, the peer's port) to send NAT detection (RFC 7296 2.23)."""
        pub = self.priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pl = ([(NOTIFY, notify(COOKIE, self.cookie))] if self.cookie else []) + [
            (SA, proposal(1, 1, b"", IKE_GCM128_X25519)),
            (KE, struct.pack("!HH", DH_CURVE25519, 0) + pub),
            (NONCE, self.ni)]
        if natd:
            self.natd = natd
        if getattr(self, "natd", None):
            def h(addr, port):
                return hashlib.sha1(struct.pack("!QQ", self.spi_i, 0) + bytes(int(x) for x in addr.split(".")) +
                                    struct.pack("!H", port)).digest()
            pl += [(NOTIFY, notify(NAT_DETECTION_SOURCE_IP, h(self.me, self.natd[0]))),
                   (NOTIFY, notify(NAT_DETECTION_DESTINATION_IP, h(self.peer, self.natd[1])))]
        self.msg1 = message(self.spi_i, 0, IKE_SA_INIT, FLAG_I, 0, pl)
        return self.msg1

    def on_init_response(self, data):
        m = parse(data)
        if m is None or m.exchange != IKE_SA_INIT or m.spi_i != self.spi_i:
            return None
        cookie = next((b[4:] for t, b in m.payloads if t == NOTIFY and struct.unpack("!H", b[2:4])[0] == COOKIE),
                      None)
        if cookie is not None:
            self.cookie = cookie
            return self.init()  # the same nonce, KE and NAT detection, now with the cookie first
        ke, nr = m.payload(KE), m.payload(NONCE)
        if ke is None or nr is None:
            raise RuntimeError(f"IKE_SA_INIT answered with notifies {m.notifies()}")
        self.spi_r = m.spi_r
        shared = self.priv.exchange(x25519.X25519PublicKey.from_public_bytes(ke[4:]))
        self.nr = nr
        self.keys = derive_ike_keys(hashlib.sha256, self.ni, nr, shared, self.spi_i, self.spi_r, 16, 0, True)
        idi = id_v4(self.me)
        signed = self.msg1 + nr + prf(hashlib.sha256, self.keys.sk_pi, idi)
        auth = prf(hashlib.sha256, prf(hashlib.sha256, self.psk, b"Key Pad for IKEv2"), signed)
        inner = [(IDI, idi), (AUTH, struct.pack("!BBH", 2, 0, 0) + auth)]
        if self.transport:
            inner.append((NOTIFY, notify(USE_TRANSPORT_MODE)))
        inner += [(SA, proposal(1, 3, os.urandom(4), ESP_GCM128)),
                  (TSI, struct.pack("!BBH", 1, 0, 0) + ts_v4(*self.ts_i)),
                  (TSR, struct.pack("!BBH", 1, 0, 0) + ts_v4(*self.ts_r))]
        return protect(self.spi_i, self.spi_r, IKE_AUTH, FLAG_I, 1, inner, self.keys)

    def on_auth_response(self, data):
        m = parse(data)
        if m is None or m.exchange != IKE_AUTH or m.spi_i != self.spi_i or m.mid != 1:
            return None
        inner = decrypt(m, self.keys)
        if inner is None:
            raise RuntimeError("IKE_AUTH response does not decrypt")
        kinds = [t for t, _ in inner]
        if AUTH not in kinds or SA not in kinds:
            raise RuntimeError(f"IKE_AUTH refused: notifies {m.notifies(inner)}")
        return True
