"""Use case 4: many concurrent requests through ``Engine.transcribe_async`` (e.g. a web service).

    python examples/transcribe_async.py [AUDIO ...] [--model trained|DIR] [--concurrency 16]

Each request is awaited on its own; vLLM batches whatever is in flight. ``concurrency`` caps the
requests in flight, as a server's worker pool would.
"""

import argparse
import asyncio
import time

from eval.bundled import DEMO_CLIPS as DEMO_DIR
from fireredasr_engine import Engine
from fireredasr_engine.cli import add_model_argument
from fireredasr_vllm import DEFAULT_MODEL

DEMO_CLIPS = sorted(DEMO_DIR.glob("*.flac"))


async def transcribe_all(engine: Engine, paths, concurrency: int):
    """All ``paths`` at once, at most ``concurrency`` in flight; results in input order."""
    slots = asyncio.Semaphore(concurrency)

    async def one(path):
        async with slots:
            return await engine.transcribe_async(path)

    return await asyncio.gather(*(one(path) for path in paths))


def main(engine: Engine, paths=DEMO_CLIPS, concurrency: int = 16):
    """Run the concurrent requests."""
    started = time.perf_counter()
    results = asyncio.run(transcribe_all(engine, paths, concurrency))
    elapsed = time.perf_counter() - started
    for result in results:
        print(f"{result.id}: {result.text if result.ok else 'FAILED ' + result.error}")
    print(f"{len(results)} requests in {elapsed:.2f} s ({len(results) / elapsed:.1f} requests/s, "
          f"mean latency {sum(r.latency_s for r in results) / len(results):.2f} s)")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=DEMO_CLIPS)
    add_model_argument(parser, default=DEFAULT_MODEL)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with Engine(args.model) as engine:
        main(engine, args.paths, args.concurrency)
