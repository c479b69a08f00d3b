"""``python -m eval.run ... --bench``: this project's speed next to the official PyTorch code.

Runs the official implementation (eval/official.py, batch size 1 as its README recommends) on the same
clips and weights right after the vLLM run, and reports RTFx and utts/s side by side as a ratio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from eval.datasets import load_test_set
from eval.official import OfficialModel
from eval.records import Measurement, Run, Summary, speed, write_benchmark
from eval.tables import cell
from fireredasr_engine.options import DecodingOptions
from fireredasr_vllm.audio import SAMPLE_RATE, load_audio
from fireredasr_vllm.convert import is_official_dir
from fireredasr_vllm.resolve import named_model_dir


def official_dir_for(model_dir: str | Path, spec: str) -> Path | None:
    """The official-layout directory behind a model spec (the converter records its source)."""
    if (named := named_model_dir(spec)) is not None:
        return named
    if is_official_dir(spec):
        return Path(spec)
    record = Path(model_dir) / "conversion.json"
    if record.exists():
        source = Path(json.loads(record.read_text())["source"])
        return source if is_official_dir(source) else None
    return None


def bench_against_official(run: Run, decoding: DecodingOptions, limit: int = 30) -> str:
    """Time the official code on (up to ``limit`` of) the run's clips; write bench.json (a benchmark file of
    the results schema: both systems' figures); return a table."""
    official_dir = official_dir_for(run.manifest["model_dir"], run.manifest["model"])
    if official_dir is None:
        return "bench: no official-layout directory behind this model; skipped"
    args = run.manifest.get("arguments", {})
    data = load_test_set(args.get("test_set", run.manifest["test_set"]["name"]), limit=args.get("limit"),
                         shuffle_seed=args.get("shuffle_seed"), max_duration=args.get("max_duration"))
    wanted = set(run.rows.loc[run.rows["error"].isna(), "id"])
    samples = [load_audio(u.audio) for u in data.utterances if u.id in wanted][:limit]
    model = OfficialModel.load(official_dir)
    model.transcribe(samples[:1])  # warm-up
    started = time.perf_counter()
    outputs = model.transcribe(samples, batch_size=1, beam_size=decoding.beam_size,
                               repetition_penalty=decoding.repetition_penalty, length_penalty=decoding.length_penalty)
    wall = time.perf_counter() - started
    official = Summary.of(None, utterances=len(samples), **speed(
        audio_seconds=sum(len(s) for s in samples) / SAMPLE_RATE, wall_seconds=wall, utterances=len(samples),
        output_tokens=sum(len(o["token_ids"]) for o in outputs), latencies=[o["latency_s"] for o in outputs]))
    ours = run.summary
    ratio = ours.rtfx / official.rtfx if ours.rtfx and official.rtfx else None
    write_benchmark(run.path / "bench.json", {"run": str(run.path), "model": run.manifest.get("model"),
                                              "decoding": decoding.label, "device": run.manifest.get("device")},
                    [Measurement("vllm", "offline", None, ours), Measurement("official", "offline", 1, official)],
                    rtfx_ratio=ratio)
    return ("\n| system | RTFx | utts/s |\n|---|---:|---:|\n"
            f"| this project (vLLM) | {cell(ours.rtfx)} | {cell(ours.utts_per_s)} |\n"
            f"| official PyTorch, batch 1 ({len(samples)} clips) | {cell(official.rtfx)} | "
            f"{cell(official.utts_per_s)} |\n\nratio (RTFx, vLLM / official): {cell(ratio)}x")
