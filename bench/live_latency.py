"""Live transcription's latency and memory: the long bundled recording (57 s, 8 sentences) played through
``Engine.transcribe_stream`` in real time, once or looped for minutes.

    python -m bench.live_latency                                   # one pass: latencies, CER next to offline
    python -m bench.live_latency --minutes 10 --out soak.json      # looped: RSS, errors, latency per pass

First partial: seconds from where a sentence's speech starts (Silero VAD over the whole recording, unpadded)
to its first partial; final: from where its speech ends to its final (this includes the 0.5 s of silence the
live path waits for). RSS: this process and its children (vLLM's engine core), sampled after every pass.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jiwer
import numpy as np
import psutil

from eval.bundled import long_recording
from eval.live import CHUNK_S, final_text, play, sentence_latencies, speech_regions
from fireredasr_engine.cli import add_model_argument
from fireredasr_engine.engine import Engine
from fireredasr_vllm.audio import SAMPLE_RATE

MB = 1 << 20


def rss_mb() -> float:
    """Resident memory of this process and its children (MB)."""
    me = psutil.Process()
    return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / MB


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(engine, minutes: float = 0.0, speed: float = 1.0, chunk_s: float = CHUNK_S) -> dict:
    """Play the recording once (or for ``minutes``, looped); per pass its latencies, CER, errors and RSS."""
    samples, sentences = long_recording()
    reference = "".join(sentences)
    regions = speech_regions(samples)
    offline = engine.transcribe(samples, long_audio=True).text
    engine.transcribe_many([samples[:5 * SAMPLE_RATE]] * 2)  # warm
    passes, started = [], time.perf_counter()
    while not passes or time.perf_counter() - started < 60 * minutes:
        error = None
        try:
            timed = play(engine, samples, chunk_s=chunk_s, speed=speed)
        except Exception as failure:  # counted and reported; the loop goes on
            error, timed = f"{type(failure).__name__}: {failure}", []
        table = sentence_latencies(timed, regions, speed)
        passes.append({"pass": len(passes) + 1, "error": error, "sentences": len(table),
                       "first_partial_p50_s": float(table["first_partial_s"].median()),
                       "final_p50_s": float(table["final_s"].median()),
                       "first_partial_s": table["first_partial_s"].round(3).tolist(),
                       "final_s": table["final_s"].round(3).tolist(),
                       "cer": jiwer.cer(reference, final_text(timed)) if timed else None,
                       "rss_mb": round(rss_mb(), 1), "load": load()})
        print(json.dumps({k: v for k, v in passes[-1].items() if not k.endswith("_s") or "p50" in k}), flush=True)
    first_partials = np.concatenate([p["first_partial_s"] for p in passes])
    finals = np.concatenate([p["final_s"] for p in passes])
    return {"speed": speed, "chunk_s": chunk_s, "minutes": round((time.perf_counter() - started) / 60, 2),
            "offline_cer": jiwer.cer(reference, offline),
            "first_partial_p50_s": float(np.nanmedian(first_partials)),
            "first_partial_p90_s": float(np.nanpercentile(first_partials, 90)),
            "final_p50_s": float(np.median(finals)), "final_p90_s": float(np.percentile(finals, 90)),
            "errors": sum(p["error"] is not None for p in passes),
            "rss_growth_mb": passes[-1]["rss_mb"] - passes[0]["rss_mb"], "passes": passes}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_latency", description=__doc__.split("\n\n")[0])
    add_model_argument(parser, default="trained")
    parser.add_argument("--minutes", type=float, default=0.0, help="loop the recording this long (0: one pass)")
    parser.add_argument("--speed", type=float, default=1.0, help="x real time (1: as a microphone delivers)")
    parser.add_argument("--chunk-s", type=float, default=CHUNK_S, help="seconds of audio per chunk")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    print(load(), flush=True)
    with Engine(args.model) as engine:
        result = measure(engine, args.minutes, args.speed, args.chunk_s)
    result["load_at_end"] = load()
    summary = {k: v for k, v in result.items() if k != "passes"}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
