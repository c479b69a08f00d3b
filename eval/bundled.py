"""The test sets that ship inside the package: ``demo`` (30 synthesized Mandarin clips the embedded
``trained`` model learnt) and ``demo-heldout`` (30 sentences it never heard), built by testkit/synth.py, and
``demo-hotword`` / ``demo-hotword-100``: the demo-heldout clips with hotword lists (testkit/hotword_set.py)."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CLIPS = DEMO_DIR / "clips"
DEMO_PARQUET = DEMO_DIR / "data" / "test-00000-of-00001.parquet"
HELDOUT_PARQUET = DEMO_DIR / "heldout" / "test-00000-of-00001.parquet"
HOTWORD_DIR = DEMO_DIR / "hotword"  # demo-hotword's lists (testkit/hotword_set.py)
HOTWORD_LIST_10 = HOTWORD_DIR / "hotwords.txt"
HOTWORD_LIST_100 = HOTWORD_DIR / "hotwords_100.txt"


def read_sentences(path: Path) -> list[tuple[str, str]]:
    """``id<TAB>text`` lines."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt_id, text = line.split("\t", 1)
            rows.append((utt_id, text.strip()))
    return rows
