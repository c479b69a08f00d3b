"""eval.run end to end: real engine, real `datasets` loading of the bundled set, real run folders."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from eval.datasets import REGISTRY
from eval.records import read_rows
from eval.report import compare_runs, differing_utterances, worst_utterances
from eval import run as eval_run
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
    diff = differing_utterances(demo_run, other)
    assert set(diff["id"]) <= set(demo_run.rows["id"])
    assert len(worst_utterances(demo_run, 3)) == 3


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
