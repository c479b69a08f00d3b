"""What vLLM's CPU backend needs of every engine this project starts: the facade's ``AsyncLLM``, the verifier's
offline ``LLM`` and fireredasr-serve's api_server all take their CPU settings from here."""

from __future__ import annotations

import os
from collections.abc import Mapping

from fireredasr_vllm.cli_args import vllm_flags

THREADS_BIND = "VLLM_CPU_OMP_THREADS_BIND"
KV_CACHE_SPACE = "VLLM_CPU_KVCACHE_SPACE"
DEFAULT_KV_CACHE_GB = 1

# enforce_eager: torch.compile on a CPU only slows the start down. enable_chunked_prefill: a prefill split over
# steps rewinds a seeded request's generator, which a CPU one cannot ("CPU Generator does not use offset": the
# engine dies).
CPU_ENGINE_ARGS = {"enforce_eager": True, "enable_chunked_prefill": False}


def cpu_thread_binding(workers: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving each of ``workers`` CPU workers its own cores ("0|1", "0,1|2,3");
    with fewer cores than workers, workers share them round robin."""
    cores = sorted(os.sched_getaffinity(0))
    per_worker = max(1, len(cores) // workers)
    groups = [[cores[(i * per_worker + j) % len(cores)] for j in range(per_worker)] for i in range(workers)]
    return "|".join(",".join(map(str, group)) for group in groups)


def cpu_environment(workers: int = 1, kv_cache_gb: int = DEFAULT_KV_CACHE_GB,
                    environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables a CPU engine of ``workers`` processes needs that ``environ`` does not set already (what a
    user set wins): its KV cache size and, for several workers, one core group each."""
    wanted = {KV_CACHE_SPACE: str(kv_cache_gb)}
    if workers > 1:
        wanted[THREADS_BIND] = cpu_thread_binding(workers)
    return {name: value for name, value in wanted.items() if name not in environ}


def cpu_server_flags(passthrough: list[str]) -> list[str]:
    """``CPU_ENGINE_ARGS`` as api_server flags, leaving out those the user gave either way."""
    given = {flag.removeprefix("--").removeprefix("no-") for flag in passthrough}
    return vllm_flags({name: value for name, value in CPU_ENGINE_ARGS.items() if name.replace("_", "-") not in given})
