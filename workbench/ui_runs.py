"""Runs tab: the results under the results directory (run folders, sweep folders, benchmark JSON files, all
read through the results schema of eval/records/); open one, compare two of a kind."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from eval.plots import plot_sweep, save_figures
from eval.records import Run, is_benchmark, list_runs, load_benchmark, load_run, percentiles, read_json
from eval.report import compare_benchmarks, compare_runs, differing_utterances
from eval.run import format_summary, write_plots
from eval.sweep.report import compare_sweeps
from eval.sweep.store import SWEEP_MANIFEST, is_sweep, list_sweeps, read_sweep_table
from eval.tables import cell, error_label, markdown_table, rates_in_percent, results_table
from workbench.ui_alignment import differences_html, utterances_html

OVERVIEW_COLUMNS = ["run", "test_set", "model", "decoding", "ERROR", "n", "s", "d", "i", "ser %", "utterances",
                    "failed", "rtfx", "latency_p50"]  # ERROR: the error rate in %, named by its metric


def result_folders(results_dir: Path) -> list[Path]:
    """Run folders (as ``eval.records.list_runs``), sweep folders and benchmark JSON files (outside those
    folders), newest first."""
    sweeps = set(list_sweeps(results_dir))
    runs = set(list_runs(results_dir)) - sweeps
    folders = runs | sweeps
    benchmarks = {p for p in results_dir.rglob("*.json") if p.parent not in folders and is_benchmark(p)} \
        if results_dir.exists() else set()
    return sorted(folders | benchmarks, key=lambda p: p.stat().st_mtime, reverse=True)


def plot_files(path: Path, redraw: bool = False) -> list[str]:
    """``path/plots/*.png``, drawn (as ``eval.run`` / ``eval.sweep`` draw them) when missing or asked."""
    plots_dir = path / "plots"
    if redraw or not any(plots_dir.glob("*.png")):
        if is_sweep(path):
            save_figures(plot_sweep(read_sweep_table(path)), plots_dir)
        else:
            write_plots(load_run(path))
    return [str(p) for p in sorted(plots_dir.glob("*.png"))]


def gallery(path: Path) -> gr.Gallery:
    return gr.Gallery(plot_files(path), visible=True)


def headline(run: Run) -> str:
    s = run.summary
    if s is None:
        return f"### {run.name}: unfinished (no summary.json yet; {len(run.rows)} utterances recorded)"
    rtfx = f"{s.rtfx:.2f}" if s.rtfx else "-"
    biasing = "".join(f"  ·  {label} {cell(None if value is None else 100 * value)} %" for label, value in (
        ("B-CER", s.b_cer), ("U-CER", s.u_cer), ("hotword recall", s.hotword_recall))) if s.has_biasing else ""
    return (f"### {s.metric.upper()} {100 * s.error_rate:.2f} %  ·  N {s.n}  S {s.s}  D {s.d}  I {s.i}  ·  "
            f"RTFx {rtfx}  ·  {s.utterances} utterances, {s.failed} failed{biasing}\n\n"
            + format_summary(run).replace("\n", "  \n", 2))


def percent_label(table: pd.DataFrame) -> str:
    """``cer %`` / ``wer %`` (``error %`` when runs of both metrics are listed together)."""
    return error_label(table).lower()


def overview(results_dir: Path, folders: list[Path]) -> pd.DataFrame:
    runs = [load_run(p, rows=False) for p in folders if p.is_dir() and not is_sweep(p)]
    if not runs:
        return pd.DataFrame(columns=[c.replace("ERROR", "cer %") for c in OVERVIEW_COLUMNS])
    table = compare_runs(runs)
    columns = [c.replace("ERROR", percent_label(table)) for c in OVERVIEW_COLUMNS]
    table = rates_in_percent(table, percent_label)
    table["run"] = [str(r.path.relative_to(results_dir)) for r in runs]
    return table[columns].round(3)


def scored_ids(run: Run) -> set:
    """Ids of the utterances a run transcribed (failed ones carry no error counts)."""
    rows = run.rows
    if "error" in rows:
        rows = rows[rows["error"].map(lambda e: not (isinstance(e, str) and e))]
    return set(rows["id"])


def figures_on(run: Run, ids: set) -> dict:
    """Error counts and rates, and latency percentiles, of ``run`` on the utterances ``ids`` only."""
    rows = run.rows[run.rows["id"].isin(ids)]
    n, s, d, i = (int(rows[column].sum()) for column in ("n", "s", "d", "i"))
    return {"run": f"{run.name} (shared)", "metric": run.metric,
            "error_rate": (s + d + i) / n if n else 0.0, "n": n, "s": s, "d": d, "i": i,
            "ser": float((rows["errors"] > 0).mean()) if len(rows) else 0.0, "utterances": len(rows),
            **percentiles(rows["latency_s"].dropna(), "latency")}


def coverage_note(run_a: Run, run_b: Run) -> str:
    """Whether the two runs scored the same utterances; if not, how they differ and what is compared."""
    ids_a, ids_b = scored_ids(run_a), scored_ids(run_b)
    shared = ids_a & ids_b
    if ids_a == ids_b:
        return f"both runs scored the same {len(shared)} utterances"
    return (f"**the runs scored different utterances**: A {len(ids_a)}, B {len(ids_b)}, {len(shared)} in both "
            f"({len(ids_a - shared)} only in A, {len(ids_b - shared)} only in B). The whole-run rows are not "
            f"comparable; B − A is computed on the {len(shared)} shared utterances.")


def deltas(run_a: Run, run_b: Run) -> pd.DataFrame:
    """Both summaries and B − A. B − A compares like with like: on the utterances both runs scored (error
    figures and latency percentiles from their rows, with two "(shared)" rows) when those differ, else on the
    summaries."""
    table = compare_runs([run_a, run_b])
    shared = scored_ids(run_a) & scored_ids(run_b)
    if shared != scored_ids(run_a) or shared != scored_ids(run_b):
        table = pd.concat([table, pd.DataFrame([figures_on(run_a, shared), figures_on(run_b, shared)])],
                          ignore_index=True)
    table = rates_in_percent(table, percent_label)
    first, second = table.iloc[-2], table.iloc[-1]
    numeric = [column for column in table.select_dtypes("number").columns
               if pd.notna(first[column]) and pd.notna(second[column])]
    delta = {column: second[column] - first[column] for column in numeric}
    return pd.concat([table, pd.DataFrame([{"run": "B − A", **delta}])], ignore_index=True).round(3)


def sweep_summary(path: Path) -> str:
    table = read_sweep_table(path)
    return f"### sweep {path.name}: {len(table)} configurations\n\n" + markdown_table(results_table(table))


def benchmark_summary(path: Path) -> str:
    benchmark = load_benchmark(path)
    return (f"### benchmark {benchmark.name}: {len(benchmark.measurements)} measurements\n\n"
            + markdown_table(results_table(benchmark.table())))


def build_runs_tab(tab: gr.Tab, *, results_dir: Path) -> None:
    """Render inside ``tab``; the listing refreshes whenever the tab is opened."""
    gr.Markdown(f"Results under `{results_dir}`: run and sweep folders (written here and by `python -m eval.run`, "
                "`python -m eval.sweep`) and benchmark JSON files (`bench/` scripts).")
    table = gr.Dataframe(label="runs", interactive=False, wrap=True, elem_id="runs-table")
    with gr.Row():
        run_a = gr.Dropdown([], label="run A (open)", elem_id="runs-a", scale=3)
        run_b = gr.Dropdown([], label="run B (compare with A)", elem_id="runs-b", scale=3)
        refresh = gr.Button("Refresh", elem_id="runs-refresh", scale=1)
        compare = gr.Button("Compare A and B", variant="primary", elem_id="runs-compare", scale=1)
    summary = gr.Markdown(elem_id="runs-summary")
    comparison = gr.Dataframe(label="summary: A, B and B − A", interactive=False, visible=False,
                              elem_id="runs-deltas")
    plots = gr.Gallery(label="plots", columns=3, height="auto", object_fit="contain", elem_id="runs-plots")
    details = gr.HTML(elem_id="runs-details")
    with gr.Accordion("manifest", open=False):
        manifest = gr.JSON()

    def folder(choice: str | None) -> Path:
        path = (results_dir / choice) if choice else None
        if path is None or path not in result_folders(results_dir):
            raise gr.Error(f"{choice!r} is not a run folder under {results_dir}: press Refresh")
        return path

    def listing():
        folders = result_folders(results_dir)
        names = [str(p.relative_to(results_dir)) for p in folders]
        return (overview(results_dir, folders), gr.Dropdown(choices=names), gr.Dropdown(choices=names))

    def open_run(choice):
        if not choice:
            return "", gr.Dataframe(visible=False), gr.Gallery([], visible=False), "", {}
        path = folder(choice)
        if is_benchmark(path):
            return (benchmark_summary(path), gr.Dataframe(visible=False), gr.Gallery([], visible=False), "",
                    load_benchmark(path).meta)
        if is_sweep(path):
            return (sweep_summary(path), gr.Dataframe(visible=False), gallery(path), "",
                    read_json(path / SWEEP_MANIFEST))
        run = load_run(path)
        return (headline(run), gr.Dataframe(visible=False), gallery(path),
                utterances_html(run.rows, run.manifest, run.metric), run.manifest)

    def compare_two(choice_a, choice_b):
        if not choice_a or not choice_b:
            raise gr.Error("Pick two runs: A and B.")
        path_a, path_b = folder(choice_a), folder(choice_b)
        if is_sweep(path_a) and is_sweep(path_b):  # configurations side by side, as eval.report prints them
            manifests = {"A": read_json(path_a / SWEEP_MANIFEST), "B": read_json(path_b / SWEEP_MANIFEST)}
            return (f"### sweeps {choice_a}  vs  {choice_b}",
                    gr.Dataframe(compare_sweeps([path_a, path_b]).round(3), visible=True),
                    gr.Gallery([], visible=False), "", manifests)
        if is_benchmark(path_a) and is_benchmark(path_b):
            return (f"### benchmarks {choice_a}  vs  {choice_b}",
                    gr.Dataframe(compare_benchmarks([path_a, path_b]).round(3), visible=True),
                    gr.Gallery([], visible=False), "",
                    {"A": load_benchmark(path_a).meta, "B": load_benchmark(path_b).meta})
        if is_sweep(path_a) or is_sweep(path_b) or is_benchmark(path_a) or is_benchmark(path_b):
            raise gr.Error("A sweep compares with a sweep, a benchmark with a benchmark and a run with a run: "
                           "pick two of one kind.")
        run_a, run_b = load_run(path_a), load_run(path_b)
        set_a, set_b = (r.manifest.get("test_set", {}).get("name") for r in (run_a, run_b))
        if set_a != set_b:
            gr.Warning(f"different test sets ({set_a} vs {set_b}): only shared utterance ids are compared")
        metric = run_a.metric
        diff = differing_utterances(run_a, run_b)
        shared = len(set(run_a.rows["id"]) & set(run_b.rows["id"]))
        html = differences_html(diff, run_a.manifest, metric, (choice_a, choice_b), shared)
        return (f"### {choice_a}  vs  {choice_b}\n\n{coverage_note(run_a, run_b)}",
                gr.Dataframe(deltas(run_a, run_b), visible=True),
                gr.Gallery([], visible=False), html,
                {"A": run_a.manifest, "B": run_b.manifest})

    outputs = [summary, comparison, plots, details, manifest]
    for trigger in (tab.select, refresh.click):
        trigger(listing, None, [table, run_a, run_b])
    # one queue for both: a run picked just before "Compare" cannot overwrite the comparison afterwards
    run_a.change(open_run, run_a, outputs, concurrency_limit=1, concurrency_id="runs-view")
    compare.click(compare_two, [run_a, run_b], outputs, concurrency_limit=1, concurrency_id="runs-view")
