"""eval.run end to end: real engine, real `datasets` loading of the bundled set, real run folders."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from eval import run as eval_run
from eval.datasets import REGISTRY
from eval.records import Run, read_rows
from eval.report import compare_runs, differing_utterances, worst_utterances
from eval.run import evaluate, format_summary, main
from fireredasr_engine.options import parse_decoding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo_run(engine, tmp_path_factory):
    return evaluate("demo", engine=engine, output_dir=tmp_path_factory.mktemp("runs") / "greedy",
                    limit=8, progress=False)


def test_run_folder_has_rows_summary_manifest(demo_run):
    files = {p.name for p in demo_run.path.iterdir()}
    assert {"rows.jsonl", "utterances.parquet", "utterances.csv", "summary.json", "manifest.json"} <= files
    assert len(demo_run.rows) == 8 and demo_run.rows["id"].is_unique
    s = demo_run.summary
    assert s.utterances == 8 and s.n == demo_run.rows["n"].sum() > 0
    assert s.metric == "cer" and s.error_rate == pytest.approx((s.s + s.d + s.i) / s.n)
    assert s.error_rate < 0.10, "the default (trained) model transcribes the bundled clips"
    assert s.rtfx > 0 and s.latency_p50 <= s.latency_p99
    on_disk = json.loads((demo_run.path / "summary.json").read_text())
    assert on_disk["error_rate"] == s.error_rate and "cer" not in on_disk  # the schema's keys
    manifest = demo_run.manifest
    assert manifest["test_set"]["name"] == "demo" and manifest["model_sha256"]
    assert manifest["decoding"]["label"] == "greedy" and manifest["versions"]
    csv = pd.read_csv(demo_run.path / "utterances.csv")
    assert list(csv["id"]) == list(demo_run.rows["id"])


def test_summary_shows_published_numbers_of_registered_sets(demo_run):
    assert "published" not in format_summary(demo_run)  # nothing published for the bundled clips
    test_set = {**demo_run.manifest["test_set"], "published": [list(e) for e in REGISTRY["aishell"].published]}
    shown = format_summary(dataclasses.replace(demo_run, manifest={**demo_run.manifest, "test_set": test_set}))
    assert "published CER: FireRedASR-LLM-L 0.76 %, FireRedASR-AED-L 0.55 %" in shown


def test_rows_match_engine_output(engine, demo_run, demo_clips):
    row = demo_run.rows.set_index("id").loc[demo_clips[0].stem]
    assert row["hypothesis"] == engine.transcribe(demo_clips[0]).text


def test_report_compares_two_runs(engine, demo_run, tmp_path):
    other = evaluate("demo", engine=engine, output_dir=tmp_path / "rp", limit=8, progress=False,
                     decoding=parse_decoding("greedy-rp3"))
    table = compare_runs([demo_run, other])
    assert list(table["decoding"]) == ["greedy", "greedy-rp3"]
    assert list(table["error_rate"]) == [demo_run.summary.error_rate, other.summary.error_rate]
    both = demo_run.rows.merge(other.rows, on="id", suffixes=("_a", "_b"))
    changed = set(both.loc[both["hyp_norm_a"] != both["hyp_norm_b"], "id"])  # counted here, independently
    assert set(differing_utterances(demo_run, other)["id"]) == changed


def made_up_run(name: str, hypotheses: list[str], errors: list[int], n: list[int], failed: int | None = None) -> Run:
    """A run folder's rows as made up here: utterance ``u{k}`` with the given hypothesis and counts."""
    rows = pd.DataFrame({"id": [f"u{k}" for k in range(len(errors))], "reference": "ref", "ref_norm": "ref",
                         "hypothesis": hypotheses, "hyp_norm": hypotheses, "errors": errors, "n": n,
                         "error": [None if k != failed else "too short" for k in range(len(errors))]})
    return Run(path=Path(name), manifest={}, summary=None, rows=rows)


def test_differing_utterances_are_the_changed_ones_best_change_first():
    a = made_up_run("a", ["x", "y", "z", "w"], errors=[2, 0, 1, 4], n=[5] * 4)
    b = made_up_run("b", ["x", "y2", "z2", "w2"], errors=[2, 3, 0, 1], n=[5] * 4)
    diff = differing_utterances(a, b)
    assert list(diff["id"]) == ["u3", "u2", "u1"]  # u0 is the same text in both
    assert list(diff["delta_errors"]) == [-3, -1, 3] and list(diff["hypothesis_b"]) == ["w2", "z2", "y2"]


def test_worst_utterances_have_the_most_errors_ties_by_rate_failed_left_out():
    run = made_up_run("r", ["h"] * 6, errors=[1, 5, 0, 5, 3, 9], n=[10, 10, 10, 5, 10, 10], failed=5)
    worst = worst_utterances(run, 3)
    assert list(worst["id"]) == ["u3", "u1", "u4"]  # 5 errors at rate 1.0, 5 at 0.5, then 3; u5 failed
    assert list(worst["rate"]) == [1.0, 0.5, 0.3]


def test_resume_after_kill_loses_and_duplicates_nothing(tiny_engine, tmp_path):
    # the random tiny model decodes to the length limit, one utterance at a time: slow enough to be killed mid-run
    out = tmp_path / "killed"
    env = dict(os.environ, VLLM_LOGGING_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "eval.run", "demo", "--model", "tiny", "--limit", "30",
                             "--max-num-seqs", "1", "--output-dir", str(out), "--quiet", "--no-plots"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(read_rows(out / "rows.jsonl")) < 3 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its engine processes, as a crash would
    proc.wait()
    before = read_rows(out / "rows.jsonl")
    assert 0 < len(before) < 30, "the run must be killed after some rows and before the last"
    run = evaluate("demo", engine=tiny_engine, output_dir=out, limit=30, progress=False)
    assert len(run.rows) == 30 and run.rows["id"].is_unique
    after = {row["id"]: row for row in read_rows(out / "rows.jsonl")}
    assert all(after[row["id"]] == row for row in before)  # finished rows kept as they were
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(line)["id"] for line in lines}) == 30


def test_bad_dataset_path_is_a_clear_error(capsys, tmp_path):
    assert main([str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_bug_is_one_line_unless_verbose(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("split")  # a bug in loading, not the user's mistake

    monkeypatch.setattr(eval_run, "load_test_set", broken)
    monkeypatch.setattr("fireredasr_engine.cli.show_engine_log", lambda verbose: None)  # keep later engines quiet
    assert main(["demo", "--quiet"]) == 1
    assert capsys.readouterr().err == ("error: KeyError: 'split'\n"
                                       "(an unexpected failure: rerun with --verbose for the traceback)\n")
    with pytest.raises(KeyError):
        main(["demo", "--quiet", "--verbose"])


def test_unreachable_hub_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["aishell", "--quiet", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "aishell" in err.lower() and "local" in err.lower() and "Traceback" not in err
