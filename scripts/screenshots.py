"""Regenerate the README's workbench screenshots (docs/img/workbench_*.png) on the default model.

    .venv/bin/python scripts/screenshots.py [--model trained] [--output-dir docs/img]

Starts the real engine and the Gradio page in process, drives it in headless Chromium (Debian ``chromium``)
and saves the Transcribe tab (four clips; a long recording in long-audio mode, with its segment table and
subtitle downloads), the Evaluate tab and the Runs tab (compare). Needs ``fonts-noto-cjk`` for the Chinese text.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import soundfile as sf

from eval.bundled import DEMO_DIR, long_recording
from eval.run import evaluate
from fireredasr_engine import Engine, parse_decoding
from fireredasr_engine.cli import add_model_argument
from fireredasr_vllm.cli_args import add_renamed_argument
from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm.audio import SAMPLE_RATE
from workbench.app import AppOptions, build_app, launch

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu"]
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 600_000


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def capture(url: str, runs: tuple[str, str], out: Path, scratch: Path) -> None:
    from playwright.sync_api import sync_playwright  # lazy: a dev extra (and its browser), needed here only

    clips = sorted((DEMO_DIR / "clips").glob("*.flac"))[:4]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.locator("#transcribe-files input[type=file]").set_input_files([str(p) for p in clips])
        page.locator("#transcribe-files").get_by_text(clips[-1].stem).first.wait_for()
        page.locator("#transcribe-button").click()
        page.locator("#transcribe-downloads").get_by_text(".json").first.wait_for()
        page.screenshot(path=out / "workbench_transcribe.png", full_page=True)

        talk = scratch / "meeting.flac"  # over the model's 30 s limit, so long-audio mode splits it
        sf.write(talk, long_recording()[0], SAMPLE_RATE)
        page.locator("#transcribe-files button[aria-label='Clear']").first.click()
        page.locator("#transcribe-long-audio input").check()
        page.locator("#transcribe-files input[type=file]").set_input_files([str(talk)])
        page.locator("#transcribe-files").get_by_text(talk.stem).first.wait_for()
        page.locator("#transcribe-button").click()
        page.locator("#transcribe-downloads a[download='meeting.srt']").wait_for()
        page.screenshot(path=out / "workbench_long_audio.png", full_page=True)

        page.get_by_role("tab", name="Evaluate").click()
        page.locator("#evaluate-button").click()
        page.locator("#evaluate-plots img").first.wait_for()
        page.screenshot(path=out / "workbench_evaluate.png", full_page=True)

        page.locator(".toast-close").evaluate_all("buttons => buttons.forEach(b => b.click())")  # Evaluate's notes
        page.get_by_role("tab", name="Runs").click()
        for elem_id, name in zip(("runs-a", "runs-b"), runs):
            pick(page, elem_id, name)
        page.locator("#runs-compare").click()
        page.locator("#runs-deltas").get_by_role("gridcell", name="B − A", exact=True).wait_for()
        page.screenshot(path=out / "workbench_compare.png", full_page=True)
        browser.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_argument(parser, default=DEFAULT_MODEL)
    add_renamed_argument(parser, "--output-dir", "--out", type=Path, metavar="DIR",
                         default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = parser.parse_args(argv)
    results = Path(tempfile.mkdtemp(prefix="screenshots-"))
    with Engine(args.model) as engine:
        runs = tuple(evaluate("demo", engine=engine, decoding=parse_decoding(label), progress=False,
                              output_dir=results / f"demo__{args.model}__{label}").name
                     for label in ("greedy", "t1.0"))
        options = AppOptions(results_dir=results)
        app = build_app(engine, options)
        _, url, _ = launch(app, options, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            capture(url, runs, args.output_dir, Path(tempfile.mkdtemp(prefix="screenshots-audio-")))
        finally:
            app.close()
    print(f"wrote {', '.join(p.name for p in sorted(args.output_dir.glob('workbench_*.png')))} to {args.output_dir}")


if __name__ == "__main__":
    main()
