"""eval/sweep/: runners, run_sweep, store and report on real sweeps with the shared (trained) engine and the
bundled clips (configuration and plan: test_sweep_config.py)."""

import dataclasses
import importlib.util
import json
import threading
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import psutil
import pytest

from eval import plots, sweep
from eval import report as eval_report
from eval.sweep import report as sweep_report
from eval.sweep import run as sweep_run
from eval.sweep import runners, store
from eval.errors import UserError
from eval.metrics import score_corpus
from fireredasr_engine.options import EngineOptions

REPO = Path(__file__).resolve().parents[1]


def test_poisson_arrivals():
    times = sweep.arrival_times(4000, request_rate=5.0, seed=0)
    assert times[0] == 0 and np.all(np.diff(times) >= 0)
    assert np.mean(np.diff(times)) == pytest.approx(1 / 5.0, rel=0.1)
    assert not sweep.arrival_times(3, None, 0).any()


def test_repeated_passes_combine_into_medians_and_their_spread():
    passes = [{"error_rate": 0.1, "wall_seconds": w, "rtfx": r, "latency_p50": None}
              for w, r in ((2.0, 15.0), (4.0, 7.5), (3.0, 10.0))]
    row = sweep.combine_passes(passes)
    assert (row["error_rate"], row["wall_seconds"], row["rtfx"], row["latency_p50"]) == (0.1, 3.0, 10.0, None)
    assert row["passes"] == 3 and row["pass_wall_seconds"] == [2.0, 4.0, 3.0]
    assert row["spread"] == pytest.approx((4.0 - 2.0) / 3.0)


def assert_figure(fig):
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert sum(len(line.get_xdata()) for line in ax.lines) + len(ax.patches) > 0


def test_sweep_on_the_shared_engine(engine, tmp_path, monkeypatch):
    """2 decodings x (offline + 2 in flight), 2 timed passes each, after a full-batch warm-up, in a seeded
    random order; interrupted after two configurations, then resumed."""

    def no_new_engine(*args, **kwargs):
        raise AssertionError("the sweep built an engine although the shared one matches")

    monkeypatch.setattr(runners, "start_engine", no_new_engine)
    config = sweep.SweepConfig(test_set="demo", model=engine.model_spec, limit=6,
                               grid={"decoding": ["greedy", "t0.7"]},
                               concurrency=[1, 4], output_dir=str(tmp_path))
    assert engine.options == EngineOptions() and (config.warmup, config.repeats, config.order_seed) == (1, 2, 0)

    warm_ups, transcribe_many, online_load = [], engine.transcribe_many, runners.online_load

    def record_offline_warm_up(samples, decoding, ids=None, **kwargs):
        if ids and ids[0].startswith("warmup-"):
            warm_ups.append(("offline", decoding.label, len(samples)))
        return transcribe_many(samples, decoding, ids=ids, **kwargs)

    def record_online_warm_up(engine, clips, decoding, concurrency, *args):
        if clips[0][0].startswith("warmup-"):
            warm_ups.append(("online", decoding.label, concurrency))
        return online_load(engine, clips, decoding, concurrency, *args)

    monkeypatch.setattr(engine, "transcribe_many", record_offline_warm_up)
    monkeypatch.setattr(runners, "online_load", record_online_warm_up)
    summarize, calls = sweep_run.summarize, []

    def interrupt_fifth_pass(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return summarize(*args, **kwargs)

    monkeypatch.setattr(sweep_run, "summarize", interrupt_fifth_pass)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(config, engine=engine, progress=False)
    assert len(pd.read_parquet(tmp_path / "sweep.parquet")) == 2  # finished configurations kept
    assert (tmp_path / "report.md").exists()
    first_order = json.loads((tmp_path / "sweep.json").read_text())["order"]
    with pytest.raises(UserError, match="--resume"):
        sweep.run_sweep(config, engine=engine, progress=False)
    monkeypatch.setattr(sweep_run, "summarize", summarize)
    table = sweep.run_sweep(config, engine=engine, resume=True, progress=False)

    # warm-up: one full batch (vLLM's max_num_seqs >= 6: the whole test set at once) per decoding and load mode
    assert sorted(set(warm_ups)) == [(mode, decoding, 6) for mode in ("offline", "online")
                                     for decoding in ("greedy", "t0.7")]
    assert len(table) == 6 and not table.duplicated(sweep.KEY).any()
    assert sorted(table["mode"] + table["concurrency"].astype(str)) == sorted(
        ["offline6", "online1", "online4"] * 2)
    assert (table["utterances"] == 6).all() and (table["failed"] == 0).all()
    assert (table["passes"] == 2).all()
    for _, row in table.iterrows():  # speed figures are the median of the two passes
        walls = list(row["pass_wall_seconds"])
        assert len(walls) == 2 and row["wall_seconds"] == pytest.approx(np.median(walls))
        assert row["spread"] == pytest.approx((max(walls) - min(walls)) / np.median(walls))
    assert (table["rtfx"] > 0).all() and (table["output_tokens_per_s"] > 0).all()
    assert (table["ttft_p50"] <= table["latency_p50"]).all() and (table["latency_p50"] <= table["latency_p99"]).all()
    assert (table["batch"] == table["batch"].iloc[0]).all() and table["batch"].iloc[0] >= 6  # vLLM's default
    # peak RSS covers the engine core process, not just this one
    assert (table["peak_rss_mb"] > psutil.Process().memory_info().rss / 2**20).all()

    # the configurations ran in the recorded, shuffled order (the resumed run records the rest)
    planned = [sweep.job_label(job, []) for job in sweep.plan(config, 6)]
    order = json.loads((tmp_path / "sweep.json").read_text())["order"]
    executed = [f"vllm default {r.decoding} {r.mode} c={r.concurrency}" for r in table.itertuples()]
    assert executed[:2] == first_order[:2] and executed[2:] == order
    assert first_order == [sweep.job_label(job, []) for job in sweep.shuffled(sweep.plan(config, 6), 0)]
    assert sorted(first_order) == sorted(planned) and first_order != planned

    on_disk = pd.read_parquet(tmp_path / "sweep.parquet")
    assert len(on_disk) == len(pd.read_csv(tmp_path / "sweep.csv")) == 6
    utterances = pd.read_parquet(tmp_path / "sweep_utterances.parquet")
    assert len(utterances) == 6 * 6 * 2 and sorted(utterances["pass"].unique()) == [1, 2]
    assert (table["metric"] == "cer").all()
    for _, row in table.iterrows():  # CER in the table = CER of the first pass's hypotheses behind it
        mine = utterances[(utterances[sweep.KEY[2:7]] == row[sweep.KEY[2:7]]).all(axis=1) & (utterances["pass"] == 1)]
        assert len(mine) == 6
        assert row["error_rate"] == pytest.approx(
            score_corpus(list(mine["reference"]), list(mine["hypothesis"])).error_rate)

    assert store.list_sweeps(tmp_path) == [tmp_path]
    both = sweep_report.compare_sweeps([tmp_path, tmp_path])
    assert len(both) == 12 and list(both.columns[:3]) == ["sweep", "system", "engine_config"]
    assert eval_report.main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "2 timed pass(es) per configuration" in report and "order seed 0" in report
    images = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert len(images) == len(plots.plot_sweep(table))
    for image in images:
        pixels = matplotlib.image.imread(tmp_path / image)
        assert pixels.shape[0] > 100 and pixels.std() > 0
    figures = plots.plot_sweep(table)
    for fig in figures.values():
        assert_figure(fig)
    curves = figures["latency_vs_throughput"].axes[0]
    assert sorted(line.get_label() for line in curves.lines if not line.get_label().startswith("_")) == [
        "greedy", "t0.7"]  # one labelled line per decoding; further lines per engine setting are unlabelled
    online = [line for line in curves.lines if line.get_marker() == "o"]
    assert sum(len(line.get_xdata()) for line in online) == 4


def test_stop_keeps_finished_points_and_refuses_new_engines(engine, tmp_path, monkeypatch):
    """A set stop event ends the sweep after the pass in progress; on_pass reports every pass; a plan
    that needs another engine is refused when new engines are not allowed (the Benchmark tab)."""
    stop, seen = threading.Event(), []

    def on_pass(done, total, table, label):
        seen.append((done, total, len(table)))
        if done == 3:
            stop.set()

    config = sweep.SweepConfig(test_set="demo", model=engine.model_spec, limit=3, grid={"decoding": ["greedy"]},
                               modes=["online"], concurrency=[1, 2, 3], output_dir=str(tmp_path / "stopped"))
    table = sweep.run_sweep(config, engine=engine, progress=False, new_engines=False, stop=stop, on_pass=on_pass)
    assert seen == [(1, 6, 0), (2, 6, 1), (3, 6, 1)] and len(table) == 1
    assert len(pd.read_parquet(tmp_path / "stopped" / "sweep.parquet")) == 1
    assert (tmp_path / "stopped" / "report.md").exists()

    # an engine that dies mid-sweep: the pass where every request failed ends the sweep, finished points kept
    transcribe_many = engine.transcribe_many

    def dead_engine(samples, decoding, ids=None, **kwargs):
        results = transcribe_many(samples, decoding, ids=ids, **kwargs)
        if decoding.label == "t0.7":
            return [dataclasses.replace(t, text="", error="EngineDeadError: EngineCore encountered an issue")
                    for t in results]
        return results

    monkeypatch.setattr(engine, "transcribe_many", dead_engine)
    dying = sweep.SweepConfig(test_set="demo", model=engine.model_spec, limit=3, grid={"decoding": ["greedy", "t0.7"]},
                              modes=["offline"], repeats=1, warmup=0, order_seed=None,
                              output_dir=str(tmp_path / "dying"))
    with pytest.raises(sweep.SweepFailed, match="t0.7 offline c=3: every request failed .EngineDeadError"):
        sweep.run_sweep(dying, engine=engine, progress=False)
    assert list(pd.read_parquet(tmp_path / "dying" / "sweep.parquet")["decoding"]) == ["greedy"]

    other = sweep.SweepConfig(test_set="demo", model=engine.model_spec, limit=3, grid={"max_num_seqs": [2]},
                              output_dir=str(tmp_path / "refused"))
    with pytest.raises(ValueError, match="would start new engines .*max_num_seqs=2.*python -m eval.sweep"):
        sweep.run_sweep(other, engine=engine, progress=False, new_engines=False)
    assert sweep.engine_grid(EngineOptions(max_num_seqs=8, kv_cache_gb=2)) == {"max_num_seqs": [8], "kv_cache_gb": [2]}
    assert sweep.SweepConfig(grid=sweep.engine_grid(engine.options)).engine_options() == [engine.options]


def test_baselines_in_the_same_sweep(engine, tmp_path):
    """Ours on the shared engine, vLLM's built-in FireRedASR2 (one engine start), the official code
    (batch 1 only: its padded batches are slow on CPU; test_plan covers the batch sizes)."""
    config = sweep.SweepConfig(test_set="demo", model=engine.model_spec, limit=2, grid={"decoding": ["greedy"]},
                               modes=["online"], concurrency=[2], baselines=["builtin", "official"],
                               official_batch_sizes=[1], repeats=1, output_dir=str(tmp_path))
    table = sweep.run_sweep(config, engine=engine, progress=False)
    assert sorted(table["system"]) == ["builtin", "official", "vllm"]
    assert (table["utterances"] == 2).all() and (table["rtfx"] > 0).all()
    built = table.set_index("system")["build_seconds"]
    assert pd.isna(built["vllm"]) and built["builtin"] > 0  # the shared engine was reused
    official = table[table["system"] == "official"]
    assert list(official["batch"]) == [1] and official["ttft_p50"].isna().all()

    ratios = sweep_report.speedups(table).set_index("decoding")
    assert ratios.loc["greedy", "vllm / official"] == pytest.approx(
        table[table.system == "vllm"]["rtfx"].max() / official["rtfx"].max())
    report = (tmp_path / "report.md").read_text()
    assert "speed-up over the official implementation" in report and "builtin / official" in report
    rtfx = plots.rtfx_vs_max_num_seqs(table).axes[0]
    assert len(rtfx.lines) == 3 and all(len(line.get_xdata()) for line in rtfx.lines)


def test_readme_figures_come_from_the_figures_script(tmp_path):
    """scripts/figures.py: the trained model, real engine settings and loads, 2 passes; the README shows
    exactly the figures it writes, and they are committed."""
    spec = importlib.util.spec_from_file_location("figures", REPO / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    config = figures.readme_sweep("trained", tmp_path)
    assert config.model == "trained" and config.repeats == 2 and config.warmup == 1
    assert [o.max_num_seqs for o in config.engine_options()] == [4, 32]
    assert len(sweep.plan(config, 30)) == 2 * 3 * (1 + 6)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = {line.split("(")[1].rstrip(")") for line in readme.splitlines()
             if line.startswith("![") and "sweep_" in line}
    assert shown == {f"docs/img/{name}" for name in figures.FIGURES.values()}
    for path in shown:
        assert matplotlib.image.imread(REPO / path).std() > 0
    assert "scripts/figures.py" in readme
