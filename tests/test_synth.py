"""testkit.synth: the bundled sets are exactly what the synthesizer makes from their sentences."""

import pyarrow.parquet as pq

from testkit.synth import DEMO_DIR, DEMO_PARQUET, HELDOUT_PARQUET, build_set, heldout_sentences, read_sentences


def audio_bytes(parquet) -> dict[str, bytes]:
    table = pq.read_table(parquet).to_pylist()
    return {row["id"]: row["audio"]["bytes"] for row in table}


def test_rebuilding_gives_the_bundled_bytes(tmp_path):
    demo = read_sentences(DEMO_DIR / "sentences.txt")[:2]
    heldout = heldout_sentences()[:2]
    rebuilt = audio_bytes(build_set(demo + heldout, tmp_path / "x.parquet", clip_dir=tmp_path / "clips"))
    bundled = audio_bytes(DEMO_PARQUET) | audio_bytes(HELDOUT_PARQUET)
    assert rebuilt == {utt_id: bundled[utt_id] for utt_id, _ in demo + heldout}
    for utt_id, _ in demo:
        flac = f"{utt_id}.flac"
        assert (tmp_path / "clips" / flac).read_bytes() == (DEMO_DIR / "clips" / flac).read_bytes()


def test_heldout_set_has_the_model_heldout_sentences():
    texts = {row["id"]: row["text"] for row in pq.read_table(HELDOUT_PARQUET, columns=["id", "text"]).to_pylist()}
    assert texts == dict(heldout_sentences()) and len(texts) == 30
    assert not set(texts.values()) & {text for _, text in read_sentences(DEMO_DIR / "sentences.txt")}
