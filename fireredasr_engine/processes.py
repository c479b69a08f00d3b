"""The engine's child processes: started without re-running the user's script, stopped on SIGTERM.

vLLM runs its engine (EngineCore, CPU/GPU workers) in processes started with multiprocessing's
``spawn``, which re-runs the main script in each child before the child does its work. A script
without an ``if __name__ == "__main__":`` guard would build a second engine in there and die with
multiprocessing's "bootstrapping phase" RuntimeError. vLLM's engine processes need nothing from the
script, so ``script_not_rerun()`` hides it while they start.

SIGTERM ends Python at once, skipping ``finally`` blocks and ``atexit``: the engine processes
(~3 GB) would outlive it. ``exit_on_sigterm()`` turns SIGTERM into ``SystemExit`` as Ctrl-C is
turned into ``KeyboardInterrupt``, so the usual clean-up (``Engine.close``) runs; ``StartedProcesses``
covers the engine start, where there is nothing to close yet, and whatever the engine's shutdown leaves behind.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

import psutil

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM
GRACE_S = 5.0  # terminate, then kill what is still there


@contextmanager
def script_not_rerun():
    """While vLLM spawns its processes, they do not re-run ``python my_script.py`` (a ``-m`` module or
    a notebook is not re-run anyway: spawn imports those under their own guard)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__  # what multiprocessing.spawn reads to re-run the script
    try:
        yield
    finally:
        main.__file__ = path


def raise_system_exit(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise SystemExit(SIGTERM_EXIT_STATUS)


def exit_on_sigterm() -> None:
    """Install the SIGTERM handler (main thread only, and only where none was installed)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_system_exit)


class StartedProcesses:
    """The processes started inside ``with`` (the engine's, not multiprocessing's resource tracker, which
    the whole process shares): stopped at once if the start is interrupted (Ctrl-C, SIGTERM), where they
    would finish starting and outlive this process, and by ``stop()`` (what the engine's own shutdown left)."""

    def __init__(self):
        self._before = {child.pid for child in psutil.Process().children(recursive=True)}
        self.processes: list[psutil.Process] = []

    def __enter__(self) -> StartedProcesses:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.processes = [child for child in psutil.Process().children(recursive=True)
                          if child.pid not in self._before and not is_resource_tracker(child)]
        if kind is not None and issubclass(kind, (KeyboardInterrupt, SystemExit)):
            self.stop()

    def stop(self, grace_s: float = GRACE_S) -> None:
        """Terminate those still running; kill what is left after ``grace_s``."""
        for child in self.processes:
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                pass
        for child in psutil.wait_procs(self.processes, timeout=grace_s)[1]:
            child.kill()


def is_resource_tracker(process: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False
