"""Where the speech is: Silero VAD over 16 kHz samples (the ``silero-vad`` wheel ships the ONNX model;
onnxruntime runs it, nothing is downloaded).

    split_at_pauses(samples)      # [(start, end), ...] sample ranges of speech, each <= 30 s
    has_speech(samples)           # False for silence, noise and hum: the no-speech gate

Long-audio mode (fireredasr_engine.long_audio), the facade's no-speech gate and ``fireredasr-serve``'s
segmented responses (fireredasr_vllm.segmented) all use these, so they find the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from silero_vad import get_speech_timestamps_sequence, load_silero_vad

from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE


@dataclass(frozen=True)
class SplitOptions:
    """Where to cut. Pauses shorter than ``min_pause_s`` stay inside a segment."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    min_pause_s: float = 0.5
    pad_s: float = 0.2  # silence kept around each speech region (halved when two regions are closer)
    threshold: float = 0.5  # Silero speech probability
    min_speech_s: float = 0.25  # shorter blips are dropped


@lru_cache(maxsize=1)
def vad_model():
    """The batched ("sequence") Silero model: stateless between calls, so threads may share it."""
    return load_silero_vad(sequence=True)


def split_at_pauses(samples: np.ndarray, options: SplitOptions = SplitOptions()) -> list[tuple[int, int]]:
    """16 kHz samples -> ``[(start, end), ...]`` sample ranges of speech, each <= ``max_seconds``."""
    regions = get_speech_timestamps_sequence(
        np.ascontiguousarray(samples, dtype=np.float32), vad_model(), threshold=options.threshold,
        sampling_rate=SAMPLE_RATE, min_speech_duration_ms=int(1000 * options.min_speech_s),
        max_speech_duration_s=options.max_seconds, min_silence_duration_ms=int(1000 * options.min_pause_s),
        speech_pad_ms=int(1000 * options.pad_s))
    return [(int(r["start"]), int(r["end"])) for r in regions]


def has_speech(samples: np.ndarray, options: SplitOptions = SplitOptions()) -> bool:
    """Does ``split_at_pauses`` find any speech (at least ``min_speech_s`` of it) in these samples?"""
    return bool(split_at_pauses(samples, options))
