"""The test sets that ship inside the package: ``demo`` (30 synthesized Mandarin clips the embedded
``trained`` model learnt) and ``demo-heldout`` (30 sentences it never heard), built by testkit/synth.py, and
``demo-hotword`` / ``demo-hotword-100``: the demo-heldout clips with hotword lists (testkit/hotword_set.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CLIPS = DEMO_DIR / "clips"
DEMO_PARQUET = DEMO_DIR / "data" / "test-00000-of-00001.parquet"
HELDOUT_PARQUET = DEMO_DIR / "heldout" / "test-00000-of-00001.parquet"
HOTWORD_DIR = DEMO_DIR / "hotword"  # demo-hotword's lists (testkit/hotword_set.py)
HOTWORD_LIST_10 = HOTWORD_DIR / "hotwords.txt"
HOTWORD_LIST_100 = HOTWORD_DIR / "hotwords_100.txt"
LONG_RECORDING_CLIPS, LONG_RECORDING_PAUSE_S = 8, 1.5  # the long recording: 8 sentences, 57 s


def read_sentences(path: Path) -> list[tuple[str, str]]:
    """``id<TAB>text`` lines."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt_id, text = line.split("\t", 1)
            rows.append((utt_id, text.strip()))
    return rows


def long_recording() -> tuple[np.ndarray, list[str]]:
    """The long recording: the first 8 demo clips, each after 1.5 s of silence, and 1.5 s at the end (57 s of
    16 kHz float32 samples, over the model's 30 s limit), and the 8 sentences it says."""
    paths = sorted(DEMO_CLIPS.glob("*.flac"))[:LONG_RECORDING_CLIPS]
    clips = [sf.read(path, dtype="float32") for path in paths]  # (samples, 16000)
    pause = np.zeros(int(LONG_RECORDING_PAUSE_S * clips[0][1]), np.float32)
    texts = dict(read_sentences(DEMO_DIR / "sentences.txt"))
    return (np.concatenate([part for samples, _ in clips for part in (pause, samples)] + [pause]),
            [texts[path.stem] for path in paths])
