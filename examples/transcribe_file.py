"""Use case 1: transcribe one audio file.

    python examples/transcribe_file.py [AUDIO] [--model trained|DIR]

Any format soundfile or PyAV reads, any sample rate or channel count: the engine converts to 16 kHz mono.
"""

import argparse
from pathlib import Path

from eval.bundled import DEMO_CLIPS
from fireredasr_engine import Engine
from fireredasr_engine.cli import add_model_argument
from fireredasr_vllm import DEFAULT_MODEL

DEMO_CLIP = DEMO_CLIPS / "demo_000.flac"


def main(engine: Engine, audio: str | Path = DEMO_CLIP):
    """Transcribe ``audio``."""
    result = engine.transcribe(audio)  # raises AudioError naming the problem for unusable input
    print(f"{result.id}\t{result.text}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", default=DEMO_CLIP)
    add_model_argument(parser, default=DEFAULT_MODEL)
    args = parser.parse_args()
    with Engine(args.model) as engine:
        main(engine, args.audio)
