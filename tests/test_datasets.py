"""eval.datasets: the bundled demo through `datasets`, every local format, selection, and clear failures."""

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest
import soundfile as sf

from eval.datasets import (REGISTRY, DatasetRefused, DatasetUnavailable, list_test_sets, load_test_set, read_hotword_list,
                           split_hotwords)
from eval.bundled import DEMO_DIR, read_sentences
from testkit.hotword_set import DISTRACTORS, TRUE_WORDS
from fireredasr_vllm.audio import load_audio

TEXTS = ["第一句话", "第二句话，有标点。", "Third 句子"]


@pytest.fixture(scope="module")
def demo():
    return list(load_test_set("demo"))


def test_demo_loads_through_datasets_with_decodable_audio(demo):
    sentences = read_sentences(DEMO_DIR / "sentences.txt")
    assert [(u.id, u.text) for u in demo] == sentences
    assert all(isinstance(u.audio, bytes) for u in demo)
    for utterance in demo:
        samples = load_audio(utterance.audio, name=utterance.id)
        assert samples.size / 16000 == pytest.approx(utterance.duration, abs=0.01)
    test_set = load_test_set("demo")
    assert (test_set.size, len(test_set), test_set.metric, test_set.language) == (30, 30, "cer", "zh")
    assert [u.id for u in test_set] == [u.id for u in test_set]  # re-iterable


def test_registry_lists_the_documented_sets():
    names = [name for name, _ in list_test_sets()]
    for name in ("demo", "aishell", "wenetspeech-net", "wenetspeech-meeting", "kespeech", "fleurs-zh",
                 "librispeech-clean", "librispeech-other"):
        assert name in names
    assert load_test_set("demo").revision is None


def test_limit_shuffle_and_max_duration(demo):
    assert [u.id for u in load_test_set("demo", limit=4)] == [u.id for u in demo[:4]]
    shuffled = [u.id for u in load_test_set("demo", shuffle_seed=3)]
    assert shuffled == [u.id for u in load_test_set("demo", shuffle_seed=3)]
    assert shuffled != [u.id for u in demo] and sorted(shuffled) == sorted(u.id for u in demo)
    threshold = sorted(u.duration for u in demo)[len(demo) // 2]
    short = load_test_set("demo", max_duration=threshold)
    assert [u.id for u in short] == [u.id for u in demo if u.duration <= threshold]
    picked = load_test_set("demo", limit=3, shuffle_seed=3, max_duration=threshold)
    assert len(picked) == 3 and all(u.duration <= threshold for u in picked)
    assert [u.id for u in picked] == [i for i in shuffled if i in {u.id for u in short}][:3]


def test_streaming_reads_the_same_rows(demo):
    streamed = load_test_set("demo", limit=5, streaming=True)
    assert streamed.size is None
    assert [(u.id, u.text, u.audio) for u in streamed] == [(u.id, u.text, u.audio) for u in demo[:5]]


def write_parquet(path, clips, texts=TEXTS, text_column="sentence"):
    frame = pd.DataFrame({"audio": [{"bytes": c.read_bytes(), "path": c.name} for c in clips],
                          text_column: texts[:len(clips)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)


def assert_matches(test_set, clips, texts=TEXTS):
    utterances = list(test_set)
    assert [u.id for u in utterances] == [c.stem for c in clips]
    assert [u.text for u in utterances] == texts[:len(clips)]
    for utterance, clip in zip(utterances, clips):
        assert utterance.duration == pytest.approx(sf.info(clip).duration, abs=1e-3)
        assert load_audio(utterance.audio).size == load_audio(clip).size


def test_parquet_folder_and_file(tmp_path, clips):
    write_parquet(tmp_path / "set" / "data" / "test-00000-of-00001.parquet", clips)
    write_parquet(tmp_path / "set" / "data" / "train-00000-of-00001.parquet", clips[:1])
    assert_matches(load_test_set(tmp_path / "set"), clips)  # the test split is preferred
    assert_matches(load_test_set(tmp_path / "set", split="train"), clips[:1])
    assert_matches(load_test_set(tmp_path / "set" / "data" / "test-00000-of-00001.parquet"), clips)
    with pytest.raises(DatasetUnavailable, match="no split 'dev'"):
        load_test_set(tmp_path / "set", split="dev")


def test_audiofolder_with_metadata_csv(tmp_path, clips):
    for clip in clips:
        shutil.copy(clip, tmp_path / clip.name)
    pd.DataFrame({"file_name": [c.name for c in clips], "transcription": TEXTS}).to_csv(
        tmp_path / "metadata.csv", index=False)
    assert_matches(load_test_set(tmp_path), clips)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_kaldi_folder(tmp_path, clips):
    (tmp_path / "wav").mkdir()
    shutil.copy(clips[1], tmp_path / "wav" / clips[1].name)
    (tmp_path / "wav.scp").write_text(
        f"{clips[0].stem} {clips[0]}\n"  # absolute path
        f"{clips[1].stem} wav/{clips[1].name}\n"  # relative to the folder
        f"{clips[2].stem} sox {clips[2]} -t wav - |\n"  # a pipe, read through kaldiio
        "no_text_utt /nonexistent.wav\n", encoding="utf-8")
    (tmp_path / "text").write_text("".join(f"{c.stem} {t}\n" for c, t in zip(clips, TEXTS)), encoding="utf-8")
    test_set = load_test_set(tmp_path)
    assert_matches(test_set, clips)
    assert isinstance(list(test_set)[2].audio, bytes)


def test_confined_loading_takes_audio_files_inside_and_refuses_the_rest(tmp_path, clips):
    """``allowed_dirs`` (the web app): a Kaldi folder of files inside loads; pipes, archive entries,
    audio outside and any local path without allowed folders are refused (tests/test_security.py
    drives the same refusals through the running app)."""
    data = tmp_path / "data"
    (data / "kaldi" / "wav").mkdir(parents=True)
    for clip in clips:
        shutil.copy(clip, data / "kaldi" / "wav" / clip.name)
    listing = "".join(f"{c.stem} wav/{c.name}\n" for c in clips)
    (data / "kaldi" / "wav.scp").write_text(listing, encoding="utf-8")
    (data / "kaldi" / "text").write_text("".join(f"{c.stem} {t}\n" for c, t in zip(clips, TEXTS)), encoding="utf-8")
    assert_matches(load_test_set("kaldi", allowed_dirs=[data]), clips)
    assert len(load_test_set("demo", allowed_dirs=[])) == 30  # registered sets always load
    refused = {f"{clips[0].stem} sox {clips[0]} -t wav - |\n": "a command",
               f"{clips[0].stem} feats.ark:12\n": "not an audio file",
               f"{clips[0].stem} {clips[0]}\n": "is outside the allowed data folders"}
    for line, message in refused.items():
        (data / "kaldi" / "wav.scp").write_text(line, encoding="utf-8")
        with pytest.raises(DatasetRefused, match=message):
            load_test_set(data / "kaldi", allowed_dirs=[data])
    with pytest.raises(DatasetRefused, match="--data-dir"):
        load_test_set(data / "kaldi", allowed_dirs=[])


def test_jsonl_manifest(tmp_path, clips):
    for clip in clips:
        shutil.copy(clip, tmp_path / clip.name)
    lines = [{"audio_filepath": c.name, "text": t, "duration": sf.info(c).duration} for c, t in zip(clips, TEXTS)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                             encoding="utf-8")
    test_set = load_test_set(tmp_path / "manifest.jsonl")
    assert_matches(test_set, clips)
    assert (test_set.language, test_set.metric) == ("zh", "cer")


def test_local_english_set_is_scored_by_words(tmp_path, clips):
    english = ["HELLO WORLD", "IT'S A TEST", "GOOD BYE"]
    write_parquet(tmp_path / "en.parquet", clips, english, text_column="text")
    test_set = load_test_set(tmp_path / "en.parquet")
    assert (test_set.language, test_set.metric) == ("en", "wer")
    assert_matches(test_set, clips, english)


def test_hub_set_offline_explains_how_to_use_a_local_copy(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    for kwargs in ({}, {"limit": 5}):
        with pytest.raises(DatasetUnavailable) as error:
            load_test_set("aishell", **kwargs)
        message = str(error.value)
        assert "'aishell'" in message and "TwinkStart/AISHELL-1" in message
        assert "hf download TwinkStart/AISHELL-1 --repo-type dataset" in message
        assert "python -m eval.run DIR" in message


def test_demo_hotword_sets_carry_their_lists():
    heldout = [(u.id, u.text) for u in load_test_set("demo-heldout")]
    for name, words in (("demo-hotword", TRUE_WORDS), ("demo-hotword-100", TRUE_WORDS + DISTRACTORS)):
        test_set = load_test_set(name)
        assert [(u.id, u.text) for u in test_set] == heldout  # the held-out clips
        assert [word for word, _ in test_set.hotwords] == list(words) and test_set.has_hotwords
        assert test_set.describe()["hotwords"][0] == [words[0], 1.0]
    assert not load_test_set("demo").has_hotwords


def test_a_set_list_beside_the_set_and_a_per_utterance_column(tmp_path, clips):
    write_parquet(tmp_path / "set" / "test.parquet", clips)
    (tmp_path / "set" / "hotwords.txt").write_text("# names\n第一\n\n句话 2.5\nNew York\n第一\n", encoding="utf-8")
    test_set = load_test_set(tmp_path / "set" / "test.parquet")
    assert test_set.hotwords == (("第一", 1.0), ("句话", 2.5), ("New York", 1.0))
    assert [u.hotwords for u in test_set] == [None] * 3 and test_set.has_hotwords
    lines = [{"audio_filepath": str(c), "text": t, "hotwords": h}
             for c, t, h in zip(clips, TEXTS, [["第一", "句话"], "第二|标点", []])]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                             encoding="utf-8")
    test_set = load_test_set(tmp_path / "manifest.jsonl")
    assert [u.hotwords for u in test_set] == [("第一", "句话"), ("第二", "标点"), ()]
    assert test_set.hotwords == () and test_set.has_hotwords


def test_hotword_cells_and_list_files(tmp_path):
    assert split_hotwords("上海, 北京|深圳，广州") == ("上海", "北京", "深圳", "广州")
    assert split_hotwords(None) is None and split_hotwords("") == ()
    (tmp_path / "list.txt").write_text("上海 3\n北京\n", encoding="utf-8")
    assert read_hotword_list(tmp_path / "list.txt") == (("上海", 3.0), ("北京", 1.0))


def test_aishell1_hotword_reads_its_local_copy_or_explains_how_to_make_it(monkeypatch, tmp_path, clips):
    folder = tmp_path / "aishell1-hotword"
    source = REGISTRY["aishell1-hotword"]
    monkeypatch.setitem(REGISTRY, "aishell1-hotword", replace(
        source, data_files=str(folder), hotwords_file=str(folder / "hotwords.txt")))
    with pytest.raises(DatasetUnavailable) as error:
        load_test_set("aishell1-hotword")
    message = str(error.value)
    assert "'aishell1-hotword'" in message and "not on the Hugging Face hub" in message and str(folder) in message
    assert "speech_asr/speech_asr_aishell1_hotwords_testsets" in message and "python -m eval.run DIR" in message
    folder.mkdir()
    (folder / "wav.scp").write_text("".join(f"{c.stem} {c}\n" for c in clips), encoding="utf-8")
    (folder / "text").write_text("".join(f"{c.stem} {t}\n" for c, t in zip(clips, TEXTS)), encoding="utf-8")
    (folder / "hotwords.txt").write_text("句话\n", encoding="utf-8")
    test_set = load_test_set("aishell1-hotword")
    assert_matches(test_set, clips)
    assert test_set.hotwords == (("句话", 1.0),)


def test_bad_paths_are_reported(tmp_path):
    with pytest.raises(DatasetUnavailable, match="neither a registered name"):
        load_test_set(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailable, match="no parquet files"):
        load_test_set(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetUnavailable, match="unsupported file type"):
        load_test_set(tmp_path / "notes.txt")
    (tmp_path / "no_text.jsonl").write_text(json.dumps({"audio": "x.wav", "label": "y"}) + "\n")
    with pytest.raises(DatasetUnavailable, match="no text column"):
        load_test_set(tmp_path / "no_text.jsonl")
