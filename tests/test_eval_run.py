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


def test_a_biasing_set_is_scored_for_hotwords(engine, tmp_path):
    """demo-hotword at weight 0 (the baseline, decoded as without a list) is scored against its list: the
    summary holds B-CER, U-CER, recall, precision and F1, each equal to a recount of the rows."""
    run = evaluate("demo-hotword", engine=engine, decoding=dataclasses.replace(parse_decoding("greedy"),
                   hotword_weight=0.0), output_dir=tmp_path / "hw0", limit=6, progress=False)
    s, rows = run.summary, run.rows
    assert rows["b_n"].sum() > 0, "the first six held-out sentences hold listed words"
    assert s.b_cer == pytest.approx(rows["b_errors"].sum() / rows["b_n"].sum())
    assert s.u_cer == pytest.approx(rows["u_errors"].sum() / rows["u_n"].sum())
    assert s.hotword_recall == pytest.approx(rows["hits"].sum() / rows["ref_occurrences"].sum())
    assert (rows["b_n"] + rows["u_n"] == rows["n"]).all() and (rows["b_errors"] + rows["u_errors"] == rows["errors"]).all()
    assert run.manifest["hotwords"] == {"decoding": None, "scoring": "the set's list",
                                        "set_words": 10, "hotword_weight": 0.0}
    on_disk = json.loads((run.path / "summary.json").read_text())
    assert on_disk["b_cer"] == s.b_cer and on_disk["hotword_f1"] == s.hotword_f1
    shown = format_summary(run)
    assert "B-CER %" in shown and "none (baseline)" in shown
    plain = evaluate("demo", engine=engine, output_dir=tmp_path / "plain", limit=1, progress=False)
    assert "B-CER" not in format_summary(plain)  # no list, no biasing figures
    table = compare_runs([run, plain])
    assert table["b_cer"].tolist()[0] == s.b_cer and pd.isna(table["b_cer"].tolist()[1])
    assert table["hotword_weight"].tolist()[0] == 0.0
    assert "b_cer" not in compare_runs([plain])  # runs without lists: the comparison as before
    boosted = evaluate("demo-hotword", engine=engine, limit=1, progress=False, output_dir=tmp_path / "hw8",
                       decoding=dataclasses.replace(parse_decoding("greedy"), hotword_weight=8.0))
    assert boosted.manifest["hotwords"]["decoding"] == "the set's list"
    assert boosted.rows["hypothesis"][0] != rows["hypothesis"][0]  # the set's list reached the engine


def test_hotword_lists_precedence():
    """A --hotwords list decodes every utterance; else an utterance's own list, else the set's; weight 0
    decodes without. Scoring prefers the set's lists, so that runs with different lists compare."""
    from eval.datasets import TestSet, Utterance
    from eval.run import decoding_for, default_output_dir, hotword_sources, scoring_words

    set_list = (("上海", 1.0), ("北京", 1.0))
    data = TestSet("s", "zh", "cer", "s", None, [], hotwords=set_list)
    own, plain = Utterance("a", b"", "去上海", None, ("上海",)), Utterance("b", b"", "去北京", None)
    greedy = parse_decoding("greedy")
    flag = dataclasses.replace(greedy, hotwords=(("广州", 2.0),))
    assert decoding_for(own, data, flag).hotwords == (("广州", 2.0),)
    assert decoding_for(own, data, greedy).hotwords == (("上海", 1.0),)
    assert decoding_for(plain, data, greedy).hotwords == set_list
    assert decoding_for(plain, data, dataclasses.replace(greedy, hotword_weight=0.0)).hotwords == ()
    assert scoring_words(plain, data, flag) == ("上海", "北京") and scoring_words(own, data, flag) == ("上海",)
    bare = TestSet("t", "zh", "cer", "t", None, [])
    assert decoding_for(plain, bare, greedy) == greedy
    assert scoring_words(plain, bare, greedy) is None and scoring_words(plain, bare, flag) == ("广州",)
    assert hotword_sources(data, greedy)["decoding"] == "the set's list"
    assert default_output_dir("demo-hotword", "trained", greedy).name == "demo-hotword__trained__greedy-hw2"
    assert default_output_dir("demo", "trained", greedy).name == "demo__trained__greedy"  # the Evaluate tab's too
    assert hotword_sources(data, flag)["decoding"] == "--hotwords" and hotword_sources(bare, greedy)["scoring"] is None
