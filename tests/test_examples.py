"""examples/*.py: each use case run as a function on the shared engine, the simplest one as a script."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fireredasr_vllm.audio import load_audio

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def single(engine, demo_clips):
    """Reference: each clip alone through engine.transcribe (greedy)."""
    return {clip.stem: engine.transcribe(clip) for clip in demo_clips[:8]}


def test_one_file(engine, single, capsys):
    result = example("transcribe_file").main(engine=engine)
    assert result.ok and result.output_tokens > 0
    assert result.text == single["demo_000"].text
    assert capsys.readouterr().out == f"demo_000\t{result.text}\n"


def test_batch_of_files_matches_one_by_one(engine, demo_clips, single):
    paths = demo_clips[:4]
    results = example("transcribe_batch").main(engine=engine, paths=paths)
    assert [r.id for r in results] == [p.stem for p in paths]
    assert [r.text for r in results] == [single[p.stem].text for p in paths]


def test_raw_tensor_of_five_seconds(engine):
    module = example("transcribe_tensor")
    chunk = module.stream_chunk(5.0)
    assert tuple(chunk.shape) == (1, 80000)
    result = module.main(engine=engine, seconds=5.0)
    assert result.ok and result.duration_s == pytest.approx(5.0)
    as_numpy = np.zeros(80000, dtype=np.float32)
    clip = load_audio(module.DEMO_CLIP)[:80000]
    as_numpy[:len(clip)] = clip
    assert result.token_ids == engine.transcribe(as_numpy).token_ids


def test_async_concurrent_requests(engine, demo_clips, single):
    paths = demo_clips[:8]
    results = example("transcribe_async").main(engine=engine, paths=paths, concurrency=3)
    assert [r.id for r in results] == [p.stem for p in paths]
    assert all(r.ok and r.latency_s > 0 for r in results)
    assert [r.text for r in results] == [single[p.stem].text for p in paths]


def test_simplest_example_runs_as_a_script(single):
    """Run as a user would, on the default model: the shared engine's transcript of the same clip."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "transcribe_file.py")],
                          capture_output=True, text=True, encoding="utf-8", env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"demo_000\t{single['demo_000'].text}\n" in done.stdout
