"""The shipped ``trained`` model (fireredasr_vllm/trained): its files are what TRAINING.json records, and it
really transcribes the bundled demo set, through vLLM and through the official PyTorch code."""

import json

import jiwer
import pytest

from fireredasr_vllm.convert import load_package, sha256
from testkit.train_tiny import (
    CORPUS, HELDOUT, TRAINED_DIR, read_lines, shipped_files, text_hash,
    training_sentences,
)

RECORD = json.loads((TRAINED_DIR / "TRAINING.json").read_text(encoding="utf-8"))
MAX_CER = 0.10


def test_shipped_files_match_training_record():
    assert shipped_files(TRAINED_DIR) == RECORD["files"]
    assert sum((TRAINED_DIR / name).stat().st_size for name in RECORD["files"]) == RECORD["size_bytes"]


def test_shipped_config_matches_recipe():
    spec = RECORD["recipe"]["spec"]
    encoder = load_package(TRAINED_DIR / "asr_encoder.pth.tar", mmap=False)["args"]
    assert (encoder.d_model, encoder.n_layers_enc, encoder.n_head, encoder.kernel_size) == (
        spec["d_model"], spec["n_layers_enc"], spec["n_head"], spec["kernel_size"])
    args = load_package(TRAINED_DIR / "model.pth.tar", mmap=False)["args"]
    assert (args.encoder_downsample_rate, args.use_lora, args.freeze_encoder) == (spec["downsample_rate"], 1, 1)
    llm = json.loads((TRAINED_DIR / "Qwen2-7B-Instruct" / "config.json").read_text())
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["vocab_size"]) == (
        spec["hidden_size"], spec["num_hidden_layers"], spec["vocab_size"])


def test_training_corpus_matches_record_and_excludes_heldout(references):
    sentences, heldout = training_sentences(), read_lines(TRAINED_DIR / HELDOUT)
    assert text_hash(sentences) == RECORD["corpus"]["train_sha256"]
    assert sha256(CORPUS) == RECORD["corpus"]["corpus_txt_sha256"]
    assert text_hash(heldout) == RECORD["corpus"]["heldout_sha256"]
    assert set(references.values()) <= set(sentences), "the bundled sentences must be in training"
    assert not set(heldout) & set(sentences)
    assert RECORD["cer"]["train_bundled"] < MAX_CER


def cer_of(references: dict[str, str], hypotheses: dict[str, str]) -> float:
    ids = sorted(references)
    return jiwer.cer([references[i] for i in ids], [hypotheses[i] for i in ids])


def test_vllm_transcribes_bundled_set(engine, demo_clips, references):
    assert engine.model_spec == "trained"  # the shared engine runs the default model
    results = engine.transcribe_many(demo_clips)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert cer_of(references, {r.id: r.text for r in results}) < MAX_CER


def test_official_pytorch_transcribes_bundled_set(demo_clips, clip_samples, references):
    from eval.official import OfficialModel

    official = OfficialModel.load(TRAINED_DIR)
    assert not official.load_result.unexpected_keys
    results = official.transcribe(clip_samples)
    assert cer_of(references, {path.stem: r["text"] for path, r in zip(demo_clips, results)}) < MAX_CER


def test_heldout_cer_through_eval_run_is_the_recorded_one(engine, tmp_path):
    """The honest number: sentences never trained on, scored by the same pipeline users run."""
    from eval.run import evaluate

    run = evaluate("demo-heldout", engine=engine, output_dir=tmp_path / "heldout", progress=False)
    assert run.summary.utterances == RECORD["corpus"]["heldout_sentences"] == 30
    assert run.summary.metric == "cer" and run.summary.error_rate == pytest.approx(RECORD["cer"]["heldout"], abs=1e-4)
