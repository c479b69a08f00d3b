"""The Gradio workbench in a real headless Chromium, served in-process on the session's real engine."""

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt
from playwright.sync_api import expect

from eval.records import load_run
from fireredasr_vllm.audio import SAMPLE_RATE, load_audio
from eval.report import differing_utterances
from eval.run import evaluate
from fireredasr_engine.engine import UNDECODABLE
from fireredasr_engine.options import Transcript, parse_decoding
from testkit.pages import reveal, select
from workbench.ui_evaluate import set_choices
from workbench.ui_transcribe import message

RECORD_TAIL_MS = 400  # the microphone test records this long after the clip has played
INTERNALS = re.compile(r"0x[0-9a-fA-F]{4,}|\bb'|\bb\"|<[\w.]+ object|Traceback|Error opening|LibsndfileError"
                       r"|FFmpegError")  # object reprs, byte dumps, decoder exceptions


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def upload(page, paths) -> None:
    page.locator("#transcribe-files input[type=file]").set_input_files([str(p) for p in paths])


def transcribe(page, paths) -> None:
    upload(page, paths)
    page.locator("#transcribe-files").get_by_text(paths[-1].stem).first.wait_for()
    page.locator("#transcribe-button").click()


def result_row(page, name: str) -> dict:
    row = page.locator("#transcribe-results [role=row]", has_text=name).first
    row.wait_for()
    header = [words(h) for h in page.locator("#transcribe-results [role=columnheader]").all_inner_texts()]
    return dict(zip(header, (words(c) for c in row.locator("[role=gridcell]").all_inner_texts())))


def all_rows(page, elem_id: str) -> dict[str, dict]:
    """Every row of a table, keyed by its first cell: Gradio renders only the rows in view, so scroll through."""
    table = page.locator(f"#{elem_id}")
    header = [words(h) for h in table.locator("[role=columnheader]").all_inner_texts()]
    viewport = table.locator(".virtual-table-viewport")
    rows = {}
    while True:
        for row in table.locator("[role=row]").all():
            cells = [words(c) for c in row.locator("[role=gridcell]").all_inner_texts()]
            if cells and cells[0]:
                rows[cells[0]] = dict(zip(header, cells))
        if viewport.evaluate("v => v.scrollTop + v.clientHeight >= v.scrollHeight - 1"):
            return rows
        viewport.evaluate("v => { v.scrollTop += v.clientHeight / 2; }")
        page.wait_for_timeout(300)  # let the virtual list render the rows scrolled in


def test_upload_clip_shows_transcript(page, engine, demo_clips, references, tmp_path):
    expected = words(engine.transcribe(demo_clips[0]).text)  # greedy is deterministic: the page must agree
    assert expected == references[demo_clips[0].stem]  # and the trained model gets it right
    transcribe(page, demo_clips[:1])
    row = result_row(page, demo_clips[0].name)
    page.locator("#transcribe-downloads").get_by_text(".json").first.wait_for()
    page.screenshot(path=tmp_path / "transcribe.png", full_page=True)
    assert row["transcript"] == expected and row["message"] == ""
    assert float(row["duration_s"]) == pytest.approx(sf.info(demo_clips[0]).duration, abs=0.01)
    assert int(row["tokens"]) > 0
    assert expected in words(page.locator("#transcribe-text textarea").input_value())
    assert page.locator("#transcribe-downloads").get_by_text(".csv").count() == 1


def test_bundled_example_transcribes_to_its_sentence(page, demo_clips, references):
    clip = demo_clips[2]
    page.locator("#transcribe-examples").get_by_text(clip.name).first.click()
    page.locator("#transcribe-files").get_by_text(clip.stem).first.wait_for()
    page.locator("#transcribe-button").click()
    assert result_row(page, clip.name)["transcript"] == references[clip.stem]


def corpus_files(corpus: dict, folder: Path) -> dict[Path, tuple[str | None, float | None]]:
    """The bad-input corpus items a browser can upload, as files named after them: path -> (expected error
    pattern or None when it transcribes, expected duration)."""
    files = {}
    for name, (item, error, seconds) in corpus.items():
        if isinstance(item, Path):
            if not item.is_file():  # a missing file or a directory cannot be uploaded
                continue
            path = folder / f"{name}{item.suffix}"
            shutil.copy(item, path)
        elif isinstance(item, bytes):
            kind = {b"ID3": "mp3", b"fLa": "flac", b"Ogg": "ogg"}.get(item[:3], "wav")
            path = folder / f"{name}.{kind}"
            path.write_bytes(item)
        else:
            samples, rate = item if isinstance(item, tuple) else (item, SAMPLE_RATE)
            finite = bool(np.all(np.isfinite(samples)))  # FLAC stays under the upload limit; NaN needs float WAV
            path = folder / f"{name}.{'flac' if finite else 'wav'}"
            sf.write(path, samples, rate, subtype=None if finite else "FLOAT")
        files[path] = (error, seconds)
    return files


def assert_no_internals(text: str) -> None:
    assert not INTERNALS.search(text), f"decoder internals on the page: {INTERNALS.search(text).group(0)!r} in {text!r}"


def test_bad_inputs_show_clean_errors_and_the_next_clip_works(page, engine, app_options, bad_input_corpus,
                                                              demo_clips, tmp_path):
    too_large = tmp_path / "too_large.wav"
    too_large.write_bytes(np.random.default_rng(0).bytes(int(app_options.max_upload_mb * 1024 * 1024) + 1))
    upload(page, [too_large])
    page.get_by_text("exceed the maximum allowed size").first.wait_for()

    page.reload()
    files = corpus_files(bad_input_corpus, tmp_path)
    ten_minutes = tmp_path / "ten_minutes_silence.flac"  # over the limit: the row still says how long it is
    sf.write(ten_minutes, np.zeros(600 * 8000, np.int16), 8000)
    files[ten_minutes] = (r"600\.0 s is longer than the model's 30 s limit", 600.0)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    files[corrupt] = ("cannot decode as audio", None)
    transcribe(page, list(files))
    result_row(page, next(iter(files)).name)
    rows = all_rows(page, "transcribe-results")
    for path, (error, seconds) in files.items():
        row = rows[path.name]
        assert_no_internals(row["message"])
        if error is None:  # it transcribes (an empty transcript says why)
            assert not row["message"].startswith(path.name), row
        else:
            assert row["message"].startswith(f"{path.name}: ") and row["transcript"] == ""
            assert re.search(error.replace(".*long_audio=True", ""), row["message"]), row
        if seconds is not None:
            assert float(row["duration_s"]) == pytest.approx(seconds, abs=0.06), row
    for silent in ("silence.flac", "very_quiet.flac"):  # the no-speech box is on by default: no invented sentence
        assert rows[silent]["transcript"] == "" and rows[silent]["message"].startswith("no speech found in "), rows
    too_long = rows["35s.flac"]["message"]  # page users are pointed at the checkbox, not the API
    assert 'tick "long audio"' in too_long and "long_audio=True" not in too_long
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert_no_internals(toast.inner_text())
    assert page.locator(".toast-body").count() == 1  # one toast a batch, not one per failed file
    page.screenshot(path=tmp_path / "bad_inputs.png", full_page=True)

    page.locator("#transcribe-files button[aria-label='Clear']").first.click()
    transcribe(page, demo_clips[1:2])
    expect(page.locator(".toast-body")).to_have_count(0)  # the old warning no longer covers the new results
    row = result_row(page, demo_clips[1].name)
    assert row["message"] == "" and row["transcript"] == words(engine.transcribe(demo_clips[1]).text)


def test_messages_from_deeper_layers_lose_their_internals():
    leaked = Transcript(id="x.wav", error="x.wav: cannot read audio (RuntimeError: Error opening "
                                          "<_io.BytesIO object at 0x7f3a2b1c5d90>: head b'RIFF\\x00\\x00')")
    shown = message(leaked, long_mode=False)
    assert shown.startswith("x.wav: cannot read audio (RuntimeError: Error opening")
    assert "0x" not in shown and "b'" not in shown and "object at" not in shown, shown


def test_long_audio_segments_subtitles_and_no_speech(page, demo_clips, references, tmp_path):
    clips = demo_clips[:6]
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    speech, starts = [], []
    for clip in clips:
        starts.append(sum(len(part) for part in speech) / SAMPLE_RATE + len(pause) / SAMPLE_RATE)
        speech += [pause, load_audio(clip)]
    talk = tmp_path / "talk.flac"
    sf.write(talk, np.concatenate(speech + [pause]), SAMPLE_RATE)
    tone, silence = tmp_path / "tone_45s.flac", tmp_path / "silence_10min.flac"
    sf.write(tone, 0.3 * np.sin(2 * np.pi * 440 * np.arange(45 * SAMPLE_RATE) / SAMPLE_RATE), SAMPLE_RATE)
    sf.write(silence, np.zeros(600 * 8000, np.int16), 8000)

    page.locator("#transcribe-long-audio input").check()
    transcribe(page, [talk, tone, silence])
    for path, seconds in ((tone, 45.0), (silence, 600.0)):
        row = result_row(page, path.name)
        assert row["transcript"] == "" and "no speech found" in row["message"], row
        assert float(row["duration_s"]) == pytest.approx(seconds, abs=0.01)

    row = result_row(page, talk.name)
    assert row["message"] == "" and row["transcript"]
    segments = page.locator("#transcribe-segments")
    segments.get_by_role("gridcell", name=talk.name, exact=True).first.wait_for()
    header = [words(h) for h in segments.locator("[role=columnheader]").all_inner_texts()]
    shown = [dict(zip(header, (words(c) for c in r.locator("[role=gridcell]").all_inner_texts())))
             for r in segments.locator("[role=row]", has_text=talk.name).all()]
    assert len(shown) == len(clips)  # one segment per clip: the pauses split them
    assert "".join(s["text"] for s in shown) == row["transcript"]
    for segment, start, clip in zip(shown, starts, clips):
        assert float(segment["start_s"]) == pytest.approx(start, abs=0.5)
        assert float(segment["end_s"]) == pytest.approx(start + sf.info(clip).duration, abs=0.6)

    subtitles = {}
    for fmt in ("srt", "vtt"):
        link = page.locator(f"#transcribe-downloads a[download='talk.{fmt}']")
        subtitles[fmt] = page.request.get(link.get_attribute("href")).text()
    cues = list(srt.parse(subtitles["srt"]))
    assert [c.content for c in cues] == [s["text"] for s in shown]
    assert [round(c.start.total_seconds(), 2) for c in cues] == [float(s["start_s"]) for s in shown]
    vtt = webvtt.from_buffer(io.StringIO(subtitles["vtt"]))
    assert [c.text for c in vtt] == [s["text"] for s in shown]


def open_decoding(page) -> None:
    reveal(page, page.locator("#transcribe-decoding").get_by_text("Decoding").first, "#transcribe-max-tokens input")


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def test_invalid_max_tokens_names_the_field_and_keeps_results(page, demo_clips, references):
    transcribe(page, demo_clips[:1])
    assert result_row(page, demo_clips[0].name)["transcript"] == references[demo_clips[0].stem]
    open_decoding(page)
    set_number(page, "transcribe-max-tokens", -5)
    page.locator("#transcribe-button").click()
    page.locator(".toast-body", has_text='"max new tokens" is -5').first.wait_for()
    assert result_row(page, demo_clips[0].name)["transcript"] == references[demo_clips[0].stem]  # kept
    outputs = page.locator("#transcribe-results, #transcribe-segments, #transcribe-text, #transcribe-downloads")
    assert outputs.get_by_text("Error", exact=True).count() == 0  # no panel turned into an error badge


def test_preset_names_what_the_controls_say(page, demo_clips):
    open_decoding(page)
    preset = page.locator("#transcribe-preset input")
    assert preset.input_value() == "greedy"
    temperature = page.locator("#transcribe-temperature input[type=range]")
    assert temperature.is_enabled()
    set_number(page, "transcribe-beam", 2)
    expect(preset).to_have_value("custom")
    page.locator("#transcribe-preset").get_by_text("beam2").first.wait_for()  # as the export labels it
    expect(temperature).to_be_disabled()  # beam search ignores it: it says so by being greyed out

    transcribe(page, demo_clips[:1])
    result_row(page, demo_clips[0].name)
    link = page.locator("#transcribe-downloads a[download='transcripts.json']")
    exported = json.loads(page.request.get(link.get_attribute("href")).text())
    assert exported["decoding"]["label"] == "beam2" and exported["decoding"]["beam_size"] == 2

    select(page, "transcribe-preset", "official")
    expect(page.locator("#transcribe-penalty input[type=number]")).to_have_value("3")
    set_number(page, "transcribe-penalty", 1)
    expect(preset).to_have_value("beam3")  # official without its penalty is another preset: named so
    set_number(page, "transcribe-beam", 4)
    expect(preset).to_have_value("custom")
    set_number(page, "transcribe-beam", 1)
    expect(preset).to_have_value("greedy")
    expect(temperature).to_be_enabled()


def test_sampling_output_has_no_partial_character(page, engine, demo_clips):
    stray_byte = next(i for i in range(len(engine.tokenizer)) if engine.tokenizer.decode([i]) == UNDECODABLE)
    ids = engine.transcribe(demo_clips[0]).token_ids
    assert engine.detokenize([*ids, stray_byte]) == engine.detokenize(ids)  # a cut character is dropped, not shown

    open_decoding(page)
    set_number(page, "transcribe-temperature", 1.5)  # seed 0: this clip samples stray byte tokens
    transcribe(page, demo_clips[:3])
    for clip in demo_clips[:3]:
        row = result_row(page, clip.name)
        assert row["message"] == "" and int(row["tokens"]) > 0 and UNDECODABLE not in row["transcript"], row


@pytest.fixture
def recorded_clip(demo_clips, tmp_path) -> Path:
    """A bundled clip as 16-bit WAV, what Chromium's fake microphone plays."""
    wav = tmp_path / f"{demo_clips[3].stem}.wav"
    sf.write(wav, load_audio(demo_clips[3]), SAMPLE_RATE, subtype="PCM_16")
    return wav


def record_in_app(launch_chromium, open_app, clip: Path, download_to: Path):
    """Open the app in a Chromium whose microphone plays ``clip`` once, record it, and download what the app got."""
    chromium = launch_chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                               f"--use-file-for-fake-audio-capture={clip}%noloop")
    page = open_app(chromium, permissions=["microphone"])
    recorder = page.locator("#transcribe-record")
    recorder.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_timeout(1000 * sf.info(clip).duration + RECORD_TAIL_MS)  # the clip plays in real time
    recorder.get_by_role("button", name="Stop", exact=True).first.click()
    with page.expect_download() as download:  # the recording is uploaded: the app has it
        recorder.get_by_role("button", name="Download").click()
    download.value.save_as(download_to)
    return page, download_to


def best_alignment(heard: np.ndarray, played: np.ndarray) -> tuple[int, float]:
    """Where ``played`` sits in ``heard`` (a sample offset) and how alike the two are there (cosine similarity)."""
    size = len(heard) + len(played)
    lagged = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(played, size)), size)
    lag = int(np.argmax(lagged[:len(heard) - len(played) + 1]))
    stretch = heard[lag:lag + len(played)]
    return lag, float(np.dot(stretch, played) / (np.linalg.norm(stretch) * np.linalg.norm(played) + 1e-9))


def holds_clip(recording: Path, clip: Path) -> bool:
    """Whether the recording holds the clip unbroken. Chromium's fake microphone skips 10 ms ticks when the machine
    is busy, which garbles the speech: each half second of the clip must then sit at the same offset of the
    recording as the first (Chromium's echo cancelling and gain control change the waveform, never its timing)."""
    heard, played = load_audio(recording), load_audio(clip)
    window, slack = SAMPLE_RATE // 2, SAMPLE_RATE // 5
    if len(heard) < len(played):
        return False
    start, _ = best_alignment(heard, played)
    for offset in range(0, len(played) - window + 1, window):
        near_start = max(0, start + offset - slack)
        near = heard[near_start:start + offset + window + slack]
        lag, likeness = best_alignment(near, played[offset:offset + window])
        if abs(near_start + lag - (start + offset)) > SAMPLE_RATE // 200 or likeness < 0.5:
            return False
    return True


def test_microphone_recording_transcribes_to_its_sentence(launch_chromium, open_app, recorded_clip, references,
                                                          engine, tmp_path):
    """Recorded again (at most 3 times) when the fake microphone garbled the clip, or when the small trained
    model misread a clean recording: it does for some lengths of the silence after the speech (this clip: wrong
    with 0.64-0.79 s of Chromium's recorded silence after it, right with 0-0.63 s; the official code agrees),
    and the recording's length varies with the machine's load."""
    heard = []
    for attempt in range(3):
        page, recording = record_in_app(launch_chromium, open_app, recorded_clip, tmp_path / f"heard{attempt}.wav")
        if not holds_clip(recording, recorded_clip):
            continue
        page.locator("#transcribe-button").click()
        row = page.locator("#transcribe-results [role=row]", has_text=".wav").first
        row.wait_for()
        cells = [words(c) for c in row.locator("[role=gridcell]").all_inner_texts()]
        assert engine.transcribe(recording).text in cells, cells  # the app transcribes exactly what it recorded
        heard.append(cells)
        if references[recorded_clip.stem] in cells:
            return
    raise AssertionError(f"no clean recording of 3 transcribed to its sentence: {heard}")


def test_evaluate_demo_writes_run_and_shows_cer(page, app_results_dir, tmp_path):
    before = set(app_results_dir.iterdir())
    reveal(page, page.get_by_role("tab", name="Evaluate"), "#evaluate-set input")
    test_set = page.locator("#evaluate-set input")
    test_set.fill(str(tmp_path / "no_such_set"))
    test_set.press("Enter")
    page.locator("#evaluate-button").click()
    page.locator(".toast-body", has_text="unknown test set").first.wait_for()
    assert set(app_results_dir.iterdir()) == before

    select(page, "evaluate-set", dict((name, label) for label, name in set_choices())["demo"])
    page.locator("#evaluate-limit input").fill("3")
    page.locator("#evaluate-button").click()
    page.locator("#evaluate-summary").get_by_text("CER").first.wait_for()
    page.locator("#evaluate-plots img").first.wait_for()
    page.screenshot(path=tmp_path / "evaluate.png", full_page=True)

    run_dir = app_results_dir / "demo__trained__greedy"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["utterances"] + summary["failed"] == 3
    shown = page.locator("#evaluate-summary").inner_text()
    assert summary["metric"] == "cer" and f"CER {100 * summary['error_rate']:.2f} %" in shown
    assert f"N {summary['n']} S {summary['s']} D {summary['d']} I {summary['i']}" in words(shown)
    assert page.locator("#evaluate-folder input, #evaluate-folder textarea").first.input_value() == str(run_dir)
    # every counted edit is highlighted once, in its own colour class
    utterances = page.locator("#evaluate-utterances")
    assert utterances.locator("tbody tr").count() == 3
    for op, key in (("sub", "s"), ("del", "d"), ("ins", "i")):
        assert utterances.locator(f"span.{op}").count() == summary[key]

    page.locator("#evaluate-decoding").get_by_text("Decoding").first.click()
    set_number(page, "evaluate-max-tokens", -5)
    page.locator("#evaluate-button").click()
    page.locator(".toast-body", has_text='"max new tokens" is -5').first.wait_for()
    assert f"CER {100 * summary['error_rate']:.2f} %" in page.locator("#evaluate-summary").inner_text()  # kept
    outputs = page.locator("#evaluate-summary, #evaluate-folder, #evaluate-plots, #evaluate-utterances")
    assert outputs.get_by_text("Error", exact=True).count() == 0  # no panel turned into an error badge


def test_runs_tab_lists_and_compares_two_runs(page, engine, app_results_dir, tmp_path):
    run_a = evaluate("demo", engine=engine, limit=3, output_dir=app_results_dir / "demo__trained__greedy",
                     progress=False)
    run_b = evaluate("demo", engine=engine, limit=3, decoding=parse_decoding("t0.7"),
                     output_dir=app_results_dir / "demo__trained__t0.7", progress=False)
    reveal(page, page.get_by_role("tab", name="Runs"), "#runs-table")
    table = page.locator("#runs-table")
    for run in (run_a, run_b):
        table.get_by_role("gridcell", name=run.name, exact=True).wait_for()

    select(page, "runs-a", run_a.name)
    page.locator("#runs-summary").get_by_text(f"CER {100 * run_a.summary.error_rate:.2f} %").wait_for()
    assert page.locator("#runs-details tbody tr").count() == len(run_a.rows)

    select(page, "runs-b", run_b.name)
    page.locator("#runs-compare").click()
    diff = differing_utterances(load_run(run_a.path), load_run(run_b.path))
    message = f"{len(diff)} of the 3 shared utterances differ" if len(diff) else "agree on every shared utterance"
    page.locator("#runs-details").get_by_text(message).wait_for()
    page.locator("#runs-deltas").get_by_role("gridcell", name="B − A", exact=True).wait_for()
    page.locator("#runs-summary").get_by_text("both runs scored the same 3 utterances").wait_for()
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert page.locator("#runs-details tbody tr").count() == len(diff)


def test_runs_comparison_of_different_utterance_sets_uses_the_shared_ones(page, engine, app_results_dir):
    small = evaluate("demo", engine=engine, limit=2, output_dir=app_results_dir / "demo-2clips", progress=False)
    large = evaluate("demo", engine=engine, limit=5, decoding=parse_decoding("beam2"),
                     output_dir=app_results_dir / "demo-5clips", progress=False)
    reveal(page, page.get_by_role("tab", name="Runs"), "#runs-table")
    page.locator("#runs-table").get_by_role("gridcell", name=large.name, exact=True).wait_for()
    select(page, "runs-a", small.name)
    select(page, "runs-b", large.name)
    page.locator("#runs-compare").click()
    note = page.locator("#runs-summary").get_by_text("the runs scored different utterances")
    note.wait_for()
    assert "A 2, B 5, 2 in both (0 only in A, 3 only in B)" in words(page.locator("#runs-summary").inner_text())

    deltas = page.locator("#runs-deltas")
    deltas.get_by_role("gridcell", name=f"{large.name} (shared)", exact=True).wait_for()
    header = [words(h) for h in deltas.locator("[role=columnheader]").all_inner_texts()]
    delta = dict(zip(header, (words(c) for c in deltas.locator("[role=row]", has=page.get_by_role(
        "gridcell", name="B − A", exact=True)).locator("[role=gridcell]").all_inner_texts())))
    shared = large.rows[large.rows["id"].isin(small.rows["id"])]
    cer_shared = 100 * shared[["s", "d", "i"]].to_numpy().sum() / shared["n"].sum()
    assert float(delta["n"]) == 0 and float(delta["utterances"]) == 0  # like with like
    assert float(delta["cer %"]) == pytest.approx(cer_shared - 100 * small.summary.error_rate, abs=0.001)


def test_about_tab_shows_model_and_verifier(page, engine):
    from fireredasr_vllm.verify import verify

    page.get_by_role("tab", name="About").click()
    about = page.locator("#about-model")
    about.get_by_text(str(engine.model_dir)).wait_for()
    assert f"Model: {engine.model_spec}" in about.inner_text()

    page.locator("#about-verify").click()
    checks = page.locator("#about-checks")
    checks.get_by_role("gridcell", name="engine", exact=True).wait_for()
    expected = {c.name: c.ok for c in verify(engine.model_dir, engine=False)} | {"engine": True}
    for name, ok in expected.items():
        row = checks.locator("[role=row]", has=page.get_by_role("gridcell", name=name, exact=True))
        assert ("✓" if ok else "✗") in row.inner_text()


def test_runs_tab_opens_a_sweep_with_its_plots(page, engine, app_results_dir):
    from eval.sweep import SweepConfig, run_sweep

    sweep_dir = app_results_dir / "sweep-demo"
    table = run_sweep(SweepConfig(test_set="demo", limit=2, grid={"decoding": ["greedy"]}, modes=["online"],
                                  concurrency=[1, 2], warmup=1, output_dir=str(sweep_dir)),
                      engine=engine, progress=False)
    reveal(page, page.get_by_role("tab", name="Runs"), "#runs-a input")
    select(page, "runs-a", sweep_dir.name)
    page.locator("#runs-summary").get_by_text(f"{len(table)} configurations").wait_for()
    page.locator("#runs-plots img").first.wait_for()
    assert page.locator("#runs-plots img").count() == len(list((sweep_dir / "plots").glob("*.png"))) > 0
