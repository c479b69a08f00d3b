"""Kaldi-compatible log-mel fbank + global CMVN in torch, batched, on the model's device.

The same numbers as ``audio.features`` (kaldi-native-fbank, the reference), computed for a whole
batch at once: 16 kHz float samples in [-1, 1] are int16-scaled, cut into 25 ms frames every 10 ms
(snip_edges), each frame has its DC offset removed, is pre-emphasised (0.97), windowed (povey) and
zero-padded to 512 samples; one real FFT for the batch gives the power spectrum, Kaldi's 80
triangular mel bins (20 Hz .. Nyquist) and the log with Kaldi's floor (float32 epsilon); then
``(x - mean) * istd``. No dither. Features and mel weights are float32; the frames and the FFT are
float64 because the lowest mel bins hold ~1e-8 of a frame's energy, and float32 FFT rounding moves
their log by up to 7e-3 (kaldi-native-fbank, which works in float32, is itself up to 3e-3 off the exact
log there; tests/test_features.py compares against both).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fireredasr_vllm.audio import INT16_SCALE
from fireredasr_vllm.constants import FRAME_LENGTH, FRAME_SHIFT, NUM_MEL_BINS, SAMPLE_RATE

PREEMPHASIS = 0.97
LOW_FREQ = 20.0
FFT_SIZE = 1 << (FRAME_LENGTH - 1).bit_length()  # Kaldi rounds the window up to a power of two: 512
LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's std::numeric_limits<float>::epsilon()


def povey_window() -> np.ndarray:
    """Kaldi's 'povey' window: a Hann window raised to 0.85 (float64)."""
    n = np.arange(FRAME_LENGTH)
    return (0.5 - 0.5 * np.cos(2 * math.pi * n / (FRAME_LENGTH - 1))) ** 0.85


def mel_scale(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks() -> np.ndarray:
    """(FFT_SIZE // 2, NUM_MEL_BINS) triangular filters on the mel scale, built as Kaldi's MelBanks
    (the Nyquist bin gets no weight)."""
    low, high = mel_scale(LOW_FREQ), mel_scale(SAMPLE_RATE / 2)
    delta = (high - low) / (NUM_MEL_BINS + 1)
    mel = mel_scale(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)[:, None]
    left = low + np.arange(NUM_MEL_BINS)[None, :] * delta
    center, right = left + delta, left + 2 * delta
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = np.where(mel <= center, up, down)
    return np.where((mel > left) & (mel < right), weights, 0.0)


class KaldiFbank:
    """Batched fbank + CMVN with its constants on one device."""

    def __init__(self, means, istd, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32, device=self.device)
        self.window = torch.as_tensor(povey_window(), dtype=torch.float64, device=self.device)
        self.banks = as_tensor(mel_banks())
        self.means = as_tensor(means)
        self.istd = as_tensor(istd)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, N) samples -> (B, T, FRAME_LENGTH) float64 frames, int16-scaled, DC-free, pre-emphasised,
        windowed."""
        frames = samples.to(torch.float64).unfold(-1, FRAME_LENGTH, FRAME_SHIFT) * INT16_SCALE
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        return (frames - PREEMPHASIS * previous) * self.window

    def log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, N) float samples in [-1, 1] -> (B, T, 80) log-mel fbank, T = num_frames(N)."""
        spectrum = torch.fft.rfft(self.frames(samples), n=FFT_SIZE, dim=-1)
        power = (spectrum.real.square() + spectrum.imag.square())[..., : FFT_SIZE // 2].to(torch.float32)
        return torch.clamp(power @ self.banks, min=LOG_FLOOR).log()

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, N) -> CMVN-normalised (B, T, 80) float32; frames past an item's own length are padding."""
        if samples.shape[-1] < FRAME_LENGTH:
            return torch.zeros((*samples.shape[:-1], 0, NUM_MEL_BINS), dtype=torch.float32, device=samples.device)
        return (self.log_mel(samples) - self.means) * self.istd


def features(samples: np.ndarray, means, istd) -> np.ndarray:
    """One clip on the CPU, the same contract as ``audio.features`` (tests compare the two)."""
    extractor = KaldiFbank(means, istd)
    return extractor(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None])[0].numpy()
