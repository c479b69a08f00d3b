"""Scaling out on vLLM's own parallelism: data-parallel engines, evaluation over several servers, and one
server shared by the app and a notebook (the facade's client mode, fireredasr_engine/client.py). The servers are
the session's (``asr_servers`` in conftest.py): server 0 is shared with test_serve; server 1 is killed last."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from eval.records import load_run, read_rows
from eval.run import evaluate, main
from eval.sweep import SweepConfig, run_sweep
from fireredasr_engine.client import MAX_FAILURES, ServerError, UnsupportedDecoding
from fireredasr_engine.engine import Engine
from fireredasr_engine.options import DecodingOptions, parse_decoding

REPO = Path(__file__).resolve().parents[1]
LIMIT = 12  # utterances of the bundled set per run
APP_START_TIMEOUT_S = 300
PAGE_TIMEOUT_MS = 240_000  # a busy 2-core CI box


def hypotheses(run) -> dict[str, str]:
    """id -> text; the server's streaming detokenizer drops an unfinished UTF-8 character at the very end
    (test_serve.py), so a trailing U+FFFD of the facade's decode is not compared."""
    return {row["id"]: row["hypothesis"].rstrip("\ufffd") for _, row in run.rows.iterrows()}


def engine_cores(process: psutil.Process) -> list[psutil.Process]:
    """vLLM engine-core processes (``VLLM::EngineCore``, one per data-parallel rank) under ``process``."""
    found = []
    for child in process.children(recursive=True):
        try:
            if "EngineCore" in child.name():
                found.append(child)
        except psutil.NoSuchProcess:  # ended while we looked
            pass
    return found


def post_count(log: Path) -> int:
    """Transcription requests a server answered with 200, from its access log."""
    return log.read_text(errors="replace").count('"POST /v1/audio/transcriptions HTTP/1.1" 200')


@pytest.fixture(scope="module")
def local_run(engine, tmp_path_factory):
    """The reference: the first LIMIT bundled clips through the in-process engine."""
    return evaluate("demo", engine=engine, limit=LIMIT, output_dir=tmp_path_factory.mktemp("local") / "run",
                    progress=False)


@pytest.fixture(scope="module")
def two_servers(asr_servers) -> list[str]:
    return asr_servers.urls(2)


# ------------------------------------------------------------------------------------- data parallelism
def test_data_parallel_run_gives_the_same_transcripts(local_run, tmp_path):
    """``eval.run --data-parallel-size 2``: two engine cores on the two CPU cores, one engine's transcripts."""
    me = psutil.Process()
    before = {p.pid for p in engine_cores(me)}
    started, stop = [], threading.Event()

    def watch():  # the run's engine cores, sampled while it runs
        while not stop.is_set():
            started.append(len([p for p in engine_cores(me) if p.pid not in before]))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    out = tmp_path / "dp2"
    try:
        assert main(["demo", "--data-parallel-size", "2", "--limit", str(LIMIT), "--output-dir", str(out),
                     "--quiet", "--no-plots"]) == 0
    finally:
        stop.set()
        watcher.join()
    run = load_run(out)
    assert run.manifest["engine"]["data_parallel_size"] == 2 and max(started) == 2
    assert hypotheses(run) == hypotheses(local_run) and run.summary.failed == 0
    assert {p.pid for p in engine_cores(me)} == before, "the run's engines are gone when it ends"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ  # set for the engines' start only


# ------------------------------------------------------------------------------------- the client
def test_client_gives_the_engines_records(asr_servers, engine, demo_clips):
    with Engine.connect(asr_servers.url(0)) as client:
        local, remote = engine.transcribe(demo_clips[0]), client.transcribe(demo_clips[0])
        assert remote.text == local.text.rstrip("\ufffd") and remote.finish_reason == local.finish_reason == "stop"
        assert (remote.output_tokens, remote.prompt_tokens, remote.duration_s) == (
            local.output_tokens, local.prompt_tokens, local.duration_s)
        assert 0 < remote.ttft_s <= remote.latency_s and remote.token_ids == () and remote.queue_s is None
        assert [s.text for s in remote.segments] == [remote.text]
        sampled = client.transcribe(demo_clips[1], parse_decoding("t0.7"))  # seeded: repeatable
        assert sampled.ok and sampled.text == client.transcribe(demo_clips[1], parse_decoding("t0.7")).text
        bad = client.submit(client.prepare(b"not audio at all" * 10, id="junk")).result()
        assert bad.error == engine.prepare(b"not audio at all" * 10, id="junk").error
        facts = client.describe()
        assert facts["servers"][0]["url"] == asr_servers.url(0) and facts["servers"][0]["model"] == "fireredasr-llm"
        assert facts["model_dir"] == str(engine.model_dir) and facts["max_audio_seconds"] == engine.max_audio_seconds


@pytest.mark.parametrize("decoding, says", [
    ("beam3", "beam search needs the in-process engine"),
    ("official", "beam search needs the in-process engine"),
    ("greedy-rp3", "the official repetition penalty (generated tokens only) needs the in-process engine"),
])
def test_client_refuses_what_only_the_engine_can_do_in_one_sentence(asr_servers, demo_clips, decoding, says):
    with Engine.connect(asr_servers.url(0)) as client:
        with pytest.raises(UnsupportedDecoding, match=re.escape(says)) as error:
            client.transcribe(demo_clips[0], parse_decoding(decoding))
        assert "\n" not in str(error.value)
        with pytest.raises(UnsupportedDecoding, match="min_tokens and ignore_eos"):
            client.transcribe_many(demo_clips[:2], DecodingOptions(min_tokens=4))


def test_unreachable_server_is_one_clear_sentence(capsys, tmp_path, free_port):
    port = free_port  # nothing listens there
    assert main(["demo", "--server", f"http://127.0.0.1:{port}", "--output-dir", str(tmp_path / "x"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}: no fireredasr-serve answers there" in err and "Traceback" not in err
    with pytest.raises(ServerError, match="write it as http://HOST:PORT"):
        Engine.connect("localhost:8000")


# ------------------------------------------------------------------------------------- many servers
def test_run_over_two_servers_matches_the_local_run(two_servers, asr_servers, local_run, tmp_path):
    answered = [post_count(asr_servers.log(i)) for i in range(2)]
    out = tmp_path / "remote"
    argv = ["demo", "--server", ",".join(two_servers), "--limit", str(LIMIT), "--output-dir", str(out),
            "--quiet", "--no-plots"]
    assert main(argv) == 0
    run = load_run(out)
    assert hypotheses(run) == hypotheses(local_run)
    assert run.summary.utterances == LIMIT and run.summary.failed == 0
    assert run.summary.error_rate == pytest.approx(local_run.summary.error_rate)
    assert [(s["url"], s["model"]) for s in run.manifest["servers"]] == [(u, "fireredasr-llm") for u in two_servers]
    assert run.manifest["model_sha256"] == local_run.manifest["model_sha256"]
    assert all(post_count(asr_servers.log(i)) > answered[i] for i in range(2)), "both servers took work"
    assert main(argv) == 0 and len(read_rows(out / "rows.jsonl")) == LIMIT  # finished: resumed, nothing redone


class FlakyProxy(ThreadingHTTPServer):
    """A loopback proxy in front of a real server that fails the first ``failures`` transcription requests,
    answering 503 (as an overloaded or restarting server would) or, with ``drop``, closing the connection without
    an answer (as a loaded server's dropped connections look); it forwards everything else."""

    def __init__(self, target: str, failures: int, drop: bool = False):
        self.target, self.failures, self.drop, self.answered_503 = target, failures, drop, 0
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    def forward(self, method: str) -> None:
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if method == "POST" and proxy.answered_503 < proxy.failures:
            proxy.answered_503 += 1
            if proxy.drop:
                self.close_connection = True
                return
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {"Content-Type": self.headers["Content-Type"]} if body else {}
        answer = httpx.request(method, proxy.target + self.path, content=body, headers=headers, timeout=300)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def do_GET(self):
        self.forward("GET")

    def do_POST(self):
        self.forward("POST")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("failures, drop", [(2, False), (MAX_FAILURES + 1, True)], ids=["503", "dropped"])
def test_failed_requests_are_retried_and_each_answered_once(asr_servers, engine, demo_clips, failures, drop):
    """A 503, or more dropped connections in a row than ``MAX_FAILURES`` from a server whose /health answers (a
    benchmark at 512 in flight once lost 150 clips when such a burst left its one server out)."""
    proxy = FlakyProxy(asr_servers.url(0), failures=failures, drop=drop)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with Engine.connect(proxy.url, max_in_flight=1) as client:
            results = client.transcribe_many(demo_clips[:4])
            assert proxy.answered_503 == failures and client.servers[0].dropped == failures
            assert not client.servers[0].down and all(t.ok for t in results), [t.error for t in results]
            assert client.servers[0].answered == 4  # the refused requests were sent again, once each
        assert [t.text for t in results] == [t.text.rstrip("\ufffd") for t in engine.transcribe_many(demo_clips[:4])]
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_sweep_measures_a_server(two_servers, tmp_path):
    config = SweepConfig(test_set="demo", limit=4, modes=["online"], concurrency=[2], warmup=0, repeats=1,
                         server=two_servers[0], output_dir=str(tmp_path / "sweep"))
    table = run_sweep(config, progress=False)
    assert list(table["failed"]) == [0] and table["utts_per_s"].gt(0).all()
    with pytest.raises(ValueError, match="engine settings are the servers' own"):
        SweepConfig(server=two_servers[0], grid={"max_num_seqs": [4]})
    with pytest.raises(ValueError, match="beam search needs the in-process engine"):
        SweepConfig(server=two_servers[0], grid={"decoding": ["beam3"]})


# ------------------------------------------------------------------------------------- one shared engine
@pytest.fixture
def app_on_server(asr_servers, tmp_path, free_port):
    """``python -m workbench --server URL`` in its own process; yields (process, URL)."""
    port = free_port
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        app = subprocess.Popen([sys.executable, "-m", "workbench", "--server", asr_servers.url(0), "--port",
                                str(port), "--results-dir", str(tmp_path / "results")],
                               cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while True:
        assert app.poll() is None, f"the app exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline, f"the app did not start:\n{log.read_text()[-3000:]}"
            time.sleep(1)
    yield app, url
    app.terminate()
    app.wait(timeout=60)


@pytest.fixture
def notebook_kernel(tmp_path):
    """A kernel on this interpreter (as tests/test_notebooks.py starts them); shut down afterwards."""
    write_kernel_spec(tmp_path / "kernels" / "python3")
    manager = KernelManager(kernel_name="python3",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    yield manager
    if manager.has_kernel:
        manager.shutdown_kernel()


def test_app_and_notebook_share_one_server_engine(asr_servers, app_on_server, notebook_kernel, browser,
                                                  references, demo_clips, tmp_path):
    app, url = app_on_server
    page = browser.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url)
    page.locator("#transcribe-files input[type=file]").set_input_files([str(demo_clips[3])])
    page.locator("#transcribe-files").get_by_text(demo_clips[3].stem).first.wait_for()
    page.locator("#transcribe-button").click()
    row = page.locator("#transcribe-results [role=row]", has_text=demo_clips[3].name).first
    row.get_by_text(references[demo_clips[3].stem]).wait_for()
    page.close()

    notebook = nbformat.read(REPO / "notebooks" / "05_shared_server.ipynb", as_version=4)
    client = NotebookClient(notebook, km=notebook_kernel, timeout=600,
                            resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute(env={**os.environ, "WORKBENCH_SERVER": asr_servers.url(0),
                        "WORKBENCH_RESULTS": str(tmp_path / "notebook-results")})  # our km: kept running
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert references[demo_clips[0].stem] in printed and "beam search needs the in-process engine" in printed
    run = load_run(tmp_path / "notebook-results" / "demo__server__greedy")
    assert run.summary.utterances == 8 and run.summary.failed == 0 and run.summary.error_rate < 0.10
    assert f"CER {100 * run.summary.error_rate:.2f} % on 8 utterances" in printed

    kernel = psutil.Process(notebook_kernel.provisioner.process.pid)  # still running: count with it alive
    server = psutil.Process(asr_servers.processes[0].pid)
    assert app.poll() is None and kernel.is_running()
    assert engine_cores(psutil.Process(app.pid)) == [] and engine_cores(kernel) == []
    assert len(engine_cores(server)) == 1, "the app and the notebook use the server's one engine"


# ------------------------------------------------------------------------------------- a server dies
def test_killing_a_server_mid_run_finishes_on_the_other(two_servers, asr_servers, engine, demo_clips, tmp_path):
    """Last in the module: once the run has answered a few requests, a server with a request in flight is
    killed (SIGKILL, as a crash); its request and the rest finish on the other."""
    expected = {t.id: t.text.rstrip("\ufffd") for t in engine.transcribe_many(demo_clips)}
    out = tmp_path / "killed"
    killed = []

    def kill_one_mid_run(client, warm: int):
        """Watches the client from another thread: the counters change on the client's loop as requests run."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            busy = [i for i, server in enumerate(client.servers) if server.in_flight]
            if busy and sum(server.answered for server in client.servers) >= warm + 3:
                killed.append(busy[-1])
                asr_servers.kill(busy[-1])
                return
            time.sleep(0.001)

    with Engine.connect(two_servers, max_in_flight=1) as client:  # one request at a time each
        for clip in demo_clips[:2]:  # one each (requests alternate): both warm
            client.transcribe(clip)
        assert [server.answered for server in client.servers] == [1, 1]
        watcher = threading.Thread(target=kill_one_mid_run, args=(client, 3))  # 2 above + eval.run's warm-up
        watcher.start()
        run = evaluate("demo", engine=client, output_dir=out, progress=False)
        watcher.join()
        assert killed, "no server was killed mid-run"
        dead, alive = client.servers[killed[0]], client.servers[1 - killed[0]]
        assert dead.dropped >= 1, "the killed server had a request in flight"
        assert alive.dropped == 0 and alive.answered > dead.answered
    assert hypotheses(run) == expected and run.summary.failed == 0
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len(demo_clips) == len({row["id"] for row in read_rows(out / "rows.jsonl")})  # none lost or twice
