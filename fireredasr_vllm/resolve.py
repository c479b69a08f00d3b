"""Model specs -> a vLLM-loadable directory.

A spec is ``trained`` (the default: the shipped tiny model trained on synthesized Mandarin,
fireredasr_vllm/trained), ``tiny`` (the embedded random-weight model, for parity tests), an official release
directory (converted once into the cache), a converted directory, or a Hugging Face hub id (downloaded,
then converted).
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import entry_points
from pathlib import Path

from filelock import FileLock
from huggingface_hub import snapshot_download
from vllm import platforms

from fireredasr_vllm import DEFAULT_MODEL, LLM_DIR
from fireredasr_vllm.cli_args import VERIFY_COMMAND
from fireredasr_vllm.convert import check_official_dir, convert, is_converted_dir, is_official_dir

TRAINED_DIR = Path(__file__).parent / "trained"  # the shipped ``trained`` model, official layout
MODEL_BUILDERS = "fireredasr_vllm.models"  # entry-point group: name -> function returning an official dir

LLM_REPO = "Qwen/Qwen2-7B-Instruct"  # FireRedASR-LLM-L's LLM, published separately


class ModelNotFoundError(FileNotFoundError):
    """The spec names nothing usable; the message says what was tried and how to fix it."""


def cache_root() -> Path:
    """Where converted models, linked releases and built test models are kept."""
    return Path(os.environ.get("FIREREDASR_VLLM_CACHE", Path.home() / ".cache" / "fireredasr_vllm"))


def named_model_dir(name: str) -> Path | None:
    """The official-layout directory a model name stands for: ``trained``, or one an installed package
    registers under ``fireredasr_vllm.models`` (built on first use); None for other specs."""
    if name == "trained":
        return TRAINED_DIR
    builders = {point.name: point for point in entry_points(group=MODEL_BUILDERS)}
    return Path(builders[name].load()()) if name in builders else None


def is_cpu() -> bool:
    return platforms.current_platform.is_cpu()  # detected on first use, not on import


def resolve_dtype(dtype: str = "auto", cpu: bool | None = None) -> str:
    """``auto`` -> float32 on CPU (the official precision), bfloat16 on GPUs (half the memory, same
    transcripts on the trained model: docs/benchmarks.md); any other value is returned as is."""
    if dtype != "auto":
        return dtype
    return "float32" if (is_cpu() if cpu is None else cpu) else "bfloat16"


def _fingerprint(official_dir: Path) -> str:
    digest = hashlib.sha256(str(official_dir.resolve()).encode())
    for name in ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark"):
        stat = (official_dir / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def converted_cache_dir(official_dir: Path, dtype: str = "float32") -> Path:
    return cache_root() / "converted" / f"{official_dir.resolve().name}-{dtype}-{_fingerprint(official_dir)}"


def ensure_converted(official_dir: Path, dtype: str = "float32") -> Path:
    """Convert ``official_dir`` into the cache unless already done; processes starting together (the
    workbench, a notebook, a test run) wait for one conversion instead of racing."""
    problems = check_official_dir(official_dir)
    if problems:
        raise ModelNotFoundError("incomplete FireRedASR-LLM release:\n  " + "\n  ".join(problems))
    out = converted_cache_dir(official_dir, dtype)
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "config.json").exists():
            convert(official_dir, out, dtype=dtype, progress=True, checksums=False, force=out.exists())
    return out


def snapshot(repo_id: str) -> Path:
    """One hub repo as a local directory (downloaded once into the hub cache), with a clear message when
    the hub is unreachable."""
    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:
        raise ModelNotFoundError(
            f"model '{repo_id}': not a local directory and the Hugging Face hub could not provide it "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Download it "
            f"elsewhere (huggingface-cli download {repo_id} --local-dir DIR) and pass --model DIR."
        ) from None


def lacks_llm(path: Path) -> bool:
    """An official release without its LLM folder (FireRedASR-LLM-L on the hub ships so)."""
    return is_official_dir(path) and (path / "asr_encoder.pth.tar").exists() and not (path / LLM_DIR).exists()


def link_release(repo_id: str, release: Path, llm: Path) -> Path:
    """The official layout in the cache: links to the release's files and to the separately downloaded LLM."""
    out = cache_root() / "releases" / f"{repo_id.replace('/', '--')}-{release.name[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    for target in [*release.iterdir(), llm]:
        link = out / (LLM_DIR if target == llm else target.name)
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    return out


def download(repo_id: str) -> Path:
    """A hub model as a local directory. A release that ships without its LLM gets Qwen/Qwen2-7B-Instruct
    downloaded too and linked in, as the official README asks users to do by hand."""
    path = snapshot(repo_id)
    return link_release(repo_id, path, snapshot(LLM_REPO)) if lacks_llm(path) else path


def resolve_model(spec: str | os.PathLike = DEFAULT_MODEL, dtype: str = "auto") -> Path:
    """Return a converted directory for ``spec``."""
    spec, dtype = str(spec), resolve_dtype(dtype)
    if (official := named_model_dir(spec)) is not None:
        return ensure_converted(official, dtype if spec == "trained" else "float32")
    path = Path(spec).expanduser()
    if path.exists():
        if is_converted_dir(path):
            return path
        if is_official_dir(path):
            return ensure_converted(path, dtype)
        raise ModelNotFoundError(
            f"{path}: neither an official FireRedASR-LLM release (model.pth.tar, asr_encoder.pth.tar, "
            f"cmvn.ark, {LLM_DIR}/) nor a converted directory (config.json with a 'fireredasr' "
            f"block); check the path, or run: {VERIFY_COMMAND.format(model=path)}")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return resolve_model(download(spec), dtype)
    raise ModelNotFoundError(f"{spec}: no such directory; pass 'tiny', 'trained', a model directory or a hub id")
