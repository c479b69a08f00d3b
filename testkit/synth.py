"""Synthesized Mandarin speech (espeak-ng voice ``cmn`` + sox) and the bundled ``demo`` and
``demo-heldout`` test sets (the second: sentences the embedded trained model never heard).

The demo set is stored the way public sets are on the Hugging Face hub: one parquet file with an
``audio`` struct column (``bytes`` = FLAC, ``path``) and a ``text`` column, plus the FLAC clips
themselves for people who want to listen. Everything here is deterministic: same input, same bytes.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from eval.bundled import DEMO_DIR, DEMO_PARQUET, HELDOUT_PARQUET, read_sentences
from fireredasr_vllm.audio import SAMPLE_RATE
from fireredasr_vllm.resolve import TRAINED_DIR

HELDOUT_TEXT = TRAINED_DIR / "heldout.txt"


def require_tools() -> None:
    """Fail with the install command when espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found; install with: apt-get install -y espeak-ng sox"
        )


def synthesize(text: str, *, speed: int = 160, pitch: int = 50, tempo: float = 1.0) -> np.ndarray:
    """Speak ``text`` with espeak-ng ``cmn`` and return 16 kHz mono int16 samples."""
    require_tools()
    wav22k = subprocess.run(
        ["espeak-ng", "-v", "cmn", "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    effects = ["rate", "-v", str(SAMPLE_RATE)] + (["tempo", f"{tempo:.3f}"] if tempo != 1.0 else [])
    raw = subprocess.run(
        ["sox", "-R", "-t", "wav", "-", "-D", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-", *effects],
        input=wav22k, check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").copy()


def flac_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode int16 samples as FLAC."""
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_parquet(rows: list[dict], path: Path) -> None:
    """Write rows with ``id``, ``audio`` ({bytes, path}), ``text``, ``duration`` in the hub layout."""
    # Built as a plain struct, then cast: encoding through the Audio feature would need torchcodec.
    features = datasets.Features({
        "id": datasets.Value("string"),
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "text": datasets.Value("string"),
        "duration": datasets.Value("float32"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_list(rows, features=features)
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=SAMPLE_RATE, decode=False))
    ds.to_parquet(str(path))


def build_set(sentences: list[tuple[str, str]], parquet: Path, clip_dir: Path | None = None) -> Path:
    """Synthesize ``(id, text)`` pairs into ``parquet`` (hub layout) and, with ``clip_dir``, FLAC files."""
    rows = []
    for utt_id, text in sentences:
        samples = synthesize(text)
        data = flac_bytes(samples)
        if clip_dir is not None:
            clip_dir.mkdir(parents=True, exist_ok=True)
            (clip_dir / f"{utt_id}.flac").write_bytes(data)
        rows.append({"id": utt_id, "audio": {"bytes": data, "path": f"{utt_id}.flac"},
                     "text": text, "duration": len(samples) / SAMPLE_RATE})
    write_parquet(rows, parquet)
    return parquet


def build_demo_set(out_dir: Path = DEMO_DIR) -> Path:
    """The bundled clips from ``sentences.txt``: FLAC files and the parquet file."""
    return build_set(read_sentences(out_dir / "sentences.txt"), out_dir / "data" / DEMO_PARQUET.name,
                     clip_dir=out_dir / "clips")


def heldout_sentences() -> list[tuple[str, str]]:
    """The trained model's held-out sentences (never trained on), as ``(id, text)``."""
    lines = [line.strip() for line in HELDOUT_TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(f"heldout_{i:03d}", text) for i, text in enumerate(lines)]


def build_heldout_set() -> Path:
    """``demo-heldout``: the held-out sentences in the bundled clips' voice (parquet only)."""
    return build_set(heldout_sentences(), HELDOUT_PARQUET)


if __name__ == "__main__":
    print(build_demo_set())
    print(build_heldout_set())
