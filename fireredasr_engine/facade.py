"""What every engine front shares: inputs, the private event loop, and the public transcription API.

``fireredasr_engine.engine.Engine`` (an in-process vLLM ``AsyncLLM``) and ``fireredasr_engine.client.RemoteEngine``
(running ``fireredasr-serve`` servers) both build on ``Facade``; each supplies ``_transcribe`` (one
prepared clip within the model's limit) and ``_shutdown``, and may refuse decodings in ``check_supported``.
Every public method ends in one decoding path, ``decode`` (``submit`` from any thread), so both fronts do
alike what happens before ``_transcribe``: long audio is split at pauses and its pieces decoded at once
(long_audio.py), and, with ``DecodingOptions(no_speech="skip")``, a clip in which voice activity detection
finds no speech gets an empty transcript (``finish_reason="no_speech"``) instead of a decode.
The loop runs in a background thread, so the sync methods work anywhere and the async ones from any
other loop (Jupyter, Gradio).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fireredasr_vllm import audio as audio_lib
from fireredasr_vllm.constants import DOWNSAMPLE_RATE
from fireredasr_vllm.vad import has_speech
from fireredasr_engine import long_audio as long_audio_lib
from fireredasr_engine import stream
from fireredasr_engine.options import DecodingOptions, PreparedAudio, Transcript

GREEDY = DecodingOptions()


def run_in_thread(coroutine_fn):
    """``asyncio.run(coroutine_fn())`` in a daemon thread, returning its value: works under a running loop
    (Jupyter, Playwright's sync API) and never blocks exit."""
    outcome = {}

    def target():
        try:
            outcome["value"] = asyncio.run(coroutine_fn())
        except BaseException as error:  # re-raised in the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def default_id(item, index: int) -> str:
    if isinstance(item, (str, Path)):
        return Path(item).stem
    return f"utt{index:05d}"


class Facade:
    """The shared half of ``Engine`` and ``RemoteEngine``; subclasses set ``max_audio_seconds`` and
    ``downsample_rate`` and call ``_start_loop`` before using the loop."""

    max_audio_seconds: float = audio_lib.DEFAULT_MAX_SECONDS
    max_long_audio_seconds: float = audio_lib.DEFAULT_MAX_LONG_AUDIO_SECONDS  # the app sets --max-audio-minutes
    downsample_rate: int = DOWNSAMPLE_RATE
    dead: str | None = None  # set once the engine (every server) has stopped: why, and the fix

    # ----------------------------------------------------------------- loop
    def _start_loop(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- inputs
    def prepare(self, item, *, id: str | None = None, sample_rate: int | None = None,
                long_audio: bool = False) -> PreparedAudio:
        """Decode + validate one input without raising (errors go into ``PreparedAudio.error``).

        ``long_audio``: accept inputs over the model's limit, up to ``max_long_audio_seconds`` (split at
        pauses when decoded). Longer inputs are refused from their header, before decoding."""
        name = id or default_id(item, 0)
        limit = self.max_long_audio_seconds if long_audio else self.max_audio_seconds
        try:
            samples = audio_lib.load_audio(item, sample_rate, name=name, max_seconds=limit, long_audio=long_audio)
            audio_lib.check_duration(samples, max_seconds=None if long_audio else self.max_audio_seconds,
                                     downsample_rate=self.downsample_rate, name=name)
            return PreparedAudio(name, samples)
        except audio_lib.AudioError as error:
            return PreparedAudio(name, None, str(error))
        except Exception as error:  # an unexpected decoder failure is still a per-item error
            return PreparedAudio(name, None, f"{name}: cannot read audio ({type(error).__name__}: {error})")

    def max_tokens_for(self, samples: np.ndarray, options: DecodingOptions) -> int:
        """The official default: as many new tokens as speech frames (at least 1)."""
        if options.max_tokens:
            return options.max_tokens
        return max(1, audio_lib.num_speech_tokens(len(samples), self.downsample_rate))

    def check_supported(self, options: DecodingOptions) -> None:
        """Raise one clear sentence for a decoding this front cannot run (all run in-process)."""

    # ----------------------------------------------------------------- decoding
    async def decode(self, prepared: PreparedAudio, options: DecodingOptions = GREEDY) -> Transcript:
        """The one decoding path: a prepared input (``prepare``) to its ``Transcript``, awaitable from any
        event loop. Raises for a decoding this front cannot run (``check_supported``); every other failure
        comes back in ``Transcript.error``."""
        return await asyncio.wrap_future(self.submit(prepared, options))

    def submit(self, prepared: PreparedAudio, options: DecodingOptions = GREEDY) -> Future:
        """``decode`` from any thread: queue one prepared input; returns a concurrent Future of its Transcript."""
        self.check_supported(options)
        return asyncio.run_coroutine_threadsafe(self._decode(prepared, options), self._loop)

    async def _decode(self, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        """``decode`` on the engine's loop: the checks every front shares, then ``_transcribe``."""
        if prepared.error:
            return Transcript.failed(prepared, prepared.error)
        if self.dead:
            return Transcript.failed(prepared, f"{prepared.id}: {self.dead}")
        if prepared.duration_s > self.max_audio_seconds:  # only prepare(long_audio=True) lets these in
            return await self._decode_long(prepared, options)
        if options.no_speech == "skip" and not await asyncio.to_thread(has_speech, prepared.samples):
            return Transcript.no_speech(prepared)
        return await self._transcribe(prepared, options)

    async def _decode_long(self, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        """Split at pauses (the VAD in a worker thread, so other requests keep flowing), decode every piece at
        once, stitch them in order (fireredasr_engine.long_audio)."""
        started = time.perf_counter()
        pieces = await asyncio.to_thread(long_audio_lib.split, prepared, self.max_audio_seconds)
        split_s = time.perf_counter() - started
        speech = replace(options, no_speech="keep")  # every piece is speech: no second look for the gate
        transcripts = await asyncio.gather(*(self._decode(piece.audio, speech) for piece in pieces))
        return long_audio_lib.stitch(prepared, pieces, transcripts, latency_s=time.perf_counter() - started,
                                     ttft_s=split_s + (transcripts[0].ttft_s if transcripts else 0.0))

    async def _transcribe(self, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        raise NotImplementedError

    # ----------------------------------------------------------------- public API
    def transcribe(self, audio, options: DecodingOptions = GREEDY, *, id: str | None = None,
                   sample_rate: int | None = None, long_audio: bool = False) -> Transcript:
        """Transcribe one input; raises ``AudioError`` when it cannot be transcribed.

        ``long_audio=True``: inputs over the model's limit are split at pauses (fireredasr_engine.long_audio)."""
        self.check_supported(options)
        prepared = self.prepare(audio, id=id, sample_rate=sample_rate, long_audio=long_audio)
        if prepared.error:
            raise audio_lib.AudioError(prepared.error)
        return self.submit(prepared, options).result()

    async def transcribe_async(self, audio, options: DecodingOptions = GREEDY, *, id: str | None = None,
                               sample_rate: int | None = None, long_audio: bool = False) -> Transcript:
        """Awaitable from any event loop; errors come back in ``Transcript.error``."""
        self.check_supported(options)
        prepared = await asyncio.to_thread(self.prepare, audio, id=id, sample_rate=sample_rate,
                                           long_audio=long_audio)
        return await self.decode(prepared, options)

    def transcribe_many(self, items: Iterable, options: DecodingOptions = GREEDY, *,
                        ids: Sequence[str] | None = None,
                        on_result: Callable[[Transcript], None] | None = None,
                        progress: bool = False, long_audio: bool = False) -> list[Transcript]:
        """Submit everything at once (vLLM batches continuously); results in input order.

        ``on_result`` is called as each utterance finishes (in completion order), so callers can
        persist results before the batch ends.
        """
        self.check_supported(options)
        items = list(items)
        ids = list(ids) if ids is not None else [default_id(x, i) for i, x in enumerate(items)]
        futures = {self.submit(self.prepare(x, id=i, long_audio=long_audio), options): n
                   for n, (x, i) in enumerate(zip(items, ids))}
        results: list[Transcript | None] = [None] * len(items)
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress, desc="transcribe"):
            transcript = future.result()
            results[futures[future]] = transcript
            if on_result is not None:
                on_result(transcript)
        return results  # type: ignore[return-value]

    def transcribe_stream(self, chunks: Iterable, options: DecodingOptions = stream.LIVE,
                          stream_options: stream.StreamOptions = stream.StreamOptions()
                          ) -> Iterator[stream.Partial | stream.Final]:
        """Live transcription of audio chunks (numpy arrays at 16 kHz, or ``(array, rate)``): yields
        ``Partial(text, start_s)`` for the open sentence and ``Final(segment)`` when it ends
        (fireredasr_engine.stream). ``options`` default: greedy, no text for a sentence without speech."""
        return stream.transcribe_stream(self, chunks, options, stream_options)

    def transcribe_stream_async(self, chunks: Iterable | AsyncIterable, options: DecodingOptions = stream.LIVE,
                                stream_options: stream.StreamOptions = stream.StreamOptions()
                                ) -> AsyncIterator[stream.Partial | stream.Final]:
        """``transcribe_stream`` from any event loop (``async for event in ...``); chunks may come async."""
        return stream.transcribe_stream_async(self, chunks, options, stream_options)
