"""Shared fixtures, each started once per test session: real vLLM CPU engines (``engine`` on the default
trained model, ``tiny_engine`` on the random-weight tiny model for parity tests), the Gradio app served on
``engine`` (``server``) and one headless Chromium (``browser``; ``page`` opens the app in it). Every UI test
file shares the one app start and the one browser."""

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
REPO = Path(__file__).resolve().parents[1]
DEMO_CLIPS = sorted((REPO / "eval" / "demo" / "clips").glob("*.flac"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PAGE_TIMEOUT_MS = 240_000  # a busy 2-core CI box
APP_MAX_UPLOAD_MB = 1  # small, so the too-large-upload path is testable with a 1 MB file


@pytest.fixture(scope="session")
def tiny_official_dir() -> Path:
    from fireredasr_vllm.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def tiny_converted_dir(tiny_official_dir) -> Path:
    from fireredasr_vllm.resolve import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def engine():
    """The real vLLM engine (AsyncLLM behind the facade) on the default model, which really transcribes."""
    from fireredasr_vllm import DEFAULT_MODEL
    from workbench.engine import Engine

    with Engine(DEFAULT_MODEL) as shared:
        yield shared


@pytest.fixture(scope="session")
def tiny_engine(tiny_converted_dir):
    """The real vLLM engine on the random tiny model: long, varied outputs that parity tests need."""
    from workbench.engine import Engine

    with Engine("tiny") as tiny:
        yield tiny


@pytest.fixture(scope="session")
def demo_clips() -> list[Path]:
    assert DEMO_CLIPS, "bundled clips missing: run python -m eval.synth"
    return DEMO_CLIPS


@pytest.fixture(scope="session")
def references() -> dict[str, str]:
    """Clip id -> the sentence it says."""
    from eval.synth import read_sentences

    return dict(read_sentences(REPO / "eval" / "demo" / "sentences.txt"))


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    return find_free_port()


@pytest.fixture(scope="session")
def app_results_dir(tmp_path_factory) -> Path:
    """The results folder of the shared app (its Evaluate, Runs and Benchmark tabs)."""
    return tmp_path_factory.mktemp("app-results")


@pytest.fixture(scope="session")
def app_options(app_results_dir):
    from workbench.app import AppOptions

    return AppOptions(results_dir=app_results_dir, max_upload_mb=APP_MAX_UPLOAD_MB)


@pytest.fixture(scope="session")
def server(engine, app_options) -> str:
    """The Gradio app on the shared engine, served in-process; its URL."""
    from workbench.app import build_app, launch

    app = build_app(engine, app_options)
    _, url, _ = launch(app, app_options, server_name="127.0.0.1", server_port=find_free_port(),
                       prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="session")
def playwright_session():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session):
    """One headless Chromium for every UI test."""
    chromium = playwright_session.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab on the shared app, loaded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(server)
    page.locator("#transcribe-button").wait_for()
    yield page
    page.close()
