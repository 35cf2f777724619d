#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with cargo-fuzz,
# growing fuzz/corpus/<target>/; a crash lands in fuzz/artifacts/<target>/
# and stops the run. Needs cargo-fuzz (cargo install cargo-fuzz).
#   bash fuzz/run.sh 600          # ten minutes each
#   RUNS=2000 bash fuzz/run.sh    # a fixed number of runs each instead (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
# cargo-fuzz's instrumentation flags need a nightly compiler's features;
# this lets the stable one take them.
export RUSTC_BOOTSTRAP=1
for target in request_head chunked response_head path; do
  if [ -n "${RUNS:-}" ]; then
    limit=(-runs="$RUNS")
    echo "== fuzz $target ($RUNS runs)"
  else
    limit=(-max_total_time="$seconds")
    echo "== fuzz $target (${seconds} s)"
  fi
  cargo fuzz run --sanitizer none "$target" -- "${limit[@]}" -max_len=4096 -print_final_stats=1
done
