"""fireredasr_engine/cli.py and fireredasr_vllm/cli_args.py: one vocabulary for every entry point (same flags,
same help, one dtype rule) and one error -> exit status rule. Nothing here starts an engine."""

import argparse
from dataclasses import replace

import pytest

from eval import run as eval_run
from fireredasr_engine import EngineOptions, parse_decoding
from fireredasr_engine import transcribe
from fireredasr_engine.cli import (
    DTYPES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CliError, Interrupted, add_decoding_argument, add_engine_arguments,
    add_model_argument, add_no_speech_argument, decoding_options, engine_options, exit_codes, model_spec)
from fireredasr_vllm import DEFAULT_MODEL, convert, serve, verify
from workbench import __main__ as workbench_main

ENGINE_ENTRY_POINTS = {  # prog -> parser of every entry point that builds an engine
    "fireredasr-transcribe": transcribe.build_parser,
    "python -m workbench": workbench_main.build_parser,
}
PLUGIN_ENTRY_POINTS = {  # the plugin's commands: same names, their own help (what they accept)
    "python -m fireredasr_vllm.verify": verify.build_parser,
    "python -m fireredasr_vllm.convert": convert.build_parser,
    "fireredasr-serve": serve.build_parser,
}
SHARED = ("--model", "--dtype", "--max-model-len", "--max-num-seqs", "--tensor-parallel-size",
          "--data-parallel-size", "--gpu-memory-utilization", "--verbose", "--server", "--decoding")


def shared_flags(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    """Each shared flag's spelling: dest, option strings, metavar, type, default, help."""
    return {action.option_strings[0]: (action.dest, tuple(action.option_strings), action.metavar, action.type,
                                       action.default, action.help)
            for action in parser._actions if action.option_strings and action.option_strings[0] in SHARED}


def test_every_entry_point_spells_and_explains_a_shared_flag_the_same():
    first: dict[str, tuple[str, tuple]] = {}
    for prog, build in ENGINE_ENTRY_POINTS.items():
        parser = build()
        assert parser.prog == prog
        for flag, spelling in shared_flags(parser).items():
            where, expected = first.setdefault(flag, (prog, spelling))
            assert spelling == expected, f"{flag}: {prog} differs from {where}"
    assert {"--model", "--dtype", "--tensor-parallel-size", "--verbose", "--server"} <= set(first)
    for prog, build in PLUGIN_ENTRY_POINTS.items():
        parser = build()
        assert parser.prog == prog
        for flag, spelling in shared_flags(parser).items():
            dest, flags = spelling[:2]
            assert (dest, flags[0]) == (first[flag][1][0], first[flag][1][1][0]), f"{flag}: {prog} spells it otherwise"
            assert set(flags) <= set(first[flag][1][1]), f"{flag}: {prog} has an alias no other entry point has"


def test_renamed_flags_keep_their_old_spelling_out_of_help():
    parser = workbench_main.build_parser()
    assert "--max-in-flight" in parser.format_help() and "--concurrency" not in parser.format_help()
    assert parser.parse_args(["--max-in-flight", "4"]).max_in_flight == 4
    assert parser.parse_args(["--concurrency", "4"]).max_in_flight == 4  # the old spelling, for scripts
    assert parser.parse_args([]).max_in_flight == 16


def test_model_dir_stays_an_alias_where_the_official_scripts_had_it():
    for build in (transcribe.build_parser, verify.build_parser):
        assert build().parse_args(["--model_dir", "m"]).model == "m"
        assert build().parse_args(["--model-dir", "m"]).model == "m"


def test_engine_flags_build_engine_options():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    options = engine_options(parser.parse_args(["--dtype", "bfloat16", "-tp", "2", "--max-num-seqs", "8"]))
    assert options == EngineOptions(dtype="bfloat16", tensor_parallel_size=2, max_num_seqs=8)
    assert engine_options(parser.parse_args([])) == EngineOptions()
    few = argparse.Namespace(data_parallel_size=None, max_num_seqs=4)  # a parser with some of the flags only
    assert engine_options(few, seed=3) == EngineOptions(max_num_seqs=4, seed=3)


@pytest.mark.parametrize("dtype, says", [("float16", "breaks the Qwen2 LLM"),
                                         ("fp8", "use auto or float32 or bfloat16")])
def test_one_dtype_rule(dtype, says):
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    with pytest.raises(CliError, match=says):
        engine_options(parser.parse_args(["--dtype", dtype]))
    assert set(DTYPES) == {"auto", "float32", "bfloat16"}


def test_convert_refuses_float16_and_auto_in_one_sentence(tmp_path, capsys):
    for dtype in ("float16", "auto"):
        assert convert.main([str(tmp_path), str(tmp_path / "out"), "--dtype", dtype]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("error: --dtype") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_no_model_means_the_default_model_and_says_so(capsys):
    parser = argparse.ArgumentParser()
    add_model_argument(parser)
    assert model_spec(parser.parse_args([])) == DEFAULT_MODEL
    assert "no --model given" in capsys.readouterr().err
    assert model_spec(parser.parse_args(["--model", "x"])) == "x"
    assert capsys.readouterr().err == ""


def test_decoding_names_and_a_bad_one():
    parser = argparse.ArgumentParser()
    add_decoding_argument(parser)
    assert decoding_options(parser.parse_args(["--decoding", "beam3"])).beam_size == 3
    with pytest.raises(CliError, match="unknown decoding 'beam'"):
        decoding_options(parser.parse_args(["--decoding", "beam"]))


def test_no_speech_flag_sets_the_gate_and_defaults_per_entry_point(capsys):
    parser = argparse.ArgumentParser()
    add_decoding_argument(parser)
    assert decoding_options(parser.parse_args([])).no_speech == "keep"  # a parser without the flag: the default
    add_no_speech_argument(parser)
    assert decoding_options(parser.parse_args(["--decoding", "beam3", "--no-speech", "skip"])) == \
        replace(parse_decoding("beam3"), no_speech="skip")
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-speech", "drop"])
    assert "--no-speech: invalid choice: 'drop'" in capsys.readouterr().err
    assert decoding_options(eval_run.parse_args(["demo"])).no_speech == "keep"  # scores comparable with the official
    assert transcribe.official_decoding_options(transcribe.build_parser().parse_args(["a.wav"])).no_speech == "keep"
    assert transcribe.official_decoding_options(
        transcribe.build_parser().parse_args(["a.wav", "--no-speech", "skip"])).no_speech == "skip"


def test_exit_codes(capsys):
    @exit_codes(LookupError, interrupted="interrupted: rows kept")
    def main(error=None) -> int:
        if error is not None:
            raise error
        return 0

    assert main() == 0
    assert main(CliError("no input: give audio files")) == EXIT_USAGE
    assert capsys.readouterr().err == "error: no input: give audio files\n"
    assert main(KeyError("k")) == EXIT_USAGE  # one of the expected errors
    assert capsys.readouterr().err == "error: 'k'\n"
    assert main(KeyboardInterrupt()) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "\ninterrupted: rows kept\n"
    assert main(Interrupted("interrupted: 3 of 9 points are in out/")) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "\ninterrupted: 3 of 9 points are in out/\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        main(ZeroDivisionError())


def test_a_bug_is_one_line_that_points_to_verbose_which_shows_its_traceback(capsys):
    @exit_codes(LookupError, traceback_flag="--verbose")
    def main(argv) -> int:
        if "--missing" in argv:
            raise KeyError("no such set")  # the user's mistake: one line, status 2
        raise ZeroDivisionError("division by zero in the scorer")  # a bug

    assert main(["--missing"]) == EXIT_USAGE and capsys.readouterr().err == "error: 'no such set'\n"
    assert main([]) == EXIT_FAILED
    assert capsys.readouterr().err == ("error: ZeroDivisionError: division by zero in the scorer\n"
                                       "(an unexpected failure: rerun with --verbose for the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        main(["--verbose"])



def test_serve_refuses_float16_with_the_reason_before_starting_anything(capsys):
    assert serve.main(["--dtype", "float16"]) == EXIT_USAGE
    assert "--dtype float16 breaks the Qwen2 LLM" in capsys.readouterr().err
