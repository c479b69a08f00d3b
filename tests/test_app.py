"""The Gradio workbench in a real headless Chromium, served in-process on the session's real engine."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from eval.records import load_run
from eval.report import differing_utterances
from eval.run import evaluate
from workbench.options import parse_decoding
from workbench.ui_evaluate import set_choices


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def select(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def upload(page, paths) -> None:
    page.locator("#transcribe-files input[type=file]").set_input_files([str(p) for p in paths])


def transcribe(page, paths) -> None:
    upload(page, paths)
    page.locator("#transcribe-files").get_by_text(paths[-1].stem).first.wait_for()
    page.locator("#transcribe-button").click()


def result_row(page, name: str) -> dict:
    row = page.locator("#transcribe-results [role=row]", has_text=name).first
    row.wait_for()
    header = [words(h) for h in page.locator("#transcribe-results [role=columnheader]").all_inner_texts()]
    return dict(zip(header, (words(c) for c in row.locator("[role=gridcell]").all_inner_texts())))


def test_upload_clip_shows_transcript(page, engine, demo_clips, references, tmp_path):
    expected = words(engine.transcribe(demo_clips[0]).text)  # greedy is deterministic: the page must agree
    assert expected == references[demo_clips[0].stem]  # and the trained model gets it right
    transcribe(page, demo_clips[:1])
    row = result_row(page, demo_clips[0].name)
    page.locator("#transcribe-downloads").get_by_text(".json").first.wait_for()
    page.screenshot(path=tmp_path / "transcribe.png", full_page=True)
    assert row["transcript"] == expected and row["error"] == ""
    assert float(row["duration_s"]) == pytest.approx(sf.info(demo_clips[0]).duration, abs=0.01)
    assert int(row["tokens"]) > 0
    assert expected in words(page.locator("#transcribe-text textarea").input_value())
    assert page.locator("#transcribe-downloads").get_by_text(".csv").count() == 1


def test_bundled_example_transcribes_to_its_sentence(page, demo_clips, references):
    clip = demo_clips[2]
    page.locator("#transcribe-examples").get_by_text(clip.name).first.click()
    page.locator("#transcribe-files").get_by_text(clip.stem).first.wait_for()
    page.locator("#transcribe-button").click()
    assert result_row(page, clip.name)["transcript"] == references[clip.stem]


def test_bad_inputs_show_errors_and_the_next_clip_works(page, engine, app_options, demo_clips, tmp_path):
    too_large = tmp_path / "too_large.wav"
    too_large.write_bytes(np.random.default_rng(0).bytes(int(app_options.max_upload_mb * 1024 * 1024) + 1))
    upload(page, [too_large])
    page.get_by_text("exceed the maximum allowed size").first.wait_for()

    page.reload()
    corrupt, empty, text, too_long = (tmp_path / n for n in ("corrupt.wav", "empty.flac", "notes.txt", "long.wav"))
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    empty.write_bytes(b"")
    text.write_text("not audio at all\n")
    sf.write(too_long, np.zeros(31 * 8000, dtype=np.int16), 8000)
    transcribe(page, [corrupt, empty, text, too_long])
    expected = {corrupt: "cannot decode as audio", empty: "the file is empty", text: "text, not audio",
                too_long: "longer than the model's 30 s limit"}
    for path, message in expected.items():
        assert message in result_row(page, path.name)["error"]
    page.locator(".toast-body", has_text="corrupt.wav: cannot decode as audio").first.wait_for()
    page.screenshot(path=tmp_path / "bad_inputs.png", full_page=True)

    transcribe(page, demo_clips[1:2])
    row = result_row(page, demo_clips[1].name)
    assert row["error"] == "" and row["transcript"] == words(engine.transcribe(demo_clips[1]).text)


def test_evaluate_demo_writes_run_and_shows_cer(page, app_results_dir, tmp_path):
    before = set(app_results_dir.iterdir())
    page.get_by_role("tab", name="Evaluate").click()
    test_set = page.locator("#evaluate-set input")
    test_set.fill(str(tmp_path / "no_such_set"))
    test_set.press("Enter")
    page.locator("#evaluate-button").click()
    page.locator(".toast-body", has_text="unknown test set").first.wait_for()
    assert set(app_results_dir.iterdir()) == before

    select(page, "evaluate-set", dict((name, label) for label, name in set_choices())["demo"])
    page.locator("#evaluate-limit input").fill("3")
    page.locator("#evaluate-button").click()
    page.locator("#evaluate-summary").get_by_text("CER").first.wait_for()
    page.locator("#evaluate-plots img").first.wait_for()
    page.screenshot(path=tmp_path / "evaluate.png", full_page=True)

    run_dir = app_results_dir / "demo__trained__greedy"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["utterances"] + summary["failed"] == 3
    shown = page.locator("#evaluate-summary").inner_text()
    assert f"CER {100 * summary['cer']:.2f} %" in shown
    assert f"N {summary['n']} S {summary['s']} D {summary['d']} I {summary['i']}" in words(shown)
    assert page.locator("#evaluate-folder input, #evaluate-folder textarea").first.input_value() == str(run_dir)
    # every counted edit is highlighted once, in its own colour class
    utterances = page.locator("#evaluate-utterances")
    assert utterances.locator("tbody tr").count() == 3
    for op, key in (("sub", "s"), ("del", "d"), ("ins", "i")):
        assert utterances.locator(f"span.{op}").count() == summary[key]


def test_runs_tab_lists_and_compares_two_runs(page, engine, app_results_dir, tmp_path):
    run_a = evaluate("demo", engine=engine, limit=3, output_dir=app_results_dir / "demo__trained__greedy",
                     progress=False)
    run_b = evaluate("demo", engine=engine, limit=3, decoding=parse_decoding("t0.7"),
                     output_dir=app_results_dir / "demo__trained__t0.7", progress=False)
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    for run in (run_a, run_b):
        table.get_by_role("gridcell", name=run.name, exact=True).wait_for()

    select(page, "runs-a", run_a.name)
    page.locator("#runs-summary").get_by_text(f"CER {100 * run_a.summary['cer']:.2f} %").wait_for()
    assert page.locator("#runs-details tbody tr").count() == len(run_a.rows)

    select(page, "runs-b", run_b.name)
    page.locator("#runs-compare").click()
    diff = differing_utterances(load_run(run_a.path), load_run(run_b.path))
    message = f"{len(diff)} utterances differ" if len(diff) else "agree on every shared utterance"
    page.locator("#runs-details").get_by_text(message).wait_for()
    page.locator("#runs-deltas").get_by_role("gridcell", name="B − A", exact=True).wait_for()
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert page.locator("#runs-details tbody tr").count() == len(diff)


def test_about_tab_shows_model_and_verifier(page, engine):
    from fireredasr_vllm.verify import verify

    page.get_by_role("tab", name="About").click()
    about = page.locator("#about-model")
    about.get_by_text(str(engine.model_dir)).wait_for()
    assert f"Model: {engine.model_spec}" in about.inner_text()

    page.locator("#about-verify").click()
    checks = page.locator("#about-checks")
    checks.get_by_role("gridcell", name="engine", exact=True).wait_for()
    expected = {c.name: c.ok for c in verify(engine.model_dir, engine=False)} | {"engine": True}
    for name, ok in expected.items():
        row = checks.locator("[role=row]", has=page.get_by_role("gridcell", name=name, exact=True))
        assert ("✓" if ok else "✗") in row.inner_text()


def test_runs_tab_opens_a_sweep_with_its_plots(page, engine, app_results_dir):
    from eval.sweep import SweepConfig, run_sweep

    sweep_dir = app_results_dir / "sweep-demo"
    table = run_sweep(SweepConfig(test_set="demo", limit=2, grid={"decoding": ["greedy"]}, modes=["online"],
                                  concurrency=[1, 2], warmup=1, output_dir=str(sweep_dir)),
                      engine=engine, progress=False)
    page.get_by_role("tab", name="Runs").click()
    select(page, "runs-a", sweep_dir.name)
    page.locator("#runs-summary").get_by_text(f"{len(table)} configurations").wait_for()
    page.locator("#runs-plots img").first.wait_for()
    assert page.locator("#runs-plots img").count() == len(list((sweep_dir / "plots").glob("*.png"))) > 0
