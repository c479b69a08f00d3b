"""Use case 1: transcribe one audio file.

    python examples/transcribe_file.py [AUDIO] [--model trained|DIR]

Any format soundfile or PyAV reads, any sample rate or channel count: the engine converts to 16 kHz mono.
"""

import argparse
from contextlib import nullcontext
from pathlib import Path

from fireredasr_engine.engine import Engine

DEMO_CLIP = Path(__file__).resolve().parents[1] / "eval" / "demo" / "clips" / "demo_000.flac"


def main(engine: Engine | None = None, audio: str | Path = DEMO_CLIP, model: str = "trained"):
    """Transcribe ``audio``; builds an engine on ``model`` only when none is passed."""
    with Engine(model) if engine is None else nullcontext(engine) as engine:
        result = engine.transcribe(audio)  # raises AudioError naming the problem for unusable input
        print(f"{result.id}\t{result.text}")
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", default=DEMO_CLIP)
    parser.add_argument("--model", default="trained", help="'trained', 'tiny', an official release dir or a converted dir")
    args = parser.parse_args()
    main(audio=args.audio, model=args.model)
