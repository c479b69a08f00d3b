"""The bad-input corpus: every input gives a transcript or an error that names the problem."""

import io
import re

import numpy as np
import pytest
import soundfile as sf

from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, load_audio, resample

TRANSCRIBES = None  # expected outcome: a transcript


def encode(samples: np.ndarray, rate: int = SAMPLE_RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip(demo_clips) -> np.ndarray:
    return load_audio(demo_clips[0])


@pytest.fixture(scope="module")
def corpus(clip, tmp_path_factory) -> dict[str, tuple[object, str | None, float | None]]:
    """name -> (input, expected error pattern or TRANSCRIBES, expected duration in s)."""
    folder = tmp_path_factory.mktemp("bad")
    seconds = len(clip) / SAMPLE_RATE
    wav = encode(clip)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("这不是音频, just a text file\n" * 20, encoding="utf-8")
    with_nan, with_inf = clip.copy(), clip.copy()
    with_nan[1000], with_inf[2000] = np.nan, np.inf
    speech_35s = np.tile(clip, int(35 / seconds) + 1)[:35 * SAMPLE_RATE]
    return {
        "empty_file": (folder / "empty.wav", r"empty \(0 bytes\)", None),
        "no_such_file": (folder / "missing.wav", "no such file", None),
        "directory": (folder, "is a directory", None),
        "zero_samples": (encode(np.zeros(0, np.float32)), "contains 0 samples", None),
        "20ms": (encode(clip[:320]), r"20\.0 ms is too short", None),
        "truncated_header": (wav[:30], "cannot decode as audio", None),
        "truncated_data": (wav[:len(wav) // 2], TRANSCRIBES, None),
        "random_bytes": (np.random.default_rng(0).bytes(20000), "cannot decode as audio", None),
        "text_named_wav": (folder / "notes.wav", r"cannot decode as audio \(text, not audio\)", None),
        "nan_samples": (with_nan, "NaN or infinite", None),
        "inf_samples": (with_inf, "NaN or infinite", None),
        "clipping": (np.clip(clip * 30, -1, 1), TRANSCRIBES, seconds),
        "very_loud_int16": ((np.clip(clip * 30, -1, 1) * 32767).astype(np.int16), TRANSCRIBES, seconds),
        "very_quiet": (clip * 1e-4, TRANSCRIBES, seconds),
        "silence": (np.zeros(3 * SAMPLE_RATE, np.float32), TRANSCRIBES, 3.0),
        "stereo": (encode(np.stack([clip, 0.5 * clip], axis=1)), TRANSCRIBES, seconds),
        "8kHz": (encode(resample(clip, SAMPLE_RATE, 8000), 8000), TRANSCRIBES, seconds),
        "44.1kHz": (encode(resample(clip, SAMPLE_RATE, 44100), 44100), TRANSCRIBES, seconds),
        "48kHz_array": ((resample(clip, SAMPLE_RATE, 48000), 48000), TRANSCRIBES, seconds),
        "mp3": (encode(clip, fmt="MP3"), TRANSCRIBES, seconds),
        "flac": (encode(clip, fmt="FLAC"), TRANSCRIBES, seconds),
        "ogg_vorbis": (encode(clip, fmt="OGG", subtype="VORBIS"), TRANSCRIBES, seconds),
        "35s": (speech_35s, r"35\.0 s is longer than the model's 30 s limit.*long_audio=True", None),
    }


@pytest.fixture(scope="module")
def batch(engine, corpus, demo_clips):
    """The whole corpus in ONE transcribe_many call, a good clip after every bad item."""
    items, ids = [], []
    for name, (item, _, _) in corpus.items():
        items += [item, demo_clips[len(ids) // 2 % len(demo_clips)]]
        ids += [name, f"good-after-{name}"]
    delivered = []
    results = engine.transcribe_many(items, ids=ids, on_result=delivered.append)
    return dict(zip(ids, results)), delivered


@pytest.mark.parametrize("name", [
    "empty_file", "no_such_file", "directory", "zero_samples", "20ms", "truncated_header", "truncated_data",
    "random_bytes", "text_named_wav", "nan_samples", "inf_samples", "clipping", "very_loud_int16",
    "very_quiet", "silence", "stereo", "8kHz", "44.1kHz", "48kHz_array", "mp3", "flac", "ogg_vorbis", "35s"])
def test_bad_input_gives_transcript_or_named_error(name, corpus, batch):
    _, expected_error, seconds = corpus[name]
    result = batch[0][name]
    assert result.id == name
    if expected_error is TRANSCRIBES:
        assert result.ok, result.error
        assert result.output_tokens >= 1 and result.prompt_tokens > 0
        if seconds is not None:  # decoded, down-mixed and resampled to the right length
            assert result.duration_s == pytest.approx(seconds, abs=0.06)
    else:
        assert not result.ok and result.text == "" and result.output_tokens == 0
        assert name in result.error or str(corpus[name][0]) in result.error  # it names the input
        assert re.search(expected_error, result.error), result.error


def test_no_finished_result_is_lost_and_engine_stays_up(engine, corpus, batch, demo_clips):
    results, delivered = batch
    assert len(delivered) == len(results) == 2 * len(corpus)
    good = [r for name, r in results.items() if name.startswith("good-after-")]
    assert all(r.ok and r.output_tokens >= 1 and r.text for r in good), [r.error for r in good if not r.ok]

    for name in ("random_bytes", "35s", "nan_samples"):  # the single-item call raises, naming the problem
        with pytest.raises(AudioError, match=corpus[name][1]):
            engine.transcribe(corpus[name][0], id=name)
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
