"""Live transcription (fireredasr_engine.stream) on the real engine, fed faster than real time: sentences, their
order, partials that never queue up, finals that are never lost, the model's limit, silence and bad chunks."""

import asyncio
import threading
from dataclasses import replace

import jiwer
import numpy as np
import pytest

from eval.bundled import LONG_RECORDING_PAUSE_S, long_recording
from eval.live import final_text, play
from fireredasr_engine.options import DecodingOptions
from fireredasr_engine.stream import LIVE, Final, Partial, StreamOptions, transcribe_stream
from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, resample

BROWSER_RATE = 48000  # what a browser's microphone gives


@pytest.fixture(scope="module")
def recording():
    """The long bundled recording (57 s, 8 sentences) and where each sentence's clip lies (seconds)."""
    samples, sentences = long_recording()
    spans = sound_spans(samples)
    assert len(spans) == len(sentences)
    return samples, sentences, spans


def sound_spans(samples: np.ndarray) -> list[tuple[float, float]]:
    """Where the recording is not digital silence (seconds): its clips, without their silent edges."""
    sound = np.flatnonzero(samples)
    gaps = np.flatnonzero(np.diff(sound) > LONG_RECORDING_PAUSE_S * SAMPLE_RATE / 2)
    starts, ends = [sound[0], *sound[gaps + 1]], [*sound[gaps], sound[-1]]
    return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in zip(starts, ends)]


def chunks_of(samples: np.ndarray, rate: int = SAMPLE_RATE, seed: int = 0):
    """``samples`` (16 kHz) at ``rate`` in chunks of random sizes (10-300 ms), as ``(array, rate)``."""
    audio = resample(samples, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else samples
    sizes = np.random.default_rng(seed).integers(rate // 100, 3 * rate // 10, size=len(audio) // (rate // 100))
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return [(audio[a:b], rate) for a, b in zip(edges, edges[1:]) if a < len(audio)]


def finals(events) -> list:
    return [e.segment for e in events if isinstance(e, Final)]


def check_order(events) -> None:
    """Partials only for the open sentence: none for a sentence after its final, none for the next one before it."""
    closed = set()
    for event in events:
        if isinstance(event, Final):
            closed.add(event.segment.start_s)
        else:
            assert event.start_s not in closed and event.start_s > max(closed, default=-1), event


def test_sentences_come_in_order_with_their_times_and_text(engine, recording):
    """Played at 8 x real time: partials while each sentence is said, then its final; the text as good as the
    offline long-audio path's. The same recording at a browser's rate, in chunks of any size, all at once and
    through the async API: the same sentences."""
    samples, sentences, spans = recording
    timed = play(engine, samples, speed=8.0)
    events = [t.event for t in timed]
    check_order(events)
    segments = finals(events)
    assert len(segments) == len(sentences), segments
    for segment, (start, end) in zip(segments, spans):
        assert segment.start_s <= start < end <= segment.end_s + 0.05, (segment, start, end)
        assert segment.end_s < end + StreamOptions().min_silence_s + StreamOptions().pad_s
    assert sum(isinstance(e, Partial) for e in events) >= len(sentences)
    offline = engine.transcribe(samples, long_audio=True)
    reference = "".join(sentences)
    live_cer, offline_cer = (jiwer.cer(reference, text) for text in (final_text(timed), offline.text))
    assert live_cer <= offline_cer + 0.02, (live_cer, offline_cer)

    async def stream_async():
        async def chunks():
            for chunk in chunks_of(samples, BROWSER_RATE):
                yield chunk
        return [event async for event in engine.transcribe_stream_async(chunks())]

    resampled = finals(asyncio.run(stream_async()))
    assert len(resampled) == len(segments)
    for mine, theirs in zip(resampled, segments):
        assert mine.start_s == pytest.approx(theirs.start_s, abs=0.07) and mine.end_s == pytest.approx(theirs.end_s, abs=0.07)
    assert jiwer.cer([s.text for s in segments], [s.text for s in resampled]) < 0.05


class Counting:
    """The real engine, counting the decodes in flight: how many partials at once, and every final."""

    def __init__(self, engine):
        self.engine, self.lock = engine, threading.Lock()
        self.partials_running = self.most_partials_running = self.partials = 0
        self.finals: list[str] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def submit(self, prepared, options):
        partial = prepared.id.startswith("partial")
        with self.lock:
            if partial:
                self.partials += 1
                self.partials_running += 1
                self.most_partials_running = max(self.most_partials_running, self.partials_running)
            else:
                self.finals.append(prepared.id)
        future = self.engine.submit(prepared, options)
        if partial:
            future.add_done_callback(lambda _: self.finished_partial())
        return future

    def finished_partial(self):
        with self.lock:
            self.partials_running -= 1


def test_partials_never_queue_and_finals_are_never_lost(engine, recording):
    """All at once (57 s of audio in 10 ms chunks, no pacing): one partial in flight at most, newer ones replacing
    those not started; every sentence's final, the open one's too when the input stops in mid-sentence."""
    samples, sentences, spans = recording
    piece = SAMPLE_RATE // 100
    cut = int((spans[-1][0] + 2.0) * SAMPLE_RATE) // piece * piece  # 2 s into the last sentence
    counting = Counting(engine)
    pieces = [samples[at:at + piece] for at in range(0, cut, piece)]
    events = list(transcribe_stream(counting, pieces))
    assert counting.most_partials_running == 1 and counting.partials > 0
    segments = finals(events)
    assert len(counting.finals) == len(segments) == len(sentences)
    assert segments[-1].end_s == pytest.approx(cut / SAMPLE_RATE)  # the open sentence, finished at the end
    check_order(events)


def test_a_sentence_over_the_limit_is_cut_there(engine, recording):
    samples, _, spans = recording
    speech = np.concatenate([samples[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in spans[:4]])  # no pause
    options = StreamOptions(max_sentence_s=8.0)
    segments = finals(engine.transcribe_stream(chunks_of(speech), stream_options=options))
    assert len(segments) >= 3 and all(s.end_s - s.start_s <= 8.0 + 1e-6 for s in segments), segments
    assert all(a.end_s == b.start_s for a, b in zip(segments, segments[1:]))  # cut, nothing left out


def test_silence_and_bad_chunks(engine, recording):
    silence = [np.zeros(1600, np.float32)] * 50 + [(np.zeros(4800, np.int16), 48000)] * 20
    assert list(engine.transcribe_stream(silence)) == []
    noise = np.random.default_rng(0).normal(0, 1e-3, 5 * SAMPLE_RATE).astype(np.float32)
    assert list(engine.transcribe_stream([noise])) == []

    samples = recording[0]
    broken = [samples[:16000], samples[16000:32000], np.full(1600, np.nan, np.float32)]
    with pytest.raises(AudioError, match=r"^audio chunk 3: contains NaN or infinite samples$"):
        list(engine.transcribe_stream(broken))
    with pytest.raises(AudioError, match="takes an iterable of audio chunks.*not float"):
        list(engine.transcribe_stream(1.5))
    with pytest.raises(AudioError, match="audio chunk 1: invalid sample rate -5"):
        list(engine.transcribe_stream([(samples[:1600], -5)]))
    assert engine.transcribe(samples[:5 * SAMPLE_RATE]).text  # the engine is still up


def test_live_default_decoding_skips_no_speech():
    assert LIVE == replace(DecodingOptions(), no_speech="skip")
