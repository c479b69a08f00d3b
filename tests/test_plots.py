"""eval/plots.py on small tables: labelled axes, the data drawn, CJK text rendered, PNGs written."""

import warnings

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from eval import plots
from eval.records import Run, Summary


def sweep_table() -> pd.DataFrame:
    rows = []
    for system, decoding, batch, mode, concurrency in [
            ("vllm", "greedy", 4, "offline", 6), ("vllm", "greedy", 4, "online", 1),
            ("vllm", "greedy", 16, "online", 4),
            ("vllm", "beam3", 4, "online", 1), ("builtin", "greedy", 4, "online", 1),
            ("official", "greedy", 1, "offline", 1), ("official", "greedy", 4, "offline", 4)]:
        rows.append({"system": system, "decoding": decoding, "batch": batch, "mode": mode,
                     "concurrency": concurrency, "metric": "cer", "error_rate": 0.1 * batch / 16,
                     "utts_per_s": 2.0 * concurrency, "rtfx": 5.0 * batch, "latency_p50": 0.5 + 0.1 * concurrency,
                     "latency_p90": 0.7 + 0.1 * concurrency,
                     "ttft_p50": None if system == "official" else 0.1 * concurrency,
                     "peak_rss_mb": 900.0 + batch, "peak_gpu_mb": None})
    return pd.DataFrame(rows)


def run_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"], "duration": [1.0, 1.5, 3.0, 4.0, 12.0],
        "reference": ["今天天气很好", "你好", "明天见", "谢谢", "再见"],
        "hypothesis": ["今天天气", "你好", "", "谢", "x"],
        "n": [10, 10, 4, 6, 5], "s": [1, 0, 0, 1, 2], "d": [0, 0, 4, 1, 0], "i": [0, 3, 0, 0, 0],
        "errors": [1, 3, 4, 2, 2], "latency_s": [0.2, 0.3, 0.5, 0.4, 1.2], "ttft_s": [0.05, 0.06, 0.1, 0.1, 0.2],
        "error": [None, None, None, None, None]})


def plotted_points(ax) -> int:
    return sum(len(line.get_xdata()) for line in ax.lines) + len(ax.patches)


def assert_labelled_with_data(fig):
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert plotted_points(ax) > 0


def test_cjk_font_renders_chinese(tmp_path):
    assert plots.use_cjk_font() in plots.CJK_FONTS  # fonts-noto-cjk is installed here
    fig, ax = plots.new_figure()
    ax.set_title("今天天气很好")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.save_figure(fig, tmp_path / "cjk.png")
    assert not [w for w in caught if "missing from font" in str(w.message)]


def drawn_points(ax) -> list[tuple[float, float]]:
    """The data points (circle and star markers) of every line."""
    return [(x, y) for line in ax.lines if line.get_marker() in (*plots.BATCH_MARKERS, plots.OFFLINE_MARKER)
            for x, y in zip(line.get_xdata(), line.get_ydata())]


def test_sweep_figures_draw_every_configuration(tmp_path):
    table = sweep_table()
    figures = plots.plot_sweep(table)
    for fig in figures.values():
        assert_labelled_with_data(fig)
    curve = figures["latency_vs_throughput"].axes[0]
    assert len(drawn_points(curve)) == len(table)
    assert len(curve.texts) == len(table)  # every point labelled with batch/in-flight
    assert {t.get_text() for t in curve.texts} >= {"b4/all", "b16/c4", "b4/c1", "b1"}
    legend = [t.get_text() for t in curve.get_legend().get_texts()]
    assert legend[-3:] == ["max_num_seqs 4", "max_num_seqs 16", "offline (all at once)"]
    assert len(legend) == table.groupby(["system", "decoding"]).ngroups + 3
    marker = {line.get_label(): line.get_marker() for line in curve.lines}
    assert marker["greedy"] == "o" and "s" in {line.get_marker() for line in curve.lines}  # b16: squares
    # official rows have no TTFT: the TTFT figure leaves them out
    ttft = figures["ttft_vs_throughput"].axes[0]
    assert len(drawn_points(ttft)) == table["ttft_p50"].notna().sum()
    rtfx = figures["rtfx_vs_max_num_seqs"].axes[0]
    official = [line for line in rtfx.lines if "official" in line.get_label()][0]
    assert list(official.get_xdata()) == [1, 4] and list(official.get_ydata()) == [5.0, 20.0]
    in_flight = figures["rtfx_vs_in_flight"].axes[0]
    assert len(drawn_points(in_flight)) == (table["system"] != "official").sum()
    bars = figures["cer_by_decoding"].axes[0].patches
    assert len([b for b in bars if not np.isnan(b.get_height())]) == table.groupby(["system", "decoding"]).ngroups

    paths = plots.save_figures(figures, tmp_path / "plots")
    assert [p.stem for p in paths] == list(figures)
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0


def engine_curve(throughputs: list[float], latencies: list[float]) -> pd.DataFrame:
    """One engine setting at 1, 4, 16, 64 requests in flight, then offline (the last values)."""
    loads = [("online", 1), ("online", 4), ("online", 16), ("online", 64), ("offline", 30)]
    return pd.DataFrame([{"system": "vllm", "decoding": "greedy", "batch": 1, "mode": mode, "concurrency": c,
                          "metric": "cer", "error_rate": 0.05, "utts_per_s": x, "rtfx": 3 * x, "latency_p50": y,
                          "latency_p90": y, "ttft_p50": y / 2}
                         for (mode, c), x, y in zip(loads, throughputs, latencies)])


def test_latency_curve_follows_requests_in_flight_and_joins_offline():
    # a saturated engine: throughput flat and noisy past 4 in flight, offline at the same spot as c64
    table = engine_curve([1.0, 3.9, 3.7, 3.8, 3.8], [0.5, 1.0, 4.0, 16.0, 16.0])
    ax = plots.latency_vs_throughput(table).axes[0]
    online = [line for line in ax.lines if line.get_marker() == "o"][0]
    assert list(online.get_ydata()) == [0.5, 1.0, 4.0, 16.0]  # by requests in flight, not sorted by throughput
    joint = [line for line in ax.lines if line.get_linestyle() == ":" and len(line.get_xdata()) == 2][0]
    assert list(joint.get_ydata()) == [16.0, 16.0]  # the offline point is joined to the last online one
    star = [line for line in ax.lines if line.get_marker() == plots.OFFLINE_MARKER][0]
    assert list(star.get_xdata()) == [3.8]
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert {t.get_text() for t in ax.texts} == {"b1/c1", "b1/c4", "b1/c16", "b1/c64", "b1/all"}
    assert not [(a, b) for k, a in enumerate(boxes) for b in boxes[k + 1:] if a.overlaps(b)]  # b1/c64 vs b1/all


def test_log_axes_have_plain_tick_labels():
    table = engine_curve([0.4, 1.5, 6.0, 20.0, 25.0], [0.3, 0.9, 3.0, 9.0, 12.0])
    fig = plots.latency_vs_throughput(table)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    fig.draw_without_rendering()
    labels = [t.get_text() for axis in (ax.xaxis, ax.yaxis)
              for t in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True) if t.get_text()]
    assert labels and not [label for label in labels if "10^" in label or "times" in label or "×" in label]
    assert {"1", "2", "5"} <= set(labels)


def test_empty_sweep_still_gives_labelled_figures():
    empty = sweep_table().iloc[:0]
    for fig in plots.plot_sweep(empty).values():
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert any("no " in t.get_text() for t in ax.texts)


def test_run_figures(tmp_path):
    rows = run_rows()
    figures = plots.plot_run(Run(path=tmp_path, manifest={}, summary=Summary(metric="cer"), rows=rows))
    for fig in figures.values():
        assert_labelled_with_data(fig)
    by_duration = figures["cer_by_duration"].axes[0]
    heights = [bar.get_height() for bar in by_duration.patches]
    # 0-2 s: (1+3)/(10+10); 2-5 s: (4+2)/(4+6); 10-20 s: 2/5
    assert heights == pytest.approx([20.0, 60.0, 40.0])
    worst = figures["errors_per_utterance"].axes[0]
    labels = [t.get_text() for t in worst.get_yticklabels()]
    assert labels[-1].startswith("c") and "明天见" in labels[-1]  # most errors on top
    histogram = figures["latency_histogram"].axes[0]
    assert sum(p.get_height() for p in histogram.patches) == 2 * len(rows)  # latency + TTFT histograms
    for path in plots.save_figures(figures, tmp_path):
        assert matplotlib.image.imread(path).std() > 0


def test_worst_utterances_leave_out_error_free_ones():
    rows = run_rows()
    rows.loc[rows["id"] == "b", ["i", "errors"]] = 0
    labels = [t.get_text() for t in plots.errors_per_utterance(rows).axes[0].get_yticklabels()]
    assert len(labels) == 4 and not any(label.startswith("b ") for label in labels)
    perfect = rows.assign(s=0, d=0, i=0, errors=0)
    assert any("no errors" in t.get_text() for t in plots.errors_per_utterance(perfect).axes[0].texts)


def test_biasing_tradeoff_draws_b_cer_against_u_cer_across_weights():
    weights = [0, 1, 2, 4]
    table = pd.DataFrame({"test_set": "demo-hotword", "decoding": [f"greedy-hw{w}" for w in weights],
                          "hotword_weight": weights, "b_cer": [0.9, 0.6, 0.4, 0.3], "u_cer": [0.5, 0.5, 0.52, 0.6],
                          "system": "vllm", "mode": "offline", "concurrency": 30, "batch": 30, "metric": "cer",
                          "error_rate": 0.6, "utts_per_s": 1.0, "rtfx": 5.0, "latency_p50": 1.0,
                          "latency_p90": 1.0, "ttft_p50": 0.1, "peak_rss_mb": 900.0, "peak_gpu_mb": None})
    figures = plots.plot_sweep(table)
    ax = figures["biasing_tradeoff"].axes[0]
    assert_labelled_with_data(figures["biasing_tradeoff"])
    (line,) = ax.lines  # one decoding config: its weights joined in order
    assert list(line.get_xdata()) == pytest.approx([50, 50, 52, 60])
    assert list(line.get_ydata()) == pytest.approx([90, 60, 40, 30])
    assert sorted(t.get_text() for t in ax.texts) == ["w=0", "w=1", "w=2", "w=4"]
    assert "biasing_tradeoff" not in plots.plot_sweep(sweep_table())  # no hotword lists, no figure
