"""Use case 2: transcribe a batch of files in one call (vLLM batches them continuously).

    python examples/transcribe_batch.py [AUDIO ...] [--model trained|DIR] [--decoding greedy|official|beam3|t0.7]

A file that cannot be read comes back with ``error`` set; the others are still transcribed.
"""

import argparse
from contextlib import nullcontext
from pathlib import Path

from fireredasr_engine.engine import Engine
from fireredasr_engine.options import parse_decoding

DEMO_CLIPS = sorted((Path(__file__).resolve().parents[1] / "eval" / "demo" / "clips").glob("*.flac"))[:8]


def main(engine: Engine | None = None, paths=DEMO_CLIPS, model: str = "trained", decoding: str = "greedy"):
    """Transcribe ``paths`` together; builds an engine on ``model`` only when none is passed."""
    with Engine(model) if engine is None else nullcontext(engine) as engine:
        results = engine.transcribe_many(paths, parse_decoding(decoding))
        for path, result in zip(paths, results):
            print(f"{path}: {result.text if result.ok else 'FAILED ' + result.error}")
        return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=DEMO_CLIPS)
    parser.add_argument("--model", default="trained", help="'trained', 'tiny', an official release dir or a converted dir")
    parser.add_argument("--decoding", default="greedy", help="greedy, official (beam 3 + penalty 3), beamN, tT")
    args = parser.parse_args()
    main(paths=args.paths, model=args.model, decoding=args.decoding)
