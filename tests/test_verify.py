"""fireredasr_vllm.verify: good directories pass, broken copies fail with what is wrong and the fix."""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from fireredasr_vllm.quiet import QUIET
from fireredasr_vllm.verify import check_engine, main, verify


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


@contextmanager
def edited_config(model_dir: Path):
    """``model_dir``'s config.json as a dict, written back when the block ends."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    yield config
    path.write_text(json.dumps(config))


@pytest.fixture
def converted_copy(tiny_converted_dir, tmp_path):
    return shutil.copytree(tiny_converted_dir, tmp_path / "converted")


@pytest.mark.parametrize("layout", ["official", "converted"])
def test_good_tiny_dirs_pass(layout, tiny_official_dir, tiny_converted_dir, capsys):
    model_dir = tiny_official_dir if layout == "official" else tiny_converted_dir
    assert main(["--model-dir", str(model_dir), "--no-engine"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and f"{layout} layout" in out
    names = [c.name for c in verify(model_dir, engine=False)]
    assert names == ["packages", "files", "shapes", "cmvn", "speech token", "tokenizer/config"]


def test_engine_check_transcribes_a_clip(engine):
    check = check_engine(engine)
    assert check.ok, check
    assert "tokens" in check.detail


def test_verify_command_starts_the_engine_on_an_official_release(tiny_official_dir):
    """As a user runs it: every check, the engine one included, on an official-layout release (which the
    engine check converts first, like the engine)."""
    as_a_user_has_it = {name: value for name, value in os.environ.items() if name not in QUIET}
    done = subprocess.run([sys.executable, "-m", "fireredasr_vllm.verify", "--model", str(tiny_official_dir)],
                          capture_output=True, text=True, timeout=600, env=as_a_user_has_it)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS  engine: check_clip.flac:" in done.stdout and "7/7 checks passed" in done.stdout
    assert " INFO " not in done.stdout + done.stderr, done.stderr[-3000:]  # vLLM's start-up log is hidden


def test_missing_cmvn_fails_with_fix(official_copy, capsys):
    (official_copy / "cmvn.ark").unlink()
    assert main(["--model-dir", str(official_copy), "--no-engine"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  files" in out and "cmvn.ark: missing" in out and "fix:" in out


def test_bad_cmvn_stats_fail(official_copy):
    import kaldiio
    import numpy as np

    kaldiio.save_mat(str(official_copy / "cmvn.ark"), np.zeros((2, 81)))
    cmvn = by_name(verify(official_copy, engine=False))["cmvn"]
    assert not cmvn.ok and "frame count is 0.0" in cmvn.detail and "2x81" in cmvn.fix


def test_truncated_checkpoint_fails(official_copy):
    path = official_copy / "model.pth.tar"
    path.write_bytes(path.read_bytes()[:1000])
    shapes = by_name(verify(official_copy, engine=False))["shapes"]
    assert not shapes.ok and "model.pth.tar" in shapes.detail and "download" in shapes.fix


def test_wrong_speech_token_id_fails(converted_copy):
    with edited_config(converted_copy) as config:
        config["fireredasr"]["speech_token_id"] += 1
    check = by_name(verify(converted_copy, engine=False))["speech token"]
    assert not check.ok and "the tokenizer gives <|AUDIO|>" in check.detail and "convert again" in check.fix


def test_speech_token_missing_from_tokenizer_fails(converted_copy):
    with edited_config(converted_copy) as config:
        config["fireredasr"]["speech_token"] = "<|NOT_A_TOKEN|>"
    check = by_name(verify(converted_copy, engine=False))["speech token"]
    assert not check.ok and "<|NOT_A_TOKEN|> is not in the tokenizer" in check.detail


def test_eos_mismatch_fails(converted_copy):
    with edited_config(converted_copy) as config:
        config["eos_token_id"] = config["pad_token_id"]
    check = by_name(verify(converted_copy, engine=False))["tokenizer/config"]
    assert not check.ok and "eos_token_id" in check.detail and "would not stop" in check.detail


def test_encoder_conf_mismatch_fails(converted_copy):
    with edited_config(converted_copy) as config:
        config["audio_encoder_conf"]["d_model"] *= 2
    check = by_name(verify(converted_copy, engine=False))["shapes"]
    assert not check.ok and "encoder vs its conf" in check.detail and "matching" in check.fix


def test_corrupt_config_fails_and_stops(converted_copy, capsys):
    (converted_copy / "config.json").write_text("{not json")
    assert main(["--model-dir", str(converted_copy)]) == 1
    out = capsys.readouterr().out
    assert "config.json: not valid JSON" in out and "--force" in out
    assert "PASS  shapes" not in out and "FAIL  shapes" not in out  # nothing else is attempted


def test_not_a_model_dir(tmp_path):
    check = by_name(verify(tmp_path, engine=False))["files"]
    assert not check.ok and "neither an official release" in check.detail and "convert" in check.fix
