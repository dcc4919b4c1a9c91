#!/usr/bin/env bash
# The fuzz step of `make test` and `make fuzz`, under ASan+UBSan:
#
# 1. Replays fuzz/regressions/<target>/: every input a fuzzer ever failed on,
#    kept in the repository, run once each, deterministically.
# 2. Fuzzes every target for its share of BUDGET wall-clock seconds, seeded
#    from the samples, the peer corpus and synthesized inputs (make_seeds.py),
#    with the target's dictionary. Up to LANES targets run at once (default:
#    2 when there are two cores or more), so the step takes BUDGET seconds
#    whatever the number of cores; each target gets BUDGET * LANES * weight /
#    total weight seconds. The weights follow where the parsers are deepest
#    and the inputs most hostile: capture files and packets 3, IKE and the
#    crypto backends' differential 2, key importers and configuration 1.
#    The corpus grows in BUILD/fuzz-work.
#
# Fails if a regression input or a fuzzer finds a crash, a leak, undefined
# behaviour, a timeout or running out of memory. Findings are left in
# BUILD/fuzz-artifacts/; once fixed, copy each into fuzz/regressions/<target>/.
#   fuzz/run_fuzzers.sh BUILD_DIR BUDGET_SECONDS [LANES]
# BUDGET 0 only replays the regressions.
set -euo pipefail
build=${1:?build directory}
budget=${2:?wall-clock seconds for the whole fuzz step}
cores=$(nproc)
lanes=${3:-$((cores >= 2 ? 2 : 1))}
here=$(cd "$(dirname "$0")" && pwd)
work="$build/fuzz-work"
artifacts="$build/fuzz-artifacts"
mkdir -p "$work" "$artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
declare -A weight=([fuzz_capture_file]=3 [fuzz_packet]=3 [fuzz_ike]=2 [fuzz_ike_responder]=2 [fuzz_crypto_differential]=2
                   [fuzz_importers]=1 [fuzz_config]=1)
# longest first
targets=(fuzz_capture_file fuzz_packet fuzz_ike fuzz_ike_responder fuzz_crypto_differential fuzz_importers fuzz_config)
status=0

# A fuzzer reading standard input would wait on a terminal or a pipe: give it nothing.
exec </dev/null

for target in "${targets[@]}"; do
  inputs=()
  if [[ -d $here/regressions/$target ]]; then
    mapfile -t inputs < <(find "$here/regressions/$target" -type f | sort)
  fi
  ((${#inputs[@]})) || continue
  if "$build/fuzz/$target" -rss_limit_mb=2048 -timeout=10 "${inputs[@]}" >"$work/$target.regressions.log" 2>&1; then
    echo "== $target: ${#inputs[@]} regression inputs pass"
  else
    echo "!! $target: a regression input fails again; see $work/$target.regressions.log"
    tail -n 40 "$work/$target.regressions.log"
    status=1
  fi
done
((budget > 0)) || exit $status

rm -rf "$work/seeds"
mkdir -p "$work/seeds"
/usr/bin/python3 "$here/make_seeds.py" "$work/seeds"
total=0
for target in "${targets[@]}"; do total=$((total + weight[$target])); done

fuzz() {
  local target=$1 seconds=$2
  local corpus="$work/corpus/$target"
  local extra=()
  mkdir -p "$corpus" "$work/seeds/$target"
  [[ -f $here/${target#fuzz_}.dict ]] && extra+=(-dict="$here/${target#fuzz_}.dict")
  [[ -d $here/regressions/$target ]] && extra+=("$here/regressions/$target")
  # New inputs go to the first directory, the work corpus; the others are read.
  if "$build/fuzz/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$artifacts/$target-" "$corpus" "$work/seeds/$target" "${extra[@]}" \
       >"$work/$target.log" 2>&1; then
    echo "== $target: ${seconds}s, $(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$work/$target.log" | tail -n 1)," \
         "$(grep -E '^stat::number_of_executed_units' "$work/$target.log" | grep -oE '[0-9]+$') runs"
    echo 0 >"$work/$target.status"
  else
    echo "!! $target failed; see $work/$target.log"
    tail -n 40 "$work/$target.log"
    echo 1 >"$work/$target.status"
  fi
}

echo "== fuzzing for ${budget}s, $lanes at a time"
for target in "${targets[@]}"; do
  rm -f "$work/$target.status"
  while (($(jobs -rp | wc -l) >= lanes)); do
    wait -n || true
  done
  fuzz "$target" $((budget * lanes * weight[$target] / total)) &
done
wait
for target in "${targets[@]}"; do
  [[ $(cat "$work/$target.status" 2>/dev/null) == 0 ]] || status=1
done
exit $status
