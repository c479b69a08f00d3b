#!/usr/bin/env bash
# Back-to-back GPU benchmark runs on one machine (run it through tools/gpu_run.sh), one benchmark file
# (eval.records' schema; `python -m bench.gpu_benchmark report` reads it) + log each.
#
#   bash tools/gpu_compare.sh OUT_DIR MACHINE "TAG: ARGS" ...
#   e.g. bash tools/gpu_compare.sh $OUT h200-a "ours1: --system ours" "builtin1: --system builtin"
#
# Every run gets the common workload arguments below (COMMON overrides them) plus its own ARGS, and
# writes OUT_DIR/gpu_TAG.json and OUT_DIR/gpu_TAG.log; the log's "[system] mode: {...}" lines (one per pass,
# latencies in seconds) are shown. A failed run is reported and the next one runs.
set -uo pipefail
out=$1 machine=$2
shift 2
COMMON=${COMMON:---concurrency 256 --long-clips 0 --latency 1:50}
mkdir -p "$out"
for spec in "$@"; do
  tag=${spec%%:*} args=${spec#*:}
  started=$(date +%s)
  # shellcheck disable=SC2086
  if python3 -m bench.gpu_benchmark run $COMMON $args --machine "$machine" --out "$out/gpu_$tag.json" \
      > "$out/gpu_$tag.log" 2>&1; then
    echo "[compare] $tag ($args): $(( $(date +%s) - started )) s"
  else
    echo "[compare] $tag ($args) FAILED after $(( $(date +%s) - started )) s:"
    grep -E "Error|error" "$out/gpu_$tag.log" | tail -n 5
  fi
  grep -E "^\[(ours|builtin|official)\]" "$out/gpu_$tag.log" | cut -c1-400
done
