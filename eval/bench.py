"""``python -m eval.run ... --bench``: this project's speed next to the official PyTorch code.

Runs the official implementation (fireredasr_engine/official.py, batch size 1 as its README recommends) on the same
clips and weights right after the vLLM run, and reports RTFx and utts/s side by side as a ratio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from eval.datasets import load_test_set
from eval.records import Run, write_json_atomic
from fireredasr_engine.official import OfficialModel
from fireredasr_engine.options import DecodingOptions
from fireredasr_vllm.audio import load_audio
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
    """Time the official code on (up to ``limit`` of) the run's clips; write bench.json; return a table."""

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
    model.transcribe(samples, batch_size=1, beam_size=decoding.beam_size,
                     repetition_penalty=decoding.repetition_penalty, length_penalty=decoding.length_penalty)
    wall = time.perf_counter() - started
    audio_seconds = sum(len(s) for s in samples) / 16000
    ours = run.summary
    result = {
        "clips_official": len(samples), "official_rtfx": audio_seconds / wall, "official_utts_per_s": len(samples) / wall,
        "vllm_rtfx": ours.get("rtfx"), "vllm_utts_per_s": ours.get("utts_per_s"),
    }
    result["rtfx_ratio"] = (result["vllm_rtfx"] or 0) / result["official_rtfx"] if result["official_rtfx"] else None
    write_json_atomic(run.path / "bench.json", result)
    return ("\n| system | RTFx | utts/s |\n|---|---:|---:|\n"
            f"| this project (vLLM) | {result['vllm_rtfx']:.2f} | {result['vllm_utts_per_s']:.2f} |\n"
            f"| official PyTorch, batch 1 ({len(samples)} clips) | {result['official_rtfx']:.2f} | "
            f"{result['official_utts_per_s']:.2f} |\n\nratio (RTFx, vLLM / official): {result['rtfx_ratio']:.2f}x")
