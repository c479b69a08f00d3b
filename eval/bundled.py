"""The test sets that ship inside the package: ``demo`` (30 synthesized Mandarin clips the embedded
``trained`` model learnt) and ``demo-heldout`` (30 sentences it never heard). testkit/synth.py builds them."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CLIPS = DEMO_DIR / "clips"
DEMO_PARQUET = DEMO_DIR / "data" / "test-00000-of-00001.parquet"
HELDOUT_PARQUET = DEMO_DIR / "heldout" / "test-00000-of-00001.parquet"


def read_sentences(path: Path) -> list[tuple[str, str]]:
    """``id<TAB>text`` lines."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt_id, text = line.split("\t", 1)
            rows.append((utt_id, text.strip()))
    return rows
