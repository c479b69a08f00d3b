"""Use case 2: transcribe a batch of files in one call (vLLM batches them continuously).

    python examples/transcribe_batch.py [AUDIO ...] [--model trained|DIR] [--decoding greedy|official|beam3|t0.7]

A file that cannot be read comes back with ``error`` set; the others are still transcribed.
"""

import argparse

from eval.bundled import DEMO_CLIPS as DEMO_DIR
from fireredasr_engine import Engine, parse_decoding
from fireredasr_engine.cli import add_decoding_argument, add_model_argument
from fireredasr_vllm import DEFAULT_MODEL

DEMO_CLIPS = sorted(DEMO_DIR.glob("*.flac"))[:8]


def main(engine: Engine, paths=DEMO_CLIPS, decoding: str = "greedy"):
    """Transcribe ``paths`` together."""
    results = engine.transcribe_many(paths, parse_decoding(decoding))
    for path, result in zip(paths, results):
        print(f"{path}: {result.text if result.ok else 'FAILED ' + result.error}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=DEMO_CLIPS)
    add_model_argument(parser, default=DEFAULT_MODEL)
    add_decoding_argument(parser)
    args = parser.parse_args()
    with Engine(args.model) as engine:
        main(engine, args.paths, args.decoding)
