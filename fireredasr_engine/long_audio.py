"""Audio longer than the model's limit (30 s): split at pauses, transcribe the pieces concurrently, stitch.

Speech is found with Silero VAD (fireredasr_vllm.vad, shared with the no-speech gate and the server's
segmented answers). Each speech region, padded a little, becomes one segment, the way
FireRedASR2S feeds its VAD segments to the recognizer: the model sees utterance-sized inputs like
its training data, non-speech (long silences, music) is never decoded, and vLLM batches the
segments. Speech without a pause longer than the limit is cut at its longest short silence.

    engine.transcribe("lecture.flac", long_audio=True)   # the facade calls transcribe_long
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.timed_text import join_texts
from fireredasr_vllm.vad import SplitOptions, split_at_pauses, vad_model  # noqa: F401  (vad_model: re-exported)
from fireredasr_engine.options import NO_SPEECH, DecodingOptions, PreparedAudio, Segment, Transcript


@dataclass(frozen=True)
class Piece:
    """One piece of a long input (seconds from its start) and its own transcript."""

    start_s: float
    end_s: float
    transcript: Transcript


def stitch(id: str, duration_s: float, pieces: list[Piece]) -> Transcript:
    """One transcript from the ordered pieces: their texts joined, one timed segment per transcribed piece.

    When a piece failed, ``error`` names the first failed one and ``segments`` still keeps the others.
    No pieces (no speech found): empty text and segments, ``finish_reason`` ``NO_SPEECH``.
    """
    parts = [p.transcript for p in pieces]
    result = Transcript(id=id, duration_s=duration_s, finish_reason="stop" if pieces else NO_SPEECH,
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
    speech = replace(options, no_speech="keep")  # every piece is speech: no second look for the gate
    transcripts = await asyncio.gather(*[engine._generate(piece, speech) for piece in pieces])
    pieces = [Piece(a / SAMPLE_RATE, b / SAMPLE_RATE, t) for (a, b), t in zip(ranges, transcripts)]
    result = stitch(prepared.id, prepared.duration_s, pieces)
    result.latency_s = time.perf_counter() - started
    result.ttft_s = vad_s + (transcripts[0].ttft_s if transcripts else 0.0)
    return result
