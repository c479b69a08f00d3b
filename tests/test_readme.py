"""README.md's Python snippet, extracted as written and run as a user's script (no __main__ guard)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_the_engine_snippet():
    assert any('Engine("trained")' in snippet for snippet in python_snippets())


@pytest.mark.parametrize("snippet", [s for s in python_snippets() if "Engine(" in s])
def test_snippet_runs_as_a_script(snippet, tmp_path, demo_clips, references):
    """Saved as my_script.py and run from the repository root, as a new user would."""
    script = tmp_path / "my_script.py"
    script.write_text(snippet, encoding="utf-8")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "bootstrapping phase" not in done.stderr
    first, *batch = done.stdout.splitlines()
    assert first == references["demo_000"]  # the trained model says the bundled clips' sentences
    assert [line.split(" ", 1)[0] for line in batch] == [clip.stem for clip in demo_clips[:4]]
    said = [references[clip.stem] for clip in demo_clips[:4]]
    assert sum(line.split(" ", 1)[1] == text for line, text in zip(batch, said)) >= 3
    assert not re.search(r"\b(INFO|WARNING)\b", done.stdout + done.stderr), "vLLM's log is shown by default"
