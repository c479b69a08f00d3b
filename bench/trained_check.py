"""The embedded trained model on whatever engine this machine runs: CER on the bundled clips and
greedy tokens, per dtype, so runs on different devices and dtypes can be compared token by token.

    python -m bench.trained_check run --dtype float32 --output bench/results/trained_cpu_float32.json
    python -m bench.trained_check run --dtype bfloat16 --output trained_gpu_bfloat16.json      # on a GPU host
    python -m bench.trained_check report bench/results/trained_*.json                       # first = reference

Reads the clips and their sentences from eval/demo (no ``datasets`` needed, so it runs on a bare GPU host).
Writes a benchmark file of the results schema (eval/records/: one measurement, its error rate and speed,
plus each clip's text and tokens); ``report`` also reads the files written before the schema.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import vllm

from eval.bundled import DEMO_DIR, read_sentences
from eval.normalize import NormalizerOptions
from eval.records import Benchmark, Measurement, Summary, load_benchmark, write_benchmark
from eval.sweep.runners import summarize
from fireredasr_engine.cli import add_model_argument, exit_codes
from fireredasr_engine.engine import Engine
from fireredasr_engine.options import EngineOptions
from fireredasr_vllm.cli_args import WEIGHT_DTYPES, add_renamed_argument

CHECKED_DTYPES = (*WEIGHT_DTYPES, "float16")  # float16 included: this script shows what it does to the tokens


def run(dtype: str = "float32", model: str = "trained", engine=None, path: Path = Path("trained_check.json")) -> Benchmark:
    """Transcribe the bundled clips on a new engine (or on ``engine``, which then sets model and dtype)."""
    if engine is None:
        with Engine(model, EngineOptions(dtype=dtype)) as engine:
            return run(engine=engine, path=path)
    clips = sorted((DEMO_DIR / "clips").glob("*.flac"))
    references = dict(read_sentences(DEMO_DIR / "sentences.txt"))
    started = time.perf_counter()
    results = engine.transcribe_many(clips)
    wall = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} clips failed: {failed[:3]}")
    summary, _ = summarize(results, references, wall, "cer", NormalizerOptions())
    meta = {"model": engine.model_spec, "dtype": engine.dtype, "device": engine.describe()["device"],
            "vllm": vllm.__version__, "torch": torch.__version__}
    return Benchmark(path, meta, [Measurement("vllm", "offline", len(results), Summary.from_dict(summary))],
                     {"utterances": {r.id: {"text": r.text, "token_ids": r.token_ids} for r in results}})


def report(paths: list[Path]) -> str:
    """A markdown table; token agreement is counted against the first file."""
    runs = [load_benchmark(path) for path in paths]
    reference = runs[0].details["utterances"]
    lines = ["| device | vLLM | dtype | CER % | clips | same tokens as the first row |", "|---|---|---|---:|---:|---:|"]
    for r in runs:
        utterances, summary = r.details["utterances"], r.measurements[0].summary
        same = sum(u["token_ids"] == reference[i]["token_ids"] for i, u in utterances.items())
        lines.append(f"| {r.meta['device']} | {r.meta['vllm']} | {r.meta['dtype']} | {100 * summary.error_rate:.2f} | "
                     f"{summary.utterances} | {same}/{len(reference)} |")
    return "\n".join(lines)


@exit_codes(FileNotFoundError, ValueError)
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trained_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run")
    one.add_argument("--dtype", default="float32", choices=CHECKED_DTYPES)
    add_model_argument(one, default="trained")
    add_renamed_argument(one, "--output", "--out", type=Path, required=True, metavar="FILE",
                         help="benchmark file to write (JSON)")
    table = commands.add_parser("report")
    table.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        result = run(args.dtype, args.model, path=args.output)
        write_benchmark(result.path, result.meta, result.measurements, **result.details)
        summary = result.measurements[0].summary
        print(f"{result.meta['device']} {result.meta['dtype']}: CER {100 * summary.error_rate:.2f} % on "
              f"{summary.utterances} clips")
    else:
        print(report(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
