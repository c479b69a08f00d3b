"""Evaluate FireRedASR-LLM on a test set through the shared vLLM engine.

    python -m eval.run aishell --model FireRedTeam/FireRedASR-LLM-L      # hub id, official dir, converted dir
    python -m eval.run demo                                              # embedded model + bundled clips
    python -m eval.run DIR_OR_FILE --limit 100 --decoding official --output-dir results/x
    python -m eval.run aishell --data-parallel-size 2                    # vLLM data parallelism: 2 engines
    python -m eval.run aishell --server http://gpu1:8000,http://gpu2:8000  # running fireredasr-serve servers

Writes a run folder (eval/records/): rows that survive a kill, utterances.parquet/csv, summary.json
(CER/WER with N/S/D/I, RTFx, utts/s, tokens/s, latency percentiles) and manifest.json. Re-running into
the same folder skips finished utterances.

Hotwords (docs/hotwords.md): a set with lists (a ``hotwords`` column or a ``hotwords.txt``, eval/datasets.py) is
decoded with them, each utterance with its own list where it has one; ``--hotwords`` replaces them for every
utterance; ``--hotword-weight 0`` decodes without (the baseline). Runs on such sets, or with ``--hotwords``, are
also scored for biasing (eval/biasing.py: B-CER, U-CER, hotword recall / precision / F1) against the set's lists
when it has them (so that runs with different lists compare), else against the ``--hotwords`` list. With ``--server`` the utterances go to the servers through
their transcription route (fireredasr_engine/client.py: retried on a dropped connection or a 5xx, each
recorded once); the run folder is the same and the manifest names the servers and their models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm  # a widget in Jupyter, a text bar elsewhere

from eval.bench import bench_against_official
from eval.datasets import PUBLISHED_SOURCE, REGISTRY, DatasetUnavailable, Utterance, load_test_set
from eval.errors import UserError
from eval.normalize import NormalizerOptions, normalize
from eval.plots import plot_run, save_figures
from eval.scoring import Tally, score_columns
from eval.tables import cell
from eval.records import ROWS, SUMMARY, Run, RunWriter, load_run, per_second, provenance, read_rows
from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS
from fireredasr_vllm.convert import sha256
from fireredasr_engine.cli import (add_decoding_argument, add_engine_arguments, add_model_argument, add_no_speech_argument,
                                   add_server_argument, decoding_options, engine_options, exit_codes, model_spec, parse,
                                   start_engine)
from fireredasr_engine.client import ServerError, UnsupportedDecoding, check_supported
from fireredasr_engine.options import DecodingOptions, EngineOptions, Transcript

DEFAULT_RESULTS = Path("results")


class EngineStopped(RuntimeError):
    """The engine died mid-run: why and the fix, and that the finished rows are kept for a resume."""


def make_row(utterance, transcript: Transcript, normalizer: NormalizerOptions, metric: str,
             hotwords: tuple[str, ...] | None = None) -> dict:
    """The utterance's record; ``hotwords``: the words it is scored for biasing against (None: not scored)."""
    return {
        "id": utterance.id, "duration": transcript.duration_s or utterance.duration,
        "reference": utterance.text, "hypothesis": transcript.text,
        "ref_norm": normalize(utterance.text, normalizer, metric),
        "hyp_norm": normalize(transcript.text, normalizer, metric),
        **score_columns(utterance.text, transcript.text, normalizer, metric,
                        None if transcript.error else hotwords),
        "latency_s": transcript.latency_s, "ttft_s": transcript.ttft_s, "queue_s": transcript.queue_s,
        "prompt_tokens": transcript.prompt_tokens, "output_tokens": transcript.output_tokens,
        "finish_reason": transcript.finish_reason, "error": transcript.error,
        "segments": [asdict(segment) for segment in transcript.segments],  # (start_s, end_s, text), long audio
        **({"hotwords": list(hotwords)} if hotwords is not None else {}),
    }


def decoding_for(utterance, data, decoding: DecodingOptions) -> DecodingOptions:
    """How to decode ``utterance``: a ``--hotwords`` list wins; else its own list, else its set's list (none at
    ``hotword_weight`` 0: the baseline decodes exactly as without)."""
    if decoding.hotwords or not decoding.hotword_weight or not data.has_hotwords:
        return decoding
    if utterance.hotwords is not None:
        return replace(decoding, hotwords=tuple((word, 1.0) for word in utterance.hotwords))
    return replace(decoding, hotwords=data.hotwords)


def scoring_words(utterance, data, decoding: DecodingOptions) -> tuple[str, ...] | None:
    """What ``utterance`` is scored for biasing against: the set's lists when it has them (comparable across
    decoding lists), else the ``--hotwords`` list; None: no biasing figures."""
    if utterance.hotwords is not None:
        return utterance.hotwords
    listed = data.hotwords or decoding.hotwords
    return tuple(word for word, _ in listed) if listed else None


def hotword_sources(data, decoding: DecodingOptions) -> dict:
    """Where the run's decoding and scoring lists come from, for the manifest."""
    column = getattr(data.utterances, "has_column", False)
    own = ("each utterance's list" + (", else the set's" if data.hotwords else "") if column
           else "the set's list" if data.hotwords else None)
    decoded = "--hotwords" if decoding.hotwords else (own if decoding.hotword_weight else None)
    scored = own or ("--hotwords" if decoding.hotwords else None)
    return {"decoding": decoded, "scoring": scored, "set_words": len(data.hotwords),
            "hotword_weight": decoding.hotword_weight}


def model_checksum(model_dir: Path) -> str | None:
    """sha256 of the converted weights as recorded by the converter (or of config.json)."""
    record = model_dir / "conversion.json"
    if record.exists():
        sums = json.loads(record.read_text()).get("output_sha256") or {}
        if sums:
            return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()
    return sha256(model_dir / "config.json")


def default_output_dir(test_set: str, model: str, decoding: DecodingOptions, hotwords: bool | None = None) -> Path:
    """``results/SET__MODEL__DECODING``; ``-hwW`` added when the set's lists are in effect (W: ``hotword_weight``;
    a ``--hotwords`` list is in the decoding's label). ``hotwords``: whether the set has lists (None: a registered
    set's own answer)."""
    name = Path(test_set).name if os.path.exists(test_set) else test_set
    if hotwords is None:
        hotwords = bool(test_set in REGISTRY and REGISTRY[test_set].hotwords_file)
    biased = f"-hw{decoding.hotword_weight:g}" if hotwords and not decoding.hotwords else ""
    return DEFAULT_RESULTS / f"{name}__{Path(model).name}__{decoding.label}{biased}"


def run_manifest(test_set, engine, decoding: DecodingOptions, normalizer: NormalizerOptions, args: dict) -> dict:
    info = engine.describe()
    return {
        "test_set": test_set.describe(),
        "model": info["model"], "model_dir": info["model_dir"],
        "model_sha256": model_checksum(engine.model_dir) if engine.model_dir else None,
        "architecture": info["architecture"], "engine": info["engine"], "decoding": decoding.to_dict(),
        "normalizer": normalizer.to_dict(), "versions": info["versions"], "device": info["device"],
        "hotwords": hotword_sources(test_set, decoding),
        "arguments": args, **provenance(),
        **({"servers": info["servers"]} if "servers" in info else {}),
    }


def check_resume(out_dir: Path, manifest: dict) -> None:
    """Refuse to mix results of a different model or decoding into an existing run folder."""
    old_path = out_dir / "manifest.json"
    if not old_path.exists():
        return
    old = json.loads(old_path.read_text())
    manifest = json.loads(json.dumps(manifest, default=str))  # as written: tuples (hotwords) read back as lists
    for key in ("model_sha256", "decoding"):
        if old.get(key) != manifest.get(key) and key in old:
            raise UserError(f"{out_dir} holds a run with a different {key}; pick another --output-dir "
                             "or delete the folder")


def evaluate(test_set: str, *, engine=None, model: str = DEFAULT_MODEL, decoding: DecodingOptions = DecodingOptions(),
             engine_options: EngineOptions = EngineOptions(), output_dir: str | Path | None = None,
             limit: int | None = None, shuffle_seed: int | None = None, max_duration: float | None = None,
             normalizer: NormalizerOptions = NormalizerOptions(), long_audio: bool = False,
             progress: bool = True, on_row=None, max_in_flight: int = 256,
             server: str | list[str] | None = None,
             allowed_dirs=None) -> Run:
    """Transcribe and score ``test_set``; returns the run (see module docstring). ``allowed_dirs``: as
    ``eval.datasets.load_test_set`` (the web app confines its sets).

    ``engine``: a running engine (or client) to use; else ``server`` (URLs of running servers) or a new
    engine on ``model``."""
    data = load_test_set(test_set, limit=limit, shuffle_seed=shuffle_seed, max_duration=max_duration,
                         allowed_dirs=allowed_dirs)
    own_engine = engine is None
    if own_engine and server:
        check_supported(decoding)
        engine = start_engine(server=server)  # cheap: the model is already loaded over there
    out_dir = Path(output_dir) if output_dir else default_output_dir(
        test_set, engine.model_spec if engine else model, decoding,
        hotwords=bool(decoding.hotwords or data.has_hotwords))
    if is_complete(out_dir, data):
        if own_engine and engine is not None:
            engine.close()
        return load_run(out_dir)
    if engine is None:
        engine = start_engine(model, engine_options)
    try:  # e.g. a hotword the model cannot spell: refused before the run folder is made
        engine.check_supported(decoding)
        if data.hotwords:  # the set's list, as it will decode the utterances without their own
            engine.check_supported(decoding_for(Utterance("", b"", "", None), data, decoding))
    except ValueError as error:
        if own_engine:
            engine.close()
        raise UserError(str(error)) from None
    args = {"test_set": test_set, "limit": limit, "shuffle_seed": shuffle_seed, "max_duration": max_duration,
            "long_audio": long_audio}
    manifest = run_manifest(data, engine, decoding, normalizer, args)
    check_resume(out_dir, manifest)
    tally = Tally()
    try:
        with RunWriter(out_dir) as writer:
            writer.write_manifest(manifest)
            for row in writer.rows():
                tally.add(row, timed=False)
            done = writer.done_ids()
            pending = [u for u in data.utterances if u.id not in done]
            warm_up(engine, pending, decoding if not pending else decoding_for(pending[0], data, decoding))
            bar = tqdm(total=len(pending), disable=not progress, desc=f"{data.name}", unit="utt")
            started = time.perf_counter()
            in_flight: dict = {}

            def collect(futures) -> None:
                for future in futures:
                    utterance = in_flight.pop(future)
                    transcript = future.result()
                    if transcript.error and engine.dead:
                        continue  # not this utterance's failure: it is transcribed again on resume
                    row = make_row(utterance, transcript, normalizer, data.metric,
                                   scoring_words(utterance, data, decoding))
                    writer.append(row)
                    tally.add(row, timed=True)
                    wall = time.perf_counter() - started
                    bar.update(1)
                    bar.set_postfix({data.metric.upper(): f"{100 * tally.corpus(data.metric).error_rate:.2f}%",
                                     "RTFx": cell(per_second(tally.audio_seconds, wall))})
                    if on_row is not None:
                        on_row(row, tally.summary(data.metric, wall))

            for utterance in pending:
                if engine.dead:
                    break
                prepared = engine.prepare(utterance.audio, id=utterance.id, long_audio=long_audio)
                in_flight[engine.submit(prepared, decoding_for(utterance, data, decoding))] = utterance
                if len(in_flight) >= max_in_flight:
                    finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    collect(finished)
            collect(list(in_flight))
            bar.close()
            if engine.dead:
                raise EngineStopped(f"{engine.dead}. The {len(writer.done_ids())} finished utterances are kept in "
                                    f"{out_dir}: run the same command again to resume")
            wall = time.perf_counter() - started
            writer.finalize(tally.summary(data.metric, wall))
    finally:
        if own_engine:
            engine.close()
    return load_run(out_dir)


def is_complete(out_dir: Path, data) -> bool:
    """A finished run of exactly these utterances: nothing to do (keeps its speed figures)."""
    if not (out_dir / SUMMARY).exists():
        return False
    done = {row["id"] for row in read_rows(out_dir / ROWS)}
    return {u.id for u in data.utterances} <= done


def warm_up(engine, pending, decoding: DecodingOptions) -> None:
    """One untimed request so that start-up costs stay out of the speed figures."""
    for utterance in pending[:3]:
        prepared = engine.prepare(utterance.audio, id=f"warmup-{utterance.id}")
        if not prepared.error:
            engine.submit(prepared, decoding).result()
            return


def format_summary(run: Run) -> str:
    s = run.summary
    metric = s.metric.upper()
    lines = [
        f"run: {run.path}",
        f"test set: {run.manifest.get('test_set', {}).get('name')}   model: {run.manifest.get('model')}   "
        f"decoding: {run.manifest.get('decoding', {}).get('label')}",
        "",
        f"| {metric} % | N | S | D | I | SER % | utts | failed | RTFx | utts/s | tok/s | p50 s | p90 s | p99 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(cell(v) for v in (
            100 * s.error_rate, s.n, s.s, s.d, s.i, 100 * s.ser, s.utterances, s.failed, s.rtfx, s.utts_per_s,
            s.output_tokens_per_s, s.latency_p50, s.latency_p90, s.latency_p99)) + " |",
    ]
    if s.has_biasing:
        lines += ["", "| B-CER % | U-CER % | hotword recall % | precision % | F1 % | hotwords from |",
                  "|---:|---:|---:|---:|---:|---|",
                  "| " + " | ".join(cell(None if v is None else 100 * v) for v in (
                      s.b_cer, s.u_cer, s.hotword_recall, s.hotword_precision, s.hotword_f1))
                  + f" | {(run.manifest.get('hotwords') or {}).get('decoding') or 'none (baseline)'} |"]
    published = run.manifest.get("test_set", {}).get("published")
    if published:
        numbers = ", ".join(f"{system} {rate:.2f} %" for system, rate in published)
        lines += ["", f"published {metric}: {numbers} ({PUBLISHED_SOURCE})"]
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("test_set", help="registry name (demo, aishell, wenetspeech-net, ...) or a local path")
    add_model_argument(parser)
    parser.add_argument("--output-dir", default=None)
    add_decoding_argument(parser)
    add_no_speech_argument(parser)  # keep by default: every utterance decoded, as the official code scores them
    parser.add_argument("--limit", type=int)
    parser.add_argument("--shuffle-seed", type=int)
    parser.add_argument("--max-duration", type=float, help="skip utterances longer than this (s)")
    parser.add_argument("--long-audio", action="store_true",
                        help=f"split audio longer than {DEFAULT_MAX_SECONDS:g} s at pauses")
    add_server_argument(parser, help="send the utterances to running fireredasr-serve servers instead of a local "
                                     "engine")
    parser.add_argument("--t2s", action="store_true", help="traditional -> simplified before scoring")
    parser.add_argument("--tn", action="store_true", help="Arabic numbers -> Chinese numerals before scoring")
    parser.add_argument("--nfkc", action="store_true", help="full-width -> half-width before scoring")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bench", action="store_true",
                        help="also run the official PyTorch implementation on the same clips and compare speed")
    parser.add_argument("--quiet", action="store_true")
    add_engine_arguments(parser)
    return parse(parser, argv)


@exit_codes(DatasetUnavailable, UserError, ServerError, UnsupportedDecoding, EngineStopped, traceback_flag="--verbose",
            interrupted="interrupted: the finished utterances are kept; run the same command again to resume")
def main(argv=None) -> int:
    args = parse_args(argv)
    decoding, options = decoding_options(args), engine_options(args)  # bad flags fail before anything starts
    decoding = replace(decoding, hotword_weight=args.hotword_weight)  # also the weight of a set's own list
    model = model_spec(args, note=args.server is None and not args.quiet)
    run = evaluate(  # Ctrl-C: the engine is closed on the way out, finished rows are on disk
        args.test_set, model=model, decoding=decoding, output_dir=args.output_dir, limit=args.limit,
        shuffle_seed=args.shuffle_seed, max_duration=args.max_duration, long_audio=args.long_audio,
        engine_options=options, normalizer=NormalizerOptions(t2s=args.t2s, tn=args.tn, nfkc=args.nfkc),
        progress=not args.quiet, server=args.server)
    if args.plots:
        write_plots(run)
    print(format_summary(run))
    if args.bench:
        print(bench_against_official(run, decoding))
    return 0


def write_plots(run: Run) -> None:
    save_figures(plot_run(run), run.path / "plots")


if __name__ == "__main__":
    sys.exit(main())
