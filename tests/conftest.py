"""Shared fixtures, each started once per test session: real vLLM CPU engines (``engine`` on the default
trained model, ``tiny_engine`` on the random-weight tiny model for parity tests), the Gradio app served on
``engine`` (``server``) and one headless Chromium (``browser``; ``page`` opens the app in it). Every UI test
file shares the one app start and the one browser. Test files share the inputs too: the bundled clips
(``demo_clips``, ``clips``: the first three, ``clip_samples``: decoded) and the official implementation on the
tiny model (``official``). The fixtures import the packages they need when they start, so that a session of
light tests does not import vLLM, torch or the official code."""

import io
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval.bundled import DEMO_CLIPS as DEMO_CLIPS_DIR
from eval.bundled import DEMO_DIR, read_sentences
from testkit.servers import ServerDidNotStart, start_server, stop_server, wait_healthy
from testkit.servers import free_port as find_free_port  # the name free_port is the fixture's

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
DEMO_CLIPS = sorted(DEMO_CLIPS_DIR.glob("*.flac"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PAGE_TIMEOUT_MS = 240_000  # a busy 2-core CI box
EXPECT_TIMEOUT_MS = 60_000  # what expect() waits for a page to show a state
APP_MAX_UPLOAD_MB = 1  # small, so the too-large-upload path is testable with a 1 MB file


@pytest.fixture(scope="session")
def tiny_official_dir() -> Path:
    from testkit.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def tiny_converted_dir(tiny_official_dir) -> Path:
    from fireredasr_vllm.resolve import resolve_model

    return resolve_model("tiny")


@pytest.fixture
def official_copy(tiny_official_dir, tmp_path) -> Path:
    """A copy of the tiny model's official layout, for tests that damage it."""
    return shutil.copytree(tiny_official_dir, tmp_path / "official")


@pytest.fixture(scope="session")
def engine():
    """The real vLLM engine (AsyncLLM behind the facade) on the default model, which really transcribes."""
    from fireredasr_vllm import DEFAULT_MODEL
    from fireredasr_engine.engine import Engine

    with Engine(DEFAULT_MODEL) as shared:
        yield shared


@pytest.fixture(scope="session")
def tiny_engine(tiny_converted_dir):
    """The real vLLM engine on the random tiny model: long, varied outputs that parity tests need."""
    from fireredasr_engine.engine import Engine

    with Engine("tiny") as tiny:
        yield tiny


@pytest.fixture(scope="session")
def demo_clips() -> list[Path]:
    assert DEMO_CLIPS, "bundled clips missing: run python -m testkit.synth"
    return DEMO_CLIPS


@pytest.fixture(scope="session")
def clips(demo_clips) -> list[Path]:
    """The first three bundled clips (paths): a small batch."""
    return demo_clips[:3]


@pytest.fixture(scope="session")
def clip_samples(demo_clips) -> list[np.ndarray]:
    """Every bundled clip decoded to 16 kHz float32 samples."""
    from fireredasr_vllm.audio import load_audio

    return [load_audio(path) for path in demo_clips]


@pytest.fixture(scope="session")
def official(tiny_official_dir):
    """The official PyTorch implementation (eval.official) on the tiny model."""
    from eval.official import OfficialModel

    return OfficialModel.load(tiny_official_dir)


def encode(samples: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def bad_input_corpus(demo_clips, tmp_path_factory) -> dict[str, tuple[object, str | None, float | None]]:
    """The held-out bad-input corpus: name -> (input, expected error pattern or None when it transcribes,
    expected duration in s). Inputs are paths, encoded bytes, arrays or (array, rate), as users pass them."""
    from fireredasr_vllm.audio import SAMPLE_RATE, load_audio, resample

    clip = load_audio(demo_clips[0])
    folder = tmp_path_factory.mktemp("bad")
    seconds = len(clip) / SAMPLE_RATE
    wav = encode(clip)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("这不是音频, just a text file\n" * 20, encoding="utf-8")
    with_nan, with_inf = clip.copy(), clip.copy()
    with_nan[1000], with_inf[2000] = np.nan, np.inf
    speech_35s = np.tile(clip, int(35 / seconds) + 1)[:35 * SAMPLE_RATE]
    return {
        "empty_file": (folder / "empty.wav", r"empty \(0 bytes\)", None),
        "no_such_file": (folder / "missing.wav", "no such file", None),
        "directory": (folder, "is a directory", None),
        "zero_samples": (encode(np.zeros(0, np.float32)), "contains 0 samples", None),
        "20ms": (encode(clip[:320]), r"20\.0 ms is too short", None),
        "truncated_header": (wav[:30], "cannot decode as audio", None),
        "truncated_data": (wav[:len(wav) // 2], None, None),
        "random_bytes": (np.random.default_rng(0).bytes(20000), "cannot decode as audio", None),
        "text_named_wav": (folder / "notes.wav", r"cannot decode as audio \(text, not audio\)", None),
        "nan_samples": (with_nan, "NaN or infinite", None),
        "inf_samples": (with_inf, "NaN or infinite", None),
        "clipping": (np.clip(clip * 30, -1, 1), None, seconds),
        "very_loud_int16": ((np.clip(clip * 30, -1, 1) * 32767).astype(np.int16), None, seconds),
        "very_quiet": (clip * 1e-4, None, seconds),
        "silence": (np.zeros(3 * SAMPLE_RATE, np.float32), None, 3.0),
        "stereo": (encode(np.stack([clip, 0.5 * clip], axis=1)), None, seconds),
        "8kHz": (encode(resample(clip, SAMPLE_RATE, 8000), 8000), None, seconds),
        "44.1kHz": (encode(resample(clip, SAMPLE_RATE, 44100), 44100), None, seconds),
        "48kHz_array": ((resample(clip, SAMPLE_RATE, 48000), 48000), None, seconds),
        "mp3": (encode(clip, fmt="MP3"), None, seconds),
        "flac": (encode(clip, fmt="FLAC"), None, seconds),
        "ogg_vorbis": (encode(clip, fmt="OGG", subtype="VORBIS"), None, seconds),
        "35s": (speech_35s, r"35\.0 s is longer than the model's 30 s limit.*long_audio=True", None),
    }


@pytest.fixture(scope="session")
def references() -> dict[str, str]:
    """Clip id -> the sentence it says."""
    return dict(read_sentences(DEMO_DIR / "sentences.txt"))


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


def pytest_collection_modifyitems(items):
    """Modules that drive Chromium run last (in their own order): Playwright's sync API leaves its event loop
    marked as running in this thread for the rest of the session, so code run after it (examples, the GPU
    benchmark's client) could not call ``asyncio.run``."""
    late = {item.module for item in items if "playwright_session" in item.fixturenames}
    items.sort(key=lambda item: item.module in late)


@pytest.fixture(scope="session")
def playwright_session():
    from playwright.sync_api import expect, sync_playwright

    # expect() waits 5 s by default: a page's answer can take longer on a busy 2-core CI box
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session):
    """One headless Chromium for every UI test."""
    chromium = playwright_session.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def launch_chromium(playwright_session):
    """``launch_chromium(*flags)``: another headless Chromium with extra flags (a fake microphone, ...), closed
    after the test; the shared ``browser`` cannot take flags after its start."""
    launched = []

    def launch(*flags):
        launched.append(playwright_session.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [*flags]))
        return launched[-1]

    yield launch
    for chromium in launched:
        chromium.close()


@pytest.fixture(scope="session")
def open_app(server):
    """``open_app(browser, **context_options)``: a new tab on the shared app, loaded."""
    def open_tab(chromium, **context_options):
        page = chromium.new_page(viewport={"width": 1400, "height": 1000}, **context_options)
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.goto(server)
        page.locator("#transcribe-button").wait_for()
        return page

    return open_tab


@pytest.fixture
def page(browser, open_app):
    """A fresh tab on the shared app, loaded."""
    page = open_app(browser)
    yield page
    page.close()


class AsrServers:
    """``fireredasr-serve`` processes (default model) on free loopback ports, each started on first use
    (``urls(n)`` starts the missing ones together) and stopped at the end of the session."""

    START_TIMEOUT_S = 600  # a cold start on 2 busy cores

    def __init__(self, logs: Path):
        self.logs = logs
        self.processes: dict[int, subprocess.Popen] = {}
        self.ports: dict[int, int] = {}

    def log(self, index: int) -> Path:
        return self.logs / f"server{index}.log"

    def url(self, index: int) -> str:
        return self.urls(index + 1)[index]

    def urls(self, count: int) -> list[str]:
        from fireredasr_vllm import DEFAULT_MODEL

        starting = [i for i in range(count) if i not in self.processes or self.processes[i].poll() is not None]
        for index in starting:
            self.ports[index] = find_free_port()
            self.processes[index] = start_server(
                ["--model", DEFAULT_MODEL, "--host", "127.0.0.1", "--port", str(self.ports[index])], self.log(index))
        urls = [f"http://127.0.0.1:{self.ports[i]}" for i in range(count)]
        for index in starting:
            try:
                wait_healthy(urls[index], self.processes[index], self.log(index), self.START_TIMEOUT_S)
            except ServerDidNotStart as error:
                pytest.fail(f"server {index} {error}")
        return urls

    def kill(self, index: int, signal_number: int = signal.SIGKILL) -> None:
        """Signal the server's whole process group (api_server and its engine); SIGKILL: as a crash would."""
        stop_server(self.processes[index], signal_number)

    def close(self) -> None:
        for index, process in self.processes.items():
            if process.poll() is None:
                self.kill(index, signal.SIGTERM)


@pytest.fixture(scope="session")
def asr_servers(tmp_path_factory):
    """Running OpenAI-compatible transcription servers, shared by test_serve and test_scale_out
    (``asr_servers.url(0)``, ``asr_servers.urls(2)``)."""
    servers = AsrServers(tmp_path_factory.mktemp("asr-servers"))
    yield servers
    servers.close()
