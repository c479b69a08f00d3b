"""fireredasr_vllm/segmented.py: ``fireredasr-serve`` answers ``verbose_json``, ``srt`` and ``vtt`` from voice-activity
segments; read back with the ``openai`` client, ``srt`` and ``webvtt`` on the session's shared server
(tests/conftest.py ``asr_servers``, also used by test_serve and test_scale_out)."""

import io
import re

import jiwer
import numpy as np
import openai
import pytest
import soundfile as sf
import srt
import webvtt

from fireredasr_vllm.audio import SAMPLE_RATE, load_audio, num_speech_tokens
from fireredasr_vllm.serve import SERVED_MODEL_NAME
from fireredasr_vllm.timed_text import join_texts

CLIPS = 8  # ~40 s with the pauses: over the model's 30 s limit
PAUSE_S = 1.0
SILENCE_S = 5.0


@pytest.fixture(scope="module")
def client(asr_servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{asr_servers.url(0)}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def talk(demo_clips, tmp_path_factory) -> tuple[bytes, list[tuple[float, float]], list[str]]:
    """Eight bundled clips, each after a 1 s pause, as FLAC: (file, where each clip lies in s, their ids)."""
    parts, spans, at = [], [], 0.0
    for path in demo_clips[:CLIPS]:
        clip = load_audio(path)
        parts += [np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32), clip]
        spans.append((at + PAUSE_S, at + PAUSE_S + len(clip) / SAMPLE_RATE))
        at = spans[-1][1]
    parts.append(np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32))
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), SAMPLE_RATE, format="FLAC")
    return buffer.getvalue(), spans, [path.stem for path in demo_clips[:CLIPS]]


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def near_silence() -> bytes:
    """5 s of faint noise: decoded as it is, the trained model invents a sentence for it."""
    return wav((np.random.default_rng(0).standard_normal(int(SILENCE_S * SAMPLE_RATE)) * 1e-3).astype(np.float32))


def create(client, name: str, data: bytes, fmt: str, **kwargs):
    return client.audio.transcriptions.create(model=SERVED_MODEL_NAME, file=(name, data), response_format=fmt,
                                              **kwargs)


@pytest.fixture(scope="module")
def verbose(client, talk):
    return create(client, "talk.flac", talk[0], "verbose_json")


def test_verbose_json_has_one_timed_segment_per_sentence_over_30_s(client, verbose, talk, references):
    data, spans, ids = talk
    assert verbose.duration == pytest.approx(spans[-1][1] + PAUSE_S, abs=0.01) and verbose.duration > 30
    assert verbose.language == "zh" and verbose.usage.seconds == int(np.ceil(verbose.duration))
    segments = verbose.segments
    assert [s.id for s in segments] == list(range(CLIPS))
    for segment, (start, end) in zip(segments, spans):
        assert start - 0.4 <= segment.start <= start and end <= segment.end + 0.4 <= end + 0.8, (segment, start, end)
        assert segment.seek == round(segment.start * 100) and segment.tokens == [] and segment.temperature == 0.0
    assert verbose.text == join_texts(s.text for s in segments)
    # Each segment's text is what that stretch of audio gives on its own through the plain json route ...
    audio = load_audio(data)
    alone = [create(client, f"{n}.wav", wav(audio[round(s.start * SAMPLE_RATE):round(s.end * SAMPLE_RATE)]), "json").text
             for n, s in enumerate(segments)]
    assert jiwer.cer(alone, [s.text for s in segments]) < 0.02
    # ... and says the clip's sentence: the trained model memorised its clips with their own silence around
    # them; cut at the VAD's 0.2 s padding it slips on some (as in long-audio mode, tests/test_long_audio.py).
    said = [references[clip_id] for clip_id in ids]
    assert jiwer.cer(said, [s.text for s in segments]) < 0.4
    assert sum(s.text == r for s, r in zip(segments, said)) >= len(said) // 2


def test_srt_and_vtt_hold_the_same_segments(client, talk, verbose):
    subrip = create(client, "talk.flac", talk[0], "srt")
    cues = list(srt.parse(subrip))
    assert [c.index for c in cues] == list(range(1, CLIPS + 1))
    assert [(round(c.start.total_seconds(), 3), round(c.end.total_seconds(), 3), c.content) for c in cues] == \
        [(s.start, s.end, s.text) for s in verbose.segments]
    vtt = webvtt.from_buffer(io.StringIO(create(client, "talk.flac", talk[0], "vtt")))
    assert [(c.start, c.end, c.text) for c in vtt] == [
        (srt.timedelta_to_srt_timestamp(c.start).replace(",", "."),
         srt.timedelta_to_srt_timestamp(c.end).replace(",", "."), c.content) for c in cues]


def test_silence_gets_no_segments_where_json_invents_a_sentence(client, near_silence):
    invented = create(client, "quiet.wav", near_silence, "json",
                      extra_body={"max_completion_tokens": num_speech_tokens(int(SILENCE_S * SAMPLE_RATE))})
    assert invented.text  # what the gate is for: the model's sentence for faint noise
    result = create(client, "quiet.wav", near_silence, "verbose_json")
    assert (result.text, result.segments, result.duration) == ("", [], SILENCE_S)
    assert create(client, "quiet.wav", near_silence, "srt") == ""
    assert list(webvtt.from_buffer(io.StringIO(create(client, "quiet.wav", near_silence, "vtt")))) == []


@pytest.mark.parametrize("name, data, kwargs, status, message", [
    ("notes.wav", "这不是音频\n".encode() * 50, {}, 400, r"^notes\.wav: cannot decode as audio \(text, not audio\)$"),
    ("empty.wav", b"", {}, 400, r"^empty\.wav: the file is empty \(0 bytes\)$"),
    ("short.wav", None, {}, 400, r"^short\.wav: 10\.0 ms is too short; the model needs at least 65 ms"),
    ("talk.flac", "talk", {"stream": True}, 400, "answered whole; leave stream unset"),
    ("talk.flac", "talk", {"timestamp_granularities": ["word"]}, 400, "word timestamps are not available"),
    ("talk.flac", "talk", {"language": "xx"}, 400, "Unsupported language: 'xx'"),
    ("quiet.wav", "silence", {"model": "nope"}, 404, "The model `nope` does not exist"),
])
def test_bad_requests_get_one_sentence_and_the_server_keeps_serving(client, talk, near_silence, name, data, kwargs,
                                                                     status, message):
    data = {"talk": talk[0], "silence": near_silence}.get(data, data)
    if data is None:
        data = wav(np.zeros(160, np.float32))
    kwargs = {"model": SERVED_MODEL_NAME, **kwargs}
    with pytest.raises(openai.APIStatusError) as error:
        client.audio.transcriptions.create(file=(name, data), response_format="verbose_json", **kwargs)
    assert error.value.status_code == status
    assert re.search(message, error.value.body["message"]), error.value.body
    assert create(client, "quiet.wav", near_silence, "srt") == ""  # still serving
