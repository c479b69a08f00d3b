"""The bad-input corpus (conftest.py's ``bad_input_corpus``): every input gives a transcript or an error that
names the problem."""

import re

import numpy as np
import pytest

from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, load_audio
from fireredasr_engine.options import NO_SPEECH, DecodingOptions


NAMES = ["empty_file", "no_such_file", "directory", "zero_samples", "20ms", "truncated_header", "truncated_data",
         "random_bytes", "text_named_wav", "nan_samples", "inf_samples", "clipping", "very_loud_int16",
         "very_quiet", "silence", "stereo", "8kHz", "44.1kHz", "48kHz_array", "mp3", "flac", "ogg_vorbis", "35s"]
SILENT = ("silence", "very_quiet")  # zeros, and a clip at -80 dB: no speech for a detector (or a listener)


@pytest.fixture(scope="module")
def clip(demo_clips) -> np.ndarray:
    return load_audio(demo_clips[0])


@pytest.fixture(scope="module")
def batch(engine, bad_input_corpus, demo_clips):
    """The whole corpus in ONE transcribe_many call, a good clip after every bad item."""
    items, ids = [], []
    for name, (item, _, _) in bad_input_corpus.items():
        items += [item, demo_clips[len(ids) // 2 % len(demo_clips)]]
        ids += [name, f"good-after-{name}"]
    delivered = []
    results = engine.transcribe_many(items, ids=ids, on_result=delivered.append)
    return dict(zip(ids, results)), delivered


@pytest.fixture(scope="module")
def gated(engine, bad_input_corpus) -> dict:
    """The corpus again (bad items only) through the no-speech gate."""
    names = list(bad_input_corpus)
    results = engine.transcribe_many([bad_input_corpus[name][0] for name in names], DecodingOptions(no_speech="skip"),
                                     ids=names)
    return dict(zip(names, results))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gives_transcript_or_named_error(name, bad_input_corpus, batch):
    _, expected_error, seconds = bad_input_corpus[name]
    result = batch[0][name]
    assert result.id == name
    if expected_error is None:  # it transcribes
        assert result.ok, result.error
        assert result.output_tokens >= 1 and result.prompt_tokens > 0
        if seconds is not None:  # decoded, down-mixed and resampled to the right length
            assert result.duration_s == pytest.approx(seconds, abs=0.06)
    else:
        assert not result.ok and result.text == "" and result.output_tokens == 0
        assert name in result.error or str(bad_input_corpus[name][0]) in result.error  # it names the input
        assert re.search(expected_error, result.error), result.error


@pytest.mark.parametrize("name", NAMES)
def test_no_speech_gate_gives_silence_no_text_and_leaves_the_rest_as_it_was(name, batch, gated):
    ungated, result = batch[0][name], gated[name]
    if name in SILENT:
        assert ungated.ok and ungated.text  # without the gate the model invents a sentence for silence
        assert result.ok and (result.text, result.segments, result.output_tokens) == ("", (), 0)
        assert result.finish_reason == NO_SPEECH and result.duration_s == ungated.duration_s
    elif ungated.ok:
        assert result.ok and result.text == ungated.text and result.finish_reason == ungated.finish_reason
    else:
        assert result.error == ungated.error  # the same one-sentence error, the gate never sees such input


def test_no_finished_result_is_lost_and_engine_stays_up(engine, bad_input_corpus, batch, demo_clips):
    results, delivered = batch
    assert len(delivered) == len(results) == 2 * len(bad_input_corpus)
    good = [r for name, r in results.items() if name.startswith("good-after-")]
    assert all(r.ok and r.output_tokens >= 1 and r.text for r in good), [r.error for r in good if not r.ok]

    for name in ("random_bytes", "35s", "nan_samples"):  # the single-item call raises, naming the problem
        with pytest.raises(AudioError, match=bad_input_corpus[name][1]):
            engine.transcribe(bad_input_corpus[name][0], id=name)
    after = engine.transcribe(demo_clips[1])
    assert after.ok and after.output_tokens >= 1


def test_ten_minutes_needs_long_audio_mode(engine, clip):
    """10 minutes of mostly silence with a clip every 30 s: an error without long-audio mode,
    one transcript (a segment per clip, silence skipped) with it."""
    audio = np.zeros(600 * SAMPLE_RATE, np.float32)
    starts = [k * 30 * SAMPLE_RATE + SAMPLE_RATE for k in range(20)]
    for start in starts:
        audio[start:start + len(clip)] = clip
    with pytest.raises(AudioError, match=r"600\.0 s is longer than the model's 30 s limit"):
        engine.transcribe(audio, id="ten_minutes")

    result = engine.transcribe(audio, id="ten_minutes", long_audio=True)
    assert result.ok, result.error
    assert result.duration_s == pytest.approx(600.0)
    assert len(result.segments) == 20
    for segment, start in zip(result.segments, starts):
        assert segment.start_s <= start / SAMPLE_RATE + 0.1 and segment.end_s >= (start + len(clip)) / SAMPLE_RATE - 0.4
        assert segment.end_s - segment.start_s < 8 and segment.text
    assert result.output_tokens >= 20
