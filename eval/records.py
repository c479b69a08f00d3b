"""Run folders: per-utterance rows that survive a kill, plus summary and manifest.

    RUN_DIR/rows.jsonl          append-only, one JSON object per finished utterance, fsynced
    RUN_DIR/utterances.parquet  the same rows as a table (written at the end)
    RUN_DIR/utterances.csv
    RUN_DIR/summary.json        corpus metrics and speed
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

ROWS = "rows.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
ROW_COLUMNS = ["id", "duration", "reference", "hypothesis", "ref_norm", "hyp_norm", "n", "s", "d", "i",
               "errors", "latency_s", "ttft_s", "prompt_tokens", "output_tokens", "finish_reason", "error",
               "segments"]  # [{start_s, end_s, text}, ...]: where in the audio each piece of the hypothesis is


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

    def finalize(self, summary: dict, manifest: dict | None = None) -> None:
        """Write the tables and summary (and manifest) from the rows on disk."""
        frame = rows_frame(self.rows())
        frame.to_parquet(self.path / "utterances.parquet", index=False)
        frame.to_csv(self.path / "utterances.csv", index=False)
        write_json_atomic(self.path / SUMMARY, summary)
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
    """A finished (or partial) run folder."""

    path: Path
    manifest: dict
    summary: dict
    rows: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")

    def read(name: str) -> dict:
        file = path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}

    table = path / "utterances.parquet"
    rows = pd.read_parquet(table) if table.exists() else rows_frame(read_rows(path / ROWS))
    return Run(path=path, manifest=read(MANIFEST), summary=read(SUMMARY), rows=rows)


def list_runs(root: str | Path = "results") -> list[Path]:
    """Run folders under ``root`` (any depth), newest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = {p.parent for p in root.rglob(MANIFEST)} | {p.parent for p in root.rglob(ROWS)}
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)
