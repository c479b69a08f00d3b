"""What a sweep measures: ``SweepConfig`` (also the keys of a ``--config`` TOML file) and its plan, the
configurations (``Job``) in a seeded order that builds each engine once."""

from __future__ import annotations

import itertools
import random
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from eval.errors import UserError
from fireredasr_vllm import BUILTIN_ARCHITECTURE, DEFAULT_MODEL
from fireredasr_engine.client import check_supported
from fireredasr_engine.hotwords import load_hotwords
from fireredasr_engine.options import DecodingOptions, EngineOptions, parse_decoding

ENGINE_KEYS = tuple(f.name for f in fields(EngineOptions) if f.name != "extra")
DECODING_KEYS = ("decoding", "hotword_weight")  # grid keys that vary per request, not per engine
MODES = ("offline", "online")
BASELINES = ("builtin", "official")


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
            raise UserError(f"--grid '{spec}': expected KEY=VALUE[,VALUE...]")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def csv_list(text: str, cast=str) -> list:
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


@dataclass
class SweepConfig:
    """What to sweep. Field names are also the keys of a ``--config`` TOML file."""

    test_set: str = "demo"
    model: str = DEFAULT_MODEL
    grid: dict[str, list] = field(default_factory=dict)  # a DECODING_KEYS or EngineOptions field -> values
    hotwords: str | None = None  # a hotword list, inline or a file (docs/hotwords.md); grid hotword_weight varies it
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
        unknown = [k for k in self.grid if k not in DECODING_KEYS and k not in ENGINE_KEYS]
        if unknown:
            raise UserError(f"unknown grid key {', '.join(unknown)}: use decoding, hotword_weight or an engine "
                            f"option ({', '.join(ENGINE_KEYS)})")
        if bad := [w for w in self.grid.get("hotword_weight", []) if not isinstance(w, (int, float)) or w < 0]:
            raise UserError(f"hotword_weight values must be numbers >= 0, got {', '.join(map(str, bad))}")
        if bad := [m for m in self.modes if m not in MODES]:
            raise UserError(f"unknown mode {', '.join(bad)}: use {' and/or '.join(MODES)}")
        if bad := [b for b in self.baselines if b not in BASELINES]:
            raise UserError(f"unknown baseline {', '.join(bad)}: use {', '.join(BASELINES)}")
        if not self.concurrency or any(int(c) < 1 for c in self.concurrency):
            raise UserError(f"concurrency must be positive integers, got {self.concurrency}")
        if self.repeats < 1 or self.warmup < 0:
            raise UserError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if self.request_rate is not None and self.request_rate <= 0:
            raise UserError(f"request_rate must be > 0 requests/s, got {self.request_rate}")
        if self.server and (self.engine_keys or "builtin" in self.baselines):
            raise UserError("with --server the engine settings are the servers' own: sweep only decoding "
                             "and concurrency (no engine keys in --grid, no builtin baseline)")
        try:  # invalid engine values and decoding names fail here, not after the first engine started
            self.engine_options()
            for decoding in self.decodings():
                if self.server:  # beam search etc. refused before any pass
                    check_supported(decoding)
        except ValueError as error:
            raise UserError(str(error)) from None

    @property
    def engine_keys(self) -> list[str]:
        return [k for k in self.grid if k not in DECODING_KEYS]

    def engine_options(self) -> list[EngineOptions]:
        keys = self.engine_keys
        return [EngineOptions(**dict(zip(keys, values))) for values in itertools.product(*map(self.grid.get, keys))]

    def decodings(self) -> list[DecodingOptions]:
        """The decoding configurations; a ``hotword_weight`` grid multiplies them. With ``hotwords`` (a list or
        file, as --hotwords takes) each decodes with that list; without, the test set's list is added per
        configuration (eval/sweep/run.py), which labels it (``greedy-hw2x10``; weight 0: no list, ``greedy``)."""
        decodings = [parse_decoding(text) for text in self.grid.get("decoding", ["greedy"])]
        weights = self.grid.get("hotword_weight")
        if hotwords := load_hotwords(self.hotwords):
            return [replace(decoding, hotwords=hotwords, hotword_weight=float(weight))
                    for decoding in decodings for weight in weights or [DecodingOptions.hotword_weight]]
        if not weights:
            return decodings
        return [replace(d, hotword_weight=float(w)) for d in decodings for w in weights]

    def official_batches(self, num_utterances: int) -> list[int]:
        sizes = self.official_batch_sizes or [1, *(b for b in self.grid.get("max_num_seqs", []) if b)]
        return sorted({max(1, min(int(b), num_utterances)) for b in sizes})


def load_config_file(path: str | Path) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such config file (examples/sweep_demo.toml shows one)")
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    unknown = set(data) - {f.name for f in fields(SweepConfig)}
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


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
            if decoding.mode != "sample" and not decoding.hotwords:  # the official decoder has neither
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
    """The values of the table's identity columns (``eval.sweep.store.KEY``) for ``job``."""
    rate = config.request_rate if job.mode == "online" else None
    return (test_set, config.model, job.system, engine_label(job, config.engine_keys), job.decoding.label,
            job.mode, job.concurrency, rate)
