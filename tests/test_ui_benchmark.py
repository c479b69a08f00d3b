"""The Benchmark tab. Its sweep protocol (``SweepRun``: start, a message per pass, stop, the result) on its own,
without a browser; then the page in a real headless Chromium on the shared app and engine (tests/conftest.py): a
2x2 sweep on the bundled set draws its figures and leaves a sweep folder that the Runs tab and eval.report list;
Stop keeps the finished points; engine settings become a command line, never a restart."""

import json
import shutil
import threading
import time

import pandas as pd
import pytest
from playwright.sync_api import expect

from eval import report
from eval.sweep import SweepConfig, run_sweep
from testkit.pages import reveal, select
from workbench.ui_benchmark import DECODING_CHOICES, FIGURES, SweepRun, SweepRunFailed

LIMIT = 3  # clips per pass: enough for 2 in flight, small for CI


class ScriptedSweep:
    """A sweep of ``points`` x ``repeats`` passes that only reports them, as ``run_sweep`` does: ``on_pass`` after
    each, the stop looked at after each pass; ``measured`` counts the passes begun (the page must hold it back)."""

    def __init__(self, points: int, repeats: int, stop: threading.Event, fail_after: int | None = None):
        self.points, self.repeats, self.stop, self.fail_after = points, repeats, stop, fail_after
        self.measured = 0
        self.ended = threading.Event()

    def __call__(self, on_pass) -> int:
        try:
            total = self.points * self.repeats
            for done in range(1, total + 1):
                if done == self.fail_after:
                    raise ValueError("demo: no such test set")
                self.measured += 1
                on_pass(done, total, list(range(done // self.repeats)), f"greedy x{done}")
                if self.stop.is_set():
                    return done // self.repeats
            return self.points
        finally:
            self.ended.set()


def test_sweep_run_hands_over_every_pass_and_holds_the_sweep_until_it_is_shown():
    stop = threading.Event()
    sweep = ScriptedSweep(points=3, repeats=2, stop=stop)
    run = SweepRun(sweep, stop)
    run.start()
    seen = []
    for update in run.passes(repeats=2):
        assert sweep.measured == update.done  # the next pass waits for the page
        seen.append((update.done, update.total, len(update.finished), update.label))
    assert seen == [(done, 6, done // 2, f"greedy x{done}") for done in range(1, 7)]
    assert (run.points, run.kept, run.stopped) == (3, 3, False)


def test_sweep_run_stop_keeps_the_finished_points():
    stop = threading.Event()
    run = SweepRun(ScriptedSweep(points=3, repeats=2, stop=stop), stop)
    run.start()
    for update in run.passes(repeats=2):
        if update.done == 3:
            stop.set()  # Stop clicked while pass 3 is shown: the sweep ends after it, keeping point 1
    assert (run.points, run.kept, run.stopped) == (3, 1, True)


def test_sweep_run_failure_is_one_sentence_and_a_page_that_leaves_stops_the_sweep():
    stop = threading.Event()
    run = SweepRun(ScriptedSweep(points=2, repeats=1, stop=stop, fail_after=2), stop)
    run.start()
    with pytest.raises(SweepRunFailed, match="^demo: no such test set$"):
        for _ in run.passes(repeats=1):
            pass
    assert stop.is_set()

    stop = threading.Event()
    sweep = ScriptedSweep(points=5, repeats=1, stop=stop)
    run = SweepRun(sweep, stop)
    run.start()
    passes = run.passes(repeats=1)
    assert next(passes).done == 1
    passes.close()  # the page went away while pass 1 was shown
    assert sweep.ended.wait(10) and stop.is_set() and sweep.measured == 1


def test_sweep_run_of_a_real_sweep_on_the_engine(engine, tmp_path):
    stop = threading.Event()
    config = SweepConfig(test_set="demo", model=engine.model_spec, limit=2, grid={"decoding": ["greedy"]},
                         concurrency=[1, 2], repeats=1, modes=["online"], output_dir=str(tmp_path / "sweep"))
    run = SweepRun(lambda on_pass: len(run_sweep(config, engine=engine, progress=False, new_engines=False,
                                                 stop=stop, on_pass=on_pass)), stop)
    run.start()
    updates = list(run.passes(config.repeats))
    assert [(u.done, u.total, len(u.finished)) for u in updates] == [(1, 2, 1), (2, 2, 2)]
    assert (run.kept, run.stopped) == (2, False)
    assert len(pd.read_parquet(tmp_path / "sweep" / "sweep.parquet")) == 2


def open_tab(page) -> None:
    reveal(page, page.get_by_role("tab", name="Benchmark"), "#benchmark-run")


def tick(page, group: str, wanted: list[str]) -> None:
    """Leave exactly ``wanted`` ticked in the checkbox group ``group``."""
    for box in page.locator(f"#{group} label").all():
        checkbox = box.locator("input")
        if checkbox.is_checked() != (box.inner_text().strip() in wanted):
            box.click()


def fill_sweep(page, folder: str, decodings: list[str], in_flight: list[str], offline: bool,
               limit: int = LIMIT) -> None:
    page.locator("#benchmark-limit input").fill(str(limit))
    tick(page, "benchmark-decodings", decodings)
    tick(page, "benchmark-in-flight", in_flight)
    if page.locator("#benchmark-offline input").is_checked() != offline:
        page.locator("#benchmark-offline input").click()
    page.locator("#benchmark-name textarea").fill(folder)


def test_two_by_two_sweep_draws_figures_and_is_listed(page, app_results_dir, capsys):
    open_tab(page)
    fill_sweep(page, "bench-2x2", ["greedy", "t0.7"], ["1", "2"], offline=False)
    page.locator("#benchmark-run").click()
    page.locator("#benchmark-status", has_text="finished ·").wait_for()

    folder = app_results_dir / "bench-2x2"
    table = pd.read_parquet(folder / "sweep.parquet")
    assert sorted(zip(table["decoding"], table["concurrency"])) == [("greedy", 1), ("greedy", 2), ("t0.7", 1),
                                                                     ("t0.7", 2)]
    assert (table["passes"] == 2).all() and (table["utterances"] == LIMIT).all() and (table["failed"] == 0).all()
    assert json.loads((folder / "sweep.json").read_text())["config"]["repeats"] == 2
    assert (folder / "report.md").exists() and len(list((folder / "plots").glob("*.png"))) >= len(FIGURES)
    # every figure is drawn on the page, the table lists the four points
    for stem in FIGURES:
        image = page.locator(f"#benchmark-{stem.replace('_', '-')} img")
        image.wait_for()
        assert image.evaluate("img => img.naturalWidth") > 100
    for decoding in ("greedy", "t0.7"):
        assert page.locator("#benchmark-table [role=row]", has_text=decoding).count() == 2
    assert page.locator("#benchmark-folder textarea").input_value() == str(folder)

    # the Runs tab lists and opens the folder, and compares it with another sweep; so does eval.report
    shutil.copytree(folder, app_results_dir / "bench-2x2-copy")
    reveal(page, page.get_by_role("tab", name="Runs"), "#runs-refresh")
    page.locator("#runs-refresh").click()
    select(page, "runs-a", "bench-2x2")
    page.locator("#runs-summary", has_text="4 configurations").wait_for()
    select(page, "runs-b", "bench-2x2-copy")
    page.locator("#runs-compare").click()
    page.locator("#runs-summary", has_text="sweeps bench-2x2 vs bench-2x2-copy").wait_for()
    rows = page.locator("#runs-deltas [role=row]")
    assert rows.filter(has_text="bench-2x2-copy").count() == 4 and rows.filter(has_text="bench-2x2").count() == 8
    assert report.main([str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "bench-2x2" in printed and printed.count("t0.7") >= 2


def test_stop_keeps_finished_points_and_stops_only_its_own_sweep(page, browser, open_app, app_results_dir):
    """Stop ends this page's sweep after the pass in progress, keeping the finished points; another user's
    Stop leaves it running, and stops that user's sweep queued behind it before it starts. Progress is read from
    the sweep folder (written after every point), not from the page, which may render a burst of queued updates
    at once and skip the statuses in between; 15 of 18 points (10 clips each) remain when Stop is clicked, so it
    lands while they do."""
    folder = app_results_dir / "bench-stopped"
    other = open_app(browser)
    try:
        open_tab(other)
        open_tab(page)
        page.bring_to_front()
        fill_sweep(page, "bench-stopped", ["greedy", "t0.7", "beam3"], ["1", "2", "4", "8", "16"], offline=True,
                   limit=10)
        page.locator("#benchmark-run").click()
        page.locator("#benchmark-status", has_text="1 of 18 points done").wait_for()
        other.locator("#benchmark-stop").click()  # a shared stop would end the sweep within point 2
        deadline = time.monotonic() + 300
        while points_done(folder) < 3:
            assert not page.locator("#benchmark-status", has_text="stopped:").count(), \
                "another page's Stop ended this sweep"
            assert time.monotonic() < deadline, "the sweep made no progress to 3 points"
            page.wait_for_timeout(100)
        fill_sweep(other, "bench-queued", ["greedy"], ["1"], offline=False)
        other.locator("#benchmark-run").click()
        other.locator("#benchmark-status", has_text="queued ·").wait_for()  # behind this page's sweep
        other.locator("#benchmark-stop").click()
        page.locator("#benchmark-stop").click()
        page.locator("#benchmark-status", has_text="stopped: the finished points are kept").wait_for()
        other.locator("#benchmark-status", has_text="stopped before it started").wait_for()
    finally:
        other.close()
    finished = pd.read_parquet(folder / "sweep.parquet")
    assert 3 <= len(finished) < 18 and (finished["passes"] == 2).all()
    assert (folder / "report.md").exists()
    assert not (app_results_dir / "bench-queued").exists()  # the queued sweep never ran


def points_done(folder) -> int:
    """Finished points of the sweep in ``folder`` (its table is replaced atomically after every point)."""
    table = folder / "sweep.parquet"
    return len(pd.read_parquet(table)) if table.exists() else 0


def test_engine_settings_become_a_command_and_bad_input_one_sentence(page, app_results_dir):
    open_tab(page)
    assert set(DECODING_CHOICES) >= {"greedy", "official", "beam3", "t0.7-p0.9"}
    reveal(page, page.get_by_text("Engine settings (each value needs a new engine)"),
           "#benchmark-max-num-seqs textarea")
    page.locator("#benchmark-max-num-seqs textarea").fill("8, 32")
    page.locator("#benchmark-name textarea").fill("bench-engines")
    command = page.locator("#benchmark-command")
    for part in ("python -m eval.sweep demo", "--grid max_num_seqs=8,32", "bench-engines"):
        expect(command).to_contain_text(part)  # the command follows every field as it changes
    page.locator("#benchmark-run").click()
    page.locator(".toast-body", has_text="Engine settings need new engines").first.wait_for()
    assert not (app_results_dir / "bench-engines").exists()

    page.locator("#benchmark-max-num-seqs textarea").fill("")
    page.locator("#benchmark-more textarea").fill("beam")
    page.locator("#benchmark-run").click()
    toast = page.locator(".toast-body", has_text="unknown decoding 'beam'").first
    toast.wait_for()
    assert "Traceback" not in toast.inner_text()
