"""Evaluate tab: run ``eval.run.evaluate`` on a test set into the shared results folder, live progress.

Visitors pick registered sets, or local sets inside the operator's ``--data-dir`` folders only; those load
confined (``eval.datasets.load_test_set(allowed_dirs=...)``): nothing outside them is read, nothing is run.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from eval.datasets import DatasetUnavailable, list_test_sets, load_test_set
from eval.normalize import NormalizerOptions
from eval.records import Summary
from eval.run import default_output_dir, evaluate
from workbench.ui_alignment import utterances_html
from workbench.ui_decoding import (ControlError, decoding_controls, decoding_from_controls,
                                  whole_number)
from workbench.ui_runs import headline, plot_files


def run_folder(results_dir: Path, test_set: str, model: str, decoding, name: str) -> Path:
    """``results_dir/NAME`` (a bare name: never outside ``results_dir``); by default the folder
    ``python -m eval.run`` would pick."""
    name = Path(name.strip()).name if name and name.strip() else ""
    if name in ("", ".", ".."):
        name = default_output_dir(test_set, model, decoding).name
    return results_dir / name


def set_choices() -> list[tuple[str, str]]:
    """(label, name) of the registered test sets for the picker."""
    return [(f"{name} — {description}", name) for name, description in list_test_sets()]


def set_label(data_dirs: tuple[Path, ...]) -> str:
    if not data_dirs:
        return "test set (local sets: the operator starts the app with --data-dir DIR)"
    where = ", ".join(str(d) for d in data_dirs)
    return f"test set (or a local one inside {where}: parquet, folder, manifest, Kaldi dir of audio files)"


def build_evaluate_tab(engine, *, results_dir: Path, data_dirs: tuple[Path, ...] = ()) -> None:
    sets = set_choices()
    with gr.Row():
        test_set = gr.Dropdown(sets, value="demo", allow_custom_value=True, scale=3, elem_id="evaluate-set",
                               label=set_label(data_dirs))
        limit = gr.Number(0, precision=0, label="limit (0 = all)", elem_id="evaluate-limit")  # checked in run
        run_name = gr.Textbox(label="run folder name (empty: as eval.run names it)", scale=2)
    with gr.Row():
        max_in_flight = gr.Slider(1, 512, value=256, step=1, label="requests in flight (vLLM batches them)")
        long_audio = gr.Checkbox(False, label="long audio (split at pauses)")
        t2s = gr.Checkbox(False, label="traditional → simplified before scoring")
        tn = gr.Checkbox(False, label="numbers → Chinese numerals before scoring")
        nfkc = gr.Checkbox(False, label="full-width → half-width before scoring")
    controls = decoding_controls("evaluate")
    button = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button")
    summary = gr.Markdown(elem_id="evaluate-summary")
    folder = gr.Textbox(label="run folder", interactive=False, elem_id="evaluate-folder")
    plots = gr.Gallery(label="plots", columns=3, height="auto", object_fit="contain", elem_id="evaluate-plots")
    utterances = gr.HTML(elem_id="evaluate-utterances")

    def run(name, count, folder_name, in_flight, long_mode, to_simplified, numerals, half_width, *values,
            progress=gr.Progress()):
        name = (name or "").strip()
        if not name:
            raise gr.Error("Pick a test set or type the path of a local one.")
        try:
            decoding = decoding_from_controls(*values)
            most = whole_number(count, "limit", "enter 0 (all) or a positive whole number") or None
        except ControlError as error:  # a warning, not gr.Error: the panels keep the last run
            gr.Warning(str(error))
            return tuple(gr.skip() for _ in range(4))
        out_dir = run_folder(results_dir, name, engine.model_spec, decoding, folder_name or "")
        finished, total = 0, most

        def on_row(row: dict, running: Summary) -> None:
            nonlocal finished
            finished += 1
            rate = f"{running.metric.upper()} {100 * running.error_rate:.2f}%"
            progress((finished, total), desc=f"{name}: {rate}, {running.failed} failed", unit="utterances")

        progress(0, desc=f"loading {name}")
        try:
            # the progress bar's length (a second load hits the cache)
            total = most or load_test_set(name, allowed_dirs=data_dirs).size
            result = evaluate(name, engine=engine, decoding=decoding, output_dir=out_dir, limit=most,
                              normalizer=NormalizerOptions(t2s=to_simplified, tn=numerals, nfkc=half_width),
                              long_audio=bool(long_mode), progress=False, on_row=on_row,
                              max_in_flight=int(in_flight), allowed_dirs=data_dirs)
        except (DatasetUnavailable, FileNotFoundError, ValueError) as error:
            raise gr.Error(str(error)) from None
        except SystemExit as error:  # eval.run refuses to mix a different model/decoding into a folder
            raise gr.Error(str(error.code)) from None
        if not finished:
            gr.Info(f"{out_dir.name} was already complete: showing the stored results")
        return (headline(result), str(result.path), plot_files(result.path, redraw=True),
                utterances_html(result.rows, result.manifest, result.summary.metric))

    button.click(run, [test_set, limit, run_name, max_in_flight, long_audio, t2s, tn, nfkc, *controls.inputs],
                 [summary, folder, plots, utterances], concurrency_limit=1, show_progress_on=[folder])
