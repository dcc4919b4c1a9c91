#!/usr/bin/python3
"""docs/json-output.md against what `ipsentry verify --json` really writes.

The document has one table per JSON object (`| field | type | meaning |`
under a heading naming the object's path, e.g. `packets[].icv`). Over a set
of captures that reach every object -- the bundled samples, IKEv1 and IKEv2
captures of the peer corpus with their keys, and a made-up capture with a
one-byte ESP packet, a non-first fragment, a tampered AES-CCM packet and an
SA without a mode -- every object of the output must have its table, every
field it holds must be in the table with one of the documented types, and
every documented field must be present (in every object, or in at least one
for a field marked *only …*). Then what the tables promise in words: the
expected ICV of an AEAD tag mismatch, the mode of a failed packet of an SA
whose mode is configured, IKE message verdicts from the documented set.

Run: test_json_doc.py --ipsentry build/cli/ipsentry
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "json-output.md")
PEERS = os.path.join(ROOT, "tests", "corpus", "peers")
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
sys.path.insert(0, HERE)
from esp_ref import RefSA  # noqa: E402
from rawpcap import ipv4, write_pcap  # noqa: E402

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
    return cond


# ------------------------------------------------------------------ the document

def parse_type(cell):
    """'string \\| null', '"pcap" \\| "pcapng"', 'array of objects (only …)' ->
    (list of alternatives, optional)."""
    optional = False
    m = re.search(r"\s*\(only\b.*\)\s*$", cell)
    if m:
        optional = True
        cell = cell[:m.start()]
    alts = []
    for part in re.split(r"\s*\\\|\s*", cell.strip()):
        part = part.strip()
        lit = re.fullmatch(r'"([^"]*)"', part)
        if lit:
            alts.append(("literal", lit.group(1)))
        elif part in ("integer", "number", "string", "bool", "null", "object"):
            alts.append((part, None))
        elif part.startswith("array of "):
            alts.append(("array", {"objects": "object", "strings": "string", "integers": "integer"}[part[9:]]))
        else:
            raise ValueError(f"unknown type '{part}' in {DOC}")
    return alts, optional


def parse_doc(path):
    """{object path: {field: (alternatives, optional)}}; the top level is ''."""
    tables = {}
    heading = None
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            m = re.search(r"`([^`]+)`", line)
            heading = m.group(1) if m else ("" if "Top level" in line else None)
        if re.fullmatch(r"\|\s*field\s*\|\s*type\s*\|\s*meaning\s*\|", line.strip()):
            if heading is None:
                raise ValueError(f"{path}:{i + 1}: a field table under a heading that names no object")
            if heading in tables:
                raise ValueError(f"{path}:{i + 1}: a second table for `{heading}`")
            fields = {}
            i += 2  # the header and its |---| line
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                for name in re.findall(r"`([^`]+)`", cells[0]):
                    fields[name] = parse_type(cells[1])
                i += 1
            tables[heading] = fields
            continue
        i += 1
    return tables


def type_ok(value, alts):
    for kind, arg in alts:
        if kind == "literal" and value == arg:
            return True
        if kind == "null" and value is None:
            return True
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind == "string" and isinstance(value, str):
            return True
        if kind == "object" and isinstance(value, dict):
            return True
        if kind == "array" and isinstance(value, list) and all(type_ok(v, [(arg, None)]) for v in value):
            return True
    return False


def walk(value, path, tables, seen, where):
    """Checks each object against its table; records which fields were seen."""
    if isinstance(value, list):
        for v in value:
            walk(v, path + "[]", tables, seen, where)
        return
    if not isinstance(value, dict):
        return
    if not check(path in tables, f"{where}: the object `{path or '(top level)'}` has no table in {DOC}"):
        return
    table = tables[path]
    seen.setdefault(path, set())
    for key, v in value.items():
        child = f"{path}.{key}" if path else key
        if not check(key in table, f"{where}: `{child}` is not documented"):
            continue
        seen[path].add(key)
        check(type_ok(v, table[key][0]), f"{where}: `{child}` = {json.dumps(v)[:80]} is not of the documented type")
        walk(v, child, tables, seen, where)
    for key, (_, optional) in table.items():
        if not optional:
            check(key in value, f"{where}: `{path + '.' if path else ''}{key}` is documented but missing")


# ------------------------------------------------------------------ captures

def made_up_capture(tmp):
    """ESP that reaches the corners of the schema: a one-byte ESP payload (no
    SPI), a non-first fragment, a tampered AES-CCM packet (an expected tag only on libipsec-mb),
    an SA given without a mode, and an SA with a mode whose packet fails."""
    ccm = RefSA(0x5001, "aes-ccm-8-iiv", bytes(range(16)) + bytes([1, 2, 3]))
    cbc = RefSA(0x5002, "aes-cbc", bytes(range(16, 32)), "hmac-sha1-96", bytes(range(20)))
    inner = ipv4("192.0.2.10", "192.0.2.20", 17, struct.pack("!HHHH", 4000, 4001, 12, 0) + b"abcd")
    good_ccm = ccm.encrypt(inner, 4)
    bad_ccm = bytearray(ccm.encrypt(inner, 4))
    bad_ccm[-1] ^= 1
    good_cbc = cbc.encrypt(inner, 4)
    bad_cbc = bytearray(cbc.encrypt(inner, 4))
    bad_cbc[-1] ^= 1
    frames = [
        ipv4("203.0.113.1", "198.51.100.1", 50, good_ccm),
        ipv4("203.0.113.1", "198.51.100.1", 50, bytes(bad_ccm)),
        ipv4("203.0.113.1", "198.51.100.2", 50, good_cbc),
        ipv4("203.0.113.1", "198.51.100.2", 50, bytes(bad_cbc)),
        ipv4("203.0.113.1", "198.51.100.1", 50, b"\x01"),
    ]
    frag = bytearray(ipv4("203.0.113.1", "198.51.100.1", 50, b"\x00" * 24, 0x77))
    frag[6:8] = struct.pack("!H", 3)  # offset 24 bytes, no more fragments
    frag[10:12] = b"\x00\x00"
    frames.append(bytes(frag))
    cap = os.path.join(tmp, "corners.pcap")
    write_pcap(cap, frames)
    cfg = os.path.join(tmp, "corners.yaml")
    ccm_key = (bytes(range(16)) + bytes([1, 2, 3])).hex()
    with open(cfg, "w") as f:
        f.write("sas:\n"
                "  - name: ccm\n    spi: 0x5001\n    protocol: esp\n    mode: tunnel\n"
                f"    encryption: aes-ccm-8-iiv\n    enc_key: 0x{ccm_key}\n"
                "    auth: none\n"
                "  - name: cbc\n    spi: 0x5002\n    protocol: esp\n"
                f"    encryption: aes-cbc\n    enc_key: 0x{bytes(range(16, 32)).hex()}\n"
                f"    auth: hmac-sha1-96\n    auth_key: 0x{bytes(range(20)).hex()}\n")
    return [cap, "-c", cfg]


def runs(tmp):
    samples = os.path.join(ROOT, "samples")
    ws = os.path.join(PEERS, "wireshark")
    return {
        "esp-tunnel-faults": [os.path.join(samples, "esp-tunnel-faults.pcap"), "-c",
                              os.path.join(samples, "esp-tunnel.yaml")],
        "seed-ah": [os.path.join(samples, "seed-ah.pcap"), "-c", os.path.join(samples, "seed-ah.yaml")],
        "ikev2": [os.path.join(ws, "ikev2-decrypt-aes256cbc.pcapng"), "--keys-from", "wireshark-ikev2",
                  os.path.join(ws, "ikev2_decryption_table.tmpl")],
        "ikev1": [os.path.join(ws, "ikev1-certs.pcap"), "--keys-from", "wireshark-ikev1",
                  os.path.join(ws, "ikev1_decryption_table.tmpl")],
        "isakmp4500": [os.path.join(PEERS, "tcpdump", "isakmp4500.pcap")],
        "corners": made_up_capture(tmp),
        "audit-gateway": audit_capture(tmp, "gateway"),
        "audit-rekey": audit_capture(tmp, "rekey"),
    }


def audit_capture(tmp, which):
    """The policy audit's captures (test_audit.py): cleartext objects, findings,
    SA timelines with successors and lifetimes."""
    import test_audit
    pcap, cfg = os.path.join(tmp, f"audit-{which}.pcap"), os.path.join(tmp, f"audit-{which}.yaml")
    if which == "gateway":
        test_audit.gateway_capture(pcap)
        text = test_audit.GATEWAY_YAML
    else:
        test_audit.rekey_capture(pcap)
        text = test_audit.REKEY_YAML
    return [pcap, "--policy", test_audit.write_cfg(cfg, text)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    a = ap.parse_args()
    tables = parse_doc(DOC)
    seen = {}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="ipsentry-jsondoc-") as tmp:
        for name, args in runs(tmp).items():
            for quiet in (False, True):
                r = subprocess.run([a.ipsentry, "verify", "--json", "--no-progress", *args] + (["-q"] if quiet else []),
                                   capture_output=True, text=True)
                where = f"{name}{' -q' if quiet else ''}"
                if not check(r.returncode in (0, 1), f"{where}: exit {r.returncode}: {r.stderr.strip()}"):
                    continue
                try:
                    out = json.loads(r.stdout)
                except json.JSONDecodeError as e:
                    check(False, f"{where}: the output is not JSON: {e}")
                    continue
                walk(out, "", tables, seen, where)
                if not quiet:
                    outputs[name] = out
                else:
                    check(out["packets"] == [] and "messages" not in out["ike"],
                          f"{where}: -q still lists packets or IKE messages")
    for path, fields in tables.items():
        check(path in seen, f"no output reached `{path}`: the table documents nothing ipsentry writes")
        for key in fields:
            check(key in seen.get(path, set()), f"`{path}.{key}` is documented, but no output holds it")

    # What the tables say in words.
    if "esp-tunnel-faults" in outputs:
        out = outputs["esp-tunnel-faults"]
        modes = {s["name"]: s["mode"] for s in out["security_associations"]}
        for p in out["packets"]:
            if p["sa"] is not None and modes[p["sa"]] != "unspecified":
                check(p["mode"] == modes[p["sa"]], f"esp-tunnel-faults frame {p['frame']} ({p['verdict']}): mode "
                      f"{p['mode']}, but its SA {p['sa']} is configured {modes[p['sa']]}")
        gcm = [p for p in out["packets"] if p["reason"] == "tag_mismatch"]
        check(len(gcm) == 1 and isinstance(gcm[0]["icv"]["expected"], str) and
              len(gcm[0]["icv"]["expected"]) == len(gcm[0]["icv"]["received"]),
              f"an AES-GCM tag mismatch gives the expected tag as the document says: {gcm and gcm[0].get('icv')}")
    if "corners" in outputs:
        pk = outputs["corners"]["packets"]
        ccm = [p for p in pk if p["sa"] == "ccm" and p["reason"] == "tag_mismatch"]
        # OpenSSL's CCM gives no expected tag; libipsec-mb computes it.
        backend = [s["crypto"] for s in outputs["corners"]["security_associations"] if s["name"] == "ccm"]
        check(backend in (["openssl"], ["ipsec-mb"]), f"the CCM SA's crypto backend: {backend}")
        want_expected = backend == ["ipsec-mb"]
        check(len(ccm) == 1 and ccm[0]["mode"] == "tunnel" and
              (isinstance(ccm[0]["icv"]["expected"], str) if want_expected else ccm[0]["icv"]["expected"] is None),
              f"an AES-CCM tag mismatch on {backend}: expected {'a tag' if want_expected else 'null'}, mode tunnel "
              f"({ccm and ccm[0]})")
        cbc = [p for p in pk if p["sa"] == "cbc"]
        check([p["mode"] for p in cbc] == ["tunnel", None],
              f"an SA without mode: the packet that opened shows tunnel, the failed one null ({cbc})")
        short = [p for p in pk if p["spi"] is None]
        check(len(short) == 2, f"the one-byte ESP and the non-first fragment have no SPI ({short})")
    for name in ("ikev1", "ikev2"):
        for m in outputs.get(name, {}).get("ike", {}).get("messages", []):
            check(m.get("verdict") in ("ok", "unverifiable") and m["status"] in ("cleartext", "decrypted"),
                  f"{name} frame {m['frame']}: verdict {m.get('verdict')}, status {m['status']}")

    print(f"{len(tables)} documented objects checked against {len(outputs)} captures, {len(FAILS)} failures")
    for f in FAILS:
        print("FAIL:", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
