#!/usr/bin/python3
"""Runs every capture of tests/corpus/peers/manifest.yaml through
`ipsentry verify --json` with the keys the manifest gives, and checks the
results against what the peer tools (tcpdump, tshark) established.

Usage: run_corpus.py --ipsentry PATH [--only SUBSTRING] [-v]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")

ENC = {
    "3des-cbc": "3des-cbc",
    "des-cbc": "des-cbc",
    "aes-cbc": "aes-cbc",
    "aes-ctr": "aes-ctr",
    "aes-gcm-16": "aes-gcm-16",
    "null": "null",
    "blowfish-cbc": "blowfish-cbc",
    "twofish-cbc": "twofish-cbc",
}
AUTH = {
    "hmac-md5-96": "hmac-md5-96",
    "hmac-sha1-96": "hmac-sha1-96",
    "hmac-sha2-256-128": "hmac-sha256-128",
    "none": "none",
    None: "none",
    "unknown-96": "unchecked-96",
}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def first_int(v):
    if isinstance(v, int):
        return v
    m = re.match(r"\s*(\d+)", str(v))
    return int(m.group(1)) if m else None


def sa_yaml(keys, override_enc_key=None):
    """The manifest's SAs as an ipsentry configuration."""
    sas = []
    for i, k in enumerate(keys):
        proto = "ah" if k.get("proto") == "ah" else "esp"
        sa = {"name": "sa%d" % i, "protocol": proto}
        sa["spi"] = int(k["spi"], 16) if k.get("spi") not in (None, "*") else "any"
        for f in ("src", "dst"):
            if k.get(f):
                sa[f] = k[f]
        if k.get("mode"):
            sa["mode"] = k["mode"]
        if proto == "esp":
            enc = ENC[k["enc"]]
            sa["encryption"] = enc
            key = override_enc_key if override_enc_key else k.get("enc_key")
            if enc not in ("null", "blowfish-cbc", "twofish-cbc") and key:
                sa["enc_key"] = "0x" + key
        auth = AUTH[k.get("auth")]
        if auth != "none":
            sa["auth"] = auth
            if k.get("auth_key"):
                sa["auth_key"] = "0x" + k["auth_key"]
        sas.append(sa)
    return {"sas": sas}


# --crypto BACKEND: passed to every verify; BACKENDS_SEEN counts the SAs
# each backend did, so that a run meant for one backend proves it ran.
CRYPTO = []
BACKENDS_SEEN = {}


def verify(ipsentry, capture, config):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
        cfg_path = f.name
    try:
        args = [ipsentry, "verify", "--json", "--no-progress", capture] + CRYPTO
        if config["sas"]:
            args += ["-c", cfg_path]
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(cfg_path)
    check(p.returncode in (0, 1), "exit code %d: %s" % (p.returncode, p.stderr.strip()))
    doc = json.loads(p.stdout)
    for sa in doc["security_associations"]:
        if sa["crypto"]:
            BACKENDS_SEEN[sa["crypto"]] = BACKENDS_SEEN.get(sa["crypto"], 0) + 1
    return doc, p.returncode


def layers(doc, depth=1):
    return [x for x in doc["packets"] if x["layer"] == depth]


def count(items, pred):
    return sum(1 for x in items if pred(x))


def check_capture(ipsentry, c, verbose):
    path = os.path.join(PEERS, c["file"])
    keys = list(c["keys"].get("esp") or []) + list(c["keys"].get("ah") or [])
    exp = c.get("expectations") or {}
    doc, rc = verify(ipsentry, path, sa_yaml(keys))
    outer = layers(doc, 1)
    stats = doc["statistics"]
    frames = stats["frames"]
    check(frames["total"] == c["packets"], "frame count %d, manifest says %d" % (frames["total"], c["packets"]))
    check(doc["read_error"] is None, "read error: %s" % doc["read_error"])
    if verbose:
        print("   verdicts:", {k: v for k, v in stats["verdicts"].items() if v})

    unsupported = keys and all(k["enc"] in ("blowfish-cbc", "twofish-cbc") for k in keys if k.get("proto") != "ah")
    esp_outer = [x for x in outer if x["protocol"] == "esp"]

    n = first_int(exp.get("esp_packets", exp.get("esp_packets_outer")))
    if n is not None:
        check(len(esp_outer) == n, "%d ESP packets, expected %d" % (len(esp_outer), n))
    if "esp_spis" in exp:
        spis = {"0x%08x" % x["spi"] for x in esp_outer if x["spi"] is not None}
        check(spis == set(exp["esp_spis"]), "ESP SPIs %s, expected %s" % (sorted(spis), exp["esp_spis"]))
    if "per_spi" in exp:
        for spi, v in exp["per_spi"].items():
            got = count(esp_outer, lambda x: x["spi"] == int(spi, 16))
            check(got == first_int(v), "SPI %s: %d packets, expected %s" % (spi, got, v))

    if unsupported:
        # Obsolete ciphers are reported as such and counted apart from failures.
        check(all(x["verdict"] == "unsupported" for x in esp_outer), "expected every packet to be unsupported")
        check(stats["verdicts"]["unsupported"] == len(esp_outer), "unsupported count")
        check(stats["ip_security_monitor"]["packets_not_decrypted"] == 0, "unsupported counted as a failure")
        return

    if "with_correct_key" in exp:
        w = exp["with_correct_key"]
        ok = count(esp_outer, lambda x: x["verdict"] == "ok" and x["reason"] == "verified")
        check(ok == w["decrypt_ok"] == w["icv_ok"], "%d verified, expected %d" % (ok, w["decrypt_ok"]))
        check(all(x["pad_length"] == w["pad_len"] and x["next_header"] == w["next_header"] for x in esp_outer),
              "pad length / next header")
        # tcpdump's own test uses the wrong encryption key for this file: the
        # ICV still verifies (it only depends on the integrity key) but the
        # plaintext is garbage, which must be said as such.
        wrong = c["keys"]["upstream_key_used_by_tcpdump_test"]["enc_key"]
        doc2, _ = verify(ipsentry, path, sa_yaml(keys, override_enc_key=wrong))
        bad = layers(doc2, 1)
        check(all(x["verdict"] == "decrypt-fail" and x["detail"] == "ICV verified" for x in bad),
              "with tcpdump's key: %s" % [(x["verdict"], x["detail"]) for x in bad])
        check(len(bad) == exp["esp_packets"], "packets with tcpdump's key")
        return

    # Decryption and ICV counts, per layer for nested ESP. In captures whose
    # keys are IKE keys only, decrypt_ok/icv_ok count IKE messages: those are
    # checked by the IKE tests, not here.
    nested = "esp_packets_outer" in exp
    for depth in ((1, 2) if nested else (1,)) if keys else ():
        lay = [x for x in layers(doc, depth) if x["protocol"] == "esp"]
        ok = count(lay, lambda x: x["verdict"] == "ok")
        verified = count(lay, lambda x: x["reason"] == "verified")
        want_ok = first_int(exp.get("decrypt_ok")) if "decrypt_ok" in exp else None
        want_icv = first_int(exp.get("icv_ok")) if "icv_ok" in exp else None
        if want_ok is not None and (esp_outer or want_ok):
            check(ok == want_ok, "layer %d: %d decrypted, expected %d" % (depth, ok, want_ok))
        if want_icv is not None:
            check(verified == want_icv, "layer %d: %d ICVs verified, expected %d" % (depth, verified, want_icv))
        failures = count(lay, lambda x: x["verdict"] in ("icv-fail", "decrypt-fail", "replay"))
        check(failures == 0, "layer %d: %d failures where the peers found none" % (depth, failures))

    oks = [x for x in esp_outer if x["verdict"] == "ok"]
    if isinstance(exp.get("pad_len"), int):
        check(all(x["pad_length"] == exp["pad_len"] for x in oks), "pad length")
    if isinstance(exp.get("next_header"), int):
        check(all(x["next_header"] == exp["next_header"] for x in oks), "next header")
    inner_text = " ".join(str(exp.get(k, "")) for k in ("inner", "innermost"))
    innermost = [x for x in doc["packets"] if x["verdict"] == "ok" and x["inner"] and "ESP" not in x["inner"]]
    if "ICMP echo request" in inner_text:
        check(innermost and all("ICMP echo" in x["inner"] for x in innermost), "inner ICMP echo")
    if "ICMPv6 echo request" in inner_text:
        check(innermost and all("ICMPv6 echo request" in x["inner"] for x in innermost), "inner ICMPv6 echo request")
    if "id 28416" in inner_text:
        seqs = [int(re.search(r"seq=(\d+)", x["inner"]).group(1)) for x in innermost]
        check(all("192.0.2.1 → 192.0.1.1" in x["inner"] and "id=0x6f00" in x["inner"] for x in innermost), "inner addresses")
        check(seqs == list(range(1280, 3073, 256)), "ICMP sequence numbers %s" % seqs)
    if "pad 2 for GCM and CTR, 10 for CBC" in str(exp.get("pad_len")):
        for x in oks:
            sa = next(s for s in doc["security_associations"] if s["name"] == x["sa"])
            want = 10 if sa["encryption"] == "aes-cbc" else 2
            check(x["pad_length"] == want, "pad length %d for %s" % (x["pad_length"], sa["encryption"]))

    # Special cases.
    if "esp_spi_visible" in exp:
        check(len(outer) == 1 and outer[0]["spi_hex"] == exp["esp_spi_visible"] and outer[0]["seq"] is None
              and outer[0]["verdict"] == "malformed", "truncated ESP: %s" % outer)
    if "classify" in exp:
        k = exp["classify"]
        check(frames["ike"] == k["ike_port500"] + k["ike_port4500_nonesp_marker"], "IKE frames %d" % frames["ike"])
        check(frames["nat_keepalive"] == k["nat_keepalive"], "NAT keepalives %d" % frames["nat_keepalive"])
        check(count(outer, lambda x: x["udp_encap"]) == k["esp_in_udp"], "ESP in UDP")
        check(frames["non_ip"] == k["arp"], "ARP frames")
    if "ike_messages" in exp:
        check(frames["ike"] == exp["ike_messages"], "IKE frames %d, expected %d" % (frames["ike"], exp["ike_messages"]))
    if "ah_packets" in exp:
        ah = [x for x in outer if x["protocol"] == "ah"]
        check(len(ah) == exp["ah_packets"], "AH packets %d" % len(ah))
        check(all(x["spi_hex"] == exp["ah_spi"] for x in ah), "AH SPI")
        # No key is known: the ICV is skipped and the packets are unverifiable.
        check(all(x["reason"] == "icv_unchecked" for x in ah), "AH verdicts %s" % {x["reason"] for x in ah})
        kinds = {}
        for x in ah:
            kind = x["inner"].replace("OSPFv3 ", "")
            kinds[kind] = kinds.get(kind, 0) + 1
        check(kinds == {"Hello": 35, "DB Description": 9, "LS Request": 2, "LS Update": 10, "LS Acknowledge": 5},
              "OSPFv3 messages %s" % kinds)
        flows = {}
        for x in ah:
            flows["%s -> %s" % (x["src"], x["dst"])] = flows.get("%s -> %s" % (x["src"], x["dst"]), 0) + 1
        check(flows == exp["by_flow"], "flows %s" % flows)
        for sender in ("fe80::1", "fe80::2"):
            seqs = [x["seq"] for x in ah if x["src"] == sender]
            check(seqs == sorted(seqs), "AH sequence of %s increases" % sender)
    if c["file"].endswith("heapoverflow-ip_demux_print.pcap"):
        check(any(x["protocol"] == "ah" and x["verdict"] == "malformed" for x in outer), "malformed AH")
    if c["file"].endswith("ospf-signed-integer-ubsan.pcap"):
        check(outer and outer[0]["spi_hex"] == "0x00000100" and outer[0]["seq"] == 0x1e, "AH header")
    if "icmp_errors" in exp:
        check(frames["other_ip"] >= first_int(exp["icmp_errors"]), "ICMP errors counted as other IP")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    ap.add_argument("--only")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--crypto", help="the ESP crypto backend to verify with (verify --crypto)")
    args = ap.parse_args()
    if args.crypto:
        CRYPTO.extend(["--crypto", args.crypto])
    manifest = yaml.safe_load(open(os.path.join(PEERS, "manifest.yaml")))
    failed = 0
    ran = 0
    for c in manifest["captures"]:
        if args.only and args.only not in c["file"]:
            continue
        ran += 1
        try:
            check_capture(args.ipsentry, c, args.v)
            print("ok    %s" % c["file"])
        except Failure as e:
            failed += 1
            print("FAIL  %s: %s" % (c["file"], e))
        except Exception as e:  # a crash of the harness is a failure too
            failed += 1
            print("ERROR %s: %r" % (c["file"], e))
    print("%d captures, %d failed; ESP SAs per crypto backend: %s" % (ran, failed, BACKENDS_SEEN))
    if args.crypto and args.crypto != "auto" and not BACKENDS_SEEN.get(args.crypto):
        print("FAIL  --crypto %s: no SA ran on it" % args.crypto)
        failed += 1
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
