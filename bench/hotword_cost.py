"""What a hotword list costs: greedy throughput with a list of N words vs none, on one engine, side by side.

    python -m bench.hotword_cost                          # trained model, the 30 bundled clips, 100 words, 5 rounds
    python -m bench.hotword_cost --model DIR --words 1000 --rounds 9 --clips 200

Each round decodes every clip at once twice, without and with the list, in alternating order, so load changes
hit both alike. The list is distractors (two- to four-character pieces of the training sentences the clips
do not say). The default weight, 0.01, runs the processor in full (every request, every step) but is too small to
change an output, so the wall times compare the same tokens and the ratio is the processor's cost alone
(``same_tokens`` checks it); with ``--weight 2`` the list also changes outputs (the small model's lengths and
step counts change too), which is the effect, not the cost. Reports the median of the paired ratios of generated
tokens per second, list over none (1.0 = free), and the ratio of the best passes. Writes
``hotword_cost.{json,md}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

from eval.bundled import DEMO_CLIPS, DEMO_DIR, read_sentences
from eval.tables import markdown_table
from fireredasr_engine.cli import add_model_argument, exit_codes, model_spec
from fireredasr_engine.engine import Engine, device_name
from fireredasr_engine.options import DecodingOptions

CORPUS = DEMO_DIR / "corpus.txt"
DEFAULT_OUT = Path("bench/results")
COST_WEIGHT = 0.01  # runs the processor in full without changing the outputs


def distractors(count: int) -> tuple[tuple[str, float], ...]:
    """``count`` distinct 2-4 character pieces of the training corpus that no bundled clip says."""
    said = "".join(text for _, text in read_sentences(DEMO_DIR / "sentences.txt"))
    words: dict[str, float] = {}
    for line in CORPUS.read_text(encoding="utf-8").split():
        for size in (2, 3, 4):
            for start in range(0, len(line) - size + 1, size):
                piece = line[start:start + size]
                if piece not in said:
                    words.setdefault(piece, 1.0)
    if len(words) < count:
        raise SystemExit(f"the corpus gives only {len(words)} distractor words; ask for fewer")
    return tuple(list(words.items())[:count])


def one_pass(engine: Engine, clips: list, options: DecodingOptions) -> tuple[dict, list]:
    started = time.perf_counter()
    results = engine.transcribe_many(clips, options)
    wall = time.perf_counter() - started
    tokens = sum(r.output_tokens for r in results)
    audio = sum(r.duration_s for r in results)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "rtfx": audio / wall}, \
        [r.token_ids for r in results]


def main_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.hotword_cost", description=__doc__.split("\n\n")[0])
    add_model_argument(parser)
    parser.add_argument("--words", type=int, default=100, help="list length (default 100)")
    parser.add_argument("--weight", type=float, default=COST_WEIGHT,
                        help=f"global hotword weight (default {COST_WEIGHT:g}: the cost alone, the same outputs)")
    parser.add_argument("--rounds", type=int, default=5, help="paired passes; the median ratio is reported")
    parser.add_argument("--clips", type=int, default=30, help="clips per pass (the bundled ones, repeated)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


@exit_codes()
def main(argv=None) -> int:
    args = main_args(argv)
    bundled = sorted(DEMO_CLIPS.glob("*.flac"))
    clips = [bundled[n % len(bundled)] for n in range(args.clips)]
    listed = DecodingOptions(hotwords=distractors(args.words), hotword_weight=args.weight)
    plain = DecodingOptions()
    rows = []
    with Engine(model_spec(args)) as engine:
        _, plain_tokens = one_pass(engine, clips, plain)  # warm-up: compile, caches, the processor's tokenizer
        _, listed_tokens = one_pass(engine, clips, listed)
        for round_ in range(args.rounds):
            order = [(plain, "none"), (listed, f"{args.words} words")]
            for options, name in order if round_ % 2 == 0 else order[::-1]:
                rows.append({"round": round_, "list": name, **one_pass(engine, clips, options)[0]})
        device = device_name()
    by_round = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["list"]] = row
    listed_name = f"{args.words} words"
    ratios = [pair[listed_name]["tokens_per_s"] / pair["none"]["tokens_per_s"] for pair in by_round.values()]
    rtfx_ratios = [pair[listed_name]["rtfx"] / pair["none"]["rtfx"] for pair in by_round.values()]
    best = {name: max(row["tokens_per_s"] for row in rows if row["list"] == name) for name in ("none", listed_name)}
    summary = {"model": model_spec(args, note=False), "device": device, "clips": args.clips, "words": args.words,
               "weight": args.weight, "rounds": args.rounds, "same_tokens": plain_tokens == listed_tokens,
               "median_tokens_per_s_ratio": statistics.median(ratios),
               "median_rtfx_ratio": statistics.median(rtfx_ratios), "best_pass_ratio": best[listed_name] / best["none"],
               "ratios": ratios, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hotword_cost.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    table = markdown_table(pd.DataFrame(rows).round(3))
    text = (f"# Hotword list cost ({args.words} words, weight {args.weight:g}) on {device}\n\n"
            f"Median throughput ratio, list / none: **{summary['median_tokens_per_s_ratio']:.3f}** (generated "
            f"tokens/s), {summary['median_rtfx_ratio']:.3f} (RTFx), over {args.rounds} paired rounds of "
            f"{args.clips} clips; best pass against best pass: {summary['best_pass_ratio']:.3f}. Same tokens with "
            f"and without the list: {'yes' if summary['same_tokens'] else 'no'}.\n\n{table}\n")
    (args.out / "hotword_cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
