"""Matplotlib figures for sweeps and single runs; shared by the CLIs, the notebooks and the Gradio UI.

Every function takes a DataFrame (a sweep table from eval/sweep.py, or a run's per-utterance rows from
eval/records.py) and returns a ``matplotlib.figure.Figure``; nothing is shown or saved implicitly.

    figures = plot_sweep(pd.read_parquet("results/sweep/sweep.parquet"))
    save_figures(figures, "results/sweep/plots")          # -> [.../latency_vs_throughput.png, ...]
    save_figures(plot_run(load_run("results/demo")), "results/demo/plots")
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei")
SYSTEM_STYLES = {"vllm": "-", "builtin": "--", "official": ":"}
SYSTEM_NAMES = {"vllm": "this project (vLLM)", "builtin": "vLLM built-in FireRedASR2", "official": "official PyTorch"}
DURATION_EDGES = (0, 2, 5, 10, 20, 30, math.inf)


def use_cjk_font() -> str | None:
    """Put an installed CJK font (Noto Sans CJK from fonts-noto-cjk) first in matplotlib's sans-serif list."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            rest = [f for f in matplotlib.rcParams["font.sans-serif"] if f != name]
            matplotlib.rcParams["font.family"] = "sans-serif"
            matplotlib.rcParams["font.sans-serif"] = [name, *rest]
            matplotlib.rcParams["axes.unicode_minus"] = False
            return name
    return None


use_cjk_font()


def new_figure(width: float = 7.0, height: float = 4.5) -> tuple[Figure, Axes]:
    """A pyplot-free figure: no GUI backend needed, displays in Jupyter and gr.Plot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def log_if_wide(ax, axis: str, values, ratio: float = 20.0) -> None:
    """Log scale (plain tick labels) when positive ``values`` span more than ``ratio``."""
    values = pd.Series(values, dtype=float).dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() > ratio:
        getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"{axis}axis").set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def finish(fig: Figure, ax: Axes, title: str, empty: bool, note: str) -> Figure:
    """Title, grid, and a legend - or a note saying why the axes are empty."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if empty:
        empty_note(ax, note)
    else:
        ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------- sweep tables
def series_label(system: str, decoding: str) -> str:
    return f"{decoding}" if system == "vllm" else f"{decoding} [{SYSTEM_NAMES.get(system, system)}]"


def point_label(row) -> str:
    """``b`` = max_num_seqs (official: static batch size), ``c`` = concurrent clients, ``all`` = offline."""
    batch = "" if pd.isna(row.get("batch")) else f"b{int(row['batch'])}"
    if row.get("system") == "official":
        return batch
    load = "all" if row["mode"] == "offline" else f"c{int(row['concurrency'])}"
    return f"{batch}/{load}" if batch else load


def latency_vs_throughput(table: pd.DataFrame, latency: str = "latency_p50",
                          throughput: str = "utts_per_s") -> Figure:
    """One colour per decoding config (and line style per system); each line joins the concurrency
    points of one engine setting and load mode, each point labelled batch/concurrency."""
    fig, ax = new_figure()
    data = table.dropna(subset=[latency, throughput])
    colors = decoding_colors(table)
    keys = [k for k in ("system", "decoding", "batch", "mode") if k in data]
    labelled = set()
    for key, group in data.groupby(keys, sort=False, dropna=False):
        system, decoding = key[0], key[1]
        group = group.sort_values(throughput)
        label = series_label(system, decoding) if (system, decoding) not in labelled else None
        labelled.add((system, decoding))
        ax.plot(group[throughput], group[latency], SYSTEM_STYLES.get(system, "-"), marker="o",
                color=colors[decoding], label=label)
        for _, row in group.iterrows():
            ax.annotate(point_label(row), (row[throughput], row[latency]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    log_if_wide(ax, "x", data[throughput])
    log_if_wide(ax, "y", data[latency])
    ax.set_xlabel(throughput.replace("_per_s", "/s").replace("_", " "))
    ax.set_ylabel(f"{latency.replace('_', ' ')} (s)")
    return finish(fig, ax, "Latency vs throughput", data.empty, "no timed configurations")


def rtfx_vs_max_num_seqs(table: pd.DataFrame) -> Figure:
    """Best RTFx over the load settings for each max_num_seqs (official rows: static batch size)."""
    fig, ax = new_figure()
    data = table.dropna(subset=["batch", "rtfx"])
    colors = decoding_colors(table)
    for (system, decoding), group in data.groupby(["system", "decoding"], sort=False):
        best = group.groupby("batch")["rtfx"].max().sort_index()
        ax.plot(best.index, best.values, SYSTEM_STYLES.get(system, "-"), marker="o", color=colors[decoding],
                label=series_label(system, decoding))
    log_if_wide(ax, "x", data["batch"], ratio=1.0)
    log_if_wide(ax, "y", data["rtfx"])
    ax.set_xlabel("max_num_seqs (official: batch size)")
    ax.set_ylabel("RTFx (audio s / wall s)")
    return finish(fig, ax, "RTFx vs max_num_seqs", data.empty, "no configurations with a known max_num_seqs")


def cer_by_decoding(table: pd.DataFrame) -> Figure:
    """Error rate per decoding config, one bar per system (mean over the load settings)."""
    fig, ax = new_figure()
    data = table.dropna(subset=["cer"])
    metric = str(data["metric"].iloc[0]).upper() if "metric" in data and len(data) else "CER"
    pivot = data.pivot_table(index="decoding", columns="system", values="cer", aggfunc="mean", sort=False) * 100
    width = 0.8 / max(1, len(pivot.columns))
    x = np.arange(len(pivot.index))
    for k, system in enumerate(pivot.columns):
        bars = ax.bar(x + k * width, pivot[system].values, width, label=SYSTEM_NAMES.get(system, system))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x + width * (len(pivot.columns) - 1) / 2, pivot.index)
    ax.set_xlabel("decoding")
    ax.set_ylabel(f"{metric} (%)")
    return finish(fig, ax, f"{metric} per decoding config", data.empty, "no scored configurations")


def peak_memory(table: pd.DataFrame) -> Figure:
    """Peak memory per configuration (GPU memory when measured, else process-tree RSS)."""
    fig, ax = new_figure(7.0, max(3.0, 0.35 * len(table) + 1.2))
    column = "peak_gpu_mb" if "peak_gpu_mb" in table and table["peak_gpu_mb"].notna().any() else "peak_rss_mb"
    data = table.dropna(subset=[column])
    labels = [f"{SYSTEM_NAMES.get(r['system'], r['system'])}\n{r['decoding']} {point_label(r)}"
              for _, r in data.iterrows()]
    ax.barh(np.arange(len(data)), data[column].values, color="tab:gray")
    ax.set_yticks(np.arange(len(data)), labels, fontsize=6)
    ax.set_xlabel(f"{column.replace('_mb', '').replace('_', ' ')} (MiB)")
    ax.set_ylabel("configuration")
    ax.set_title("Peak memory")
    if data.empty:
        empty_note(ax, "no memory measurements")
    return fig


def decoding_colors(table: pd.DataFrame) -> dict[str, str]:
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return {d: palette[i % len(palette)] for i, d in enumerate(dict.fromkeys(table.get("decoding", [])))}


def plot_sweep(table: pd.DataFrame) -> dict[str, Figure]:
    """All sweep figures, keyed by file stem."""
    return {"latency_vs_throughput": latency_vs_throughput(table),
            "ttft_vs_throughput": latency_vs_throughput(table, latency="ttft_p50"),
            "rtfx_vs_max_num_seqs": rtfx_vs_max_num_seqs(table),
            "cer_by_decoding": cer_by_decoding(table),
            "peak_memory": peak_memory(table)}


# ----------------------------------------------------------------------------------- single runs
def succeeded(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["error"].isna()] if "error" in rows else rows


def latency_histogram(rows: pd.DataFrame, bins: int = 30) -> Figure:
    """Per-utterance end-to-end latency (and time to first token when recorded)."""
    fig, ax = new_figure()
    rows = succeeded(rows)
    for column, label in (("latency_s", "end to end"), ("ttft_s", "first token")):
        values = rows[column].dropna() if column in rows else pd.Series(dtype=float)
        if len(values):
            ax.hist(values, bins=bins, alpha=0.6, label=f"{label} (p50 {values.median():.2f} s)")
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("utterances")
    ax.set_title("Per-utterance latency")
    if rows.empty:
        empty_note(ax, "no finished utterances")
    else:
        ax.legend(fontsize=8)
    return fig


def errors_per_utterance(rows: pd.DataFrame, top: int = 30) -> Figure:
    """The ``top`` utterances with most errors (S/D/I stacked), labelled with their reference text;
    error-free utterances are left out."""
    rows = succeeded(rows)
    rows = rows[rows["errors"] > 0].sort_values("errors", ascending=False).head(top).iloc[::-1]
    fig, ax = new_figure(8.0, max(3.0, 0.28 * len(rows) + 1.2))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for column, label in (("s", "substitutions"), ("d", "deletions"), ("i", "insertions")):
        values = rows[column].to_numpy(dtype=float)
        ax.barh(y, values, left=left, label=label)
        left += values
    labels = [f"{r.id}  {str(r.reference)[:16]}" for r in rows.itertuples()]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("errors")
    ax.set_ylabel("utterance")
    return finish(fig, ax, f"Errors per utterance (top {len(rows)})", rows.empty, "no errors")


def cer_by_duration(rows: pd.DataFrame, edges=DURATION_EDGES, metric: str = "CER") -> Figure:
    """Corpus error rate (sum errors / sum reference units) per duration bucket."""
    fig, ax = new_figure()
    rows = succeeded(rows)
    buckets = pd.cut(rows["duration"], list(edges), right=False)
    grouped = rows.groupby(buckets, observed=True)[["errors", "n"]].sum()
    counts = rows.groupby(buckets, observed=True).size()
    rate = 100 * grouped["errors"] / grouped["n"].clip(lower=1)
    labels = [f"{b.left:g}-{b.right:g} s" if math.isfinite(b.right) else f">{b.left:g} s" for b in rate.index]
    bars = ax.bar(labels, rate.values, color="tab:orange")
    ax.bar_label(bars, labels=[f"n={c}" for c in counts.values], fontsize=7)
    ax.set_xlabel("duration")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{metric} by duration")
    if rows.empty:
        empty_note(ax, "no finished utterances")
    return fig


def plot_run(run) -> dict[str, Figure]:
    """The single-run figures for an ``eval.records.Run``, keyed by file stem."""
    metric = str(run.summary.get("metric", "cer")).upper()
    return {"latency_histogram": latency_histogram(run.rows),
            "errors_per_utterance": errors_per_utterance(run.rows),
            "cer_by_duration": cer_by_duration(run.rows, metric=metric)}


# ----------------------------------------------------------------------------------- saving
def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def save_figures(figures: dict[str, Figure], out_dir: str | Path, fmt: str = "png") -> list[Path]:
    return [save_figure(fig, Path(out_dir) / f"{name}.{fmt}") for name, fig in figures.items()]
