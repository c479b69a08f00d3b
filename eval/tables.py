"""Results as tables: one cell format, markdown tables, and the report's view of a sweep or benchmark table
(``eval.sweep``, ``eval.report``, the Runs and Benchmark tabs, notebooks)."""

from __future__ import annotations

import pandas as pd

REPORT_COLUMNS = ["system", "engine_config", "decoding", "mode", "concurrency", "error_rate", "rtfx", "utts_per_s",
                  "output_tokens_per_s", "latency_p50", "latency_p90", "latency_p99", "ttft_p50", "peak_rss_mb",
                  "failed", "spread"]
# Contextual biasing (eval/biasing.py), shown in percent where a table has them.
BIASING_COLUMNS = {"b_cer": "B-CER %", "u_cer": "U-CER %", "hotword_recall": "recall %",
                   "hotword_precision": "precision %", "hotword_f1": "F1 %"}


def cell(value) -> str:
    """A table cell: ``-`` for missing, 2 decimals (3 below 0.1)."""
    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def error_label(table: pd.DataFrame) -> str:
    """``CER %`` / ``WER %`` (``error %`` when a table mixes both)."""
    metrics = set(table["metric"].dropna().astype(str)) if "metric" in table else set()
    return f"{metrics.pop().upper()} %" if len(metrics) == 1 else ("CER %" if not metrics else "error %")


def rates_in_percent(table: pd.DataFrame, label=error_label) -> pd.DataFrame:
    """``eval.report.compare_runs`` output with the error rates in percent, the error rate named by its metric
    (``label(table)``: ``CER %`` by default)."""
    rates = table[["error_rate", "ser"]].astype(float)
    return biasing_in_percent(table.assign(error_rate=100 * rates["error_rate"], ser=100 * rates["ser"]).rename(
        columns={"error_rate": label(table), "ser": "ser %"}))


def biasing_in_percent(table: pd.DataFrame) -> pd.DataFrame:
    """The biasing columns of ``table`` in percent under their names (``B-CER %``...); left out when no row
    has them (runs without hotword lists)."""
    present = [c for c in BIASING_COLUMNS if c in table]
    if not present or table[present].isna().all().all():
        return table.drop(columns=present)
    return table.assign(**{c: 100 * table[c].astype(float) for c in present}).rename(columns=BIASING_COLUMNS)


def results_table(table: pd.DataFrame) -> pd.DataFrame:
    """The report's columns of a sweep or benchmark table, error rate in percent under its metric's name."""
    columns = REPORT_COLUMNS[:6] + ["hotword_weight", *BIASING_COLUMNS] + REPORT_COLUMNS[6:]
    shown = table[[c for c in columns if c in table]].copy()
    if "error_rate" in shown:
        shown["error_rate"] = 100 * shown["error_rate"].astype(float)
    if "hotword_weight" in shown and shown["hotword_weight"].isna().all():
        shown = shown.drop(columns="hotword_weight")
    return biasing_in_percent(shown.rename(columns={"error_rate": error_label(table)}))


def stacked(named_tables: list[tuple[str, pd.DataFrame]], source: str) -> pd.DataFrame:
    """Sweep or benchmark tables side by side: ``results_table`` of each, one row per configuration, the
    first column ``source`` naming where the row comes from."""
    if not named_tables:
        return pd.DataFrame(columns=[source, *REPORT_COLUMNS])
    combined = pd.concat([results_table(table).assign(**{source: name}) for name, table in named_tables],
                         ignore_index=True)
    return combined[[source, *(c for c in combined.columns if c != source)]]
