"""Load test (loopback only): N concurrent transcriptions through the OpenAI server and the facade.

    python scripts/load_test.py --model trained --requests 200

1. starts ``fireredasr-serve`` on a free 127.0.0.1 port, sends N concurrent
   ``POST /v1/audio/transcriptions`` of the bundled clips (AsyncOpenAI), stops it;
2. builds the engine facade and sends the same N clips with ``transcribe_async`` (asyncio.gather).
Both bound the output like the facade does (one token per speech frame). Errors must be 0.
Writes ``bench/results/load_test.csv`` and ``.md``: errors, latency_p50/p99 (s), utts_per_s and RTFx (the names of
the results schema, eval/records/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.bundled import DEMO_CLIPS  # noqa: E402
from eval.records import speed  # noqa: E402
from eval.tables import markdown_table  # noqa: E402
from fireredasr_engine import Engine  # noqa: E402
from fireredasr_engine.cli import add_model_argument  # noqa: E402
from fireredasr_vllm import DEFAULT_MODEL  # noqa: E402
from fireredasr_vllm.audio import SAMPLE_RATE, load_audio, num_speech_tokens  # noqa: E402
from fireredasr_vllm.serve import SERVED_MODEL_NAME  # noqa: E402
from testkit.servers import ServerDidNotStart, free_port, start_server, stop_server, wait_healthy  # noqa: E402

CLIPS = sorted(DEMO_CLIPS.glob("*.flac"))


async def timed(coro) -> tuple[float, str | None]:
    started = time.perf_counter()
    try:
        error = await coro
    except Exception as exc:  # a failed request is counted, not fatal
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


async def timed_pass(one, clips: list[Path]) -> tuple[list[tuple[float, str | None]], float]:
    """``one(path)`` for every clip at once after one warm-up request: (latency, error) each, wall seconds."""
    await one(clips[0])
    started = time.perf_counter()
    outcomes = await asyncio.gather(*[timed(one(path)) for path in clips])
    return outcomes, time.perf_counter() - started


async def server_requests(port: int, clips: list[Path]) -> tuple[list[tuple[float, str | None]], float]:
    import openai  # lazy: the OpenAI client is a dev extra, needed by this pass only

    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                timeout=3600)
    limits = {path: num_speech_tokens(len(load_audio(path))) for path in set(clips)}
    data = {path: path.read_bytes() for path in set(clips)}

    async def one(path: Path) -> str | None:
        result = await client.audio.transcriptions.create(
            model=SERVED_MODEL_NAME, file=(path.name, data[path]),
            extra_body={"max_completion_tokens": limits[path]})
        return None if result.text else "empty text"

    return await timed_pass(one, clips)


async def facade_requests(engine, clips: list[Path]) -> tuple[list[tuple[float, str | None]], float]:
    audio = {path: load_audio(path) for path in set(clips)}

    async def one(path: Path) -> str | None:
        result = await engine.transcribe_async(audio[path], id=path.stem)
        return result.error or (None if result.text else "empty text")

    return await timed_pass(one, clips)


def summarize(path: str, outcomes, wall_s: float, audio_s: float) -> dict:
    """The pass's figures in the results schema's names (eval.records.speed: seconds, RTFx, utts_per_s)."""
    errors = [error for _, error in outcomes if error]
    figures = speed(audio_seconds=audio_s, wall_seconds=wall_s, utterances=len(outcomes), output_tokens=0,
                    latencies=[latency for latency, _ in outcomes])
    return {"path": path, "requests": len(outcomes), "errors": len(errors),
            **{key: figures[key] for key in ("latency_p50", "latency_p99", "wall_seconds", "utts_per_s", "rtfx")},
            "first_error": errors[0] if errors else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_argument(parser, default=DEFAULT_MODEL)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "load_test")
    parser.add_argument("--start-timeout", type=float, default=900)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)

    clips = [CLIPS[i % len(CLIPS)] for i in range(args.requests)]
    audio_s = sum(len(load_audio(path)) for path in clips) / SAMPLE_RATE
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="load_test-")) / "server.log"
    server = start_server(["--model", args.model, "--host", "127.0.0.1", "--port", str(port)], log, cwd=REPO)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, log, args.start_timeout)
        rows = [summarize("OpenAI server (HTTP, AsyncOpenAI)", *asyncio.run(server_requests(port, clips)), audio_s)]
    except ServerDidNotStart as error:
        raise SystemExit(f"fireredasr-serve {error}") from None
    finally:
        stop_server(server)

    with Engine(args.model) as engine:
        rows.append(summarize("engine facade (transcribe_async)", *asyncio.run(facade_requests(engine, clips)),
                              audio_s))
        device = engine.describe()["device"]

    table = pd.DataFrame(rows)
    table.to_csv(args.output.with_suffix(".csv"), index=False)
    ratio = table["utts_per_s"].iloc[1] / table["utts_per_s"].iloc[0]
    header = (f"# Load test: {args.requests} concurrent requests, model `{args.model}`, {device}\n\n"
              f"{audio_s:.0f} s of bundled clips; output bounded to one token per speech frame. "
              f"Command: `python scripts/load_test.py --model {args.model} --requests {args.requests}`. "
              f"Load average at the end: {os.getloadavg()[0]:.1f}; absolute CPU times are indicative only. "
              f"Facade / server throughput: {ratio:.2f}x.")
    args.output.with_suffix(".md").write_text(f"{header}\n\n{markdown_table(table.drop(columns='first_error'))}\n")
    print(table.to_string(index=False))
    if table["errors"].sum():
        raise SystemExit("errors: " + "; ".join(table["first_error"][table["errors"] > 0]))


if __name__ == "__main__":
    main()
