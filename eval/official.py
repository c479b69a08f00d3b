"""The official FireRedASR-LLM PyTorch implementation (pip ``fireredasr==0.0.2``) as a baseline.

    official = OfficialModel.load("path/to/FireRedASR-LLM-L")          # or tiny_model_dir()
    official.transcribe([samples], beam_size=3, repetition_penalty=3.0)  # [{token_ids, text, latency_s}]

Everything goes through the official classes and functions (``FireRedAsrLlm``, ``ASRFeatExtractor``'s
fbank + CMVN, ``LlmTokenizerWrapper``, ``FireRedAsrLlm.transcribe``); only what is needed to run them
with this environment is shimmed, without touching site-packages:

* torch >= 2.6 ``torch.load(weights_only=True)`` refuses the ``argparse.Namespace`` in the checkpoints:
  the Namespace is allow-listed;
* transformers 5 ``apply_chat_template(tokenize=True)`` returns a ``BatchEncoding``: the tokenizer's
  method defaults to ``return_dict=False`` again (the transformers 4 behaviour the code expects);
* ``FireRedAsr.from_pretrained`` downloads from ModelScope: the loader's steps are called directly.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.audio import INT16_SCALE, SAMPLE_RATE, num_encoder_frames


def install_shims() -> None:
    """Let torch >= 2.6 unpickle the official checkpoints' ``argparse.Namespace`` args."""
    torch.serialization.add_safe_globals([argparse.Namespace])


def list_template_tokenizer(tokenizer):
    """Make ``tokenizer.apply_chat_template`` return plain id lists, as the official code expects."""
    original = tokenizer.apply_chat_template

    @functools.wraps(original)
    def apply_chat_template(*args, **kwargs):
        kwargs.setdefault("return_dict", False)
        return original(*args, **kwargs)

    tokenizer.apply_chat_template = apply_chat_template
    return tokenizer


@contextlib.contextmanager
def generate_kwargs(llm, **extra):
    """Temporarily add keyword arguments to every ``llm.generate`` call."""
    original = llm.generate
    llm.generate = functools.partial(original, **extra)
    try:
        yield
    finally:
        del llm.generate  # back to the class method


def official_paths(official_dir: str | Path) -> dict[str, Path]:
    """The files ``FireRedAsr.from_pretrained("llm")`` reads from a release directory."""
    root = Path(official_dir)
    paths = {"model": root / "model.pth.tar", "encoder": root / "asr_encoder.pth.tar",
             "cmvn": root / "cmvn.ark", "llm_dir": root / LLM_DIR}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{root}: not an official FireRedASR-LLM release, missing {', '.join(missing)}")
    return paths


@dataclass
class OfficialModel:
    """A loaded official model: ``FireRedAsrLlm``, its tokenizer and feature extractor."""

    model: torch.nn.Module  # fireredasr.models.fireredasr_llm.FireRedAsrLlm
    tokenizer: object
    feat_extractor: object  # fireredasr.data.asr_feat.ASRFeatExtractor
    load_result: object  # what load_state_dict(strict=False) reported (missing / unexpected keys)
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def load(cls, official_dir: str | Path, dtype: str = "float32", device: str = "cpu") -> "OfficialModel":
        """The steps of ``load_firered_llm_model_and_tokenizer`` + ``from_pretrained``, offline.

        ``dtype="float16"`` uses the official ``use_fp16`` path (LLM built in fp16); any other dtype
        is applied to the whole model after loading, as vLLM does.
        """
        install_shims()
        # lazy: the official package is the optional `reference` extra (pip fireredasr), needed only here
        from fireredasr.data.asr_feat import ASRFeatExtractor
        from fireredasr.models.fireredasr_llm import FireRedAsrLlm
        from fireredasr.tokenizer.llm_tokenizer import LlmTokenizerWrapper

        paths = official_paths(official_dir)
        package = torch.load(paths["model"], map_location=lambda storage, loc: storage)
        args = package["args"]
        args.encoder_path, args.llm_dir = str(paths["encoder"]), str(paths["llm_dir"])
        args.use_fp16 = int(dtype == "float16")
        model = FireRedAsrLlm.from_args(args)
        load_result = model.load_state_dict(package["model_state_dict"], strict=False)
        tokenizer = list_template_tokenizer(LlmTokenizerWrapper.build_llm_tokenizer(str(paths["llm_dir"])))
        torch_dtype, torch_device = getattr(torch, dtype), torch.device(device)
        model.to(device=torch_device, dtype=torch_dtype).eval()
        return cls(model, tokenizer, ASRFeatExtractor(str(paths["cmvn"])), load_result, torch_dtype, torch_device)

    # ----------------------------------------------------------------- front end
    def features(self, samples: np.ndarray) -> np.ndarray:
        """Official fbank + CMVN (T, 80) float32 of float [-1, 1] 16 kHz samples."""
        scaled = np.asarray(samples, dtype=np.float32) * INT16_SCALE
        feats = self.feat_extractor.fbank((SAMPLE_RATE, scaled))
        return torch.from_numpy(self.feat_extractor.cmvn(feats)).float().numpy()

    def batch_features(self, samples_list) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded features and lengths, exactly as ``ASRFeatExtractor.__call__`` pads them."""
        feats = [torch.from_numpy(self.features(s)) for s in samples_list]
        lengths = torch.tensor([f.size(0) for f in feats]).long()
        padded = self.feat_extractor.pad_feat(feats, 0.0)
        return padded.to(self.device, self.dtype), lengths.to(self.device)

    def prompt(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The official decode prompt ids and attention mask for ``batch`` utterances."""
        from fireredasr.tokenizer.llm_tokenizer import LlmTokenizerWrapper  # lazy: the `reference` extra

        input_ids, attention_mask, _, _ = LlmTokenizerWrapper.preprocess_texts(
            origin_texts=[""] * batch, tokenizer=self.tokenizer, max_len=128, decode=True)
        return input_ids.to(self.device), attention_mask.to(self.device)

    @torch.no_grad()
    def encode(self, samples: np.ndarray) -> np.ndarray:
        """Encoder + adapter output (speech tokens, llm hidden) for one clip, float32."""
        feats, lengths = self.batch_features([samples])
        encoder_outs, enc_lengths, _ = self.model.encoder(feats, lengths)
        speech, speech_lens = self.model.encoder_projector(encoder_outs, enc_lengths)
        return speech[0, : int(speech_lens[0])].float().cpu().numpy()

    @torch.no_grad()
    def token_logprobs(self, samples: np.ndarray, token_ids: list[int]) -> np.ndarray:
        """Teacher-forced log-probabilities of ``token_ids`` following the official prompt."""
        feats, lengths = self.batch_features([samples])
        input_ids, attention_mask = self.prompt(1)
        encoder_outs, enc_lengths, _ = self.model.encoder(feats, lengths)
        speech, speech_lens = self.model.encoder_projector(encoder_outs, enc_lengths)
        embed = self.model.llm.get_input_embeddings()
        prompt_embeds, mask, _ = self.model._merge_input_ids_with_speech_features(
            speech.to(self.dtype), embed(input_ids), input_ids, attention_mask, speech_lens=speech_lens)
        targets = torch.tensor([token_ids], device=self.device)
        inputs = torch.cat([prompt_embeds, embed(targets)], dim=1)
        mask = torch.cat([mask, torch.ones_like(targets, dtype=mask.dtype)], dim=1)
        logits = self.model.llm(inputs_embeds=inputs, attention_mask=mask).logits.float()
        start = prompt_embeds.size(1) - 1
        logprobs = torch.log_softmax(logits[0, start: start + len(token_ids)], dim=-1)
        return logprobs.gather(1, targets[0, :, None])[:, 0].cpu().numpy()

    # ----------------------------------------------------------------- decoding
    @torch.no_grad()
    def transcribe(self, samples_list, *, batch_size: int = 1, beam_size: int = 1,
                   repetition_penalty: float = 1.0, length_penalty: float = 1.0,
                   max_new_tokens: int | None = None, ignore_eos: bool = False) -> list[dict]:
        """Decode float32 16 kHz clips with ``FireRedAsrLlm.transcribe``.

        ``max_new_tokens=None`` is the official rule (the batch's adapter length). ``ignore_eos``
        forbids ``<|im_end|>`` until ``max_new_tokens`` (HF ``min_new_tokens``). ``batch_size > 1``
        reproduces the official padded batches, including their known padding bug. Each result has
        ``token_ids`` (up to, not including, ``<|im_end|>``), ``text`` and ``latency_s`` (features +
        decoding of the batch it was in).
        """
        samples_list = list(samples_list)
        eos = self.model.llm.config.eos_token_id
        results = []
        for start in range(0, len(samples_list), batch_size):
            batch = samples_list[start: start + batch_size]
            began = time.perf_counter()
            feats, lengths = self.batch_features(batch)
            input_ids, attention_mask = self.prompt(len(batch))
            limit = max_new_tokens or 0
            extra = {}
            if ignore_eos:
                limit = limit or self._official_max_new_tokens(feats, lengths)
                extra["min_new_tokens"] = limit
            with generate_kwargs(self.model.llm, **extra):
                generated = self.model.transcribe(
                    feats, lengths, input_ids, attention_mask, beam_size, limit, 0,
                    repetition_penalty, length_penalty, 1.0)
            latency = time.perf_counter() - began
            for row in generated.tolist():
                token_ids = row[: row.index(eos)] if eos in row else row
                text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
                results.append({"token_ids": token_ids, "text": text, "latency_s": latency})
        return results

    def _official_max_new_tokens(self, feats: torch.Tensor, lengths: torch.Tensor) -> int:
        """The adapter length of the padded batch (what ``decode_max_len=0`` means)."""
        return max(1, num_encoder_frames(feats.size(1)) // self.model.encoder_projector.ds)
