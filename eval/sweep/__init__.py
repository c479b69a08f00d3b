"""Latency / throughput sweeps over engine x decoding x load configurations, with plots.

    python -m eval.sweep demo --model trained --grid max_num_seqs=1,4,16,64 --grid decoding=greedy,beam3,t0.7 \
        --concurrency 1,4,16 --mode offline,online --limit 30 --baselines builtin,official
    python -m eval.sweep --config examples/sweep_demo.toml [--limit 6 ...]   # flags override the file

Grid keys are ``decoding`` (parse_decoding labels) and any EngineOptions field (``max_num_seqs``,
``max_num_batched_tokens``, ``dtype``, ``enable_prefix_caching``, ...; ``default`` = vLLM's default).
A vLLM engine is built per engine-option combination (or an existing one is reused when its options
match) and closed before the next; decoding and load vary per request. Per engine and decoding, an
untimed warm-up submits a full batch (max_num_seqs requests, at most the test set; per load mode) so that the first
measured point is not the one that pays for the large batch shapes. Per configuration: ``offline``
submits every utterance at once (Engine.transcribe_many); ``online`` runs N concurrent clients
(Engine.transcribe_async), optionally with Poisson arrivals at ``--request-rate``. Each configuration is
timed ``--repeats`` times (speed figures: the median pass; ``spread``: (max - min) / median of the pass
times, warned about above 20 %); the configurations of each engine run in a seeded random order
(``--order-seed``, recorded in sweep.json) so that slow drift of the machine does not favour one of them.
Baselines add rows: ``builtin`` = vLLM's own FireRedASR2 model class on the same converted weights,
``official`` = the official PyTorch code (eval/official.py) at batch 1 and its static batches.

Engine flags (``--max-num-seqs 8``, ``--dtype``, ``-dp 2``, ...) are one-value grid entries; ``--grid`` wins.
Writes a sweep folder (eval/sweep/store.py): sweep.parquet/csv (one row per configuration, the results schema of
eval/records/), sweep_utterances.parquet, sweep.json, plots/*.png and report.md. The tables are rewritten
atomically after every configuration: Ctrl-C keeps what finished, and ``--resume`` continues an interrupted sweep.

Modules: ``config`` (SweepConfig, the plan), ``runners`` (engines, load generators, one pass's figures),
``run`` (run_sweep), ``store`` (the sweep folder), ``report`` (report.md, comparing sweeps), ``cli``.
"""

import importlib

# Public names and their modules, imported on first use (PEP 562): only the parts that measure import the
# engine (vLLM), so that reading sweep folders (eval.report, notebook 04) stays engine-free.
_EXPORTS = {
    "eval.sweep.cli": ["config_from_args", "main", "parse_args"],
    "eval.sweep.config": ["BASELINES", "BUILTIN_ARCHITECTURE", "ENGINE_KEYS", "MODES", "Job", "SweepConfig", "csv_list",
                          "engine_grid", "engine_label", "job_key", "job_label", "load_config_file", "parse_grid",
                          "parse_value", "plan", "shuffled"],
    "eval.sweep.report": ["SPREAD_WARNING", "compare_sweeps", "speedups", "write_report"],
    "eval.sweep.run": ["SweepFailed", "load_clips", "needs_new_engine", "run_sweep", "sweep_manifest"],
    "eval.sweep.runners": ["OfficialRunner", "PeakMemory", "VllmRunner", "arrival_times", "combine_passes",
                           "online_load", "open_runner", "serves", "summarize"],
    "eval.sweep.store": ["KEY", "SWEEP_MANIFEST", "SWEEP_TABLE", "SweepStore", "is_sweep", "list_sweeps",
                         "read_sweep_table"],
    "eval.tables": ["markdown_table", "results_table"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'eval.sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
