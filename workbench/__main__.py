"""``python -m workbench --model DIR`` (or ``fireredasr-workbench``): start the engine, serve the page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fireredasr_engine.cli import (
    CliError, add_engine_arguments, add_model_argument, add_server_argument, exit_codes, open_engine, parse)
from fireredasr_vllm.cli_args import add_renamed_argument
from workbench.app import AppOptions, build_app, exposure_warning, launch, parse_credentials


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split(":")[1].strip())
    add_model_argument(parser, official_alias=True)
    add_server_argument(parser)
    app = parser.add_argument_group("app")
    app.add_argument("--results-dir", default="results", help="run folders read and written (as eval.run)")
    app.add_argument("--host", default="127.0.0.1",
                     help="0.0.0.0 to serve the network: add a login and TLS first (docs/security.md)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--max-upload-mb", type=float, default=AppOptions.max_upload_mb,
                     help="largest accepted upload (MiB)")
    app.add_argument("--max-audio-minutes", type=float, default=AppOptions.max_audio_minutes,
                     help="longest upload in long-audio mode, refused from its header before decoding")
    app.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                     help="a folder whose test sets the Evaluate tab may load (repeatable; default: only the "
                          "registered sets)")
    app.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                     help="require a login (repeatable); prefer --auth-file, a command line is visible to ps")
    app.add_argument("--auth-file", metavar="FILE", help="require a login: USER:PASS lines")
    add_renamed_argument(app, "--max-in-flight", "--concurrency", type=int, default=AppOptions.concurrency,
                         metavar="N", help="transcriptions in flight at once, from all users")
    add_engine_arguments(parser)
    return parser


def existing_folders(paths: list[str]) -> tuple[Path, ...]:
    for path in paths:
        if not Path(path).is_dir():
            raise ValueError(f"--data-dir {path}: not a folder")
    return tuple(Path(path) for path in paths)


def app_options(args) -> AppOptions:
    try:
        return AppOptions(results_dir=Path(args.results_dir), max_upload_mb=args.max_upload_mb,
                          concurrency=args.max_in_flight, max_audio_minutes=args.max_audio_minutes,
                          data_dirs=existing_folders(args.data_dir),
                          auth=parse_credentials(args.auth, args.auth_file))
    except (OSError, ValueError) as error:  # a folder or the credentials file
        raise CliError(str(error)) from None


@exit_codes()
def main(argv=None) -> int:
    args = parse(build_parser(), argv)
    options = app_options(args)
    engine = open_engine(args)
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
