"""Audio longer than the model's limit (30 s): split at pauses, transcribe the pieces concurrently, stitch.

Speech is found with Silero VAD (the ``silero-vad`` wheel ships the ONNX model; onnxruntime runs it,
nothing is downloaded). Each speech region, padded a little, becomes one segment, the way
FireRedASR2S feeds its VAD segments to the recognizer: the model sees utterance-sized inputs like
its training data, non-speech (long silences, music) is never decoded, and vLLM batches the
segments. Speech without a pause longer than the limit is cut at its longest short silence.

    engine.transcribe("lecture.flac", long_audio=True)   # the facade calls transcribe_long
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from silero_vad import get_speech_timestamps_sequence, load_silero_vad

from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE
from fireredasr_engine.options import DecodingOptions, PreparedAudio, Segment, Transcript


@dataclass(frozen=True)
class SplitOptions:
    """Where to cut. Pauses shorter than ``min_pause_s`` stay inside a segment."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    min_pause_s: float = 0.5
    pad_s: float = 0.2  # silence kept around each speech region (halved when two regions are closer)
    threshold: float = 0.5  # Silero speech probability
    min_speech_s: float = 0.25  # shorter blips are dropped


@dataclass(frozen=True)
class Piece:
    """One piece of a long input (seconds from its start) and its own transcript."""

    start_s: float
    end_s: float
    transcript: Transcript


@lru_cache(maxsize=1)
def vad_model():
    return load_silero_vad(sequence=True)


def split_at_pauses(samples: np.ndarray, options: SplitOptions = SplitOptions()) -> list[tuple[int, int]]:
    """16 kHz samples -> ``[(start, end), ...]`` sample ranges of speech, each <= ``max_seconds``."""
    regions = get_speech_timestamps_sequence(
        np.ascontiguousarray(samples, dtype=np.float32), vad_model(), threshold=options.threshold,
        sampling_rate=SAMPLE_RATE, min_speech_duration_ms=int(1000 * options.min_speech_s),
        max_speech_duration_s=options.max_seconds, min_silence_duration_ms=int(1000 * options.min_pause_s),
        speech_pad_ms=int(1000 * options.pad_s))
    return [(int(r["start"]), int(r["end"])) for r in regions]


def join_texts(texts: list[str]) -> str:
    """Concatenate segment texts; a space only between two Latin words (Mandarin has none)."""
    joined = ""
    for text in filter(None, texts):
        if joined and joined[-1].isascii() and joined[-1].isalnum() and text[0].isascii() and text[0].isalnum():
            joined += " "
        joined += text
    return joined


def stitch(id: str, duration_s: float, pieces: list[Piece]) -> Transcript:
    """One transcript from the ordered pieces: their texts joined, one timed segment per transcribed piece.

    When a piece failed, ``error`` names the first failed one and ``segments`` still keeps the others.
    """
    parts = [p.transcript for p in pieces]
    result = Transcript(id=id, duration_s=duration_s, finish_reason="stop",
                        prompt_tokens=sum(p.prompt_tokens for p in parts),
                        output_tokens=sum(p.output_tokens for p in parts),
                        segments=[Segment(p.start_s, p.end_s, p.transcript.text) for p in pieces if p.transcript.ok])
    failed = [p for p in pieces if not p.transcript.ok]
    if failed:
        first = failed[0]
        result.error = (f"{id}: {len(failed)} of {len(pieces)} segments failed; first, "
                        f"{first.start_s:.1f}-{first.end_s:.1f} s: {first.transcript.error}")
        return result
    result.token_ids = [t for p in parts for t in p.token_ids]
    result.text = join_texts([p.text for p in parts])
    if any(p.finish_reason == "length" for p in parts):
        result.finish_reason = "length"
    return result


async def transcribe_long(engine, prepared, options: DecodingOptions,
                          split: SplitOptions | None = None) -> Transcript:
    """Split ``prepared`` (a PreparedAudio of any length), decode all pieces at once, stitch in order.

    Runs on the engine's event loop; the VAD runs in a worker thread so other requests keep flowing.
    """
    started = time.perf_counter()
    split = split or SplitOptions(max_seconds=engine.max_audio_seconds)
    ranges = await asyncio.to_thread(split_at_pauses, prepared.samples, split)
    vad_s = time.perf_counter() - started
    pieces = [PreparedAudio(f"{prepared.id}@{a / SAMPLE_RATE:.2f}", prepared.samples[a:b]) for a, b in ranges]
    transcripts = await asyncio.gather(*[engine._generate(piece, options) for piece in pieces])
    pieces = [Piece(a / SAMPLE_RATE, b / SAMPLE_RATE, t) for (a, b), t in zip(ranges, transcripts)]
    result = stitch(prepared.id, prepared.duration_s, pieces)
    result.latency_s = time.perf_counter() - started
    result.ttft_s = vad_s + (transcripts[0].ttft_s if transcripts else 0.0)
    return result
