"""Configurations the namespace tests share: an ESP transport-mode SA pair
(AES-GCM-16) between two hosts, with keys that are test values only."""

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
