"""The command-line vocabulary every entry point shares, and its error -> exit-status rule.

It sits in the plugin so that the plugin's own commands (``fireredasr_vllm.convert``, ``.verify``,
``.serve``) can use it: the plugin may not import ``fireredasr_engine``. ``fireredasr_engine.cli`` builds
the engine arguments (and ``open_engine``) on top of it; eval, the workbench and the scripts use that one.

One spelling and one meaning per option:

* ``--model MODEL`` everywhere (``--model-dir`` / ``--model_dir`` too where the official scripts used that
  name: the transcribe CLI, verify);
* ``--dtype``: auto | float32 | bfloat16; float16 is refused with the reason (it breaks the Qwen2 LLM);
* ``--max-model-len``, ``--tensor-parallel-size`` (``-tp``), ``--data-parallel-size`` (``-dp``).

Exit status: 0 done, 1 some inputs failed (the command returns it), 2 nothing ran (``error: <one sentence
with the fix>`` on stderr), 130 Ctrl-C. ``@exit_codes(...)`` on ``main`` applies it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping

from fireredasr_vllm import DEFAULT_MODEL, MODEL_HELP

WEIGHT_DTYPES = ("float32", "bfloat16")  # what weights are written and run in (float16 breaks the LLM)
DTYPES = ("auto", *WEIGHT_DTYPES)  # what --dtype takes: auto picks one by the device
DTYPE_HELP = "auto = float32 (the official precision) on CPU, bfloat16 on GPUs; float16 is refused (it breaks the LLM)"
FLOAT16_REFUSED = ("--dtype float16 breaks the Qwen2 LLM (empty or garbage transcripts); "
                   "use --dtype bfloat16 on GPU or float32 (the official precision)")
VERIFY_COMMAND = "python -m fireredasr_vllm.verify --model {model}"
CONVERT_COMMAND = "python -m fireredasr_vllm.convert OFFICIAL_DIR OUT_DIR"
DEFAULT_MAX_MODEL_LEN = 1024  # prompt + output tokens; 30 s of audio is ~390 prompt tokens

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def vllm_flags(arguments: Mapping[str, object]) -> list[str]:
    """Engine arguments (``AsyncEngineArgs`` keywords) as vLLM's command-line flags: ``--name value``, booleans
    ``--name`` / ``--no-name``, lists and dicts as JSON; None left out (vLLM's default)."""
    flags = []
    for name, value in arguments.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            flags += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return flags


class CliError(Exception):
    """Nothing can run: the message (one sentence, with the fix) is all the user sees; exit status 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a note on what was kept (``raise Interrupted("... kept in DIR") from None``)."""


def exit_codes(*expected: type[BaseException], interrupted: str = "interrupted", traceback_flag: str | None = None):
    """Decorate ``main(argv) -> int``: a ``CliError`` or one of ``expected`` prints ``error: <message>``
    and returns 2; Ctrl-C prints ``interrupted`` (or the ``Interrupted`` note) and returns 130.
    Anything else is a bug and keeps its traceback; with ``traceback_flag`` (e.g. ``--verbose``) only when
    the command line has that flag, else it is one ``error:`` line that says to rerun with it (status 1)."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None, *args, **kwargs) -> int:
            try:
                return main(argv, *args, **kwargs)
            except (CliError, *expected) as error:
                print(f"error: {error}", file=sys.stderr)
                return EXIT_USAGE
            except KeyboardInterrupt as stop:  # the command's own finally blocks have closed its engine
                print(f"\n{str(stop) or interrupted}", file=sys.stderr)
                return EXIT_INTERRUPTED
            except Exception as error:
                if traceback_flag is None or traceback_flag in (sys.argv[1:] if argv is None else argv):
                    raise
                print(f"error: {type(error).__name__}: {error}\n(an unexpected failure: rerun with {traceback_flag} "
                      "for the traceback)", file=sys.stderr)
                return EXIT_FAILED
        return run
    return wrap


def add_model_argument(parser, *, official_alias: bool = False, required: bool = False,
                       default: str | None = None, help: str = MODEL_HELP) -> None:
    """``--model MODEL`` (``args.model``); ``official_alias`` adds ``--model-dir`` / ``--model_dir``.

    ``default=None`` lets ``model_spec`` fill in the default model and say so."""
    flags = ["--model", "--model-dir", "--model_dir"] if official_alias else ["--model"]
    parser.add_argument(*flags, dest="model", metavar="MODEL", required=required, default=default, help=help)


def model_spec(args, *, note: bool = True) -> str:
    """``--model``, or the default model with a note on stderr that it only knows the bundled sentences."""
    if args.model:
        return args.model
    if note:
        print(f"no --model given: using the embedded '{DEFAULT_MODEL}' model, which knows only the bundled "
              "sentences; pass --model for a real release", file=sys.stderr)
    return DEFAULT_MODEL


def add_dtype_argument(parser, *, default: str = "auto", allowed: tuple[str, ...] = DTYPES,
                       help: str = DTYPE_HELP) -> None:
    """``--dtype`` (checked by ``checked_dtype``, so that float16 gets its reason, not argparse's usage line)."""
    parser.add_argument("--dtype", default=default, metavar="{" + ",".join(allowed) + "}", help=help)


def checked_dtype(dtype: str, allowed: tuple[str, ...] = DTYPES) -> str:
    """The one dtype rule: auto, float32 or bfloat16 (or fewer: ``allowed``); float16 and anything else is a
    ``CliError`` saying why."""
    if dtype == "float16":
        raise CliError(FLOAT16_REFUSED)
    if dtype not in allowed:
        raise CliError(f"--dtype {dtype}: use {' or '.join(allowed)}")
    return dtype


def add_max_model_len_argument(parser) -> None:
    parser.add_argument("--max-model-len", type=int, default=DEFAULT_MAX_MODEL_LEN, metavar="TOKENS",
                        help=f"prompt + output tokens; 30 s of audio is ~390 prompt tokens (default "
                             f"{DEFAULT_MAX_MODEL_LEN})")


def add_parallel_arguments(parser, *, default: int | None = 1) -> None:
    """``--tensor-parallel-size`` / ``-tp`` and ``--data-parallel-size`` / ``-dp`` (vLLM's meanings)."""
    parser.add_argument("--tensor-parallel-size", "-tp", type=int, default=default, metavar="N",
                        help="vLLM tensor parallelism: one engine over N GPUs")
    parser.add_argument("--data-parallel-size", "-dp", type=int, default=default, metavar="N",
                        help="vLLM data parallelism: N engines (one per GPU), requests balanced over them")



def add_renamed_argument(parser, flag: str, *old_spellings: str, required: bool = False, **kwargs) -> None:
    """``flag`` as ``--help`` shows it, and ``old_spellings`` that still work but are not shown (scripts written
    for them keep running): e.g. ``add_renamed_argument(parser, "--output-dir", "--out", type=Path)``."""
    kwargs.setdefault("dest", flag.lstrip("-").replace("-", "_"))
    group = parser.add_mutually_exclusive_group(required=True) if required else parser
    group.add_argument(flag, **kwargs)
    same = {key: value for key, value in kwargs.items() if key in ("dest", "type", "action", "nargs", "metavar")}
    for spelling in old_spellings:
        group.add_argument(spelling, **same, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
