"""fireredasr_vllm.convert: merged weights equal peft's merge, clear errors with exit status 2."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fireredasr_vllm.convert import LORA_SCALE, ConversionError, convert, main


def converted_state(converted_dir) -> dict[str, torch.Tensor]:
    state = {}
    for path in sorted(converted_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            state |= {name: handle.get_tensor(name) for name in handle.keys()}
    return state


def test_lora_merge_equals_peft_merge_and_unload(official, tiny_official_dir, tiny_converted_dir):
    lora = official.model.llm.peft_config["default"]
    assert LORA_SCALE == lora.lora_alpha / lora.r
    merged = copy.deepcopy(official.model.llm).merge_and_unload().state_dict()
    state = converted_state(tiny_converted_dir)
    llm = {k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")}
    assert set(llm) == set(merged)
    for name, tensor in merged.items():
        torch.testing.assert_close(llm[name], tensor, atol=1e-6, rtol=1e-6, msg=name)
    with safe_open(str(tiny_official_dir / "Qwen2-7B-Instruct" / "model.safetensors"), framework="pt") as handle:
        changed = [n for n in merged if not torch.equal(merged[n], handle.get_tensor(n))]
    assert len(changed) == 7 * official.model.llm.config.num_hidden_layers  # the LoRA targets, nothing else
    for name, tensor in official.model.state_dict().items():  # encoder and adapter copied unchanged
        if name.startswith(("encoder.", "encoder_projector.")) and not name.endswith("positional_encoding.pe"):
            assert torch.equal(state[name], tensor), name


def test_config_and_tokenizer(tiny_converted_dir, official):
    config = json.loads((tiny_converted_dir / "config.json").read_text())
    fire = config["fireredasr"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_converted_dir))
    assert tokenizer.convert_tokens_to_ids(fire["speech_token"]) == fire["speech_token_id"] < config["vocab_size"]
    assert config["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>") == official.model.llm.config.eos_token_id
    cmvn = official.feat_extractor.cmvn  # the official CMVN class, exactly (JSON keeps float64)
    np.testing.assert_array_equal(fire["cmvn_means"], cmvn.means)
    np.testing.assert_array_equal(fire["cmvn_istd"], cmvn.inverse_std_variences)


def test_refuses_to_overwrite(official_copy, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="exists and is not empty.*--force"):
        convert(official_copy, out, progress=False)
    assert main([str(official_copy), str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "cmvn.ark").unlink(), "cmvn.ark: missing"),
    (lambda d: (d / "model.pth.tar").write_bytes((d / "model.pth.tar").read_bytes()[:4096]),
     "model.pth.tar: cannot be read as a PyTorch checkpoint.*truncated"),
    (lambda d: shutil.rmtree(d / "Qwen2-7B-Instruct"), "Qwen2-7B-Instruct: missing.*ln -s"),
    (lambda d: (d / "cmvn.ark").write_bytes(b"garbage"), "cmvn.ark: not a Kaldi matrix"),
])
def test_damaged_inputs_exit_2_naming_the_file(damage, message, official_copy, tmp_path, capsys):
    damage(official_copy)
    assert main([str(official_copy), str(tmp_path / "out"), "--no-checksums"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert re.search(message, err, re.S), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["official"]  # nothing half-written left


def test_failed_forced_conversion_keeps_the_old_output(official_copy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous conversion")
    (official_copy / "cmvn.ark").write_bytes(b"garbage")
    assert main([str(official_copy), str(out), "--force", "--no-checksums"]) == 2
    assert (out / "keep.txt").read_text() == "previous conversion"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["official", "out"]


def test_processes_resolving_at_once_share_one_conversion(tiny_official_dir, tmp_path):
    """Two processes (say the workbench and a notebook) convert the same release into an empty cache."""
    code = ("import sys; from pathlib import Path; from fireredasr_vllm.resolve import ensure_converted; "
            "print(ensure_converted(Path(sys.argv[1])))")
    env = dict(os.environ, FIREREDASR_VLLM_CACHE=str(tmp_path / "cache"))
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tiny_official_dir)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [process.communicate(timeout=900) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    (converted,) = {Path(out.strip().splitlines()[-1]) for out, _ in outputs}
    assert (converted / "config.json").exists()
    assert sorted(p.name for p in converted.parent.iterdir()) == [converted.name, converted.name + ".lock"]
