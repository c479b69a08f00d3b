"""``fireredasr-serve``'s segmented answers: ``response_format`` ``verbose_json``, ``srt`` and ``vtt``.

vLLM builds segments from Whisper's timestamp tokens, which FireRedASR-LLM does not emit (vLLM answers 400
"Currently do not support verbose_json"). This ASGI middleware answers the three formats from the same
voice-activity segments as the facade's long-audio mode (fireredasr_vllm.vad): it decodes the upload, finds
the speech, sends every speech region to vLLM's own route as an internal ``json`` request (vLLM batches
them; the other form fields go along unchanged) and writes the answer (fireredasr_vllm.timed_text).
Regions are at most 30 s, so uploads longer than the model's limit are fine, up to vLLM's
``VLLM_MAX_AUDIO_DECODE_DURATION_S``; silence gets no segments and an empty text.

    curl -F file=@talk.flac -F model=fireredasr-llm -F response_format=srt http://HOST:8000/v1/audio/transcriptions

``verbose_json`` follows OpenAI's (Whisper's) shape: ``text``, ``language``, ``duration``, ``segments``
(``id``, ``seek``, ``start``, ``end``, ``text``, ``tokens``, ``temperature``, ``avg_logprob``,
``compression_ratio``, ``no_speech_prob``) and ``usage``. The route gives no token ids or log-probabilities:
``tokens`` is empty, ``avg_logprob`` and ``no_speech_prob`` are null. Segments without text are left out.
"""

from __future__ import annotations

import asyncio
import json
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import urllib3
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, check_duration, load_audio, min_samples, wav_bytes
from fireredasr_vllm.serve import error_body, form_value, max_body, read_body, replay, send_response
from fireredasr_vllm.timed_text import Segment, join_texts, to_srt, to_vtt
from fireredasr_vllm.vad import split_at_pauses

TRANSCRIPTIONS = "/v1/audio/transcriptions"
MODELS = "/v1/models"  # the cheap route that tells whether the request's key is accepted
FORMATS = ("verbose_json", "srt", "vtt")
CONTENT_TYPES = {"verbose_json": b"application/json", "srt": b"text/plain; charset=utf-8",
                 "vtt": b"text/vtt; charset=utf-8"}
# fields this middleware answers itself; every other form field goes to each region's request unchanged
OWN_FIELDS = {"file", "response_format", "stream", "timestamp_granularities", "timestamp_granularities[]"}
DEFAULT_LANGUAGE = "zh"  # the model's (fireredasr_vllm.model: default_language)
SEEK_PER_SECOND = 100  # Whisper's seek counts 10 ms frames
PER_REGION_HEADERS = (b"content-type", b"content-length", b"x-request-id")


@dataclass
class Answer:
    """An HTTP answer collected from the app (or made here)."""

    status: int = 500
    content_type: bytes = b"application/json"
    body: bytes = b""
    headers: list = field(default_factory=list)


def refusal(status: int, message: str, kind: str = "BadRequestError") -> Answer:
    return Answer(status, b"application/json", error_body(status, kind, message))


def compression_ratio(text: str) -> float:
    """Whisper's repetition signal: UTF-8 length over zlib-compressed length (above 2.4: likely a loop)."""
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def verbose_json(segments: list[Segment], duration_s: float, language: str, temperature: float) -> dict:
    """OpenAI's ``verbose_json`` transcription from the spoken segments."""
    spoken = [s for s in segments if s.text]
    return {"task": "transcribe", "language": language, "duration": round(duration_s, 3),
            "text": join_texts(s.text for s in spoken),
            "segments": [{"id": number, "seek": round(s.start_s * SEEK_PER_SECOND), "start": round(s.start_s, 3),
                          "end": round(s.end_s, 3), "text": s.text, "tokens": [], "temperature": temperature,
                          "avg_logprob": None, "compression_ratio": compression_ratio(s.text),
                          "no_speech_prob": None} for number, s in enumerate(spoken)],
            "usage": {"type": "duration", "seconds": math.ceil(duration_s)}}


def render(fmt: str, segments: list[Segment], duration_s: float, language: str, temperature: float) -> Answer:
    if fmt == "srt":
        text = to_srt(segments)
    elif fmt == "vtt":
        text = to_vtt(segments)
    else:
        text = json.dumps(verbose_json(segments, duration_s, language, temperature), ensure_ascii=False)
    return Answer(200, CONTENT_TYPES[fmt], text.encode())


def find_speech(data: bytes, name: str, max_seconds: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The upload decoded to 16 kHz and its speech regions; ``AudioError`` names what is wrong with it."""
    try:
        samples = load_audio(data, name=name, max_seconds=max_seconds, long_audio=True)
    except AudioError:
        raise
    except Exception as error:  # an unexpected decoder failure is still the upload's problem, never a 500
        raise AudioError(f"{name}: cannot read audio ({type(error).__name__})") from None
    check_duration(samples, max_seconds=None, name=name)
    return samples, split_at_pauses(samples)


class SegmentedTranscription:
    """ASGI middleware: ``verbose_json``, ``srt`` and ``vtt`` transcriptions from speech segments (see the module
    docstring); every other request passes through untouched."""

    def __init__(self, app):
        from vllm import envs  # here, in the api_server process: the fireredasr-serve CLI never imports vLLM

        self.app = app
        self.max_body = max_body()
        self.max_seconds = float(envs.VLLM_MAX_AUDIO_DECODE_DURATION_S)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != TRANSCRIPTIONS:
            return await self.app(scope, receive, send)
        body = await read_body(receive, self.max_body)
        if body is None:  # the outer middleware (serve.PlainTextTranscription) answers this first
            return await send_response(send, 413, b"application/json",
                                       error_body(413, "RequestEntityTooLarge", "request body too large"))
        fmt = (form_value(body, "response_format") or b"").decode(errors="replace")
        if fmt not in FORMATS:
            return await self.app(scope, replay(body, receive), send)
        answer = await self.answer(scope, receive, body, fmt)
        await send_response(send, answer.status, answer.content_type, answer.body)

    async def answer(self, scope, receive, body: bytes, fmt: str) -> Answer:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in PER_REGION_HEADERS]
        allowed = await self.ask(scope, receive, "GET", MODELS, headers, None)
        if allowed.status != 200:  # 401 without the key: nothing is decoded for such a request
            return allowed
        try:
            form = await Request(scope, replay(body, receive)).form()
        except HTTPException as error:
            return refusal(400, f"not a multipart form ({error.detail}); send the audio as the form field 'file'")
        try:
            return await self.transcribe(scope, receive, headers, form, fmt)
        finally:
            await form.close()

    async def transcribe(self, scope, receive, headers: list, form, fmt: str) -> Answer:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return refusal(400, "no audio: send the file as the form field 'file'")
        if str(form.get("stream", "false")).lower() == "true":
            return refusal(400, f"response_format={fmt} is answered whole; leave stream unset (json and text stream)")
        granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
        if "word" in granularities:
            return refusal(400, "word timestamps are not available (the model emits none); ask for 'segment'")
        name = upload.filename or "audio"
        try:
            samples, regions = await asyncio.to_thread(find_speech, await upload.read(), name, self.max_seconds)
        except AudioError as error:
            return refusal(400, str(error))
        fields = [(key, value) for key, value in form.multi_items() if key not in OWN_FIELDS and isinstance(value, str)]
        fields.append(("response_format", "json"))
        if not regions:  # silence: one short request still lets vLLM check the fields (model, language, ...)
            fields = [(key, value) for key, value in fields if key != "max_completion_tokens"]
            fields.append(("max_completion_tokens", "1"))
        checked = regions or [(0, min(len(samples), 2 * min_samples()))]
        answers = await asyncio.gather(*[
            self.ask(scope, receive, "POST", TRANSCRIPTIONS, region_headers(headers, scope, index),
                     *multipart(fields, samples[a:b], name))
            for index, (a, b) in enumerate(checked)])
        failed = next((a for a in answers if a.status != 200), None)
        if failed is not None:
            return failed
        texts = [json.loads(a.body)["text"].strip() for a in answers] if regions else []
        segments = [Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, text) for (a, b), text in zip(regions, texts)]
        return render(fmt, segments, len(samples) / SAMPLE_RATE, str(form.get("language") or DEFAULT_LANGUAGE),
                      float(form.get("temperature") or 0.0))  # a bad value got vLLM's 400 above

    async def ask(self, scope, receive, method: str, path: str, headers: list, content_type: bytes | None,
                  body: bytes = b"") -> Answer:
        """One internal request to the app (same client, headers and key), its answer collected."""
        if content_type is not None:
            headers = headers + [(b"content-type", content_type)]
        inner = {**scope, "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": headers + [(b"content-length", str(len(body)).encode())],
                 "state": dict(scope.get("state") or {})}  # vLLM keeps per-request metadata there
        answer = Answer()

        async def collect(message):
            if message["type"] == "http.response.start":
                answer.status, answer.headers = message["status"], message.get("headers", [])
                answer.content_type = dict(answer.headers).get(b"content-type", answer.content_type)
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        await self.app(inner, replay(body, receive), collect)
        return answer


def region_headers(headers: list, scope, index: int) -> list:
    """The client's headers; a client's ``X-Request-Id`` gets the region's number (vLLM ids must be unique)."""
    request_id = dict(scope["headers"]).get(b"x-request-id")
    return headers + ([(b"x-request-id", request_id + f"-{index}".encode())] if request_id else [])


def multipart(fields: list[tuple[str, str]], samples: np.ndarray, name: str) -> tuple[bytes, bytes]:
    """(content type, body) of a transcription form holding ``samples`` as 16 kHz float WAV."""
    body, content_type = urllib3.encode_multipart_formdata(
        [*fields, ("file", (f"{name}.wav", wav_bytes(samples), "audio/wav"))])
    return content_type.encode(), body
