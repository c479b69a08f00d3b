"""Subtitles from timed segments: SubRip (``.srt``) and WebVTT (``.vtt``).

    to_srt(transcript.segments)            # "1\\n00:00:01,200 --> 00:00:04,900\\n你好\\n\\n..."
    to_vtt(transcript.segments)            # "WEBVTT\\n\\n00:00:01.200 --> 00:00:04.900\\n你好\\n\\n..."
    write_subtitles("talk.srt", transcript.segments)   # format from the suffix (or fmt="vtt")

One cue per segment that has text (whitespace collapsed: a cue never holds a blank line, which would end
it early); cues are numbered from 1 and timed to the millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fireredasr_engine.options import Segment

FORMATS = ("srt", "vtt")
MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND = 3_600_000, 60_000, 1000


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


def write_subtitles(path: str | Path, segments: Iterable[Segment], fmt: str | None = None) -> Path:
    """Write ``segments`` as ``fmt`` (default: the file's suffix, ``srt`` or ``vtt``), UTF-8."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown subtitle format '{fmt}'; use one of {', '.join(FORMATS)}")
    path.write_text((to_srt if fmt == "srt" else to_vtt)(segments), encoding="utf-8")
    return path
