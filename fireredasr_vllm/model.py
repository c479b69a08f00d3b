"""FireRedASR-LLM as a vLLM model: processing info, dummy inputs, processor and model in one file.

Built on vLLM's in-tree ``FireRedASR2ForConditionalGeneration`` (same Conformer encoder, adapter,
Qwen2 decoder and weight names). What this subclass changes:

* front end: the processor (API process) only takes any rate/channels to 16 kHz mono (soxr),
  validates the clip (too short / too long get a clear message) and ships the float32 samples with
  their length and the placeholder count (the official length arithmetic); no padding to 30 s;
* features where the model runs: ``embed_multimodal`` computes the int16-scaled Kaldi fbank and
  CMVN for the whole batch in torch on the model's device (``features.KaldiFbank``; kaldi-native-fbank
  stays the reference), then runs the encoder on one padded batch, each clip seeing only its frames;
* transcription API: Mandarin by default, the official prompt, the clip limit from the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import torch
from transformers import BatchFeature

from vllm.config import ModelConfig, SpeechToTextConfig
from vllm.config.speech_to_text import SpeechToTextParams
from vllm.inputs import PromptType
from vllm.model_executor.models.fireredasr2 import (
    FireRedASR2DummyInputsBuilder,
    FireRedASR2ForConditionalGeneration,
    FireRedASR2MultiModalProcessor,
    FireRedASR2ProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.parse import MultiModalDataParser

from fireredasr_vllm import audio as audio_lib
from fireredasr_vllm.compat import frontend_processor_mixin, multimodal_items_as_list, multimodal_ints
from fireredasr_vllm.constants import (DEFAULT_MAX_SECONDS, DEFAULT_SPEECH_TOKEN, DOWNSAMPLE_RATE, IM_END, IM_START,
                                       INSTRUCTION)
from fireredasr_vllm.encoder_graphs import EncoderGraphs
from fireredasr_vllm.features import KaldiFbank

PROFILE_FEATURES, PROFILE_ENCODER = "fireredasr.features", "fireredasr.encoder"  # profiler range names


def build_prompt(speech_token: str = DEFAULT_SPEECH_TOKEN, instruction: str = INSTRUCTION) -> str:
    """The official decode prompt (no system message); the speech token expands to the adapter frames."""
    return f"{IM_START}user\n{speech_token}{instruction}{IM_END}\n{IM_START}assistant\n"


def model_options(hf_config) -> dict:
    """The ``fireredasr`` block of config.json written by the converter."""
    options = getattr(hf_config, "fireredasr", None)
    if not options:
        raise ValueError("config.json has no 'fireredasr' block; convert the checkpoint with "
                         "python -m fireredasr_vllm.convert OFFICIAL_DIR OUT_DIR")
    return dict(options)


def host_batch(clips: Sequence[torch.Tensor], lengths: Sequence[int], pin: bool) -> torch.Tensor:
    """(B, longest) float32 CPU tensor of zero-padded clips, in page-locked memory when ``pin``
    (so the copy to the GPU is one asynchronous transfer)."""
    batch = torch.zeros((len(clips), max(lengths)), dtype=torch.float32, pin_memory=pin)
    for row, (clip, n) in enumerate(zip(clips, lengths)):
        batch[row, :n] = clip[:n]
    return batch


def worst_encoder_batch(vllm_config) -> tuple[int, int]:
    """(clips, frames): the largest batch vLLM's scheduler can hand the encoder in one step, its encoder
    budget (speech tokens, at least ``max_num_batched_tokens``) filled with clips of the model's limit."""
    hf_config = vllm_config.model_config.hf_config
    samples = int(float(model_options(hf_config).get("max_audio_seconds", audio_lib.DEFAULT_MAX_SECONDS))
                  * audio_lib.SAMPLE_RATE)
    tokens = audio_lib.num_speech_tokens(samples, hf_config.encoder_downsample_rate)
    scheduler = vllm_config.scheduler_config
    budget = max(getattr(scheduler, "max_num_encoder_input_tokens", 0) or scheduler.max_num_batched_tokens, tokens)
    return max(1, budget // tokens), audio_lib.num_frames(samples)


class FireRedFrontend:
    """Called by vLLM's processor: 16 kHz float audio -> validated samples + sample and token counts.

    Features are not computed here (the API process is one core for every request); the model
    computes them on its device from these samples.
    """

    def __init__(self, downsample_rate: int = DOWNSAMPLE_RATE, max_seconds: float = DEFAULT_MAX_SECONDS):
        self.downsample_rate = downsample_rate
        self.max_seconds = max_seconds

    def __call__(self, audio=None, text=None, **kwargs) -> BatchFeature:
        items = [audio] if isinstance(audio, np.ndarray) else list(audio or [])
        clips, lengths, tokens = [], [], []
        for i, samples in enumerate(items):
            samples = np.ascontiguousarray(samples, dtype=np.float32)
            audio_lib.check_duration(samples, max_seconds=self.max_seconds,
                                     downsample_rate=self.downsample_rate, name=f"audio item {i}")
            if not np.all(np.isfinite(samples)):
                raise audio_lib.AudioError(f"audio item {i}: contains NaN or infinite samples")
            clips.append(torch.from_numpy(samples))
            lengths.append(len(samples))
            tokens.append(audio_lib.num_speech_tokens(len(samples), self.downsample_rate))
        return BatchFeature({
            "input_audio": clips,
            "audio_lengths": torch.tensor(lengths, dtype=torch.int64),
            "fake_token_lengths": torch.tensor(tokens, dtype=torch.int64),
        })


class FireRedASRLLMProcessingInfo(FireRedASR2ProcessingInfo):
    def options(self) -> dict:
        return model_options(self.get_hf_config())

    def get_hf_processor(self, **kwargs: object) -> FireRedFrontend:
        return FireRedFrontend(self.get_hf_config().encoder_downsample_rate, self.max_audio_seconds())

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {"text_kwargs": set(), "audio_kwargs": set()}

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(target_sr=audio_lib.SAMPLE_RATE, target_channels=1,
                                    audio_resample_method="soxr")

    def speech_token(self) -> str:
        return self.options().get("speech_token", DEFAULT_SPEECH_TOKEN)

    def max_audio_seconds(self) -> float:
        return float(self.options().get("max_audio_seconds", DEFAULT_MAX_SECONDS))

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        samples = int(self.max_audio_seconds() * audio_lib.SAMPLE_RATE)
        return {"audio": audio_lib.num_speech_tokens(samples, self.get_hf_config().encoder_downsample_rate)}


class FireRedASRLLMDummyInputsBuilder(FireRedASR2DummyInputsBuilder):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return self.info.speech_token() * mm_counts.get("audio", 0)

    def get_dummy_mm_data(self, seq_len, mm_counts, mm_options):
        length = int(self.info.max_audio_seconds() * audio_lib.SAMPLE_RATE)
        return {"audio": self._get_dummy_audios(length=length, num_audios=mm_counts.get("audio", 0),
                                                overrides=mm_options.get("audio"))}


class FireRedASRLLMMultiModalProcessor(frontend_processor_mixin(), FireRedASR2MultiModalProcessor):
    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        from vllm.multimodal.inputs import MultiModalFieldConfig

        # All on the CPU: embed_multimodal packs the samples into one pinned buffer, copied in one go.
        return dict(input_audio=MultiModalFieldConfig.batched("audio", keep_on_cpu=True),
                    audio_lengths=MultiModalFieldConfig.batched("audio", keep_on_cpu=True),
                    fake_token_lengths=MultiModalFieldConfig.batched("audio", keep_on_cpu=True))

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        from vllm.multimodal.processing import PromptReplacement, PromptUpdateDetails

        token_id = self.info.get_tokenizer().get_vocab()[self.info.speech_token()]
        counts = out_mm_kwargs.get_data().get("fake_token_lengths")
        counts = [] if counts is None else [int(c) for c in counts.tolist()]

        def replacement(item_idx: int):
            return PromptUpdateDetails.select_token_id([token_id] * counts[item_idx], embed_token_id=token_id)

        return [PromptReplacement(modality="audio", target=[token_id], replacement=replacement)]


@MULTIMODAL_REGISTRY.register_processor(
    FireRedASRLLMMultiModalProcessor,
    info=FireRedASRLLMProcessingInfo,
    dummy_inputs=FireRedASRLLMDummyInputsBuilder,
)
class FireRedASRLLMForConditionalGeneration(FireRedASR2ForConditionalGeneration):
    """FireRedASR-LLM-L / FireRedASR2-LLM with an unpadded, length-bucketed speech front end."""

    supported_languages = {"zh": "Chinese", "en": "English"}
    default_language = "zh"
    # No timestamp tokens: vLLM then answers verbose_json with a clear 400 (FireRedASR2 claims them).
    supports_segment_timestamp = False

    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._encoder_graphs = EncoderGraphs(
            lambda feats, frames: self.model.get_encoder_outputs(speech=feats, speech_lengths=frames),
            worst_encoder_batch(vllm_config), enabled=not vllm_config.model_config.enforce_eager)

    def forward(self, input_ids, positions, inputs_embeds=None, **kwargs):
        # The first forward is vLLM's memory profile run: the encoder's peak is taken there too (its V2
        # model runner profiles only the LLM), before the KV cache is sized.
        if not self._encoder_graphs.reserved:
            parameter = next(self.model.encoder_projector.parameters())
            self._encoder_graphs.reserve(parameter.device, self.dtype, audio_lib.NUM_MEL_BINS)
        return super().forward(input_ids, positions, inputs_embeds=inputs_embeds, **kwargs)

    @classmethod
    def validate_language(cls, language: str | None) -> str | None:
        return super(FireRedASR2ForConditionalGeneration, cls).validate_language(language or cls.default_language)

    @classmethod
    def get_generation_prompt(cls, stt_params: SpeechToTextParams) -> PromptType:
        opts = model_options(stt_params.model_config.hf_config)
        # Checked here (a 400 naming the problem); the processor's error would dump the whole array.
        if not np.all(np.isfinite(stt_params.audio)):
            raise audio_lib.AudioError("audio: contains NaN or infinite samples")
        audio_lib.check_duration(np.asarray(stt_params.audio),
                                 max_seconds=float(opts.get("max_audio_seconds", DEFAULT_MAX_SECONDS)),
                                 downsample_rate=stt_params.model_config.hf_config.encoder_downsample_rate)
        prompt = build_prompt(opts.get("speech_token", DEFAULT_SPEECH_TOKEN))
        return cast(PromptType, {"prompt": prompt, "multi_modal_data": {
            "audio": (stt_params.audio, stt_params.stt_config.sample_rate)}})

    @classmethod
    def get_speech_to_text_config(cls, model_config: ModelConfig, task_type: str) -> SpeechToTextConfig:
        opts = model_options(model_config.hf_config)
        return SpeechToTextConfig(max_audio_clip_s=float(opts.get("max_audio_seconds", DEFAULT_MAX_SECONDS)),
                                  sample_rate=audio_lib.SAMPLE_RATE)

    @classmethod
    def get_num_audio_tokens(cls, audio_duration_s, stt_config, model_config) -> int | None:
        samples = int(audio_duration_s * stt_config.sample_rate)
        return audio_lib.num_speech_tokens(samples, model_config.hf_config.encoder_downsample_rate)

    def embed_multimodal(self, **kwargs: object):
        """Samples -> one host-to-device copy -> features on this device -> the encoder on one padded
        batch (masks keep each clip to its own frames; the padding is zeros, as the official batching
        has it), replayed from a CUDA graph of its bucket shape on a GPU (``encoder_graphs``)."""
        clips = multimodal_items_as_list(kwargs.get("input_audio"))
        lengths = multimodal_ints(kwargs.get("audio_lengths"))
        tokens = multimodal_ints(kwargs.get("fake_token_lengths"))
        if not clips:
            return []
        device = next(self.model.encoder_projector.parameters()).device
        samples = host_batch(clips, lengths, pin=device.type == "cuda").to(device, non_blocking=True)
        frame_counts = [audio_lib.num_frames(n) for n in lengths]
        frames = torch.tensor(frame_counts, dtype=torch.int32)
        frames = frames.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else frames
        with torch.profiler.record_function(PROFILE_FEATURES):  # named ranges for bench.gpu_benchmark --profile
            feats = self.fbank(device)(samples)
            padding = torch.arange(feats.shape[1], device=device)[None, :] >= frames[:, None]
            feats = feats.masked_fill_(padding[..., None], 0.0).to(self.dtype)
        with torch.profiler.record_function(PROFILE_ENCODER):
            embeds = self._encoder_graphs(feats, frames, frame_counts)
        return [embeds[row][:count] for row, count in enumerate(tokens)]

    def fbank(self, device: torch.device) -> KaldiFbank:
        """The fbank + CMVN constants on ``device`` (built on first use; the CMVN comes from the config)."""
        cached = getattr(self, "_fbank", None)
        if cached is None or cached.device != device:
            opts = model_options(self.config)
            cached = self._fbank = KaldiFbank(opts["cmvn_means"], opts["cmvn_istd"], device)
        return cached
