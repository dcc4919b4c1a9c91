#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each under ASan+UBSan, seeded from the
# samples and the peer corpus; fails if any target finds a crash, a leak or
# undefined behaviour. Findings are left in BUILD/fuzz-artifacts/.
#   fuzz/run_fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build directory}
seconds=${2:?seconds per target}
here=$(cd "$(dirname "$0")" && pwd)
work="$build/fuzz-work"
rm -rf "$work/seeds"
mkdir -p "$work/seeds" "$build/fuzz-artifacts"
/usr/bin/python3 "$here/make_seeds.py" "$work/seeds"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for target in fuzz_packet fuzz_capture_file fuzz_config fuzz_importers fuzz_ike; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus" "$work/seeds/$target"
  dict=()
  [[ $target == fuzz_config ]] && dict=(-dict="$here/config.dict")
  echo "== $target: ${seconds}s"
  if ! "$build/fuzz/$target" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$build/fuzz-artifacts/$target-" "${dict[@]}" "$corpus" "$work/seeds/$target" \
       >"$work/$target.log" 2>&1; then
    echo "!! $target failed; see $work/$target.log"
    tail -n 40 "$work/$target.log"
    status=1
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov: ' "$work/$target.log" | tail -n 4
done
exit $status
