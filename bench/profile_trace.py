"""Where an engine step's GPU time goes, from a torch profiler trace that vLLM wrote (``bench.gpu_benchmark
--profile``): kernel time inside the model's named ranges (features, encoder), the rest of the kernels (the LLM's
prefill and decode, sampling), and the time the GPU sat idle between kernels.

    python -m bench.profile_trace TRACE.json.gz [--output table.md]
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import json
import sys
from pathlib import Path

from fireredasr_vllm.model import PROFILE_ENCODER, PROFILE_FEATURES

RANGES = {PROFILE_FEATURES: "features (fbank + CMVN)", PROFILE_ENCODER: "encoder + adapter"}
OTHER = "LLM (prefill + decode), sampling, copies"


def load_events(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)["traceEvents"]


def breakdown(events: list[dict]) -> dict:
    """Kernel microseconds by category, the traced span and the GPU's idle time in it."""
    kernels = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e)
    if not kernels:
        raise ValueError("the trace holds no GPU kernels (was it taken on a GPU?)")
    ranges = sorted((e["ts"], e["ts"] + e["dur"], RANGES[e["name"]]) for e in events
                    if e.get("cat") == "gpu_user_annotation" and e.get("name") in RANGES)
    starts = [start for start, _, _ in ranges]
    totals = {name: 0.0 for name in [*RANGES.values(), OTHER]}
    busy, covered_until = 0.0, kernels[0][0]
    for start, end in kernels:
        at = bisect.bisect_right(starts, start) - 1
        inside = at >= 0 and ranges[at][0] <= start < ranges[at][1]
        totals[ranges[at][2] if inside else OTHER] += end - start
        busy += max(0.0, end - max(start, covered_until))
        covered_until = max(covered_until, end)
    span = kernels[-1][1] - kernels[0][0]
    return {"span_us": span, "busy_us": busy, "idle_us": span - busy, "kernels_us": totals}


def table(result: dict) -> str:
    span = result["span_us"]
    rows = ["| where | GPU ms | % of the traced span |", "|---|---:|---:|"]
    for name, micros in result["kernels_us"].items():
        rows.append(f"| {name} | {micros / 1000:.1f} | {100 * micros / span:.1f} |")
    rows.append(f"| GPU idle (no kernel running) | {result['idle_us'] / 1000:.1f} | {100 * result['idle_us'] / span:.1f} |")
    rows.append(f"| traced span | {span / 1000:.1f} | 100 |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--output", type=Path, help="write the table here too (markdown)")
    args = parser.parse_args(argv)
    text = table(breakdown(load_events(args.trace)))
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
