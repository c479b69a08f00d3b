"""Convert an official FireRedASR-LLM release directory into a vLLM-loadable directory.

    python -m fireredasr_vllm.convert OFFICIAL_DIR OUT_DIR [--dtype float32|bfloat16] [--force]   # fireredasr-convert

Input (FireRedASR-LLM-L and FireRedASR2-LLM layouts): ``model.pth.tar`` (encoder, adapter, unmerged
PEFT LoRA), ``asr_encoder.pth.tar`` (encoder args), ``cmvn.ark``, ``Qwen2-7B-Instruct/``.
Output: ``config.json`` (architecture + encoder conf + CMVN), safetensors shards with the LoRA merged
(W + alpha/r * B @ A) under the ``llm.`` / ``encoder.`` / ``encoder_projector.`` names that vLLM's
FireRedASR2 classes load, the tokenizer with the speech token, ``generation_config.json`` (official
defaults), ``preprocessor_config.json`` (for the built-in class) and ``conversion.json`` (checksums).

Tensors are streamed: the pickle is memory-mapped, the Qwen2 shards are read tensor by tensor and the
output is written in bounded shards, so memory stays near one shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kaldiio
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import AutoTokenizer

from fireredasr_vllm import ARCHITECTURE, LLM_DIR
from fireredasr_vllm.audio import cmvn_from_stats
from fireredasr_vllm.cli_args import (  # WEIGHT_DTYPES: the files do not depend on the machine, so no auto
    EXIT_OK, WEIGHT_DTYPES, add_dtype_argument, checked_dtype, exit_codes)
from fireredasr_vllm.constants import (CHAT_TOKENS, DEFAULT_MAX_SECONDS, DEFAULT_SPEECH_TOKEN, DOWNSAMPLE_RATE,
                                       END_OF_TEXT, FRAME_LENGTH_MS, FRAME_SHIFT_MS, IM_END, IM_START, INSTRUCTION,
                                       LORA_ALPHA, LORA_RANK, NUM_MEL_BINS, SAMPLE_RATE)

LORA_SCALE = LORA_ALPHA / LORA_RANK
OFFICIAL_FILES = ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark", LLM_DIR)
SHARD_BYTES = 2 * 1024**3
OFFICIAL_DECODING = {"beam_size": 3, "repetition_penalty": 3.0, "llm_length_penalty": 1.0,
                     "temperature": 1.0, "decode_max_len": 0, "decode_min_len": 0}


class ConversionError(RuntimeError):
    """A missing or unreadable input; the message names the file and the fix."""


def is_official_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "model.pth.tar").exists() and (path / "cmvn.ark").exists()


def is_converted_dir(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    return config.exists() and "fireredasr" in json.loads(config.read_text())


def check_official_dir(src: Path) -> list[str]:
    """Problems that stop conversion (empty list = fine)."""
    problems = []
    if not src.is_dir():
        return [f"{src}: not a directory; download the release (e.g. huggingface-cli download "
                "FireRedTeam/FireRedASR-LLM-L --local-dir DIR)"]
    for name in OFFICIAL_FILES:
        if not (src / name).exists():
            hint = (f" (FireRedASR-LLM-L ships it separately: download Qwen/{LLM_DIR} and "
                    f"link it here: ln -s /path/to/{LLM_DIR} {src / name})" if name == LLM_DIR else "")
            problems.append(f"{src / name}: missing{hint}")
    llm_dir = src / LLM_DIR
    if llm_dir.exists():
        if not (llm_dir / "config.json").exists():
            problems.append(f"{llm_dir / 'config.json'}: missing (incomplete {LLM_DIR} download?)")
        if not list(llm_dir.glob("*.safetensors")) and not list(llm_dir.glob("*.bin")):
            problems.append(f"{llm_dir}: no *.safetensors weights (incomplete download?)")
    return problems


def load_package(path: Path, mmap: bool = True) -> dict:
    """torch.load a ``.pth.tar`` the way the official code does (its ``args`` is an argparse.Namespace)."""
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as error:
        if mmap:  # legacy (non-zip) pickles cannot be memory-mapped
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                pass
        raise ConversionError(f"{path}: cannot be read as a PyTorch checkpoint ({error}); "
                              "the file may be truncated - download it again") from error


def read_cmvn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(means, inverse std) from a Kaldi ``cmvn.ark``."""
    try:
        stats = kaldiio.load_mat(str(path))
    except Exception as error:
        raise ConversionError(f"{path}: not a Kaldi matrix ({error})") from error
    try:
        return cmvn_from_stats(stats)
    except ValueError as error:
        raise ConversionError(f"{path}: {error}") from error


def lora_base_name(key: str) -> str | None:
    """``llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`` ->
    ``model.layers.0.self_attn.q_proj.weight`` (the Qwen2 name); None if not a LoRA-A key."""
    if ".lora_A." not in key:
        return None
    base = key.replace(".lora_A.default.weight", ".weight").replace(".lora_A.weight", ".weight")
    return base.removeprefix("llm.").removeprefix("base_model.model.")


def llm_override_name(key: str) -> str | None:
    """Full LLM weights stored in model.pth.tar (peft ``base_layer`` or plain) -> Qwen2 name."""
    if not key.startswith("llm.") or ".lora_" in key:
        return None
    return key.removeprefix("llm.").removeprefix("base_model.model.").replace(".base_layer.", ".")


def iter_qwen2_tensors(llm_dir: Path) -> Iterator[tuple[str, "torch.Tensor"]]:  # noqa: F821
    files = sorted(llm_dir.glob("*.safetensors"))
    if not files:
        for path in sorted(llm_dir.glob("*.bin")):
            yield from torch.load(path, map_location="cpu", mmap=True, weights_only=True).items()
        return
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)


class ShardWriter:
    """Write tensors into ``model-XXXXX.safetensors`` shards of bounded size plus an index."""

    def __init__(self, out_dir: Path, max_bytes: int = SHARD_BYTES):
        self.out_dir, self.max_bytes = out_dir, max_bytes
        self.pending: dict = {}
        self.pending_bytes = 0
        self.shards: list[dict] = []

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.out_dir / f"model-{len(self.shards) + 1:05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.shards.append({"file": path.name, "names": list(self.pending)})
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        self.flush()
        total = len(self.shards)
        weight_map = {}
        for i, shard in enumerate(self.shards, 1):
            final = f"model-{i:05d}-of-{total:05d}.safetensors"
            (self.out_dir / shard["file"]).rename(self.out_dir / final)
            weight_map |= {name: final for name in shard["names"]}
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def sha256(path: Path, chunk: int = 16 * 1024**2) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_tokenizer(llm_dir: Path, out_dir: Path, speech_token: str) -> dict[str, int]:
    """Copy the Qwen2 tokenizer, adding the speech token; return the special token ids."""
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": [speech_token]})
    tokenizer.save_pretrained(str(out_dir))
    ids = {t: tokenizer.convert_tokens_to_ids(t)
           for t in (*CHAT_TOKENS, speech_token)}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ConversionError(f"{llm_dir}: tokenizer lacks {missing}; is this a Qwen2 chat tokenizer?")
    ids["__len__"] = len(tokenizer)
    return ids


def build_config(llm_dir: Path, encoder_args, llm_args, means, istd, ids: dict, dtype: str) -> dict:
    config = json.loads((llm_dir / "config.json").read_text())
    vocab = max(int(config.get("vocab_size", 0)), ids["__len__"])
    config |= {
        "architectures": [ARCHITECTURE],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "torch_dtype": dtype,
        "eos_token_id": ids[IM_END],
        "bos_token_id": ids[IM_START],
        "pad_token_id": ids[END_OF_TEXT],
        "audio_encoder_conf": {
            "idim": int(encoder_args.idim), "n_layers_enc": int(encoder_args.n_layers_enc),
            "n_head": int(encoder_args.n_head), "d_model": int(encoder_args.d_model),
            "kernel_size": int(encoder_args.kernel_size), "pe_maxlen": int(encoder_args.pe_maxlen),
        },
        "encoder_downsample_rate": int(llm_args.encoder_downsample_rate),
        "fireredasr": {
            "speech_token": DEFAULT_SPEECH_TOKEN,
            "speech_token_id": ids[DEFAULT_SPEECH_TOKEN],
            "instruction": INSTRUCTION,
            "max_audio_seconds": float(getattr(llm_args, "input_length_max", DEFAULT_MAX_SECONDS)),
            "cmvn_means": [float(x) for x in means],
            "cmvn_istd": [float(x) for x in istd],
            "official_decoding": OFFICIAL_DECODING,
        },
    }
    config.pop("dtype", None)
    return config


def preprocessor_config(means, istd, max_seconds: float) -> dict:
    """What vLLM's built-in FireRedASR2 processor reads (the parity baseline)."""
    return {
        "processor_class": "FireRedASR2Processor",
        "feature_extractor_type": "FireRedASR2FeatureExtractor",
        "feature_size": NUM_MEL_BINS, "num_mel_bins": NUM_MEL_BINS, "dim": NUM_MEL_BINS,
        "sampling_rate": SAMPLE_RATE,
        "chunk_length": int(max_seconds), "max_length": int(max_seconds * 1000 // FRAME_SHIFT_MS),
        "frame_length": FRAME_LENGTH_MS, "frame_shift": FRAME_SHIFT_MS, "dither": 0.0, "padding_value": 0.0,
        "downsample_rate": DOWNSAMPLE_RATE, "left_context": 3, "right_context": 3,
        "means": [float(x) for x in means], "inverse_std_variences": [float(x) for x in istd],
    }


def generation_config(ids: dict) -> dict:
    """Greedy by default (the official ``do_sample=False``), stop on ``<|im_end|>``."""
    return {"do_sample": False, "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0,
            "bos_token_id": ids[IM_START], "eos_token_id": [ids[IM_END]], "pad_token_id": ids[END_OF_TEXT]}


def convert(src: str | Path, out: str | Path, *, dtype: str = "float32", force: bool = False,
            progress: bool = True, checksums: bool = True) -> Path:
    """Convert ``src`` (official layout) into ``out`` (vLLM layout). Returns ``out``."""
    src, out = Path(src), Path(out)
    problems = check_official_dir(src)
    if problems:
        raise ConversionError("cannot convert:\n  " + "\n  ".join(problems))
    if out.exists() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out}: exists and is not empty; choose another OUT_DIR or pass --force")
    target_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tmp = out.with_name(out.name + f".partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_converted(src, tmp, dtype, target_dtype, progress=progress, checksums=checksums)
    except BaseException:  # no half-written output; an existing OUT_DIR stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def write_converted(src: Path, tmp: Path, dtype: str, target_dtype, *, progress: bool, checksums: bool) -> None:
    """Write the converted model into the empty directory ``tmp``."""
    started = time.time()
    encoder_pkg = load_package(src / "asr_encoder.pth.tar", mmap=False)
    package = load_package(src / "model.pth.tar")
    if "args" not in package or "model_state_dict" not in package:
        raise ConversionError(f"{src / 'model.pth.tar'}: expected keys 'args' and 'model_state_dict', "
                              f"found {sorted(package)}")
    if "args" not in encoder_pkg:
        raise ConversionError(f"{src / 'asr_encoder.pth.tar'}: no 'args' (encoder hyper-parameters)")
    state = package["model_state_dict"]
    means, istd = read_cmvn(src / "cmvn.ark")
    llm_dir = src / LLM_DIR

    lora = {}
    overrides = {}
    for key in state:
        if (base := lora_base_name(key)) is not None:
            lora[base] = (key, key.replace("lora_A", "lora_B"))
        elif (name := llm_override_name(key)) is not None:
            overrides[name] = key

    writer = ShardWriter(tmp)
    merged = 0
    for key in tqdm([k for k in state if k.startswith(("encoder.", "encoder_projector."))],
                    desc="encoder+adapter", disable=not progress):
        if key.endswith("positional_encoding.pe"):
            continue  # recomputed by vLLM
        writer.add(key, state[key].to(target_dtype))
    seen = set()
    for name, tensor in tqdm(iter_qwen2_tensors(llm_dir), desc="Qwen2 + LoRA merge", unit="tensor",
                             disable=not progress):
        if name in overrides:
            tensor = state[overrides[name]]
        if name in lora:
            a_key, b_key = lora[name]
            delta = state[b_key].float() @ state[a_key].float()
            if delta.shape != tensor.shape:
                raise ConversionError(f"LoRA {a_key} gives {tuple(delta.shape)} but {name} is "
                                      f"{tuple(tensor.shape)}: model.pth.tar and {LLM_DIR} don't match")
            tensor = tensor.float() + LORA_SCALE * delta
            merged += 1
        seen.add(name)
        writer.add(f"llm.{name}", tensor.to(target_dtype))
    missing = sorted(set(lora) - seen)
    if missing:
        raise ConversionError(f"{len(missing)} LoRA targets not found in {llm_dir}, e.g. {missing[0]}")
    writer.close()

    ids = write_tokenizer(llm_dir, tmp, DEFAULT_SPEECH_TOKEN)
    config = build_config(llm_dir, encoder_pkg["args"], package["args"], means, istd, ids, dtype)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (tmp / "generation_config.json").write_text(json.dumps(generation_config(ids), indent=2))
    (tmp / "preprocessor_config.json").write_text(json.dumps(
        preprocessor_config(means, istd, config["fireredasr"]["max_audio_seconds"]), indent=2))
    record = {
        "source": str(src.resolve()), "dtype": dtype, "lora_merged": merged, "lora_scale": LORA_SCALE,
        "seconds": round(time.time() - started, 1),
        "source_sha256": ({name: sha256(src / name) for name in ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark")}
                          if checksums else {}),
        "output_sha256": ({p.name: sha256(p) for p in sorted(tmp.glob("*.safetensors"))} if checksums else {}),
    }
    (tmp / "conversion.json").write_text(json.dumps(record, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fireredasr_vllm.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official_dir", metavar="OFFICIAL_DIR", help="the official release (model.pth.tar, ...)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the converted directory to write")
    add_dtype_argument(parser, default="float32", allowed=WEIGHT_DTYPES,
                       help="dtype of the written weights: float32 (default, the official precision) or bfloat16 "
                            "(GPUs); float16 is refused (it breaks the LLM)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--no-checksums", action="store_true", help="skip sha256 of inputs and outputs")
    return parser


@exit_codes(ConversionError)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dtype = checked_dtype(args.dtype, WEIGHT_DTYPES)
    out = convert(args.official_dir, args.out_dir, dtype=dtype, force=args.force, checksums=not args.no_checksums)
    print(f"converted {args.official_dir} -> {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
