"""Quiet by default: results, errors and progress bars on the terminal, the engine's start-up log hidden.

A vLLM engine start prints ~70 INFO/WARNING lines (plus PyTorch, transformers and Python notices) from
three processes. Importing ``fireredasr_engine`` (and fireredasr-verify's start) sets the defaults below before
vLLM is imported; they are environment variables because vLLM's engine processes are spawned and read them when
they start.
A variable the user set wins; ``--verbose`` (``show_engine_log()``) brings the whole log back.
"""

from __future__ import annotations

import logging
import os
import warnings

NOISY_WARNINGS = (
    ("`torch.distributed.reduce_op` is deprecated", FutureWarning),  # vLLM's CPU code, each engine process
    ("resource_tracker", UserWarning),  # "... leaked shared_memory objects": vLLM's, cleaned up at exit
)  # (PYTHONWARNINGS takes no ':' inside a message)
QUIET = {
    "VLLM_LOGGING_LEVEL": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # e.g. the NUMA binding notice of each CPU worker
    "PYTHONWARNINGS": ",".join(f"ignore:{message}:{category.__name__}" for message, category in NOISY_WARNINGS),
}
VERBOSE = {"VLLM_LOGGING_LEVEL": "INFO", "TRANSFORMERS_VERBOSITY": "warning", "TORCH_CPP_LOG_LEVEL": "WARNING"}


def quiet_by_default() -> None:
    """Hide the engine log unless the environment already says otherwise."""
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)
    # vLLM configures its handler only when an engine is set up; what it logs on import before that
    # (e.g. "Triton is installed, but doesn't include CPU backend") would reach Python's last-resort handler.
    logging.getLogger("vllm").setLevel(os.environ["VLLM_LOGGING_LEVEL"].upper())
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def show_engine_log(verbose: bool = True) -> None:
    """``--verbose``: vLLM's INFO log (and the others' notices) for this process and engines started later."""
    if not verbose:
        return
    os.environ.update(VERBOSE)
    if os.environ.get("PYTHONWARNINGS") == QUIET["PYTHONWARNINGS"]:
        del os.environ["PYTHONWARNINGS"]
    vllm_logger = logging.getLogger("vllm")  # already configured when vLLM was imported first
    for target in (vllm_logger, *vllm_logger.handlers):
        target.setLevel(logging.INFO)
