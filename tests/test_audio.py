"""fireredasr_vllm.audio: every input kind -> 16 kHz mono float32, clear errors, official token counts."""

import io
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from fireredasr_vllm import audio

TONE_HZ = 440.0


def tone(rate: int, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int = audio.SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype="VORBIS" if fmt == "OGG" else None)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_encoded_formats_from_path_and_bytes(fmt, tmp_path):
    data = encode(tone(16000), 16000, fmt)
    path = tmp_path / f"tone.{fmt.lower()}"
    path.write_bytes(data)
    for source in (path, str(path), data):
        samples = audio.load_audio(source)
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(len(samples) - 16000) < 2000  # mp3/ogg add encoder delay
        assert dominant_hz(samples) == pytest.approx(TONE_HZ, abs=2)
    if fmt in ("WAV", "FLAC"):  # lossless: the same samples back (16-bit quantisation)
        np.testing.assert_allclose(audio.load_audio(data), tone(16000), atol=1 / 32768)


def m4a_tone(rate: int, seconds: float = 1.0) -> bytes:
    """``tone(rate, seconds)`` as AAC in an MP4 container (what phones record)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(rate, seconds)[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def test_m4a_goes_through_pyav():
    samples = audio.load_audio(m4a_tone(48000))
    assert abs(len(samples) - 16000) < 1000 and dominant_hz(samples) == pytest.approx(TONE_HZ, abs=2)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampled_to_16k(rate, tmp_path):
    path = tmp_path / f"tone{rate}.wav"
    subprocess.run(["sox", "-n", "-r", str(rate), "-b", "16", "-c", "1", str(path),
                    "synth", "1", "sine", str(TONE_HZ), "vol", "0.3"], check=True)
    for samples in (audio.load_audio(path), audio.load_audio(tone(rate), rate), audio.load_audio((tone(rate), rate))):
        assert len(samples) == 16000
        assert dominant_hz(samples) == pytest.approx(TONE_HZ, abs=2)
        assert 0.25 < np.abs(samples).max() < 0.35


def test_stereo_is_averaged(tmp_path):
    left = tone(16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load_audio(path), left / 2, atol=1e-6)
    np.testing.assert_allclose(audio.load_audio(stereo), left / 2, atol=1e-6)  # (samples, channels)
    np.testing.assert_allclose(audio.load_audio(stereo.T), left / 2, atol=1e-6)  # (channels, samples)


def test_int16_arrays_and_tensors():
    ints = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_array_equal(audio.load_audio(ints), ints.astype(np.float32) / 32768)
    np.testing.assert_array_equal(audio.load_audio(torch.from_numpy(ints)), ints.astype(np.float32) / 32768)
    floats = tone(16000)
    np.testing.assert_array_equal(audio.load_audio(torch.from_numpy(floats)), floats)
    assert len(audio.load_audio((torch.from_numpy(tone(8000)), 8000))) == 16000


@pytest.mark.parametrize("source, message", [
    (b"", "empty"),
    (np.random.default_rng(0).integers(128, 256, 4000, dtype=np.uint8).tobytes(), "cannot decode"),
    ("hello, this is a text file\n".encode(), "text, not audio"),
    (np.array([0.0, np.nan, 0.1], dtype=np.float32), "NaN"),
])
def test_bad_inputs_name_the_problem(source, message):
    with pytest.raises(audio.AudioError, match=message):
        audio.load_audio(source)


def test_bad_paths(tmp_path):
    with pytest.raises(audio.AudioError, match="no such file"):
        audio.load_audio(tmp_path / "missing.wav")
    with pytest.raises(audio.AudioError, match="is a directory"):
        audio.load_audio(tmp_path)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(audio.AudioError, match="notes.wav.*text, not audio"):
        audio.load_audio(text)


def test_block_decoding_equals_decoding_at_once(tmp_path):
    """Several blocks of 44.1 kHz stereo, down-mixed and resampled as they arrive = the whole file at once."""
    rate = 44100
    left, right = tone(rate, seconds=5.0), tone(rate, seconds=5.0, amplitude=0.1)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_24")
    assert sf.info(path).frames > 3 * audio.DECODE_BLOCK
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_allclose(audio.load_audio(path), audio.resample(whole.mean(axis=1), rate), atol=1e-6)


def test_too_long_is_refused_from_the_header(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(40 * 8000, np.int16), 8000)
    with pytest.raises(audio.AudioError, match=r"long.wav: 40\.0 s is longer than the model.s 30 s limit; split"):
        audio.load_audio(path, max_seconds=30)
    with pytest.raises(audio.AudioError, match=r"0\.7 min is longer than the 0\.5 min limit of long-audio mode"):
        audio.load_audio(path, max_seconds=30, long_audio=True)
    with pytest.raises(audio.AudioError, match="40.0 s is longer"):
        audio.load_audio(np.zeros(40 * 16000, np.float32), max_seconds=30)
    assert len(audio.load_audio(path, max_seconds=40)) == 40 * 16000


def test_too_long_m4a_is_refused_from_its_container(tmp_path):
    with pytest.raises(audio.AudioError, match=r"clip.m4a: 3\.\d s is longer than the model's 2 s limit"):
        audio.load_audio(m4a_tone(16000, seconds=3.0), name="clip.m4a", max_seconds=2)


@pytest.mark.parametrize("data", [
    np.random.default_rng(0).integers(128, 256, 4000, dtype=np.uint8).tobytes(),
    b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00",  # a truncated WAV header
    b"fLaC\x00\x00\x00\x22" + bytes(range(200, 250)),  # a FLAC signature, then garbage
])
def test_errors_show_no_bytes_and_no_object_reprs(data, tmp_path):
    path = tmp_path / "upload.wav"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(audio.AudioError) as error:
            audio.load_audio(source, name="upload.wav")
        message = str(error.value)
        assert message.startswith("upload.wav: cannot decode as audio")
        assert not any(internal in message for internal in ("b'", 'b"', "0x", "<_io", "object at", "\\x")), message


def test_duration_limits():
    shortest = audio.min_samples()
    audio.check_duration(np.zeros(shortest, np.float32))
    with pytest.raises(audio.AudioError, match="too short"):
        audio.check_duration(np.zeros(shortest - 1, np.float32))
    with pytest.raises(audio.AudioError, match="0 samples"):
        audio.check_duration(np.zeros(0, np.float32))
    with pytest.raises(audio.AudioError, match="longer than the model's 30 s"):
        audio.check_duration(np.zeros(30 * 16000 + 1, np.float32))
    audio.check_duration(np.zeros(30 * 16000, np.float32))


def test_speech_tokens_equal_official_adapter_length(official):
    rng = np.random.default_rng(0)
    shortest = audio.min_samples()
    for n in (shortest, shortest + 159, shortest + 160, 16000, 16037, 51234, 30 * 16000):
        samples = (0.1 * rng.standard_normal(n)).astype(np.float32)
        assert official.encode(samples).shape[0] == audio.num_speech_tokens(n), n
    assert audio.num_speech_tokens(shortest - 1) == 0


def test_features_equal_official(official):
    samples = tone(16000, seconds=2.3) + 0.01 * np.random.default_rng(1).standard_normal(36800).astype(np.float32)
    means, istd = official.feat_extractor.cmvn.means, official.feat_extractor.cmvn.inverse_std_variences
    np.testing.assert_array_equal(audio.features(samples, means, istd), official.features(samples))
    assert audio.fbank(samples * 32768).shape == (audio.num_frames(len(samples)), audio.NUM_MEL_BINS)
