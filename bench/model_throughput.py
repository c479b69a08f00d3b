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

Writes ``model_throughput.{csv,md,json,png}`` under ``--out``. Headline numbers are ratios measured
side by side; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SYSTEMS = {"ours": None, "builtin": "FireRedASR2ForConditionalGeneration"}
LABELS = {"ours": "this project (vLLM plugin)", "builtin": "vLLM built-in FireRedASR2",
          "official": "official PyTorch, batch 1"}
CACHE_METRICS = ("vllm:mm_cache_queries", "vllm:mm_cache_hits", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits")


def model_spec(name: str):
    """``tiny`` = the embedded model; ``bench`` = tiny LLM with a 6 x 256 Conformer (encoder cost
    visible); ``{"d_model": 1280, ...}`` = any TinySpec fields (random weights of that size)."""
    from testkit.tiny import TinySpec

    if name.startswith("{"):
        return TinySpec(**json.loads(name))
    return {"tiny": TinySpec(), "bench": TinySpec(d_model=256, n_head=4, n_layers_enc=6)}[name]


def official_dir(model: str) -> Path:
    """A generated checkpoint for a spec name / JSON, else the official release directory given."""
    from testkit.tiny import tiny_model_dir

    return tiny_model_dir(model_spec(model)) if model in ("tiny", "bench") or model.startswith("{") else Path(model)


def workload(clips: int, seed: int) -> list[np.ndarray]:
    from bench.gpu_benchmark import aishell_like

    return aishell_like(clips, seed).clips


def cache_counters() -> dict[str, float]:
    from vllm.v1.metrics.reader import get_metrics_snapshot

    totals = dict.fromkeys(CACHE_METRICS, 0.0)
    for metric in get_metrics_snapshot():
        if metric.name in totals:
            totals[metric.name] += float(getattr(metric, "value", 0) or 0)
    return totals


def timed_pass(engine, clips, options) -> tuple[float, list]:
    started = time.perf_counter()
    results = engine.transcribe_many(clips, options)
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} clips failed, e.g. {failed[0]}")
    return elapsed, results


def rates(clips, seconds: list[float], output_tokens: int) -> dict:
    audio = sum(len(c) for c in clips) / 16000
    wall = float(np.median(seconds))
    return {"clips": len(clips), "audio_s": round(audio, 1), "wall_s": round(wall, 3),
            "utts_per_s": round(len(clips) / wall, 3), "rtfx": round(audio / wall, 2),
            "output_tokens": output_tokens, "passes": len(seconds)}


def cache_pass(engine, options, args) -> dict:
    """Warm up, then send fresh clips and the very same clips again; time both, count cache hits.

    Runs right after the engine is built: vLLM keeps metrics of the newest engine only.
    """
    timed_pass(engine, workload(4, seed=10_000), options)
    clips = workload(args.clips, seed=20_000)
    first, _ = timed_pass(engine, clips, options)
    before = cache_counters()
    repeat, _ = timed_pass(engine, clips, options)
    after = cache_counters()
    delta = {k.removeprefix("vllm:"): after[k] - before[k] for k in CACHE_METRICS}
    return {"first_pass_s": round(first, 3), "repeat_pass_s": round(repeat, 3),
            "repeat_speedup": round(first / repeat, 2), **delta}


def measure_vllm(model: str, args) -> tuple[dict, dict, dict]:
    """Build each engine (cache experiment), then alternate them over ``repeats`` fresh workloads."""
    from fireredasr_engine.engine import Engine
    from fireredasr_engine.options import DecodingOptions, EngineOptions

    options = DecodingOptions()
    engines, cache = {}, {}
    try:
        for name, arch in SYSTEMS.items():
            engines[name] = Engine(model, EngineOptions(dtype=args.dtype, architecture=arch,
                                                        kv_cache_gb=args.kv_cache_gb))
            cache[name] = cache_pass(engines[name], options, args)
        sets = [workload(args.clips, seed=args.seed + r) for r in range(args.repeats)]
        seconds = {name: [] for name in engines}
        tokens = {}
        for r, clips in enumerate(sets):
            for name in list(engines) if r % 2 == 0 else list(engines)[::-1]:
                elapsed, results = timed_pass(engines[name], clips, options)
                seconds[name].append(elapsed)
                tokens.setdefault(name, [res.token_ids for res in results])
        rows = {name: rates(sets[0], seconds[name], sum(map(len, tokens[name]))) for name in engines}
        return rows, cache, {"tokens": tokens, "sets": sets}
    finally:
        for engine in engines.values():
            engine.close()


def measure_official(model: str, clips, args) -> tuple[dict, list]:
    from fireredasr_engine.official import OfficialModel

    official = OfficialModel.load(official_dir(model), dtype=args.dtype, device=args.device)
    official.transcribe(workload(2, seed=10_000))  # warm-up
    started = time.perf_counter()
    results = official.transcribe(clips, batch_size=1)
    elapsed = time.perf_counter() - started
    tokens = [r["token_ids"] for r in results]
    return rates(clips, [elapsed], sum(map(len, tokens))), tokens


def table(rows: dict, reference: dict[str, list]) -> "pandas.DataFrame":  # noqa: F821
    import pandas as pd

    frame = pd.DataFrame([{"system": name, "label": LABELS[name], **row} for name, row in rows.items()])
    frame["same_tokens"] = [reference[name] == reference["ours"] for name in rows]
    for column in ("utts_per_s", "rtfx"):
        frame[f"{column}_vs_builtin"] = (frame[column] / rows["builtin"][column]).round(2)
    return frame


def plot(frame, cache: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def markdown_table(frame) -> list[str]:
    rows = [list(map(str, frame.columns))] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    return ["| " + " | ".join(row) + " |" for row in rows[:1]] + ["|" + "---|" * len(frame.columns)] + \
        ["| " + " | ".join(row) + " |" for row in rows[1:]]


def markdown(frame, cache: dict, meta: dict) -> str:
    shown = frame[["label", "clips", "audio_s", "wall_s", "utts_per_s", "rtfx", "utts_per_s_vs_builtin",
                   "output_tokens", "same_tokens"]]
    lines = [f"# Model throughput ({meta['model']}, {meta['dtype']}, {meta['device']})", "",
             f"{meta['clips']} clips of 2-10 s, greedy, official token limit; vLLM rows: median of "
             f"{meta['repeats']} alternating passes on fresh audio. {meta['machine']}.", "",
             *markdown_table(shown), "", "## Identical audio sent again", "",
             "| system | first pass s | repeat pass s | speed-up | mm cache hits / queries | prefix cache hit tokens |",
             "|---|---|---|---|---|---|"]
    for name, c in cache.items():
        lines.append(f"| {LABELS[name]} | {c['first_pass_s']} | {c['repeat_pass_s']} | {c['repeat_speedup']}x | "
                     f"{c['mm_cache_hits']:.0f} / {c['mm_cache_queries']:.0f} | {c['prefix_cache_hits']:.0f} |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bench",
                        help='tiny | bench | TinySpec JSON (e.g. \'{"d_model": 512, "n_layers_enc": 12}\') | official dir')
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu", help="for the official PyTorch row")
    parser.add_argument("--clips", type=int, default=24, help="clips per pass")
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes per vLLM system")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-gb", type=int, default=1, help="CPU KV cache per engine")
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    model = args.model
    rows, cache, data = measure_vllm(str(official_dir(model)), args)
    reference = dict(data["tokens"])
    if not args.no_official:
        rows["official"], reference["official"] = measure_official(model, data["sets"][0], args)
    frame = table(rows, reference)
    meta = {"model": model, "dtype": args.dtype, "device": args.device, "clips": args.clips,
            "repeats": args.repeats, "machine": f"{platform.machine()} x{os.cpu_count()} CPUs",
            "command": "python -m bench.model_throughput " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "model_throughput"
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(frame, cache, meta), encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "cache": cache}, indent=2))
    plot(frame, cache, stem.with_suffix(".png"), f"{model} {args.dtype}, {args.clips} clips of 2-10 s")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
