"""Benchmark JSON files (bench/results/*.json): what ran (``meta``) and its measurements, in the schema;
files of the older layouts load through eval/records/legacy.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eval.records.legacy import legacy_layout
from eval.records.runs import MANIFEST, SUMMARY
from eval.records.schema import Measurement, write_json_atomic

BENCHMARK_SCHEMA = "fireredasr-benchmark/1"


@dataclass
class Benchmark:
    """A benchmark JSON file: what ran (``meta``) and its measurements."""

    path: Path
    meta: dict
    measurements: list[Measurement]
    details: dict = field(default_factory=dict)  # per-utterance outputs etc., as the script wrote them

    @property
    def name(self) -> str:
        return self.path.stem

    def table(self) -> pd.DataFrame:
        """One row per measurement, in the columns of a sweep table."""
        return pd.DataFrame([m.record() for m in self.measurements])


def write_benchmark(path: str | Path, meta: dict, measurements: list[Measurement], **details) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"schema": BENCHMARK_SCHEMA, "meta": meta,
                             "measurements": [m.record() for m in measurements], **details})
    return path


def is_benchmark(path: str | Path) -> bool:
    """A JSON file that ``load_benchmark`` reads (any version of the bench scripts)."""
    path = Path(path)
    if path.suffix != ".json" or not path.is_file() or path.name in (SUMMARY, MANIFEST):
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and _benchmark_layout(data) is not None


def load_benchmark(path: str | Path) -> Benchmark:
    """A benchmark JSON through the schema: this schema's files and the older layouts of
    bench/gpu_benchmark.py, bench/model_throughput.py, bench/trained_check.py and ``eval.run --bench``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such benchmark file") from None
    except ValueError:
        raise ValueError(f"{path}: not a JSON file") from None
    layout = _benchmark_layout(data) if isinstance(data, dict) else None
    if layout is None:
        raise ValueError(f"{path}: not a benchmark file (bench/results/*.json)")
    meta, measurements, details = layout(data)
    return Benchmark(path, meta, measurements, details)


def _benchmark_layout(data: dict):
    if data.get("schema") == BENCHMARK_SCHEMA:
        return lambda d: (d["meta"], [Measurement.from_record(r) for r in d["measurements"]],
                          {k: v for k, v in d.items() if k not in ("schema", "meta", "measurements")})
    return legacy_layout(data)
