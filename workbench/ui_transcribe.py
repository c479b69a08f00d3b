"""Transcribe tab: upload files or record, decode through the shared engine, copy or download the results."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from workbench.options import DecodingOptions, Transcript
from workbench.ui_decoding import decoding_controls, decoding_options

COLUMNS = ["file", "transcript", "duration_s", "latency_s", "rtf", "tokens", "error"]
COLUMN_WIDTHS = ["14%", "40%", "9%", "9%", "7%", "7%", "14%"]
EXPORT_MAX_AGE_S = 3600.0
EXAMPLE_CLIPS = 5
MB = 1 << 20  # Gradio's unit for max_file_size


def long_audio_available(engine) -> bool:
    """True once workbench/long_audio.py exists and the facade takes ``long_audio=``."""
    return (importlib.util.find_spec("workbench.long_audio") is not None
            and "long_audio" in inspect.signature(engine.transcribe_async).parameters)


def example_clips(count: int = EXAMPLE_CLIPS) -> list[list[list[str]]]:
    """The first bundled demo clips, one example each (the files input takes a list of paths)."""
    from eval.synth import DEMO_DIR

    return [[[str(path)]] for path in sorted((DEMO_DIR / "clips").glob("*.flac"))[:count]]


def size_error(path: Path, max_upload_mb: float) -> str | None:
    megabytes = path.stat().st_size / MB
    if megabytes > max_upload_mb:
        return f"{path.name}: {megabytes:.1f} MB is larger than the {max_upload_mb:g} MB upload limit (--max-upload-mb)"
    return None


def result_row(transcript: Transcript) -> dict:
    return {"file": transcript.id, "transcript": transcript.text, "duration_s": round(transcript.duration_s, 2),
            "latency_s": round(transcript.latency_s, 3) if transcript.ok else None,
            "rtf": round(transcript.rtf, 3) if transcript.ok else None,
            "tokens": transcript.output_tokens if transcript.ok else None, "error": transcript.error or ""}


def results_table(transcripts: list[Transcript]) -> pd.DataFrame:
    return pd.DataFrame([result_row(t) for t in transcripts], columns=COLUMNS)


def plain_text(transcripts: list[Transcript]) -> str:
    """One ``file<TAB>transcript`` line per successful file, for the copy button."""
    return "\n".join(f"{t.id}\t{t.text}" for t in transcripts if t.ok)


def prune(directory: Path, max_age_s: float = EXPORT_MAX_AGE_S) -> None:
    """Delete exports older than ``max_age_s`` (the page may stay open all day)."""
    cutoff = time.time() - max_age_s
    for path in directory.glob("transcripts-*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def write_exports(transcripts: list[Transcript], options: DecodingOptions, directory: Path) -> list[str]:
    """CSV (the table) and JSON (full records with token ids and the decoding options)."""
    directory.mkdir(parents=True, exist_ok=True)
    prune(directory)
    stem = directory / f"transcripts-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    results_table(transcripts).to_csv(stem.with_suffix(".csv"), index=False)
    record = {"decoding": options.to_dict(), "results": [t.to_dict() for t in transcripts]}
    stem.with_suffix(".json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    return [str(stem.with_suffix(".csv")), str(stem.with_suffix(".json"))]


def build_transcribe_tab(engine, *, max_upload_mb: float, export_dir: Path, concurrency: int) -> None:
    """Render the tab's components inside the current ``gr.Tab``."""
    with gr.Row():
        files = gr.File(file_count="multiple", label="audio files (wav, flac, mp3, ogg, m4a, ...; any rate)",
                        elem_id="transcribe-files")
        recording = gr.Audio(sources=["microphone"], type="filepath", label="or record")
    gr.Examples(example_clips(), inputs=[files], label="or pick a bundled demo clip (texts: eval/demo/sentences.txt)",
                elem_id="transcribe-examples")
    long_audio = gr.Checkbox(False, label="long audio (split at pauses beyond the model's limit)",
                             visible=long_audio_available(engine))
    controls = decoding_controls("transcribe")
    button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-button")
    table = gr.Dataframe(headers=COLUMNS, label="results", wrap=True, interactive=False,
                         column_widths=COLUMN_WIDTHS, elem_id="transcribe-results")
    with gr.Row():
        text = gr.Textbox(label="transcripts", lines=4, buttons=["copy"], interactive=False, scale=3,
                          elem_id="transcribe-text")
        downloads = gr.File(label="download (CSV, JSON)", file_count="multiple", interactive=False, scale=1,
                            elem_id="transcribe-downloads")

    async def transcribe(paths, recorded, long_mode, *values, progress=gr.Progress()):
        items = [Path(p) for p in paths or []] + ([Path(recorded)] if recorded else [])
        if not items:
            raise gr.Error("No audio: upload one or more files or record from the microphone.")
        options = decoding_options(*values)
        extra = {"long_audio": True} if long_mode else {}

        async def one(path: Path) -> Transcript:
            try:
                too_big = size_error(path, max_upload_mb)
                if too_big:
                    return Transcript(id=path.name, error=too_big)
                return await engine.transcribe_async(str(path), options, id=path.name, **extra)
            except Exception as error:  # keep the other files' results
                return Transcript(id=path.name, error=f"{path.name}: {type(error).__name__}: {error}")

        tasks = [asyncio.ensure_future(one(path)) for path in items]
        progress((0, len(tasks)), desc="transcribing", unit="files")
        for done, finished in enumerate(asyncio.as_completed(tasks), start=1):
            await finished
            progress((done, len(tasks)), desc="transcribing", unit="files")
        transcripts = [task.result() for task in tasks]
        for failed in (t for t in transcripts if not t.ok):
            gr.Warning(failed.error)
        return results_table(transcripts), plain_text(transcripts), write_exports(transcripts, options, export_dir)

    button.click(transcribe, [files, recording, long_audio, *controls.inputs], [table, text, downloads],
                 concurrency_limit=concurrency)
