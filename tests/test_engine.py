"""The facade engine's vLLM arguments: one source for the in-process engine and a fireredasr-serve alike."""

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser

from fireredasr_engine.engine import IN_PROCESS_ONLY, engine_arguments, server_flags
from fireredasr_engine.options import EngineOptions

# What bench/gpu_benchmark.py runs a served system with: every kind of value (numbers, booleans, dicts, extras).
BENCHMARK_LIKE = EngineOptions(dtype="float32", max_num_seqs=8, max_num_batched_tokens=2048, seed=3,
                               enable_prefix_caching=False, architecture="FireRedASR2ForConditionalGeneration",
                               extra=(("mm_processor_cache_gb", 0), ("load_format", "dummy"),
                                      ("compilation_config", {"cudagraph_capture_sizes": [1, 2]}),
                                      ("renderer_num_workers", 2), ("worker_extension_cls", "bench.probe.X")))


def test_server_flags_give_vllm_the_engine_arguments_of_the_facade():
    flags = server_flags(BENCHMARK_LIKE)
    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    served = AsyncEngineArgs.from_cli_args(parser.parse_args(["--model", "m", *flags]))
    arguments = engine_arguments(BENCHMARK_LIKE, "m", BENCHMARK_LIKE.dtype)
    in_process = AsyncEngineArgs(**arguments)
    shared = [key for key in arguments if key not in IN_PROCESS_ONLY]
    assert {"max_num_seqs", "enable_prefix_caching", "hf_overrides", "compilation_config", "load_format"} <= set(shared)
    assert {key: getattr(served, key) for key in shared} == {key: getattr(in_process, key) for key in shared}
    assert "--worker-extension-cls" not in flags and "--model" not in flags  # in-process only; serve's own
    assert served.enable_prefix_caching is False and served.max_num_seqs == 8  # not vLLM's defaults
