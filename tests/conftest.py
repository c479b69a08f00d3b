"""Shared fixtures: ONE real vLLM CPU engine on the tiny model per test session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
REPO = Path(__file__).resolve().parents[1]
DEMO_CLIPS = sorted((REPO / "eval" / "demo" / "clips").glob("*.flac"))


@pytest.fixture(scope="session")
def tiny_official_dir() -> Path:
    from fireredasr_vllm.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def tiny_converted_dir(tiny_official_dir) -> Path:
    from fireredasr_vllm.resolve import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def engine(tiny_converted_dir):
    """The real vLLM engine (AsyncLLM behind the facade), started once."""
    from workbench.engine import Engine

    with Engine("tiny") as shared:
        yield shared


@pytest.fixture(scope="session")
def demo_clips() -> list[Path]:
    assert DEMO_CLIPS, "bundled clips missing: run python -m eval.synth"
    return DEMO_CLIPS
