"""The sweep folder: the tidy table (one row per configuration) and the per-utterance rows, rewritten
atomically after each configuration; listing and reading sweep folders (old ones included). Imports no engine:
eval.report and notebook 04 read sweeps through it.

    DIR/sweep.parquet + sweep.csv     one row per system x engine config x decoding x mode x concurrency
    DIR/sweep_utterances.parquet      the hypotheses and latencies behind each row (every pass)
    DIR/sweep.json                    configuration, test set, device, package versions, git revision
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from eval.errors import UserError
from eval.records import upgrade_table

SWEEP_TABLE = "sweep.parquet"
KEY = ["test_set", "model", "system", "engine_config", "decoding", "mode", "concurrency", "request_rate"]  # a row's identity
SWEEP_MANIFEST = "sweep.json"


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / SWEEP_TABLE).exists()


def list_sweeps(root: str | Path = "results") -> list[Path]:
    """Sweep folders under ``root`` (any depth), newest first."""
    root = Path(root)
    found = {p.parent for p in root.rglob(SWEEP_TABLE)} if root.exists() else set()
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def read_sweep_table(path: str | Path) -> pd.DataFrame:
    """A sweep folder's table in the results schema (``cer`` of older sweeps is ``error_rate``)."""
    return upgrade_table(pd.read_parquet(Path(path) / SWEEP_TABLE))


def write_table_atomic(frame: pd.DataFrame, path_stem: Path, csv: bool = True) -> None:
    """parquet (and csv) via temp file + rename: a kill leaves the old or the new table, never half."""
    targets = [(".parquet", lambda p: frame.to_parquet(p, index=False))]
    if csv:
        targets.append((".csv", lambda p: frame.to_csv(p, index=False)))
    for suffix, write in targets:
        final = path_stem.with_suffix(suffix)
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        write(tmp)
        os.replace(tmp, final)


class SweepStore:
    """The sweep folder: the tidy table and per-utterance rows, rewritten after each configuration."""

    def __init__(self, out_dir: str | Path, resume: bool):
        self.path = Path(out_dir)
        self.table_stem = self.path / Path(SWEEP_TABLE).stem
        self.utterances_stem = self.path / "sweep_utterances"
        existing = self.table_stem.with_suffix(".parquet")
        if existing.exists() and not resume:
            raise UserError(f"{self.path} already holds a sweep: pass --resume to continue it or pick "
                                  "another --output-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = read_sweep_table(self.path).to_dict("records") if existing.exists() else []
        utterances = self.utterances_stem.with_suffix(".parquet")
        self.utterances: list[dict] = (upgrade_table(pd.read_parquet(utterances)).to_dict("records")
                                       if utterances.exists() else [])

    def done(self) -> set[tuple]:
        return {tuple(None if pd.isna(row[k]) else row[k] for k in KEY) for row in self.rows}

    def add(self, row: dict, utterances: list[dict]) -> None:
        self.rows.append(row)
        self.utterances += [{**{k: row[k] for k in KEY}, **u} for u in utterances]
        write_table_atomic(pd.DataFrame(self.utterances), self.utterances_stem, csv=False)
        write_table_atomic(self.table, self.table_stem)

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
