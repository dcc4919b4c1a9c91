"""A small ESP reference (RFC 4303 framing) on top of Python's `cryptography`
package, for what scapy does not implement: AES-GMAC (RFC 4543),
AES-XCBC-MAC-96 (RFC 3566), HMAC-SHA-256-96, the implicit-IV AEADs of
RFC 8750, and AES-GCM with 8- and 12-byte ICVs (scapy 2.5 always appends the
full 16-byte tag). It is independent of ipsentry's C++ code and OpenSSL usage.
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305


class IcvError(Exception):
    pass


def xcbc_mac(key, data):
    """AES-XCBC-MAC (RFC 3566 section 4), full 16 bytes."""
    def ecb(k, block):
        e = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
        return e.update(block) + e.finalize()
    k1 = ecb(key, b"\x01" * 16)
    k2 = ecb(key, b"\x02" * 16)
    k3 = ecb(key, b"\x03" * 16)
    blocks = [data[i:i + 16] for i in range(0, len(data), 16)] or [b""]
    e = b"\x00" * 16
    for b in blocks[:-1]:
        e = ecb(k1, bytes(x ^ y for x, y in zip(b, e)))
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(x ^ y for x, y in zip(last, k2))
    else:
        last = last + b"\x80" + b"\x00" * (15 - len(last))
        last = bytes(x ^ y for x, y in zip(last, k3))
    return ecb(k1, bytes(x ^ y ^ z for x, y, z in zip(last, e, b"\x00" * 16)))


INTEG = {
    "hmac-sha256-96": (12, lambda k, d: hmac.new(k, d, hashlib.sha256).digest()),
    "aes-xcbc-96": (12, xcbc_mac),
    "hmac-sha1-96": (12, lambda k, d: hmac.new(k, d, hashlib.sha1).digest()),
    "hmac-sha256-128": (16, lambda k, d: hmac.new(k, d, hashlib.sha256).digest()),
}


class RefSA:
    """enc: aes-cbc | aes-gmac | aes-gcm-8 | aes-gcm-12 | aes-gcm-16 | aes-gcm-16-iiv | aes-ccm-8-iiv |
    chacha20-poly1305 (RFC 7634, explicit 8-byte IV) | chacha20-poly1305-iiv."""

    def __init__(self, spi, enc, enc_key, integ="none", auth_key=b"", esn=False):
        self.spi, self.enc, self.esn, self.integ, self.auth_key = spi, enc, esn, integ, auth_key
        self.key = enc_key
        self.seq = 0
        if enc in ("aes-gmac", "aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gcm-16-iiv",
                   "chacha20-poly1305", "chacha20-poly1305-iiv"):
            self.salt, self.key = enc_key[-4:], enc_key[:-4]
        elif enc == "aes-ccm-8-iiv":
            self.salt, self.key = enc_key[-3:], enc_key[:-3]
        self.iv_len = {"aes-cbc": 16, "aes-gmac": 8, "aes-gcm-8": 8, "aes-gcm-12": 8, "aes-gcm-16": 8,
                       "chacha20-poly1305": 8}.get(enc, 0)
        self.align = 16 if enc == "aes-cbc" else 4
        self.tag_len = {"aes-gmac": 16, "aes-gcm-8": 8, "aes-gcm-12": 12, "aes-gcm-16": 16, "aes-gcm-16-iiv": 16,
                        "aes-ccm-8-iiv": 8, "chacha20-poly1305": 16,
                        "chacha20-poly1305-iiv": 16}.get(enc, 0)
        self.icv_len = self.tag_len or (INTEG[integ][0] if integ != "none" else 0)

    def _aad(self, seq):
        if self.esn:
            return struct.pack("!IQ", self.spi, seq)
        return struct.pack("!II", self.spi, seq & 0xffffffff)

    def _nonce(self, seq, iv):
        if self.enc.endswith("-iiv"):
            return self.salt + struct.pack("!Q", seq if self.esn else seq & 0xffffffff)
        return self.salt + iv

    def _aead(self):
        if self.enc == "aes-ccm-8-iiv":
            return AESCCM(self.key, tag_length=8)
        if self.enc in ("chacha20-poly1305", "chacha20-poly1305-iiv"):
            return ChaCha20Poly1305(self.key)
        return AESGCM(self.key)

    def encrypt(self, payload, next_header, iv=None):
        """Returns the ESP packet (SPI through ICV) for the next sequence number."""
        self.seq += 1
        seq = self.seq
        pad = (self.align - (len(payload) + 2) % self.align) % self.align
        plain = payload + bytes(range(1, pad + 1)) + bytes([pad, next_header])
        head = struct.pack("!II", self.spi, seq & 0xffffffff)
        iv = iv if iv is not None else bytes((seq * 7 + i) & 0xff for i in range(self.iv_len))
        if self.enc == "aes-cbc":
            e = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
            body = head + iv + e.update(plain) + e.finalize()
            covered = body + (struct.pack("!I", seq >> 32) if self.esn else b"")
            return body + INTEG[self.integ][1](self.auth_key, covered)[:self.icv_len]
        if self.enc == "aes-gmac":
            tag = AESGCM(self.key).encrypt(self._nonce(seq, iv), b"", self._aad(seq) + iv + plain)
            return head + iv + plain + tag
        if self.enc in ("aes-gcm-8", "aes-gcm-12", "aes-gcm-16"):
            e = Cipher(algorithms.AES(self.key), modes.GCM(self._nonce(seq, iv))).encryptor()
            e.authenticate_additional_data(self._aad(seq))
            body = e.update(plain) + e.finalize()
            return head + iv + body + e.tag[:self.tag_len]
        out = self._aead().encrypt(self._nonce(seq, iv), plain, self._aad(seq))
        return head + iv + out

    def decrypt(self, esp, seq):
        """Verifies and decrypts; returns (payload, next_header)."""
        iv = esp[8:8 + self.iv_len]
        body = esp[8 + self.iv_len:len(esp) - self.icv_len]
        icv = esp[len(esp) - self.icv_len:]
        try:
            if self.enc == "aes-cbc":
                covered = esp[:len(esp) - self.icv_len] + (struct.pack("!I", seq >> 32) if self.esn else b"")
                if not hmac.compare_digest(INTEG[self.integ][1](self.auth_key, covered)[:self.icv_len], icv):
                    raise IcvError("ICV")
                d = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
                plain = d.update(body) + d.finalize()
            elif self.enc == "aes-gmac":
                AESGCM(self.key).decrypt(self._nonce(seq, iv), icv, self._aad(seq) + iv + body)
                plain = body
            elif self.enc in ("aes-gcm-8", "aes-gcm-12", "aes-gcm-16"):
                d = Cipher(algorithms.AES(self.key),
                           modes.GCM(self._nonce(seq, iv), icv, min_tag_length=self.tag_len)).decryptor()
                d.authenticate_additional_data(self._aad(seq))
                plain = d.update(body) + d.finalize()
            else:
                plain = self._aead().decrypt(self._nonce(seq, iv), body + icv, self._aad(seq))
        except IcvError:
            raise
        except Exception as e:  # cryptography raises InvalidTag
            raise IcvError(repr(e))
        pad, nh = plain[-2], plain[-1]
        if plain[-2 - pad:-2] != bytes(range(1, pad + 1)):
            raise IcvError("padding")
        return plain[:-2 - pad], nh
