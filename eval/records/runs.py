"""Run folders: per-utterance rows that survive a kill, plus summary and manifest.

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

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eval.records.schema import ROW_COLUMNS, Summary, read_json, write_json_atomic

ROWS = "rows.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"


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
