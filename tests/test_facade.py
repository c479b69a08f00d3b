"""fireredasr_engine/facade.py: the no-speech gate (``DecodingOptions(no_speech="skip")``), on the in-process engine
and on ``Engine.connect`` (the session's shared server, tests/conftest.py ``asr_servers``)."""

import numpy as np
import pytest

from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_engine.engine import Engine
from fireredasr_engine.options import NO_SPEECH, DecodingOptions

SKIP, KEEP = DecodingOptions(no_speech="skip"), DecodingOptions(no_speech="keep")


@pytest.fixture(scope="module")
def near_silence() -> np.ndarray:
    """5 s of faint noise (-60 dB): decoded as it is, the trained model invents a sentence for it."""
    return (np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE) * 1e-3).astype(np.float32)


def assert_no_speech(transcript, seconds: float) -> None:
    assert transcript.ok, transcript.error
    assert (transcript.text, transcript.segments, transcript.output_tokens) == ("", (), 0)
    assert transcript.finish_reason == NO_SPEECH and transcript.duration_s == pytest.approx(seconds)


def test_gate_turns_the_invented_sentence_for_near_silence_into_nothing(engine, near_silence):
    assert engine.transcribe(near_silence, KEEP).text  # e.g. 市民可以在网上预约经验: the model's guess at noise
    assert_no_speech(engine.transcribe(near_silence, SKIP), 5.0)


def test_gate_leaves_every_speech_clip_as_it_was(engine, demo_clips):
    kept = engine.transcribe_many(demo_clips, KEEP)
    gated = engine.transcribe_many(demo_clips, SKIP)
    assert [t.text for t in gated] == [t.text for t in kept] and all(t.text for t in kept)
    assert all(t.finish_reason != NO_SPEECH and t.segments for t in gated)


def test_gate_works_over_a_server_too(asr_servers, near_silence, demo_clips, references):
    with Engine.connect(asr_servers.url(0)) as remote:
        assert remote.transcribe(near_silence, KEEP).text
        assert_no_speech(remote.transcribe(near_silence, SKIP), 5.0)
        spoken = remote.transcribe(demo_clips[0], SKIP)
        assert spoken.text.rstrip("\ufffd") == references[demo_clips[0].stem]


def test_an_unknown_gate_mode_is_refused():
    with pytest.raises(ValueError, match="no_speech='Skip': use one of keep, skip"):
        DecodingOptions(no_speech="Skip")
