"""Use case 3: transcribe a raw 16 kHz tensor already in memory (e.g. 5 s from a live stream).

    python examples/transcribe_tensor.py [--model trained|DIR] [--seconds 5]

Tensors and numpy arrays of float samples in [-1, 1] (or int16) are taken as they are; give
``sample_rate=`` when they are not 16 kHz. Shapes (samples,), (1, samples) and (samples, channels) work.
"""

import argparse

import torch

from eval.bundled import DEMO_CLIPS
from fireredasr_engine import Engine
from fireredasr_engine.cli import add_model_argument
from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm.audio import SAMPLE_RATE, load_audio

DEMO_CLIP = DEMO_CLIPS / "demo_000.flac"


def stream_chunk(seconds: float = 5.0) -> torch.Tensor:
    """A (1, seconds * SAMPLE_RATE) float tensor: the demo clip, zero-padded or cut to ``seconds``."""
    samples = load_audio(DEMO_CLIP)  # float32, 16 kHz mono
    chunk = torch.zeros(1, int(seconds * SAMPLE_RATE))
    length = min(len(samples), chunk.shape[1])
    chunk[0, :length] = torch.from_numpy(samples[:length])
    return chunk


def main(engine: Engine, seconds: float = 5.0):
    """Transcribe a ``seconds`` long tensor."""
    result = engine.transcribe(stream_chunk(seconds), sample_rate=SAMPLE_RATE, id="stream")
    print(f"{result.duration_s:.1f} s -> {result.text}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_argument(parser, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with Engine(args.model) as engine:
        main(engine, args.seconds)
