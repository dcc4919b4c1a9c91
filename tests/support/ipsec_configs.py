"""Configurations the tests share: an ESP transport-mode SA pair (AES-GCM-16)
between two hosts, and SAs whose words are as wide as they get (long IPv6
addresses, no mode), with keys that are test values only."""

GCM_AB = "00112233445566778899aabbccddeeff01020304"
GCM_BA = "ffeeddccbbaa99887766554433221100a1a2a3a4"


def esp_config(path, me, peer, spi_out, key_out, spi_in, key_in, extra_out=""):
    open(path, "w").write(f"""interfaces: {{ local: [{me}] }}
policies:
  - name: {me}-{peer}
    from: me
    to: {peer}
    mirrored: true
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out, in]
sas:
  - name: out
    spi: {spi_out}
    direction: outbound
    src: {me}
    dst: {peer}
    protocol: esp
    encryption: aes-gcm-16
    enc_key: 0x{key_out}
{extra_out}  - name: in
    spi: {spi_in}
    direction: inbound
    src: {peer}
    dst: {me}
    protocol: esp
    encryption: aes-gcm-16
    enc_key: 0x{key_in}
""")
    return path


WIDE_A = "2001:db8:1234:5678:9abc:def0:1234:5678"
WIDE_B = "2001:db8:8765:4321:fedc:ba98:7654:3210"


def wide_config(path):
    """Two ESP SAs between long IPv6 addresses, one without a mode
    (`unspecified`), and the policy that uses them: what widens the columns
    of the SA and policy tables."""
    open(path, "w").write(f"""interfaces: {{ local: [{WIDE_A}] }}
policies:
  - name: v6-hosts
    from: me
    to: {WIDE_B}
    protocol: any
    action: protect
    ipsec: {{ protocol: esp, mode: transport }}
    sas: [out6, in6]
sas:
  - name: out6
    spi: 0x1001
    protocol: esp
    src: {WIDE_A}
    dst: {WIDE_B}
    encryption: aes-cbc
    enc_key: 0x{"11" * 16}
    auth: hmac-sha256-128
    auth_key: 0x{"22" * 32}
  - name: in6
    spi: 0x1002
    protocol: esp
    src: {WIDE_B}
    dst: {WIDE_A}
    mode: transport
    encryption: null
    auth: hmac-sha1-96
    auth_key: 0x{"33" * 20}
""")
    return path
