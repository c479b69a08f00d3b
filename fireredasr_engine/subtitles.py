"""Subtitles from timed segments: SubRip (``.srt``) and WebVTT (``.vtt``) files.

    to_srt(transcript.segments)            # "1\\n00:00:01,200 --> 00:00:04,900\\n你好\\n\\n..."
    to_vtt(transcript.segments)            # "WEBVTT\\n\\n00:00:01.200 --> 00:00:04.900\\n你好\\n\\n..."
    write_subtitles("talk.srt", transcript.segments)   # format from the suffix (or fmt="vtt")

The formatting is ``fireredasr_vllm.timed_text`` (``fireredasr-serve`` writes the same cues for
``response_format=srt`` / ``vtt``); this module adds the files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fireredasr_vllm.timed_text import FORMATS, Segment, timestamp, to_srt, to_vtt  # noqa: F401  (re-exported)


def write_subtitles(path: str | Path, segments: Iterable[Segment], fmt: str | None = None) -> Path:
    """Write ``segments`` as ``fmt`` (default: the file's suffix, ``srt`` or ``vtt``), UTF-8."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown subtitle format '{fmt}'; use one of {', '.join(FORMATS)}")
    path.write_text((to_srt if fmt == "srt" else to_vtt)(segments), encoding="utf-8")
    return path
