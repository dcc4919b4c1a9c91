#!/usr/bin/python3
"""Real negotiations between two strongSwan daemons, captured and checked.

Two network namespaces joined by a veth (192.0.2.1 and 192.0.2.2), each
running charon with the kernel-libipsec plugin (user-space ESP; this kernel
has none) and its own mount namespace for /run. The initiator brings up:
  - IKEv1 Main Mode + Quick Mode, pre-shared key, ESP aes128-sha256 tunnel
  - IKEv2, pre-shared key, ESP aes128gcm16 tunnel
and pings through each tunnel between 198.51.100.1 and 203.0.113.1; then three
negotiations that must fail: IKEv2 with the wrong pre-shared key, IKEv1
with proposals the responder does not accept, and IKEv1 with the wrong
pre-shared key (from a second initiator address, 192.0.2.3, since an IKEv1
responder picks the key by address before it learns the peer's identity).

With only the initiator's charon log (ike 4), `ipsentry verify` must
decrypt every IKE message, derive every ESP SA from SK_d / SKEYID_d and
verify every ESP packet, and report the failed negotiations with their
reasons, one count per event: three negotiation failures, two of them
authentication failures (a wrong key is one of each, however many messages
say so), each negotiation holding only its own messages, and the messages
that ended them -- and only those -- failing their verdict, as the text and
the JSON both say. tshark, given the IKE keys and the ESP keys charon itself
logged (chd 4), must decrypt the same messages and packets.

Usage: test_strongswan.py --ipsentry PATH (as root)
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

NS = ("ipsentry-ss-a", "ipsentry-ss-b")
ADDR = ("192.0.2.1", "192.0.2.2")
ADDR_V1_BAD_PSK = "192.0.2.3"  # the initiator's second address
NET = ("198.51.100.1", "203.0.113.1")
CHARON = "/usr/lib/ipsec/charon"


def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


def cleanup(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    for ns in NS:
        sh("ip", "netns", "del", ns, check=False)


def conf(side, tmp):
    me, peer = ADDR[side], ADDR[1 - side]
    mynet, peernet = NET[side], NET[1 - side]
    d = os.path.join(tmp, "ab"[side])
    os.makedirs(d)
    with open(os.path.join(d, "strongswan.conf"), "w") as f:
        f.write(f"""charon {{
  load = kdf gcm random nonce aes sha1 sha2 md5 hmac gmp kernel-libipsec kernel-netlink socket-default vici openssl
  install_routes = yes
  retransmit_tries = 1
  retransmit_timeout = 1
  filelog {{
    log {{
      path = {d}/charon.log
      flush_line = yes
      default = 1
      ike = 4
      chd = 4
      cfg = 2
    }}
  }}
  plugins {{ vici {{ socket = unix://{d}/charon.vici }} }}
}}
""")
    def conn(name, version, proposals, child, esp, local_id=me, remote_id=peer, local=me, remote=peer):
        return f"""  {name} {{
    version = {version}
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = {proposals}
    local {{ auth = psk
      id = {local_id} }}
    remote {{ auth = psk
      id = {remote_id} }}
    children {{ {child} {{ local_ts = {mynet}/32
      remote_ts = {peernet}/32
      mode = tunnel
      esp_proposals = {esp} }} }}
  }}
"""

    # The responder accepts bad@a only with a different secret than the
    # initiator uses; it accepts no 3DES/MD5 proposal at all.
    bad_secret = "c2VjcmV0LWEK" if side == 0 else "c2VjcmV0LWIK"
    conns = (conn("v1", 1, "aes256-sha1-modp2048", "net1", "aes128-sha256") +
             conn("v2", 2, "aes128-sha256-modp2048", "net2", "aes128gcm16"))
    if side == 0:
        conns += (conn("v2bad", 2, "aes128-sha256-modp2048", "bad2", "aes128gcm16", local_id="bad@a") +
                  conn("v1bad", 1, "3des-md5-modp1024", "bad1", "3des-md5") +
                  conn("v1badpsk", 1, "aes256-sha1-modp2048", "badpsk1", "aes128-sha256", local_id=ADDR_V1_BAD_PSK,
                       local=ADDR_V1_BAD_PSK))
    else:
        conns += (conn("v2bad", 2, "aes128-sha256-modp2048", "bad2", "aes128gcm16", remote_id="bad@a") +
                  conn("v1badpsk", 1, "aes256-sha1-modp2048", "badpsk1", "aes128-sha256",
                       remote_id=ADDR_V1_BAD_PSK, remote=ADDR_V1_BAD_PSK))
    with open(os.path.join(d, "swanctl.conf"), "w") as f:
        f.write("connections {\n" + conns + "}\n" + f"""secrets {{
  ike-good {{ id-1 = {ADDR[0]}
    id-2 = {ADDR[1]}
    secret = "0sdG9wc2VjcmV0" }}
  ike-bad {{ id-1 = bad@a
    id-2 = {ADDR[1]}
    secret = "0s{bad_secret}" }}
  ike-bad-v1 {{ id-1 = {ADDR_V1_BAD_PSK}
    id-2 = {ADDR[1]}
    secret = "0s{bad_secret}" }}
}}
""")
    return d


def swanctl(side, d, *args):
    return sh("ip", "netns", "exec", NS[side], "swanctl", *args, "--uri", f"unix://{d}/charon.vici", check=False)


def charon_esp_keys(log):
    """ESP keys charon logged (chd 4), with the SPIs of each CHILD_SA as the
    initiator sees them: keys 'initiator' protect initiator -> responder."""
    sas = []
    dumps = {}
    lines = open(log).read().splitlines()
    i = 0
    while i < len(lines):
        m = re.search(r"\[CHD\] (encryption|integrity) (initiator|responder) key => (\d+) bytes", lines[i])
        if m:
            n = int(m.group(3))
            hexs = []
            j = i + 1
            while len(hexs) < n:
                hm = re.search(r"\[CHD\]\s+\d+: ((?:[0-9A-F]{2} )+)", lines[j])
                hexs += hm.group(1).split()[: n - len(hexs)]
                j += 1
            dumps[(m.group(1), m.group(2))] = "".join(hexs).lower()
            i = j
            continue
        m = re.search(r"CHILD_SA (\S+)\{\d+\} established with SPIs ([0-9a-f]+)_i ([0-9a-f]+)_o", lines[i])
        if m:
            sas.append({"child": m.group(1), "spi_in": m.group(2), "spi_out": m.group(3), **{
                f"{k[0]}_{k[1]}": v for k, v in dumps.items()}})
            dumps = {}
        i += 1
    return sas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipsentry", required=True)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces")
        return 77
    for tool in (CHARON, shutil.which("swanctl"), shutil.which("tcpdump"), shutil.which("tshark")):
        if not tool or not os.path.exists(tool):
            print(f"FAIL: {tool} missing (scripts/install-deps.sh installs strongSwan, tcpdump, tshark)")
            return 1
    procs = []
    tmp = tempfile.mkdtemp(prefix="ipsentry-ss-")
    failures = []
    try:
        cleanup([])
        for ns in NS:
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "ssa", "netns", NS[0], "type", "veth", "peer", "name", "ssb", "netns", NS[1])
        sh("ip", "-n", NS[0], "addr", "add", f"{ADDR_V1_BAD_PSK}/24", "dev", "ssa")
        for side, dev in ((0, "ssa"), (1, "ssb")):
            sh("ip", "-n", NS[side], "addr", "add", f"{ADDR[side]}/24", "dev", dev)
            sh("ip", "-n", NS[side], "addr", "add", f"{NET[side]}/32", "dev", "lo")
            sh("ip", "-n", NS[side], "link", "set", dev, "up")
            sh("ip", "-n", NS[side], "link", "set", "lo", "up")
        dirs = [conf(0, tmp), conf(1, tmp)]
        for side in (0, 1):
            d = dirs[side]
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", NS[side], "unshare", "-m", "sh", "-c",
                 f"mount -t tmpfs none /run && STRONGSWAN_CONF={d}/strongswan.conf exec {CHARON}"],
                stdout=open(os.path.join(d, "stdout"), "w"), stderr=subprocess.STDOUT))
        pcap = os.path.join(tmp, "ike.pcap")
        cap = subprocess.Popen(["ip", "netns", "exec", NS[0], "tcpdump", "-U", "-n", "-i", "ssa", "-w", pcap, "ip"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(cap)
        for side in (0, 1):
            for _ in range(50):
                if os.path.exists(os.path.join(dirs[side], "charon.vici")):
                    break
                time.sleep(0.1)
            # Without them charon still negotiates, then cannot install the
            # AES-GCM CHILD_SA and answers NO_PROPOSAL_CHOSEN: say why here.
            logtext = open(os.path.join(dirs[side], "charon.log")).read()
            missing = re.findall(r"plugin '(\w+)': failed to load", logtext)
            if missing:
                raise RuntimeError(f"charon could not load its plugins {missing} "
                                   "(scripts/install-deps.sh installs libstrongswan-standard-plugins)")
            r = swanctl(side, dirs[side], "--load-all", "--file", os.path.join(dirs[side], "swanctl.conf"))
            if r.returncode != 0:
                raise RuntimeError(f"swanctl --load-all: {r.stdout} {r.stderr}")
        time.sleep(0.5)
        for child in ("net1", "net2"):
            r = swanctl(0, dirs[0], "--initiate", "--child", child)
            if r.returncode != 0:
                raise RuntimeError(f"strongSwan could not establish {child}: {r.stdout[-2000:]}")
            p = sh("ip", "netns", "exec", NS[0], "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", NET[0], NET[1],
                   check=False)
            if p.returncode != 0:
                raise RuntimeError(f"ping through {child} failed: {p.stdout}")
            swanctl(0, dirs[0], "--terminate", "--child", child)
        # The failures: the child names are unique, so each initiates its own conn.
        swanctl(0, dirs[0], "--initiate", "--child", "bad2", "--timeout", "5")
        swanctl(0, dirs[0], "--initiate", "--child", "bad1", "--timeout", "5")
        swanctl(0, dirs[0], "--initiate", "--child", "badpsk1", "--timeout", "5")
        time.sleep(1)
        cap.send_signal(signal.SIGTERM)
        cap.wait(5)

        log = os.path.join(dirs[0], "charon.log")
        r = subprocess.run([a.ipsentry, "verify", "--json", "--no-progress", "--keys-from", "strongswan-log", log, pcap],
                           capture_output=True, text=True)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"ipsentry verify exit {r.returncode}: {r.stderr}")
        if r.returncode != 1:
            failures.append("verify exits 0 although three negotiations failed")
        out = json.loads(r.stdout)
        text = subprocess.run([a.ipsentry, "verify", "--no-progress", "--keys-from", "strongswan-log", log, pcap],
                              capture_output=True, text=True).stdout
        ike = out["ike"]
        msgs = ike["messages"]
        enc = [m for m in msgs if m["status"] != "cleartext"]
        bad = [m for m in enc if m["status"] != "decrypted"]
        print(f"{len(msgs)} IKE messages, {len(enc)} encrypted, {len(enc) - len(bad)} decrypted")
        # The wrong-PSK exchange is encrypted with keys that only that IKE SA
        # has; they are in the log too, so nothing may stay encrypted.
        # The wrong IKEv1 key is the one exception: the responder's messages
        # are encrypted with the key it derived from its own secret, which
        # the initiator's log does not hold.
        v1_bad_psk = set()
        for n in ike["negotiations"]:
            if n["version"] == 1 and "pre-shared keys differ" in (n["reason"] or ""):
                v1_bad_psk.update(n["frames"])
        for m in bad:
            if m["frame"] not in v1_bad_psk or m["status"] != "decrypt-failed":
                failures.append(f"frame {m['frame']} not decrypted: {m['status']} {m['detail']}")
        v = out["statistics"]["verdicts"]
        esp_total = out["statistics"]["ipsec_packets"]
        print(f"ESP: {esp_total} packets, verdicts {v}")
        if esp_total < 12 or v.get("ok", 0) != esp_total:
            failures.append(f"ESP not all verified from SK_d/SKEYID_d: {v}")
        learned = [s for s in out["security_associations"] if s["name"].startswith("ike:")]
        if len(learned) != 4:
            failures.append(f"expected 4 ESP SAs derived from the IKE keys, got {len(learned)}")
        negs = ike["negotiations"]
        for n in negs:
            print(f"  v{n['version']} {n['exchange']:<12} {n['outcome']:<12} {n['proposal'] or ''} {n['reason'] or ''}")
        def find(version, exchange, outcome):
            return [n for n in negs if n["version"] == version and n["exchange"] == exchange and n["outcome"] == outcome]
        if len(find(1, "Main Mode", "established")) != 1 or len(find(1, "Quick Mode", "established")) != 1:
            failures.append("IKEv1 Main Mode + Quick Mode not both established")
        if len(find(2, "IKE_SA", "established")) != 1 or len(find(2, "CHILD_SA", "established")) != 1:
            failures.append("IKEv2 IKE_SA + CHILD_SA not both established")
        auth_failed = [n for n in find(2, "IKE_SA", "failed") if n["reason"] == "AUTHENTICATION_FAILED"]
        if len(auth_failed) != 1 or not auth_failed[0]["authentication_failure"]:
            failures.append("the wrong IKEv2 pre-shared key is not reported as AUTHENTICATION_FAILED")
        # Its CHILD_SA ends with it: shown failed, counted with the IKE SA.
        child = find(2, "CHILD_SA", "failed")
        if auth_failed and (len(child) != 1 or child[0].get("failed_with") != negs.index(auth_failed[0]) or
                            child[0]["authentication_failure"]):
            failures.append(f"the CHILD_SA of the failed IKE_AUTH is not counted with its IKE SA: {child}")
        no_prop = [n for n in find(1, "Main Mode", "failed") if n["reason"] == "NO-PROPOSAL-CHOSEN"]
        if len(no_prop) != 1:
            failures.append("the unacceptable IKEv1 proposal is not reported as NO-PROPOSAL-CHOSEN")
        v1_psk = [n for n in find(1, "Main Mode", "failed") if "pre-shared keys differ" in (n["reason"] or "")]
        if len(v1_psk) != 1 or not v1_psk[0]["authentication_failure"] or v1_psk[0]["initiator"] != ADDR_V1_BAD_PSK:
            failures.append(f"the wrong IKEv1 pre-shared key is not reported as differing keys: {v1_psk}")
        st = ike["statistics"]
        if st["negotiation_failures"] != 3 or st["authentication_failures"] != 2:
            failures.append(f"one count per event: {st['negotiation_failures']} negotiation failures (3: two wrong "
                            f"keys, one proposal), {st['authentication_failures']} authentication failures (2)")
        # A negotiation holds its own exchanges only: the deletes sent when
        # the tunnels were torn down are Informational exchanges of their own.
        by_frame = {m["frame"]: m for m in msgs}
        own = {"Main Mode": {2}, "Quick Mode": {32}, "IKE_SA": {34, 35}, "CHILD_SA": {35, 36}}
        for n in negs:
            if n["outcome"] != "established":
                continue
            foreign = [f for f in n["frames"] if by_frame[f]["exchange"] not in own[n["exchange"]]]
            if foreign:
                failures.append(f"v{n['version']} {n['exchange']} holds frames {foreign} of other exchanges")
        # One vocabulary: the messages that ended a negotiation fail their
        # verdict (what `ike and verdict != ok` finds in the TUI), nothing
        # in an established negotiation does, and the text says the same.
        failing = {m["frame"] for m in msgs if m.get("verdict", "ok") != "ok"}
        for n in negs:
            mine = failing & set(n["frames"])
            if n["outcome"] == "failed" and n.get("failed_with") is None and not mine:
                failures.append(f"no message of the failed v{n['version']} {n['exchange']} fails its verdict")
            if n["outcome"] == "established" and mine:
                failures.append(f"frames {sorted(mine)} of an established negotiation fail their verdict")
        for m in msgs:
            line = next((l for l in text.splitlines() if re.match(rf"\s+{m['frame']}\s", l)), "")
            if f" {m.get('verdict')} " not in line:
                failures.append(f"frame {m['frame']}: the text does not give the JSON verdict {m['verdict']}: {line}")

        # tshark with the same IKE keys (SPIs from the capture) and charon's own ESP keys.
        prof = os.path.join(tmp, "ws")
        os.makedirs(prof)
        ike_rows = []
        v1_rows = []
        logtext = open(log).read()
        def dump(name):
            out = []
            for m in re.finditer(re.escape(name) + r" => (\d+) bytes[^\n]*\n((?:[^\n]*\[IKE\]\s+\d+: [^\n]*\n)+)", logtext):
                n = int(m.group(1))
                hexs = re.findall(r"\[IKE\]\s+\d+: ((?:[0-9A-F]{2} )+)", m.group(2))
                out.append("".join("".join(h.split()) for h in hexs)[: 2 * n].lower())
            return out
        spis_v2 = []
        spis_v1 = []
        for m in msgs:
            s = m["summary"].split()
            pair = next(x for x in s if "/" in x and len(x) == 33)
            i, rr = pair.split("/")
            if m["version"] == 2 and rr != "0" * 16 and (i, rr) not in spis_v2:
                spis_v2.append((i, rr))
            if m["version"] == 1 and i not in spis_v1 and rr != "0" * 16:
                spis_v1.append(i)
        ei, er, ai, ar = dump("Sk_ei secret"), dump("Sk_er secret"), dump("Sk_ai secret"), dump("Sk_ar secret")
        for (i, rr), kei, ker, kai, kar in zip(spis_v2, ei, er, ai, ar):
            ike_rows.append(f'{i},{rr},{kei},{ker},"AES-CBC-128 [RFC3602]",{kai},{kar},"HMAC_SHA2_256_128 [RFC4868]"')
        for i, ka in zip(spis_v1, dump("encryption key Ka")):
            v1_rows.append(f"{i},{ka}")
        open(os.path.join(prof, "ikev2_decryption_table"), "w").write("\n".join(ike_rows) + "\n")
        open(os.path.join(prof, "ikev1_decryption_table"), "w").write("\n".join(v1_rows) + "\n")
        esp_rows = []
        for sa in charon_esp_keys(log):
            gcm = len(sa.get("integrity_initiator", "")) == 0
            enc = '"AES-GCM with 16 octet ICV [RFC4106]"' if gcm else '"AES-CBC [RFC3602]"'
            auth = '"NULL"' if gcm else '"HMAC-SHA-256-128 [RFC4868]"'
            for spi, src, dst, who in ((sa["spi_out"], ADDR[0], ADDR[1], "initiator"),
                                       (sa["spi_in"], ADDR[1], ADDR[0], "responder")):
                esp_rows.append(f'"IPv4","{src}","{dst}","0x{spi}",{enc},"0x{sa["encryption_" + who]}",{auth},'
                                f'"0x{sa.get("integrity_" + who, "")}"')
        open(os.path.join(prof, "esp_sa"), "w").write("\n".join(esp_rows) + "\n")
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=prof)
        t = subprocess.run(["tshark", "-n", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE",
                            "-o", "esp.enable_authentication_check:TRUE", "-T", "fields", "-E", "separator=|",
                            "-e", "frame.number", "-e", "isakmp.typepayload", "-e", "esp.spi", "-e", "icmp.type"],
                           capture_output=True, text=True, env=env, check=True).stdout
        ours = {m["frame"]: m for m in msgs}
        esp_decrypted = 0
        for line in t.splitlines():
            f = line.split("|")
            n = int(f[0])
            if f[2] and f[3]:
                esp_decrypted += 1
            if n in ours and f[1]:
                theirs = [int(x) for x in f[1].split(",") if int(x) not in (2, 3)]
                mine = ours[n]["payloads"] + ours[n]["inner_payloads"]
                if theirs != mine:
                    failures.append(f"frame {n}: payloads {mine} vs tshark {theirs}")
        print(f"tshark decrypted {esp_decrypted} of {esp_total} ESP packets with charon's ESP keys")
        if esp_decrypted != esp_total:
            failures.append(f"tshark decrypted {esp_decrypted} ESP packets, ipsentry verified {esp_total}")
    except Exception as e:  # noqa: BLE001 - report, then clean up
        failures.append(f"lab: {e}")
        for d in ("a", "b"):
            log = os.path.join(tmp, d, "charon.log")
            if os.path.exists(log):
                print(f"--- tail of {d}/charon.log")
                print("".join(open(log).readlines()[-30:]))
    finally:
        cleanup(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
