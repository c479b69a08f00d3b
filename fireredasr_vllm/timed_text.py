"""Timed text: a segment of an input and what was said in it, the segments' joined text, and the same
segments as subtitles, SubRip (``.srt``) and WebVTT (``.vtt``).

    to_srt(segments)            # "1\\n00:00:01,200 --> 00:00:04,900\\n你好\\n\\n..."
    to_vtt(segments)            # "WEBVTT\\n\\n00:00:01.200 --> 00:00:04.900\\n你好\\n\\n..."

One cue per segment that has text (whitespace collapsed: a cue never holds a blank line, which would end
it early); cues are numbered from 1 and timed to the millisecond. The engine's results
(fireredasr_engine.options.Transcript.segments, fireredasr_engine.subtitles) and ``fireredasr-serve``'s
``verbose_json`` / ``srt`` / ``vtt`` answers (fireredasr_vllm.segmented) are both written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FORMATS = ("srt", "vtt")
MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND = 3_600_000, 60_000, 1000


@dataclass(frozen=True)
class Segment:
    """A stretch of the input (seconds from its start) and what was said in it."""

    start_s: float
    end_s: float
    text: str


def join_texts(texts: Iterable[str]) -> str:
    """Concatenate segment texts; a space only between two Latin words (Mandarin has none)."""
    joined = ""
    for text in filter(None, texts):
        if joined and joined[-1].isascii() and joined[-1].isalnum() and text[0].isascii() and text[0].isalnum():
            joined += " "
        joined += text
    return joined


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS<decimal>mmm`` (hours grow past 99 when needed; negative times clamp to 0)."""
    ms = max(0, round(seconds * MS_PER_SECOND))
    hours, ms = divmod(ms, MS_PER_HOUR)
    minutes, ms = divmod(ms, MS_PER_MINUTE)
    secs, ms = divmod(ms, MS_PER_SECOND)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def cues(segments: Iterable[Segment], decimal: str) -> list[str]:
    """``start --> end\\ntext`` for each segment with text, in time order."""
    spoken = sorted((s for s in segments if s.text.strip()), key=lambda s: s.start_s)
    return [f"{timestamp(s.start_s, decimal)} --> {timestamp(max(s.end_s, s.start_s), decimal)}\n"
            f"{' '.join(s.text.split())}" for s in spoken]


def to_srt(segments: Iterable[Segment]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each cue."""
    return "".join(f"{number}\n{cue}\n\n" for number, cue in enumerate(cues(segments, ","), 1))


def to_vtt(segments: Iterable[Segment]) -> str:
    """WebVTT text: the ``WEBVTT`` header, then ``HH:MM:SS.mmm`` cues separated by blank lines."""
    return "WEBVTT\n\n" + "".join(f"{cue}\n\n" for cue in cues(segments, "."))
