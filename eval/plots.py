"""Matplotlib figures for sweeps and single runs; shared by the CLIs, the notebooks and the Gradio UI.

Every function takes a DataFrame (a sweep table from eval/sweep/, a benchmark file's ``table()``, or a run's
per-utterance rows from eval/records/) and returns a ``matplotlib.figure.Figure``; nothing is shown or saved
implicitly.

    figures = plot_sweep(read_sweep_table("results/sweep"))
    save_figures(figures, "results/sweep/plots")          # -> [.../latency_vs_throughput.png, ...]
    save_figures(plot_run(load_run("results/demo")), "results/demo/plots")
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib
import matplotlib.ticker
from matplotlib import font_manager
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from eval.records import upgrade_table
from eval.tables import error_label

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei")
SYSTEM_STYLES = {"vllm": "-", "builtin": "--", "official": ":"}
SYSTEM_NAMES = {"vllm": "this project (vLLM)", "builtin": "vLLM built-in FireRedASR2", "official": "official PyTorch"}
DURATION_EDGES = (0, 2, 5, 10, 20, 30, math.inf)
OFFLINE_MARKER = "*"  # offline points (every utterance at once): a star at the end of their engine's line
BATCH_MARKERS = ("o", "s", "^", "D", "v", "P")  # one per engine setting (max_num_seqs) in a figure
HOTWORD_LABEL = re.compile(r"-hw[\d.]+(x\d+)?$")  # the hotword part of a decoding label (greedy-hw2x10)
LABEL_OFFSETS = ((4, 4), (4, -11), (-6, 8), (-6, -14), (8, -3), (-30, 4), (-30, -11), (4, 14), (4, -20))


def use_cjk_font() -> str | None:
    """Put an installed CJK font (Noto Sans CJK from fonts-noto-cjk) first in matplotlib's sans-serif list."""
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
    FigureCanvasAgg(fig)  # a renderer, to measure labels (place_labels)
    return fig, fig.add_subplot()


def log_if_wide(ax, axis: str, values, ratio: float = 20.0) -> None:
    """Log scale when positive ``values`` span more than ``ratio``, ticks at 1-2-5 steps with plain labels
    (``0.2``, ``5``, ``100``; never ``2×10⁰``)."""
    values = pd.Series(values, dtype=float).dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() > ratio:
        getattr(ax, f"set_{axis}scale")("log")
        scale = getattr(ax, f"{axis}axis")
        scale.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        scale.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        scale.set_minor_formatter(matplotlib.ticker.NullFormatter())


def place_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Annotate each (x, y, text) at the first offset where it overlaps no label placed before and no
    plotted point (else at the least crowded offset): no ``b1/c16`` printed over ``b1/all``."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()  # final limits and layout, so that display coordinates hold
    markers = [ax.transData.transform((x, y)) for x, y, _ in points]
    taken = []
    for x, y, text in points:
        best = None
        for dx, dy in LABEL_OFFSETS:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7)
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            clashes = sum(box.overlaps(other) for other in taken) + sum(
                box.contains(mx, my) for mx, my in markers)
            if best is None or clashes < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clashes, label, box)
            else:
                label.remove()
            if clashes == 0:
                break
        taken.append(best[2])


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
    """``b`` = max_num_seqs (official: static batch size), ``c`` = requests in flight, ``all`` = offline."""
    batch = "" if pd.isna(row.get("batch")) else f"b{int(row['batch'])}"
    if row.get("system") == "official":
        return batch
    load = "all" if row["mode"] == "offline" else f"c{int(row['concurrency'])}"
    return f"{batch}/{load}" if batch else load


def batch_markers(data: pd.DataFrame) -> dict:
    """A marker per max_num_seqs value of the vLLM rows (all circles when there is one)."""
    batches = sorted(data.loc[data["system"] != "official", "batch"].dropna().unique()) if "batch" in data else []
    return {b: BATCH_MARKERS[k % len(BATCH_MARKERS)] for k, b in enumerate(batches)}


def legend_extras(ax, data: pd.DataFrame, markers: dict) -> None:
    """The legend's decoding entries, then one entry per max_num_seqs marker and the offline star."""
    if data.empty:
        return
    handles, labels = ax.get_legend_handles_labels()
    if len(markers) > 1:
        handles += [Line2D([], [], linestyle="none", marker=m, color="gray") for m in markers.values()]
        labels += [f"max_num_seqs {int(b)}" for b in markers]
    if (data["mode"] == "offline").any():
        handles.append(Line2D([], [], linestyle=":", marker=OFFLINE_MARKER, markersize=9, color="gray"))
        labels.append("offline (all at once)")
    ax.legend(handles, labels, fontsize=8)


def in_flight_order(group: pd.DataFrame) -> pd.DataFrame:
    """Online points by requests in flight, then the offline point (every request at once)."""
    return group.assign(_offline=group["mode"] == "offline").sort_values(["_offline", "concurrency"])


def engine_series(data: pd.DataFrame):
    """``((system, decoding, batch), points in in-flight order, legend label)`` per line to draw: one line per
    engine setting (``batch`` None where the table has no batch column); the legend names each system and
    decoding config once."""
    keys = [k for k in ("system", "decoding", "batch") if k in data]
    labelled = set()
    for key, group in data.groupby(keys, sort=False, dropna=False):
        system, decoding = key[0], key[1]
        label = series_label(system, decoding) if (system, decoding) not in labelled else None
        labelled.add((system, decoding))
        yield (system, decoding, key[2] if len(key) > 2 else None), in_flight_order(group), label


def latency_vs_throughput(table: pd.DataFrame, latency: str = "latency_p50",
                          throughput: str = "utts_per_s") -> Figure:
    """One colour per decoding config (line style per system); each line joins one engine setting's points
    in order of requests in flight, ending (dotted, star) at its offline point; points labelled
    batch/in-flight. Lower right is better."""
    fig, ax = new_figure()
    data = table.dropna(subset=[latency, throughput])
    colors, markers = decoding_colors(table), batch_markers(data)
    points = []
    for (system, decoding, batch), group, label in engine_series(data):
        style = dict(color=colors[decoding], label=label)
        online = group[~group["_offline"]]
        offline = group[group["_offline"]] if system != "official" else group.iloc[:0]
        if system == "official":
            online = group
        ax.plot(online[throughput], online[latency], SYSTEM_STYLES.get(system, "-"),
                marker=markers.get(batch, "o"), **style)
        if len(offline):
            joined = pd.concat([online.tail(1), offline])
            ax.plot(joined[throughput], joined[latency], ":", color=colors[decoding])
            ax.plot(offline[throughput], offline[latency], OFFLINE_MARKER, markersize=11, color=colors[decoding],
                    label=None if len(online) else label)
        points += [(row[throughput], row[latency], point_label(row)) for _, row in group.iterrows()]
    ax.margins(0.08)  # room for the labels of the outermost points
    log_if_wide(ax, "x", data[throughput])
    log_if_wide(ax, "y", data[latency])
    ax.set_xlabel(throughput.replace("_per_s", "/s").replace("_", " "))
    ax.set_ylabel(f"{latency.replace('_', ' ')} (s)")
    title = "Time to first token vs throughput" if latency.startswith("ttft") else "Latency vs throughput"
    finish(fig, ax, title, data.empty, "no timed configurations")
    legend_extras(ax, data, markers)
    place_labels(ax, points)
    return fig


def rtfx_vs_in_flight(table: pd.DataFrame) -> Figure:
    """RTFx per number of requests in flight (online clients; offline: the whole test set at once, a star),
    one line per decoding config and engine setting."""
    fig, ax = new_figure()
    data = table[table["system"] != "official"].dropna(subset=["rtfx", "concurrency"]) if len(table) else table
    colors, markers = decoding_colors(table), batch_markers(data)
    for (system, decoding, batch), group, label in engine_series(data):
        online, offline = group[~group["_offline"]], group[group["_offline"]]
        ax.plot(online["concurrency"], online["rtfx"], SYSTEM_STYLES.get(system, "-"),
                marker=markers.get(batch, "o"), color=colors[decoding], label=label)
        ax.plot(offline["concurrency"], offline["rtfx"], OFFLINE_MARKER, markersize=11, color=colors[decoding],
                label=None if len(online) else label)
    log_if_wide(ax, "x", data["concurrency"] if len(data) else [], ratio=4.0)
    log_if_wide(ax, "y", data["rtfx"] if len(data) else [])
    ax.set_xlabel("requests in flight (star: offline, every utterance at once)")
    ax.set_ylabel("RTFx (audio s / wall s)")
    finish(fig, ax, "RTFx vs requests in flight", data.empty, "no timed configurations")
    legend_extras(ax, data, markers)
    return fig


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
    data = upgrade_table(table).dropna(subset=["error_rate"])
    metric = error_label(data).removesuffix(" %")
    pivot = data.pivot_table(index="decoding", columns="system", values="error_rate", aggfunc="mean",
                             sort=False) * 100
    width = 0.8 / max(1, len(pivot.columns))
    x = np.arange(len(pivot.index))
    for k, system in enumerate(pivot.columns):
        bars = ax.bar(x + k * width, pivot[system].values, width, label=SYSTEM_NAMES.get(system, system))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x + width * (len(pivot.columns) - 1) / 2, pivot.index)
    ax.set_xlabel("decoding")
    ax.set_ylabel(f"{metric} (%)")
    return finish(fig, ax, f"{metric} per decoding config", data.empty, "no scored configurations")


def biasing_tradeoff(table: pd.DataFrame) -> Figure:
    """B-CER against U-CER (eval/biasing.py), one line per test set and decoding config through its hotword
    weights (points labelled ``w=W``): biasing should move left-down on B-CER without moving right on U-CER.
    Takes a sweep table or ``eval.report.compare_runs``' table."""
    fig, ax = new_figure()
    columns = {"b_cer", "u_cer", "hotword_weight"}
    data = table.dropna(subset=sorted(columns)) if columns <= set(table.columns) else table.iloc[:0]
    points = []
    if len(data):
        data = data.assign(_base=data["decoding"].astype(str).str.replace(HOTWORD_LABEL, "", regex=True),
                           _set=data["test_set"] if "test_set" in data else "")
        for (test_set, base), group in data.groupby(["_set", "_base"], sort=False):
            group = group.sort_values("hotword_weight")
            x, y = 100 * group["u_cer"].astype(float), 100 * group["b_cer"].astype(float)
            ax.plot(x, y, "-o", label=f"{test_set} {base}".strip())
            points += [(xi, yi, f"w={w:g}") for xi, yi, w in zip(x, y, group["hotword_weight"])]
    ax.margins(0.1)
    ax.set_xlabel("U-CER (%): errors outside listed words")
    ax.set_ylabel("B-CER (%): errors on listed words")
    finish(fig, ax, "Hotwords: B-CER vs U-CER across weights", data.empty,
           "no configurations with hotword lists and weights")
    if points:
        place_labels(ax, points)
    return fig


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
    """All sweep figures, keyed by file stem (configurations where every request failed are left out)."""
    if "utterances" in table:
        table = table[table["utterances"] > 0]
    return {"latency_vs_throughput": latency_vs_throughput(table),
            "latency_p90_vs_throughput": latency_vs_throughput(table, latency="latency_p90"),
            "ttft_vs_throughput": latency_vs_throughput(table, latency="ttft_p50"),
            "rtfx_vs_in_flight": rtfx_vs_in_flight(table),
            "rtfx_vs_max_num_seqs": rtfx_vs_max_num_seqs(table),
            "cer_by_decoding": cer_by_decoding(table),
            "peak_memory": peak_memory(table),
            **({"biasing_tradeoff": biasing_tradeoff(table)} if "b_cer" in table and table["b_cer"].notna().any()
               else {})}


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
    metric = run.metric.upper()
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
