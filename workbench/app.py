"""The Gradio workbench: one shared engine behind four tabs (Transcribe, Evaluate, Runs, About).

    app = build_app(engine=Engine("trained"), options=AppOptions(results_dir="results"))
    launch(app, options, server_port=7860)

Every browser session shares the engine through Gradio's queue; transcription handlers are async
(``Engine.transcribe_async``) so concurrent requests are batched by vLLM. Run folders are the ones
``python -m eval.run`` writes (``--results-dir``).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from workbench.ui_about import build_about_tab
from workbench.ui_evaluate import build_evaluate_tab
from workbench.ui_runs import build_runs_tab
from workbench.ui_transcribe import MB, build_transcribe_tab

TITLE = "FireRedASR-LLM workbench"
CACHE_CLEANUP = (600, 3600)  # every 10 min, delete uploads and outputs older than 1 h


@dataclass(frozen=True)
class AppOptions:
    results_dir: Path = Path("results")
    max_upload_mb: float = 200.0
    concurrency: int = 16  # transcription requests in flight at once, from all users

    def __post_init__(self):
        object.__setattr__(self, "results_dir", Path(self.results_dir))


def build_app(engine, options: AppOptions = AppOptions()) -> gr.Blocks:
    """The page; ``engine`` is a started ``workbench.engine.Engine``."""
    export_dir = Path(tempfile.mkdtemp(prefix="fireredasr-workbench-"))
    atexit.register(shutil.rmtree, export_dir, ignore_errors=True)
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(f"## {TITLE}  \nmodel `{engine.model_spec}` · results in `{options.results_dir}`")
        with gr.Tab("Transcribe", id="transcribe"):
            build_transcribe_tab(engine, max_upload_mb=options.max_upload_mb, export_dir=export_dir,
                                 concurrency=options.concurrency)
        with gr.Tab("Evaluate", id="evaluate"):
            build_evaluate_tab(engine, results_dir=options.results_dir)
        with gr.Tab("Runs", id="runs") as runs_tab:
            build_runs_tab(runs_tab, results_dir=options.results_dir)
        with gr.Tab("About", id="about"):
            build_about_tab(engine)
    app.queue(default_concurrency_limit=1)
    return app


def launch(app: gr.Blocks, options: AppOptions = AppOptions(), **kwargs):
    """``app.launch`` with the upload limit applied and the results folder servable (plots);
    ``kwargs`` go to Gradio (server_port, ...)."""
    options.results_dir.mkdir(parents=True, exist_ok=True)
    return app.launch(max_file_size=int(options.max_upload_mb * MB),
                      allowed_paths=[str(options.results_dir.resolve())], **kwargs)
