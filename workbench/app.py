"""The Gradio workbench: one shared engine behind six tabs (Transcribe, Live, Evaluate, Benchmark, Runs, About).

    app = build_app(engine=Engine("trained"), options=AppOptions(results_dir="results"))
    launch(app, options, server_port=7860)

Every browser session shares the engine through Gradio's queue; transcription handlers are async
(``Engine.transcribe_async``) so concurrent requests are batched by vLLM. Run folders are the ones
``python -m eval.run`` writes (``--results-dir``). What visitors can reach (uploads, ``--data-dir``
sets, the results folder) and how to deploy it safely: docs/security.md.
"""

from __future__ import annotations

import atexit
import ipaddress
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from workbench.ui_about import build_about_tab
from workbench.ui_benchmark import build_benchmark_tab
from workbench.ui_evaluate import build_evaluate_tab
from workbench.ui_live import LIVE_ROUTES, build_live_tab
from workbench.ui_runs import build_runs_tab
from workbench.ui_transcribe import MB, build_transcribe_tab

TITLE = "FireRedASR-LLM workbench"
CACHE_CLEANUP = (600, 3600)  # every 10 min, delete uploads and outputs older than 1 h


@dataclass(frozen=True)
class AppOptions:
    results_dir: Path = Path("results")
    max_upload_mb: float = 200.0
    concurrency: int = 16  # transcription requests in flight at once, from all users
    max_audio_minutes: float = 60.0  # longest upload in long-audio mode (refused from its header)
    data_dirs: tuple[Path, ...] = ()  # folders whose test sets the Evaluate tab may load (besides registered ones)
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (user, password) pairs; empty: no login

    def __post_init__(self):
        object.__setattr__(self, "results_dir", Path(self.results_dir))
        object.__setattr__(self, "data_dirs", tuple(Path(d).resolve() for d in self.data_dirs))
        object.__setattr__(self, "auth", tuple(tuple(pair) for pair in self.auth))


def parse_credentials(pairs: list[str] = (), auth_file: str | Path | None = None) -> tuple[tuple[str, str], ...]:
    """``USER:PASS`` strings and the lines of ``auth_file`` (blank lines and ``#`` comments skipped)."""
    lines = list(pairs)
    if auth_file is not None:
        lines += [line.strip() for line in Path(auth_file).read_text(encoding="utf-8").splitlines()]
    credentials = []
    for line in filter(None, lines):
        if line.startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not (user and colon and password):
            raise ValueError("credentials must be USER:PASSWORD (one per --auth, or one per line of --auth-file)")
        credentials.append((user, password))
    return tuple(credentials)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it reaches the network
        return False


def exposure_warning(host: str, options: AppOptions) -> str | None:
    """A loud warning when the page is served beyond this machine with no login."""
    if is_loopback(host) or options.auth:
        return None
    bar = "!" * 100
    return (f"{bar}\nWARNING: serving on {host} WITHOUT a login: anyone who can reach this port can use the "
            "engine, upload audio\nand read the results folder. Add --auth USER:PASS or --auth-file FILE, or keep "
            "--host 127.0.0.1 and use an SSH tunnel\n(docs/security.md).\n" + bar)


def build_app(engine, options: AppOptions = AppOptions()) -> gr.Blocks:
    """The page; ``engine`` is a started ``fireredasr_engine.engine.Engine`` (its long-audio limit is set here)."""
    engine.max_long_audio_seconds = 60 * options.max_audio_minutes
    export_dir = Path(tempfile.mkdtemp(prefix="fireredasr-workbench-"))
    atexit.register(shutil.rmtree, export_dir, ignore_errors=True)
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(f"## {TITLE}  \nmodel `{engine.model_spec}` · results in `{options.results_dir}`")
        with gr.Tab("Transcribe", id="transcribe"):
            build_transcribe_tab(engine, max_upload_mb=options.max_upload_mb, export_dir=export_dir,
                                 concurrency=options.concurrency)
        with gr.Tab("Live", id="live"):
            build_live_tab(engine, export_dir=export_dir)
        with gr.Tab("Evaluate", id="evaluate"):
            build_evaluate_tab(engine, results_dir=options.results_dir, data_dirs=options.data_dirs)
        with gr.Tab("Benchmark", id="benchmark"):
            build_benchmark_tab(engine, results_dir=options.results_dir, data_dirs=options.data_dirs)
        with gr.Tab("Runs", id="runs") as runs_tab:
            build_runs_tab(runs_tab, results_dir=options.results_dir)
        with gr.Tab("About", id="about"):
            build_about_tab(engine)
    app.queue(default_concurrency_limit=1)
    return app


def launch(app: gr.Blocks, options: AppOptions = AppOptions(), **kwargs):
    """``app.launch`` with the upload limit and the login applied, the results folder servable (plots) and
    the Live tab's audio route added; ``kwargs`` go to Gradio (server_port, ...)."""
    options.results_dir.mkdir(parents=True, exist_ok=True)
    return app.launch(max_file_size=int(options.max_upload_mb * MB), auth=list(options.auth) or None,
                      allowed_paths=[str(options.results_dir.resolve())],
                      app_kwargs={"routes": LIVE_ROUTES}, **kwargs)
