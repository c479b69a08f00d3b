"""fireredasr_vllm.features (torch, batched) against kaldi-native-fbank (audio.features, the reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fireredasr_vllm import audio, features
from fireredasr_vllm.model import FireRedFrontend, host_batch
from fireredasr_vllm.resolve import resolve_model

CLIPS = sorted((Path(__file__).resolve().parents[1] / "eval" / "demo" / "clips").glob("*.flac"))
# kaldi-native-fbank runs the frame arithmetic in float32: on these inputs it is up to 1.5e-3 (after CMVN)
# away from the exact result in its lowest mel bins, which hold ~1e-8 of a frame's energy. Ours matches
# the exact (float64) pipeline to 1e-5 on every input (test_exact_arithmetic), so the reference's own
# rounding sets the bound against it.
MAX_DIFF = 2e-3
MEAN_DIFF = 2e-5
# A clip recorded at 8 kHz has no energy above 4 kHz: there kaldi-native-fbank's float32 rounding noise
# is all there is (0.05 away from exact after CMVN), so it is compared below 3.8 kHz only.
_TOP_FFT_BIN = features.FFT_SIZE // 2 - 1 - np.argmax(features.mel_banks()[::-1] > 0, axis=0)
BINS_BELOW_3K8 = int(np.sum(_TOP_FFT_BIN * audio.SAMPLE_RATE / features.FFT_SIZE < 3800))


@pytest.fixture(scope="module")
def cmvn():
    fire = json.loads((resolve_model("trained") / "config.json").read_text())["fireredasr"]
    return np.array(fire["cmvn_means"]), np.array(fire["cmvn_istd"])


def odd_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    speech = sf.read(CLIPS[0], dtype="float32")[0]
    at_8k = speech[::2].copy()  # the clip as an 8 kHz recording, resampled back as the loader does
    return {
        "10 ms": rng.normal(0, 0.1, 160).astype(np.float32),
        "shortest valid": speech[: audio.min_samples()],
        "one frame": speech[: audio.FRAME_LENGTH],
        "silence": np.zeros(16000, np.float32),
        "clipped full scale": np.clip(rng.normal(0, 2.0, 16000), -1.0, 1.0).astype(np.float32),
        "8 kHz resampled": audio.resample(at_8k, 8000),
        "30 s": np.tile(speech, 30 * 16000 // len(speech) + 1)[: 30 * 16000],
    }


def exact(samples: np.ndarray, cmvn) -> np.ndarray:
    """The same pipeline in float64 throughout, numpy's FFT (independent of torch)."""
    scaled = samples.astype(np.float64) * features.INT16_SCALE
    if len(scaled) < audio.FRAME_LENGTH:
        return np.zeros((0, audio.NUM_MEL_BINS))
    frames = np.lib.stride_tricks.sliding_window_view(scaled, audio.FRAME_LENGTH)[:: audio.FRAME_SHIFT]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - features.PREEMPHASIS * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(frames * features.povey_window(), features.FFT_SIZE)) ** 2
    mel = power[:, : features.FFT_SIZE // 2] @ features.mel_banks()
    return (np.log(np.maximum(mel, features.LOG_FLOOR)) - cmvn[0]) * cmvn[1]


def assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    if reference.size:
        difference = np.abs(ours - reference)
        assert difference.max() <= MAX_DIFF and difference.mean() <= MEAN_DIFF, (difference.max(), difference.mean())


@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.stem)
def test_bundled_clips_match_kaldi_native_fbank(clip, cmvn):
    samples = sf.read(clip, dtype="float32")[0]
    assert_close(features.features(samples, *cmvn), audio.features(samples, *cmvn))


@pytest.mark.parametrize("name", list(odd_inputs()))
def test_odd_inputs_match_kaldi_native_fbank(name, cmvn):
    samples = odd_inputs()[name]
    ours, reference = features.features(samples, *cmvn), audio.features(samples, *cmvn)
    if name == "8 kHz resampled":
        ours, reference = ours[:, :BINS_BELOW_3K8], reference[:, :BINS_BELOW_3K8]
    assert_close(ours, reference)


@pytest.mark.parametrize("name", list(odd_inputs()))
def test_exact_arithmetic(name, cmvn):
    """float32 features equal the float64 pipeline on every input, every bin (8 kHz audio included)."""
    samples = odd_inputs()[name]
    ours = features.features(samples, *cmvn)
    assert ours.shape == exact(samples, cmvn).shape
    assert np.abs(ours - exact(samples, cmvn)).max(initial=0.0) < 1e-5


def test_batch_equals_one_by_one(cmvn):
    """A padded batch gives each clip its own features on its own frames (as embed_multimodal uses it)."""
    clips = [sf.read(c, dtype="float32")[0] for c in CLIPS[:4]]
    lengths = [len(c) for c in clips]
    batch = features.KaldiFbank(*cmvn)(host_batch([torch.from_numpy(c) for c in clips], lengths, pin=False))
    for row, clip in enumerate(clips):
        alone = features.features(clip, *cmvn)
        np.testing.assert_array_equal(batch[row, : len(alone)].numpy(), alone)


def test_frontend_ships_samples_and_counts():
    clip = sf.read(CLIPS[0], dtype="float32")[0]
    out = FireRedFrontend()(audio=[clip, clip[:16000]])
    assert [len(c) for c in out["input_audio"]] == [len(clip), 16000]
    assert out["input_audio"][0].dtype == torch.float32
    assert out["audio_lengths"].tolist() == [len(clip), 16000]
    assert out["fake_token_lengths"].tolist() == [audio.num_speech_tokens(len(clip)), audio.num_speech_tokens(16000)]


@pytest.mark.parametrize("samples, message", [
    (np.zeros(100, np.float32), "too short"),
    (np.zeros(31 * 16000, np.float32), "longer than the model's 30 s limit"),
    (np.full(16000, np.nan, np.float32), "NaN or infinite"),
])
def test_frontend_rejects_bad_clips_with_one_sentence(samples, message):
    with pytest.raises(audio.AudioError, match=message):
        FireRedFrontend()(audio=[samples])
