"""Random-weight FireRedASR-LLM checkpoints in the OFFICIAL release layout.

``build_official_checkpoint(spec, out_dir)`` writes exactly what FireRedTeam publishes, with tiny (or
any) dimensions:

    asr_encoder.pth.tar   {"args": Namespace(idim, n_layers_enc, n_head, d_model, ...)}  (args only)
    model.pth.tar         {"args": Namespace(released LLM fields), "model_state_dict": encoder.*,
                           encoder_projector.*, llm.base_model.model.model.layers.N.*.lora_{A,B}.default.weight}
    cmvn.ark              Kaldi binary 2 x (80+1) double stats
    Qwen2-7B-Instruct/    a Qwen2 checkpoint + byte-level BPE tokenizer saved as Qwen2Tokenizer

Everything is seeded, so the same spec gives the same bytes. ``tiny_model_dir()`` builds (once, cached)
the embedded default that ``--model tiny`` names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from eval.bundled import DEMO_DIR, read_sentences
from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.audio import fbank
from fireredasr_vllm.constants import (CHAT_TOKENS, DEFAULT_MAX_SECONDS, DOWNSAMPLE_RATE, END_OF_TEXT, IM_END,
                                       INSTRUCTION, LORA_RANK, NUM_MEL_BINS)
from fireredasr_vllm.resolve import cache_root
from fireredasr_vllm.verify import conformer_shapes

LORA_TARGETS = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}
TINY_VERSION = "2"  # bump when the generator changes so caches rebuild


def text_hash(lines: list[str]) -> str:
    """sha256 of ``lines`` joined by newlines."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class TinySpec:
    """Dimensions and seed of a generated checkpoint (defaults: the embedded ``tiny`` model)."""

    d_model: int = 128
    n_head: int = 4
    n_layers_enc: int = 2
    kernel_size: int = 33
    idim: int = NUM_MEL_BINS
    pe_maxlen: int = 5000
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    downsample_rate: int = DOWNSAMPLE_RATE
    init_std: float = 0.3  # encoder / adapter weights: std * sqrt(3 / fan_in)
    llm_init_range: float = 0.3  # Qwen2 initializer_range; large enough for diverse greedy output
    lora_b_std: float = 0.1  # lora_B ~ N(0, std) so the merged LoRA visibly changes the LLM
    # lm_head row of <|im_end|> = eos_scale * mean row: some clips stop on EOS, at varied lengths
    eos_scale: float = 50.0
    seed: int = 0
    tokenizer_vocab: int = 1000
    # A real-size Qwen2 tokenizer cannot be trained here; ``vocab_size`` > tokenizer size pads the
    # embedding like Qwen2-7B's 152064 rows. None = tokenizer size + 1 (room for ``<speech>``).
    vocab_size: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def digest(self) -> str:
        payload = json.dumps({**asdict(self), "v": TINY_VERSION, "corpus": text_hash(tokenizer_corpus())},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def relative_positional_table(d_model: int, max_len: int) -> torch.Tensor:
    """The official ``RelPositionalEncoding.pe`` buffer, shape (1, 2*max_len-1, d_model)."""
    pos = torch.arange(0, max_len).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
    pe_pos = torch.zeros(max_len, d_model)
    pe_neg = torch.zeros(max_len, d_model)
    pe_pos[:, 0::2], pe_pos[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    pe_neg[:, 0::2], pe_neg[:, 1::2] = torch.sin(-pos * div), torch.cos(-pos * div)
    return torch.cat([torch.flip(pe_pos, [0]).unsqueeze(0), pe_neg[1:].unsqueeze(0)], dim=1)


def encoder_shapes(spec: TinySpec) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the official Conformer encoder parameters (without ``pe``)."""
    return conformer_shapes(spec.idim, spec.n_layers_enc, spec.n_head, spec.d_model, spec.kernel_size)


def random_tensor(name: str, shape: tuple[int, ...], gen: torch.Generator, std: float) -> torch.Tensor:
    """Norm weights near 1, biases small, matrices scaled by fan-in."""
    if len(shape) == 1 and ("norm" in name or ".net.0." in name) and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if len(shape) == 1 or "pos_bias" in name:
        return 0.1 * torch.randn(shape, generator=gen)
    fan_in = int(np.prod(shape[1:]))
    return std * torch.randn(shape, generator=gen) / math.sqrt(fan_in) * math.sqrt(3.0)


def encoder_args(spec: TinySpec) -> argparse.Namespace:
    """The ``args`` of ``asr_encoder.pth.tar`` (an AED-L Namespace; the decoder is thrown away)."""
    return argparse.Namespace(
        idim=spec.idim, n_layers_enc=spec.n_layers_enc, n_head=spec.n_head, d_model=spec.d_model,
        residual_dropout=0.1, dropout_rate=0.1, kernel_size=spec.kernel_size, pe_maxlen=spec.pe_maxlen,
        sos_id=3, eos_id=4, pad_id=2, odim=32, n_layers_dec=1,
    )


def llm_args(spec: TinySpec) -> argparse.Namespace:
    """The ``args`` of ``model.pth.tar`` as printed for the released FireRedASR-LLM-L."""
    return argparse.Namespace(
        input_length_max=DEFAULT_MAX_SECONDS, input_length_min=0.1, output_length_max=150, output_length_min=1,
        freeze_encoder=0, encoder_downsample_rate=spec.downsample_rate, freeze_llm=0,
        use_flash_attn=0, use_lora=1, unk="<unk>", use_fp16=0,
    )


def lora_shapes(spec: TinySpec, kv_dim: int) -> dict[str, tuple[int, ...]]:
    """PEFT LoRA tensors as named in the release (``llm.base_model.model.model.layers.N...``)."""
    h, inter = spec.hidden_size, spec.intermediate_size
    io = {"q_proj": (h, h), "k_proj": (h, kv_dim), "v_proj": (h, kv_dim), "o_proj": (h, h),
          "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    shapes = {}
    for i in range(spec.num_hidden_layers):
        for block, projs in LORA_TARGETS.items():
            for proj in projs:
                fan_in, fan_out = io[proj]
                p = f"llm.base_model.model.model.layers.{i}.{block}.{proj}"
                shapes[f"{p}.lora_A.default.weight"] = (LORA_RANK, fan_in)
                shapes[f"{p}.lora_B.default.weight"] = (fan_out, LORA_RANK)
    return shapes


def train_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE saved the way Qwen2 tokenizers are (specials ``<|endoftext|>`` etc.)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(list(CHAT_TOKENS))  # ids in Qwen2's order: endoftext < im_start < im_end
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=32768,
                                   eos_token=IM_END, pad_token=END_OF_TEXT,
                                   additional_special_tokens=list(CHAT_TOKENS),
                                   clean_up_tokenization_spaces=False)


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the bundled sentences, the instruction, some English."""
    lines = [text for _, text in read_sentences(DEMO_DIR / "sentences.txt")]
    extra = DEMO_DIR / "corpus.txt"
    if extra.exists():
        lines += [line.strip() for line in extra.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines + [INSTRUCTION, "user assistant system", "hello world this is a test"] * 3


def save_tokenizer(tokenizer, llm_dir: Path) -> None:
    """Save ``tokenizer`` into ``llm_dir`` as a Qwen2Tokenizer (the class the model's config names)."""
    tokenizer.save_pretrained(llm_dir)
    cfg_path = llm_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True))


def save_qwen2(spec: TinySpec, llm_dir: Path, gen_seed: int) -> int:
    """Write the tokenizer and a random Qwen2 into ``llm_dir``; return the tokenizer length."""
    tokenizer = train_tokenizer(tokenizer_corpus(), spec.tokenizer_vocab)
    save_tokenizer(tokenizer, llm_dir)
    n_tok = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in CHAT_TOKENS}
    config = Qwen2Config(
        vocab_size=spec.vocab_size or n_tok + 1, hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, bos_token_id=ids[END_OF_TEXT], eos_token_id=ids[IM_END],
        initializer_range=spec.llm_init_range, torch_dtype="float32",
        architectures=["Qwen2ForCausalLM"],
    )
    torch.manual_seed(gen_seed)
    model = Qwen2ForCausalLM(config)
    gen = torch.Generator().manual_seed(gen_seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:  # RMSNorm weights and q/k/v biases: make them non-trivial
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
        head = model.lm_head.weight
        head[ids[IM_END]] = spec.eos_scale * head.mean(0)
    model.save_pretrained(llm_dir, safe_serialization=True)
    return n_tok


def write_cmvn(path: Path, feats: np.ndarray) -> None:
    """Kaldi ``compute-cmvn-stats`` format: row0 = sum x (+count), row1 = sum x^2 (binary double)."""
    dim = feats.shape[1]
    stats = np.zeros((2, dim + 1), dtype=np.float64)
    stats[0, :dim] = feats.sum(0)
    stats[1, :dim] = (feats.astype(np.float64) ** 2).sum(0)
    stats[0, dim] = len(feats)
    kaldiio.save_mat(str(path), stats)


def demo_fbank() -> np.ndarray:
    """Raw (pre-CMVN) fbank frames of the bundled clips, the statistics of the tiny ``cmvn.ark``."""
    clips = sorted((DEMO_DIR / "clips").glob("*.flac"))
    if not clips:
        raise FileNotFoundError(f"no bundled clips in {DEMO_DIR / 'clips'}; run python -m testkit.synth")
    return np.concatenate([fbank(sf.read(c, dtype="int16")[0]) for c in clips])


def build_official_checkpoint(spec: TinySpec, out_dir: Path, cmvn_feats: np.ndarray | None = None) -> Path:
    """Write a random FireRedASR-LLM checkpoint in the official layout into ``out_dir``."""
    out_dir = Path(out_dir)
    llm_dir = out_dir / LLM_DIR
    llm_dir.mkdir(parents=True, exist_ok=True)
    save_qwen2(spec, llm_dir, spec.seed)
    gen = torch.Generator().manual_seed(spec.seed + 2)
    state = {f"encoder.{n}": random_tensor(n, s, gen, spec.init_std)
             for n, s in encoder_shapes(spec).items()}
    state["encoder.positional_encoding.pe"] = relative_positional_table(spec.d_model, spec.pe_maxlen)
    enc_out, llm_dim = spec.d_model * spec.downsample_rate, spec.hidden_size
    for name, shape in {"linear1.weight": (llm_dim, enc_out), "linear1.bias": (llm_dim,),
                        "linear2.weight": (llm_dim, llm_dim), "linear2.bias": (llm_dim,)}.items():
        state[f"encoder_projector.{name}"] = random_tensor(name, shape, gen, spec.init_std)
    kv_dim = spec.hidden_size // spec.num_attention_heads * spec.num_key_value_heads
    for name, shape in lora_shapes(spec, kv_dim).items():
        std = 1.0 / math.sqrt(shape[1]) if "lora_A" in name else spec.lora_b_std
        state[name] = std * torch.randn(shape, generator=gen)
    torch.save({"args": encoder_args(spec)}, out_dir / "asr_encoder.pth.tar")
    torch.save({"args": llm_args(spec), "model_state_dict": state}, out_dir / "model.pth.tar")
    feats = cmvn_feats if cmvn_feats is not None else demo_fbank()
    write_cmvn(out_dir / "cmvn.ark", feats)
    return out_dir


def tiny_model_dir(spec: TinySpec = TinySpec()) -> Path:
    """The embedded random ``tiny`` model in the official layout (built once, then cached)."""
    out = cache_root() / f"tiny-official-{spec.digest()}"
    if not (out / "model.pth.tar").exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        build_official_checkpoint(spec, tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same build first
            shutil.rmtree(tmp)
    return out


if __name__ == "__main__":
    print(tiny_model_dir())
