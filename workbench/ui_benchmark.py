"""Benchmark tab: a latency/throughput sweep (``eval.sweep.run_sweep``) on the page's shared engine.

Decoding configs x requests in flight (and offline: every utterance at once), each timed ``repeats``
times after a full-batch warm-up; the figures (``eval.plots``) redraw as configurations finish, Stop
keeps the finished ones, and the result is a sweep folder under the results directory, which the Runs
tab, ``python -m eval.report`` and notebook 04 list and compare. Engine settings (max_num_seqs,
max_num_batched_tokens) need a new engine per value: restarting the shared engine would cut off every
other user of the page, so the tab only writes the ``python -m eval.sweep`` command for them.
"""

from __future__ import annotations

import datetime as dt
import queue
import shlex
import threading
from pathlib import Path

import gradio as gr

from eval import plots
from eval.datasets import DatasetUnavailable
from eval.sweep import SweepConfig, SweepFailed, engine_grid, results_table, run_sweep
from workbench.ui_evaluate import set_choices
from fireredasr_engine.options import parse_decoding

DECODING_CHOICES = ["greedy", "official", "beam3", "beam5", "t0.7", "t0.7-p0.9", "t1.0-p0.95"]
IN_FLIGHT_CHOICES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
ENGINE_NOTE = ("Each value needs its own engine, started fresh (about a minute on CPU, its own memory). "
               "This page shares one engine with everyone using it, so it does not restart it: run the "
               "command below in a terminal (`--resume` continues an interrupted sweep). Its folder then "
               "appears in the Runs tab like the ones measured here.")
QUEUED = "**queued** · starts once the sweep running now (anyone's) has ended; Stop takes it off"
FIGURES = {"latency_vs_throughput": lambda t: plots.latency_vs_throughput(t),
           "latency_p90_vs_throughput": lambda t: plots.latency_vs_throughput(t, latency="latency_p90"),
           "rtfx_vs_in_flight": plots.rtfx_vs_in_flight,
           "ttft_vs_throughput": lambda t: plots.latency_vs_throughput(t, latency="ttft_p50"),
           "cer_by_decoding": plots.cer_by_decoding}


def decoding_labels(picked: list[str], more: str) -> list[str]:
    """The ticked presets and the typed labels (``beam4, t0.9-p0.8``), each checked, duplicates dropped."""
    labels = list(dict.fromkeys([*picked, *(t.strip() for t in (more or "").split(",") if t.strip())]))
    if not labels:
        raise ValueError("Tick at least one decoding config (or type one, e.g. beam4 or t0.9-p0.8).")
    for label in labels:
        parse_decoding(label)  # ValueError names the label and the accepted forms
    return labels


def number_list(text: str, field: str) -> list[int]:
    """``"8, 32"`` -> [8, 32]; one sentence naming the field otherwise."""
    values = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not all(v.isdigit() and int(v) > 0 for v in values):
        raise ValueError(f"{field}: type positive whole numbers separated by commas, e.g. 8, 32, 128.")
    return [int(v) for v in values]


def sweep_command(test_set: str, model: str, limit: int | None, decodings: list[str], in_flight: list[int],
                  offline: bool, repeats: int, max_num_seqs: list[int], max_batched: list[int],
                  output_dir: Path) -> str:
    """The ``python -m eval.sweep`` line for this sweep, with the engine settings the page does not run."""
    args = ["python", "-m", "eval.sweep", test_set or "demo", "--model", model]
    if limit:
        args += ["--limit", str(limit)]
    args += ["--grid", "decoding=" + ",".join(decodings)]
    if max_num_seqs:
        args += ["--grid", "max_num_seqs=" + ",".join(map(str, max_num_seqs))]
    if max_batched:
        args += ["--grid", "max_num_batched_tokens=" + ",".join(map(str, max_batched))]
    modes = (["offline"] if offline else []) + (["online"] if in_flight else [])
    if in_flight:
        args += ["--concurrency", ",".join(map(str, in_flight))]
    args += ["--mode", ",".join(modes or ["offline"]), "--repeats", str(repeats), "--output-dir", str(output_dir)]
    return shlex.join(args)


def folder_name(test_set: str, model: str, typed: str) -> str:
    """The typed name (its last path part), else ``sweep__SET__MODEL__TIME``."""
    if typed and typed.strip():
        return Path(typed.strip()).name
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"sweep__{Path(test_set).name}__{Path(model).name}__{stamp}"


def build_benchmark_tab(engine, *, results_dir: Path, data_dirs: tuple[Path, ...] = ()) -> None:
    """Render inside the current tab; sweeps run one at a time on ``engine``."""
    runs: dict[str, threading.Event] = {}  # browser session -> the stop of its running sweep
    gr.Markdown("Latency and throughput of decoding configs × requests in flight on this page's engine "
                "(`eval.sweep`). Each point is timed on the whole selection after a full-batch warm-up, "
                "repeated (the median is shown; a spread above 20 % is flagged). Other people using the page "
                "at the same time slow the measurement down.")
    with gr.Row():
        test_set = gr.Dropdown(set_choices(), value="demo", allow_custom_value=True, scale=3,
                               label="test set (registered, or a local set inside the app's data folders)",
                               elem_id="benchmark-set")
        limit = gr.Number(16, precision=0, minimum=0, label="utterances (0 = all)", elem_id="benchmark-limit")
        repeats = gr.Slider(1, 5, value=2, step=1, label="timed passes per point", elem_id="benchmark-repeats")
    with gr.Row():
        decodings = gr.CheckboxGroup(DECODING_CHOICES, value=["greedy"], label="decoding configs",
                                     elem_id="benchmark-decodings", scale=3)
        more = gr.Textbox(label="more decoding configs", placeholder="beam4, t0.9-p0.8, beam3-rp3",
                          elem_id="benchmark-more", scale=2)
    with gr.Row():
        in_flight = gr.CheckboxGroup(IN_FLIGHT_CHOICES, value=[1, 4, 16], label="requests in flight (online clients)",
                                     info="never more than the utterances picked; vLLM batches up to its "
                                          f"max_num_seqs ({engine.options.max_num_seqs or 'its default'})",
                                     elem_id="benchmark-in-flight", scale=3)
        offline = gr.Checkbox(True, label="offline: every utterance at once", elem_id="benchmark-offline")
    with gr.Accordion("Engine settings (each value needs a new engine)", open=False, elem_id="benchmark-engine"):
        gr.Markdown(ENGINE_NOTE)
        with gr.Row():
            max_num_seqs = gr.Textbox(label="max_num_seqs values", placeholder="8, 32, 128",
                                      elem_id="benchmark-max-num-seqs")
            max_batched = gr.Textbox(label="max_num_batched_tokens values", placeholder="2048, 8192",
                                     elem_id="benchmark-max-batched")
        command = gr.Code(label="run in a terminal", language="shell", interactive=False,
                          elem_id="benchmark-command")
    name = gr.Textbox(label="sweep folder name (empty: sweep__SET__MODEL__TIME)", elem_id="benchmark-name")
    with gr.Row():
        run_button = gr.Button("Run benchmark", variant="primary", elem_id="benchmark-run")
        stop_button = gr.Button("Stop", variant="stop", elem_id="benchmark-stop")
    status = gr.Markdown(elem_id="benchmark-status")
    folder = gr.Textbox(label="sweep folder", interactive=False, elem_id="benchmark-folder")
    table = gr.Dataframe(label="finished points", interactive=False, wrap=True, elem_id="benchmark-table")
    figures = []
    for row in (list(FIGURES)[:2], list(FIGURES)[2:4], list(FIGURES)[4:]):
        with gr.Row():
            figures += [gr.Plot(label=stem.replace("_", " "), elem_id=f"benchmark-{stem.replace('_', '-')}")
                        for stem in row]

    def inputs_of(set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name):
        set_name = (set_name or "").strip()
        if not set_name:
            raise ValueError("Pick a test set or type the path of a local one.")
        if not clients and not all_at_once:
            raise ValueError("Tick at least one number of requests in flight, or offline.")
        labels = decoding_labels(picked or [], typed)
        out_dir = results_dir / folder_name(set_name, engine.model_spec, typed_name)
        engine_values = (number_list(seqs, "max_num_seqs"), number_list(batched, "max_num_batched_tokens"))
        return set_name, int(count or 0) or None, labels, sorted(int(c) for c in clients or []), out_dir, engine_values

    def show_command(*values):
        try:
            set_name, count, labels, clients, out_dir, (seqs, batched) = inputs_of(*values)
        except ValueError as error:
            return f"# {error}"
        return sweep_command(set_name, engine.model_spec, count, labels, clients, values[5], int(values[6]), seqs,
                             batched, Path("results") / out_dir.name)

    def queue_run(request: gr.Request) -> str:
        """Make the click's stop before its sweep waits behind another user's: Stop reaches it while queued."""
        runs.setdefault(request.session_hash, threading.Event())
        return QUEUED

    # every form field named (not *values): Gradio passes the request and the progress only to positional
    # parameters
    def run(set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name,
            request: gr.Request, progress=gr.Progress()):
        stop = runs.setdefault(request.session_hash, threading.Event())
        try:
            yield from sweep(stop, progress, set_name, count, picked, typed, clients, all_at_once, passes, seqs,
                             batched, typed_name)
        finally:
            runs.pop(request.session_hash, None)

    def sweep(stop, progress, set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched,
              typed_name):
        try:
            set_name, count, labels, clients, out_dir, (seqs, batched) = inputs_of(
                set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name)
            if seqs or batched:
                raise ValueError("Engine settings need new engines, which this page does not start: clear them "
                                 "and run here, or run the command under 'Engine settings' in a terminal.")
            config = SweepConfig(test_set=set_name, model=engine.model_spec, limit=count,
                                 grid={"decoding": labels, **engine_grid(engine.options)},
                                 concurrency=clients or [1], repeats=int(passes),
                                 modes=(["offline"] if all_at_once else []) + (["online"] if clients else []),
                                 output_dir=str(out_dir))
        except ValueError as error:
            raise gr.Error(str(error)) from None
        if out_dir.exists():
            raise gr.Error(f"{out_dir.name} already exists under {results_dir}: type another folder name.")
        if stop.is_set():
            yield ("**stopped before it started** (Stop was clicked while it waited for another sweep)",
                   gr.skip(), gr.skip(), *(gr.skip() for _ in FIGURES))
            return
        shown = threading.Semaphore(0)
        updates = queue.Queue()

        def on_pass(*update):
            """Hand the page the pass just measured and wait until it has been sent (figures drawn): updates
            never pile up behind slow drawing (Stop clicked at "1 of N points done" used to land after the last
            point), and no drawing competes with a timed pass for the CPU."""
            updates.put(update)
            shown.acquire()

        def measure():
            try:
                table = run_sweep(config, engine=engine, progress=False, new_engines=False, stop=stop,
                                  allowed_dirs=data_dirs, on_pass=on_pass)
                updates.put(len(table))  # the end: how many points were kept
            except (DatasetUnavailable, OSError, ValueError, SweepFailed) as error:
                updates.put(error)

        progress(0, desc=f"loading {set_name} and warming up")
        threading.Thread(target=measure, daemon=True).start()
        shown_points, points, ended = -1, None, False
        try:
            while not isinstance(update := updates.get(), int):
                if isinstance(update, Exception):
                    raise gr.Error(str(update))
                done, total, finished, label = update
                progress((done, total), desc=label, unit="passes")
                points = total // config.repeats
                head = f"**{len(finished)} of {points} points done** · pass {done} of {total} ({label})"
                if len(finished) in (shown_points, 0):
                    yield head, str(out_dir), gr.skip(), *(gr.skip() for _ in FIGURES)
                else:
                    shown_points = len(finished)
                    yield (head, str(out_dir), results_table(finished).round(3),
                           *(draw(finished) for draw in FIGURES.values()))
                shown.release()
            ended = True
        finally:
            if not ended:  # the page went away (or the sweep failed): stop after the pass in progress
                stop.set()
                shown.release()
        outcome = "stopped: the finished points are kept" if stop.is_set() and update != points else "finished"
        report = out_dir / "report.md"
        yield (f"**{outcome}** · `{report}` · open it in the Runs tab, or "
               f"`python -m eval.report {out_dir}`", str(out_dir), gr.skip(), *(gr.skip() for _ in FIGURES))

    def stop_run(request: gr.Request):
        """Stop this page's sweep (not another user's) after the pass in progress, or before it starts."""
        if (stop := runs.get(request.session_hash)) is not None:
            stop.set()

    form = [test_set, limit, decodings, more, in_flight, offline, repeats, max_num_seqs, max_batched, name]
    command.value = show_command(*(component.value for component in form))
    # one listener (see ui_decoding): the command shown is always the last values' command
    gr.on([component.change for component in form], show_command, form, command, queue=False)
    run_button.click(queue_run, None, status, queue=False).then(
        run, form, [status, folder, table, *figures], concurrency_limit=1, concurrency_id="benchmark")
    stop_button.click(stop_run, None, None, queue=False)
