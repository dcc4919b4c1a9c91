#!/usr/bin/env bash
# Installs the Debian 12 packages ipsentry needs to build, test and run.
# Already-installed packages are skipped, so this is quick to re-run.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries
  libssl-dev libyaml-cpp-dev zlib1g-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  libpcap-dev libtins-dev libncurses-dev libnetfilter-queue-dev libmnl-dev
  # the optional ESP crypto backend (--crypto ipsec-mb); the build works without it
  libipsec-mb-dev
  # tests and benchmarks
  libgtest-dev libbenchmark-dev python3-scapy python3-yaml python3-cryptography
  tmux tshark tcpdump tcpreplay iperf3 iproute2 iptables conntrack time iputils-ping util-linux
  # IKE peers for the namespace tests (kernel-libipsec gives user-space ESP;
  # its AES-GCM comes from the gcm and openssl plugins of the standard set)
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run 'sudo scripts/install-deps.sh' (or as root) to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
