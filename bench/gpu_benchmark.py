"""Throughput, latency, memory and front-end cost at real FireRedASR-LLM-L shapes, three systems.

    ours      this project's vLLM model (FireRedASRLLMForConditionalGeneration) through the engine facade
    builtin   vLLM's built-in FireRedASR2ForConditionalGeneration, same weights, same facade
    official  the official PyTorch code (pip ``fireredasr``), batch 1 and its static batching

Weights are random bf16 at the real shapes (Conformer 16 x 1280, 20 heads; adapter 2560 -> 3584;
Qwen2-7B): vLLM gets ``load_format="dummy"`` on a config.json written by our converter's
``build_config``; the official model is built by its own ``from_args`` with the LLM initialised
randomly instead of read from disk. Every clip decodes exactly ``--tokens`` tokens (``ignore_eos``,
``min_tokens``), so all systems do the same work. ``--size tiny`` runs the same code on the tiny
dimensions (CPU tests).

    python -m bench.gpu_benchmark run --system ours --out ours.json        # one system per process
    python -m bench.gpu_benchmark run --system ours -tp 2 --out tp2.json   # tensor parallel
    python -m bench.gpu_benchmark run --system ours -dp 2 --out dp2.json   # vLLM data parallelism: 2 engines
    python -m bench.gpu_benchmark run --system ours -dp 2 --frontends 4 --out dp2.json  # fireredasr-serve with
        #   4 API processes (--api-server-count) in front of the 2 engines, 4 client processes over HTTP
    python -m bench.gpu_benchmark report bench/results/gpu_*.json --plots bench/results

Results are benchmark files of the one results schema (``eval.records``: ``write_benchmark``, read back by
``load_benchmark``, which also reads the files written before it): ``meta`` holds what ran (system, plan,
engine, workload, front-end cost, memory), one ``Measurement`` per pass (mode offline, online or long;
latencies in seconds, RTFx and percentiles from ``eval.records.speed``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import psutil
import soundfile as sf
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from bench.memory_probe import WORKER_EXTENSION
from eval.bundled import DEMO_CLIPS
from eval.official import OfficialModel
from eval.run import evaluate
from eval.records import Benchmark, Measurement, Summary, load_benchmark, speed, write_benchmark
from eval.sweep.runners import VllmRunner, online_load
from fireredasr_engine.client import RemoteEngine
from fireredasr_engine.engine import device_name, server_flags
from fireredasr_engine.facade import run_in_thread
from fireredasr_engine.options import PRESETS, EngineOptions
from fireredasr_vllm import BUILTIN_ARCHITECTURE, LLM_DIR
from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.cli_args import (DEFAULT_MAX_MODEL_LEN, CliError, add_max_model_len_argument,
                                      add_parallel_arguments, add_renamed_argument, exit_codes)
from fireredasr_vllm.constants import CHAT_TOKENS, DEFAULT_MAX_SECONDS, DEFAULT_SPEECH_TOKEN
from fireredasr_vllm.convert import build_config, read_cmvn
from fireredasr_vllm.encoder_graphs import DISABLE_ENV
from fireredasr_vllm.engine_death import ENGINE_STOPPED
from fireredasr_vllm.model import FireRedFrontend
from fireredasr_vllm.resolve import resolve_model
from testkit.servers import free_port, start_server, stop_server, wait_healthy
from testkit.tiny import TinySpec, encoder_args, llm_args, tiny_model_dir

matplotlib.use("Agg")

SYSTEMS = {"ours": "this project (vLLM plugin)", "builtin": "vLLM built-in FireRedASR2",
           "official": "official PyTorch (fireredasr)"}
# Qwen2-7B-Instruct's config.json (the LLM of FireRedASR-LLM-L).
QWEN2_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
            "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu", "sliding_window": 131072,
            "max_window_layers": 28, "use_sliding_window": False, "tie_word_embeddings": False,
            "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
            "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True}
CAPTURE_SIZES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256]


def model_spec(size: str):
    """TinySpec of the real FireRedASR-LLM-L encoder/LLM dims, or of the embedded tiny model."""
    if size == "real":
        return TinySpec(d_model=1280, n_head=20, n_layers_enc=16, hidden_size=3584, intermediate_size=18944,
                        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                        vocab_size=152064)
    return TinySpec(vocab_size=152064)


def llm_config(spec) -> dict:
    """config.json of the Qwen2 LLM for ``spec`` (Qwen2-7B's for the real size)."""
    return QWEN2_7B | {"hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
                       "num_hidden_layers": spec.num_hidden_layers, "num_key_value_heads": spec.num_key_value_heads,
                       "num_attention_heads": spec.num_attention_heads, "vocab_size": spec.vocab_size}


# ------------------------------------------------------------------------------------------ model dirs
def build_model_dirs(size: str, work: Path) -> tuple[Path, Path]:
    """(vLLM dir for load_format=dummy, official-layout dir without weights) at ``size`` dims.

    Tokenizer and CMVN come from the embedded tiny model; the config from ``convert.build_config``.
    """
    spec = model_spec(size)
    tiny_official, tiny_converted = tiny_model_dir(), resolve_model("tiny")
    official = work / f"official-{size}"
    llm_dir = official / LLM_DIR
    shutil.rmtree(official, ignore_errors=True)
    shutil.copytree(tiny_official / LLM_DIR, llm_dir,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "model.safetensors.index.json"))
    (llm_dir / "config.json").write_text(json.dumps(llm_config(spec), indent=2))
    shutil.copy(tiny_official / "cmvn.ark", official / "cmvn.ark")
    torch.save({"args": encoder_args(spec)}, official / "asr_encoder.pth.tar")
    torch.save({"args": llm_args(spec), "model_state_dict": {}}, official / "model.pth.tar")

    converted = work / f"vllm-{size}"
    shutil.rmtree(converted, ignore_errors=True)
    shutil.copytree(tiny_converted, converted, ignore=shutil.ignore_patterns(
        "*.safetensors", "model.safetensors.index.json", "conversion.json"))
    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    ids = {t: tokenizer.convert_tokens_to_ids(t)
           for t in (*CHAT_TOKENS, DEFAULT_SPEECH_TOKEN)}
    ids["__len__"] = len(tokenizer)
    means, istd = read_cmvn(official / "cmvn.ark")
    config = build_config(llm_dir, encoder_args(spec), llm_args(spec), means, istd, ids, "bfloat16")
    (converted / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return converted, official


# ------------------------------------------------------------------------------------------ workload
@dataclass
class Workload:
    clips: list[np.ndarray]

    @property
    def durations(self) -> np.ndarray:
        return np.array([len(c) / SAMPLE_RATE for c in self.clips])

    def summary(self) -> dict:
        d = self.durations
        return {"clips": len(d), "audio_s": round(float(d.sum()), 1), "mean_s": round(float(d.mean()), 2),
                "min_s": round(float(d.min()), 2), "max_s": round(float(d.max()), 2)} if len(d) else {"clips": 0}

    def take(self, n: int) -> "Workload":
        return Workload(self.clips[:n])


def speech_stream() -> np.ndarray:
    """The bundled demo clips end to end (float32, 16 kHz): real speech-like fbank input."""
    clips = sorted(DEMO_CLIPS.glob("*.flac"))
    return np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])


def make_workload(durations: np.ndarray, seed: int) -> Workload:
    """Windows of the demo speech stream (tiled as needed) with the given durations."""
    if not len(durations):
        return Workload([])
    stream = speech_stream()
    rng = np.random.default_rng(seed)
    longest = int(durations.max() * SAMPLE_RATE) + 1
    stream = np.tile(stream, longest // len(stream) + 2)
    clips = []
    for seconds in durations:
        n = int(seconds * SAMPLE_RATE)
        start = int(rng.integers(0, len(stream) - n))
        clips.append(np.ascontiguousarray(stream[start:start + n]))
    return Workload(clips)


def aishell_like(n: int, seed: int = 0) -> Workload:
    """AISHELL-1-test-like durations: log-normal, mean about 5 s, clipped to 2-10 s."""
    rng = np.random.default_rng(seed)
    return make_workload(np.clip(rng.lognormal(np.log(4.6), 0.38, n), 2.0, 10.0), seed + 1)


def long_clips(n: int, seed: int = 100) -> Workload:
    """Clips of 25-30 s, near the model's 30 s limit."""
    return make_workload(np.random.default_rng(seed).uniform(DEFAULT_MAX_SECONDS - 5.0, DEFAULT_MAX_SECONDS, n), seed + 1)


# ------------------------------------------------------------------------------------------ metrics
def timed_pass(system: str, mode: str, concurrency: int, *, clips: int, ok: int, audio_seconds: float,
               wall_seconds: float, output_tokens: int, latencies=(), ttfts=(), **extra) -> Measurement:
    """One pass in the results schema: RTFx (all clips' audio per wall second), clips and output tokens per
    second, latency/TTFT percentiles (seconds) of the clips that succeeded; ``extra``: figures outside it."""
    figures = speed(audio_seconds=audio_seconds, wall_seconds=wall_seconds, utterances=clips,
                    output_tokens=output_tokens, latencies=latencies, ttfts=ttfts)
    return Measurement(system, mode, concurrency,
                       Summary(utterances=ok, failed=clips - ok, timed_utterances=ok, **figures), extra)


@dataclass(frozen=True)
class MemorySetting:
    """The engine's memory and batch limits; the defaults are the project's (EngineOptions), so a run at
    defaults is what a user's first ``eval.run`` gets."""

    gpu_memory_utilization: float = EngineOptions.gpu_memory_utilization
    max_num_seqs: int | None = EngineOptions.max_num_seqs  # None: vLLM's default
    max_num_batched_tokens: int | None = EngineOptions.max_num_batched_tokens

    def label(self) -> str:
        return (f"util {self.gpu_memory_utilization:g}, max_num_seqs {self.max_num_seqs or 'default'}, "
                f"max_num_batched_tokens {self.max_num_batched_tokens or 'default'}")


@dataclass
class Plan:
    """What to measure (counts of clips); the defaults are the GPU run."""

    clips: int = 2000
    long_clips: int = 200
    tokens: int = 16
    concurrency: tuple[int, ...] = (16, 64, 256)
    latency: tuple[tuple[int, int], ...] = ((1, 100), (16, 320))  # (concurrency, clips)
    long_concurrency: int = 64
    frontend_clips: int = 200
    official_batches: tuple[tuple[int, int], ...] = ((1, 64), (16, 512))  # (batch, clips)
    official_long: int = 16
    warmup: int = 64
    seed: int = 0
    decoding: str = "greedy"  # or "official" (beam 3 + the official repetition penalty)
    penalty_processor: bool = False  # register the official penalty's logits processor (vLLM 0.26: V1 runner)
    renderer_workers: int = 1  # vLLM renderer_num_workers
    encoder_graphs: bool = True  # our model's encoder from CUDA graphs (False: eager, for A/B runs)
    frontends: int = 0  # > 0: fireredasr-serve with this many API processes, as many client processes (HTTP)
    memory: MemorySetting = MemorySetting()
    profile: str = ""  # a folder: one more pass at the largest in-flight count under vLLM's torch profiler
    eval_run: bool = False  # also the main job: eval.run over the short clips, at the largest in-flight count
    work: str = "/tmp/gpu_benchmark"


# ------------------------------------------------------------------------------------------ vLLM systems
def engine_options(system: str, *, tp: int = 1, dp: int = 1, dtype: str = "bfloat16",
                   max_model_len: int = DEFAULT_MAX_MODEL_LEN, dummy: bool = True, penalty_processor: bool = False,
                   reuse_caches: bool = False, renderer_workers: int = 1,
                   memory: "MemorySetting | None" = None, profile: str = "") -> EngineOptions:
    """Identical engine settings for both vLLM systems; caches that would reuse work across passes off.

    ``penalty_processor``: register the official repetition-penalty logits processor (what in-process
    engines do by default); it keeps vLLM 0.26 on its V1 model runner. No decoding here needs it.
    ``reuse_caches``: prefix and processor caches on, for the step-wise beam search (each step re-sends
    the clip and the prompt so far; a user runs it with the caches on). ``renderer_workers``: vLLM's
    ``renderer_num_workers`` (threads for input processing in the API process; needs the processor cache off).
    ``memory``: the memory setting (default: the project's defaults, what a user gets)."""
    memory = memory or MemorySetting()
    extra = [("mm_processor_cache_gb", 4 if reuse_caches else 0),
             ("worker_extension_cls", WORKER_EXTENSION)]
    if renderer_workers > 1:
        extra.append(("renderer_num_workers", renderer_workers))
    if profile:  # steady state only: skip the pass's first steps, keep a few hundred
        extra.append(("profiler_config", {"profiler": "torch", "torch_profiler_dir": str(Path(profile).resolve()),
                                          "torch_profiler_with_stack": False, "ignore_frontend": True,
                                          "delay_iterations": 30, "max_iterations": 200}))
    if dummy:
        extra.append(("load_format", "dummy"))
    if not is_cpu():
        extra.append(("compilation_config", {"cudagraph_capture_sizes": CAPTURE_SIZES}))
    return EngineOptions(dtype=dtype, max_model_len=max_model_len, max_num_seqs=memory.max_num_seqs,
                         max_num_batched_tokens=memory.max_num_batched_tokens,
                         tensor_parallel_size=tp, data_parallel_size=dp,
                         gpu_memory_utilization=memory.gpu_memory_utilization,
                         enable_prefix_caching=reuse_caches,
                         kv_cache_gb=2, architecture=BUILTIN_ARCHITECTURE if system == "builtin" else None,
                         official_penalty=penalty_processor, extra=tuple(extra))


def is_cpu() -> bool:
    return not torch.cuda.is_available()


def decoding(tokens: int, preset: str = "greedy"):
    """``preset`` (greedy or official: beam 3 + the official repetition penalty) with exactly ``tokens``
    output tokens per clip."""
    return replace(PRESETS[preset], max_tokens=tokens, min_tokens=tokens, ignore_eos=True,
                       name=f"{preset}-fixed{tokens}")


class UsageSampler:
    """While a pass runs: GPU utilisation (nvidia-smi every 200 ms) and the CPU time of this process's
    children (vLLM's engine core and workers), read from psutil at start and end."""

    def __init__(self, exclude: set[int] = frozenset()):
        self.exclude = exclude  # pids left out (and their children): the HTTP benchmark's client processes

    def __enter__(self):
        skip = set(self.exclude)
        for pid in self.exclude:
            with contextlib.suppress(psutil.Error):
                skip |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
        self.children = {p.pid: p for p in psutil.Process().children(recursive=True) if p.pid not in skip}
        self.child_cpu = self._child_cpu()
        self.started = time.perf_counter()
        self.smi = None
        if shutil.which("nvidia-smi") and not is_cpu():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # only this run's GPUs count
            self.smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                         "--format=csv,noheader,nounits",
                                         "-lms", "200", *(["-i", visible] if visible else [])],
                                        stdout=subprocess.PIPE, text=True)
        return self

    def _child_cpu(self) -> float:
        total = 0.0
        for process in self.children.values():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except Exception:  # a child that ended
                pass
        return total

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.started
        self.engine_cpu_s = self._child_cpu() - self.child_cpu
        self.gpu_busy = self.gpu_memory_peak = None
        if self.smi is not None:
            self.smi.terminate()
            out = self.smi.communicate()[0]
            samples = [[float(v) for v in line.split(",")] for line in out.splitlines() if line.count(",") == 1]
            if samples:
                self.gpu_busy = round(float(np.mean([busy for busy, _ in samples])), 1)
                self.gpu_memory_peak = round(max(used for _, used in samples) / 1024, 2)  # MiB -> GiB

    def record(self, clips: int) -> dict:
        return {"gpu_busy_pct": self.gpu_busy, "gpu_memory_peak_gib": self.gpu_memory_peak,
                "engine_cpu_cores": round(self.engine_cpu_s / self.wall, 2),
                "engine_cpu_ms_per_clip": round(1000 * self.engine_cpu_s / clips, 2)}


def run_concurrent(engine, workload: Workload, options, concurrency: int) -> tuple[list, float, float]:
    """Every clip through ``engine.transcribe_async`` with at most ``concurrency`` in flight (the sweep's
    online load generator, closed loop). Returns (transcripts, wall seconds, CPU seconds of this process)."""
    clips = [(f"clip{index:05d}", clip) for index, clip in enumerate(workload.clips)]
    cpu = time.process_time()
    transcripts, wall = run_in_thread(lambda: online_load(engine, clips, options, concurrency, None, 0))
    return transcripts, wall, time.process_time() - cpu


def offline_pass(engine, system: str, workload: Workload, options, concurrency: int,
                 mode: str = "offline") -> Measurement:
    """Throughput with ``concurrency`` requests in flight, and the latency each request saw."""
    with UsageSampler() as usage:
        results, wall, cpu = run_concurrent(engine, workload, options, concurrency)
    ok = [t for t in results if t.ok]
    return timed_pass(system, mode, concurrency, clips=len(results), ok=len(ok),
                      audio_seconds=float(workload.durations.sum()), wall_seconds=wall,
                      output_tokens=sum(t.output_tokens for t in ok), latencies=[t.latency_s for t in ok],
                      ttfts=[t.ttft_s for t in ok], **usage.record(len(results)),
                      output_tokens_per_clip=sorted({t.output_tokens for t in ok}),
                      prompt_tokens_mean=round(float(np.mean([t.prompt_tokens for t in ok])), 1) if ok else None,
                      api_cpu_ms_per_clip=round(1000 * cpu / len(results), 2),
                      errors=sorted({t.error for t in results if not t.ok})[:3], engine_stopped=bool(engine.dead))


def latency_pass(engine, system: str, workload: Workload, options, concurrency: int) -> Measurement:
    """Latency and time to first token with ``concurrency`` requests in flight (mode ``online``)."""
    results, wall, _ = run_concurrent(engine, workload, options, concurrency)
    ok = [t for t in results if t.ok]
    return timed_pass(system, "online", concurrency, clips=len(results), ok=len(ok),
                      audio_seconds=float(workload.durations.sum()), wall_seconds=wall,
                      output_tokens=sum(t.output_tokens for t in ok), latencies=[t.latency_s for t in ok],
                      ttfts=[t.ttft_s for t in ok],
                      latency_mean_s=float(np.mean([t.latency_s for t in ok])) if ok else None)


def frontend_cost(system: str, model_dir: Path, workload: Workload) -> dict:
    """CPU ms per clip of each system's front end in the API process (one thread): the built-in's
    feature extractor; ours only validates and packs the samples (its features run on the model's device)."""
    if system == "builtin":
        # lazy: only vLLM versions with the built-in FireRedASR2 have this module
        from vllm.transformers_utils.processors.fireredasr2 import FireRedASR2FeatureExtractor

        extractor = FireRedASR2FeatureExtractor(**json.loads((model_dir / "preprocessor_config.json").read_text()))

        def extract(clip):
            return extractor([clip], sampling_rate=SAMPLE_RATE)
    else:
        frontend = FireRedFrontend()

        def extract(clip):
            return frontend(audio=clip)
    extract(workload.clips[0])
    started = time.thread_time()
    for clip in workload.clips:
        extract(clip)
    return {"clips": len(workload.clips),
            "features_cpu_ms_per_clip": round(1000 * (time.thread_time() - started) / len(workload.clips), 2)}


def engine_memory(engine) -> dict:
    try:
        stats = engine._call(engine._llm.collective_rpc("memory_stats"))
    except Exception as error:  # an engine without the probe still gets its throughput reported
        return {"error": f"{type(error).__name__}: {error}"}
    gib = {k: (round(v / 2**30, 2) if v is not None else None) for k, v in stats[0].items()}
    gib["v2_model_runner"] = stats[0].get("v2_model_runner")
    return {k.replace("_bytes", "_gib"): v for k, v in gib.items()} | {"workers": len(stats)}


def write_test_set(workload: Workload, folder: Path) -> Path:
    """The workload as a test set eval.run reads: FLAC files and a JSONL manifest (one reference for all)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "clips").mkdir(parents=True)
    lines = []
    for index, clip in enumerate(workload.clips):
        path = folder / "clips" / f"clip{index:05d}.flac"
        sf.write(path, clip, SAMPLE_RATE)
        lines.append(json.dumps({"id": path.stem, "audio_filepath": str(path), "text": "今天天气很好"},
                                ensure_ascii=False))
    manifest = folder / "set.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def eval_run_pass(engine, system: str, workload: Workload, options, concurrency: int, work: Path) -> Measurement:
    """The main job on the same engine: ``eval.run``'s ``evaluate`` over the workload as a test set (files
    read and decoded, rows scored, written and fsync'd as they finish, resumable), ``concurrency`` in flight.
    Its summary is eval.run's own (RTFx from its first to its last row); the wall time with loading the set
    and the run folder is kept beside it."""
    manifest = write_test_set(workload, work / "main_job")
    started = time.perf_counter()
    run = evaluate(str(manifest), engine=engine, decoding=options, output_dir=work / "main_job" / "run",
                   progress=False, max_in_flight=concurrency)
    wall = time.perf_counter() - started
    return Measurement(system, "eval_run", concurrency, run.summary,
                       {"wall_with_setup_s": round(wall, 2),
                        "rtfx_with_setup": round(float(workload.durations.sum()) / wall, 1)})


def measure_vllm(engine, system: str, model_dir: Path, plan: Plan) -> tuple[dict, list[Measurement]]:
    """Every measurement of one vLLM system on a built engine: (meta figures, measurements)."""
    options = decoding(plan.tokens, plan.decoding)
    short, long = aishell_like(plan.clips, plan.seed), long_clips(plan.long_clips, plan.seed + 100)
    offline_pass(engine, system, aishell_like(plan.warmup, plan.seed + 7), options, max(plan.concurrency))
    measurements = []
    for concurrency in plan.concurrency:
        measurements.append(log(offline_pass(engine, system, short, options, concurrency)))
    for concurrency, count in plan.latency:
        measurements.append(log(latency_pass(engine, system, short.take(count), options, concurrency)))
    if long.clips:
        measurements.append(log(offline_pass(engine, system, long, options, plan.long_concurrency, mode="long")))
    if plan.profile:
        engine._call(engine._llm.start_profile())
        measurements.append(log(offline_pass(engine, system, short, options, max(plan.concurrency), mode="profiled")))
        engine._call(engine._llm.stop_profile())
    if plan.eval_run:
        measurements.append(log(eval_run_pass(engine, system, short, options, max(plan.concurrency), Path(plan.work))))
    meta = {"workload": short.summary(), "long_workload": long.summary(), "tokens_per_clip": plan.tokens,
            "frontend": frontend_cost(system, model_dir, short.take(plan.frontend_clips)),
            "memory": engine_memory(engine)}
    return meta, measurements


def run_vllm_system(system: str, model_dir: Path, plan: Plan, *, tp: int, dp: int = 1, dummy: bool = True,
                    max_model_len: int = DEFAULT_MAX_MODEL_LEN) -> tuple[dict, list[Measurement]]:
    """``dp`` > 1: vLLM's own data parallelism, one engine per GPU behind the one facade (it balances requests)."""
    options = engine_options(system, tp=tp, dp=dp, dummy=dummy, penalty_processor=plan.penalty_processor,
                             max_model_len=max_model_len, reuse_caches=plan.decoding == "official",
                             renderer_workers=plan.renderer_workers, memory=plan.memory, profile=plan.profile)
    if not plan.encoder_graphs:
        os.environ[DISABLE_ENV] = "0"  # inherited by the engine processes
    if plan.frontends:
        return run_served(system, model_dir, options, plan)
    runner = VllmRunner(str(model_dir), options)
    try:
        meta, measurements = measure_vllm(runner.engine, system, model_dir, plan)
        built = {"engine": runner.engine.describe(), "engine_build_s": round(runner.build_seconds, 1)}
        return built | meta, measurements
    finally:
        runner.close()


# ------------------------------------------------------------------------------------------ served (HTTP)
@contextlib.contextmanager
def served(model_dir: Path, options, frontends: int, log_path: Path):
    """fireredasr-serve on a free local port with ``frontends`` API processes; yields its URL."""
    port = free_port()
    log_path.unlink(missing_ok=True)  # this run's log only
    server = start_server(["--model", str(model_dir), "--port", str(port), "--api-server-count", str(frontends),
                           *server_flags(options)], log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log_path, timeout_s=900)
        yield url
    finally:
        stop_server(server)  # its own session: the API processes and engine cores go too


def http_decoding(tokens: int):
    """Greedy, at most ``tokens`` tokens: the transcription route takes neither min_tokens nor ignore_eos.
    Random weights make an end-of-text token unlikely, so clips still get ``tokens`` tokens (recorded)."""
    return replace(PRESETS["greedy"], max_tokens=tokens, name=f"greedy-max{tokens}")


def http_client(url: str, index: int, clients: int, plan: Plan, concurrency: int, barrier, results) -> None:
    """One client process: warms up, waits for the others, sends its share of the clips (every
    ``clients``-th), reports per-clip (ok, output tokens, prompt tokens, latency s, error) and its CPU seconds."""
    try:
        engine = RemoteEngine(url, max_in_flight=concurrency)
        options = http_decoding(plan.tokens)
        share = Workload(aishell_like(plan.clips, plan.seed).clips[index::clients])
        run_concurrent(engine, Workload(aishell_like(plan.warmup, plan.seed + 7).clips[index::clients]), options,
                       concurrency)
    except BaseException as error:
        barrier.abort()
        results.put({"index": index, "error": f"{type(error).__name__}: {error}"})
        raise
    barrier.wait()
    out, wall, cpu = run_concurrent(engine, share, options, concurrency)
    results.put({"index": index, "wall_s": wall, "cpu_s": cpu, "audio_s": float(share.durations.sum()),
                 "clips": [(t.ok, t.output_tokens, t.prompt_tokens, t.latency_s, t.error) for t in out]})
    engine.close()


def served_pass(system: str, url: str, plan: Plan, concurrency: int) -> Measurement:
    """``plan.frontends`` client processes, ``concurrency`` requests in flight in all, started together."""
    clients = plan.frontends
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(clients + 1), context.Queue()
    processes = [context.Process(target=http_client, args=(url, i, clients, plan, max(1, concurrency // clients),
                                                           barrier, results), daemon=True) for i in range(clients)]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=900)
    except Exception:
        errors = [results.get(timeout=5).get("error") for _ in range(results.qsize())]
        raise RuntimeError(f"a client process failed: {errors}") from None
    with UsageSampler(exclude={p.pid for p in processes}) as usage:
        started = time.perf_counter()
        reports = [results.get(timeout=1800) for _ in processes]
        wall = time.perf_counter() - started
    for process in processes:
        process.join(timeout=60)
    failed = [r["error"] for r in reports if "error" in r]
    if failed:
        raise RuntimeError(f"a client process failed: {failed}")
    clips = [c for r in reports for c in r["clips"]]
    ok = [c for c in clips if c[0]]
    return timed_pass(system, "offline", concurrency, clips=len(clips), ok=len(ok),
                      audio_seconds=sum(r["audio_s"] for r in reports), wall_seconds=wall,
                      output_tokens=sum(c[1] for c in ok), latencies=[c[3] for c in ok], frontends=clients,
                      **usage.record(len(clips)), output_tokens_per_clip=sorted({c[1] for c in ok}),
                      prompt_tokens_mean=round(float(np.mean([c[2] for c in ok])), 1) if ok else None,
                      client_cpu_ms_per_clip=round(1000 * sum(r["cpu_s"] for r in reports) / len(clips), 2),
                      client_wall_s=[round(r["wall_s"], 3) for r in sorted(reports, key=lambda r: r["index"])],
                      errors=sorted({c[4] for c in clips if not c[0]})[:3],
                      engine_stopped=any(ENGINE_STOPPED in (c[4] or "") for c in clips))


def run_served(system: str, model_dir: Path, options, plan: Plan) -> tuple[dict, list[Measurement]]:
    """The throughput passes through fireredasr-serve (``plan.frontends`` API processes in front of
    ``options.data_parallel_size`` engines) driven by as many client processes over HTTP; then the
    latency passes from this process."""
    started = time.perf_counter()
    log_path = Path(os.environ.get("GPU_BENCHMARK_SERVER_LOG", "/tmp/gpu_benchmark_server.log"))
    with served(model_dir, options, plan.frontends, log_path) as url:
        short = aishell_like(plan.clips, plan.seed)
        meta = {"engine": {"mode": "fireredasr-serve", "api_server_count": plan.frontends,
                           "data_parallel_size": options.data_parallel_size, "device": device_name(),
                           "server_flags": server_flags(options)},
                "engine_build_s": round(time.perf_counter() - started, 1),
                "workload": short.summary(), "tokens_per_clip": plan.tokens}
        measurements = [log(served_pass(system, url, plan, concurrency)) for concurrency in plan.concurrency]
        if plan.latency:
            engine = RemoteEngine(url, max_in_flight=max(c for c, _ in plan.latency))
            for concurrency, count in plan.latency:
                measurements.append(log(latency_pass(engine, system, short.take(count), http_decoding(plan.tokens),
                                                     concurrency)))
            engine.close()
    return meta, measurements


# ------------------------------------------------------------------------------------------ official
class RandomInitLLM:
    """Stands in for ``AutoModelForCausalLM`` in the official loader: same config, random weights."""

    def __init__(self, dtype):
        self.dtype = dtype

    def from_pretrained(self, path, attn_implementation="eager", torch_dtype=None, **kwargs):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=self.dtype,
                                                attn_implementation=attn_implementation)


@contextlib.contextmanager
def random_llm_weights(dtype):
    """While loading: the official ``from_args`` builds its Qwen2 with random weights (none on disk)."""
    from fireredasr.models import fireredasr_llm  # lazy: the official package is needed by --system official only

    original = fireredasr_llm.AutoModelForCausalLM
    fireredasr_llm.AutoModelForCausalLM = RandomInitLLM(dtype)
    try:
        yield
    finally:
        fireredasr_llm.AutoModelForCausalLM = original


def load_official(official_dir: Path, device: str, dtype: str = "bfloat16"):
    """``eval.official.OfficialModel`` (the official classes) built on ``device``, all in ``dtype``.
    Not ``eval.sweep.runners.OfficialRunner``: that one loads real weights from disk, these are random."""
    started = time.perf_counter()
    with random_llm_weights(getattr(torch, dtype)), torch.device(device):
        official = OfficialModel.load(official_dir, dtype=dtype, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return official, time.perf_counter() - started


def official_batches(official, workload: Workload, batch: int, tokens: int, mode: str = "offline") -> Measurement:
    """Static batches of ``batch`` clips sorted by length (the official README's advice); the latency
    percentiles are those of the batches (one figure per batch)."""
    order = np.argsort(workload.durations)
    groups = [[workload.clips[i] for i in order[s:s + batch]] for s in range(0, len(order), batch)]
    official.transcribe(groups[0][:1], max_new_tokens=tokens, ignore_eos=True)  # warm-up
    latencies, lengths = [], []
    wall = time.perf_counter()
    for group in groups:
        results = official.transcribe(group, batch_size=len(group), max_new_tokens=tokens, ignore_eos=True)
        latencies.append(results[0]["latency_s"])
        lengths += [len(r["token_ids"]) for r in results]
    wall = time.perf_counter() - wall
    return timed_pass("official", mode, batch, clips=len(workload.clips), ok=len(lengths),
                      audio_seconds=float(workload.durations.sum()), wall_seconds=wall, output_tokens=sum(lengths),
                      latencies=latencies, output_tokens_per_clip=sorted(set(lengths)))


def run_official(official_dir: Path, plan: Plan) -> tuple[dict, list[Measurement]]:
    device = "cpu" if is_cpu() else "cuda"
    dtype = "float32" if device == "cpu" else "bfloat16"  # CPU (tests): float32, bf16 is slow there
    official, build_s = load_official(official_dir, device, dtype)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    short = aishell_like(max(n for _, n in plan.official_batches), plan.seed)
    meta = {"engine": {"device": device_name(), "dtype": dtype, "attn_implementation": "eager"},
            "engine_build_s": round(build_s, 1), "tokens_per_clip": plan.tokens, "workload": short.summary()}
    measurements = []
    for batch, count in plan.official_batches:
        measurements.append(log(official_batches(official, short.take(count), batch, plan.tokens)))
        if batch == 1:  # batch 1 is one request in flight: its latency point
            measurements.append(replace(measurements[-1], mode="online"))
    if plan.official_long:
        long = long_clips(plan.official_long, plan.seed + 100)
        meta["long_workload"] = long.summary()
        measurements.append(log(official_batches(official, long, 1, plan.tokens, mode="long")))
    frontend = short.take(plan.frontend_clips)
    started = time.thread_time()
    for clip in frontend.clips:
        official.features(clip)
    meta["frontend"] = {"clips": len(frontend.clips), "features_cpu_ms_per_clip": round(
        1000 * (time.thread_time() - started) / len(frontend.clips), 2)}
    if device == "cuda":
        weights = sum(p.numel() * p.element_size() for p in official.model.parameters())
        meta["memory"] = {"weights_gib": round(weights / 2**30, 2),
                          "max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    return meta, measurements


# ------------------------------------------------------------------------------------------ run
def log(measurement: Measurement) -> Measurement:
    """Print one pass's figures (``[system] mode: {...}``, the lines tools/gpu_compare.sh shows); returns it."""
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in measurement.record().items()
             if v is not None and k not in ("metric", "timed_utterances")  # no accuracy here; utterances says it
             and (not isinstance(v, (list, dict)) or k == "errors")}
    print(f"[{measurement.system}] {measurement.mode}: {json.dumps(shown)}", flush=True)
    return measurement


def run(args) -> tuple[dict, list[Measurement]]:
    """Measure one system: (meta, measurements) of its benchmark file."""
    plan = plan_from_args(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, official_dir = build_model_dirs(args.size, work)
    started = time.perf_counter()
    tp, dp = args.tensor_parallel_size, args.data_parallel_size
    if args.system == "official":
        meta, measurements = run_official(official_dir, plan)
    else:
        meta, measurements = run_vllm_system(args.system, model_dir, plan, tp=tp, dp=dp,
                                             max_model_len=args.max_model_len)
    gpus = 0 if is_cpu() else max(tp, dp)
    return {"system": args.system, "label": SYSTEMS[args.system], "size": args.size, "device": device_name(),
            "gpus": gpus, "tp": tp, "dp": dp, "plan": asdict(plan), "machine": args.machine,
            "seconds": round(time.perf_counter() - started, 1), **meta}, measurements


def plan_from_args(args) -> Plan:
    plan = Plan()
    if args.size == "tiny":
        plan = Plan(clips=24, long_clips=4, concurrency=(4, 16), latency=((1, 6), (4, 12)), long_concurrency=4,
                    frontend_clips=8, official_batches=((1, 4), (4, 8)), official_long=2, warmup=4)
    overrides = {"clips": args.clips, "long_clips": args.long_clips, "tokens": args.tokens,
                 "long_concurrency": args.long_in_flight,
                 "decoding": args.decoding, "penalty_processor": args.penalty_processor or None,
                 "renderer_workers": args.renderer_workers, "frontends": args.frontends,
                 "encoder_graphs": False if args.eager_encoder else None, "eval_run": args.eval_run or None,
                 "work": args.work, "profile": args.profile}
    overrides["memory"] = MemorySetting(args.gpu_memory_utilization, args.max_num_seqs, args.max_num_batched_tokens)
    if args.concurrency:
        overrides["concurrency"] = tuple(int(c) for c in args.concurrency.split(","))
    if args.latency is not None:
        overrides["latency"] = tuple(tuple(int(x) for x in pair.split(":")) for pair in args.latency.split(",") if pair)
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------------------ report
def passes(benchmark: Benchmark, mode: str) -> list[Measurement]:
    return [m for m in benchmark.measurements if m.mode == mode]


def label(benchmark: Benchmark) -> str:
    """The system's name, with what set this run apart (official decoding, vLLM's V1 model runner)."""
    meta, notes = benchmark.meta, []
    if meta.get("plan", {}).get("decoding", "greedy") != "greedy":
        notes.append(f"{meta['plan']['decoding']} decoding")
    if (meta.get("memory") or {}).get("v2_model_runner") == 0:
        notes.append("V1 runner")
    return meta["label"] + (f" ({', '.join(notes)})" if notes else "")


def gpus_cell(meta: dict) -> str:
    mode = f"TP={meta['tp']}" if meta["tp"] > 1 else f"DP={meta['dp']}" if meta["dp"] > 1 else ""
    return f"{meta['gpus']} {mode}".strip()


def single_gpu_runs(benchmarks: list[Benchmark]) -> list[Benchmark]:
    """One-GPU runs of the machine that ran the most systems (the side-by-side comparison)."""
    single = [b for b in benchmarks if b.meta["gpus"] <= 1]
    if not single:
        return []
    machines = [b.meta.get("machine") for b in single]
    main = max(set(machines), key=machines.count)
    return [b for b in single if b.meta.get("machine") == main]


def best_offline(benchmark: Benchmark) -> Measurement:
    return max(passes(benchmark, "offline"), key=lambda m: m.summary.rtfx)


def rounded(value, digits: int):
    return "" if value is None else round(value, digits)


def latency_cell(summary: Summary) -> str:
    """p50 / p90 / p99 in milliseconds (the schema holds seconds)."""
    points = (summary.latency_p50, summary.latency_p90, summary.latency_p99)
    return "" if None in points else " / ".join(f"{1000 * p:.1f}" for p in points)


def clips(measurement: Measurement) -> int:
    return measurement.summary.utterances + measurement.summary.failed


def memory_cell(meta: dict) -> str:
    """The run's memory setting (runs before it was recorded: the benchmark's fixed 0.85 / 256 / 8192)."""
    memory = meta.get("plan", {}).get("memory") or {"gpu_memory_utilization": 0.85, "max_num_seqs": 256,
                                                      "max_num_batched_tokens": 8192}
    return MemorySetting(**memory).label()


def summary_table(benchmarks: list[Benchmark]) -> str:
    """Markdown: one row per system and setting."""
    rows = ["| system | machine | GPUs | memory | setting | clips | failed | clips/s | RTFx | output tok/s | "
            "latency p50 / p90 / p99 ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, gpus, setting, m, speed=True):
        s = m.summary
        figures = f" {rounded(s.rtfx, 1)} | {rounded(s.output_tokens_per_s, 1)} " if speed else " | "
        failed = f"**{s.failed} (engine stopped)**" if m.extra.get("engine_stopped") else str(s.failed)
        return (f"| {name} | {gpus} | {setting} | {clips(m)} | {failed} | {rounded(s.utts_per_s, 2)} |{figures}| "
                f"{latency_cell(s)} |")

    for b in benchmarks:
        gpus, name = f"{b.meta.get('machine', '')} | {gpus_cell(b.meta)} | {memory_cell(b.meta)}", label(b)
        official = b.meta["system"] == "official"
        for m in passes(b, "offline"):
            rows.append(row(name, gpus, f"batch {m.concurrency}" if official else f"max {m.concurrency} in flight", m))
        for m in passes(b, "online") if not official else []:
            rows.append(row(name, gpus, f"latency, {m.concurrency} in flight", m, speed=False))
        for m in passes(b, "long"):
            unit = f"batch {m.concurrency}" if official else f"{m.concurrency} in flight"
            rows.append(row(name, gpus, f"25-30 s clips, {unit}", m))
    return "\n".join(rows)


def resource_table(benchmarks: list[Benchmark]) -> str:
    rows = ["| system | machine | GPUs | build s | front end CPU ms/clip | API-process CPU ms/clip | GPU busy % | "
            "engine processes CPU (cores) | weights GiB | peak activation GiB | KV cache GiB | max allocated GiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in benchmarks:
        meta, mem = b.meta, b.meta.get("memory") or {}
        best = best_offline(b).extra
        api, busy, cores = (rounded(best.get(key), 2)
                            for key in ("api_cpu_ms_per_clip", "gpu_busy_pct", "engine_cpu_cores"))
        rows.append(f"| {label(b)} | {meta.get('machine', '')} | {gpus_cell(meta)} | "
                    f"{round(meta.get('engine_build_s', 0), 1)} | "
                    f"{meta.get('frontend', {}).get('features_cpu_ms_per_clip', '')} | {api} | {busy} | {cores} | "
                    f"{mem.get('weights_gib', '')} | {mem.get('peak_activation_gib', '')} | "
                    f"{mem.get('kv_cache_gib', '')} | {mem.get('max_allocated_gib', '')} |")
    return "\n".join(rows)


def ratios(benchmarks: list[Benchmark]) -> dict:
    """Best RTFx of ours over built-in and over official (single-GPU runs)."""
    greedy = [b for b in single_gpu_runs(benchmarks) if b.meta.get("plan", {}).get("decoding", "greedy") == "greedy"]
    best = {}
    for b in greedy:
        best[b.meta["system"]] = max(best.get(b.meta["system"], 0), best_offline(b).summary.rtfx)
    out = {}
    for top, bottom in (("ours", "builtin"), ("ours", "official"), ("builtin", "official")):
        if top in best and bottom in best:
            out[f"{top}_over_{bottom}"] = round(best[top] / best[bottom], 2)
    return out


def scaling(benchmarks: list[Benchmark]) -> list[dict]:
    """RTFx at N GPUs / (N x RTFx at 1 GPU), against the 1-GPU run of the same machine (same device)."""
    rows = []
    for b in benchmarks:
        meta = b.meta
        if meta["gpus"] < 2:
            continue
        base = [o for o in benchmarks if o.meta["gpus"] == 1 and o.meta["system"] == meta["system"]
                and o.meta["device"] == meta["device"] and o.meta.get("machine") == meta.get("machine")]
        if not base:
            continue
        best = best_offline(b)
        one = next((m for m in passes(base[0], "offline") if m.concurrency == best.concurrency), best_offline(base[0]))
        efficiency = best.summary.rtfx / (meta["gpus"] * one.summary.rtfx)
        rows.append({"mode": "TP" if meta["tp"] > 1 else "DP", "gpus": meta["gpus"], "rtfx": round(best.summary.rtfx, 1),
                     "rtfx_1gpu": round(one.summary.rtfx, 1), "efficiency": round(efficiency, 2)})
    return rows


def plot(benchmarks: list[Benchmark], folder: Path, prefix: str = "gpu") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    single = single_gpu_runs(benchmarks)
    fig, ax = plt.subplots(figsize=(7, 4))
    for b in single:
        points = [(m.concurrency, m.summary.rtfx) for m in passes(b, "offline")]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=b.meta["label"])
    ax.set(xscale="log", xlabel="requests in flight (vLLM) / batch size (official)", ylabel="RTFx (audio s / wall s)",
           title=f"Throughput, {single[0].meta['device'] if single else ''}")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(folder / f"{prefix}_throughput.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values = [], []
    for b in single:
        for m in passes(b, "online"):
            labels.append(f"{b.meta['system']}\n{m.concurrency} in flight")
            values.append([1000 * (getattr(m.summary, f"latency_p{p}") or 0) for p in (50, 90, 99)])
    x = np.arange(len(labels))
    for i, name in enumerate(("p50", "p90", "p99")):
        ax.bar(x + (i - 1) * 0.27, [v[i] for v in values], 0.27, label=name)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="latency per clip, ms", title="Latency (short clips, 16 output tokens)")
    ax.legend()
    written.append(folder / f"{prefix}_latency.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    rows = scaling(benchmarks)
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = ["1 GPU"] + [f"{r['mode']}={r['gpus']}" for r in rows]
        ax.bar(names, [rows[0]["rtfx_1gpu"]] + [r["rtfx"] for r in rows], color="tab:blue")
        for i, r in enumerate(rows, 1):
            ax.text(i, r["rtfx"], f"eff. {r['efficiency']:.2f}", ha="center", va="bottom")
        ax.set(ylabel="RTFx", title="Multi-GPU scaling (this project's model)")
        written.append(folder / f"{prefix}_scaling.png")
        fig.tight_layout()
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def report(paths, plots: Path | None, prefix: str = "gpu") -> str:
    """Markdown tables (and plots) of benchmark files, of this schema or written before it."""
    benchmarks = [load_benchmark(p) for p in paths]
    text = ["## Throughput and latency", summary_table(benchmarks), "", "## Resources", resource_table(benchmarks),
            "", "## Ratios (best RTFx)", json.dumps(ratios(benchmarks)), ""]
    rows = scaling(benchmarks)
    if rows:
        text += ["## Multi-GPU scaling", "| mode | GPUs | RTFx | RTFx 1 GPU | efficiency |", "|---|---|---|---|---|"]
        text += [f"| {r['mode']} | {r['gpus']} | {r['rtfx']} | {r['rtfx_1gpu']} | {r['efficiency']} |" for r in rows]
    if plots:
        text += ["", "Plots: " + ", ".join(str(p) for p in plot(benchmarks, plots, prefix))]
    return "\n".join(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure one system")
    r.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    r.add_argument("--size", choices=["real", "tiny"], default="real")
    add_parallel_arguments(r)  # -tp / -dp (vLLM systems)
    for alias, dest in (("--tp", "tensor_parallel_size"), ("--dp", "data_parallel_size")):  # the spelling of the
        # recorded runs (docs/benchmarks.md, docs/serving.md), kept working, not shown in --help
        r.add_argument(alias, dest=dest, type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_max_model_len_argument(r)
    r.add_argument("--clips", type=int, help="short clips (default 2000; tiny: 24)")
    r.add_argument("--long-clips", type=int, help="25-30 s clips (default 200; tiny: 4)")
    r.add_argument("--long-in-flight", type=int, help="25-30 s clips in flight (default 64; tiny: 4)")
    r.add_argument("--tokens", type=int, help="output tokens per clip (default 16)")
    r.add_argument("--decoding", choices=["greedy", "official"], help="greedy (default) or official: beam 3 + "
                   "the official repetition penalty (step-wise beam search, vLLM systems)")
    r.add_argument("--renderer-workers", type=int, help="vLLM renderer_num_workers (default 1)")
    r.add_argument("--penalty-processor", action="store_true", help="register the official repetition-penalty "
                   "logits processor, as in-process engines do (keeps vLLM 0.26 on its V1 model runner)")
    r.add_argument("--eager-encoder", action="store_true", help="our model's encoder without CUDA graphs "
                   "(FIREREDASR_ENCODER_CUDA_GRAPHS=0), for A/B runs")
    r.add_argument("--frontends", type=int, help="serve through fireredasr-serve with this many API processes "
                   "(--api-server-count) and drive it from as many client processes over HTTP (vLLM systems, greedy)")
    r.add_argument("--gpu-memory-utilization", type=float, default=MemorySetting.gpu_memory_utilization,
                   help="vLLM's share of GPU memory (default: the project's, %(default)s)")
    r.add_argument("--max-num-seqs", type=int, help="vLLM's max_num_seqs (default: vLLM's)")
    r.add_argument("--max-num-batched-tokens", type=int, help="vLLM's max_num_batched_tokens (default: vLLM's)")
    add_renamed_argument(r, "--in-flight", "--concurrency", dest="concurrency", metavar="N[,N...]",
                         help="offline passes: requests in flight in each, e.g. 16,64,256")
    r.add_argument("--latency", help="latency passes as in_flight:clips pairs, e.g. 1:100,16:320 ('' for none)")
    r.add_argument("--profile", default="", help="a folder: one more pass at the largest in-flight count under "
                   "vLLM's torch profiler (a few hundred steady-state steps); python -m bench.profile_trace reads it")
    r.add_argument("--eval-run", action="store_true", help="also run the main job, eval.run over the short clips "
                   "(rows scored and written), on the same engine after the other passes")
    r.add_argument("--machine", default="", help="a name for the machine, to match multi-GPU runs to their baseline")
    r.add_argument("--work", default="/tmp/gpu_benchmark", help="scratch folder (model dirs, wav files)")
    add_renamed_argument(r, "--output", "--out", dest="out", required=True, metavar="FILE",
                         help="benchmark file to write (JSON, eval.records' schema)")
    p = sub.add_parser("report", help="tables and plots from benchmark files (any version's)")
    p.add_argument("files", nargs="+")
    p.add_argument("--plots", type=Path, help="folder for the PNG plots")
    p.add_argument("--prefix", default="gpu", help="file name prefix of the plots")
    add_renamed_argument(p, "--output", "--out", dest="out", type=Path, metavar="FILE",
                         help="write the markdown here too")
    return parser.parse_args(argv)


@exit_codes()
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        try:
            text = report(args.files, args.plots, args.prefix)
        except (FileNotFoundError, ValueError) as error:  # load_benchmark's one sentence: a missing or foreign file
            raise CliError(str(error)) from None
        if args.out:
            args.out.write_text(text + "\n")
        print(text)
        return 0
    meta, measurements = run(args)
    print(f"wrote {write_benchmark(args.out, meta, measurements)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
