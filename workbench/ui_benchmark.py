"""Benchmark tab: a latency/throughput sweep (``eval.sweep.run_sweep``) on the page's shared engine.

Decoding configs x requests in flight (and offline: every utterance at once), each timed ``repeats``
times after a full-batch warm-up; the figures (``eval.plots``) redraw as configurations finish, Stop
keeps the finished ones, and the result is a sweep folder under the results directory, which the Runs
tab, ``python -m eval.report`` and notebook 04 list and compare. Engine settings (max_num_seqs,
max_num_batched_tokens) need a new engine per value: restarting the shared engine would cut off every
other user of the page, so the tab only writes the ``python -m eval.sweep`` command for them.

``SweepRun`` is the protocol between the sweep's worker thread and the page (start, a message per pass, stop,
the result), with no Gradio in it; ``BenchmarkTab`` holds the components and one small method per event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import shlex
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
log = logging.getLogger(__name__)
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


MEASURE_ERRORS = (DatasetUnavailable, OSError, ValueError, SweepFailed)  # a sweep's own failures: one sentence


class SweepRunFailed(Exception):
    """The sweep ended on one of ``MEASURE_ERRORS``; the message is its sentence."""


@dataclass(frozen=True)
class Pass:
    """A timed pass just measured: ``done`` of ``total`` passes, the configurations finished so far."""

    done: int
    total: int
    finished: object  # the sweep table of the finished configurations (a DataFrame)
    label: str


class SweepRun:
    """One sweep measured in a worker thread and handed to the page pass by pass.

        run = SweepRun(lambda on_pass: len(run_sweep(config, stop=stop, on_pass=on_pass, ...)), stop)
        run.start()
        for measured in run.passes(config.repeats):   # the sweep waits until the page asks for the next pass
            ...
        run.kept, run.stopped                          # points kept; whether Stop ended it before the last one

    The sweep waits after each pass until the page has shown it (figures drawn): updates never pile up behind
    slow drawing, and no drawing competes with a timed pass for the CPU. Leaving ``passes`` early (the page went
    away) stops the sweep after the pass in progress; a failure of the sweep (``MEASURE_ERRORS``) is raised
    there as ``SweepRunFailed``.
    """

    def __init__(self, measure: Callable[[Callable], int], stop: threading.Event):
        self.measure, self.stop = measure, stop
        self.updates: queue.Queue = queue.Queue()
        self.shown = threading.Semaphore(0)
        self.points: int | None = None  # how many points the sweep has, once a pass told
        self.kept: int | None = None  # how many points were kept, once it ended

    def start(self) -> None:
        threading.Thread(target=self._measure, name="fireredasr-benchmark", daemon=True).start()

    def _measure(self) -> None:
        try:
            self.updates.put(self.measure(self._on_pass))  # the end: how many points were kept
        except MEASURE_ERRORS as error:
            self.updates.put(SweepRunFailed(str(error)))
        except Exception:  # a bug: the page says so (never waits forever), the details go to the server log
            log.exception("the benchmark sweep failed")
            self.updates.put(SweepRunFailed("the sweep failed unexpectedly (the server log has the details)"))

    def _on_pass(self, done: int, total: int, finished, label: str) -> None:
        self.updates.put(Pass(done, total, finished, label))
        self.shown.acquire()

    def passes(self, repeats: int) -> Iterator[Pass]:
        """Each pass as it is measured (``repeats`` passes make a point); raises ``SweepRunFailed``."""
        ended = False
        try:
            while not isinstance(update := self.updates.get(), int):
                if isinstance(update, Exception):
                    raise update
                self.points = update.total // repeats
                yield update
                self.shown.release()
            self.kept, ended = update, True
        finally:
            if not ended:  # the page went away (or the sweep failed): stop after the pass in progress
                self.stop.set()
                self.shown.release()

    @property
    def stopped(self) -> bool:
        """Stop ended the sweep before its last point."""
        return self.stop.is_set() and self.kept != self.points


class BenchmarkTab:
    """The tab's components and event handlers; sweeps run one at a time on ``engine``."""

    def __init__(self, engine, *, results_dir: Path, data_dirs: tuple[Path, ...] = ()):
        self.engine, self.results_dir, self.data_dirs = engine, results_dir, data_dirs
        self.stops: dict[str, threading.Event] = {}  # browser session -> the stop of its running (or queued) sweep

    # ----------------------------------------------------------------- layout
    def render(self) -> None:
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
            in_flight = gr.CheckboxGroup(IN_FLIGHT_CHOICES, value=[1, 4, 16],
                                         label="requests in flight (online clients)",
                                         info="never more than the utterances picked; vLLM batches up to its "
                                              f"max_num_seqs ({self.engine.options.max_num_seqs or 'its default'})",
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

        form = [test_set, limit, decodings, more, in_flight, offline, repeats, max_num_seqs, max_batched, name]
        command.value = self.show_command(*(component.value for component in form))
        # one listener (see ui_decoding): the command shown is always the last values' command
        gr.on([component.change for component in form], self.show_command, form, command, queue=False)
        run_button.click(self.queue_run, None, status, queue=False).then(
            self.run, form, [status, folder, table, *figures], concurrency_limit=1, concurrency_id="benchmark")
        stop_button.click(self.stop_run, None, None, queue=False)

    # ----------------------------------------------------------------- the form
    def inputs_of(self, set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name):
        set_name = (set_name or "").strip()
        if not set_name:
            raise ValueError("Pick a test set or type the path of a local one.")
        if not clients and not all_at_once:
            raise ValueError("Tick at least one number of requests in flight, or offline.")
        labels = decoding_labels(picked or [], typed)
        out_dir = self.results_dir / folder_name(set_name, self.engine.model_spec, typed_name)
        engine_values = (number_list(seqs, "max_num_seqs"), number_list(batched, "max_num_batched_tokens"))
        return set_name, int(count or 0) or None, labels, sorted(int(c) for c in clients or []), out_dir, engine_values

    def show_command(self, *values) -> str:
        try:
            set_name, count, labels, clients, out_dir, (seqs, batched) = self.inputs_of(*values)
        except ValueError as error:
            return f"# {error}"
        return sweep_command(set_name, self.engine.model_spec, count, labels, clients, values[5], int(values[6]),
                             seqs, batched, Path("results") / out_dir.name)

    def sweep_config(self, set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched,
                     typed_name) -> SweepConfig:
        """The sweep the form asks for, on the page's engine; one sentence (ValueError) when it cannot run here."""
        set_name, count, labels, clients, out_dir, (seqs, batched) = self.inputs_of(
            set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name)
        if seqs or batched:
            raise ValueError("Engine settings need new engines, which this page does not start: clear them "
                             "and run here, or run the command under 'Engine settings' in a terminal.")
        return SweepConfig(test_set=set_name, model=self.engine.model_spec, limit=count,
                           grid={"decoding": labels, **engine_grid(self.engine.options)},
                           concurrency=clients or [1], repeats=int(passes),
                           modes=(["offline"] if all_at_once else []) + (["online"] if clients else []),
                           output_dir=str(out_dir))

    # ----------------------------------------------------------------- events
    def queue_run(self, request: gr.Request) -> str:
        """Make the click's stop before its sweep waits behind another user's: Stop reaches it while queued."""
        self.stops.setdefault(request.session_hash, threading.Event())
        return QUEUED

    # every form field named (not *values): Gradio passes the request and the progress only to positional
    # parameters
    def run(self, set_name, count, picked, typed, clients, all_at_once, passes, seqs, batched, typed_name,
            request: gr.Request, progress=gr.Progress()):
        stop = self.stops.setdefault(request.session_hash, threading.Event())
        try:
            yield from self.sweep(stop, progress, set_name, count, picked, typed, clients, all_at_once, passes,
                                  seqs, batched, typed_name)
        finally:
            self.stops.pop(request.session_hash, None)

    def sweep(self, stop: threading.Event, progress, *values):
        try:
            config = self.sweep_config(*values)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        out_dir = Path(config.output_dir)
        if out_dir.exists():
            raise gr.Error(f"{out_dir.name} already exists under {self.results_dir}: type another folder name.")
        if stop.is_set():
            yield ("**stopped before it started** (Stop was clicked while it waited for another sweep)",
                   gr.skip(), gr.skip(), *(gr.skip() for _ in FIGURES))
            return
        measured = SweepRun(lambda on_pass: len(run_sweep(
            config, engine=self.engine, progress=False, new_engines=False, stop=stop, allowed_dirs=self.data_dirs,
            on_pass=on_pass)), stop)
        progress(0, desc=f"loading {config.test_set} and warming up")
        measured.start()
        shown_points = -1
        try:
            with contextlib.closing(measured.passes(config.repeats)) as passes:  # closed: the sweep stops too
                for update in passes:
                    progress((update.done, update.total), desc=update.label, unit="passes")
                    head = (f"**{len(update.finished)} of {measured.points} points done** · pass {update.done} of "
                            f"{update.total} ({update.label})")
                    if len(update.finished) in (shown_points, 0):
                        yield head, str(out_dir), gr.skip(), *(gr.skip() for _ in FIGURES)
                    else:
                        shown_points = len(update.finished)
                        yield (head, str(out_dir), results_table(update.finished).round(3),
                               *(draw(update.finished) for draw in FIGURES.values()))
        except SweepRunFailed as error:
            raise gr.Error(str(error)) from None
        outcome = "stopped: the finished points are kept" if measured.stopped else "finished"
        report = out_dir / "report.md"
        yield (f"**{outcome}** · `{report}` · open it in the Runs tab, or "
               f"`python -m eval.report {out_dir}`", str(out_dir), gr.skip(), *(gr.skip() for _ in FIGURES))

    def stop_run(self, request: gr.Request) -> None:
        """Stop this page's sweep (not another user's) after the pass in progress, or before it starts."""
        if (stop := self.stops.get(request.session_hash)) is not None:
            stop.set()


def build_benchmark_tab(engine, *, results_dir: Path, data_dirs: tuple[Path, ...] = ()) -> BenchmarkTab:
    """Render inside the current tab; sweeps run one at a time on ``engine``."""
    tab = BenchmarkTab(engine, results_dir=results_dir, data_dirs=data_dirs)
    tab.render()
    return tab
