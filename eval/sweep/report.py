"""A sweep as a report: report.md with its figures (eval/plots.py), the speed-up over the official code, and
sweep folders side by side (``python -m eval.report``, the Runs tab, notebook 04). No engine is imported."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from eval.plots import plot_sweep, save_figures
from eval.sweep.store import read_sweep_table
from eval.tables import markdown_table, results_table, stacked

SPREAD_WARNING = 0.20  # relative range of a configuration's pass times above which its figures are suspect


def compare_sweeps(paths: list[str | Path]) -> pd.DataFrame:
    """The results tables of several sweep folders, one row per sweep and configuration."""
    return stacked([(Path(p).name, read_sweep_table(p)) for p in paths], "sweep")


def speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Best RTFx per decoding and system, and each system's ratio to the official implementation."""
    best = table.pivot_table(index="decoding", columns="system", values="rtfx", aggfunc="max", sort=False)
    for system in [s for s in best.columns if s != "official"]:
        if "official" in best.columns:
            best[f"{system} / official"] = best[system] / best["official"]
    return best.reset_index()


def write_report(table: pd.DataFrame, out_dir: str | Path, manifest: dict) -> Path:
    """plots/*.png and report.md (figures embedded) for a sweep table."""
    out_dir = Path(out_dir)
    paths = save_figures(plot_sweep(table), out_dir / "plots") if len(table) else []
    config = manifest["config"]
    lines = [
        f"# Sweep: {config['test_set']} / {config['model']}", "",
        f"- device: {manifest.get('device')}",
        f"- utterances: {manifest.get('utterances')} ({manifest.get('audio_seconds', 0):.1f} s of audio), "
        f"warm-up {config['warmup']} full batch(es) per engine and decoding, {config.get('repeats', 1)} timed "
        f"pass(es) per configuration (median; `spread` = (max - min) / median of the pass times), order seed "
        f"{config.get('order_seed')}",
        f"- git revision: {manifest.get('git_revision')}; created {manifest.get('created')}",
        f"- command: `{manifest.get('command')}`", "",
        "Latencies in seconds; `concurrency` is the number of clients (online), every utterance at once "
        "(offline) or the static batch size (official). Peak RSS: this process plus the engine's processes.",
        "",
        "## Results", "",
        markdown_table(results_table(table)) if len(table) else "(no configuration finished)", "",
    ]
    if len(table) and "spread" in table and (table["spread"] > SPREAD_WARNING).any():
        unstable = table[table["spread"] > SPREAD_WARNING]
        lines += [f"## Warning: {len(unstable)} configuration(s) varied by more than {SPREAD_WARNING:.0%} "
                  "between passes", "", "Their figures are suspect (a busy machine?); measure them again "
                  "(`--repeats`, a quieter machine):", "",
                  markdown_table(unstable[["system", "engine_config", "decoding", "mode", "concurrency", "spread"]]),
                  ""]
    if len(table) and {"official", "vllm"} <= set(table["system"]):
        lines += ["## Best RTFx and speed-up over the official implementation", "", markdown_table(speedups(table)),
                  ""]
    lines += ["## Figures", ""] + [f"![{p.stem}](plots/{p.name})" for p in paths]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
