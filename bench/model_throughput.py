"""Model throughput: this project's vLLM model vs vLLM's built-in FireRedASR2 vs the official PyTorch code.

    python -m bench.model_throughput                                   # CPU: "bench" spec (larger tiny encoder)
    python -m bench.model_throughput --model tiny --clips 16 --repeats 2
    python -m bench.model_throughput --model /models/FireRedASR-LLM-L --dtype bfloat16 --device cuda --clips 2000

Same converted weights and the same ``EngineOptions`` for both vLLM classes; only the architecture
differs (ours computes features inside the model from the samples at their real length, the built-in
pads every clip to 30 s in its processor). Right after
each engine is built, a set of clips is sent twice: identical audio hits vLLM's multimodal caches
(processor + encoder, and the prefix cache where enabled), counted from vLLM's metrics and timed.
Then both engines are measured alternately on the same fresh clips (2-10 s, AISHELL-like durations),
so load changes hit both alike; the official code runs batch 1 on the first set. Greedy decoding with the
official token limit; the three systems produce the same tokens (checked, column ``same_tokens``).

Measures on the sweep runners (eval/sweep/runners.py); the JSON is a benchmark file of the results schema
(eval/records/). Writes ``model_throughput.{csv,md,json,png}`` under ``--output-dir``. Headline numbers are
ratios measured side by side; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from vllm.v1.metrics.reader import get_metrics_snapshot

from bench.gpu_benchmark import aishell_like
from eval.records import Measurement, Summary, speed, write_benchmark
from eval.sweep.config import Job
from eval.sweep.runners import OfficialRunner, VllmRunner
from eval.tables import markdown_table
from fireredasr_engine.cli import add_dtype_argument, add_model_argument, checked_dtype, exit_codes
from fireredasr_vllm.cli_args import add_renamed_argument
from fireredasr_engine.options import DecodingOptions, EngineOptions
from fireredasr_vllm import BUILTIN_ARCHITECTURE
from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.cpu_backend import THREADS_BIND
from testkit.tiny import TinySpec, tiny_model_dir

matplotlib.use("Agg")

SYSTEMS = {"ours": None, "builtin": BUILTIN_ARCHITECTURE}
LABELS = {"ours": "this project (vLLM plugin)", "builtin": "vLLM built-in FireRedASR2",
          "official": "official PyTorch, batch 1"}
CACHE_METRICS = ("vllm:mm_cache_queries", "vllm:mm_cache_hits", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits")


def model_spec(name: str):
    """``tiny`` = the embedded model; ``bench`` = tiny LLM with a 6 x 256 Conformer (encoder cost
    visible); ``{"d_model": 1280, ...}`` = any TinySpec fields (random weights of that size)."""
    if name.startswith("{"):
        return TinySpec(**json.loads(name))
    return {"tiny": TinySpec(), "bench": TinySpec(d_model=256, n_head=4, n_layers_enc=6)}[name]


def official_dir(model: str) -> Path:
    """A generated checkpoint for a spec name / JSON, else the official release directory given."""
    return tiny_model_dir(model_spec(model)) if model in ("tiny", "bench") or model.startswith("{") else Path(model)


def workload(clips: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """(id, samples) pairs of AISHELL-like clips (2-10 s of synthetic audio)."""
    return [(f"clip-{seed}-{k}", samples) for k, samples in enumerate(aishell_like(clips, seed).clips)]


def cache_counters() -> dict[str, float]:
    totals = dict.fromkeys(CACHE_METRICS, 0.0)
    for metric in get_metrics_snapshot():
        if metric.name in totals:
            totals[metric.name] += float(getattr(metric, "value", 0) or 0)
    return totals


def timed_pass(runner, job: Job, clips) -> tuple[float, list]:
    results, elapsed = runner.run(job, clips)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} clips failed, e.g. {failed[0]}")
    return elapsed, results


def measurement(job: Job, clips, seconds: list[float], tokens: list[list[int]]) -> Measurement:
    """The median pass of ``job`` on ``clips`` in the results schema."""
    wall = float(np.median(seconds))
    figures = speed(audio_seconds=sum(len(s) for _, s in clips) / SAMPLE_RATE, wall_seconds=wall,
                    utterances=len(clips), output_tokens=sum(map(len, tokens)))
    return Measurement(job.system, job.mode, job.concurrency, Summary.of(None, utterances=len(clips), **figures),
                       {"label": LABELS[job.system], "passes": len(seconds), "output_tokens": sum(map(len, tokens))})


def cache_pass(runner, job: Job, args) -> dict:
    """Warm up, then send fresh clips and the very same clips again; time both, count cache hits.

    Runs right after the engine is built: vLLM keeps metrics of the newest engine only.
    """
    timed_pass(runner, job, workload(4, seed=10_000))
    clips = workload(args.clips, seed=20_000)
    first, _ = timed_pass(runner, job, clips)
    before = cache_counters()
    repeat, _ = timed_pass(runner, job, clips)
    after = cache_counters()
    delta = {k.removeprefix("vllm:"): after[k] - before[k] for k in CACHE_METRICS}
    return {"first_pass_s": round(first, 3), "repeat_pass_s": round(repeat, 3),
            "repeat_speedup": round(first / repeat, 2), **delta}


def measure_vllm(model: str, args) -> tuple[list[Measurement], dict, dict]:
    """Build each engine (cache experiment), then alternate them over ``repeats`` fresh workloads."""
    runners, jobs, cache = {}, {}, {}
    try:
        for name, architecture in SYSTEMS.items():
            options = EngineOptions(dtype=args.dtype, architecture=architecture, kv_cache_gb=args.kv_cache_gb)
            runners[name] = VllmRunner(model, options)
            jobs[name] = Job(name, options, DecodingOptions(), "offline", args.clips)
            cache[name] = cache_pass(runners[name], jobs[name], args)
        sets = [workload(args.clips, seed=args.seed + r) for r in range(args.repeats)]
        seconds = {name: [] for name in runners}
        tokens = {}
        for r, clips in enumerate(sets):
            for name in list(runners) if r % 2 == 0 else list(runners)[::-1]:
                elapsed, results = timed_pass(runners[name], jobs[name], clips)
                seconds[name].append(elapsed)
                tokens.setdefault(name, [res.token_ids for res in results])
        rows = [measurement(jobs[name], sets[0], seconds[name], tokens[name]) for name in runners]
        return rows, cache, {"tokens": tokens, "sets": sets}
    finally:
        for runner in runners.values():
            runner.close()


def measure_official(model: str, clips, args) -> tuple[Measurement, list]:
    runner = OfficialRunner(str(official_dir(model)), dtype=args.dtype, device=args.device)
    job = Job("official", None, DecodingOptions(), "offline", 1)
    runner.warm_up(workload(2, seed=10_000), job.decoding, job)
    elapsed, results = timed_pass(runner, job, clips)
    tokens = [r.token_ids for r in results]
    return measurement(job, clips, [elapsed], tokens), tokens


def table(rows: list[Measurement], reference: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame([{"system": m.system, "label": m.extra["label"], "clips": m.summary.utterances,
                           "audio_s": round(m.summary.audio_seconds, 1), "wall_s": round(m.summary.wall_seconds, 3),
                           "utts_per_s": round(m.summary.utts_per_s, 3), "rtfx": round(m.summary.rtfx, 2),
                           "output_tokens": m.extra["output_tokens"], "passes": m.extra["passes"]} for m in rows])
    frame["same_tokens"] = [reference[m.system] == reference["ours"] for m in rows]
    builtin = frame.set_index("system").loc["builtin"]
    for column in ("utts_per_s", "rtfx"):
        frame[f"{column}_vs_builtin"] = (frame[column] / builtin[column]).round(2)
    return frame


def plot(frame, cache: dict, path: Path, title: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    bars = left.bar(frame["label"], frame["utts_per_s_vs_builtin"], color=["#2a7", "#888", "#c64"][: len(frame)])
    left.bar_label(bars, labels=[f"{v:.2f}x" for v in frame["utts_per_s_vs_builtin"]])
    left.axhline(1.0, color="k", lw=0.5)
    left.set_ylabel("throughput (utts/s) relative to vLLM built-in")
    left.set_title(title, fontsize=9)
    left.tick_params(axis="x", labelsize=8)
    names = list(cache)
    right.bar(names, [cache[n]["repeat_speedup"] for n in names], color=["#2a7", "#888"][: len(names)])
    right.axhline(1.0, color="k", lw=0.5)
    right.set_ylabel("same audio again: speed-up vs first pass")
    right.set_title("multimodal cache reuse", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(frame, cache: dict, meta: dict) -> str:
    shown = frame[["label", "clips", "audio_s", "wall_s", "utts_per_s", "rtfx", "utts_per_s_vs_builtin",
                   "output_tokens", "same_tokens"]]
    lines = [f"# Model throughput ({meta['model']}, {meta['dtype']}, {meta['device']})", "",
             f"{meta['clips']} clips of 2-10 s, greedy, official token limit; vLLM rows: median of "
             f"{meta['repeats']} alternating passes on fresh audio. {meta['machine']}; 1-minute load average "
             f"{meta['load_average_1m']['before']} before, {meta['load_average_1m']['after']} after (the run's own "
             f"processes); {THREADS_BIND} {meta[THREADS_BIND]}.", "",
             markdown_table(shown), "", "## Identical audio sent again", "",
             "| system | first pass s | repeat pass s | speed-up | mm cache hits / queries | prefix cache hit tokens |",
             "|---|---|---|---|---|---|"]
    for name, c in cache.items():
        lines.append(f"| {LABELS[name]} | {c['first_pass_s']} | {c['repeat_pass_s']} | {c['repeat_speedup']}x | "
                     f"{c['mm_cache_hits']:.0f} / {c['mm_cache_queries']:.0f} | {c['prefix_cache_hits']:.0f} |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


@exit_codes(FileNotFoundError, ValueError, RuntimeError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_throughput", description=__doc__.split("\n\n")[0])
    add_model_argument(parser, default="bench",
                       help='tiny | bench | TinySpec JSON (e.g. \'{"d_model": 512, "n_layers_enc": 12}\') | official dir')
    add_dtype_argument(parser, default="float32")
    parser.add_argument("--device", default="cpu", help="for the official PyTorch row")
    parser.add_argument("--clips", type=int, default=24, help="clips per pass")
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes per vLLM system")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-gb", type=int, default=1, help="CPU KV cache per engine")
    parser.add_argument("--no-official", action="store_true")
    add_renamed_argument(parser, "--output-dir", "--out", type=Path, default=Path("bench/results"), metavar="DIR",
                         help="folder for model_throughput.{csv,md,json,png} (default bench/results)")
    args = parser.parse_args(argv)
    checked_dtype(args.dtype)
    model = args.model
    load_before = os.getloadavg()[0]
    rows, cache, data = measure_vllm(str(official_dir(model)), args)
    reference = dict(data["tokens"])
    if not args.no_official:
        official, reference["official"] = measure_official(model, data["sets"][0], args)
        rows.append(official)
    frame = table(rows, reference)
    for row, same in zip(rows, frame["same_tokens"]):
        row.extra["same_tokens"] = bool(same)
    meta = {"model": model, "dtype": args.dtype, "device": args.device, "clips": args.clips,
            "repeats": args.repeats, "machine": f"{platform.machine()} x{os.cpu_count()} CPUs",
            "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            THREADS_BIND: os.environ.get(THREADS_BIND, "unset (the project's default)"),
            "command": "python -m bench.model_throughput " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / "model_throughput"
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(frame, cache, meta), encoding="utf-8")
    write_benchmark(stem.with_suffix(".json"), meta, rows, cache=cache)
    plot(frame, cache, stem.with_suffix(".png"), f"{model} {args.dtype}, {args.clips} clips of 2-10 s")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
