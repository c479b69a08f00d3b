"""Use case 3: transcribe a raw 16 kHz tensor already in memory (e.g. 5 s from a live stream).

    python examples/transcribe_tensor.py [--model trained|DIR] [--seconds 5]

Tensors and numpy arrays of float samples in [-1, 1] (or int16) are taken as they are; give
``sample_rate=`` when they are not 16 kHz. Shapes (samples,), (1, samples) and (samples, channels) work.
"""

import argparse
from contextlib import nullcontext
from pathlib import Path

import torch

from fireredasr_vllm.audio import load_audio
from fireredasr_engine.engine import Engine

DEMO_CLIP = Path(__file__).resolve().parents[1] / "eval" / "demo" / "clips" / "demo_000.flac"
SAMPLE_RATE = 16000


def stream_chunk(seconds: float = 5.0) -> torch.Tensor:
    """A (1, seconds * 16000) float tensor: the demo clip, zero-padded or cut to ``seconds``."""
    samples = load_audio(DEMO_CLIP)  # float32, 16 kHz mono
    chunk = torch.zeros(1, int(seconds * SAMPLE_RATE))
    length = min(len(samples), chunk.shape[1])
    chunk[0, :length] = torch.from_numpy(samples[:length])
    return chunk


def main(engine: Engine | None = None, seconds: float = 5.0, model: str = "trained"):
    """Transcribe a ``seconds`` long tensor; builds an engine on ``model`` only when none is passed."""
    with Engine(model) if engine is None else nullcontext(engine) as engine:
        result = engine.transcribe(stream_chunk(seconds), sample_rate=SAMPLE_RATE, id="stream")
        print(f"{result.duration_s:.1f} s -> {result.text}")
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="trained", help="'trained', 'tiny', an official release dir or a converted dir")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    main(seconds=args.seconds, model=args.model)
