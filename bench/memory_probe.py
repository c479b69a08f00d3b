"""vLLM worker extension of bench/gpu_benchmark.py, in a module of its own: every vLLM worker imports it
(``worker_extension_cls``), so it imports torch only, not the benchmark's eval and test-asset stack."""

from __future__ import annotations

import torch


class MemoryProbe:
    """Mixed into vLLM's worker (``worker_extension_cls``); called through ``collective_rpc``."""

    def memory_stats(self) -> dict:
        runner = getattr(self, "model_runner", None)
        stats = {"weights_bytes": getattr(runner, "model_memory_usage", None),
                 "peak_activation_bytes": getattr(self, "peak_activation_memory", None),
                 "kv_cache_bytes": getattr(self, "available_kv_cache_memory_bytes", None),
                 "v2_model_runner": getattr(self, "use_v2_model_runner", None)}
        if torch.cuda.is_available():
            stats |= {"max_allocated_bytes": torch.cuda.max_memory_allocated(),
                      "reserved_bytes": torch.cuda.memory_reserved()}
        return {k: (int(v) if v is not None else None) for k, v in stats.items()}


WORKER_EXTENSION = f"{MemoryProbe.__module__}.{MemoryProbe.__qualname__}"
