"""Compare results, all read through the results schema (eval/records/): run folders (summary table, worst
utterances, utterances where two runs differ), sweep folders and benchmark JSON files (their measured
configurations side by side).

    python -m eval.report RUN_DIR [RUN_DIR ...] [--worst 10]
    python -m eval.report SWEEP_DIR [SWEEP_DIR ...]      # folders written by eval.sweep or the Benchmark tab
    python -m eval.report bench/results/*.json           # files written by the bench/ scripts
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pandas as pd

from eval.biasing import BIASING_FIELDS
from eval.records import Run, Summary, is_benchmark, load_benchmark, load_run
from eval.sweep.report import compare_sweeps
from eval.sweep.store import is_sweep
from eval.tables import stacked
from fireredasr_vllm.cli_args import exit_codes  # not fireredasr_engine.cli: reading results starts no engine

SUMMARY_COLUMNS = ["error_rate", "n", "s", "d", "i", "ser", "utterances", "failed", "rtfx", "utts_per_s",
                   "output_tokens_per_s", "latency_p50", "latency_p90", "latency_p99"]
BIASING_COLUMNS = list(BIASING_FIELDS)  # filled on runs with hotword lists (eval/biasing.py)


def compare_runs(runs: list[Run]) -> pd.DataFrame:
    """One row per run: test set, model, decoding and the summary figures (and the biasing figures, B-CER
    against U-CER, when a run had hotword lists)."""
    records = []
    for run in runs:
        test_set = run.manifest.get("test_set", {})
        summary = run.summary or Summary(metric=run.metric)  # unfinished: no figures yet
        record = {"run": run.name, "test_set": test_set.get("name"), "model": run.manifest.get("model"),
                  "decoding": run.manifest.get("decoding", {}).get("label"), "metric": summary.metric}
        record |= {key: getattr(summary, key) for key in SUMMARY_COLUMNS + BIASING_COLUMNS}
        record["hotword_weight"] = (run.manifest.get("hotwords") or {}).get("hotword_weight")
        records.append(record)
    columns = ["run", "test_set", "model", "decoding", "metric", *SUMMARY_COLUMNS]
    table = pd.DataFrame(records, columns=[*columns, "hotword_weight", *BIASING_COLUMNS])
    biased = table[BIASING_COLUMNS].notna().any().any()
    return table if biased else table[columns]


def compare_benchmarks(paths: list[str | Path]) -> pd.DataFrame:
    """The measurements of several benchmark JSON files (any version), one row per file and measurement."""
    return stacked([(Path(p).stem, load_benchmark(p).table()) for p in paths], "benchmark")


def worst_utterances(run: Run, n: int = 10) -> pd.DataFrame:
    """Utterances with the most errors (ties: highest error rate first)."""
    rows = run.rows[run.rows["error"].isna()].copy() if "error" in run.rows else run.rows.copy()
    rows["rate"] = rows["errors"] / rows["n"].clip(lower=1)
    return rows.sort_values(["errors", "rate"], ascending=False).head(n)[
        ["id", "errors", "n", "rate", "reference", "hypothesis"]]


def differing_utterances(run_a: Run, run_b: Run) -> pd.DataFrame:
    """Utterances whose normalized hypotheses differ between two runs, with both error counts."""
    columns = ["id", "reference", "ref_norm", "hypothesis", "hyp_norm", "errors"]
    merged = run_a.rows[columns].merge(run_b.rows[["id", "hypothesis", "hyp_norm", "errors"]], on="id",
                                       suffixes=("_a", "_b"))
    merged = merged[merged["hyp_norm_a"] != merged["hyp_norm_b"]]
    merged["delta_errors"] = merged["errors_b"] - merged["errors_a"]
    return merged.sort_values("delta_errors").reset_index(drop=True)


@exit_codes(FileNotFoundError, ValueError)
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="PATH",
                        help="run folders (eval.run), sweep folders (eval.sweep) or benchmark JSON files (bench/)")
    parser.add_argument("--worst", type=int, default=10)
    args = parser.parse_args(argv)
    sweeps = [path for path in args.runs if is_sweep(path)]
    benchmarks = [path for path in args.runs if is_benchmark(path)]
    runs = [load_run(path) for path in args.runs if path not in sweeps + benchmarks]
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        if sweeps:
            print(compare_sweeps(sweeps).round(3).to_string(index=False))
        if benchmarks:
            print(compare_benchmarks(benchmarks).round(3).to_string(index=False))
        if not runs:
            return 0
        table = compare_runs(runs)
        print(table.to_markdown(index=False) if importlib.util.find_spec("tabulate") else table)
        for run in runs:
            print(f"\nworst utterances of {run.name}:")
            print(worst_utterances(run, args.worst).to_string(index=False))
        if len(runs) == 2:
            diff = differing_utterances(*runs)
            print(f"\n{len(diff)} utterances differ between {runs[0].name} and {runs[1].name}:")
            print(diff[["id", "hypothesis_a", "hypothesis_b", "delta_errors"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
