"""The results schema, and run folders: per-utterance rows that survive a kill, plus summary and manifest.

One schema for every result: run folders (``eval.run``), sweep folders (``eval.sweep``) and benchmark
JSON (``bench/*.py`` -> bench/results/*.json). ``Summary`` holds the figures: ``error_rate`` with its
``metric`` (``cer`` or ``wer``: the unit the set is scored in), N/S/D/I, and speed. All times are seconds:
``latency_s`` and ``ttft_s`` per utterance, ``latency_p50``/``p90``/``p99`` and ``ttft_p50``/... over a pass.
RTFx, rates and percentiles are computed in one place (``speed``). Files written before this schema
(``cer`` keys, ``*_ms`` latencies) load through ``Summary.from_dict`` and ``load_benchmark``.

    RUN_DIR/rows.jsonl          append-only, one JSON object per finished utterance, fsynced
    RUN_DIR/utterances.parquet  the same rows as a table (written at the end)
    RUN_DIR/utterances.csv
    RUN_DIR/summary.json        Summary: corpus metrics and speed
    RUN_DIR/manifest.json       what produced the run (model, options, versions, git revision, device)

Killing the process at any moment loses no finished row and duplicates none: each row is one
``write`` of a complete line followed by ``fsync``; a torn last line (killed mid-write) is ignored on
read, and a resumed run skips the ids already present.
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

ROWS = "rows.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
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

    def __getitem__(self, key: str):
        """Mapping-style reads for code written against the summary dict; its ``cer`` key (which held WER on
        word-scored sets) reads ``error_rate``: new code reads ``summary.error_rate`` and ``summary.metric``."""
        if key in LEGACY_KEYS:
            key = LEGACY_KEYS[key]
        if key in self.__dataclass_fields__:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default=None):
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value


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


def read_rows(path: Path) -> list[dict]:
    """Complete rows of a ``rows.jsonl`` (a torn trailing line is skipped), first occurrence per id."""
    rows, seen = [], set()
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # killed mid-write
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("id") not in seen:
                seen.add(row.get("id"))
                rows.append(row)
    return rows


class RunWriter:
    """Append finished utterances to a run folder; resumable."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.path / ROWS
        self._truncate_torn_tail()
        self._done = {row["id"] for row in read_rows(self.rows_path)}
        self._handle = open(self.rows_path, "a", encoding="utf-8")

    def _truncate_torn_tail(self) -> None:
        if not self.rows_path.exists():
            return
        data = self.rows_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.rows_path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def done_ids(self) -> set[str]:
        return set(self._done)

    def append(self, row: dict) -> None:
        if row["id"] in self._done:
            return
        self._handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._done.add(row["id"])

    def rows(self) -> list[dict]:
        return read_rows(self.rows_path)

    def write_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.path / MANIFEST, manifest)

    def finalize(self, summary: Summary, manifest: dict | None = None) -> None:
        """Write the tables and summary (and manifest) from the rows on disk."""
        frame = rows_frame(self.rows())
        frame.to_parquet(self.path / "utterances.parquet", index=False)
        frame.to_csv(self.path / "utterances.csv", index=False)
        write_json_atomic(self.path / SUMMARY, summary.to_dict())
        if manifest is not None:
            self.write_manifest(manifest)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ROW_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[ROW_COLUMNS + [c for c in frame.columns if c not in ROW_COLUMNS]]


@dataclass
class Run:
    """A finished (or partial: ``summary`` None) run folder."""

    path: Path
    manifest: dict
    summary: Summary | None
    rows: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metric(self) -> str:
        """``cer`` or ``wer``: the summary's, or (unfinished run) the test set's as the manifest records it."""
        return self.summary.metric if self.summary else self.manifest.get("test_set", {}).get("metric", "cer")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_summary(path: Path) -> Summary | None:
    """``RUN_DIR/summary.json`` in the schema (any version's file); None before the run finished."""
    file = Path(path) / SUMMARY
    return Summary.from_dict(read_json(file)) if file.exists() else None


def load_run(path: str | Path, rows: bool = True) -> Run:
    """A run folder; ``rows=False`` reads only its manifest and summary (listings)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    if not any((path / name).exists() for name in (MANIFEST, ROWS, SUMMARY)):
        raise FileNotFoundError(f"{path}: not a run folder (no {MANIFEST}, {ROWS} or {SUMMARY}), nor a sweep "
                                "folder or benchmark file")
    table = path / "utterances.parquet"
    if not rows:
        frame = pd.DataFrame()
    else:
        frame = pd.read_parquet(table) if table.exists() else rows_frame(read_rows(path / ROWS))
    return Run(path=path, manifest=read_json(path / MANIFEST), summary=read_summary(path), rows=frame)


def list_runs(root: str | Path = "results") -> list[Path]:
    """Run folders under ``root`` (any depth), newest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = {p.parent for p in root.rglob(MANIFEST)} | {p.parent for p in root.rglob(ROWS)}
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


# ----------------------------------------------------------------------------------- benchmark JSON
BENCHMARK_SCHEMA = "fireredasr-benchmark/1"


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
    if "system" in data and "offline" in data:
        return _gpu_benchmark
    if isinstance(data.get("rows"), dict) and "meta" in data:
        return _model_throughput_v0
    if "utterances" in data and "cer" in data:
        return _trained_check_v0
    if "official_rtfx" in data:
        return _official_bench_v0
    return None


def _ms(value) -> float | None:
    return None if value is None else value / 1000


GPU_V0_READ = {"clips", "ok", "wall_s", "rtfx", "clips_per_s", "output_tok_per_s", "latency", "batch_latency",
               "p50_ms", "p90_ms", "p99_ms", "ttft_p50_ms", "batch", "concurrency"}


def _gpu_measurement(system: str, mode: str, entry: dict, audio_seconds: float | None) -> Measurement:
    latency = entry.get("latency") or entry.get("batch_latency") or entry
    clips, ok = entry.get("clips", 0), entry.get("ok", entry.get("clips", 0))
    summary = Summary(utterances=ok, failed=clips - ok, wall_seconds=entry.get("wall_s"), rtfx=entry.get("rtfx"),
                      utts_per_s=entry.get("clips_per_s"), output_tokens_per_s=entry.get("output_tok_per_s"),
                      audio_seconds=audio_seconds if entry.get("rtfx") else None,
                      latency_p50=_ms(latency.get("p50_ms")), latency_p90=_ms(latency.get("p90_ms")),
                      latency_p99=_ms(latency.get("p99_ms")), ttft_p50=_ms(entry.get("ttft_p50_ms")))
    concurrency = entry.get("batch", entry.get("concurrency"))
    extra = {k: v for k, v in entry.items() if k not in GPU_V0_READ}  # resource figures (GPU busy, CPU ms, ...)
    return Measurement(system, mode, concurrency, summary, extra)


def _gpu_benchmark(data: dict):
    """bench/gpu_benchmark.py: offline passes, online latency points and a long-audio pass, ``*_ms``."""
    system = data["system"]
    audio = (data.get("workload") or {}).get("audio_s")
    measurements = [_gpu_measurement(system, "offline", e, audio if e.get("clips") == (data.get("workload") or {})
                                     .get("clips") else None) for e in data.get("offline") or []]
    measurements += [_gpu_measurement(system, "online", e, None) for e in data.get("latency") or []]
    if data.get("long"):
        measurements.append(_gpu_measurement(system, "long", data["long"], (data.get("long_workload") or {})
                                             .get("audio_s")))
    meta = {k: v for k, v in data.items() if k not in ("offline", "latency", "long")}
    return meta, measurements, {}


def _model_throughput_v0(data: dict):
    measurements = [Measurement(name, "offline", row.get("clips"), Summary(
        utterances=row["clips"], audio_seconds=row["audio_s"], wall_seconds=row["wall_s"], rtfx=row["rtfx"],
        utts_per_s=row["utts_per_s"], output_tokens_per_s=per_second(row["output_tokens"], row["wall_s"])),
        {"passes": row.get("passes")}) for name, row in data["rows"].items()]
    return data["meta"], measurements, {"cache": data.get("cache", {})}


def _trained_check_v0(data: dict):
    meta = {k: data[k] for k in ("model", "dtype", "device", "vllm", "torch") if k in data}
    summary = Summary(metric="cer", error_rate=data["cer"], utterances=data["clips"])
    return meta, [Measurement("vllm", "offline", None, summary)], {"utterances": data["utterances"]}


def _official_bench_v0(data: dict):
    """``eval.run --bench``'s bench.json before the schema."""
    return {}, [Measurement("vllm", "offline", None, Summary(rtfx=data.get("vllm_rtfx"),
                                                             utts_per_s=data.get("vllm_utts_per_s"))),
                Measurement("official", "offline", 1, Summary(
                    utterances=data["clips_official"], rtfx=data["official_rtfx"],
                    utts_per_s=data["official_utts_per_s"]))], {}
