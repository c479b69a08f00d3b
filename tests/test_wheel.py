"""Installed, not only cloned: a wheel built from this checkout, installed into a fresh virtual environment,
runs the demo evaluation, transcribes a bundled clip, loads ``demo-heldout`` and builds the app from a folder
outside the checkout, importing nothing from the checkout.

The new environment reuses the already-installed dependencies: a ``.pth`` file names this interpreter's
site-packages (a bare path line: the editable install's finder there is not run), and the wheel goes in with
``--no-deps``; the wheel's own copy comes first on ``sys.path``."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fireredasr_vllm", "fireredasr_engine", "eval", "workbench", "testkit")

# Run by the installed interpreter, on one engine (an engine start is most of the cost): the demo evaluation
# (eval.run's evaluate(), what `python -m eval.run demo` runs), demo-heldout, one bundled clip, then the app's page.
INSTALLED_SCRIPT = r"""
import json, sys, urllib.request
import eval, fireredasr_engine, fireredasr_vllm, testkit.tiny, workbench
from eval.bundled import DEMO_CLIPS
from eval.run import evaluate
from fireredasr_engine import Engine
from workbench.app import AppOptions, build_app, launch

modules = [eval, fireredasr_engine, fireredasr_vllm, testkit.tiny, workbench]
with Engine("trained") as engine:
    demo = evaluate("demo", engine=engine, limit=3, output_dir="demo-run", progress=False)
    heldout = evaluate("demo-heldout", engine=engine, limit=2, output_dir="heldout-run", progress=False)
    clip = engine.transcribe(DEMO_CLIPS / "demo_000.flac")
    options = AppOptions(results_dir=sys.argv[1])
    app = build_app(engine, options)
    _, url, _ = launch(app, options, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    with urllib.request.urlopen(url, timeout=60) as page:
        status = page.status
    app.close()
print(json.dumps({"files": [m.__file__ for m in modules], "clip_path": str(DEMO_CLIPS), "clip": clip.text,
                  "demo": demo.summary.error_rate, "heldout": len(heldout.rows),
                  "heard": heldout.rows["hypothesis"].tolist(), "page": status}, ensure_ascii=False))
"""


def checkout_files() -> list[Path]:
    """What a clone of this checkout holds now: tracked and untracked files that git does not ignore."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    return [Path(name) for name in listed if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout (an in-tree build would reuse a stale ``build/lib`` and
    write into the shared working tree)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(root / "dist")], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # setuptools warns (BuildBackendWarning, ...) about a data folder that is not packaged
    assert not re.search(r"\w+Warning\b", built.stdout + built.stderr), built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; its folder."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "installed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", str(wheel)], capture_output=True,
                               text=True)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return folder


@pytest.fixture
def run_installed(venv, tmp_path):
    """``run_installed(*args)``: the installed interpreter in an empty folder outside the checkout."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONIOENCODING="utf-8", FIREREDASR_VLLM_CACHE=str(tmp_path / "cache"),
               HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"))
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "python"), *args], cwd=work, capture_output=True, text=True,
                              encoding="utf-8", env=env, timeout=900)

    run.work = work
    return run


def test_wheel_holds_every_file_of_the_packages(wheel):
    """The trained model, verify's check clip, the bundled sets and every module: all that the checkout holds
    under the packages."""
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {name.as_posix() for name in checkout_files() if name.parts[0] in PACKAGES}
    assert expected - shipped == set()
    assert {"fireredasr_vllm/trained/model.pth.tar", "fireredasr_vllm/data/check_clip.flac",
            "eval/demo/heldout/test-00000-of-00001.parquet", "eval/demo/clips/demo_000.flac"} <= shipped
    assert not [name for name in shipped if name.startswith(("tests/", "notebooks/", "bench/"))]


def test_eval_run_transcription_and_app_from_the_installed_package(run_installed, venv, references):
    command = run_installed("-m", "eval.run", "--help")  # the command resolves to the installed module
    assert command.returncode == 0 and "usage:" in command.stdout, command.stderr[-3000:]
    done = run_installed("-c", INSTALLED_SCRIPT, "app-results")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    site = str(venv.resolve())
    assert all(file.startswith(site) for file in seen["files"] + [seen["clip_path"]]), seen
    with open(run_installed.work / "demo-run" / "utterances.csv", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert [row["id"] for row in rows] == ["demo_000", "demo_001", "demo_002"]
    assert [row["hypothesis"] for row in rows] == [references[row["id"]] for row in rows]
    assert seen["demo"] == 0.0
    assert seen["clip"] == references["demo_000"]
    assert seen["heldout"] == 2 and all(seen["heard"])  # transcribed (the model never heard these: its CER is high)
    assert seen["page"] == 200
