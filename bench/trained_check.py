"""The embedded trained model on whatever engine this machine runs: CER on the bundled clips and
greedy tokens, per dtype, so runs on different devices and dtypes can be compared token by token.

    python -m bench.trained_check run --dtype float32 --out bench/results/trained_cpu_float32.json
    python -m bench.trained_check run --dtype bfloat16 --out trained_gpu_bfloat16.json      # on a GPU host
    python -m bench.trained_check report bench/results/trained_*.json                       # first = reference

Reads the clips and their sentences from eval/demo (no ``datasets`` needed, so it runs on a bare GPU host).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.metrics import score_corpus
from eval.bundled import DEMO_DIR, read_sentences


def run(dtype: str = "float32", model: str = "trained", engine=None) -> dict:
    """Transcribe the bundled clips on a new engine (or on ``engine``, which then sets model and dtype)."""
    if engine is None:
        from fireredasr_engine.engine import Engine
        from fireredasr_engine.options import EngineOptions

        with Engine(model, EngineOptions(dtype=dtype)) as engine:
            return run(engine=engine)
    import torch
    import vllm

    clips = sorted((DEMO_DIR / "clips").glob("*.flac"))
    references = dict(read_sentences(DEMO_DIR / "sentences.txt"))
    results = engine.transcribe_many(clips)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} clips failed: {failed[:3]}")
    score = score_corpus([references[r.id] for r in results], [r.text for r in results])
    return {"model": engine.model_spec, "dtype": engine.dtype, "device": engine.describe()["device"],
            "vllm": vllm.__version__, "torch": torch.__version__, "cer": score.cer, "clips": len(results),
            "utterances": {r.id: {"text": r.text, "token_ids": r.token_ids} for r in results}}


def report(paths: list[Path]) -> str:
    """A markdown table; token agreement is counted against the first file."""
    runs = [json.loads(path.read_text()) for path in paths]
    reference = runs[0]["utterances"]
    lines = ["| device | vLLM | dtype | CER % | clips | same tokens as the first row |", "|---|---|---|---:|---:|---:|"]
    for r in runs:
        same = sum(u["token_ids"] == reference[i]["token_ids"] for i, u in r["utterances"].items())
        lines.append(f"| {r['device']} | {r['vllm']} | {r['dtype']} | {100 * r['cer']:.2f} | {r['clips']} | "
                     f"{same}/{len(reference)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trained_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run")
    one.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    one.add_argument("--model", default="trained")
    one.add_argument("--out", type=Path, required=True)
    table = commands.add_parser("report")
    table.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        result = run(args.dtype, args.model)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
        print(f"{result['device']} {result['dtype']}: CER {100 * result['cer']:.2f} % on {result['clips']} clips")
    else:
        print(report(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
