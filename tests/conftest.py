"""Shared fixtures: real vLLM CPU engines, each started once per test session: ``engine`` on the
default (trained) model, ``tiny_engine`` on the random-weight tiny model for parity tests."""

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
