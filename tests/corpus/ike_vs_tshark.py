#!/usr/bin/python3
"""Every IKE capture of the peer corpus through `ipsentry verify --json`,
with the IKE keys the manifest gives written as an ipsentry configuration,
compared with tshark given the same keys in its own decryption tables:
per frame, the payload types (outer and decrypted), the exchange type and
the Notify types must agree, no message may be malformed, and every
encrypted message with a key must decrypt.

Usage: ike_vs_tshark.py --ipsentry PATH [-v]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")

# manifest name -> (ipsentry name, Wireshark ikev2 table name by key bits)
ENC = {
    "aes-cbc": ("aes-cbc", lambda b: f"AES-CBC-{b} [RFC3602]"),
    "aes-ctr": ("aes-ctr", lambda b: f"AES-CTR-{b} [RFC5930]"),
    "aes-gcm-16": ("aes-gcm-16", lambda b: f"AES-GCM-{b} with 16 octet ICV [RFC5282]"),
    "aes-gcm-8": ("aes-gcm-8", lambda b: f"AES-GCM-{b} with 8 octet ICV [RFC5282]"),
    "aes-ccm-12": ("aes-ccm-12", lambda b: f"AES-CCM-{b} with 12 octet ICV [RFC5282]"),
    "aes-ccm-16": ("aes-ccm-16", lambda b: f"AES-CCM-{b} with 16 octet ICV [RFC5282]"),
    "3des-cbc": ("3des-cbc", lambda b: "3DES [RFC2451]"),
}
INTEG = {
    "hmac-sha1-96": ("hmac-sha1-96", "HMAC_SHA1_96 [RFC2404]"),
    "hmac-sha1-160": ("hmac-sha1-160", "HMAC_SHA1_160 [RFC4595]"),
    "hmac-sha2-256-128": ("hmac-sha256-128", "HMAC_SHA2_256_128 [RFC4868]"),
    "hmac-sha2-512-256": ("hmac-sha512-256", "HMAC_SHA2_512_256 [RFC4868]"),
    "unknown-96": ("unchecked-96", "ANY 96-bits of Authentication [No Checking]"),
    "none": ("none", "NONE [RFC4306]"),
    None: ("none", "NONE [RFC4306]"),
}
HASH = {"md5": "md5", "sha1": "sha1", "sha2-256": "sha256", "sha": "sha1"}


def is_ike(c):
    return any("IKE" in p or "ISAKMP" in p for p in c["content"].get("protocols", []))


def write_keys(c, tmp):
    """ipsentry YAML and Wireshark UAT rows for the capture's IKE keys."""
    sas, v1rows, v2rows = [], [], []
    for k in c["keys"].get("ike", []):
        if k["version"] == 1:
            sa = {"version": 1, "spi_i": k["spi_i"], "enc_key": "0x" + k["enc_key"],
                  "encryption": k["enc"]}
            if k.get("hash") in HASH:
                sa["hash"] = HASH[k["hash"]]
            sas.append(sa)
            v1rows.append(f'{k["spi_i"]},{k["enc_key"]}')
        else:
            enc, ws_enc = ENC[k["enc"]]
            integ, ws_integ = INTEG[k.get("integ")]
            sa = {"version": 2, "spi_i": k["spi_i"], "spi_r": k["spi_r"], "encryption": enc,
                  "integrity": integ, "sk_ei": "0x" + k["sk_ei"], "sk_er": "0x" + k["sk_er"]}
            if k.get("sk_ai"):
                sa["sk_ai"] = "0x" + k["sk_ai"]
                sa["sk_ar"] = "0x" + k["sk_ar"]
            sas.append(sa)
            v2rows.append(",".join([k["spi_i"], k["spi_r"], k["sk_ei"], k["sk_er"],
                                    f'"{ws_enc(k.get("enc_key_bits", 128))}"', k.get("sk_ai") or "",
                                    k.get("sk_ar") or "", f'"{ws_integ}"']))
    cfg = os.path.join(tmp, "ike.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"ike_sas": sas} if sas else {}, f)
    prof = os.path.join(tmp, "ws")
    os.makedirs(prof, exist_ok=True)
    with open(os.path.join(prof, "ikev1_decryption_table"), "w") as f:
        f.write("\n".join(v1rows) + "\n")
    with open(os.path.join(prof, "ikev2_decryption_table"), "w") as f:
        f.write("\n".join(v2rows) + "\n")
    return cfg, prof


def tshark(path, prof):
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=prof)
    out = subprocess.run(
        ["tshark", "-n", "-r", path, "-Y", "isakmp", "-T", "fields", "-E", "separator=|",
         "-e", "frame.number", "-e", "isakmp.exchangetype", "-e", "isakmp.typepayload",
         "-e", "isakmp.notify.msgtype", "-e", "_ws.malformed", "-e", "_ws.expert.message"],
        capture_output=True, text=True, env=env, check=True).stdout
    frames = {}
    for line in out.splitlines():
        f = line.split("|")
        ints = lambda s: [int(x, 0) for x in s.split(",") if x]
        frames[int(f[0])] = {
            # tshark also reports IKEv1 proposals and transforms as payloads
            "types": [t for t in ints(f[2]) if t not in (2, 3)],
            "exch": ints(f[1])[:1],
            "notify": ints(f[3]),
            "malformed": bool(f[4]) or "Malformed" in f[5],
        }
    return frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    with open(os.path.join(PEERS, "manifest.yaml")) as f:
        manifest = yaml.safe_load(f)
    failures, checked, decrypted = [], 0, 0
    for c in manifest["captures"]:
        if not is_ike(c):
            continue
        path = os.path.join(PEERS, c["file"])
        with tempfile.TemporaryDirectory() as tmp:
            cfg, prof = write_keys(c, tmp)
            r = subprocess.run([a.ipsentry, "verify", "--json", "--no-progress", "-c", cfg, path],
                               capture_output=True, text=True)
            if r.returncode not in (0, 1):
                failures.append(f"{c['file']}: ipsentry exit {r.returncode}: {r.stderr.strip()}")
                continue
            ours = {m["frame"]: m for m in json.loads(r.stdout)["ike"].get("messages", [])}
            theirs = tshark(path, prof)
        hostile = c.get("expectations", {}).get("must_not_crash", False)
        have_keys = bool(c["keys"].get("ike"))
        for n, t in sorted(theirs.items()):
            m = ours.get(n)
            if m is None and hostile:
                continue  # e.g. IPv4 options damaged before the UDP header: ipsentry stops there
            if m is None:
                failures.append(f"{c['file']} frame {n}: tshark sees ISAKMP, ipsentry does not")
                continue
            checked += 1
            if m["malformed"]:
                if not hostile:
                    failures.append(f"{c['file']} frame {n}: malformed: {m['malformed']}")
                continue
            if have_keys and m["status"] not in ("cleartext", "decrypted", "icv-mismatch"):
                failures.append(f"{c['file']} frame {n}: not decrypted: {m['status']} {m['detail']}")
            if m["status"] in ("decrypted", "icv-mismatch"):
                decrypted += 1
            ours_types = m["payloads"] + m["inner_payloads"]
            if t["malformed"]:
                # tshark 4.0 gives up on these (IKEv1 retransmissions chain the
                # wrong IV; pre-RFC payload 15): ipsentry must still parse them.
                if a.v:
                    print(f"{c['file']} frame {n}: tshark malformed; ipsentry: {m['summary']}")
                continue
            if ours_types != t["types"]:
                failures.append(f"{c['file']} frame {n}: payloads {ours_types} vs tshark {t['types']}")
            if t["exch"] and t["exch"][0] != m["exchange"]:
                failures.append(f"{c['file']} frame {n}: exchange {m['exchange']} vs tshark {t['exch']}")
            if sorted(m["notify_types"]) != sorted(t["notify"]):
                failures.append(f"{c['file']} frame {n}: notify {m['notify_types']} vs tshark {t['notify']}")
            if a.v:
                print(f"{c['file']} frame {n}: ok {m['summary'][:100]}")
    print(f"{checked} IKE messages compared with tshark, {decrypted} decrypted")
    for f in failures:
        print("FAIL", f)
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
