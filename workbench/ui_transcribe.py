"""Transcribe tab: upload files or record, decode through the shared engine, copy or download the results.

Every file gets a row; the ``message`` column says why a file failed (one sentence, worded for this page) or
that no speech was found in it (the "skip clips without speech" box, on by default, or long-audio mode: voice
activity detection first, so silence and noise give no text). Long-audio results also get a segment table and
SRT/VTT files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import av
import gradio as gr
import pandas as pd
import soundfile as sf

from eval.bundled import DEMO_CLIPS
from fireredasr_vllm.audio import UNKNOWN_FRAMES
from fireredasr_engine.options import NO_SPEECH, DecodingOptions, Transcript
from fireredasr_engine.subtitles import FORMATS, write_subtitles
from workbench.ui_decoding import ControlError, decoding_controls, decoding_from_controls

COLUMNS = ["file", "transcript", "duration_s", "latency_s", "rtf", "tokens", "message"]
COLUMN_WIDTHS = ["14%", "40%", "9%", "9%", "7%", "7%", "14%"]
SEGMENT_COLUMNS = ["file", "start_s", "end_s", "text"]
EXPORT_MAX_AGE_S = 3600.0
EXAMPLE_CLIPS = 5
MB = 1 << 20  # Gradio's unit for max_file_size
LONG_AUDIO_LABEL = "long audio"
NO_SPEECH_LABEL = "skip clips without speech"
TOAST_SECONDS = 8  # short: a toast must not sit over the next batch's results
CLEAR_TOASTS_JS = "(...args) => { document.querySelectorAll('.toast-close').forEach(b => b.click()); return args; }"
API_HINT = re.compile(r"\s*\(long_audio=True\s*/\s*--long-audio\)")  # how scripts and the CLI turn it on
PAGE_HINT = f' (tick "{LONG_AUDIO_LABEL}" above)'
# Last line of defence for messages from deeper layers: object reprs, byte dumps and addresses never reach the page
INTERNALS = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>|\bb'(?:[^'\\]|\\.)*'|\bb\"(?:[^\"\\]|\\.)*\""
                       r"|0x[0-9a-fA-F]{4,}")
log = logging.getLogger(__name__)


def example_clips(count: int = EXAMPLE_CLIPS) -> list[list[list[str]]]:
    """The first bundled demo clips, one example each (the files input takes a list of paths)."""
    return [[[str(path)]] for path in sorted(DEMO_CLIPS.glob("*.flac"))[:count]]


def size_error(path: Path, max_upload_mb: float) -> str | None:
    megabytes = path.stat().st_size / MB
    if megabytes > max_upload_mb:
        return f"{path.name}: {megabytes:.1f} MB is larger than the {max_upload_mb:g} MB upload limit (--max-upload-mb)"
    return None


def file_duration(path: Path) -> float:
    """The duration the file's header states, 0.0 when it states none (so a refused file shows its length)."""
    try:
        info = sf.info(str(path))
        return info.duration if 0 < info.frames < UNKNOWN_FRAMES else 0.0
    except (sf.LibsndfileError, RuntimeError):
        pass
    try:
        with av.open(str(path)) as container:
            return container.duration / av.time_base if container.duration else 0.0
    except (av.FFmpegError, ValueError, OSError):
        return 0.0


def page_error(error: str) -> str:
    """An error as a page user acts on it: the checkbox instead of the API flag, no internals."""
    return INTERNALS.sub("…", API_HINT.sub(PAGE_HINT, error))


def message(transcript: Transcript, long_mode: bool) -> str:
    """What the message column says: the error as a page user acts on it, or why the transcript is empty."""
    if not transcript.ok:
        return page_error(transcript.error)
    if transcript.text:
        return ""
    if transcript.finish_reason == NO_SPEECH:
        why = "long-audio mode transcribes only speech" if long_mode else f'"{NO_SPEECH_LABEL}" is ticked'
        return f"no speech found in {transcript.duration_s:.1f} s ({why})"
    return "no speech recognised (empty transcript)"


def result_row(transcript: Transcript, long_mode: bool = False) -> dict:
    return {"file": transcript.id, "transcript": transcript.text, "duration_s": round(transcript.duration_s, 2),
            "latency_s": round(transcript.latency_s, 3) if transcript.ok else None,
            "rtf": round(transcript.rtf, 3) if transcript.ok else None,
            "tokens": transcript.output_tokens if transcript.ok else None,
            "message": message(transcript, long_mode)}


def results_table(transcripts: list[Transcript], long_mode: bool = False) -> pd.DataFrame:
    return pd.DataFrame([result_row(t, long_mode) for t in transcripts], columns=COLUMNS)


def segments_table(transcripts: list[Transcript]) -> pd.DataFrame:
    """One row per timed segment of every transcript."""
    return pd.DataFrame([{"file": t.id, "start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2), "text": s.text}
                         for t in transcripts for s in t.segments], columns=SEGMENT_COLUMNS)


def plain_text(transcripts: list[Transcript]) -> str:
    """One ``file<TAB>transcript`` line per successful file, for the copy button."""
    return "\n".join(f"{t.id}\t{t.text}" for t in transcripts if t.ok)


def prune(directory: Path, max_age_s: float = EXPORT_MAX_AGE_S) -> None:
    """Delete export folders older than ``max_age_s`` (the page may stay open all day)."""
    cutoff = time.time() - max_age_s
    for path in directory.glob("transcripts-*"):
        if path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)


def write_exports(transcripts: list[Transcript], options: DecodingOptions, directory: Path,
                  long_mode: bool = False) -> list[str]:
    """One folder per batch: CSV (the table), JSON (full records with token ids, segments and the decoding
    options) and, in long-audio mode, an SRT and a VTT file for every transcribed input."""
    directory.mkdir(parents=True, exist_ok=True)
    prune(directory)
    batch = directory / f"transcripts-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    batch.mkdir()
    files = [batch / "transcripts.csv", batch / "transcripts.json"]
    results_table(transcripts, long_mode).to_csv(files[0], index=False)
    record = {"decoding": options.to_dict(), "results": [t.to_dict() for t in transcripts]}
    files[1].write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    if long_mode:
        for transcript in (t for t in transcripts if t.ok and t.segments):
            files += [write_subtitles(batch / f"{Path(transcript.id).stem}.{fmt}", transcript.segments)
                      for fmt in FORMATS]
    return [str(path) for path in files]


def failure_toast(transcripts: list[Transcript]) -> None:
    """One short toast per batch: the first failure, and how many more the table lists."""
    failed = [t for t in transcripts if not t.ok]
    if failed:
        more = f" (and {len(failed) - 1} more: see the message column)" if len(failed) > 1 else ""
        gr.Warning(page_error(failed[0].error) + more, duration=TOAST_SECONDS)


def build_transcribe_tab(engine, *, max_upload_mb: float, export_dir: Path, concurrency: int) -> None:
    """Render the tab's components inside the current ``gr.Tab``."""
    with gr.Row():
        files = gr.File(file_count="multiple", label="audio files (wav, flac, mp3, ogg, m4a, ...; any rate)",
                        elem_id="transcribe-files")
        recording = gr.Audio(sources=["microphone"], type="filepath", label="or record",
                             elem_id="transcribe-record")
    gr.Examples(example_clips(), inputs=[files], label="or pick a bundled demo clip (texts: eval/demo/sentences.txt)",
                elem_id="transcribe-examples")
    long_audio = gr.Checkbox(False, label=f"{LONG_AUDIO_LABEL} (split at pauses beyond the model's limit; "
                                          "segment times, SRT and VTT)",
                             elem_id="transcribe-long-audio")
    skip_silence = gr.Checkbox(True, label=f"{NO_SPEECH_LABEL} (voice activity detection first: silence and noise "
                                           "give no text instead of an invented sentence)",
                               elem_id="transcribe-no-speech")
    controls = decoding_controls("transcribe")
    button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-button")
    table = gr.Dataframe(headers=COLUMNS, label="results", wrap=True, interactive=False,
                         column_widths=COLUMN_WIDTHS, elem_id="transcribe-results")
    segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="segments (long audio)", wrap=True, interactive=False,
                            visible=False, elem_id="transcribe-segments")
    with gr.Row():
        text = gr.Textbox(label="transcripts", lines=4, buttons=["copy"], interactive=False, scale=3,
                          elem_id="transcribe-text")
        downloads = gr.File(label="download (CSV, JSON; SRT, VTT in long-audio mode)", file_count="multiple",
                            interactive=False, scale=1, elem_id="transcribe-downloads")
    outputs = [table, segments, text, downloads]

    async def transcribe(paths, recorded, long_mode, skip, *values, progress=gr.Progress()):
        items = [Path(p) for p in paths or []] + ([Path(recorded)] if recorded else [])
        try:
            if not items:
                raise ControlError("No audio: upload one or more files or record from the microphone.")
            options = replace(decoding_from_controls(*values), no_speech="skip" if skip else "keep")
            engine.check_supported(options)  # e.g. a hotword the model cannot spell
        except ValueError as error:  # a ControlError too; a warning, not gr.Error: the panels keep the last results
            gr.Warning(str(error), duration=TOAST_SECONDS)
            return tuple(gr.skip() for _ in outputs)
        extra = {"long_audio": True} if long_mode else {}

        async def one(path: Path) -> Transcript:
            try:
                too_big = size_error(path, max_upload_mb)
                result = (Transcript(id=path.name, error=too_big) if too_big else
                          await engine.transcribe_async(str(path), options, id=path.name, **extra))
            except Exception:  # keep the other files' results; the details go to the server log only
                log.exception("transcribing %s failed", path.name)
                result = Transcript(id=path.name, error=f"{path.name}: transcription failed unexpectedly "
                                                        "(the server log has the details); try again")
            if not result.ok and not result.duration_s:
                result = replace(result, duration_s=await asyncio.to_thread(file_duration, path))
            return result

        tasks = [asyncio.ensure_future(one(path)) for path in items]
        progress((0, len(tasks)), desc="transcribing", unit="files")
        for done, finished in enumerate(asyncio.as_completed(tasks), start=1):
            await finished
            progress((done, len(tasks)), desc="transcribing", unit="files")
        transcripts = [task.result() for task in tasks]
        failure_toast(transcripts)
        return (results_table(transcripts, bool(long_mode)),
                gr.Dataframe(segments_table(transcripts), visible=bool(long_mode)), plain_text(transcripts),
                write_exports(transcripts, options, export_dir, bool(long_mode)))

    button.click(transcribe, [files, recording, long_audio, skip_silence, *controls.inputs], outputs,
                 concurrency_limit=concurrency, js=CLEAR_TOASTS_JS)
