"""notebooks/*.ipynb: committed without outputs, and each runs top to bottom in a real Jupyter kernel.

The kernel is this interpreter (the .venv python), started from a kernel spec written for the test; the
notebooks run on the default (trained) model with their results under a temporary ``WORKBENCH_RESULTS``. Smaller sizes
are injected after the cell tagged ``parameters`` (papermill's convention), and a check cell appended to
each notebook asserts on the objects the notebook built.
"""

import os
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# 05_shared_server needs a running server: tests/test_scale_out.py executes it beside the app on one server.
NAMES = ["01_quickstart", "02_evaluate", "03_latency_throughput", "04_compare_runs", "05_shared_server", "06_live"]
CELL_TIMEOUT_S = 1800
# One engine per notebook at most: a single max_num_seqs value for the sweep.
PARAMETERS = {"02_evaluate": "LIMIT = 8",
              "03_latency_throughput": "LIMIT = 6\nMAX_NUM_SEQS = [4]\nCONCURRENCY = [1, 4]",
              "06_live": "SPEED = 4.0"}  # the recording in 14 s instead of 57
CHECKS = {
    "01_quickstart": """
assert result.ok and result.output_tokens > 0 and result.duration_s > 0
assert [t.id for t in batch] == [clip.stem for clip in CLIPS[:8]] and all(t.ok for t in batch)
import jiwer
assert jiwer.cer([REFERENCES[t.id] for t in batch], [t.text for t in batch]) < 0.10  # it really transcribes
assert from_numpy.ok and from_torch.ok and from_numpy.text == from_torch.text
assert len(concurrent) == 8 and all(t.ok and t.output_tokens > 0 for t in concurrent)
assert [t.ok for t in outputs] == [True] * len(decodings)
assert [row["processor_cache_hits"] for row in cache_rows] == [0, 1]
assert page_status == 200 and url.startswith("http://127.0.0.1:")
assert len(engine_processes) == 1  # the page runs on the notebook's engine: no second model
""",
    "02_evaluate": """
assert list(runs) == DECODINGS
for run in runs.values():
    assert (run.path / "summary.json").exists() and run.path.parent == RESULTS
    assert run.summary.utterances == len(run.rows) == LIMIT and run.summary.failed == 0
assert list(table["decoding"]) == DECODINGS and table["n"].gt(0).all()
assert runs["greedy"].summary.error_rate < 0.10
assert list(hotword_table["hotword_weight"]) == HOTWORD_WEIGHTS and hotword_table["b_cer"].notna().all()
assert hotword_table["u_cer"].notna().all() and hotword_table["hotword_recall"].notna().all()
assert baseline_005.text != "我想订一张去上海的火车票" and fixed_005.text == "我想订一张去上海的火车票"
""",
    "03_latency_throughput": """
assert (Path(config.output_dir) / "sweep.parquet").exists() and Path(config.output_dir).parent == RESULTS
assert set(table["mode"]) == {"offline", "online"} and set(table["batch"]) == set(MAX_NUM_SEQS)
assert sorted(online["concurrency"]) == CONCURRENCY
assert table["failed"].eq(0).all() and table["utts_per_s"].gt(0).all() and table["rtfx"].gt(0).all()
""",
    "06_live": """
assert len(latencies) == len(sentences) and latencies["final_s"].notna().all()
assert latencies["first_partial_s"].notna().sum() >= len(sentences) // 2
assert live_cer <= offline_cer + 0.02, (live_cer, offline_cer)
""",
    "04_compare_runs": """
assert "vllm" not in sys.modules and "fireredasr_engine.engine" not in sys.modules  # no engine in this notebook
assert [run_a.name, run_b.name] == [RUN_A, RUN_B]
""",
}


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def outputs(notebook, mime: str) -> list[str]:
    """Every ``mime`` representation the executed cells displayed."""
    return [output["data"][mime] for cell in code_cells(notebook) for output in cell.outputs
            if mime in output.get("data", {})]


def printed(notebook) -> str:
    return "".join(output.get("text", "") for cell in code_cells(notebook) for output in cell.outputs
                   if output.output_type == "stream" and output.name == "stdout")


def with_test_cells(notebook, name: str):
    """The notebook with the test's parameters after its ``parameters`` cell and the check cell at the end."""
    if name in PARAMETERS:
        index = next(k for k, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
        notebook.cells.insert(index + 1, new_code_cell(PARAMETERS[name]))
    check = f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable\n" + CHECKS[name]
    notebook.cells.append(new_code_cell(check))
    return notebook


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernel spec that starts this interpreter, whatever other python3 specs the machine has."""
    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "python3")
    return kernels


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def run_notebook(kernel_dir, results_dir):
    """Execute a notebook (once per module) and return it with its outputs."""
    executed = {}

    def run(name: str):
        if name not in executed:
            notebook = with_test_cells(read(name), name)
            manager = KernelManager(kernel_name="python3",
                                    kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
            assert manager.kernel_spec.argv[0] == sys.executable
            client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT_S,
                                    resources={"metadata": {"path": str(NOTEBOOKS)}})
            try:
                client.execute(env={**os.environ, "WORKBENCH_RESULTS": str(results_dir)})
            finally:  # a km we pass in is not shut down by nbclient: stop the kernel (and its engine)
                if manager.has_kernel:
                    manager.shutdown_kernel()  # graceful: the engine exits with it
            executed[name] = notebook
        return executed[name]

    return run


def test_every_notebook_is_tested():
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert cells and all(not cell.outputs and cell.execution_count is None for cell in cells)
    assert notebook.metadata.kernelspec.name == "python3"
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in cells) == 1


def test_quickstart(run_notebook):
    notebook = run_notebook("01_quickstart")
    tables = outputs(notebook, "text/html")
    assert any("processor_cache_hits" in table for table in tables)
    assert any("t1.0-p0.9" in table and "official" in table for table in tables)
    assert "same transcripts as the batch:" in printed(notebook)
    assert "answers HTTP 200; vLLM engine processes of this kernel: 1" in printed(notebook)


def test_evaluate(run_notebook, results_dir):
    notebook = run_notebook("02_evaluate")
    assert any("CER %" in table and "official" in table for table in outputs(notebook, "text/html"))
    assert len(outputs(notebook, "image/png")) == 3  # errors per utterance, CER by duration, B-CER vs U-CER
    assert any("B-CER %" in table for table in outputs(notebook, "text/html"))
    assert re.search(r"^REF: .+\nHYP: .+", printed(notebook), re.MULTILINE)
    assert {path.name for path in results_dir.iterdir()} >= {"demo__trained__greedy", "demo__trained__official"}


def test_latency_throughput(run_notebook):
    notebook = run_notebook("03_latency_throughput")
    assert len(outputs(notebook, "image/png")) == 2  # latency vs throughput (one engine), RTFx vs max_num_seqs
    assert any("utts/s" in table and "p50 latency (s)" in table for table in outputs(notebook, "text/html"))


def test_compare_runs_without_engine(run_notebook, results_dir):
    run_notebook("02_evaluate")  # writes the runs 04 reads
    notebook = run_notebook("04_compare_runs")
    a, b = (pd.read_parquet(results_dir / run / "utterances.parquet").set_index("id")
            for run in ("demo__trained__greedy", "demo__trained__official"))
    differing = int((a["hyp_norm"] != b.loc[a.index, "hyp_norm"]).sum())
    assert f"{differing} of {len(a)} utterances differ" in printed(notebook)
    assert any("demo__trained__official" in table and "CER %" in table for table in outputs(notebook, "text/html"))


def test_live(run_notebook):
    notebook = run_notebook("06_live")
    assert len(outputs(notebook, "image/png")) == 1  # when the events came, latency per sentence
    assert re.search(r"^p50: first partial \d+\.\d\d s, final \d+\.\d\d s$", printed(notebook), re.MULTILINE)
    assert "Final(segment=Segment(" in printed(notebook)
