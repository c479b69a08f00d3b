"""``python -m workbench --model DIR`` (or ``fireredasr-workbench``): start the engine, serve the page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fireredasr_vllm import DEFAULT_MODEL, MODEL_HELP
from workbench.app import AppOptions, build_app, exposure_warning, launch, parse_credentials
from fireredasr_engine.client import ServerError
from fireredasr_engine.engine import Engine
from fireredasr_engine.options import EngineOptions
from fireredasr_engine.quiet import show_engine_log
from fireredasr_engine.transcribe import CliError, open_engine


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split(":")[1].strip())
    parser.add_argument("--model", "--model-dir", dest="model_dir", metavar="MODEL", default=DEFAULT_MODEL,
                        help=MODEL_HELP)
    parser.add_argument("--results-dir", default="results", help="run folders read and written (as eval.run)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="0.0.0.0 to serve the network: add a login and TLS first (docs/security.md)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload (MiB)")
    parser.add_argument("--max-audio-minutes", type=float, default=AppOptions.max_audio_minutes,
                        help="longest upload in long-audio mode, refused from its header before decoding")
    parser.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                        help="a folder whose test sets the Evaluate tab may load (repeatable; default: only the "
                             "registered sets)")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require a login (repeatable); prefer --auth-file, a command line is visible to ps")
    parser.add_argument("--auth-file", metavar="FILE", help="require a login: USER:PASS lines")
    parser.add_argument("--concurrency", type=int, default=16, help="transcriptions in flight at once")
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPUs) | float32 | bfloat16")
    parser.add_argument("--max-model-len", type=int, default=EngineOptions.max_model_len)
    parser.add_argument("--max-num-seqs", type=int)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--data-parallel-size", type=int, default=1,
                        help="vLLM data parallelism: N engines (one per GPU), requests balanced over them")
    parser.add_argument("--server", metavar="URL",
                        help="serve the page on a running fireredasr-serve (no engine of its own)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=EngineOptions.gpu_memory_utilization)
    parser.add_argument("--verbose", action="store_true", help="show vLLM's log (hidden by default)")
    return parser.parse_args(argv)


def existing_folders(paths: list[str]) -> tuple[Path, ...]:
    for path in paths:
        if not Path(path).is_dir():
            raise ValueError(f"--data-dir {path}: not a folder")
    return tuple(Path(path) for path in paths)


def main(argv=None) -> int:
    args = parse_args(argv)
    show_engine_log(args.verbose)
    try:
        options = AppOptions(results_dir=Path(args.results_dir), max_upload_mb=args.max_upload_mb,
                             concurrency=args.concurrency, max_audio_minutes=args.max_audio_minutes,
                             data_dirs=existing_folders(args.data_dir),
                             auth=parse_credentials(args.auth, args.auth_file))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        engine = Engine.connect(args.server) if args.server else open_engine(args)
    except (CliError, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    warning = exposure_warning(args.host, options)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        launch(build_app(engine, options), options, server_name=args.host, server_port=args.port)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
