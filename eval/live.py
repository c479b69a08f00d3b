"""How fast live transcription answers: play a recording through ``transcribe_stream`` in (simulated) real time
and time each event against where its sentence's speech really starts and ends.

    timed = play(engine, samples)                    # chunks of 0.1 s, paced as a microphone delivers them
    table = sentence_latencies(timed, speech_regions(samples))
    table[["first_partial_s", "final_s"]].median()   # seconds after the speech starts / ends

Where the speech is comes from Silero VAD over the whole recording without padding (the offline long-audio
splitter), so the figures include the live path's own wait for the end of a sentence (its silence rule).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fireredasr_engine.long_audio import SplitOptions, join_texts, split_at_pauses
from fireredasr_engine.options import DecodingOptions
from fireredasr_engine.stream import LIVE, Final, Partial, StreamOptions
from fireredasr_vllm.audio import SAMPLE_RATE

CHUNK_S = 0.1  # what a microphone delivers at a time
LATENCY_COLUMNS = ["sentence", "start_s", "end_s", "speech_start_s", "speech_end_s", "text", "partials",
                   "first_partial_s", "final_s"]


@dataclass(frozen=True)
class TimedEvent:
    """An event and when it came: ``wall_s`` seconds after the playback began."""

    event: Partial | Final
    wall_s: float


def paced_chunks(samples: np.ndarray, started: float, chunk_s: float = CHUNK_S,
                 speed: float = 1.0) -> Iterator[np.ndarray]:
    """``samples`` in chunks, each given when its last sample would have been heard at ``speed`` x real time
    (from ``started``, a ``time.perf_counter`` value); ``speed=inf``: at once."""
    size = int(chunk_s * SAMPLE_RATE)
    for at in range(0, len(samples), size):
        wait = started + (at + size) / SAMPLE_RATE / speed - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield samples[at:at + size]


def play(engine, samples: np.ndarray, *, chunk_s: float = CHUNK_S, speed: float = 1.0,
         options: DecodingOptions = LIVE, stream_options: StreamOptions = StreamOptions()) -> list[TimedEvent]:
    """Stream 16 kHz ``samples`` through ``engine.transcribe_stream`` at ``speed`` x real time; every event, timed."""
    started = time.perf_counter()
    chunks = paced_chunks(samples, started, chunk_s, speed)
    return [TimedEvent(event, time.perf_counter() - started)
            for event in engine.transcribe_stream(chunks, options, stream_options)]


def speech_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    """Where the speech is (seconds), from Silero VAD over the whole recording, unpadded."""
    return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in split_at_pauses(samples, SplitOptions(pad_s=0.0))]


def sentence_latencies(timed: list[TimedEvent], regions: list[tuple[float, float]], speed: float = 1.0) -> pd.DataFrame:
    """One row per final sentence: its times, the speech region it holds (the one it overlaps most), how many
    partials it had, and in wall seconds the first partial's delay after its speech started and the final's
    after its speech ended (NaN when it had no partial); ``speed``: the one ``play`` used."""
    rows = []
    for number, final in enumerate((t for t in timed if isinstance(t.event, Final)), start=1):
        segment = final.event.segment
        speech_start, speech_end = max(regions, key=lambda r: min(r[1], segment.end_s) - max(r[0], segment.start_s))
        partials = [t.wall_s for t in timed if isinstance(t.event, Partial) and t.event.start_s == segment.start_s]
        rows.append({"sentence": number, "start_s": segment.start_s, "end_s": segment.end_s,
                     "speech_start_s": speech_start, "speech_end_s": speech_end, "text": segment.text,
                     "partials": len(partials),
                     "first_partial_s": min(partials) - speech_start / speed if partials else np.nan,
                     "final_s": final.wall_s - speech_end / speed})
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)


def final_text(timed: list[TimedEvent]) -> str:
    """The committed sentences joined, what a live caption ends with."""
    return join_texts([t.event.segment.text for t in timed if isinstance(t.event, Final)])
