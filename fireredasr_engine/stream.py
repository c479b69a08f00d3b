"""Live transcription: audio chunks in, partial and final sentences out.

FireRedASR-LLM is not a streaming model; this is the pattern sherpa-onnx's maintainer recommends for it
(FireRedTeam/FireRedASR issue 69). Silero VAD (its streaming ``VADIterator``) cuts the stream into sentences;
the open sentence is decoded again every ``partial_interval_s`` of audio (a ``Partial``), and once more when
it ends (a ``Final``, with its times). A sentence that reaches the model's limit is cut there.

    for event in engine.transcribe_stream(microphone_chunks()):      # numpy arrays, or (array, rate)
        print(event)   # Partial(text='今天天气', start_s=1.3) ... Final(segment=Segment(1.3, 4.9, '今天天气不错'))

Partial decodes never queue up: at most one is in flight per stream, and a newer one replaces one not yet
started. Every final is decoded, in order, the open sentence's too when the input ends; a stream's events
come in sentence order (no partial of a sentence before the final of the one before).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass

import numpy as np
import soxr
from silero_vad import VADIterator, load_silero_vad

from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE, AudioError, load_audio
from fireredasr_engine.options import DecodingOptions, PreparedAudio, Segment, Transcript

VAD_WINDOW = 512  # samples per Silero VAD step at 16 kHz (32 ms)
# Live decoding: greedy, and a clip without speech gives no text (the no-speech gate).
LIVE = DecodingOptions(no_speech="skip")


@dataclass(frozen=True)
class StreamOptions:
    """Where sentences begin and end, and how often the open one is decoded."""

    threshold: float = 0.5  # Silero speech probability
    min_silence_s: float = 0.5  # a pause this long ends the sentence
    pad_s: float = 0.2  # audio kept before and after each sentence's speech
    min_speech_s: float = 0.25  # a shorter sentence is a blip (a click, a cough): dropped
    partial_interval_s: float = 0.4  # the open sentence is decoded again after this much more audio
    max_sentence_s: float = DEFAULT_MAX_SECONDS  # the model's limit: a longer sentence is cut here


@dataclass(frozen=True)
class Partial:
    """The open sentence so far (it began ``start_s`` seconds into the stream); replaced by the next event."""

    text: str
    start_s: float


@dataclass(frozen=True)
class Final:
    """A finished sentence: its times in the stream and its text, decoded once more on the whole of it."""

    segment: Segment


@dataclass
class Sentence:
    number: int
    start: int  # sample index in the stream
    partial_at: int  # stream length when its last partial was asked for
    closed: bool = False


class SentenceStream:
    """One stream's state: push audio with ``feed``, end it with ``finish``; events go to ``emit`` (from any
    thread): ``Partial``, ``Final``, an ``Exception`` that ends the stream, then ``None`` after the last final.

    ``feed`` and ``finish`` are called from one thread at a time; decodes run on ``engine``'s event loop.
    """

    def __init__(self, engine, options: DecodingOptions, stream_options: StreamOptions,
                 emit: Callable[[Partial | Final | Exception | None], None]):
        engine.check_supported(options)
        self.engine, self.options, self.stream_options, self.emit = engine, options, stream_options, emit
        self.vad = VADIterator(load_silero_vad(onnx=True), threshold=stream_options.threshold,
                               sampling_rate=SAMPLE_RATE, min_silence_duration_ms=1000 * stream_options.min_silence_s,
                               speech_pad_ms=1000 * stream_options.pad_s)
        self.max_sentence = int(SAMPLE_RATE * min(stream_options.max_sentence_s, engine.max_audio_seconds))
        self.lock = threading.RLock()  # re-entrant: a decode may finish (and call back) before its callback is added
        self.resampler: tuple[int, soxr.ResampleStream] | None = None
        self.audio = np.zeros(0, np.float32)  # the stream from sample ``audio_start`` on
        self.audio_start = 0
        self.unheard = 0  # samples at the end of ``audio`` not yet given to the VAD (less than a window)
        self.chunks = 0
        self.sentence: Sentence | None = None
        self.sentences = 0
        self.partial_running = False
        self.partial_waiting: tuple[Sentence, np.ndarray] | None = None
        self.held_partial: tuple[Sentence, Partial] | None = None  # waits for the finals before it
        self.finals: deque[tuple[Sentence, int, Future]] = deque()
        self.finished = self.stopped = False

    @property
    def received(self) -> int:
        return self.audio_start + len(self.audio)

    # ----------------------------------------------------------------- input
    def feed(self, chunk, sample_rate: int | None = None) -> None:
        """Push one chunk: a numpy array (16 kHz unless ``sample_rate``) or ``(array, rate)``; any channels.

        Raises ``AudioError`` (one sentence naming the chunk) for samples that are not audio. Chunks that come
        after ``finish`` or ``stop`` are ignored (a microphone's last one may come late)."""
        self.chunks += 1
        if isinstance(chunk, tuple) and len(chunk) == 2:
            chunk, sample_rate = chunk
        rate = int(sample_rate or SAMPLE_RATE)
        if rate <= 0:
            raise AudioError(f"audio chunk {self.chunks}: invalid sample rate {rate}")
        samples = load_audio(chunk, SAMPLE_RATE, name=f"audio chunk {self.chunks}")  # mono float32, unresampled
        if rate != SAMPLE_RATE:
            if self.resampler is None or self.resampler[0] != rate:
                self.resampler = rate, soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            samples = self.resampler[1].resample_chunk(samples)
        with self.lock:
            if self.finished:
                return
            self.audio = np.concatenate([self.audio, samples])
            self.unheard += len(samples)
            self.listen()
            self.trim()

    def finish(self) -> None:
        """End of input: the open sentence is decoded as a final; ``None`` is emitted after the last final."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            if self.sentence is not None:
                self.close_sentence(self.received)
            self.drain()

    def stop(self) -> None:
        """Abandon the stream: nothing more is emitted (decodes already started still finish, unread)."""
        with self.lock:
            self.stopped = self.finished = True
            self.partial_waiting = None

    # ----------------------------------------------------------------- sentences (under the lock)
    def listen(self) -> None:
        """Run the VAD over the new whole windows; open, cut and close sentences; ask for partials."""
        while self.unheard >= VAD_WINDOW:
            at = len(self.audio) - self.unheard
            window = self.audio[at:at + VAD_WINDOW]
            self.unheard -= VAD_WINDOW
            change = self.vad(window) or {}
            if "start" in change and self.sentence is None:
                start = max(int(change["start"]), self.audio_start)
                self.sentences += 1
                self.sentence = Sentence(self.sentences, start, partial_at=self.received - self.unheard)
            elif "end" in change and self.sentence is not None:
                self.close_sentence(int(change["end"]))
            heard = self.received - self.unheard
            if self.sentence is not None and heard - self.sentence.start >= self.max_sentence:
                cut = self.sentence.start + self.max_sentence
                self.close_sentence(cut)
                self.sentences += 1
                self.sentence = Sentence(self.sentences, cut, partial_at=heard)
        sentence = self.sentence
        if sentence is not None and self.received - sentence.partial_at >= self.seconds(self.stream_options.partial_interval_s):
            sentence.partial_at = self.received
            self.ask_partial(sentence, self.samples(sentence.start, self.received))

    def close_sentence(self, end: int) -> None:
        sentence, self.sentence = self.sentence, None
        sentence.closed = True
        self.partial_waiting = None
        end = min(max(end, sentence.start), self.received)
        speech = end - sentence.start - 2 * self.seconds(self.stream_options.pad_s)
        if speech < self.seconds(self.stream_options.min_speech_s):
            return
        future = self.decode("final", sentence, self.samples(sentence.start, end))
        self.finals.append((sentence, end, future))
        future.add_done_callback(lambda _: self.on_final())

    def trim(self) -> None:
        """Keep only the open sentence's audio (or, between sentences, what a new one's padding reaches)."""
        keep_from = self.sentence.start if self.sentence else self.received - self.unheard - self.seconds(
            self.stream_options.pad_s) - 2 * VAD_WINDOW
        drop = keep_from - self.audio_start
        if drop > 0:
            self.audio = self.audio[drop:]
            self.audio_start += drop

    def seconds(self, seconds: float) -> int:
        return int(seconds * SAMPLE_RATE)

    def samples(self, start: int, end: int) -> np.ndarray:
        return self.audio[start - self.audio_start:end - self.audio_start]

    # ----------------------------------------------------------------- decoding
    def decode(self, kind: str, sentence: Sentence, samples: np.ndarray) -> Future:
        """``kind`` (partial or final) names the request: ``partial-3@12.30`` (sentence 3, from 12.30 s)."""
        prepared = PreparedAudio(f"{kind}-{sentence.number}@{sentence.start / SAMPLE_RATE:.2f}", samples)
        return self.engine.submit(prepared, self.options)

    def ask_partial(self, sentence: Sentence, samples: np.ndarray) -> None:
        if self.partial_running:
            self.partial_waiting = sentence, samples  # replaces one not yet started
            return
        self.partial_running = True
        future = self.decode("partial", sentence, samples)
        future.add_done_callback(lambda done: self.on_partial(sentence, done))

    def on_partial(self, sentence: Sentence, future: Future) -> None:
        with self.lock:
            self.partial_running = False
            transcript = result(future)
            if not (self.stopped or sentence.closed) and transcript.ok and transcript.text:
                self.held_partial = sentence, Partial(transcript.text, sentence.start / SAMPLE_RATE)
                self.release_partial()
            if self.partial_waiting is not None and not self.stopped:
                waiting, self.partial_waiting = self.partial_waiting, None
                self.ask_partial(*waiting)

    def release_partial(self) -> None:
        """Emit the held partial once the finals before it are out (and while its sentence is open)."""
        if self.held_partial is None or self.finals:
            return
        (sentence, partial), self.held_partial = self.held_partial, None
        if not sentence.closed:
            self.emit(partial)

    def on_final(self) -> None:
        with self.lock:
            self.drain()

    def drain(self) -> None:
        """Emit the finished finals at the head of the line, in order; then the held partial, or the end."""
        while self.finals and self.finals[0][2].done() and not self.stopped:
            sentence, end, future = self.finals.popleft()
            transcript = result(future)
            if not transcript.ok:
                self.stopped = True
                self.emit(RuntimeError(transcript.error))
                return
            if transcript.text:
                self.emit(Final(Segment(sentence.start / SAMPLE_RATE, end / SAMPLE_RATE, transcript.text)))
        if self.stopped:
            return
        self.release_partial()
        if self.finished and not self.finals:
            self.stopped = True
            self.emit(None)


def result(future: Future) -> Transcript:
    """A decode's transcript; an unexpected failure becomes its error."""
    try:
        return future.result()
    except (Exception, CancelledError) as error:  # the engine's own failures (it closed...) end the stream
        return Transcript(id="sentence", error=f"decoding failed ({type(error).__name__}: {error})")


def sample_chunks(chunks) -> Iterator:
    """The chunks of an iterable, with a clear sentence when it is not one."""
    try:
        return iter(chunks)
    except TypeError:
        raise AudioError(f"transcribe_stream takes an iterable of audio chunks (numpy arrays or (array, rate)), "
                         f"not {type(chunks).__name__}") from None


def transcribe_stream(engine, chunks: Iterable, options: DecodingOptions = LIVE,
                      stream_options: StreamOptions = StreamOptions()) -> Iterator[Partial | Final]:
    """Events of ``chunks`` as they come: the input is read in a worker thread (it may block, as a microphone
    does), so events are yielded while the next chunk is awaited."""
    chunks = sample_chunks(chunks)
    events: queue.Queue = queue.Queue()
    stream = SentenceStream(engine, options, stream_options, events.put)

    def pump() -> None:
        try:
            for chunk in chunks:
                if stream.stopped:
                    return
                stream.feed(chunk)
            stream.finish()
        except Exception as error:  # raised to the consumer
            stream.stop()
            events.put(error)

    threading.Thread(target=pump, name="fireredasr-stream-input", daemon=True).start()
    try:
        while (event := events.get()) is not None:
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        stream.stop()


async def transcribe_stream_async(engine, chunks: Iterable | AsyncIterable, options: DecodingOptions = LIVE,
                                  stream_options: StreamOptions = StreamOptions()) -> AsyncIterator[Partial | Final]:
    """``transcribe_stream`` for an event loop: ``chunks`` may be an async iterable too."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    stream = SentenceStream(engine, options, stream_options,
                            lambda event: loop.call_soon_threadsafe(events.put_nowait, event))

    async def pump() -> None:
        try:
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    if stream.stopped:
                        return
                    await asyncio.to_thread(stream.feed, chunk)
            else:
                iterator, done = sample_chunks(chunks), object()
                while not stream.stopped and (chunk := await asyncio.to_thread(next, iterator, done)) is not done:
                    await asyncio.to_thread(stream.feed, chunk)
            stream.finish()
        except Exception as error:
            stream.stop()
            events.put_nowait(error)

    reader = asyncio.ensure_future(pump())
    try:
        while (event := await events.get()) is not None:
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        stream.stop()
        reader.cancel()
