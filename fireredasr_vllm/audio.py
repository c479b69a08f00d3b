"""Audio in, FireRedASR features out: decoding, resampling, validation, fbank, CMVN, token counts.

Pure functions, no vLLM. The numbers follow the official code (``fireredasr/data/asr_feat.py``):
16 kHz mono int16-scaled samples -> kaldi-native-fbank (80 bins, 25/10 ms, povey, dither 0,
snip_edges) -> global CMVN from ``cmvn.ark``.
"""

from __future__ import annotations

import codecs
import io
import math
from pathlib import Path
from typing import Union

import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # samples (25 ms)
FRAME_SHIFT = 160  # samples (10 ms)
NUM_MEL_BINS = 80
DEFAULT_MAX_SECONDS = 30.0

AudioInput = Union[str, Path, bytes, bytearray, np.ndarray, "torch.Tensor", tuple]  # noqa: F821


class AudioError(ValueError):
    """Input that cannot be transcribed; the message names the problem and the fix."""


def num_frames(num_samples: int) -> int:
    """Kaldi frames with snip_edges: 1 + (N - 400) // 160, or 0."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def num_encoder_frames(frames: int) -> int:
    """Encoder length after Conv2d subsampling, as the official mask arithmetic gives it."""
    return math.ceil(math.ceil(frames / 2) / 2)


def num_speech_tokens(num_samples: int, downsample_rate: int = 2) -> int:
    """Adapter frames = speech placeholders for a clip of ``num_samples`` 16 kHz samples."""
    return num_encoder_frames(num_frames(num_samples)) // downsample_rate


def min_samples(downsample_rate: int = 2) -> int:
    """Shortest clip that yields one speech token."""
    n = FRAME_LENGTH
    while num_speech_tokens(n, downsample_rate) < 1:
        n += FRAME_SHIFT
    return n


def _decode_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if len(data) == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return samples, rate
    except Exception as sf_error:  # soundfile cannot read mp3 in every build, nor m4a/aac
        try:
            return _decode_with_pyav(data)
        except Exception:
            head = data[:16]
            kind = "text, not audio" if _looks_like_text(data) else f"unrecognised bytes {head!r}"
            raise AudioError(f"{name}: cannot decode as audio ({kind}): {sf_error}") from None


def _looks_like_text(data: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[:512])  # a character cut at byte 512 is fine
        return True
    except UnicodeDecodeError:
        return False


def _decode_with_pyav(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
    if not chunks:
        raise AudioError("no audio frames")
    planar = np.concatenate(chunks, axis=-1)
    if np.issubdtype(planar.dtype, np.integer):
        planar = planar.astype(np.float32) / np.iinfo(planar.dtype).max
    # pyav gives (channels, samples) for planar and (1, samples*channels) for packed formats
    channels = stream.codec_context.channels or 1
    if planar.shape[0] != channels:
        planar = planar.reshape(-1, channels).T
    return planar.T.astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (no torchaudio)."""
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32)


def load_audio(source: AudioInput, sample_rate: int | None = None, *, name: str | None = None) -> np.ndarray:
    """Any input -> float32 mono samples in [-1, 1] at 16 kHz.

    ``source``: a path, encoded bytes (wav/flac/ogg/mp3/m4a...), a numpy array or torch tensor of
    samples (``sample_rate`` required unless 16 kHz; int16 arrays are scaled), or ``(array, rate)``.
    Multi-channel audio is averaged to mono.
    """
    if isinstance(source, tuple) and len(source) == 2:
        source, sample_rate = source
    label = name or (str(source) if isinstance(source, (str, Path)) else "audio")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{path}: no such file")
        if path.is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        samples, rate = _decode_bytes(path.read_bytes(), label)
    elif isinstance(source, (bytes, bytearray)):
        samples, rate = _decode_bytes(bytes(source), label)
    else:
        samples, rate = _array_samples(source), sample_rate or SAMPLE_RATE
    if samples.ndim == 2:
        samples = samples.mean(axis=1) if samples.shape[1] <= 8 else samples.mean(axis=0)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{label}: contains NaN or infinite samples")
    if rate <= 0:
        raise AudioError(f"{label}: invalid sample rate {rate}")
    return resample(np.ascontiguousarray(samples, dtype=np.float32), int(rate))


def _array_samples(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if array.ndim == 2 and array.shape[0] <= 8 < array.shape[1]:
        array = array.T  # (channels, samples) -> (samples, channels)
    return array.astype(np.float32)


def check_duration(samples: np.ndarray, *, max_seconds: float = DEFAULT_MAX_SECONDS,
                   downsample_rate: int = 2, name: str = "audio") -> None:
    """Raise AudioError for clips the model cannot take (too short to give a token, too long)."""
    n = len(samples)
    if n == 0:
        raise AudioError(f"{name}: contains 0 samples")
    shortest = min_samples(downsample_rate)
    if n < shortest:
        raise AudioError(f"{name}: {1000 * n / SAMPLE_RATE:.1f} ms is too short; the model needs at least "
                         f"{1000 * shortest / SAMPLE_RATE:.0f} ms of audio (one speech token)")
    if max_seconds and n > max_seconds * SAMPLE_RATE:
        raise AudioError(f"{name}: {n / SAMPLE_RATE:.1f} s is longer than the model's {max_seconds:g} s "
                         "limit; split it first or use long-audio mode (long_audio=True / --long-audio)")


def fbank(samples: np.ndarray) -> np.ndarray:
    """80-dim log-mel fbank (T, 80) of int16-scaled samples, exactly the official options."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = NUM_MEL_BINS
    opts.mel_opts.debug_mel = False
    samples = np.asarray(samples)
    if samples.dtype != np.float32:
        samples = samples.astype(np.float32)
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(SAMPLE_RATE, samples)
    n = extractor.num_frames_ready
    if n == 0:
        return np.zeros((0, NUM_MEL_BINS), dtype=np.float32)
    return np.stack([extractor.get_frame(i) for i in range(n)])


def cmvn_from_stats(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi 2 x (D+1) stats -> (means, inverse std), as the official ``CMVN`` class computes them."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] != 2:
        raise ValueError(f"CMVN stats must be a 2 x (D+1) matrix, got shape {stats.shape}")
    dim = stats.shape[1] - 1
    count = stats[0, dim]
    if count < 1:
        raise ValueError(f"CMVN stats count is {count}; expected the number of frames (>= 1)")
    means = stats[0, :dim] / count
    variance = np.maximum(stats[1, :dim] / count - means * means, 1e-20)
    return means, 1.0 / np.sqrt(variance)


def features(samples: np.ndarray, means: np.ndarray, istd: np.ndarray) -> np.ndarray:
    """float [-1, 1] samples at 16 kHz -> CMVN-normalised fbank (T, 80) float32."""
    feats = fbank(np.asarray(samples, dtype=np.float32) * 32768.0)
    return ((feats - means) * istd).astype(np.float32)
