"""fireredasr_engine/subtitles.py: SRT and VTT that the reference parsers (``srt``, ``webvtt-py``) read back."""

import datetime as dt

import pytest
import srt
import webvtt

from fireredasr_engine.options import Segment
from fireredasr_engine.subtitles import timestamp, to_srt, to_vtt, write_subtitles

SEGMENTS = [Segment(0.0, 2.5, "你好 世界"), Segment(3.2, 3.2004, "短"), Segment(4.0, 5.0, "  "),
            Segment(3661.0015, 3725.999, "one\n\ntwo  three")]
SPOKEN = [(0.0, 2.5, "你好 世界"), (3.2, 3.2, "短"), (3661.002, 3725.999, "one two three")]


def test_timestamps_round_to_milliseconds_and_carry():
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(59.9996, ".") == "00:01:00.000"
    assert timestamp(3661.0015, ",") == "01:01:01,002"
    assert timestamp(360000.25, ".") == "100:00:00.250"
    assert timestamp(-0.3, ",") == "00:00:00,000"


def test_srt_parses_back_with_numbered_cues_and_no_blank_text(tmp_path):
    text = to_srt(SEGMENTS)
    assert text.startswith("1\n00:00:00,000 --> 00:00:02,500\n你好 世界\n\n2\n")
    cues = list(srt.parse(text))
    assert [c.index for c in cues] == [1, 2, 3]
    assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == SPOKEN
    assert cues[2].end == dt.timedelta(hours=1, minutes=2, seconds=5, milliseconds=999)
    path = write_subtitles(tmp_path / "talk.srt", SEGMENTS)
    assert path.read_text(encoding="utf-8") == text


def test_vtt_parses_back_with_header(tmp_path):
    text = to_vtt(SEGMENTS)
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n")
    path = write_subtitles(tmp_path / "talk.txt", SEGMENTS, fmt="vtt")
    cues = webvtt.read(str(path))
    assert [(c.start, c.end, c.text) for c in cues] == [("00:00:00.000", "00:00:02.500", "你好 世界"), ("00:00:03.200", "00:00:03.200", "短"),
                               ("01:01:01.002", "01:02:05.999", "one two three")]


def test_empty_and_unknown_format():
    assert to_srt([]) == "" and to_vtt([]) == "WEBVTT\n\n"
    with pytest.raises(ValueError, match="unknown subtitle format 'ass'; use one of srt, vtt"):
        write_subtitles("x.ass", SEGMENTS)
