"""Client mode of the engine facade: the same methods, served by running ``fireredasr-serve`` servers.

    engine = Engine.connect("http://gpu1:8000")                    # one server: every front end shares its engine
    engine = Engine.connect("http://gpu1:8000,http://gpu2:8000")   # several: each takes work as fast as it answers
    engine.transcribe("clip.wav").text                             # transcribe_async, transcribe_many, submit, ...

Requests go through the OpenAI transcription route (``POST /v1/audio/transcriptions``), streamed so the
first text is timed. The audio is decoded and checked here (``Facade.prepare``, as in-process) and sent as 16 kHz float
WAV, so the server sees the samples the in-process engine would. Every server has ``max_in_flight``
workers pulling from one queue: a faster server takes more of the work. A dropped connection, a cut
stream or a 5xx puts the request back on the queue (another server or a later try takes it, at most
``MAX_ATTEMPTS`` times); a server that fails ``MAX_FAILURES`` times in a row is asked for its ``/health`` and left
out unless it answers (a killed server, a dead engine), kept if it does (dropped connections of a loaded server).
Each request is answered exactly once.

What the route does not give: token ids (``Transcript.token_ids`` stays empty) and vLLM's queue time
(``queue_s`` is None). Latency and time to first token are measured here, so they include the network.
Greedy and sampling work, with hotwords too (sent as ``vllm_xargs``; a word the server's tokenizer cannot
spell is left out there, and logged); beam search, the official repetition penalty (generated tokens only),
``min_tokens`` and ``ignore_eos`` need the in-process engine (``Engine(model)``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fireredasr_vllm import audio as audio_lib
from fireredasr_vllm.compat import installed_versions
from fireredasr_vllm.constants import ModelSettings
from fireredasr_vllm.engine_death import ENGINE_STOPPED
from fireredasr_vllm.hotwords import HOTWORD_WEIGHT_KEY, HOTWORDS_KEY, check_hotwords, format_hotwords
from fireredasr_engine.facade import Facade
from fireredasr_engine.options import DecodingOptions, EngineOptions, PreparedAudio, Transcript

TRANSCRIPTIONS = "/v1/audio/transcriptions"
MAX_IN_FLIGHT = 32  # requests per server at once
MAX_ATTEMPTS = 4  # tries of one request (over all servers) before it is recorded as failed
MAX_FAILURES = 3  # consecutive failures after which a server is left out
RETRY_PAUSE_S = 0.5  # doubled after each consecutive failure of a server
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 600.0
# An idle connection is dropped here before the server's uvicorn closes it (after 5 s): reusing one just as the
# server closes it loses the request (ReadError).
KEEPALIVE_EXPIRY_S = 2.0


class ServerError(ConnectionError):
    """A server cannot be used (not reachable, not a transcription server)."""


class UnsupportedDecoding(ValueError):
    """A decoding the transcription route cannot do."""


class RetryableFailure(Exception):
    """The server dropped the request (connection, cut stream, 5xx): another try may succeed."""


class EngineStopped(RetryableFailure):
    """The server's engine has died (``ENGINE_STOPPED``): the request may go to another server, not this one."""


@dataclass
class Server:
    url: str
    model: str  # the served model name clients pass
    root: str  # the model directory the server loaded
    max_model_len: int | None
    vllm_version: str | None
    in_flight: int = 0
    answered: int = 0
    dropped: int = 0  # requests it dropped (put back on the queue)
    failures: int = 0  # consecutive
    down: bool = False

    def facts(self) -> dict:
        return {"url": self.url, "model": self.model, "model_dir": self.root, "max_model_len": self.max_model_len,
                "vllm": self.vllm_version}


@dataclass
class PendingRequest:
    prepared: PreparedAudio
    options: DecodingOptions
    future: asyncio.Future
    attempts: int = 0
    failures: list = field(default_factory=list)


def parse_urls(urls: str | Sequence[str]) -> list[str]:
    """``"http://a:8000,http://b:8000"`` or a list -> base URLs without a trailing slash."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    parsed = [item.strip().rstrip("/") for item in items if item.strip()]
    if not parsed:
        raise ServerError("no server URL given: pass one or more as http://HOST:PORT[,http://HOST:PORT...]")
    for url in parsed:
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"'{url}' is not a server URL: write it as http://HOST:PORT")
    return parsed


def check_supported(options: DecodingOptions) -> None:
    """Raise one sentence when ``options`` need the in-process engine or carry a bad hotword list."""
    if options.beam_size > 1:
        raise UnsupportedDecoding(
            f"{options.label}: beam search needs the in-process engine (Engine(model), or run without --server); "
            "the transcription route decodes greedily or by sampling")
    if options.repetition_penalty != 1.0 and options.penalty_scope != "vllm":
        raise UnsupportedDecoding(
            f"{options.label}: the official repetition penalty (generated tokens only) needs the in-process engine; "
            "over a server use penalty_scope='vllm' (vLLM's, which also counts the prompt)")
    if options.hotwords:
        check_hotwords(options.hotwords, options.hotword_weight)
    if options.min_tokens or options.ignore_eos:
        raise UnsupportedDecoding("min_tokens and ignore_eos need the in-process engine; "
                                  "the transcription route does not take them")


def error_message(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body (or the body itself)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)


class RemoteEngine(Facade):
    """The facade's methods over one or more servers (see the module docstring)."""

    def __init__(self, urls: str | Sequence[str], *, max_in_flight: int = MAX_IN_FLIGHT,
                 timeout_s: float = REQUEST_TIMEOUT_S):
        started = time.perf_counter()
        self.max_in_flight = max_in_flight
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
                                       limits=httpx.Limits(max_connections=None, max_keepalive_connections=None,
                                                           keepalive_expiry=KEEPALIVE_EXPIRY_S))
        self._start_loop("fireredasr-client")
        try:
            self.servers = self._call(self._connect(parse_urls(urls)))
        except BaseException:
            self.close()
            raise
        first = self.servers[0]
        self.model_spec = first.root
        local = Path(first.root) / "config.json"  # readable when the server runs on this host
        self.model_dir = local.parent if local.exists() else None
        self.config = json.loads(local.read_text()) if local.exists() else {}
        settings = ModelSettings.from_config(self.config)
        self.max_audio_seconds, self.downsample_rate = settings.max_audio_seconds, settings.downsample_rate
        # the engine settings as far as the route shows them; the servers' other settings are their own
        self.options = EngineOptions(max_model_len=first.max_model_len or EngineOptions.max_model_len)
        self.build_seconds = time.perf_counter() - started

    # ----------------------------------------------------------------- lifecycle
    async def _connect(self, urls: list[str]) -> list[Server]:
        servers = list(await asyncio.gather(*(self._probe(url) for url in urls)))
        self._queue: asyncio.Queue[PendingRequest] = asyncio.Queue()
        self._workers = [asyncio.ensure_future(self._work(server))  # interleaved: the first requests alternate
                         for _ in range(self.max_in_flight) for server in servers]
        return servers

    async def _probe(self, url: str) -> Server:
        try:
            models = (await self._http.get(f"{url}/v1/models", timeout=CONNECT_TIMEOUT_S)).raise_for_status().json()
            version = (await self._http.get(f"{url}/version", timeout=CONNECT_TIMEOUT_S)).json().get("version")
            model = models["data"][0]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as error:
            raise ServerError(f"{url}: no fireredasr-serve answers there ({type(error).__name__}); start one "
                              "with `fireredasr-serve --port PORT` or fix the URL") from None
        return Server(url=url, model=model["id"], root=str(model.get("root") or model["id"]),
                      max_model_len=model.get("max_model_len"), vllm_version=version)

    async def _shutdown(self) -> None:
        for worker in getattr(self, "_workers", []):
            worker.cancel()
        await self._http.aclose()

    def close(self) -> None:
        """Stop the workers and the connections (the servers keep running)."""
        if self._loop.is_running():
            self._call(self._shutdown(), timeout=30)
        self._stop_loop()

    def check_supported(self, options: DecodingOptions) -> None:
        check_supported(options)

    # ----------------------------------------------------------------- dispatch (client loop)
    async def _transcribe(self, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        job = PendingRequest(prepared, options, self._loop.create_future())
        self._requeue(job)
        return await job.future

    def _requeue(self, job: PendingRequest) -> None:
        if all(server.down for server in self.servers):
            self.dead = f"no server answered ({'; '.join(job.failures) or 'all are down'})"
            self._finish(job, Transcript.failed(job.prepared, f"{job.prepared.id}: {self.dead}"))
        elif job.attempts >= MAX_ATTEMPTS:
            self._finish(job, Transcript.failed(
                job.prepared, f"{job.prepared.id}: failed {job.attempts} times ({job.failures[-1]})"))
        else:
            self._queue.put_nowait(job)

    @staticmethod
    def _finish(job: PendingRequest, transcript: Transcript) -> None:
        if not job.future.done():
            job.future.set_result(transcript)

    async def _work(self, server: Server) -> None:
        """One of a server's ``max_in_flight`` workers."""
        while True:
            job = await self._queue.get()
            if server.down:
                self._requeue(job)
                return
            server.in_flight += 1
            try:
                transcript = await self._post(server, job.prepared, job.options)
            except RetryableFailure as failure:
                job.attempts += 1
                job.failures.append(f"{server.url}: {failure}")
                server.failures += 1
                server.dropped += 1
                if isinstance(failure, EngineStopped):
                    server.down = True
                elif server.failures >= MAX_FAILURES:
                    if await self._healthy(server):
                        server.failures = 0
                    else:
                        server.down = True
                self._requeue(job)
                if server.down:
                    self._drain_if_all_down()
                    return
                await asyncio.sleep(RETRY_PAUSE_S * 2 ** (server.failures - 1))
                continue
            except Exception as error:  # anything else is this request's own failure
                transcript = Transcript.failed(job.prepared, f"{job.prepared.id}: {type(error).__name__}: {error}")
            finally:
                server.in_flight -= 1
            server.failures = 0
            server.answered += 1
            self._finish(job, transcript)

    async def _healthy(self, server: Server) -> bool:
        """After ``MAX_FAILURES`` dropped requests in a row: a server whose ``/health`` still answers 200 stays in
        use (a burst of dropped connections under load, from a live server); one that does not is left out (a
        killed server refuses connections, a dead engine answers 503)."""
        try:
            return (await self._http.get(f"{server.url}/health", timeout=CONNECT_TIMEOUT_S)).status_code == 200
        except httpx.HTTPError:
            return False

    def _drain_if_all_down(self) -> None:
        if all(server.down for server in self.servers):
            while not self._queue.empty():
                self._requeue(self._queue.get_nowait())

    async def _post(self, server: Server, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        form = {"model": server.model, "stream": "true", "stream_include_usage": "true",
                "max_completion_tokens": str(self.max_tokens_for(prepared.samples, options)),
                "temperature": str(options.temperature), "top_p": str(options.top_p)}
        if options.top_k:
            form["top_k"] = str(options.top_k)
        if options.seed is not None:
            form["seed"] = str(options.seed)
        if options.repetition_penalty != 1.0:
            form["repetition_penalty"] = str(options.repetition_penalty)
        if options.hotwords and options.hotword_weight:  # to the server's hotword processor (fireredasr_vllm.hotwords)
            form["vllm_xargs"] = json.dumps({HOTWORDS_KEY: format_hotwords(options.hotwords),
                                             HOTWORD_WEIGHT_KEY: options.hotword_weight}, ensure_ascii=False)
        files = {"file": (f"{prepared.id}.wav", audio_lib.wav_bytes(prepared.samples), "audio/wav")}
        started = time.perf_counter()
        text, ttft_s, finish_reason, usage = [], 0.0, None, {}
        try:
            async with self._http.stream("POST", server.url + TRANSCRIPTIONS, data=form, files=files) as response:
                if response.status_code >= 500:
                    await response.aread()
                    if ENGINE_STOPPED in error_message(response):
                        raise EngineStopped(ENGINE_STOPPED)
                    raise RetryableFailure(f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    await response.aread()
                    return Transcript.failed(prepared, f"{prepared.id}: {error_message(response)}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: "):])
                    if "error" in chunk:
                        raise RetryableFailure(str(chunk["error"].get("message", chunk["error"]))[:200])
                    for choice in chunk.get("choices", []):
                        delta = choice.get("delta", {}).get("content") or ""
                        if delta and not text:
                            ttft_s = time.perf_counter() - started
                        text.append(delta)
                        finish_reason = choice.get("finish_reason") or finish_reason
                    usage |= chunk.get("usage") or {}
        except httpx.TransportError as error:
            raise RetryableFailure(f"{type(error).__name__}: {error}"[:200]) from None
        if finish_reason is None:
            raise RetryableFailure("the stream ended before the transcription finished")
        latency_s = time.perf_counter() - started
        # vLLM 0.32's streamed usage counts the audio placeholders twice (the prompt already holds them)
        prompt_tokens = (usage.get("prompt_tokens", 0)
                         - audio_lib.num_speech_tokens(len(prepared.samples), self.downsample_rate))
        return Transcript.decoded(prepared, "".join(text), prompt_tokens=prompt_tokens,
                                  output_tokens=usage.get("completion_tokens", 0), latency_s=latency_s,
                                  ttft_s=ttft_s, finish_reason=finish_reason)

    def describe(self) -> dict:
        """What ``Engine.describe`` gives, for the servers: their URLs, models and vLLM versions."""
        first = self.servers[0]
        return {
            "model": self.model_spec, "model_dir": first.root,
            "architecture": (self.config.get("architectures") or ["(on the server)"])[0],
            "engine": {"max_in_flight_per_server": self.max_in_flight},
            "dtype": "(on the server)", "engine_build_seconds": round(self.build_seconds, 1),
            "vllm_distribution": f"vLLM {first.vllm_version} server" + ("s" if len(self.servers) > 1 else ""),
            "versions": installed_versions(("httpx", "datasets", "jiwer")),
            "device": ", ".join(server.url for server in self.servers), "max_audio_seconds": self.max_audio_seconds,
            "servers": [server.facts() for server in self.servers],
        }
