"""eval.run on a registered set while the network is down: one message, no traceback, exit status 2."""

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEAD = "http://127.0.0.1:9"  # the discard port: connection refused at once


class FailingHub(BaseHTTPRequestHandler):
    """A hub that answers the front page and fails everything else with 503 (up, but broken)."""

    def do_HEAD(self):
        self.send_response(200 if self.path == "/" else 503)
        self.end_headers()

    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_hub():
    hub = ThreadingHTTPServer(("127.0.0.1", 0), FailingHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{hub.server_address[1]}"
    hub.shutdown()
    hub.server_close()


def run_eval_without_hub(endpoint: str, extra: list[str], tmp_path: Path, **env_extra) -> str:
    """``eval.run aishell`` with ``endpoint`` as the hub; checks the one-message failure, returns the output."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HTTPS_PROXY=DEAD, HTTP_PROXY=DEAD, HF_HOME=str(tmp_path / "hf"),
               PYTHONIOENCODING="utf-8", **env_extra)
    done = subprocess.run([sys.executable, "-m", "eval.run", "aishell", "--output-dir", str(tmp_path / "run"),
                           *extra], cwd=REPO, capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "test set 'aishell'" in errors[0] and "is unavailable: " in errors[0], output
    assert len(errors[0]) < 300, "the reason is one short line, not the hub client's advice"
    assert "then evaluate the local copy:  python -m eval.run DIR" in output
    assert "Retrying in" not in output and "thrown while requesting" not in output  # the hub client's retries
    assert sum("retrying" in line for line in output.splitlines()) <= 1  # one notice while it retries
    assert not (tmp_path / "run" / "rows.jsonl").exists()
    return output


@pytest.mark.parametrize("endpoint, extra", [
    (DEAD, []),  # download into the hub cache
    ("http://hub.invalid", ["--limit", "5"]),  # streaming, and a name that does not resolve
])
def test_unreachable_hub_gives_one_message_naming_the_set_and_the_local_copy(endpoint, extra, tmp_path):
    run_eval_without_hub(endpoint, extra, tmp_path)


def test_a_hub_that_answers_then_fails_gives_one_message_and_one_retry_notice(failing_hub, tmp_path):
    """The hub answers the probe, then 503s: its client retries (~25 s); the user sees one notice, then one error."""
    output = run_eval_without_hub(failing_hub, [], tmp_path, NO_PROXY="127.0.0.1")
    assert sum("retrying" in line for line in output.splitlines()) == 1, output[-3000:]
