"""fireredasr_engine.transcribe: the official-style CLI, run in process on the shared engine."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from fireredasr_vllm.audio import load_audio
from fireredasr_engine.transcribe import build_parser, official_decoding_options, main


def one_line(text: str) -> str:
    return " ".join(text.split())


def kaldi_lines(text: str) -> list[tuple[str, str]]:
    """``uttid<TAB>text`` lines -> pairs; fails on any other shape."""
    pairs = []
    for line in text.splitlines():
        uttid, sep, hyp = line.partition("\t")
        assert sep and uttid and "\t" not in hyp, f"not an 'uttid<TAB>text' line: {line!r}"
        pairs.append((uttid, hyp))
    return pairs


@pytest.fixture(scope="module")
def reference(engine, clips):
    """Greedy transcripts of each clip, one engine.transcribe call each."""
    return {clip.stem: engine.transcribe(clip) for clip in clips}


def test_folder_gives_greedy_engine_transcripts(engine, clips, reference, tmp_path):
    folder = tmp_path / "wavs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(clips[0], folder)
    shutil.copy(clips[1], folder)
    shutil.copy(clips[2], folder / "sub")
    (folder / "notes.txt").write_text("not an audio suffix, skipped")
    out = tmp_path / "hyp.txt"

    assert main(["--model-dir", "trained", str(folder), "--output", str(out)], engine=engine) == 0
    assert kaldi_lines(out.read_text(encoding="utf-8")) == [
        (clip.stem, one_line(reference[clip.stem].text)) for clip in clips]


def test_wav_scp_with_paths_and_a_pipe(engine, clips, reference, tmp_path, capsys):
    samples, rate = sf.read(clips[2], dtype="int16")
    wav = tmp_path / "third.wav"
    sf.write(wav, samples, rate, subtype="PCM_16")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"spk1-a {clips[1]}\n\nspk1-b {clips[0]}\nspk2-c cat {wav} |\n")

    assert main(["--model-dir", "trained", "--wav_scp", str(scp)], engine=engine) == 0
    assert kaldi_lines(capsys.readouterr().out) == [
        ("spk1-a", one_line(reference[clips[1].stem].text)),
        ("spk1-b", one_line(reference[clips[0].stem].text)),
        ("spk2-c", one_line(reference[clips[2].stem].text))]


def test_bad_files_are_reported_and_the_rest_transcribed(engine, clips, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("this is text, not audio")
    missing = tmp_path / "missing.wav"
    scp = tmp_path / "wav.scp"
    scp.write_text(f"lonely-id\nok-{clips[2].stem} {clips[2]}\n")
    jsonl = tmp_path / "run.jsonl"
    argv = ["--model-dir", "trained", "--jsonl", str(jsonl), "--wav_scp", str(scp),
            "--wav_paths", str(clips[1]), str(bad), str(missing), str(clips[0])]

    assert main(argv, engine=engine) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert any("bad" in e and "not audio" in e for e in errors)
    assert any("missing" in e and "no such file" in e for e in errors)
    assert any("wav.scp:1" in e and "expected '<uttid> <path>'" in e for e in errors)
    # --wav_paths are sorted as the official CLI sorts them; failures leave no line
    assert [uttid for uttid, _ in kaldi_lines(captured.out)] == [
        clips[0].stem, clips[1].stem, f"ok-{clips[2].stem}"]
    records = {r["id"]: r for r in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())}
    assert {r["id"] for r in records.values() if r["error"]} == {"bad", "missing", "wav.scp:1"}


def test_jsonl_has_tokens_and_timings(engine, clips, reference, tmp_path):
    jsonl = tmp_path / "run.jsonl"
    paths = [str(clip) for clip in clips]
    assert main(["--model-dir", "trained", "--output", str(tmp_path / "hyp"), "--jsonl", str(jsonl), *paths],
                engine=engine) == 0
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == sorted(reference)
    for record in records:
        expected = reference[record["id"]]
        assert record["text"] == expected.text and record["token_ids"] == list(expected.token_ids)
        assert record["duration_s"] == pytest.approx(expected.duration_s)
        assert 0 < record["ttft_s"] <= record["latency_s"]
        assert record["output_tokens"] >= len(record["token_ids"]) > 0
        assert record["prompt_tokens"] > 0 and record["finish_reason"] in ("stop", "length")
        assert record["rtf"] == pytest.approx(record["latency_s"] / record["duration_s"], abs=1e-4)


def test_input_over_30_s_needs_long_audio(engine, demo_clips, tmp_path, capsys):
    pause = np.zeros(8000, dtype=np.float32)
    samples = np.concatenate([x for clip in demo_clips[:8] for x in (load_audio(clip), pause)])
    assert len(samples) > 30 * 16000
    path = tmp_path / "meeting.flac"
    sf.write(path, samples, 16000)

    assert main(["--model-dir", "trained", str(path)], engine=engine) == 1
    assert "longer than the model's 30 s limit" in capsys.readouterr().err

    jsonl = tmp_path / "run.jsonl"
    assert main(["--model-dir", "trained", "--long-audio", "--jsonl", str(jsonl), str(path)], engine=engine) == 0
    assert [uttid for uttid, _ in kaldi_lines(capsys.readouterr().out)] == ["meeting"]
    record = json.loads(jsonl.read_text(encoding="utf-8"))
    assert record["duration_s"] == pytest.approx(len(samples) / 16000)
    assert len(record["segments"]) >= 2


def test_subtitles_one_file_per_input_timed_by_segments(engine, demo_clips, clips, reference, tmp_path, capsys):
    pause = np.zeros(16000, dtype=np.float32)
    samples = np.concatenate([x for clip in demo_clips[:8] for x in (load_audio(clip), pause)])
    meeting = tmp_path / "meeting.flac"
    sf.write(meeting, samples, 16000)
    out = tmp_path / "subs"

    assert main(["--model-dir", "trained", "--long-audio", "--output-format", "srt", "--output", str(out),
                 str(meeting), str(clips[0])], engine=engine) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["meeting.srt", f"{clips[0].stem}.srt"])
    cues = list(srt.parse((out / "meeting.srt").read_text(encoding="utf-8")))
    assert len(cues) == 8  # one per clip: the 1 s pauses split them
    starts = np.cumsum([0] + [len(load_audio(c)) / 16000 + 1 for c in demo_clips[:7]])
    assert all(abs(cue.start.total_seconds() - start) < 0.5 for cue, start in zip(cues, starts))
    short = list(srt.parse((out / f"{clips[0].stem}.srt").read_text(encoding="utf-8")))
    assert [(c.start.total_seconds(), c.content) for c in short] == [(0.0, reference[clips[0].stem].text)]
    assert "subtitles: 2 srt files in" in capsys.readouterr().err

    assert main(["--model-dir", "trained", "--output-format", "vtt", "--output", str(out), str(clips[1])],
                engine=engine) == 0
    assert [c.text for c in webvtt.read(str(out / f"{clips[1].stem}.vtt"))] == [reference[clips[1].stem].text]


def test_jsonl_output_format_to_stdout(engine, clips, reference, capsys):
    assert main(["--model-dir", "trained", "--output-format", "jsonl", *map(str, clips)], engine=engine) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == [clip.stem for clip in clips]
    assert [r["text"] for r in records] == [reference[clip.stem].text for clip in clips]
    assert all(r["segments"] == [{"start_s": 0.0, "end_s": r["duration_s"], "text": r["text"]}] for r in records)


def test_official_decode_arguments_keep_their_meaning():
    args = build_parser().parse_args([
        "--model_dir", "m", "--beam_size", "3", "--repetition_penalty", "3.0", "--llm_length_penalty", "1.0",
        "--decode_max_len", "0", "--decode_min_len", "2", "--temperature", "0.7", "--batch_size", "8"])
    options = official_decoding_options(args)
    assert (options.beam_size, options.repetition_penalty, options.penalty_scope) == (3, 3.0, "generated")
    assert (options.length_penalty, options.max_tokens, options.min_tokens) == (1.0, None, 2)
    assert options.temperature == 0.0  # the official CLI never samples: temperature alone changes nothing
    sampled = official_decoding_options(build_parser().parse_args(
        ["--model-dir", "m", "--do-sample", "--temperature", "0.7", "--decode-max-len", "40"]))
    assert (sampled.mode, sampled.temperature, sampled.max_tokens) == ("sample", 0.7, 40)


@pytest.mark.parametrize("extra, expected", [
    (["--dtype", "float16"], "use --dtype bfloat16"),
    (["--asr_type", "aed"], "speech2text.py --asr_type aed"),
    (["--do_sample", "--beam_size", "3"], "beam sampling"),
    (["--wav_dir", "/no/such/folder"], "/no/such/folder: no such folder"),
    (["--output-format", "srt"], "--output-format srt writes one file per input: give the folder for them with "
                                 "--output DIR"),
])
def test_refused_before_any_decoding(extra, expected, clips, capsys):
    assert main(["--model-dir", "trained", str(clips[0]), *extra]) == 2
    assert expected in capsys.readouterr().err


def test_model_dir_problems_print_the_fix(clips, tmp_path, capsys):
    assert main(["--model-dir", str(tmp_path / "nowhere"), str(clips[0])]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "fireredasr_vllm.verify --model" in err and "fireredasr_vllm.convert" in err

    release = tmp_path / "FireRedASR-LLM-L"  # the LLM-L download lacks Qwen2-7B-Instruct/
    release.mkdir()
    for name in ("model.pth.tar", "asr_encoder.pth.tar", "cmvn.ark"):
        (release / name).write_bytes(b"\0")
    assert main(["--model-dir", str(release), str(clips[0])]) == 2
    err = capsys.readouterr().err
    assert "Qwen2-7B-Instruct: missing" in err and "ln -s" in err

