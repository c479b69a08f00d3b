"""How a sweep measures: runners that build (or reuse) an engine or load the official code and time one
pass of a configuration, the load generators (offline: every utterance at once; online: N clients,
optionally with Poisson arrivals), a peak-memory sampler, and one pass's figures in the results schema.
``bench/model_throughput.py`` measures on the same runners."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from eval.bench import official_dir_for
from eval.errors import UserError
from eval.normalize import NormalizerOptions
from eval.official import OfficialModel
from eval.records import SPEED_FIELDS
from eval.scoring import SCORE_COLUMNS, Tally, score_columns
from eval.sweep.config import Job
from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.resolve import resolve_dtype, resolve_model
from fireredasr_engine.cli import start_engine
from fireredasr_engine.facade import run_in_thread
from fireredasr_engine.options import DecodingOptions, EngineOptions, Transcript


def serves(engine, model: str, options: EngineOptions) -> bool:
    """Whether the running ``engine`` is the one ``model`` with ``options`` would build."""
    return (engine is not None and engine.options == options
            and Path(engine.model_dir) == resolve_model(model, dtype=options.dtype))


def open_runner(job: Job, model: str, *, dtype: str = "auto", shared=None, server: str | None = None):
    """The runner for ``job``: the official code, or a vLLM engine (``shared`` when it serves the job)."""
    if job.system == "official":
        return OfficialRunner(model, dtype=dtype)
    return VllmRunner(model, job.engine, shared=shared, server=server)


class PeakMemory:
    """Peak summed RSS of ``processes`` (this one and the engine's) and peak GPU memory, sampled."""

    def __init__(self, processes: list, interval: float = 0.1):
        self.processes, self.interval = processes, interval
        self.rss_mb, self.gpu_mb = 0.0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)

    def sample(self) -> None:
        rss = 0
        for proc in self.processes:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:  # the process has exited
                pass
        self.rss_mb = max(self.rss_mb, rss / 2**20)
        gpu = gpu_used_mb()
        if gpu is not None:
            self.gpu_mb = max(self.gpu_mb or 0.0, gpu)

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def gpu_used_mb() -> float | None:
    """Memory in use on the visible GPUs (all processes: vLLM's engine core is a child process), or
    this process's ``torch.cuda.max_memory_allocated`` if larger; None without CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    used = 0
    for device in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(device)
        used += total - free
    return max(used, torch.cuda.max_memory_allocated()) / 2**20


def arrival_times(count: int, request_rate: float | None, seed: int) -> np.ndarray:
    """Poisson arrivals (exponential gaps, first at 0) or all at 0 (closed loop)."""
    if not request_rate:
        return np.zeros(count)
    gaps = np.random.default_rng(seed).exponential(1.0 / request_rate, count)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])])


async def online_load(engine, clips: list[tuple[str, np.ndarray]], decoding: DecodingOptions, concurrency: int,
                      request_rate: float | None, seed: int) -> tuple[list[Transcript], float]:
    """``concurrency`` clients over Engine.transcribe_async; returns transcripts and wall seconds."""
    slots = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def client(clip_id, samples, arrival):
        await asyncio.sleep(max(0.0, started + arrival - time.perf_counter()))
        async with slots:
            return await engine.transcribe_async(samples, decoding, id=clip_id)

    arrivals = arrival_times(len(clips), request_rate, seed)
    results = await asyncio.gather(*(client(i, s, t) for (i, s), t in zip(clips, arrivals)))
    return list(results), time.perf_counter() - started


class VllmRunner:
    """Runs jobs on one engine (built here, or the caller's when its options match)."""

    def __init__(self, model: str, options: EngineOptions, shared=None, server: str | None = None):
        self.reused = serves(shared, model, options)
        me = psutil.Process()
        before = set() if self.reused else {p.pid for p in me.children(recursive=True)}
        if self.reused:
            self.engine = shared
        else:
            self.engine = start_engine(model, options, server)
        # the engine's processes: those it started (or, for the caller's engine, every child)
        self.processes = [me] + [p for p in me.children(recursive=True) if p.pid not in before]

    def batch(self, job: Job) -> int | None:
        """The effective max_num_seqs (vLLM's default when the option is unset)."""
        if job.engine.max_num_seqs:
            return job.engine.max_num_seqs
        vllm_config = getattr(getattr(self.engine, "_llm", None), "vllm_config", None)
        return getattr(getattr(vllm_config, "scheduler_config", None), "max_num_seqs", None)

    def warm_up(self, clips, decoding: DecodingOptions, job: Job) -> None:
        """One full batch at once, through the job's path (offline or online clients): max_num_seqs
        requests, at most one per clip (the largest batch measured)."""
        clips = [(f"warmup-{i}", s) for i, s in clips[:self.batch(job) or len(clips)]]
        if job.mode == "online":
            run_in_thread(lambda: online_load(self.engine, clips, decoding, len(clips), None, 0))
        else:
            self.engine.transcribe_many([s for _, s in clips], decoding, ids=[i for i, _ in clips])

    def run(self, job: Job, clips, request_rate: float | None = None, seed: int = 0) -> tuple[list[Transcript], float]:
        """Transcripts of ``clips`` ((id, samples) pairs) and the wall seconds; online: ``request_rate``
        Poisson arrivals (seeded) or a closed loop."""
        if job.mode == "online":
            return run_in_thread(lambda: online_load(self.engine, clips, job.decoding, job.concurrency,
                                                     request_rate, seed))
        started = time.perf_counter()
        results = self.engine.transcribe_many([s for _, s in clips], job.decoding, ids=[i for i, _ in clips])
        return results, time.perf_counter() - started

    @property
    def build_seconds(self) -> float | None:
        return None if self.reused else self.engine.build_seconds

    def close(self) -> None:
        if not self.reused:
            self.engine.close()


class OfficialRunner:
    """The official PyTorch implementation, in this process (static padded batches)."""

    def __init__(self, model: str, dtype: str = "float32", device: str = "cpu"):
        dtype = resolve_dtype(dtype)
        official_dir = official_dir_for(resolve_model(model, dtype=dtype), model)
        if official_dir is None:
            raise UserError(f"model '{model}': no official-layout directory behind it for the official "
                                    "baseline; pass the official release directory as --model")
        started = time.perf_counter()
        self.model = OfficialModel.load(official_dir, dtype=dtype, device=device)
        self.build_seconds = time.perf_counter() - started
        self.processes = [psutil.Process()]

    def batch(self, job: Job) -> int:
        return job.concurrency

    def _decode(self, clips, decoding: DecodingOptions, batch_size: int) -> list[Transcript]:
        outputs = self.model.transcribe(
            [s for _, s in clips], batch_size=batch_size, beam_size=decoding.beam_size,
            repetition_penalty=decoding.repetition_penalty, length_penalty=decoding.length_penalty,
            max_new_tokens=decoding.max_tokens, ignore_eos=decoding.ignore_eos)
        return [Transcript(id=clip_id, text=out["text"], token_ids=out["token_ids"],
                           duration_s=len(s) / SAMPLE_RATE, output_tokens=len(out["token_ids"]),
                           latency_s=out["latency_s"], ttft_s=None)
                for (clip_id, s), out in zip(clips, outputs)]

    def warm_up(self, clips, decoding: DecodingOptions, job: Job) -> None:
        self._decode(clips[:job.concurrency], decoding, job.concurrency)

    def run(self, job: Job, clips, request_rate: float | None = None, seed: int = 0) -> tuple[list[Transcript], float]:
        started = time.perf_counter()
        results = self._decode(clips, job.decoding, job.concurrency)
        return results, time.perf_counter() - started

    def close(self) -> None:
        self.model = None


def summarize(transcripts: list[Transcript], references: dict[str, str], wall: float, metric: str,
              normalizer: NormalizerOptions, hotwords: tuple[str, ...] | None = None) -> tuple[dict, list[dict]]:
    """Speed and accuracy of one configuration, and its per-utterance rows (failed ones unscored); with
    ``hotwords``, biasing figures too (eval/biasing.py: B-CER, U-CER, recall, precision, F1 against those words).

    Token counts are text tokens (without ``<|im_end|>``), so that every system counts alike.
    """
    rows = [{"id": t.id, "duration": t.duration_s, "reference": references[t.id], "hypothesis": t.text,
             "latency_s": t.latency_s, "ttft_s": t.ttft_s, "output_tokens": len(t.token_ids),
             "finish_reason": t.finish_reason, "error": t.error,
             **(score_columns(references[t.id], t.text, normalizer, metric, hotwords) if t.ok
                else dict.fromkeys(SCORE_COLUMNS))} for t in transcripts]
    return Tally.of(rows).summary(metric, wall).to_dict(), rows


def combine_passes(passes: list[dict]) -> dict:
    """One row from the summaries of repeated passes: accuracy of the first pass, the median of each speed
    figure, and ``spread`` = (max - min) / median of the pass times."""
    walls = np.array([p["wall_seconds"] for p in passes], dtype=float)
    combined = dict(passes[0])
    for name in SPEED_FIELDS:
        values = [p[name] for p in passes if p.get(name) is not None]
        combined[name] = float(np.median(values)) if values else None
    combined |= {"passes": len(passes), "pass_wall_seconds": [float(w) for w in walls],
                 "spread": float((walls.max() - walls.min()) / np.median(walls)) if np.median(walls) else 0.0}
    return combined
