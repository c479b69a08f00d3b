"""eval/records/: the results schema (Summary, speed figures, benchmark files) and run folders, including
folders and files written before the schema (``cer`` keys, millisecond latencies)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from eval import report
from eval.records import (Measurement, Summary, is_benchmark, load_benchmark, load_run, percentiles, speed,
                          write_benchmark)
from eval.run import format_summary
from eval.sweep.report import compare_sweeps
from eval.sweep.store import read_sweep_table
from workbench.ui_runs import benchmark_summary, overview, result_folders

REPO = Path(__file__).resolve().parents[1]
OLD_SUMMARY = {  # summary.json as eval.run wrote it before the schema: "cer" held WER on word-scored sets
    "metric": "wer", "cer": 0.25, "n": 8, "s": 1, "d": 1, "i": 0, "ser": 0.5, "utterances": 2, "failed": 0,
    "timed_utterances": 2, "audio_seconds": 6.0, "wall_seconds": 2.0, "rtfx": 3.0, "utts_per_s": 1.0,
    "output_tokens_per_s": 5.0, "latency_p50": 0.5, "latency_p90": 0.9, "latency_p99": 0.99, "ttft_p50": 0.1,
    "ttft_p90": 0.2, "ttft_p99": 0.3}
OLD_ROWS = [
    {"id": "a", "duration": 3.0, "reference": "one two three four", "hypothesis": "one two three for",
     "ref_norm": "one two three four", "hyp_norm": "one two three for", "n": 4, "s": 1, "d": 0, "i": 0,
     "errors": 1, "latency_s": 0.5, "ttft_s": 0.1, "prompt_tokens": 10, "output_tokens": 4,
     "finish_reason": "stop", "error": None},
    {"id": "b", "duration": 3.0, "reference": "five six seven eight", "hypothesis": "five six seven",
     "ref_norm": "five six seven eight", "hyp_norm": "five six seven", "n": 4, "s": 0, "d": 1, "i": 0,
     "errors": 1, "latency_s": 0.9, "ttft_s": 0.2, "prompt_tokens": 10, "output_tokens": 3,
     "finish_reason": "stop", "error": None},
]


def old_run_folder(path: Path) -> Path:
    """A run folder in the layout before the schema: no utterances.parquet, ``cer`` in summary.json."""
    path.mkdir(parents=True)
    (path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in OLD_ROWS), encoding="utf-8")
    (path / "summary.json").write_text(json.dumps(OLD_SUMMARY), encoding="utf-8")
    (path / "manifest.json").write_text(json.dumps({
        "test_set": {"name": "words", "metric": "wer"}, "model": "old-model",
        "decoding": {"label": "greedy"}}), encoding="utf-8")
    return path


def test_old_run_folder_loads_through_the_schema(tmp_path, capsys):
    run = load_run(old_run_folder(tmp_path / "results" / "old"))
    assert isinstance(run.summary, Summary)
    assert (run.summary.metric, run.summary.error_rate, run.summary.latency_p50) == ("wer", 0.25, 0.5)
    assert "error_rate" in run.summary.to_dict() and "cer" not in run.summary.to_dict()
    assert list(run.rows["id"]) == ["a", "b"]  # from rows.jsonl: the old folder has no parquet table
    assert "| WER % |" in format_summary(run) and "| 25.00 |" in format_summary(run)

    table = report.compare_runs([run])
    assert (table.loc[0, "metric"], table.loc[0, "error_rate"]) == ("wer", 0.25) and "cer" not in table
    assert report.main([str(run.path)]) == 0
    assert "worst utterances of old" in capsys.readouterr().out
    shown = overview(tmp_path / "results", result_folders(tmp_path / "results"))
    assert shown.loc[0, "wer %"] == 25.0 and "cer %" not in shown  # the Runs tab names the metric


def test_unfinished_run_has_no_summary(tmp_path):
    path = old_run_folder(tmp_path / "partial")
    (path / "summary.json").unlink()
    run = load_run(path)
    assert run.summary is None and len(run.rows) == 2
    assert report.compare_runs([run]).loc[0, "metric"] == "wer"  # from the manifest; figures empty
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2  # error: ...: not a run folder (...)


def test_speed_figures_are_computed_once():
    figures = speed(audio_seconds=30.0, wall_seconds=10.0, utterances=5, output_tokens=50,
                    latencies=[1.0, 2.0, None, 3.0], ttfts=[])
    assert (figures["rtfx"], figures["utts_per_s"], figures["output_tokens_per_s"]) == (3.0, 0.5, 5.0)
    assert (figures["latency_p50"], figures["ttft_p50"]) == (2.0, None)
    assert speed(audio_seconds=1.0, wall_seconds=0.0, utterances=1, output_tokens=1)["rtfx"] is None
    assert percentiles([], "latency") == {"latency_p50": None, "latency_p90": None, "latency_p99": None}
    summary = Summary.of(None, utterances=5, **figures)
    assert summary.error_rate is None and summary.rtfx == 3.0


def test_old_sweep_folder_reads_cer_as_error_rate(tmp_path):
    old = pd.DataFrame([{"system": "vllm", "engine_config": "default", "decoding": "greedy", "mode": "offline",
                         "concurrency": 4, "metric": "cer", "cer": 0.1, "rtfx": 2.0, "latency_p50": 0.4}])
    old.to_parquet(tmp_path / "sweep.parquet", index=False)
    assert read_sweep_table(tmp_path).loc[0, "error_rate"] == 0.1
    shown = compare_sweeps([tmp_path])
    assert shown.loc[0, "CER %"] == pytest.approx(10.0) and "cer" not in shown


def test_benchmark_files_of_every_bench_script_load(tmp_path):
    """The committed bench/results/*.json were written before the schema; they read through it."""
    gpu = load_benchmark(REPO / "bench" / "results" / "gpu_h200_ours_v2_a.json")
    raw = json.loads((REPO / "bench" / "results" / "gpu_h200_ours_v2_a.json").read_text())
    offline = next(m for m in gpu.measurements if m.mode == "offline")
    assert offline.summary.latency_p50 == pytest.approx(raw["offline"][0]["latency"]["p50_ms"] / 1000)  # seconds
    assert offline.summary.rtfx == raw["offline"][0]["rtfx"] and offline.concurrency == 256
    assert {m.mode for m in gpu.measurements} == {"offline", "online"}

    throughput = load_benchmark(REPO / "bench" / "results" / "model_throughput.json")
    assert {m.system for m in throughput.measurements} >= {"ours", "builtin"}
    trained = load_benchmark(REPO / "bench" / "results" / "trained_cpu_float32.json")
    assert trained.measurements[0].summary.metric == "cer" and trained.measurements[0].summary.error_rate < 0.10
    assert len(trained.details["utterances"]) == 30

    written = write_benchmark(tmp_path / "new.json", {"device": "cpu"}, [
        Measurement("vllm", "online", 2, Summary(metric="wer", error_rate=0.5, latency_p50=0.2), {"same_tokens": True})],
        utterances={"a": {"text": "x"}})
    again = load_benchmark(written)
    assert again.measurements[0].summary == Summary(metric="wer", error_rate=0.5, latency_p50=0.2)
    assert again.measurements[0].extra == {"same_tokens": True} and again.details == {"utterances": {"a": {"text": "x"}}}
    assert list(again.table()["error_rate"]) == [0.5]
    assert report.compare_benchmarks([written]).loc[0, "WER %"] == 50.0


def test_not_a_benchmark_file(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    assert not is_benchmark(other) and not is_benchmark(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="^[^\n]*not a benchmark file[^\n]*$"):
        load_benchmark(other)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a JSON file"):
        load_benchmark(tmp_path / "broken.json")


def test_runs_tab_lists_benchmark_files_beside_runs(tmp_path):
    results = tmp_path / "results"
    run = old_run_folder(results / "old")
    bench = write_benchmark(results / "bench" / "cpu.json", {"device": "cpu"},
                            [Measurement("vllm", "offline", 4, Summary(rtfx=12.5, latency_p50=0.25))])
    (run / "bench.json").write_text((REPO / "bench" / "results" / "model_throughput.json").read_text())
    assert set(result_folders(results)) == {run, bench}  # a run's own bench.json stays with its run
    shown = benchmark_summary(bench)
    assert "benchmark cpu: 1 measurements" in shown and "| 12.50 |" in shown and "| 0.25 |" in shown


def test_reading_results_starts_no_engine():
    """eval.report, the sweep store/report and the schema read results without importing vLLM (notebook 04)."""
    code = ("import sys, eval.report, eval.records, eval.sweep.report, eval.sweep.store; from eval.sweep import "
            "compare_sweeps, list_sweeps; print(sorted({'vllm', 'fireredasr_engine.engine'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
