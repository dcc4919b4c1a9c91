#!/usr/bin/env bash
# End-to-end benchmark of `ipsentry verify` on generated 100,000-packet ESP
# captures (aes-128-gcm-16; aes-128-cbc + hmac-sha1-96), side by side with
# tshark decrypting and checking the same file with the same keys, and with
# `openssl speed -evp` at the file's mean packet size. Also the peak memory
# on a 10x smaller file, to show it does not grow with the file, and the
# Google Benchmark micro-benchmarks if they were built. Then the policy
# audit's cost: `verify --policy` against `verify` on the same files (the
# target: within 10 %).
#   bench/run_bench.sh IPSENTRY [PACKETS]
set -euo pipefail
ipsentry=$(readlink -f "${1:?path to ipsentry}")
packets=${2:-100000}
here=$(cd "$(dirname "$0")" && pwd)
data="$(dirname "$ipsentry")/../bench-data"
mkdir -p "$data"
data=$(readlink -f "$data")

gen() {  # suite count -> file prefix
  local p="$data/$1-$2"
  if ! grep -qs '^version=2$' "$p.pcap.meta"; then
    /usr/bin/python3 "$here/gen_capture.py" "$1" "$2" "$p.pcap" "$p.yaml" "$p.esp_sa" "$p.policy.yaml" >&2
  fi
  echo "$p"
}

# best wall time and max RSS of N runs: prints "seconds rss_kb"
best_of() {
  local n=$1; shift
  local best="" rss=0 tf
  tf=$(mktemp)
  for _ in $(seq "$n"); do
    local t0 t1 t m
    t0=$(date +%s%N)
    /usr/bin/time -o "$tf" -f '%M' "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", (b - a) / 1e9}')
    m=$(tail -n 1 "$tf")
    if [[ -z $best ]] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    (( m > rss )) && rss=$m
  done
  rm -f "$tf"
  echo "$best $rss"
}

cpu_seconds() {  # command -> seconds of CPU (task-clock), or of wall time without perf
  if command -v perf >/dev/null && perf stat -x, -e task-clock true >/dev/null 2>&1; then
    perf stat -x, -e task-clock "$@" 2>&1 >/dev/null | awk -F, '/task-clock/{printf "%.4f", $1 / 1000}'
  else
    best_of 1 "$@" | cut -d' ' -f1
  fi
}

rate() { awk -v n="$1" -v t="$2" 'BEGIN{printf "%.0f", n / t}'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.1f", b / t / 1e6}'; }

openssl_rate() {  # cipher bytes -> bytes/s (decrypt for the AEAD)
  local extra=()
  [[ $1 == aes-128-gcm ]] && extra=(-decrypt -aead)
  openssl speed -mr -seconds 3 -bytes "$2" -evp "$1" "${extra[@]}" 2>/dev/null |
    awk -F: '/^\+F:/{print $4}' | tail -n 1
}
hmac_rate() {  # digest bytes -> bytes/s
  openssl speed -mr -seconds 3 -bytes "$2" -hmac "$1" 2>/dev/null | awk -F: '/^\+F:/{print $4}' | tail -n 1
}

echo "# ipsentry verify benchmark ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
printf '| %-22s | %10s | %9s | %8s | %10s | %9s | %10s | %9s | %12s | %9s |\n' suite "ipsentry -j1" "MB/s" "RSS MiB" \
  "ipsentry -j2" "tshark" "vs tshark" "openssl" "of openssl" "RSS (1/10)"
printf '|%s|\n' "------------------------|------------|-----------|----------|------------|-----------|------------|-----------|--------------|-----------"
for suite in gcm cbc-sha1; do
  p=$(gen "$suite" "$packets")
  small=$(gen "$suite" $((packets / 10)))
  # shellcheck disable=SC1090
  source "$p.pcap.meta"
  read -r t1 rss1 < <(best_of 3 "$ipsentry" verify "$p.pcap" -c "$p.yaml" -q --no-progress -j 1)
  read -r t2 _ < <(best_of 3 "$ipsentry" verify "$p.pcap" -c "$p.yaml" -q --no-progress -j 2)
  read -r _ rss_small < <(best_of 1 "$ipsentry" verify "$small.pcap" -c "$small.yaml" -q --no-progress -j 1)
  # ipsentry must have verified every packet, or the timing means nothing.
  ok=$("$ipsentry" verify "$p.pcap" -c "$p.yaml" --json -q --no-progress | /usr/bin/python3 -c \
       'import json,sys; print(json.load(sys.stdin)["statistics"]["verdicts"]["ok"])')
  [[ $ok == "$packets" ]] || { echo "ipsentry verified $ok of $packets packets" >&2; exit 1; }
  # tshark with the same keys; it must find every ICV good too.
  conf=$(mktemp -d)
  cp "$p.esp_sa" "$conf/esp_sa"
  # The inner UDP payload is decoded as plain data: a heuristic dissector
  # that throws on random bytes would otherwise keep tshark from reporting
  # the ICV of that packet.
  tshark_cmd=(env WIRESHARK_CONFIG_DIR="$conf" tshark -n -r "$p.pcap" -d udp.port==40001,data
              -o esp.enable_encryption_decode:TRUE
              -o esp.enable_authentication_check:TRUE -T fields -e esp.icv_good)
  good=$("${tshark_cmd[@]}" 2>/dev/null | grep -c -E '^(1|True)$' || true)
  [[ $good == "$packets" ]] || { echo "tshark found $good of $packets ICVs good" >&2; exit 1; }
  read -r tt _ < <(best_of 1 "${tshark_cmd[@]}")
  rm -rf "$conf"
  bytes=$(( (mean_inner + 15) / 16 * 16 ))
  if [[ $suite == gcm ]]; then
    ossl=$(openssl_rate aes-128-gcm "$bytes")
    ossl_name="aes-128-gcm"
  else
    c=$(openssl_rate aes-128-cbc "$bytes")
    h=$(hmac_rate sha1 "$bytes")
    ossl=$(awk -v c="$c" -v h="$h" 'BEGIN{printf "%.0f", 1 / (1 / c + 1 / h)}')
    ossl_name="aes-128-cbc + hmac sha1"
  fi
  r1=$(rate "$packets" "$t1")
  r2=$(rate "$packets" "$t2")
  rt=$(rate "$packets" "$tt")
  mb1=$(mbps "$inner_bytes" "$t1")
  pct=$(awk -v a="$inner_bytes" -v t="$t1" -v o="$ossl" 'BEGIN{printf "%.0f %%", 100 * a / t / o}')
  x=$(awk -v a="$r1" -v b="$rt" 'BEGIN{printf "%.1fx", a / b}')
  printf '| %-22s | %8s/s | %9s | %8.1f | %8s/s | %7s/s | %10s | %5.0f MB/s | %12s | %9.1f |\n' \
    "$suite ($packets)" "$r1" "$mb1" "$(awk -v k="$rss1" 'BEGIN{print k/1024}')" "$r2" "$rt" "$x" \
    "$(awk -v o="$ossl" 'BEGIN{print o/1e6}')" "$pct" "$(awk -v k="$rss_small" 'BEGIN{print k/1024}')"
  echo "  ($suite: mean inner packet $mean_inner bytes; openssl speed -evp $ossl_name -bytes $bytes; MB/s counts inner bytes)" >&2
done

echo
echo "# the policy audit: verify --policy (every packet judged against the gateway's policy) vs verify, -j 1 (CPU time)"
echo
printf '| %-22s | %12s | %14s | %9s |\n' suite "verify" "verify --policy" "cost"
printf '|%s|\n' "------------------------|--------------|----------------|-----------"
for suite in gcm cbc-sha1; do
  p=$(gen "$suite" "$packets")
  chmod 600 "$p.policy.yaml"
  conforms=$("$ipsentry" verify "$p.pcap" --policy "$p.policy.yaml" --json -q --no-progress | /usr/bin/python3 -c \
       'import json,sys; print(json.load(sys.stdin)["statistics"]["policy_audit"]["verdicts"]["conforms"])')
  [[ $conforms == "$packets" ]] || { echo "the audit found $conforms of $packets packets conforming" >&2; exit 1; }
  # This machine's speed drifts between runs by more than the audit costs:
  # the two are run in turn, and each keeps its least CPU time (perf's
  # task-clock, wall time without perf) of fifteen.
  ta="" tb=""
  for _ in $(seq 15); do
    x=$(cpu_seconds "$ipsentry" verify "$p.pcap" -c "$p.yaml" -q --no-progress -j 1)
    y=$(cpu_seconds "$ipsentry" verify "$p.pcap" --policy "$p.policy.yaml" -q --no-progress -j 1)
    if [[ -z $ta ]] || awk "BEGIN{exit !($x < $ta)}"; then ta=$x; fi
    if [[ -z $tb ]] || awk "BEGIN{exit !($y < $tb)}"; then tb=$y; fi
  done
  printf '| %-22s | %10s/s | %12s/s | %8s |\n' "$suite ($packets)" "$(rate "$packets" "$ta")" "$(rate "$packets" "$tb")" \
    "$(awk -v a="$ta" -v b="$tb" 'BEGIN{printf "%+.1f %%", 100 * (b - a) / a}')"
done

micro="$(dirname "$ipsentry")/../bench/bench_ipsec"
if [[ -x $micro ]]; then
  echo
  echo "# micro-benchmarks (bench/bench_ipsec.cpp)"
  "$micro" --benchmark_filter="${BENCH_FILTER:-.}" --benchmark_min_time=0.2 2>/dev/null
fi
