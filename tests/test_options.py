"""The result record: a ``Transcript`` built once, frozen, and written as the same JSON as ever."""

import dataclasses
import json

import numpy as np
import pytest

from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_engine.long_audio import Piece, stitch
from fireredasr_engine.options import NO_SPEECH, PreparedAudio, Segment, Transcript

CLIP = PreparedAudio("clip", np.zeros(SAMPLE_RATE * 3 // 2, np.float32))  # 1.5 s


def record(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), ensure_ascii=False)


def test_a_decoded_clip_keeps_its_json_record():
    decoded = Transcript.decoded(CLIP, "你好", [11, 12], prompt_tokens=40, output_tokens=3, latency_s=0.25,
                                 ttft_s=0.125, queue_s=0.0, finish_reason="stop")
    assert record(decoded) == (
        '{"id": "clip", "text": "你好", "token_ids": [11, 12], "duration_s": 1.5, "prompt_tokens": 40, '
        '"output_tokens": 3, "latency_s": 0.25, "ttft_s": 0.125, "queue_s": 0.0, "finish_reason": "stop", '
        '"error": null, "segments": [{"start_s": 0.0, "end_s": 1.5, "text": "你好"}]}')
    assert decoded.to_dict()["token_ids"] == [11, 12] and decoded.rtf == pytest.approx(0.25 / 1.5)


def test_failed_and_no_speech_records():
    assert record(Transcript.failed(CLIP, "clip: cannot read audio")) == (
        '{"id": "clip", "text": "", "token_ids": [], "duration_s": 1.5, "prompt_tokens": 0, "output_tokens": 0, '
        '"latency_s": 0.0, "ttft_s": 0.0, "queue_s": null, "finish_reason": null, '
        '"error": "clip: cannot read audio", "segments": []}')
    silent = Transcript.no_speech(CLIP)
    assert (silent.ok, silent.text, silent.segments, silent.finish_reason) == (True, "", (), NO_SPEECH)
    assert record(silent) == (
        '{"id": "clip", "text": "", "token_ids": [], "duration_s": 1.5, "prompt_tokens": 0, "output_tokens": 0, '
        '"latency_s": 0.0, "ttft_s": 0.0, "queue_s": null, "finish_reason": "no_speech", "error": null, '
        '"segments": []}')


def test_a_stitched_long_input_keeps_its_json_record():
    parts = [Transcript("p0", "你好", [1, 2], output_tokens=3, prompt_tokens=20, finish_reason="stop"),
             Transcript("p1", "world", [3], output_tokens=2, prompt_tokens=10, finish_reason="length")]
    pieces = [Piece(0.5, 1.0, PreparedAudio("p0", None)), Piece(1.25, 1.5, PreparedAudio("p1", None))]
    assert record(stitch(CLIP, pieces, parts, latency_s=0.5, ttft_s=0.25)) == (
        '{"id": "clip", "text": "你好world", "token_ids": [1, 2, 3], "duration_s": 1.5, "prompt_tokens": 30, '
        '"output_tokens": 5, "latency_s": 0.5, "ttft_s": 0.25, "queue_s": null, "finish_reason": "length", '
        '"error": null, "segments": [{"start_s": 0.5, "end_s": 1.0, "text": "你好"}, '
        '{"start_s": 1.25, "end_s": 1.5, "text": "world"}]}')


def test_a_transcript_is_frozen_and_keeps_tuples():
    transcript = Transcript(id="x", token_ids=[1, 2], segments=[Segment(0.0, 1.0, "a")])
    assert transcript.token_ids == (1, 2) and transcript.segments == (Segment(0.0, 1.0, "a"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        transcript.text = "changed"
