"""fireredasr_vllm.resolve: model specs -> converted directories, hub releases that ship without their LLM."""

import shutil

import pytest
from safetensors.torch import load_file

from fireredasr_vllm import resolve

HUB_RELEASE = "FireRedTeam/FireRedASR-LLM-L"


def tensors(converted_dir) -> dict:
    state = {}
    for path in sorted(converted_dir.glob("*.safetensors")):
        state |= load_file(path)
    return state


def test_hub_release_without_llm_gets_qwen_linked_in(tiny_official_dir, tiny_converted_dir, tmp_path, monkeypatch):
    release = tmp_path / "hub" / "843d751"  # what the hub holds for FireRedASR-LLM-L: no Qwen2-7B-Instruct/
    release.mkdir(parents=True)
    for name in ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark"):
        shutil.copy(tiny_official_dir / name, release / name)
    repos = {HUB_RELEASE: release, resolve.LLM_REPO: tiny_official_dir / resolve.LLM_DIR}
    fetched = []
    monkeypatch.setattr(resolve, "snapshot", lambda repo: fetched.append(repo) or repos[repo])  # no hub here
    monkeypatch.setenv("FIREREDASR_VLLM_CACHE", str(tmp_path / "cache"))
    assert resolve.lacks_llm(release) and not resolve.lacks_llm(tiny_official_dir)

    converted = resolve.resolve_model(HUB_RELEASE)
    assert fetched == [HUB_RELEASE, resolve.LLM_REPO]
    assert converted.is_relative_to(tmp_path / "cache") and (converted / "config.json").exists()
    reference, mine = tensors(tiny_converted_dir), tensors(converted)
    assert mine.keys() == reference.keys() and all((mine[k] == reference[k]).all() for k in reference)
    assert resolve.resolve_model(HUB_RELEASE) == converted  # linked and converted once


def test_unknown_spec_names_what_is_accepted():
    with pytest.raises(resolve.ModelNotFoundError, match="'tiny', 'trained'"):
        resolve.resolve_model("no-such-model")


def test_auto_dtype_is_float32_on_cpu_and_bfloat16_on_gpus(engine):
    assert (resolve.resolve_dtype("auto", cpu=True), resolve.resolve_dtype("auto", cpu=False)) == ("float32", "bfloat16")
    assert resolve.resolve_dtype("bfloat16", cpu=True) == "bfloat16"  # an explicit choice stands
    assert engine.options.dtype == "auto" and engine.dtype == engine.describe()["dtype"] == "float32"  # this CPU
