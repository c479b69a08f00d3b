"""Audio in, FireRedASR features out: decoding, resampling, validation, fbank, CMVN, token counts.

Pure functions, no vLLM. The numbers follow the official code (``fireredasr/data/asr_feat.py``):
16 kHz mono int16-scaled samples -> kaldi-native-fbank (80 bins, 25/10 ms, povey, dither 0,
snip_edges) -> global CMVN from ``cmvn.ark``.
"""

from __future__ import annotations

import codecs
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import av
import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import soundfile as sf
import soxr

from fireredasr_vllm.constants import (DEFAULT_MAX_SECONDS, DOWNSAMPLE_RATE, FRAME_LENGTH, FRAME_SHIFT,
                                       NUM_MEL_BINS, SAMPLE_RATE)

INT16_SCALE = 32768.0  # int16 samples <-> float [-1, 1]; the official fbank takes int16-scaled values
DEFAULT_MAX_LONG_AUDIO_SECONDS = 3600.0  # long-audio mode (the workbench's --max-audio-minutes 60)
DECODE_BLOCK = 1 << 16  # frames decoded and resampled at a time: memory is one block + the 16 kHz output
UNKNOWN_FRAMES = 2 ** 63 - 1  # libsndfile's SF_COUNT_MAX: no length in the header (e.g. streamed FLAC)
TEXT_SNIFF_BYTES = 512  # how much of an undecodable file is looked at to tell text from binary

AudioInput = Union[str, Path, bytes, bytearray, np.ndarray, "torch.Tensor", tuple]  # noqa: F821


class AudioError(ValueError):
    """Input that cannot be transcribed; the message names the problem and the fix."""


def num_frames(num_samples: int) -> int:
    """Kaldi frames with snip_edges: 1 + (N - 400) // 160, or 0."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def num_encoder_frames(frames: int) -> int:
    """Encoder length after Conv2d subsampling, as the official mask arithmetic gives it."""
    return math.ceil(math.ceil(frames / 2) / 2)


def num_speech_tokens(num_samples: int, downsample_rate: int = DOWNSAMPLE_RATE) -> int:
    """Adapter frames = speech placeholders for a clip of ``num_samples`` 16 kHz samples."""
    return num_encoder_frames(num_frames(num_samples)) // downsample_rate


def min_samples(downsample_rate: int = DOWNSAMPLE_RATE) -> int:
    """Shortest clip that yields one speech token."""
    n = FRAME_LENGTH
    while num_speech_tokens(n, downsample_rate) < 1:
        n += FRAME_SHIFT
    return n


def too_long(name: str, seconds: float, max_seconds: float, *, long_audio: bool = False,
             stopped: bool = False) -> AudioError:
    """The error for a clip over a duration limit (the model's, or long-audio mode's); ``stopped``: decoding
    stopped at ``seconds``, the file is longer still."""
    length = f"{seconds / 60:.1f} min" if long_audio else f"{seconds:.1f} s"
    if long_audio:
        limit = f"the {max_seconds / 60:g} min limit of long-audio mode"
        fix = ("split it first (the limit: --max-audio-minutes of the workbench, "
               "VLLM_MAX_AUDIO_DECODE_DURATION_S of fireredasr-serve)")
    else:
        limit = f"the model's {max_seconds:g} s limit"
        fix = "split it first or use long-audio mode (long_audio=True / --long-audio)"
    if stopped:
        return AudioError(f"{name}: longer than {limit} (decoding stopped at {length}); {fix}")
    return AudioError(f"{name}: {length} is longer than {limit}; {fix}")


class _Decoded:
    """16 kHz mono float32 output, filled block by block: each block is downmixed and resampled as it
    arrives (a decoder never holds more than one block at the source rate), and decoding is refused as
    soon as the output passes ``max_seconds``."""

    def __init__(self, name: str, rate: int, expected_seconds: float | None, max_seconds: float | None,
                 long_audio: bool):
        if rate <= 0:
            raise AudioError(f"{name}: invalid sample rate {rate}")
        self.name, self.max_seconds, self.long_audio = name, max_seconds, long_audio
        self.resampler = None if rate == SAMPLE_RATE else _resampler(rate)
        seconds = expected_seconds or min(max_seconds or DEFAULT_MAX_SECONDS, DEFAULT_MAX_SECONDS)
        self.buffer = np.empty(int(seconds * SAMPLE_RATE) + DECODE_BLOCK, np.float32)
        self.samples = 0

    def add(self, block: np.ndarray, *, last: bool = False) -> None:
        """``block``: (frames, channels) float32 at the source rate."""
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if not np.all(np.isfinite(mono)):
            raise AudioError(f"{self.name}: contains NaN or infinite samples")
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last)
        end = self.samples + len(mono)
        if self.max_seconds and end > self.max_seconds * SAMPLE_RATE:
            raise too_long(self.name, end / SAMPLE_RATE, self.max_seconds, long_audio=self.long_audio,
                           stopped=True)
        if end > len(self.buffer):  # the header under-stated the length
            grown = np.empty(max(end, 2 * len(self.buffer)), np.float32)
            grown[:self.samples] = self.buffer[:self.samples]
            self.buffer = grown
        self.buffer[self.samples:end] = mono
        self.samples = end

    def result(self) -> np.ndarray:
        if self.resampler is not None:
            self.add(np.zeros((0, 1), np.float32), last=True)
        return self.buffer[:self.samples]


def _resampler(rate: int):
    return soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")  # = soxr.resample, in blocks


def _decode(source: Path | bytes, name: str, max_seconds: float | None, long_audio: bool) -> np.ndarray:
    """A file or encoded bytes -> 16 kHz mono; the duration in the header is checked before decoding."""
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes)")

    def opened():
        return source if isinstance(source, Path) else io.BytesIO(source)

    try:
        sound = sf.SoundFile(opened())
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:  # mp3 in some builds, m4a/aac: PyAV
        samples = _decode_with_pyav(opened(), name, max_seconds, long_audio)
        if samples is not None:
            return samples
        head = source[:TEXT_SNIFF_BYTES] if isinstance(source, bytes) else _head(source)
        kind = "text, not audio" if _looks_like_text(head) else \
            (getattr(sf_error, "error_string", "") or "unrecognised format").rstrip(".")
        raise AudioError(f"{name}: cannot decode as audio ({kind})") from None
    with sound:
        known = 0 < sound.frames < UNKNOWN_FRAMES and sound.samplerate > 0
        seconds = sound.frames / sound.samplerate if known else None
        if max_seconds and seconds and seconds > max_seconds:
            raise too_long(name, seconds, max_seconds, long_audio=long_audio)
        decoded = _Decoded(name, sound.samplerate, seconds, max_seconds, long_audio)
        try:
            for block in sound.blocks(DECODE_BLOCK, dtype="float32", always_2d=True):
                decoded.add(block)
        except sf.LibsndfileError as error:
            raise AudioError(f"{name}: cannot decode as audio (corrupt after "
                             f"{decoded.samples / SAMPLE_RATE:.1f} s: {error.error_string})") from None
    return decoded.result()


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(TEXT_SNIFF_BYTES)


def _looks_like_text(data: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data)  # a character cut at the end is fine
        return True
    except UnicodeDecodeError:
        return False


def _decode_with_pyav(file, name: str, max_seconds: float | None, long_audio: bool) -> np.ndarray | None:
    """Formats libsndfile lacks, frame by frame after the container's duration is checked (when it has
    one); None when FFmpeg finds no audio in it either."""
    try:
        container = av.open(file if isinstance(file, io.BytesIO) else str(file))
    except (av.FFmpegError, ValueError, OSError):
        return None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = container.duration / av.time_base if container.duration else None
        if max_seconds and seconds and seconds > max_seconds:
            raise too_long(name, seconds, max_seconds, long_audio=long_audio)
        decoded = _Decoded(name, stream.codec_context.sample_rate, seconds, max_seconds, long_audio)
        try:
            for frame in container.decode(stream):
                decoded.add(_frame_samples(frame))
        except av.FFmpegError:
            if not decoded.samples:
                return None
            raise AudioError(f"{name}: cannot decode as audio (corrupt after "
                             f"{decoded.samples / SAMPLE_RATE:.1f} s)") from None
    return decoded.result() if decoded.samples else None


def _frame_samples(frame) -> np.ndarray:
    """One PyAV frame -> (samples, channels) float32."""
    array = frame.to_ndarray()
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    channels = len(frame.layout.channels) or 1
    # PyAV gives (channels, samples) for planar and (1, samples * channels) for packed formats
    return (array.reshape(-1, channels) if array.shape[0] != channels else array.T).astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (no torchaudio)."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32)


def load_audio(source: AudioInput, sample_rate: int | None = None, *, name: str | None = None,
               max_seconds: float | None = None, long_audio: bool = False) -> np.ndarray:
    """Any input -> float32 mono samples in [-1, 1] at 16 kHz.

    ``source``: a path, encoded bytes (wav/flac/ogg/mp3/m4a...), a numpy array or torch tensor of
    samples (``sample_rate`` required unless 16 kHz; int16 arrays are scaled), or ``(array, rate)``.
    Multi-channel audio is averaged to mono. ``max_seconds``: refuse longer inputs, from the file's
    header before decoding and while decoding (a header can lie), so memory stays bounded by the limit;
    ``long_audio`` only words that refusal for long-audio mode.
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
        return _decode(path, label, max_seconds, long_audio)
    if isinstance(source, (bytes, bytearray)):
        return _decode(bytes(source), label, max_seconds, long_audio)
    samples, rate = _array_samples(source), sample_rate or SAMPLE_RATE
    if samples.ndim == 2:
        samples = samples.mean(axis=1) if samples.shape[1] <= 8 else samples.mean(axis=0)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{label}: contains NaN or infinite samples")
    if rate <= 0:
        raise AudioError(f"{label}: invalid sample rate {rate}")
    if max_seconds and len(samples) / rate > max_seconds:
        raise too_long(label, len(samples) / rate, max_seconds, long_audio=long_audio)
    return resample(np.ascontiguousarray(samples, dtype=np.float32), int(rate))


def _array_samples(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == np.int16:
        return array.astype(np.float32) / INT16_SCALE
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if array.ndim == 2 and array.shape[0] <= 8 < array.shape[1]:
        array = array.T  # (channels, samples) -> (samples, channels)
    return array.astype(np.float32)


def check_duration(samples: np.ndarray, *, max_seconds: float = DEFAULT_MAX_SECONDS,
                   downsample_rate: int = DOWNSAMPLE_RATE, name: str = "audio") -> None:
    """Raise AudioError for clips the model cannot take (too short to give a token, too long)."""
    n = len(samples)
    if n == 0:
        raise AudioError(f"{name}: contains 0 samples")
    shortest = min_samples(downsample_rate)
    if n < shortest:
        raise AudioError(f"{name}: {1000 * n / SAMPLE_RATE:.1f} ms is too short; the model needs at least "
                         f"{1000 * shortest / SAMPLE_RATE:.0f} ms of audio (one speech token)")
    if max_seconds and n > max_seconds * SAMPLE_RATE:
        raise too_long(name, n / SAMPLE_RATE, max_seconds)


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz samples as float WAV: a server decodes exactly these samples."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def fbank(samples: np.ndarray) -> np.ndarray:
    """80-dim log-mel fbank (T, 80) of int16-scaled samples, exactly the official options."""
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
    feats = fbank(np.asarray(samples, dtype=np.float32) * INT16_SCALE)
    return ((feats - means) * istd).astype(np.float32)


def read_kaldi_table(path: Path) -> Iterator[tuple[int, str, str]]:
    """A Kaldi table (``wav.scp``, ``text``): ``(line number, key, value)`` for each non-blank line, the
    value stripped and ``""`` when the line holds only a key."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split(maxsplit=1)
        if fields:
            yield number, fields[0], fields[1].strip() if len(fields) > 1 else ""


def is_kaldi_pipe_or_ark(spec: str) -> bool:
    """A ``wav.scp`` value that is a command (``cmd |``) or an archive offset (``file.ark:123``), not a path."""
    spec = spec.strip()
    return spec.endswith("|") or spec.startswith("|") or bool(re.search(r"\.ark:\d+$", spec))


def load_kaldi_audio(spec: str) -> tuple[np.ndarray, int]:
    """Run a ``wav.scp`` command or read an archive offset (kaldiio): ``(samples, rate)``."""
    rate, samples = kaldiio.load_mat(spec.strip())
    return samples, rate
