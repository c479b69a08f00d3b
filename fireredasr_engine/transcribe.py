"""Transcribe files the way the official ``speech2text.py`` does, through vLLM.

    fireredasr-transcribe --model DIR --wav_scp wav.scp --output hyp.txt        # --model-dir / --model_dir too
    python -m fireredasr_engine.transcribe --model DIR a.wav b.flac wavs/ --beam_size 3 --repetition_penalty 3.0

Inputs (``--wav_path``, ``--wav_paths``, ``--wav_dir``, ``--wav_scp`` or plain arguments), decoding
options and the ``uttid<TAB>text`` output follow the official CLI; docs/migration.md maps them option
by option. ``--output-format jsonl`` writes one JSON record per utterance instead; ``srt`` / ``vtt``
write one subtitle file per input, ``--output DIR/<uttid>.srt`` (timed by the long-audio segments).
All utterances go to one engine at once (vLLM batches them continuously). One that cannot
be read is reported on stderr and the others go on. Exit status: 0 all transcribed, 1 some failed,
2 nothing ran (the message says how to fix it), 130 interrupted (Ctrl-C; the lines written so far stay).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS, is_kaldi_pipe_or_ark, load_kaldi_audio, read_kaldi_table
from fireredasr_vllm.hotwords import HotwordError
from fireredasr_engine.cli import (
    EXIT_FAILED, EXIT_OK, VERIFY_COMMAND, CliError, add_engine_arguments, add_hotword_arguments, add_model_argument,
    add_no_speech_argument, exit_codes, model_spec, open_engine, parse, with_hotwords)
from fireredasr_engine.options import NO_SPEECH, DecodingOptions, Transcript
from fireredasr_engine.subtitles import FORMATS as SUBTITLE_FORMATS
from fireredasr_engine.subtitles import write_subtitles

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
OUTPUT_FORMATS = ("txt", "jsonl", *SUBTITLE_FORMATS)


@dataclass
class Utterance:
    """One input: an id, what the engine decodes (a path or ``(samples, rate)``), or why it can't."""

    id: str
    source: object = None
    error: str | None = None

    @property
    def label(self) -> str:
        return self.source if isinstance(self.source, str) else self.id


# ----------------------------------------------------------------- inputs
def folder_utterances(folder: Path) -> list[Utterance]:
    """Every audio file under ``folder`` (recursive, sorted), id = file name without suffix."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise CliError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
    return [Utterance(p.stem, str(p)) for p in paths]


def scp_utterances(scp: Path) -> list[Utterance]:
    """A Kaldi ``wav.scp``: ``uttid path``, ``uttid command |`` or ``uttid file.ark:offset``."""
    if not scp.is_file():
        raise CliError(f"{scp}: no such wav.scp file")
    utterances = []
    for number, uttid, spec in read_kaldi_table(scp):
        if not spec:
            utterances.append(Utterance(f"{scp.name}:{number}", error=(
                f"{scp}:{number}: expected '<uttid> <path>', got {uttid!r}")))
        else:
            utterances.append(scp_entry(uttid, spec))
    return utterances


def scp_entry(uttid: str, spec: str) -> Utterance:
    """A plain path is decoded by the engine; pipes and ark offsets are read with kaldiio."""
    if not is_kaldi_pipe_or_ark(spec):
        return Utterance(uttid, spec)
    try:
        samples, rate = load_kaldi_audio(spec)
    except Exception as error:  # kaldiio raises whatever the command or the archive gives
        return Utterance(uttid, error=f"{uttid}: cannot read '{spec}' ({type(error).__name__}: {error})")
    return Utterance(uttid, (samples, rate))


def collect_utterances(args) -> list[Utterance]:
    """The official inputs plus plain arguments (file, folder or ``*.scp``), in that order."""
    utterances = []
    if args.wav_path:
        utterances.append(Utterance(Path(args.wav_path).stem, args.wav_path))
    utterances += [Utterance(Path(p).stem, p) for p in sorted(args.wav_paths or [])]
    if args.wav_scp:
        utterances += scp_utterances(Path(args.wav_scp))
    if args.wav_dir:
        if not Path(args.wav_dir).is_dir():
            raise CliError(f"{args.wav_dir}: no such folder")
        utterances += folder_utterances(Path(args.wav_dir))
    for item in args.inputs:
        path = Path(item)
        if path.is_dir():
            utterances += folder_utterances(path)
        elif path.suffix == ".scp":
            utterances += scp_utterances(path)
        else:
            utterances.append(Utterance(path.stem, item))
    if not utterances:
        raise CliError("no input: give audio files, a folder or a wav.scp "
                       "(or --wav_path / --wav_paths / --wav_dir / --wav_scp)")
    return mark_duplicates(utterances)


def mark_duplicates(utterances: list[Utterance]) -> list[Utterance]:
    """Kaldi text needs unique ids: a repeated id is an error for that utterance only."""
    first: dict[str, str] = {}
    for utterance in utterances:
        if utterance.error is None and utterance.id in first:
            utterance.error = (f"{utterance.id}: duplicate utterance id ({first[utterance.id]} and "
                               f"{utterance.label}); rename one or list them in a wav.scp with unique ids")
        first.setdefault(utterance.id, utterance.label)
    return utterances


# ----------------------------------------------------------------- options
def official_decoding_options(args) -> DecodingOptions:
    """The official decode arguments as ``DecodingOptions`` (same meanings, same defaults)."""
    if args.do_sample and args.beam_size > 1:
        raise CliError("--do_sample with --beam_size > 1 (beam sampling) is not supported; choose one")
    return with_hotwords(DecodingOptions(
        beam_size=args.beam_size,
        temperature=args.temperature if args.do_sample else 0.0,
        top_p=args.top_p if args.do_sample else 1.0,
        seed=args.seed if args.do_sample else None,
        repetition_penalty=args.repetition_penalty,
        length_penalty=args.llm_length_penalty,
        max_tokens=args.decode_max_len if args.decode_max_len > 0 else None,
        min_tokens=args.decode_min_len,
        no_speech=args.no_speech,
    ), args)


# ----------------------------------------------------------------- outputs
def kaldi_line(transcript: Transcript) -> str:
    """``uttid<TAB>text`` on one line (whitespace inside the text collapsed)."""
    return f"{transcript.id}\t{' '.join(transcript.text.split())}\n"


def jsonl_record(transcript: Transcript, utterance: Utterance) -> str:
    record = {**transcript.to_dict(), "wav": utterance.label, "rtf": round(transcript.rtf, 4)}
    return json.dumps(record, ensure_ascii=False) + "\n"


class OrderedLines:
    """Writes result lines in input order, each as soon as every utterance before it is done:
    ``uttid<TAB>text`` for each transcribed one (as the official CLI) or a JSON record for every one."""

    def __init__(self, stream, utterances: list[Utterance], jsonl: bool):
        self.stream, self.utterances, self.jsonl, self.done, self.next = stream, utterances, jsonl, {}, 0

    def add(self, position: int, transcript: Transcript) -> None:
        self.done[position] = transcript
        while self.next in self.done:
            finished = self.done.pop(self.next)
            if self.jsonl:
                self.stream.write(jsonl_record(finished, self.utterances[self.next]))
            elif finished.ok:
                self.stream.write(kaldi_line(finished))
            self.next += 1
        self.stream.flush()


def output_target(args) -> Path | None:
    """Where results go: a file (txt/jsonl, ``None`` = stdout) or the folder of subtitle files."""
    if args.output_format in SUBTITLE_FORMATS:
        if not args.output:
            raise CliError(f"--output-format {args.output_format} writes one file per input: "
                           "give the folder for them with --output DIR")
        if Path(args.output).is_file():
            raise CliError(f"{args.output}: is a file; --output-format {args.output_format} needs --output DIR "
                           "(a folder, created if missing)")
    return Path(args.output) if args.output else None


def summary(results: list[Transcript], wall_s: float, options: DecodingOptions, model: str,
            engine_start_s: float) -> list[str]:
    """The run in one line, then a hint for each detectable output problem."""
    ok = [t for t in results if t.ok]
    audio_s = sum(t.duration_s for t in ok)
    lines = [f"transcribed {len(ok)}/{len(results)} utterances: {audio_s:.1f} s of audio in {wall_s:.1f} s "
             f"(RTF {wall_s / audio_s if audio_s else 0:.3f}, {len(ok) / wall_s if wall_s else 0:.2f} utt/s; "
             f"engine start {engine_start_s:.0f} s, paid once per process: pass many files per call)"]
    if len(ok) < len(results):
        lines.append(f"{len(results) - len(ok)} failed (reasons above)")
    cut = sum(t.finish_reason == "length" for t in ok)
    if cut:
        limit = f"--decode_max_len {options.max_tokens}" if options.max_tokens else "one token per speech frame"
        lines.append(f"hint: {cut} transcripts stopped at the token limit ({limit}); if they are cut off raise "
                     "--decode_max_len, if they repeat use --repetition_penalty 3.0 (the official setting)")
    silent = sum(t.finish_reason == NO_SPEECH for t in ok)
    if silent:
        lines.append(f"{silent} inputs: no speech found (--no-speech skip), so their transcripts are empty")
    empty = sum(not t.text.strip() and t.finish_reason != NO_SPEECH for t in ok)
    if empty:
        lines.append(f"hint: {empty} transcripts are empty; check the audio holds speech and check the model "
                     f"(speech token id, weights) with: {VERIFY_COMMAND.format(model=model)}")
    return lines


# ----------------------------------------------------------------- command line
def both(name: str) -> list[str]:
    """Accept the official ``--snake_case`` spelling and ``--kebab-case``."""
    return sorted({f"--{name}", f"--{name.replace('_', '-')}"}, key=lambda flag: "_" not in flag)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fireredasr-transcribe", description=__doc__.split("\n\n")[0],
                                     epilog="Option meanings and differences: docs/migration.md")
    parser.add_argument("inputs", nargs="*", help="audio files, folders or Kaldi wav.scp files")
    add_model_argument(parser, official_alias=True)
    parser.add_argument(*both("asr_type"), default="llm", choices=["llm", "aed"],
                        help="only llm is served here")
    io = parser.add_argument_group("input / output (official)")
    io.add_argument(*both("wav_path"))
    io.add_argument(*both("wav_paths"), nargs="*")
    io.add_argument(*both("wav_dir"))
    io.add_argument(*both("wav_scp"))
    io.add_argument(*both("output"), help="write 'uttid<TAB>text' lines here instead of stdout "
                    "(srt/vtt: the folder for <uttid>.srt / <uttid>.vtt)")
    io.add_argument("--output-format", default="txt", choices=OUTPUT_FORMATS,
                    help="txt: 'uttid<TAB>text' (official); jsonl: a JSON record per utterance; "
                         "srt / vtt: subtitles, one file per input (with --long-audio, a cue per speech segment)")
    io.add_argument("--jsonl", help="also write one JSON record per utterance (text, tokens, timings)")
    decode = parser.add_argument_group("decoding (official meanings and defaults)")
    decode.add_argument(*both("beam_size"), type=int, default=1)
    decode.add_argument(*both("repetition_penalty"), type=float, default=1.0,
                        help="official semantics: penalises generated tokens only")
    decode.add_argument(*both("llm_length_penalty"), type=float, default=0.0,
                        help="beam score = sum(logprob) / length ** penalty")
    decode.add_argument(*both("decode_max_len"), type=int, default=0,
                        help="max new tokens; 0 = one per speech frame (official rule)")
    decode.add_argument(*both("decode_min_len"), type=int, default=0, help="min new tokens")
    decode.add_argument(*both("temperature"), type=float, default=1.0,
                        help="used only with --do_sample (the official CLI never samples)")
    decode.add_argument(*both("do_sample"), action="store_true", help="sample instead of greedy decoding")
    decode.add_argument(*both("top_p"), type=float, default=1.0, help="with --do_sample")
    decode.add_argument("--seed", type=int, default=0, help="with --do_sample")
    add_hotword_arguments(decode)
    add_no_speech_argument(decode)  # keep by default: every input decoded, as the official CLI does
    decode.add_argument(*both("batch_size"), type=int, default=None,
                        help="accepted for compatibility; vLLM batches continuously (see --max-num-seqs)")
    decode.add_argument(*both("use_gpu"), type=int, default=None,
                        help="accepted for compatibility; vLLM uses the GPU when its CUDA build is installed")
    io.add_argument("--long-audio", action="store_true",
                    help=f"split inputs over the model's {DEFAULT_MAX_SECONDS:g} s limit at pauses and stitch the "
                         "pieces")
    add_engine_arguments(parser)
    return parser


def notices(args) -> list[str]:
    """Official options that are accepted but mean something else here."""
    out = []
    if args.temperature != 1.0 and not args.do_sample:
        out.append("note: --temperature only matters with --do_sample (the official CLI never samples); "
                   "decoding without sampling")
    if args.batch_size not in (None, 1) or args.use_gpu is not None:
        out.append("note: --batch_size / --use_gpu are ignored: vLLM batches all utterances continuously "
                   "and runs on the device its build supports (cap with --max-num-seqs)")
    return out


@exit_codes(HotwordError)
def main(argv: list[str] | None = None, engine=None) -> int:
    """Run the CLI; pass ``engine`` to reuse an already built ``fireredasr_engine.engine.Engine``."""
    args = parse(build_parser(), argv)
    if args.asr_type == "aed":
        raise CliError("FireRedASR-AED is not served by vLLM here; use the official "
                       "speech2text.py --asr_type aed for it")
    options = official_decoding_options(args)
    output_target(args)
    utterances = collect_utterances(args)
    for line in notices(args):
        print(line, file=sys.stderr)
    args.model = model_spec(args)
    own_engine = engine is None
    if own_engine:
        engine = open_engine(args)
    try:  # Ctrl-C: lines already written stay, the engine is closed here
        engine.check_supported(options)  # e.g. a hotword the model cannot spell, before any output is opened
        return run(engine, utterances, options, args)
    finally:
        if own_engine:
            engine.close()


def run(engine, utterances: list[Utterance], options: DecodingOptions, args) -> int:
    """Decode everything through ``engine.transcribe_many``; stream lines, records and errors."""
    err = sys.stderr
    position = {u.id: n for n, u in enumerate(utterances) if u.error is None}  # ids unique among these
    target = output_target(args)
    subtitles = args.output_format in SUBTITLE_FORMATS
    if subtitles:
        target.mkdir(parents=True, exist_ok=True)
        text_out = None
    else:
        text_out = open(target, "w", encoding="utf-8") if target else sys.stdout
    jsonl_out = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    lines = None if subtitles else OrderedLines(text_out, utterances, jsonl=args.output_format == "jsonl")

    def finished(n: int, transcript: Transcript) -> None:
        if not transcript.ok:
            where = "" if utterances[n].label == transcript.id else f" [{utterances[n].label}]"
            print(f"error: {transcript.error}{where}", file=err)
        if jsonl_out is not None:
            jsonl_out.write(jsonl_record(transcript, utterances[n]))
            jsonl_out.flush()
        if subtitles:
            if transcript.ok:
                write_subtitles(target / f"{transcript.id}.{args.output_format}", transcript.segments)
        else:
            lines.add(n, transcript)

    started = time.perf_counter()
    try:
        failed = [(n, Transcript(id=u.id, error=u.error)) for n, u in enumerate(utterances) if u.error]
        for n, transcript in failed:
            finished(n, transcript)
        todo = [utterances[n] for n in position.values()]
        decoded = engine.transcribe_many([u.source for u in todo], options, ids=[u.id for u in todo],
                                         on_result=lambda t: finished(position[t.id], t),
                                         progress=err.isatty(), long_audio=args.long_audio)
        results = [t for _, t in failed] + decoded
    finally:
        for stream in (text_out, jsonl_out):
            if stream is not None and stream is not sys.stdout:
                stream.close()
    wall_s = time.perf_counter() - started
    for line in summary(results, wall_s, options, args.model, engine.build_seconds):
        print(line, file=err)
    if subtitles:
        print(f"subtitles: {sum(t.ok for t in results)} {args.output_format} files in {target}/", file=err)
    return EXIT_OK if all(t.ok for t in results) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
