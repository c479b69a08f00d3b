"""The results schema: one row layout and one ``Summary`` of figures for every result, the speed figures
computed in one place, and what every result file carries (provenance; written atomically).

Run folders (``eval.run``, eval/records/runs.py), sweep folders (``eval.sweep``) and benchmark JSON
(``bench/*.py``, eval/records/benchmarks.py) all hold these. ``Summary`` holds ``error_rate`` with its
``metric`` (``cer`` or ``wer``: the unit the set is scored in), N/S/D/I, and speed. All times are seconds:
``latency_s`` and ``ttft_s`` per utterance, ``latency_p50``/``p90``/``p99`` and ``ttft_p50``/... over a pass.
Summaries written before the schema (a ``cer`` key) load through ``Summary.from_dict``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from eval.biasing import BIASING_FIELDS, BiasingSummary
from eval.metrics import CorpusScore

ROW_COLUMNS = ["id", "duration", "reference", "hypothesis", "ref_norm", "hyp_norm", "n", "s", "d", "i",
               "errors", "latency_s", "ttft_s", "prompt_tokens", "output_tokens", "finish_reason", "error",
               "segments"]  # [{start_s, end_s, text}, ...]: where in the audio each piece of the hypothesis is
PERCENTILE_POINTS = (50, 90, 99)
SPEED_FIELDS = ("wall_seconds", "rtfx", "utts_per_s", "output_tokens_per_s",
                *(f"{kind}_p{p}" for kind in ("latency", "ttft") for p in PERCENTILE_POINTS))
LEGACY_KEYS = {"cer": "error_rate"}  # summary keys written before the schema


def percentiles(values, prefix: str) -> dict:
    """``{prefix}_p50``, ``_p90``, ``_p99`` of ``values`` (None ignored; all None when empty)."""
    values = [v for v in values if v is not None]
    return {f"{prefix}_p{p}": float(np.percentile(values, p)) if values else None for p in PERCENTILE_POINTS}


def per_second(amount: float, wall_seconds: float | None) -> float | None:
    return amount / wall_seconds if wall_seconds else None


def speed(*, audio_seconds: float, wall_seconds: float | None, utterances: int, output_tokens: int,
          latencies=(), ttfts=()) -> dict:
    """The speed figures of one timed pass: RTFx (audio seconds per wall second), utterances and output
    tokens per second, latency and time-to-first-token percentiles."""
    return {"audio_seconds": audio_seconds, "wall_seconds": wall_seconds,
            "rtfx": per_second(audio_seconds, wall_seconds), "utts_per_s": per_second(utterances, wall_seconds),
            "output_tokens_per_s": per_second(output_tokens, wall_seconds),
            **percentiles(latencies, "latency"), **percentiles(ttfts, "ttft")}


@dataclass
class Summary:
    """The figures of a run, a sweep configuration or a benchmark measurement. ``error_rate`` is (S+D+I)/N
    in the units of ``metric``; None where accuracy was not measured. Times in seconds."""

    metric: str = "cer"
    error_rate: float | None = None
    n: int | None = None
    s: int | None = None
    d: int | None = None
    i: int | None = None
    ser: float | None = None
    utterances: int = 0  # scored (or, for speed-only measurements, timed) utterances
    failed: int = 0
    timed_utterances: int | None = None
    audio_seconds: float | None = None
    wall_seconds: float | None = None
    rtfx: float | None = None
    utts_per_s: float | None = None
    output_tokens_per_s: float | None = None
    latency_p50: float | None = None
    latency_p90: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    ttft_p99: float | None = None
    # Contextual biasing (eval/biasing.py), on sets or runs with hotword lists; None otherwise.
    b_cer: float | None = None  # error rate on reference units inside listed-word occurrences
    u_cer: float | None = None  # ... outside them
    hotword_recall: float | None = None
    hotword_precision: float | None = None
    hotword_f1: float | None = None

    @classmethod
    def of(cls, corpus: CorpusScore | None, *, failed: int = 0, biasing: BiasingSummary | None = None,
           **speed_figures) -> Summary:
        """Accuracy from ``corpus`` (None: speed only), ``biasing`` figures and ``speed(...)``'s figures."""
        accuracy = {} if corpus is None else {
            "metric": corpus.metric, "error_rate": corpus.error_rate, "n": corpus.n, "s": corpus.s, "d": corpus.d,
            "i": corpus.i, "ser": corpus.ser, "utterances": corpus.sentences}
        biased = {} if biasing is None else {name: getattr(biasing, name) for name in BIASING_FIELDS}
        return cls(**accuracy, **biased, failed=failed, **speed_figures)

    @property
    def has_biasing(self) -> bool:
        return any(getattr(self, name) is not None for name in BIASING_FIELDS)

    @classmethod
    def from_dict(cls, data: dict) -> Summary:
        """A summary as written by any version: ``cer`` (which held WER on word-scored sets) is
        ``error_rate``; keys this schema does not know are left out."""
        data = {LEGACY_KEYS.get(key, key): value for key, value in data.items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


def upgrade_table(table: pd.DataFrame) -> pd.DataFrame:
    """A sweep or benchmark table written before the schema: its ``cer`` column is ``error_rate``."""
    if "cer" in table and "error_rate" not in table:
        table = table.rename(columns=LEGACY_KEYS)
    return table


def git_revision() -> str | None:
    """The checkout's commit, None outside a git checkout (an installed package)."""
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict:
    """The manifest entries every result carries: git revision, creation time (UTC) and command line."""
    return {"git_revision": git_revision(), "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "command": " ".join(sys.argv)}


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temp file, fsync, rename: readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@dataclass
class Measurement:
    """One measured configuration of a benchmark: which system, how it was loaded, and its figures.
    ``mode``: offline (all requests at once, or static batches of ``concurrency`` for the official code),
    online (``concurrency`` clients), or a script's own label (``long``, ``cache-repeat``, ...)."""

    system: str
    mode: str
    concurrency: int | None
    summary: Summary
    extra: dict = field(default_factory=dict)  # figures outside the schema (cache hits, token agreement, ...)

    def record(self) -> dict:
        return {"system": self.system, "mode": self.mode, "concurrency": self.concurrency,
                **self.summary.to_dict(), **self.extra}

    @classmethod
    def from_record(cls, record: dict) -> Measurement:
        known = {f.name for f in fields(Summary)} | {"system", "mode", "concurrency", "cer"}
        return cls(record["system"], record["mode"], record.get("concurrency"), Summary.from_dict(record),
                   {k: v for k, v in record.items() if k not in known})
