"""FireRedASR-LLM as a vLLM model: processing info, dummy inputs, processor and model in one file.

Built on vLLM's in-tree ``FireRedASR2ForConditionalGeneration`` (same Conformer encoder, adapter,
Qwen2 decoder and weight names). What this subclass changes:

* front end: any rate/channels -> 16 kHz mono (soxr) -> int16-scaled kaldi-native-fbank -> CMVN,
  features kept at their real length (no padding to 30 s); the placeholder count follows the
  official length arithmetic; too short / too long clips are rejected with a clear message;
* encoder: clips of similar length are batched together and each sees only its own frames;
* transcription API: Mandarin by default, the official prompt, the clip limit from the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
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

DEFAULT_SPEECH_TOKEN = "<|AUDIO|>"
INSTRUCTION = "请转写音频为文字"


def build_prompt(speech_token: str = DEFAULT_SPEECH_TOKEN, instruction: str = INSTRUCTION) -> str:
    """The official decode prompt (no system message); the speech token expands to the adapter frames."""
    return f"<|im_start|>user\n{speech_token}{instruction}<|im_end|>\n<|im_start|>assistant\n"


def model_options(hf_config) -> dict:
    """The ``fireredasr`` block of config.json written by the converter."""
    options = getattr(hf_config, "fireredasr", None)
    if not options:
        raise ValueError("config.json has no 'fireredasr' block; convert the checkpoint with "
                         "python -m fireredasr_vllm.convert OFFICIAL_DIR OUT_DIR")
    return dict(options)


def length_buckets(lengths: Sequence[int], max_ratio: float = 1.25) -> list[list[int]]:
    """Group item indices so that in each group longest / shortest <= max_ratio (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= max_ratio * max(1, lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class FireRedFrontend:
    """Feature extractor called by vLLM's processor: raw 16 kHz float audio -> features + counts."""

    def __init__(self, means, istd, downsample_rate: int = 2, max_seconds: float = 30.0):
        self.means = np.asarray(means, dtype=np.float64)
        self.istd = np.asarray(istd, dtype=np.float64)
        self.downsample_rate = downsample_rate
        self.max_seconds = max_seconds

    def __call__(self, audio=None, text=None, **kwargs) -> BatchFeature:
        items = [audio] if isinstance(audio, np.ndarray) else list(audio or [])
        feats, lengths, tokens = [], [], []
        for i, samples in enumerate(items):
            samples = np.asarray(samples, dtype=np.float32)
            audio_lib.check_duration(samples, max_seconds=self.max_seconds,
                                     downsample_rate=self.downsample_rate, name=f"audio item {i}")
            feat = audio_lib.features(samples, self.means, self.istd)
            feats.append(torch.from_numpy(feat))
            lengths.append(feat.shape[0])
            tokens.append(audio_lib.num_speech_tokens(len(samples), self.downsample_rate))
        return BatchFeature({
            "input_features": feats,
            "speech_lengths": torch.tensor(lengths, dtype=torch.int32),
            "fake_token_lengths": torch.tensor(tokens, dtype=torch.int64),
        })



class FireRedASRLLMProcessingInfo(FireRedASR2ProcessingInfo):
    def options(self) -> dict:
        return model_options(self.get_hf_config())

    def get_hf_processor(self, **kwargs: object) -> FireRedFrontend:
        opts = self.options()
        cfg = self.get_hf_config()
        return FireRedFrontend(opts["cmvn_means"], opts["cmvn_istd"],
                               cfg.encoder_downsample_rate, opts.get("max_audio_seconds", 30.0))

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {"text_kwargs": set(), "audio_kwargs": set()}

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(target_sr=audio_lib.SAMPLE_RATE, target_channels=1,
                                    audio_resample_method="soxr")

    def speech_token(self) -> str:
        return self.options().get("speech_token", DEFAULT_SPEECH_TOKEN)

    def max_audio_seconds(self) -> float:
        return float(self.options().get("max_audio_seconds", 30.0))

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

    @classmethod
    def validate_language(cls, language: str | None) -> str | None:
        return super(FireRedASR2ForConditionalGeneration, cls).validate_language(language or cls.default_language)

    @classmethod
    def get_generation_prompt(cls, stt_params: SpeechToTextParams) -> PromptType:
        opts = model_options(stt_params.model_config.hf_config)
        # Checked here (a 400 naming the problem); the processor's error would dump the whole array.
        if not np.all(np.isfinite(stt_params.audio)):
            raise audio_lib.AudioError("audio: contains NaN or infinite samples")
        audio_lib.check_duration(np.asarray(stt_params.audio), max_seconds=float(opts.get("max_audio_seconds", 30.0)),
                                 downsample_rate=stt_params.model_config.hf_config.encoder_downsample_rate)
        prompt = build_prompt(opts.get("speech_token", DEFAULT_SPEECH_TOKEN))
        return cast(PromptType, {"prompt": prompt, "multi_modal_data": {
            "audio": (stt_params.audio, stt_params.stt_config.sample_rate)}})

    @classmethod
    def get_speech_to_text_config(cls, model_config: ModelConfig, task_type: str) -> SpeechToTextConfig:
        opts = model_options(model_config.hf_config)
        return SpeechToTextConfig(max_audio_clip_s=float(opts.get("max_audio_seconds", 30.0)),
                                  sample_rate=audio_lib.SAMPLE_RATE)

    @classmethod
    def get_num_audio_tokens(cls, audio_duration_s, stt_config, model_config) -> int | None:
        samples = int(audio_duration_s * stt_config.sample_rate)
        return audio_lib.num_speech_tokens(samples, model_config.hf_config.encoder_downsample_rate)

    def embed_multimodal(self, **kwargs: object):
        feats = multimodal_items_as_list(kwargs.get("input_features"))
        lengths = multimodal_ints(kwargs.get("speech_lengths"))
        tokens = multimodal_ints(kwargs.get("fake_token_lengths"))
        outputs: list[torch.Tensor | None] = [None] * len(feats)
        for group in length_buckets(lengths):
            batch = pad_sequence([feats[i][: lengths[i]] for i in group], batch_first=True)
            group_lengths = torch.tensor([lengths[i] for i in group], dtype=torch.int32, device=batch.device)
            embeds = self.model.get_encoder_outputs(speech=batch, speech_lengths=group_lengths)
            for row, i in enumerate(group):
                outputs[i] = embeds[row, : tokens[i]]
        return outputs
