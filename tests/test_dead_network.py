"""eval.run on a registered set while the network is down: one message, no traceback, exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEAD = "http://127.0.0.1:9"  # the discard port: connection refused at once


@pytest.mark.parametrize("endpoint, extra", [
    (DEAD, []),  # download into the hub cache (the client retries for ~20 s first)
    ("http://hub.invalid", ["--limit", "5"]),  # streaming, and a name that does not resolve
])
def test_unreachable_hub_gives_one_message_naming_the_set_and_the_local_copy(endpoint, extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HTTPS_PROXY=DEAD, HTTP_PROXY=DEAD, HF_HOME=str(tmp_path / "hf"),
               PYTHONIOENCODING="utf-8")
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
