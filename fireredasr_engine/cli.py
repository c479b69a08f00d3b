"""Shared command-line helpers of the entry points that run an engine (fireredasr-transcribe, python -m
workbench, eval.run, eval.sweep, the scripts): the same flags, meanings, help and exit statuses everywhere.

    parser = argparse.ArgumentParser(prog="python -m eval.run", description=...)
    add_model_argument(parser)        # --model MODEL (default: the embedded model, noted on stderr)
    add_engine_arguments(parser)      # --dtype --max-model-len --max-num-seqs -tp -dp --gpu-memory-utilization
                                      # --verbose
    add_server_argument(parser)       # --server URL[,URL...]: running fireredasr-serve servers instead
    add_decoding_argument(parser)     # --decoding greedy | official | beamN | tT[-pP][-rpR]
                                      # --hotwords LIST_OR_FILE --hotword-weight W
    add_no_speech_argument(parser)    # --no-speech keep | skip (the voice-activity gate)

    @exit_codes(DatasetUnavailable, interrupted="interrupted: run it again to resume")
    def main(argv=None) -> int:
        args = parse(parser, argv)            # parse, and --verbose shows vLLM's log
        engine = open_engine(args)            # each known start failure -> CliError with its fix
        ... engine_options(args), decoding_options(args) ...

The vocabulary below the engine (``--model``, ``--dtype`` and its one rule, ``-tp`` / ``-dp``,
``--max-model-len``, ``CliError``, ``exit_codes``) is ``fireredasr_vllm.cli_args``, shared with the plugin's
own commands (convert, verify, serve), which may not import this package; it is re-exported here.
Exit status: 0 done, 1 some inputs failed, 2 nothing ran (``error: ...`` says the fix), 130 Ctrl-C.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace

from fireredasr_vllm import DEFAULT_MODEL, LLM_DIR
from fireredasr_vllm.cli_args import (  # noqa: F401  (re-exported: one import for every entry point)
    CONVERT_COMMAND, DEFAULT_MAX_MODEL_LEN, DTYPES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
    VERIFY_COMMAND, CliError, Interrupted, add_dtype_argument, add_max_model_len_argument, add_model_argument,
    add_parallel_arguments, checked_dtype, exit_codes, model_spec)
from fireredasr_vllm.convert import ConversionError
from fireredasr_engine.client import ServerError
from fireredasr_engine.engine import Engine
from fireredasr_engine.hotwords import load_hotwords
from fireredasr_engine.options import (DEFAULT_HOTWORD_WEIGHT, NO_SPEECH_MODES, DecodingOptions, EngineOptions,
                                       parse_decoding)
from fireredasr_vllm.hotwords import MAX_HOTWORDS, HotwordError, check_weight
from fireredasr_vllm.quiet import show_engine_log

DECODING_HELP = "greedy | official (beam 3 + repetition penalty 3) | beamN | tT[-pP], each optionally -rpR"
OUT_OF_MEMORY = re.compile(r"out of memory|memory for the cache|KV cache", re.IGNORECASE)


def add_engine_arguments(parser, *, title: str = "engine") -> None:
    """The options that build a vLLM engine (``EngineOptions``) plus ``--verbose``, as one help group."""
    group = parser.add_argument_group(title)
    add_dtype_argument(group)
    add_max_model_len_argument(group)
    group.add_argument("--max-num-seqs", type=int, metavar="N",
                       help="cap on sequences decoded together (default: vLLM's)")
    add_parallel_arguments(group)
    group.add_argument("--gpu-memory-utilization", type=float, default=EngineOptions.gpu_memory_utilization,
                       metavar="FRACTION",
                       help=f"share of GPU memory vLLM may take (default {EngineOptions.gpu_memory_utilization})")
    group.add_argument("--verbose", action="store_true", help="show vLLM's log (hidden by default)")


def add_server_argument(parser, *, help: str = "use running fireredasr-serve servers instead of a local "
                                               "engine (comma-separated URLs)") -> None:
    parser.add_argument("--server", metavar="URL[,URL...]", help=help)


def add_decoding_argument(parser, *, default: str = "greedy") -> None:
    parser.add_argument("--decoding", default=default, metavar="NAME", help=DECODING_HELP)
    add_hotword_arguments(parser)


def add_hotword_arguments(parser) -> None:
    """``--hotwords`` and ``--hotword-weight`` (contextual biasing, docs/hotwords.md)."""
    parser.add_argument("--hotwords", metavar="LIST_OR_FILE",
                        help="words to bias decoding toward: 'w1,w2:2.5' or a file, one word a line with an optional "
                             f"weight ('word 2.5'); at most {MAX_HOTWORDS} words")
    parser.add_argument("--hotword-weight", type=float, default=DEFAULT_HOTWORD_WEIGHT, metavar="W",
                        help="boost per token of a listed word, times its own weight "
                             f"(default {DEFAULT_HOTWORD_WEIGHT:g}; 0: off)")


def add_no_speech_argument(parser, *, default: str = "keep") -> None:
    """``--no-speech skip``: voice activity detection first; a clip without speech gets an empty transcript."""
    parser.add_argument("--no-speech", default=default, choices=NO_SPEECH_MODES,
                        help="skip: run voice activity detection first and give a clip without speech an empty "
                             "transcript (no speech found) instead of what the model makes of the noise; keep: "
                             f"decode every clip as it is (default {default})")


def parse(parser, argv=None):
    """``parser.parse_args(argv)``; ``--verbose`` (when the parser has it) brings vLLM's log back."""
    args = parser.parse_args(argv)
    show_engine_log(getattr(args, "verbose", False))
    return args


def engine_options(args, **overrides) -> EngineOptions:
    """``EngineOptions`` from the engine flags ``args`` has (missing or ``None`` ones keep their defaults);
    the dtype passes the one rule (``checked_dtype``)."""
    given = {f.name: getattr(args, f.name) for f in fields(EngineOptions) if getattr(args, f.name, None) is not None}
    options = EngineOptions(**{**given, **overrides})
    checked_dtype(options.dtype)
    return options


def decoding_options(args) -> DecodingOptions:
    """``--decoding`` (with ``--hotwords``, and ``--no-speech`` when the parser has it) as ``DecodingOptions``;
    an unknown name is a ``CliError``."""
    try:
        options = parse_decoding(args.decoding)
    except ValueError as error:
        raise CliError(str(error)) from None
    options = with_hotwords(options, args)
    return replace(options, no_speech=args.no_speech) if hasattr(args, "no_speech") else options


def with_hotwords(options: DecodingOptions, args) -> DecodingOptions:
    """``options`` with the list and weight of ``--hotwords`` / ``--hotword-weight``; a bad list or weight
    is a ``CliError``. Whether the model can spell each word is checked by the engine before decoding."""
    try:
        weight = check_weight(args.hotword_weight, "--hotword-weight")
        hotwords = load_hotwords(args.hotwords)
    except HotwordError as error:
        raise CliError(str(error)) from None
    return replace(options, hotwords=hotwords, hotword_weight=weight) if hotwords else options


def open_engine(args, model: str | None = None):
    """The engine ``args`` asks for: a client of ``--server`` when given, else a local engine on ``model``
    (default ``model_spec(args)``) with ``engine_options(args)`` (see ``start_engine``)."""
    server = getattr(args, "server", None)
    if server:
        return start_engine(server=server)
    return start_engine(model or model_spec(args), engine_options(args))


def start_engine(model: str = DEFAULT_MODEL, options: EngineOptions = EngineOptions(), server: str | None = None):
    """A client of ``server`` (URL[,URL...]) when given, else a local engine on ``model`` with ``options``.
    Each known failure is a ``CliError`` that says the fix."""
    if server:
        try:
            return Engine.connect(server)
        except ServerError as error:
            raise CliError(str(error)) from None
    verify = VERIFY_COMMAND.format(model=model)
    try:
        return Engine(model, options)
    except (FileNotFoundError, ConversionError) as error:  # ModelNotFoundError is a FileNotFoundError
        raise CliError(f"{error}\nfix: --model takes 'trained', 'tiny', an official release (model.pth.tar, "
                       f"asr_encoder.pth.tar, cmvn.ark, {LLM_DIR}/), a converted directory or a hub id; "
                       f"convert once with: {CONVERT_COMMAND}; check a directory with: {verify}") from None
    except Exception as error:  # vLLM raises plain exceptions; name the likely fix, the log has the rest
        text = f"{type(error).__name__}: {error}"
        if OUT_OF_MEMORY.search(text):
            raise CliError(f"{text}\nfix: out of memory - lower --gpu-memory-utilization, --max-model-len or "
                           "--max-num-seqs, add --tensor-parallel-size N, use --dtype bfloat16 on GPU "
                           "(CPU: raise VLLM_CPU_KVCACHE_SPACE)") from None
        raise CliError(f"the vLLM engine did not start ({text}); run with --verbose to see its log. "
                       f"Check the setup with: {verify}") from None
