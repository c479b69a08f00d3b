"""Engine and decoding options, and the per-utterance input and result records shared by every front end."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.cli_args import DEFAULT_MAX_MODEL_LEN
from fireredasr_vllm.cpu_backend import DEFAULT_KV_CACHE_GB
from fireredasr_vllm.hotwords import DEFAULT_HOTWORD_WEIGHT
from fireredasr_vllm.timed_text import Segment  # noqa: F401  (re-exported: the segments of a Transcript)


@dataclass(frozen=True)
class EngineOptions:
    """Arguments that need a new vLLM engine when they change."""

    dtype: str = "auto"  # float32 on CPU, bfloat16 on GPUs (fireredasr_vllm.resolve.resolve_dtype)
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1  # vLLM's own data parallelism: N engines, requests balanced over them
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool | None = None  # None: True on CPU, vLLM's default elsewhere
    enable_prefix_caching: bool | None = None
    kv_cache_gb: int = DEFAULT_KV_CACHE_GB  # CPU only (VLLM_CPU_KVCACHE_SPACE, whole GiB)
    seed: int = 0
    architecture: str | None = None  # e.g. FireRedASR2ForConditionalGeneration for the baseline
    # Register the official (generated-tokens-only) repetition penalty as a logits processor, needed by
    # greedy/sampled decoding with repetition_penalty != 1 (beam search applies it itself). Off lets vLLM
    # 0.26 use its V2 model runner (custom logits processors keep it on V1).
    official_penalty: bool = True
    # Register the hotword biasing processor (fireredasr_vllm.hotwords), needed by DecodingOptions.hotwords.
    hotword_biasing: bool = True
    extra: tuple = ()  # extra (key, value) pairs passed to AsyncEngineArgs

    def to_dict(self) -> dict:
        return asdict(self)


NO_SPEECH_MODES = ("keep", "skip")
NO_SPEECH = "no_speech"  # Transcript.finish_reason when voice activity detection found no speech to decode


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode. ``max_tokens=None`` = the official rule (one per speech frame).

    ``repetition_penalty`` follows the official semantics (generated tokens only) unless
    ``penalty_scope="vllm"`` (vLLM's, which also counts prompt tokens).
    """

    beam_size: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    repetition_penalty: float = 1.0
    penalty_scope: str = "generated"
    length_penalty: float = 1.0
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    # Contextual biasing (docs/hotwords.md): (word, relative weight) pairs; each listed token's boost is
    # ``hotword_weight`` x its word's weight. An empty list (or a weight of 0) decodes exactly as without.
    hotwords: tuple[tuple[str, float], ...] = ()
    hotword_weight: float = DEFAULT_HOTWORD_WEIGHT
    # "keep": every clip is decoded; "skip": voice activity detection first, and a clip without speech
    # gets an empty transcript ("no speech found") instead of what the model would make of the noise.
    no_speech: str = "keep"
    name: str = field(default="", compare=False)

    def __post_init__(self):
        if self.no_speech not in NO_SPEECH_MODES:
            raise ValueError(f"no_speech={self.no_speech!r}: use one of {', '.join(NO_SPEECH_MODES)}")

    @property
    def mode(self) -> str:
        if self.beam_size > 1:
            return "beam"
        return "sample" if self.temperature > 0 else "greedy"

    @property
    def label(self) -> str:
        return self.name + hotword_label(self) if self.name else describe(self)

    def to_dict(self) -> dict:
        return {**asdict(self), "mode": self.mode, "label": self.label}


def describe(options: DecodingOptions) -> str:
    """``greedy``, ``beam3-rp3``, ``t0.7-p0.9``...; a hotword list adds ``-hw<weight>x<words>`` (``greedy-hw2x10``)."""
    parts = {"greedy": "greedy", "beam": f"beam{options.beam_size}",
             "sample": f"t{options.temperature:g}"}[options.mode]
    if options.mode == "sample" and options.top_p < 1.0:
        parts += f"-p{options.top_p:g}"
    if options.repetition_penalty != 1.0:
        parts += f"-rp{options.repetition_penalty:g}"
    return parts + hotword_label(options)


def hotword_label(options: DecodingOptions) -> str:
    """``-hw<weight>x<words>`` with a hotword list (``-hw2x10``), else nothing: labels without one are unchanged."""
    return f"-hw{options.hotword_weight:g}x{len(options.hotwords)}" if options.hotwords else ""


PRESETS = {
    "greedy": DecodingOptions(),
    # The official README / inference script settings.
    "official": DecodingOptions(beam_size=3, repetition_penalty=3.0, length_penalty=1.0, name="official"),
}


def parse_decoding(text: str) -> DecodingOptions:
    """``greedy`` | ``official`` | ``beam3`` | ``t0.7`` | ``t0.7-p0.9`` | any of those + ``-rp3``."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    match = re.fullmatch(r"(beam(\d+)|t([\d.]+)(?:-p([\d.]+))?|greedy)(?:-rp([\d.]+))?", text)
    if not match:
        raise ValueError(f"unknown decoding '{text}': use greedy, official, beamN, tT[-pP], optionally -rpR")
    options = DecodingOptions()
    if match.group(2):
        options = replace(options, beam_size=int(match.group(2)))
    if match.group(3):
        options = replace(options, temperature=float(match.group(3)), seed=0,
                          top_p=float(match.group(4) or 1.0))
    if match.group(5):
        options = replace(options, repetition_penalty=float(match.group(5)))
    return options


@dataclass
class PreparedAudio:
    """Decoded, resampled and validated input (``samples`` None and ``error`` set when it cannot be used)."""

    id: str
    samples: np.ndarray | None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return 0.0 if self.samples is None else len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class Transcript:
    """One utterance's result, built once from what its request returned: ``decoded``, ``failed`` (``error``
    set, ``text`` empty) or ``no_speech``.

    ``segments``: timed pieces of ``text`` (long audio: one per VAD segment; otherwise the whole clip).
    No speech found (``no_speech="skip"``, or long audio of silence): ``text`` and ``segments`` empty,
    ``finish_reason`` ``"no_speech"`` (``NO_SPEECH``); nothing was decoded."""

    id: str
    text: str = ""
    token_ids: tuple[int, ...] = ()
    duration_s: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0  # submit -> finished
    ttft_s: float = 0.0  # submit -> first token
    queue_s: float | None = None  # engine queue -> scheduled, when vLLM reports it
    finish_reason: str | None = None
    error: str | None = None
    segments: tuple[Segment, ...] = ()

    def __post_init__(self):  # lists given (token ids of a request, a record's segments) are kept as tuples
        object.__setattr__(self, "token_ids", tuple(self.token_ids))
        object.__setattr__(self, "segments", tuple(self.segments))

    @classmethod
    def decoded(cls, prepared: PreparedAudio, text: str, token_ids=(), **measured) -> Transcript:
        """A clip decoded in one request: its text is one segment over the whole clip; ``measured``: the
        request's counts and times (``prompt_tokens``, ``output_tokens``, ``latency_s``, ``ttft_s``,
        ``queue_s``, ``finish_reason``)."""
        return cls(id=prepared.id, text=text, token_ids=token_ids, duration_s=prepared.duration_s,
                   segments=(Segment(0.0, prepared.duration_s, text),), **measured)

    @classmethod
    def failed(cls, prepared: PreparedAudio, error: str, **measured) -> Transcript:
        """``prepared`` could not be transcribed: ``error`` says why, in one sentence; ``measured``: what the
        request had measured before it failed (``ttft_s``, ``prompt_tokens``, ``queue_s``)."""
        return cls(id=prepared.id, duration_s=prepared.duration_s, error=error, **measured)

    @classmethod
    def no_speech(cls, prepared: PreparedAudio) -> Transcript:
        """Voice activity detection found no speech in ``prepared``: nothing was decoded."""
        return cls(id=prepared.id, duration_s=prepared.duration_s, finish_reason=NO_SPEECH)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rtf(self) -> float:
        return self.latency_s / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict:
        """The JSON record (``token_ids`` and ``segments`` as lists), fields in their order."""
        record = asdict(self)
        return record | {"token_ids": list(self.token_ids), "segments": [asdict(s) for s in self.segments]}
