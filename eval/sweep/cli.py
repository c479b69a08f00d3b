"""``python -m eval.sweep``: the command line over ``run_sweep`` (a ``--config`` TOML file, overridden by flags)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from eval.datasets import DatasetUnavailable
from eval.errors import UserError
from eval.sweep.config import SweepConfig, csv_list, engine_grid, load_config_file, parse_grid
from eval.sweep.run import SweepFailed, run_sweep
from eval.tables import markdown_table, results_table
from fireredasr_engine.cli import (Interrupted, add_engine_arguments, add_hotword_arguments, add_model_argument,
                                   add_server_argument, engine_options, exit_codes, parse)
from fireredasr_engine.client import ServerError, UnsupportedDecoding

DESCRIPTION = "Latency / throughput sweeps over engine x decoding x load configurations, with plots."


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m eval.sweep", description=DESCRIPTION)
    parser.add_argument("test_set", nargs="?", help="test set name or path (default: the config's, else demo)")
    parser.add_argument("--config", help="TOML file with SweepConfig keys (examples/sweep_demo.toml)")
    add_model_argument(parser)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="decoding=greedy,beam3,t0.7, hotword_weight=0,1,2,4,8 (with --hotwords) or an engine "
                             "option, e.g. max_num_seqs=1,4,16 (repeatable)")
    add_hotword_arguments(parser)  # --hotword-weight: a one-value grid entry; --grid hotword_weight=... wins
    parser.add_argument("--concurrency", type=lambda t: csv_list(t, int), help="online clients, e.g. 1,4,16")
    parser.add_argument("--mode", dest="modes", type=csv_list, help="offline,online")
    parser.add_argument("--request-rate", type=float, help="online: Poisson arrivals at R requests/s")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--shuffle-seed", type=int)
    parser.add_argument("--max-duration", type=float)
    parser.add_argument("--baselines", type=csv_list, help="builtin,official")
    parser.add_argument("--official-batch", dest="official_batch_sizes", type=lambda t: csv_list(t, int),
                        help="static batch sizes of the official baseline (default: 1 and the max_num_seqs values)")
    parser.add_argument("--warmup", type=int, help="untimed full-batch passes per engine and decoding (default 1)")
    parser.add_argument("--repeats", type=int, help="timed passes per configuration, median reported (default 2)")
    parser.add_argument("--order-seed", type=int, help="seed of the random configuration order (default 0)")
    add_server_argument(parser, help="measure running fireredasr-serve servers instead of local engines")
    parser.add_argument("--output-dir")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --output-dir")
    parser.add_argument("--quiet", action="store_true")
    add_engine_arguments(parser, title="engine (one value each, as --grid KEY=VALUE; --grid wins)")
    return parse(parser, argv)


def config_from_args(args) -> SweepConfig:
    """The TOML file (if any), overridden by the flags given."""
    values = load_config_file(args.config) if args.config else {}
    weight = {"hotword_weight": [args.hotword_weight]} if args.hotwords else {}
    grid = {**values.pop("grid", {}), **engine_grid(engine_options(args)), **weight, **parse_grid(args.grid)}
    for name in ("test_set", "model", "concurrency", "modes", "request_rate", "limit", "shuffle_seed",
                 "max_duration", "baselines", "official_batch_sizes", "warmup", "repeats", "order_seed",
                 "output_dir", "server", "hotwords"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return SweepConfig(**values, grid=grid)


@exit_codes(DatasetUnavailable, UserError, SweepFailed, ServerError, UnsupportedDecoding, tomllib.TOMLDecodeError,
            traceback_flag="--verbose")
def main(argv=None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        table = run_sweep(config, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: finished configurations are in {config.output_dir} (continue with "
                          "--resume)") from None
    print(markdown_table(results_table(table)))
    print(f"\n{Path(config.output_dir) / 'report.md'}")
    return 0
