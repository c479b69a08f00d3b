"""The numbers and strings of FireRedASR-LLM, defined once; no imports, so the plugin, the converter, the
engine, the client and the testkit all read them without vLLM.

Front end (the official ``fireredasr/data/asr_feat.py``): 16 kHz, 80 mel bins, 25 ms frames every 10 ms.
Model (the official ``FireRedAsrLlm``): the adapter halves the encoder frames, the prompt is Qwen2 chat
with one instruction, the LoRA is rank 64, alpha 16.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
FRAME_LENGTH_MS, FRAME_SHIFT_MS = 25, 10
FRAME_LENGTH = SAMPLE_RATE * FRAME_LENGTH_MS // 1000  # 400 samples
FRAME_SHIFT = SAMPLE_RATE * FRAME_SHIFT_MS // 1000  # 160 samples
DEFAULT_MAX_SECONDS = 30.0  # the model's clip limit (the official input_length_max)

DOWNSAMPLE_RATE = 2  # encoder frames per speech token (the adapter's encoder_downsample_rate)
DEFAULT_SPEECH_TOKEN = "<|AUDIO|>"  # the placeholder the converter adds; it expands to the adapter frames
INSTRUCTION = "请转写音频为文字"
END_OF_TEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"  # Qwen2's chat specials: pad, bos, eos
CHAT_TOKENS = (END_OF_TEXT, IM_START, IM_END)  # in id order
LORA_RANK, LORA_ALPHA = 64, 16  # the official LoraConfig (r, lora_alpha)


@dataclass(frozen=True)
class ModelSettings:
    """What the engine and the client read from a converted model's config.json (the ``fireredasr`` block
    written by the converter, and the adapter rate); missing keys take the official values."""

    speech_token: str = DEFAULT_SPEECH_TOKEN
    max_audio_seconds: float = DEFAULT_MAX_SECONDS
    downsample_rate: int = DOWNSAMPLE_RATE

    @classmethod
    def from_config(cls, config: dict) -> ModelSettings:
        block = config.get("fireredasr", {})
        return cls(speech_token=block.get("speech_token", DEFAULT_SPEECH_TOKEN),
                   max_audio_seconds=float(block.get("max_audio_seconds", DEFAULT_MAX_SECONDS)),
                   downsample_rate=int(config.get("encoder_downsample_rate", DOWNSAMPLE_RATE)))
