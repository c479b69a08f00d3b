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
    python -m bench.gpu_benchmark run --system ours --tp 2 --out tp2.json  # tensor parallel
    python -m bench.gpu_benchmark run --system ours --dp 2 --out dp2.json  # vLLM data parallelism: 2 engines
    python -m bench.gpu_benchmark run --system ours --dp 2 --frontends 4 --out dp2.json  # fireredasr-serve with
        #   4 API processes (--api-server-count) in front of the 2 engines, 4 client processes over HTTP
    python -m bench.gpu_benchmark report bench/results/gpu_*.json --plots bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fireredasr_engine.facade import run_in_thread

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = {"ours": "this project (vLLM plugin)", "builtin": "vLLM built-in FireRedASR2",
           "official": "official PyTorch (fireredasr)"}
BUILTIN_ARCHITECTURE = "FireRedASR2ForConditionalGeneration"
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
    from testkit.tiny import TinySpec

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
    import torch

    from fireredasr_vllm.convert import build_config, read_cmvn
    from fireredasr_vllm.model import DEFAULT_SPEECH_TOKEN
    from fireredasr_vllm.resolve import resolve_model
    from testkit.tiny import encoder_args, llm_args, tiny_model_dir

    spec = model_spec(size)
    tiny_official, tiny_converted = tiny_model_dir(), resolve_model("tiny")
    official = work / f"official-{size}"
    llm_dir = official / "Qwen2-7B-Instruct"
    shutil.rmtree(official, ignore_errors=True)
    shutil.copytree(tiny_official / "Qwen2-7B-Instruct", llm_dir,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "model.safetensors.index.json"))
    (llm_dir / "config.json").write_text(json.dumps(llm_config(spec), indent=2))
    shutil.copy(tiny_official / "cmvn.ark", official / "cmvn.ark")
    torch.save({"args": encoder_args(spec)}, official / "asr_encoder.pth.tar")
    torch.save({"args": llm_args(spec), "model_state_dict": {}}, official / "model.pth.tar")

    converted = work / f"vllm-{size}"
    shutil.rmtree(converted, ignore_errors=True)
    shutil.copytree(tiny_converted, converted, ignore=shutil.ignore_patterns(
        "*.safetensors", "model.safetensors.index.json", "conversion.json"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    ids = {t: tokenizer.convert_tokens_to_ids(t)
           for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", DEFAULT_SPEECH_TOKEN)}
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
        return np.array([len(c) / 16000 for c in self.clips])

    def summary(self) -> dict:
        d = self.durations
        return {"clips": len(d), "audio_s": round(float(d.sum()), 1), "mean_s": round(float(d.mean()), 2),
                "min_s": round(float(d.min()), 2), "max_s": round(float(d.max()), 2)} if len(d) else {"clips": 0}

    def take(self, n: int) -> "Workload":
        return Workload(self.clips[:n])


def speech_stream() -> np.ndarray:
    """The bundled demo clips end to end (float32, 16 kHz): real speech-like fbank input."""
    import soundfile as sf

    clips = sorted((REPO / "eval" / "demo" / "clips").glob("*.flac"))
    return np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])


def make_workload(durations: np.ndarray, seed: int) -> Workload:
    """Windows of the demo speech stream (tiled as needed) with the given durations."""
    if not len(durations):
        return Workload([])
    stream = speech_stream()
    rng = np.random.default_rng(seed)
    longest = int(durations.max() * 16000) + 1
    stream = np.tile(stream, longest // len(stream) + 2)
    clips = []
    for seconds in durations:
        n = int(seconds * 16000)
        start = int(rng.integers(0, len(stream) - n))
        clips.append(np.ascontiguousarray(stream[start:start + n]))
    return Workload(clips)


def aishell_like(n: int, seed: int = 0) -> Workload:
    """AISHELL-1-test-like durations: log-normal, mean about 5 s, clipped to 2-10 s."""
    rng = np.random.default_rng(seed)
    return make_workload(np.clip(rng.lognormal(np.log(4.6), 0.38, n), 2.0, 10.0), seed + 1)


def long_clips(n: int, seed: int = 100) -> Workload:
    """Clips of 25-30 s, near the model's 30 s limit."""
    return make_workload(np.random.default_rng(seed).uniform(25.0, 30.0, n), seed + 1)


# ------------------------------------------------------------------------------------------ metrics
def percentiles(values, points=(50, 90, 99)) -> dict:
    if not len(values):
        return {}
    return {f"p{p}_ms": round(float(np.percentile(values, p)) * 1000, 1) for p in points}


def throughput(workload: Workload, wall_s: float, output_tokens: int, ok: int, **extra) -> dict:
    audio = float(workload.durations.sum())
    return {"clips": len(workload.clips), "ok": ok, "wall_s": round(wall_s, 3),
            "clips_per_s": round(len(workload.clips) / wall_s, 2), "rtfx": round(audio / wall_s, 1),
            "output_tok_per_s": round(output_tokens / wall_s, 1), **extra}


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


# ------------------------------------------------------------------------------------------ vLLM systems
class MemoryProbe:
    """Mixed into vLLM's worker (``worker_extension_cls``); called through ``collective_rpc``."""

    def memory_stats(self) -> dict:
        import torch

        runner = getattr(self, "model_runner", None)
        stats = {"weights_bytes": getattr(runner, "model_memory_usage", None),
                 "peak_activation_bytes": getattr(self, "peak_activation_memory", None),
                 "kv_cache_bytes": getattr(self, "available_kv_cache_memory_bytes", None),
                 "v2_model_runner": getattr(self, "use_v2_model_runner", None)}
        if torch.cuda.is_available():
            stats |= {"max_allocated_bytes": torch.cuda.max_memory_allocated(),
                      "reserved_bytes": torch.cuda.memory_reserved()}
        return {k: (int(v) if v is not None else None) for k, v in stats.items()}


def engine_options(system: str, *, tp: int = 1, dp: int = 1, dtype: str = "bfloat16", max_num_seqs: int = 256,
                   dummy: bool = True, penalty_processor: bool = False, reuse_caches: bool = False,
                   renderer_workers: int = 1):
    """Identical engine settings for both vLLM systems; caches that would reuse work across passes off.

    ``penalty_processor``: register the official repetition-penalty logits processor (what in-process
    engines do by default); it keeps vLLM 0.26 on its V1 model runner. No decoding here needs it.
    ``reuse_caches``: prefix and processor caches on, for the step-wise beam search (each step re-sends
    the clip and the prompt so far; a user runs it with the caches on). ``renderer_workers``: vLLM's
    ``renderer_num_workers`` (threads for input processing in the API process; needs the processor cache off)."""
    from fireredasr_engine.options import EngineOptions

    extra = [("mm_processor_cache_gb", 4 if reuse_caches else 0),
             ("worker_extension_cls", "bench.gpu_benchmark.MemoryProbe")]
    if renderer_workers > 1:
        extra.append(("renderer_num_workers", renderer_workers))
    if dummy:
        extra.append(("load_format", "dummy"))
    if not is_cpu():
        extra.append(("compilation_config", {"cudagraph_capture_sizes": CAPTURE_SIZES}))
    return EngineOptions(dtype=dtype, max_model_len=1024, max_num_seqs=max_num_seqs, max_num_batched_tokens=8192,
                         tensor_parallel_size=tp, data_parallel_size=dp, gpu_memory_utilization=0.85,
                         enable_prefix_caching=reuse_caches,
                         kv_cache_gb=2, architecture=BUILTIN_ARCHITECTURE if system == "builtin" else None,
                         official_penalty=penalty_processor, extra=tuple(extra))


def is_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def decoding(tokens: int, preset: str = "greedy"):
    """``preset`` (greedy or official: beam 3 + the official repetition penalty) with exactly ``tokens``
    output tokens per clip."""
    from fireredasr_engine.options import PRESETS

    return replace(PRESETS[preset], max_tokens=tokens, min_tokens=tokens, ignore_eos=True,
                       name=f"{preset}-fixed{tokens}")


class UsageSampler:
    """While a pass runs: GPU utilisation (nvidia-smi every 200 ms) and the CPU time of this process's
    children (vLLM's engine core and workers), read from psutil at start and end."""

    def __init__(self, exclude: set[int] = frozenset()):
        self.exclude = exclude  # pids left out (and their children): the HTTP benchmark's client processes

    def __enter__(self):
        import psutil

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
            self.smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
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
        self.gpu_busy = None
        if self.smi is not None:
            self.smi.terminate()
            out = self.smi.communicate()[0]
            values = [float(v) for line in out.splitlines() for v in line.split(",") if v.strip()]
            self.gpu_busy = round(float(np.mean(values)), 1) if values else None

    def record(self, clips: int) -> dict:
        return {"gpu_busy_pct": self.gpu_busy, "engine_cpu_cores": round(self.engine_cpu_s / self.wall, 2),
                "engine_cpu_ms_per_clip": round(1000 * self.engine_cpu_s / clips, 2)}


def run_concurrent(engine, workload: Workload, options, concurrency: int) -> tuple[list, float, float]:
    """Send every clip through ``engine.transcribe_async`` with at most ``concurrency`` in flight.

    Returns (results as (transcript, client latency s)), wall seconds, CPU seconds of this process).
    """
    async def one(semaphore, index, clip):
        async with semaphore:
            started = time.perf_counter()
            transcript = await engine.transcribe_async(clip, options, id=f"clip{index:05d}")
            return transcript, time.perf_counter() - started

    async def main():
        semaphore = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(one(semaphore, i, c) for i, c in enumerate(workload.clips)))

    cpu, wall = time.process_time(), time.perf_counter()
    results = run_in_thread(main)  # also under a running loop (Jupyter)
    return results, time.perf_counter() - wall, time.process_time() - cpu


def offline_pass(engine, workload: Workload, options, concurrency: int) -> dict:
    """Throughput with ``concurrency`` requests in flight, and the latency each request saw."""
    with UsageSampler() as usage:
        results, wall, cpu = run_concurrent(engine, workload, options, concurrency)
    ok = [t for t, _ in results if t.ok]
    errors = sorted({t.error for t, _ in results if not t.ok})[:3]
    return throughput(workload, wall, sum(t.output_tokens for t in ok), len(ok), concurrency=concurrency,
                      **usage.record(len(results)),
                      output_tokens_per_clip=sorted({t.output_tokens for t in ok}),
                      prompt_tokens_mean=round(float(np.mean([t.prompt_tokens for t in ok])), 1) if ok else None,
                      api_cpu_ms_per_clip=round(1000 * cpu / len(results), 2), errors=errors,
                      latency=percentiles([seconds for t, seconds in results if t.ok]))


def latency_pass(engine, workload: Workload, options, concurrency: int) -> dict:
    results, wall, _ = run_concurrent(engine, workload, options, concurrency)
    latency = [seconds for t, seconds in results if t.ok]
    ttft = [t.ttft_s for t, _ in results if t.ok]
    return {"concurrency": concurrency, "clips": len(results), "ok": len(latency), **percentiles(latency),
            "mean_ms": round(1000 * float(np.mean(latency)), 1) if latency else None,
            "ttft_p50_ms": round(1000 * float(np.median(ttft)), 1) if ttft else None,
            "clips_per_s": round(len(results) / wall, 2)}


def frontend_cost(system: str, model_dir: Path, workload: Workload) -> dict:
    """CPU ms per clip of each system's front end in the API process (one thread): the built-in's
    feature extractor; ours only validates and packs the samples (its features run on the model's device)."""
    if system == "builtin":
        from vllm.transformers_utils.processors.fireredasr2 import FireRedASR2FeatureExtractor

        extractor = FireRedASR2FeatureExtractor(**json.loads((model_dir / "preprocessor_config.json").read_text()))

        def extract(clip):
            return extractor([clip], sampling_rate=16000)
    else:
        from fireredasr_vllm.model import FireRedFrontend

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


def measure_vllm(engine, system: str, model_dir: Path, plan: Plan) -> dict:
    """Every measurement of one vLLM system on a built engine."""
    options = decoding(plan.tokens, plan.decoding)
    short, long = aishell_like(plan.clips, plan.seed), long_clips(plan.long_clips, plan.seed + 100)
    offline_pass(engine, aishell_like(plan.warmup, plan.seed + 7), options, max(plan.concurrency))
    record = {"workload": short.summary(), "long_workload": long.summary(), "tokens_per_clip": plan.tokens,
              "offline": [], "latency": []}
    for concurrency in plan.concurrency:
        record["offline"].append(offline_pass(engine, short, options, concurrency))
        log(system, "offline", record["offline"][-1])
    for concurrency, count in plan.latency:
        record["latency"].append(latency_pass(engine, short.take(count), options, concurrency))
        log(system, "latency", record["latency"][-1])
    if long.clips:
        record["long"] = offline_pass(engine, long, options, plan.long_concurrency)
        log(system, "long", record["long"])
    record["frontend"] = frontend_cost(system, model_dir, short.take(plan.frontend_clips))
    record["memory"] = engine_memory(engine)
    return record


def run_vllm_system(system: str, model_dir: Path, plan: Plan, *, tp: int, dp: int = 1, dummy: bool = True) -> dict:
    """``dp`` > 1: vLLM's own data parallelism, one engine per GPU behind the one facade (it balances requests)."""
    from fireredasr_engine.engine import Engine
    from fireredasr_vllm.encoder_graphs import DISABLE_ENV

    options = engine_options(system, tp=tp, dp=dp, dummy=dummy, penalty_processor=plan.penalty_processor,
                             reuse_caches=plan.decoding == "official", renderer_workers=plan.renderer_workers)
    if not plan.encoder_graphs:
        os.environ[DISABLE_ENV] = "0"  # inherited by the engine processes
    if plan.frontends:
        return run_served(model_dir, options, plan)
    with Engine(model_dir, options) as engine:
        record = {"engine": engine.describe(), "engine_build_s": round(engine.build_seconds, 1)}
        return record | measure_vllm(engine, system, model_dir, plan)


# ------------------------------------------------------------------------------------------ served (HTTP)
def server_flags(options) -> list[str]:
    """fireredasr-serve flags for the engine settings ``engine_options`` gives the in-process facade."""
    extra = dict(options.extra)
    flags = ["--dtype", options.dtype, "--max-model-len", str(options.max_model_len),
             "--max-num-seqs", str(options.max_num_seqs), "--max-num-batched-tokens", str(options.max_num_batched_tokens),
             "--data-parallel-size", str(options.data_parallel_size),
             "--tensor-parallel-size", str(options.tensor_parallel_size), "--seed", str(options.seed),
             "--limit-mm-per-prompt", json.dumps({"audio": 1}),
             "--enable-prefix-caching" if options.enable_prefix_caching else "--no-enable-prefix-caching",
             "--mm-processor-cache-gb", str(extra.get("mm_processor_cache_gb", 0))]
    if not is_cpu():
        flags += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    if "load_format" in extra:
        flags += ["--load-format", extra["load_format"]]
    if "compilation_config" in extra:
        flags += ["--compilation-config", json.dumps(extra["compilation_config"])]
    if "renderer_num_workers" in extra:
        flags += ["--renderer-num-workers", str(extra["renderer_num_workers"])]
    if options.architecture:
        flags += ["--hf-overrides", json.dumps({"architectures": [options.architecture]})]
    return flags


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(model_dir: Path, options, frontends: int, log_path: Path):
    """fireredasr-serve on a free local port with ``frontends`` API processes; yields its URL."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "fireredasr_vllm.serve", "--model", str(model_dir), "--port", str(port),
               "--api-server-count", str(frontends), *server_flags(options)]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 900
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"fireredasr-serve exited with {server.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fireredasr-serve did not answer in 900 s; see {log_path}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            yield url
        finally:
            os.killpg(server.pid, 15)  # its own session: the API processes and engine cores go too
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()


def http_decoding(tokens: int):
    """Greedy, at most ``tokens`` tokens: the transcription route takes neither min_tokens nor ignore_eos.
    Random weights make an end-of-text token unlikely, so clips still get ``tokens`` tokens (recorded)."""
    from fireredasr_engine.options import PRESETS

    return replace(PRESETS["greedy"], max_tokens=tokens, name=f"greedy-max{tokens}")


def http_client(url: str, index: int, clients: int, plan: Plan, concurrency: int, barrier, results) -> None:
    """One client process: warms up, waits for the others, sends its share of the clips (every
    ``clients``-th), reports per-clip (ok, output tokens, prompt tokens, latency) and its CPU seconds."""
    from fireredasr_engine.client import RemoteEngine

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
                 "clips": [(t.ok, t.output_tokens, t.prompt_tokens, seconds, t.error) for t, seconds in out]})
    engine.close()


def served_pass(url: str, plan: Plan, concurrency: int) -> dict:
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
    audio = sum(r["audio_s"] for r in reports)
    return {"clips": len(clips), "ok": len(ok), "wall_s": round(wall, 3), "clips_per_s": round(len(clips) / wall, 2),
            "rtfx": round(audio / wall, 1), "output_tok_per_s": round(sum(c[1] for c in ok) / wall, 1),
            "concurrency": concurrency, "frontends": clients, **usage.record(len(clips)),
            "output_tokens_per_clip": sorted({c[1] for c in ok}),
            "prompt_tokens_mean": round(float(np.mean([c[2] for c in ok])), 1) if ok else None,
            "client_cpu_ms_per_clip": round(1000 * sum(r["cpu_s"] for r in reports) / len(clips), 2),
            "client_wall_s": [round(r["wall_s"], 3) for r in sorted(reports, key=lambda r: r["index"])],
            "errors": sorted({c[4] for c in clips if not c[0]})[:3],
            "latency": percentiles([c[3] for c in ok])}


def run_served(model_dir: Path, options, plan: Plan) -> dict:
    """The throughput passes through fireredasr-serve (``plan.frontends`` API processes in front of
    ``options.data_parallel_size`` engines) driven by as many client processes over HTTP; then the
    latency passes from this process."""
    from fireredasr_engine.client import RemoteEngine

    started = time.perf_counter()
    log_path = Path(os.environ.get("GPU_BENCHMARK_SERVER_LOG", "/tmp/gpu_benchmark_server.log"))
    with served(model_dir, options, plan.frontends, log_path) as url:
        record = {"engine": {"mode": "fireredasr-serve", "api_server_count": plan.frontends,
                             "data_parallel_size": options.data_parallel_size, "device": device_name(),
                             "server_flags": server_flags(options)},
                  "engine_build_s": round(time.perf_counter() - started, 1),
                  "workload": aishell_like(plan.clips, plan.seed).summary(), "tokens_per_clip": plan.tokens,
                  "offline": [], "latency": []}
        for concurrency in plan.concurrency:
            record["offline"].append(served_pass(url, plan, concurrency))
            log("served", "offline", record["offline"][-1])
        if plan.latency:
            engine = RemoteEngine(url, max_in_flight=max(c for c, _ in plan.latency))
            short = aishell_like(plan.clips, plan.seed)
            for concurrency, count in plan.latency:
                record["latency"].append(latency_pass(engine, short.take(count), http_decoding(plan.tokens),
                                                      concurrency))
                log("served", "latency", record["latency"][-1])
            engine.close()
    return record


# ------------------------------------------------------------------------------------------ official
class RandomInitLLM:
    """Stands in for ``AutoModelForCausalLM`` in the official loader: same config, random weights."""

    def __init__(self, dtype):
        self.dtype = dtype

    def from_pretrained(self, path, attn_implementation="eager", torch_dtype=None, **kwargs):
        from transformers import AutoConfig, AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=self.dtype,
                                                attn_implementation=attn_implementation)


@contextlib.contextmanager
def random_llm_weights(dtype):
    """While loading: the official ``from_args`` builds its Qwen2 with random weights (none on disk)."""
    from fireredasr.models import fireredasr_llm

    original = fireredasr_llm.AutoModelForCausalLM
    fireredasr_llm.AutoModelForCausalLM = RandomInitLLM(dtype)
    try:
        yield
    finally:
        fireredasr_llm.AutoModelForCausalLM = original


def load_official(official_dir: Path, device: str, dtype: str = "bfloat16"):
    """``fireredasr_engine.official.OfficialModel`` (the official classes) built on ``device``, all in ``dtype``."""
    import torch

    from fireredasr_engine.official import OfficialModel

    started = time.perf_counter()
    with random_llm_weights(getattr(torch, dtype)), torch.device(device):
        official = OfficialModel.load(official_dir, dtype=dtype, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return official, time.perf_counter() - started


def official_batches(official, workload: Workload, batch: int, tokens: int) -> dict:
    """Static batches of ``batch`` clips sorted by length (the official README's advice)."""
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
    return throughput(workload, wall, sum(lengths), len(lengths), batch=batch,
                      output_tokens_per_clip=sorted(set(lengths)), batch_latency=percentiles(latencies))


def run_official(official_dir: Path, plan: Plan) -> dict:
    import torch

    device = "cpu" if is_cpu() else "cuda"
    dtype = "float32" if device == "cpu" else "bfloat16"  # CPU (tests): float32, bf16 is slow there
    official, build_s = load_official(official_dir, device, dtype)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    short = aishell_like(max(n for _, n in plan.official_batches), plan.seed)
    record = {"engine": {"device": device_name(), "dtype": dtype, "attn_implementation": "eager"},
              "engine_build_s": round(build_s, 1), "tokens_per_clip": plan.tokens, "workload": short.summary(),
              "offline": [], "latency": []}
    for batch, count in plan.official_batches:
        result = official_batches(official, short.take(count), batch, plan.tokens)
        record["offline"].append(result)
        if batch == 1:
            record["latency"].append({"concurrency": 1, "clips": count, **result["batch_latency"]})
        log("official", "batch", result)
    if plan.official_long:
        long = long_clips(plan.official_long, plan.seed + 100)
        record["long_workload"] = long.summary()
        record["long"] = official_batches(official, long, 1, plan.tokens)
        log("official", "long", record["long"])
    frontend = short.take(plan.frontend_clips)
    started = time.thread_time()
    for clip in frontend.clips:
        official.features(clip)
    record["frontend"] = {"clips": len(frontend.clips), "features_cpu_ms_per_clip": round(
        1000 * (time.thread_time() - started) / len(frontend.clips), 2)}
    if device == "cuda":
        weights = sum(p.numel() * p.element_size() for p in official.model.parameters())
        record["memory"] = {"weights_gib": round(weights / 2**30, 2),
                            "max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    return record


# ------------------------------------------------------------------------------------------ run / report
def device_name() -> str:
    from fireredasr_engine.engine import device_name as name

    return name()


def log(system: str, what: str, result: dict) -> None:
    keep = {k: v for k, v in result.items() if not isinstance(v, (list, dict)) or k == "errors"}
    print(f"[{system}] {what}: {json.dumps(keep)}", flush=True)


def run(args) -> dict:
    plan = plan_from_args(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, official_dir = build_model_dirs(args.size, work)
    started = time.perf_counter()
    if args.system == "official":
        record = run_official(official_dir, plan)
    else:
        record = run_vllm_system(args.system, model_dir, plan, tp=args.tp, dp=args.dp)
    gpus = 0 if is_cpu() else max(args.tp, args.dp)
    return {"system": args.system, "label": SYSTEMS[args.system], "size": args.size, "device": device_name(),
            "gpus": gpus, "tp": args.tp, "dp": args.dp, "plan": asdict(plan),
            "seconds": round(time.perf_counter() - started, 1), **record}


def plan_from_args(args) -> Plan:
    plan = Plan()
    if args.size == "tiny":
        plan = Plan(clips=24, long_clips=4, concurrency=(4, 16), latency=((1, 6), (4, 12)), long_concurrency=4,
                    frontend_clips=8, official_batches=((1, 4), (4, 8)), official_long=2, warmup=4)
    overrides = {"clips": args.clips, "long_clips": args.long_clips, "tokens": args.tokens,
                 "decoding": args.decoding, "penalty_processor": args.penalty_processor or None,
                 "renderer_workers": args.renderer_workers, "frontends": args.frontends,
                 "encoder_graphs": False if args.eager_encoder else None}
    if args.concurrency:
        overrides["concurrency"] = tuple(int(c) for c in args.concurrency.split(","))
    if args.latency is not None:
        overrides["latency"] = tuple(tuple(int(x) for x in pair.split(":")) for pair in args.latency.split(",") if pair)
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------------------ report
def load_records(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def label(record: dict) -> str:
    """The system's name, with what set this run apart (official decoding, vLLM's V1 model runner)."""
    notes = []
    if record.get("plan", {}).get("decoding", "greedy") != "greedy":
        notes.append(f"{record['plan']['decoding']} decoding")
    if (record.get("memory") or {}).get("v2_model_runner") == 0:
        notes.append("V1 runner")
    return record["label"] + (f" ({', '.join(notes)})" if notes else "")


def gpus_cell(record: dict) -> str:
    mode = f"TP={record['tp']}" if record["tp"] > 1 else f"DP={record['dp']}" if record["dp"] > 1 else ""
    return f"{record['gpus']} {mode}".strip()


def single_gpu_runs(records: list[dict]) -> list[dict]:
    """One-GPU runs of the machine that ran the most systems (the side-by-side comparison)."""
    single = [r for r in records if r["gpus"] <= 1]
    if not single:
        return []
    machines = [r.get("machine") for r in single]
    main = max(set(machines), key=machines.count)
    return [r for r in single if r.get("machine") == main]


def best_offline(record: dict) -> dict:
    return max(record["offline"], key=lambda r: r["rtfx"])


def summary_table(records: list[dict]) -> str:
    """Markdown: one row per system and setting."""
    rows = ["| system | machine | GPUs | setting | clips | clips/s | RTFx | output tok/s | latency p50 / p90 / p99 ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        gpus = f"{r.get('machine', '')} | {gpus_cell(r)}"
        name = label(r)
        for o in r["offline"]:
            setting = f"batch {o['batch']}" if "batch" in o else f"max {o['concurrency']} in flight"
            rows.append(f"| {name} | {gpus} | {setting} | {o['clips']} | {o['clips_per_s']} | {o['rtfx']} | "
                        f"{o['output_tok_per_s']} | {latency_cell(o.get('latency') or o.get('batch_latency'))} |")
        for lat in r.get("latency", []) if r["system"] != "official" else []:
            rows.append(f"| {name} | {gpus} | latency, {lat['concurrency']} in flight | {lat['clips']} | "
                        f"{lat['clips_per_s']} | | | {latency_cell(lat)} |")
        if "long" in r:
            o = r["long"]
            setting = (f"25-30 s clips, {o['concurrency']} in flight" if "concurrency" in o
                       else f"25-30 s clips, batch {o['batch']}")
            rows.append(f"| {name} | {gpus} | {setting} | {o['clips']} | {o['clips_per_s']} | {o['rtfx']} | "
                        f"{o['output_tok_per_s']} | {latency_cell(o.get('latency') or o.get('batch_latency'))} |")
    return "\n".join(rows)


def latency_cell(latency: dict | None) -> str:
    return f"{latency['p50_ms']} / {latency['p90_ms']} / {latency['p99_ms']}" if latency else ""


def resource_table(records: list[dict]) -> str:
    rows = ["| system | machine | GPUs | build s | front end CPU ms/clip | API-process CPU ms/clip | GPU busy % | "
            "engine processes CPU (cores) | weights GiB | peak activation GiB | KV cache GiB | max allocated GiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        mem = r.get("memory") or {}
        best = best_offline(r)
        api, busy, cores = (best.get(k, "") for k in ("api_cpu_ms_per_clip", "gpu_busy_pct", "engine_cpu_cores"))
        rows.append(f"| {label(r)} | {r.get('machine', '')} | {gpus_cell(r)} | {round(r.get('engine_build_s', 0), 1)} | "
                    f"{r.get('frontend', {}).get('features_cpu_ms_per_clip', '')} | {api} | {busy} | {cores} | "
                    f"{mem.get('weights_gib', '')} | {mem.get('peak_activation_gib', '')} | "
                    f"{mem.get('kv_cache_gib', '')} | {mem.get('max_allocated_gib', '')} |")
    return "\n".join(rows)


def ratios(records: list[dict]) -> dict:
    """Best RTFx of ours over built-in and over official (single-GPU records)."""
    greedy = [r for r in single_gpu_runs(records) if r.get("plan", {}).get("decoding", "greedy") == "greedy"]
    best = {}
    for r in greedy:
        best[r["system"]] = max(best.get(r["system"], 0), best_offline(r)["rtfx"])
    out = {}
    if "ours" in best and "builtin" in best:
        out["ours_over_builtin"] = round(best["ours"] / best["builtin"], 2)
    if "ours" in best and "official" in best:
        out["ours_over_official"] = round(best["ours"] / best["official"], 2)
    if "builtin" in best and "official" in best:
        out["builtin_over_official"] = round(best["builtin"] / best["official"], 2)
    return out


def scaling(records: list[dict]) -> list[dict]:
    """RTFx at N GPUs / (N x RTFx at 1 GPU), against the 1-GPU run of the same machine (same device)."""
    rows = []
    for r in records:
        if r["gpus"] < 2:
            continue
        base = [b for b in records if b["gpus"] == 1 and b["system"] == r["system"]
                and b["device"] == r["device"] and b.get("machine") == r.get("machine")]
        if not base:
            continue
        cap = best_offline(r)["concurrency"]
        one = next((o for o in base[0]["offline"] if o.get("concurrency") == cap), best_offline(base[0]))
        rtfx = best_offline(r)["rtfx"]
        rows.append({"mode": "TP" if r["tp"] > 1 else "DP", "gpus": r["gpus"], "rtfx": rtfx,
                     "rtfx_1gpu": one["rtfx"], "efficiency": round(rtfx / (r["gpus"] * one["rtfx"]), 2)})
    return rows


def plot(records: list[dict], folder: Path, prefix: str = "gpu") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    single = single_gpu_runs(records)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in single:
        points = [(o.get("concurrency") or o.get("batch"), o["rtfx"]) for o in r["offline"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=r["label"])
    ax.set(xscale="log", xlabel="requests in flight (vLLM) / batch size (official)", ylabel="RTFx (audio s / wall s)",
           title=f"Throughput, {single[0]['device'] if single else ''}")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(folder / f"{prefix}_throughput.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values = [], []
    for r in single:
        for lat in r.get("latency", []):
            labels.append(f"{r['system']}\n{lat['concurrency']} in flight")
            values.append([lat.get("p50_ms", 0), lat.get("p90_ms", 0), lat.get("p99_ms", 0)])
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

    rows = scaling(records)
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
    records = load_records(paths)
    text = ["## Throughput and latency", summary_table(records), "", "## Resources", resource_table(records), "",
            "## Ratios (best RTFx)", json.dumps(ratios(records)), ""]
    rows = scaling(records)
    if rows:
        text += ["## Multi-GPU scaling", "| mode | GPUs | RTFx | RTFx 1 GPU | efficiency |", "|---|---|---|---|---|"]
        text += [f"| {r['mode']} | {r['gpus']} | {r['rtfx']} | {r['rtfx_1gpu']} | {r['efficiency']} |" for r in rows]
    if plots:
        text += ["", "Plots: " + ", ".join(str(p) for p in plot(records, plots, prefix))]
    return "\n".join(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure one system")
    r.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    r.add_argument("--size", choices=["real", "tiny"], default="real")
    r.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs (vLLM systems)")
    r.add_argument("--dp", type=int, default=1, help="vLLM data parallelism: engines, one per GPU (vLLM systems)")
    r.add_argument("--clips", type=int, help="short clips (default 2000; tiny: 24)")
    r.add_argument("--long-clips", type=int, help="25-30 s clips (default 200; tiny: 4)")
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
    r.add_argument("--concurrency", help="offline passes, requests in flight, e.g. 16,64,256")
    r.add_argument("--latency", help="latency passes as in_flight:clips pairs, e.g. 1:100,16:320 ('' for none)")
    r.add_argument("--machine", default="", help="a name for the machine, to match multi-GPU runs to their baseline")
    r.add_argument("--work", default="/tmp/gpu_benchmark", help="scratch folder (model dirs, wav files)")
    r.add_argument("--out", required=True, help="JSON file to write")
    p = sub.add_parser("report", help="tables and plots from run JSON files")
    p.add_argument("files", nargs="+")
    p.add_argument("--plots", type=Path, help="folder for the PNG plots")
    p.add_argument("--prefix", default="gpu", help="file name prefix of the plots")
    p.add_argument("--out", type=Path, help="write the markdown here too")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        text = report(args.files, args.plots, args.prefix)
        if args.out:
            args.out.write_text(text + "\n")
        print(text)
        return 0
    record = run(args) | {"machine": args.machine}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
