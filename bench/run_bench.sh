#!/usr/bin/env bash
# End-to-end benchmark of `ipsentry verify` on generated 100,000-packet ESP
# captures, one per suite (aes-128-gcm-16; aes-128-cbc + hmac-sha1-96;
# chacha20-poly1305; aes-128-cbc + hmac-sha256-128), in one run:
#   - ipsentry with each crypto backend (`--crypto openssl|ipsec-mb` when
#     `verify --help` lists the option, else the only one there is), -j 1
#     and -j 2, and the -j 2 / -j 1 ratio;
#   - tshark decrypting and checking the same file with the same keys, and
#     ipsentry's multiple of it (tshark cannot decrypt ChaCha20-Poly1305:
#     that row says so);
#   - each backend's crypto alone at the file's mean packet size: the
#     BM_EspOpen micro-benchmarks (at the mean ciphertext size) when
#     bench_ipsec has them, else `openssl speed` (OpenSSL only); and
#     ipsentry's share of that rate;
#   - peak memory on the file, on a 10x smaller one, and on gzipped copies
#     of both: it must not grow with the file.
# This machine's speed drifts between runs by more than the differences
# measured, so the alternatives run in turn, round after round, and each
# keeps its best; CPU time is perf's task-clock (wall time without perf).
# Then the policy audit's cost, and the Google Benchmark micro-benchmarks.
#   bench/run_bench.sh IPSENTRY [PACKETS]
# Environment: BENCH_SUITES (default "gcm cbc-sha1 chacha20 cbc-sha256"),
# BENCH_ROUNDS (default 5), BENCH_FILTER (micro-benchmarks, default all).
set -euo pipefail
start_s=$(date +%s)
ipsentry=$(readlink -f "${1:?path to ipsentry}")
packets=${2:-100000}
rounds=${BENCH_ROUNDS:-5}
read -r -a suites <<<"${BENCH_SUITES:-gcm cbc-sha1 chacha20 cbc-sha256}"
here=$(cd "$(dirname "$0")" && pwd)
data="$(dirname "$ipsentry")/../bench-data"
micro="$(dirname "$ipsentry")/../bench/bench_ipsec"
mkdir -p "$data"
data=$(readlink -f "$data")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gen() {  # suite count -> file prefix; also makes the gzipped copy
  local p="$data/$1-$2"
  if ! grep -qs '^version=2$' "$p.pcap.meta"; then
    /usr/bin/python3 "$here/gen_capture.py" "$1" "$2" "$p.pcap" "$p.yaml" "$p.esp_sa" "$p.policy.yaml" >&2
    rm -f "$p.pcap.gz"
  fi
  chmod 600 "$p.yaml" "$p.policy.yaml"
  [[ -s $p.pcap.gz ]] || gzip -1 -c "$p.pcap" >"$p.pcap.gz"
  echo "$p"
}

have_perf=0
if command -v perf >/dev/null && perf stat -x, -e task-clock,duration_time true >/dev/null 2>&1; then have_perf=1; fi

# Runs a command once: prints "wall_seconds cpu_seconds" (cpu = wall without perf).
# Its output goes to $TIMED_OUT if set.
timed() {
  local pf="$work/perf" t0 t1
  if ((have_perf)); then
    perf stat -x, -o "$pf" -e task-clock,duration_time -- "$@" >"${TIMED_OUT:-/dev/null}" 2>/dev/null
    awk -F, '/task-clock/{c = $1 / 1000} /duration_time/{w = $1 / 1e9} END{printf "%.5f %.5f\n", w, c}' "$pf"
  else
    t0=$(date +%s%N)
    "$@" >"${TIMED_OUT:-/dev/null}" 2>/dev/null
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN{t = (b - a) / 1e9; printf "%.5f %.5f\n", t, t}'
  fi
}

peak_rss_mib() {  # command -> peak RSS in MiB
  /usr/bin/time -o "$work/rss" -f '%M' "$@" >/dev/null 2>&1
  awk '{v = $1} END{printf "%.1f", v / 1024}' "$work/rss"
}

min() { awk -v a="$1" -v b="$2" 'BEGIN{print (a == "" || b < a) ? b : a}'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN{printf "%.0f", n / t}'; }
fmt_rate() { awk -v r="$1" 'BEGIN{if (r >= 1e6) printf "%.2f M", r / 1e6; else printf "%.0f k", r / 1e3}'; }

# --- the crypto backends this ipsentry has -----------------------------------------------------
if "$ipsentry" verify --help 2>&1 | grep -q -- '--crypto'; then
  backends=(openssl ipsec-mb)
  crypto_note="backends chosen with --crypto"
else
  backends=(openssl)
  crypto_note="this ipsentry has no --crypto option: OpenSSL is its only backend"
fi
backend_args() { if [[ ${#backends[@]} -gt 1 ]]; then echo "--crypto $1"; fi; }

micro_suites=""
if [[ -x $micro ]]; then
  # Read the whole list first: `grep -q` in a pipeline would stop the writer with SIGPIPE, a failure under pipefail.
  micro_suites=$("$micro" --benchmark_list_tests=true 2>/dev/null | awk -F/ '/^BM_EspOpen\//{print $2}' | sort -u | xargs)
fi

# --- header ---------------------------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)
flag_line=""
for f in aes sha_ni vaes vpclmulqdq avx2 avx512f; do
  if grep -qw "$f" <<<"$cpu_flags"; then flag_line+="$f=yes "; else flag_line+="$f=no "; fi
done
echo "# ipsentry verify benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- CPU: $cpu_model, $(nproc) cores; $flag_line"
echo "- OpenSSL: $(openssl version 2>/dev/null || echo 'openssl not installed')"
echo "- ipsentry --version: $("$ipsentry" --version 2>&1 | paste -sd ';' | sed 's/;/; /g')"
echo "- crypto: $crypto_note"
if [[ -n $micro_suites ]]; then
  echo "- crypto alone: bench_ipsec BM_EspOpen (suites: $micro_suites), per packet at the file's mean ciphertext size"
else
  echo "- crypto alone: openssl speed (bench_ipsec has no BM_EspOpen), OpenSSL only"
fi
echo "- best of $rounds interleaved rounds; PACKETS=$packets; $( ((have_perf)) && echo 'CPU time = perf task-clock' ||
  echo 'no perf: CPU time = wall time')"
echo

# openssl speed at BYTES for a suite -> ns per packet (decryption for the AEADs)
openssl_ns() {
  local suite=$1 bytes=$2 secs=$3 c h
  ossl() { openssl speed -mr -seconds "$secs" -bytes "$bytes" "$@" 2>/dev/null | awk -F: '/^\+F:/{v = $4} END{print v}'; }
  case $suite in
    gcm) c=$(ossl -evp aes-128-gcm -decrypt -aead); h="" ;;
    chacha20) c=$(ossl -evp chacha20-poly1305 -decrypt -aead); h="" ;;
    cbc-sha1) c=$(ossl -evp aes-128-cbc -decrypt); h=$(ossl -hmac sha1) ;;
    cbc-sha256) c=$(ossl -evp aes-128-cbc -decrypt); h=$(ossl -hmac sha256) ;;
  esac
  [[ -n $c ]] || { echo ""; return; }
  awk -v b="$bytes" -v c="$c" -v h="$h" 'BEGIN{t = b / c; if (h != "") t += b / h; printf "%.1f", t * 1e9}'
}

# BM_EspOpen for a suite, one pass: prints "backend ns_per_packet" at the mean ciphertext size, interpolated
# linearly in size between the two measured sizes around it (the nearest one outside their range).
micro_ns() {
  local suite=$1 mean=$2
  "$micro" --benchmark_filter="^BM_EspOpen/$suite/" --benchmark_min_time=0.1 --benchmark_format=json \
    2>/dev/null | /usr/bin/python3 -c '
import json, re, sys
mean = float(sys.argv[1])
scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
pts = {}
for b in json.load(sys.stdin)["benchmarks"]:
    if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
        continue
    _, _, backend, size = b["name"].split("/")[:4]
    pts.setdefault(backend, []).append((int(re.sub(r"\D", "", size)), b["cpu_time"] * scale[b.get("time_unit", "ns")]))
for backend, p in sorted(pts.items()):
    p.sort()
    lo = max([x for x in p if x[0] <= mean], default=p[0])
    hi = min([x for x in p if x[0] >= mean], default=p[-1])
    ns = lo[1] if hi[0] == lo[0] else lo[1] + (hi[1] - lo[1]) * (mean - lo[0]) / (hi[0] - lo[0])
    print(backend, f"{ns:.1f}")
' "$mean"
}

# --- per suite --------------------------------------------------------------------------------------
declare -A wall cpu crypto_ns rss tshark_rate tshark_cpu meanof ctof notes
for suite in "${suites[@]}"; do
  p=$(gen "$suite" "$packets")
  small=$(gen "$suite" $((packets / 10)))
  tshark_checks=1 mean_inner=0
  # shellcheck disable=SC1090
  source "$p.pcap.meta"
  meanof[$suite]=$mean_inner
  # BM_EspOpen's size is the ciphertext: the inner packet, its padding (on average half the alignment
  # less one: 16-byte blocks for CBC, 4 bytes otherwise) and the 2-byte trailer.
  if [[ $suite == cbc-* ]]; then mean_ct=$((mean_inner + 2 + 7)); else mean_ct=$((mean_inner + 2 + 1)); fi
  ctof[$suite]=$mean_ct
  # Each backend must verify every packet, or its timing means nothing.
  usable=()
  for b in "${backends[@]}"; do
    # shellcheck disable=SC2046
    if ! out=$("$ipsentry" verify "$p.pcap" -c "$p.yaml" --json -q --no-progress $(backend_args "$b") 2>"$work/err"); then
      notes[$suite]+="  $suite/$b: ipsentry failed: $(head -c 300 "$work/err")"$'\n'
      continue
    fi
    ok=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["statistics"]["verdicts"]["ok"])' <<<"$out")
    if [[ $ok != "$packets" ]]; then
      echo "ipsentry ($b) verified $ok of $packets packets of $p.pcap" >&2
      exit 1
    fi
    # The backend each SA ended on, from the report (when it names one), with the reasons for any fallback.
    shown=$(/usr/bin/python3 -c '
import collections, json, sys
sas = json.load(sys.stdin).get("security_associations", [])
used = collections.Counter(str(sa["crypto"]) for sa in sas if "crypto" in sa)
why = sorted({str(sa["crypto_reason"]) for sa in sas if sa.get("crypto_reason")})
if used:
    print("SAs on " + ", ".join(f"{k} x{n}" for k, n in sorted(used.items())) + "".join("; " + w for w in why))' <<<"$out")
    [[ -n $shown ]] && notes[$suite]+="  $suite/$b: $shown"$'\n'
    usable+=("$b")
  done
  # tshark with the same keys; it must find every ICV good too.
  tshark_cmd=()
  if ((tshark_checks)); then
    conf="$work/wireshark-$suite"
    mkdir -p "$conf"
    cp "$p.esp_sa" "$conf/esp_sa"
    # The inner UDP payload is decoded as plain data: a heuristic dissector
    # that throws on random bytes would otherwise keep tshark from reporting
    # the ICV of that packet.
    # shellcheck disable=SC2054
    tshark_cmd=(env WIRESHARK_CONFIG_DIR="$conf" tshark -n -r "$p.pcap" -d udp.port==40001,data
                -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE -T fields -e esp.icv_good)
    # This run is also tshark's first timing; the rounds add one more.
    read -r w c < <(TIMED_OUT="$work/tshark.out" timed "${tshark_cmd[@]}")
    tshark_rate[$suite]=$w tshark_cpu[$suite]=$c
    good=$(grep -c -E '^(1|True)$' "$work/tshark.out" || true)
    [[ $good == "$packets" ]] || { echo "tshark found $good of $packets ICVs good in $p.pcap" >&2; exit 1; }
  else
    notes[$suite]+="  $suite: tshark cannot decrypt this suite (no such algorithm in its ESP SA table): not compared"$'\n'
  fi
  # The rounds: every backend at -j 1 and -j 2, tshark in the middle one, the crypto alone in each.
  for r in $(seq "$rounds"); do
    for b in "${usable[@]}"; do
      for j in 1 2; do
        # shellcheck disable=SC2046
        read -r w c < <(timed "$ipsentry" verify "$p.pcap" -c "$p.yaml" -q --no-progress -j "$j" $(backend_args "$b"))
        wall[$suite/$b/$j]=$(min "${wall[$suite/$b/$j]:-}" "$w")
        cpu[$suite/$b/$j]=$(min "${cpu[$suite/$b/$j]:-}" "$c")
      done
    done
    if ((${#tshark_cmd[@]} > 0 && r == (rounds + 1) / 2)); then
      read -r w c < <(timed "${tshark_cmd[@]}")
      tshark_rate[$suite]=$(min "${tshark_rate[$suite]:-}" "$w")
      tshark_cpu[$suite]=$(min "${tshark_cpu[$suite]:-}" "$c")
    fi
    if [[ " $micro_suites " == *" $suite "* ]]; then
      while read -r b ns; do
        crypto_ns[$suite/$b]=$(min "${crypto_ns[$suite/$b]:-}" "$ns")
      done < <(micro_ns "$suite" "$mean_ct")
    elif [[ " ${usable[*]} " == *" openssl "* ]]; then
      ns=$(openssl_ns "$suite" $(((mean_inner + 15) / 16 * 16)) 1)
      [[ -n $ns ]] && crypto_ns[$suite/openssl]=$(min "${crypto_ns[$suite/openssl]:-}" "$ns")
    fi
  done
  # Peak memory, with the first backend at -j 1.
  read -r -a args <<<"-q --no-progress -j 1 $(backend_args "${usable[0]}")"
  rss[$suite/full]=$(peak_rss_mib "$ipsentry" verify "$p.pcap" -c "$p.yaml" "${args[@]}")
  rss[$suite/tenth]=$(peak_rss_mib "$ipsentry" verify "$small.pcap" -c "$small.yaml" "${args[@]}")
  rss[$suite/gz]=$(peak_rss_mib "$ipsentry" verify "$p.pcap.gz" -c "$p.yaml" "${args[@]}")
  rss[$suite/gztenth]=$(peak_rss_mib "$ipsentry" verify "$small.pcap.gz" -c "$small.yaml" "${args[@]}")
  echo "  ($suite done after $(($(date +%s) - start_s)) s)" >&2
done

# --- the tables ------------------------------------------------------------------------------------
echo "## throughput ($packets packets per suite; pkt/s = packets / best time)"
echo
printf '| %-10s | %-8s | %11s | %11s | %11s | %7s | %11s | %9s | %13s | %9s |\n' suite backend "-j1 (wall)" \
  "-j1 (CPU)" "-j2 (wall)" "-j2/-j1" "tshark (CPU)" "x tshark" "crypto alone" "share"
printf '|%s|\n' "------------|----------|-------------|-------------|-------------|---------|-------------|-----------|---------------|-----------"
for suite in "${suites[@]}"; do
  for b in "${backends[@]}"; do
    if [[ -z ${wall[$suite/$b/1]:-} ]]; then
      printf '| %-10s | %-8s | %s |\n' "$suite" "$b" "not run (see the notes)"
      continue
    fi
    r1=$(rate "$packets" "${wall[$suite/$b/1]}")
    c1=$(rate "$packets" "${cpu[$suite/$b/1]}")
    r2=$(rate "$packets" "${wall[$suite/$b/2]}")
    ratio=$(awk -v a="$r2" -v b="$r1" 'BEGIN{printf "%.2f", a / b}')
    ts="n/a" tx="n/a" cr="n/a" share="n/a"
    if [[ -n ${tshark_cpu[$suite]:-} ]]; then
      t=$(rate "$packets" "${tshark_cpu[$suite]}")
      ts="$(fmt_rate "$t")/s"
      tx=$(awk -v a="$c1" -v b="$t" 'BEGIN{printf "%.1fx", a / b}')
    fi
    if [[ -n ${crypto_ns[$suite/$b]:-} ]]; then
      cr_rate=$(awk -v ns="${crypto_ns[$suite/$b]}" 'BEGIN{printf "%.0f", 1e9 / ns}')
      cr="$(fmt_rate "$cr_rate")/s"
      share=$(awk -v a="$c1" -v b="$cr_rate" 'BEGIN{printf "%.0f %%", 100 * a / b}')
    fi
    printf '| %-10s | %-8s | %9s/s | %9s/s | %9s/s | %7s | %11s | %9s | %13s | %9s |\n' "$suite" "$b" \
      "$(fmt_rate "$r1")" "$(fmt_rate "$c1")" "$(fmt_rate "$r2")" "$ratio" "$ts" "$tx" "$cr" "$share"
  done
done
echo
echo "-j1 (CPU): packets per CPU second (task-clock), the fair figure on a shared machine; -j2/-j1 is of wall"
echo "times. x tshark: CPU rate against tshark's CPU rate on the same file. crypto alone: the backend's"
echo "decryption + ICV check of one packet of the file's mean size, without ipsentry; share: ipsentry"
echo "-j1 (CPU) as a percentage of it (100 % would mean ipsentry costs nothing beyond the crypto)."
for suite in "${suites[@]}"; do
  echo "  $suite: mean inner packet ${meanof[$suite]} bytes (ciphertext about ${ctof[$suite]})$(
    for b in "${backends[@]}"; do
      [[ -n ${crypto_ns[$suite/$b]:-} ]] && printf '; %s crypto alone %s ns/packet' "$b" "${crypto_ns[$suite/$b]}"
    done)"
  printf '%s' "${notes[$suite]:-}"
done
echo
echo "## peak memory (MiB, verify -j 1): flat in the file's size?"
echo
printf '| %-10s | %9s | %9s | %9s | %9s |\n' suite "file" "1/10" "gzip" "gzip 1/10"
printf '|%s|\n' "------------|-----------|-----------|-----------|-----------"
for suite in "${suites[@]}"; do
  printf '| %-10s | %9s | %9s | %9s | %9s |\n' "$suite" "${rss[$suite/full]}" "${rss[$suite/tenth]}" \
    "${rss[$suite/gz]}" "${rss[$suite/gztenth]}"
done

echo
echo "## the policy audit: verify --policy (every packet judged against the gateway's policy) vs verify, -j 1 (CPU time)"
echo
printf '| %-22s | %12s | %14s | %9s |\n' suite "verify" "verify --policy" "cost"
printf '|%s|\n' "------------------------|--------------|----------------|-----------"
for suite in gcm cbc-sha1; do
  p=$(gen "$suite" "$packets")
  conforms=$("$ipsentry" verify "$p.pcap" --policy "$p.policy.yaml" --json -q --no-progress | /usr/bin/python3 -c \
       'import json,sys; print(json.load(sys.stdin)["statistics"]["policy_audit"]["verdicts"]["conforms"])')
  [[ $conforms == "$packets" ]] || { echo "the audit found $conforms of $packets packets conforming" >&2; exit 1; }
  # This machine's speed drifts between runs by more than the audit costs:
  # the two are run in turn, and each keeps its least CPU time of fifteen.
  ta="" tb=""
  for _ in $(seq 15); do
    read -r _ x < <(timed "$ipsentry" verify "$p.pcap" -c "$p.yaml" -q --no-progress -j 1)
    read -r _ y < <(timed "$ipsentry" verify "$p.pcap" --policy "$p.policy.yaml" -q --no-progress -j 1)
    ta=$(min "$ta" "$x")
    tb=$(min "$tb" "$y")
  done
  printf '| %-22s | %10s/s | %12s/s | %8s |\n' "$suite ($packets)" "$(rate "$packets" "$ta")" "$(rate "$packets" "$tb")" \
    "$(awk -v a="$ta" -v b="$tb" 'BEGIN{printf "%+.1f %%", 100 * (b - a) / a}')"
done

if [[ -x $micro ]]; then
  echo
  echo "# micro-benchmarks (bench/bench_ipsec.cpp)"
  "$micro" --benchmark_filter="${BENCH_FILTER:-.}" --benchmark_min_time=0.2 2>/dev/null
fi
echo
echo "make bench took $(($(date +%s) - start_s)) s"
