"""Audio longer than the model's limit (30 s): split at pauses into pieces, and stitch the pieces' transcripts.

Speech is found with Silero VAD (fireredasr_vllm.vad, shared with the no-speech gate and the server's
segmented answers). Each speech region, padded a little, becomes one segment, the way
FireRedASR2S feeds its VAD segments to the recognizer: the model sees utterance-sized inputs like
its training data, non-speech (long silences, music) is never decoded, and vLLM batches the
segments. Speech without a pause longer than the limit is cut at its longest short silence.

    engine.transcribe("lecture.flac", long_audio=True)   # the facade splits, decodes the pieces at once, stitches
"""

from __future__ import annotations

from dataclasses import dataclass

from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.timed_text import join_texts
from fireredasr_vllm.vad import SplitOptions, split_at_pauses
from fireredasr_engine.options import NO_SPEECH, PreparedAudio, Segment, Transcript


@dataclass(frozen=True)
class Piece:
    """One piece of a long input: where it lies (seconds from the input's start) and its audio."""

    start_s: float
    end_s: float
    audio: PreparedAudio


def split(prepared: PreparedAudio, max_seconds: float) -> list[Piece]:
    """``prepared`` (of any length) as pieces of speech no longer than ``max_seconds``, in order; none when
    there is no speech. Named ``<id>@<start seconds>``."""
    ranges = split_at_pauses(prepared.samples, SplitOptions(max_seconds=max_seconds))
    return [Piece(a / SAMPLE_RATE, b / SAMPLE_RATE,
                  PreparedAudio(f"{prepared.id}@{a / SAMPLE_RATE:.2f}", prepared.samples[a:b])) for a, b in ranges]


def stitch(prepared: PreparedAudio, pieces: list[Piece], transcripts: list[Transcript], *,
           latency_s: float = 0.0, ttft_s: float = 0.0) -> Transcript:
    """One transcript from the pieces' transcripts (in order): their texts joined, one timed segment per
    transcribed piece.

    When a piece failed, ``error`` names the first failed one and ``segments`` still keeps the others.
    No pieces (no speech found): empty text and segments, ``finish_reason`` ``NO_SPEECH``.
    """
    failed = [(piece, t) for piece, t in zip(pieces, transcripts) if not t.ok]
    if failed:
        piece, first = failed[0]
        error = (f"{prepared.id}: {len(failed)} of {len(pieces)} segments failed; first, "
                 f"{piece.start_s:.1f}-{piece.end_s:.1f} s: {first.error}")
        text, token_ids, finish_reason = "", (), "stop"
    else:
        error, text = None, join_texts([t.text for t in transcripts])
        token_ids = [token for t in transcripts for token in t.token_ids]
        finish_reason = ("length" if any(t.finish_reason == "length" for t in transcripts) else
                         "stop" if pieces else NO_SPEECH)
    return Transcript(id=prepared.id, text=text, token_ids=token_ids, duration_s=prepared.duration_s,
                      prompt_tokens=sum(t.prompt_tokens for t in transcripts),
                      output_tokens=sum(t.output_tokens for t in transcripts),
                      latency_s=latency_s, ttft_s=ttft_s, finish_reason=finish_reason, error=error,
                      segments=[Segment(piece.start_s, piece.end_s, t.text)
                                for piece, t in zip(pieces, transcripts) if t.ok])
