"""testkit.tiny: deterministic assets in the official layout, loadable by the official code."""

import argparse

import numpy as np
import torch

from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.convert import sha256
from testkit.tiny import TinySpec, build_official_checkpoint

ASSETS = ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark", f"{LLM_DIR}/model.safetensors", f"{LLM_DIR}/config.json",
          f"{LLM_DIR}/tokenizer.json", f"{LLM_DIR}/tokenizer_config.json")


def official_load(path):
    """``torch.load`` exactly as fireredasr does it (plus the Namespace allow-list torch >= 2.6 needs)."""
    torch.serialization.add_safe_globals([argparse.Namespace])
    return torch.load(path, map_location=lambda storage, loc: storage)


def test_generator_is_deterministic(tiny_official_dir, tmp_path):
    rebuilt = build_official_checkpoint(TinySpec(), tmp_path / "again")
    for name in ASSETS:
        assert sha256(rebuilt / name) == sha256(tiny_official_dir / name), name
    other = build_official_checkpoint(TinySpec(seed=1), tmp_path / "seed1")
    assert sha256(other / "model.pth.tar") != sha256(rebuilt / "model.pth.tar")  # the seed matters


def test_files_load_like_the_official_code(tiny_official_dir):
    import kaldiio
    from fireredasr.data.asr_feat import CMVN

    package = official_load(tiny_official_dir / "model.pth.tar")
    assert set(package) == {"args", "model_state_dict"}
    assert package["args"].use_lora == 1 and package["args"].encoder_downsample_rate == 2
    keys = package["model_state_dict"]
    assert any(k.startswith("encoder.") for k in keys) and any(k.startswith("encoder_projector.") for k in keys)
    assert all(k.startswith(("encoder.", "encoder_projector.")) or ".lora_" in k for k in keys)
    encoder = official_load(tiny_official_dir / "asr_encoder.pth.tar")
    assert set(encoder) == {"args"} and encoder["args"].d_model == TinySpec().d_model
    stats = kaldiio.load_mat(str(tiny_official_dir / "cmvn.ark"))
    assert stats.shape == (2, 81) and stats[0, 80] >= 1
    cmvn = CMVN(str(tiny_official_dir / "cmvn.ark"))
    assert cmvn.dim == 80 and np.all(np.isfinite(cmvn.inverse_std_variences))


def test_official_loader_misses_only_base_llm_weights(official, tiny_official_dir):
    result = official.load_result
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("llm.") and ".lora_" not in k for k in result.missing_keys)
    saved = official_load(tiny_official_dir / "model.pth.tar")["model_state_dict"]
    loaded = official.model.state_dict()
    for name, tensor in saved.items():  # every saved tensor arrived unchanged
        assert torch.equal(loaded[name], tensor), name


def test_official_tokenizer_and_prompt(official):
    tokenizer = official.tokenizer
    assert official.model.llm.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    speech = tokenizer.convert_tokens_to_ids("<speech>")
    assert speech < official.model.llm.config.vocab_size
    input_ids, _ = official.prompt(1)
    assert input_ids[0].tolist().count(speech) == 1
    assert tokenizer.decode(input_ids[0]) == "<|im_start|>user\n<speech>请转写音频为文字<|im_end|>\n<|im_start|>assistant\n"
