"""The one-way architecture (pyproject.toml [tool.importlinter], docs/architecture.md): import-linter's
contracts pass on the tree, and they do fail on a wrong-way import; the command table lists every flag."""

import argparse
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {  # the table's command -> (module, function that builds or parses, its argv; None: no argument)
    "fireredasr-transcribe": ("fireredasr_engine.transcribe", "build_parser", None),
    "python -m workbench": ("workbench.__main__", "build_parser", None),
    "python -m eval.run": ("eval.run", "parse_args", ["demo"]),
    "python -m eval.sweep": ("eval.sweep.cli", "parse_args", []),
    "python -m eval.report": ("eval.report", "main", ["x"]),
    "fireredasr-convert": ("fireredasr_vllm.convert", "build_parser", None),
    "fireredasr-verify": ("fireredasr_vllm.verify", "build_parser", None),
    "fireredasr-serve": ("fireredasr_vllm.serve", "build_parser", None),
    "python -m bench.gpu_benchmark": ("bench.gpu_benchmark", "parse_args", []),
    "python -m bench.profile_trace": ("bench.profile_trace", "main", []),
    "python -m bench.model_throughput": ("bench.model_throughput", "main", []),
    "python -m bench.trained_check": ("bench.trained_check", "main", []),
    "python -m testkit.train_tiny": ("testkit.train_tiny", "main", []),
    "scripts/figures.py": ("scripts.figures", "main", []),
    "scripts/screenshots.py": ("scripts.screenshots", "main", []),
    "scripts/load_test.py": ("scripts.load_test", "main", None),
}
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_contracts_are_kept():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_wrong_way_import_breaks_a_contract(tmp_path):
    for package in ("fireredasr_vllm", "fireredasr_engine", "eval", "workbench", "testkit"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.parquet", "*.flac",
                                                                                           "trained", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "fireredasr_vllm" / "wrong_way.py").write_text("from eval.metrics import score_utterance\n"
                                                               "from testkit.tiny import TinySpec\n")
    result = subprocess.run(LINT, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 kept, 1 broken" in result.stdout or "1 kept, 2 broken" in result.stdout
    assert "fireredasr_vllm.wrong_way -> eval.metrics" in result.stdout


class Parsed(Exception):
    """Carries the parser out of a ``main`` that builds and parses in one go."""


def command_parser(module: str, function: str, argv) -> argparse.ArgumentParser:
    build = getattr(importlib.import_module(module), function)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", lambda self, *args, **kwargs: (_ for _ in ()).throw(
            Parsed(self)))
        try:
            return build() if argv is None else build(argv)
        except Parsed as parsed:
            return parsed.args[0]


def flags(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """The option strings ``--help`` shows, and the hidden ones (subcommands' included)."""
    shown, hidden = set(), set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub_shown, sub_hidden = flags(sub)
                shown, hidden = shown | sub_shown, hidden | sub_hidden
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            (hidden if action.help == argparse.SUPPRESS else shown).update(action.option_strings)
    return shown, hidden


def test_the_command_table_lists_every_commands_flags():
    table = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        if match := re.match(r"\| `([^`]+)` \| (.*) \| (.*) \|$", line):
            table[match[1]] = (set(re.findall(r"-{1,2}[\w-]+", match[2])), set(re.findall(r"-{1,2}[\w-]+", match[3])))
    assert set(table) == set(COMMANDS)
    for command, spec in COMMANDS.items():
        assert flags(command_parser(*spec)) == table[command], command
