"""The one-way architecture (pyproject.toml [tool.importlinter], docs/architecture.md): import-linter's
contracts pass on the tree, and they do fail on a wrong-way import."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
