"""``fireredasr-serve`` as a child process, for tests and scripts: a free loopback port, start, wait until it
answers ``/health``, stop its whole process group (the API server and its engine processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class ServerDidNotStart(RuntimeError):
    """The server exited or stayed unhealthy; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: list[str], log: Path, **popen) -> subprocess.Popen:
    """``python -m fireredasr_vllm.serve ARGS`` in a session of its own, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "fireredasr_vllm.serve", *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **popen)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Return once ``url`` answers ``/health``; ServerDidNotStart when the process exits or ``timeout_s``
    passes first."""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if process.poll() is not None:
            raise ServerDidNotStart(f"exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise ServerDidNotStart(f"not healthy after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def stop_server(process: subprocess.Popen, signal_number: int = signal.SIGTERM) -> None:
    """Signal the server's process group; SIGKILL after 60 s (SIGKILL at once: as a crash would)."""
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:  # the whole group has exited already
        return
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
