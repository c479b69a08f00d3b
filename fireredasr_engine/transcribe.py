"""Transcribe files the way the official ``speech2text.py`` does, through vLLM.

    fireredasr-transcribe --model-dir DIR --wav_scp wav.scp --output hyp.txt
    python -m fireredasr_engine.transcribe --model-dir DIR a.wav b.flac wavs/ --beam_size 3 --repetition_penalty 3.0

Inputs (``--wav_path``, ``--wav_paths``, ``--wav_dir``, ``--wav_scp`` or plain arguments), decoding
options and the ``uttid<TAB>text`` output follow the official CLI; docs/migration.md maps them option
by option. ``--output-format jsonl`` writes one JSON record per utterance instead; ``srt`` / ``vtt``
write one subtitle file per input, ``--output DIR/<uttid>.srt`` (timed by the long-audio segments).
All utterances go to one engine at once (vLLM batches them continuously). One that cannot
be read is reported on stderr and the others go on. Exit status: 0 all transcribed, 1 some failed,
2 nothing ran (the message says how to fix it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fireredasr_engine.options import DecodingOptions, EngineOptions, Transcript
from fireredasr_engine.quiet import show_engine_log
from fireredasr_engine.subtitles import FORMATS as SUBTITLE_FORMATS
from fireredasr_engine.subtitles import write_subtitles

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
OUTPUT_FORMATS = ("txt", "jsonl", *SUBTITLE_FORMATS)
VERIFY = "python -m fireredasr_vllm.verify --model-dir {model_dir}"
CONVERT = "python -m fireredasr_vllm.convert OFFICIAL_DIR OUT_DIR"


class CliError(Exception):
    """Stops the run before any utterance is decoded; the message says the fix."""


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
    for number, line in enumerate(scp.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(maxsplit=1)
        if len(fields) != 2:
            utterances.append(Utterance(f"{scp.name}:{number}", error=(
                f"{scp}:{number}: expected '<uttid> <path>', got {line.strip()!r}")))
        else:
            utterances.append(scp_entry(*fields))
    return utterances


def scp_entry(uttid: str, spec: str) -> Utterance:
    """A plain path is decoded by the engine; pipes and ark offsets are read with kaldiio."""
    spec = spec.strip()
    if not (spec.endswith("|") or spec.startswith("|") or re.search(r"\.ark:\d+$", spec)):
        return Utterance(uttid, spec)
    import kaldiio

    try:
        rate, samples = kaldiio.load_mat(spec)
    except Exception as error:
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
def decoding_options(args) -> DecodingOptions:
    """The official decode arguments as ``DecodingOptions`` (same meanings, same defaults)."""
    if args.do_sample and args.beam_size > 1:
        raise CliError("--do_sample with --beam_size > 1 (beam sampling) is not supported; choose one")
    return DecodingOptions(
        beam_size=args.beam_size,
        temperature=args.temperature if args.do_sample else 0.0,
        top_p=args.top_p if args.do_sample else 1.0,
        seed=args.seed if args.do_sample else None,
        repetition_penalty=args.repetition_penalty,
        length_penalty=args.llm_length_penalty,
        max_tokens=args.decode_max_len if args.decode_max_len > 0 else None,
        min_tokens=args.decode_min_len,
    )


def engine_options(args) -> EngineOptions:
    if args.dtype == "float16":
        raise CliError("--dtype float16 breaks the Qwen2 LLM (empty or garbage transcripts); "
                       "use --dtype bfloat16 on GPU or float32 (the official precision)")
    return EngineOptions(dtype=args.dtype, max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                         tensor_parallel_size=args.tensor_parallel_size,
                         data_parallel_size=args.data_parallel_size,
                         gpu_memory_utilization=args.gpu_memory_utilization)


def open_engine(args):
    """Build the engine; each known failure becomes a ``CliError`` with its fix."""
    verify = VERIFY.format(model_dir=args.model_dir)
    try:
        from fireredasr_vllm.convert import ConversionError
        from fireredasr_engine.engine import Engine
    except ImportError as error:
        raise CliError(f"cannot import the engine ({error}). Install vLLM with the project: "
                       "pip install -e '.[cpu]' (CPU) or pip install -e '.[cuda]' (GPU), or run make setup; "
                       f"then check with: {verify}") from None
    try:
        return Engine(args.model_dir, engine_options(args))
    except (FileNotFoundError, ConversionError) as error:  # ModelNotFoundError is a FileNotFoundError
        raise CliError(f"{error}\nfix: --model-dir takes 'trained', 'tiny', an official release (model.pth.tar, "
                       "asr_encoder.pth.tar, cmvn.ark, Qwen2-7B-Instruct/) or a converted directory; "
                       f"convert once with: {CONVERT}; check a directory with: {verify}") from None
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        if re.search(r"out of memory|memory for the cache|KV cache", text, re.IGNORECASE):
            raise CliError(f"{text}\nfix: out of memory - lower --gpu-memory-utilization, --max-model-len or "
                           "--max-num-seqs, add --tensor-parallel-size N, use --dtype bfloat16 on GPU "
                           "(CPU: raise VLLM_CPU_KVCACHE_SPACE)") from None
        raise CliError(f"the vLLM engine did not start ({text}); the log above names the cause. "
                       f"Check the setup with: {verify}") from None


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


def summary(results: list[Transcript], wall_s: float, options: DecodingOptions, model_dir: str,
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
    empty = sum(not t.text.strip() for t in ok)
    if empty:
        lines.append(f"hint: {empty} transcripts are empty; check the audio holds speech and check the model "
                     f"(speech token id, weights) with: {VERIFY.format(model_dir=model_dir)}")
    return lines


# ----------------------------------------------------------------- command line
def both(name: str) -> list[str]:
    """Accept the official ``--snake_case`` spelling and ``--kebab-case``."""
    return sorted({f"--{name}", f"--{name.replace('_', '-')}"}, key=lambda flag: "_" not in flag)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fireredasr-transcribe", description=__doc__.split("\n\n")[0],
                                     epilog="Option meanings and differences: docs/migration.md")
    parser.add_argument("inputs", nargs="*", help="audio files, folders or Kaldi wav.scp files")
    parser.add_argument(*both("model_dir"), required=True,
                        help="official release dir, converted dir, 'trained' or 'tiny' (embedded test models)")
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
    decode.add_argument(*both("batch_size"), type=int, default=None,
                        help="accepted for compatibility; vLLM batches continuously (see --max-num-seqs)")
    decode.add_argument(*both("use_gpu"), type=int, default=None,
                        help="accepted for compatibility; vLLM uses the GPU when its CUDA build is installed")
    io.add_argument("--long-audio", action="store_true",
                    help="split inputs over the model's 30 s limit at pauses and stitch the pieces")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto = float32 (official) on CPU, bfloat16 on GPU; float16 is refused (it breaks the LLM)")
    engine.add_argument("--max-num-seqs", type=int, default=None, help="cap on sequences decoded together")
    engine.add_argument("--max-model-len", type=int, default=EngineOptions.max_model_len)
    engine.add_argument("--gpu-memory-utilization", type=float, default=EngineOptions.gpu_memory_utilization)
    engine.add_argument("--tensor-parallel-size", type=int, default=1)
    engine.add_argument("--verbose", action="store_true", help="show vLLM's log (hidden by default)")
    engine.add_argument("--data-parallel-size", type=int, default=1, help="vLLM data parallelism: N engines")
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


def main(argv: list[str] | None = None, engine=None) -> int:
    """Run the CLI; pass ``engine`` to reuse an already built ``fireredasr_engine.engine.Engine``."""
    args = build_parser().parse_args(argv)
    show_engine_log(args.verbose)
    err = sys.stderr
    try:
        if args.asr_type == "aed":
            raise CliError("FireRedASR-AED is not served by vLLM here; use the official "
                           "speech2text.py --asr_type aed for it")
        options = decoding_options(args)
        output_target(args)
        utterances = collect_utterances(args)
        for line in notices(args):
            print(line, file=err)
        own_engine = engine is None
        if own_engine:
            engine = open_engine(args)
    except CliError as error:
        print(f"error: {error}", file=err)
        return 2
    try:
        return run(engine, utterances, options, args)
    except KeyboardInterrupt:  # Ctrl-C: lines already written stay, the engine is closed below
        print("\ninterrupted", file=sys.stderr)
        return 130
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
    for line in summary(results, wall_s, options, args.model_dir, engine.build_seconds):
        print(line, file=err)
    if subtitles:
        print(f"subtitles: {sum(t.ok for t in results)} {args.output_format} files in {target}/", file=err)
    return 0 if all(t.ok for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
