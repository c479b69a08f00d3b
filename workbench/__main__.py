"""``python -m workbench --model DIR`` (or ``fireredasr-workbench``): start the engine, serve the page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fireredasr_vllm import DEFAULT_MODEL, MODEL_HELP
from workbench.app import AppOptions, build_app, launch
from workbench.options import EngineOptions
from workbench.transcribe import CliError, open_engine


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split(":")[1].strip())
    parser.add_argument("--model", "--model-dir", dest="model_dir", metavar="MODEL", default=DEFAULT_MODEL,
                        help=MODEL_HELP)
    parser.add_argument("--results-dir", default="results", help="run folders read and written (as eval.run)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload (MiB)")
    parser.add_argument("--concurrency", type=int, default=16, help="transcriptions in flight at once")
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPUs) | float32 | bfloat16")
    parser.add_argument("--max-model-len", type=int, default=EngineOptions.max_model_len)
    parser.add_argument("--max-num-seqs", type=int)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=EngineOptions.gpu_memory_utilization)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        engine = open_engine(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = AppOptions(results_dir=Path(args.results_dir), max_upload_mb=args.max_upload_mb,
                         concurrency=args.concurrency)
    try:
        launch(build_app(engine, options), options, server_name=args.host, server_port=args.port)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
