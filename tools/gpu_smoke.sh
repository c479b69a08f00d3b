#!/usr/bin/env bash
# The GPU smoke run: every entry point on one GPU host at the project's defaults (gpu_memory_utilization 0.9,
# vLLM's max_num_seqs), with real FireRedASR-LLM-L shapes (dummy bf16 weights) where a real release is not
# there. Run it through tools/gpu_run.sh (which puts the bundle on the path):
#
#   bash tools/gpu_run.sh --stage .xfer/p3 -- bash tools/gpu_smoke.sh OUT_DIR MACHINE [STEP ...]
#
# Steps (default: all, in this order; split them over calls to stay under a call's time limit):
#   stress    bench.gpu_benchmark, ours then the built-in: 2,000 short clips at 256 and 1,024 in flight, 200
#             clips of 25-30 s at 256, one clip at a time; ours also runs the main job (eval.run over the
#             2,000 clips, rows scored and written) on the same engine
#   served    fireredasr-serve with two API processes, two client processes, 256 in flight (its log kept)
#   eval      python -m eval.run demo on the trained model (its CER, as on the CPU)
#   sweep     a small python -m eval.sweep on the trained model
#   hotwords  bench.hotword_cost: greedy throughput with a 100-word hotword list against none, side by side
#   profile   one pass under vLLM's torch profiler; bench.profile_trace's breakdown
# Each step's peak GPU memory (nvidia-smi, every 0.5 s) goes to OUT_DIR/memory.txt; everything else
# (benchmark files, logs, run folders) to OUT_DIR, packed into OUT_DIR/smoke.tar.gz at the end.
set -uo pipefail
out=$1 machine=$2
shift 2
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(stress served eval sweep hotwords profile)
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$out/gpu.txt"

measured() {  # measured NAME COMMAND...: run it, record its peak GPU memory and status
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$out/$name.mem" &
  local smi=$! started status
  started=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  status=$?
  kill $smi 2>/dev/null
  local peak
  peak=$(sort -n "$out/$name.mem" | tail -n 1)
  echo "$name: exit $status, $(( $(date +%s) - started )) s, peak GPU memory ${peak:-?} MiB" | tee -a "$out/memory.txt"
  grep -E "^\[(ours|builtin)\]" "$out/$name.log" | cut -c1-330
  [ $status -eq 0 ] || tail -n 15 "$out/$name.log"
}

bench() { python3 -m bench.gpu_benchmark run --machine "$machine" --work /tmp/gpu_smoke "$@"; }

for step in "${steps[@]}"; do
  case $step in
    stress)
      measured ours bench --system ours --in-flight 256,1024 --long-clips 200 --long-in-flight 256 \
        --latency 1:50 --eval-run --output "$out/gpu_ours.json"
      measured builtin bench --system builtin --in-flight 256,1024 --long-clips 200 --long-in-flight 256 \
        --latency 1:50 --output "$out/gpu_builtin.json" ;;
    served)
      GPU_BENCHMARK_SERVER_LOG="$out/served_server.log" measured served bench --system ours --frontends 2 --in-flight 256 --long-clips 0 --latency "" \
        --output "$out/gpu_served.json"
 ;;
    eval)
      measured eval_run python3 -m eval.run demo --model trained --output-dir "$out/eval_demo"
      grep -h "CER" "$out/eval_run.log" | tail -n 3 ;;
    sweep)
      measured eval_sweep python3 -m eval.sweep demo --model trained --grid max_num_seqs=8,64 \
        --grid decoding=greedy,official --concurrency 1,16 --output-dir "$out/eval_sweep" ;;
    hotwords)
      measured hotword_cost python3 -m bench.hotword_cost --rounds 9 --clips 2000 --out "$out/hotword_cost"
      sed -n 3p "$out/hotword_cost/hotword_cost.md" ;;
    profile)
      measured profile bench --system ours --in-flight 256 --long-clips 0 --latency "" \
        --profile /tmp/gpu_smoke/profile --output "$out/gpu_profiled.json"
      trace=$(ls -S /tmp/gpu_smoke/profile/*.json.gz 2>/dev/null | head -n 1)
      [ -n "$trace" ] && python3 -m bench.profile_trace "$trace" --output "$out/profile.md"
      ls /tmp/gpu_smoke/profile/*.txt 2>/dev/null | head -n 1 | xargs -r -I{} cp {} "$out/profile_table.txt" ;;
    *) echo "unknown step: $step" >&2 ;;
  esac
done
python3 -m bench.gpu_benchmark report "$out"/gpu_*.json --output "$out/report.md" > /dev/null 2>&1
tar -C "$out" -czf /tmp/smoke.tar.gz --exclude '*.mem' . && mv /tmp/smoke.tar.gz "$out/smoke.tar.gz"
cat "$out/memory.txt"
