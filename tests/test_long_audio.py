import jiwer
import numpy as np
import pytest

from fireredasr_vllm.audio import SAMPLE_RATE, AudioError, load_audio
from workbench.long_audio import Segment, SplitOptions, join_texts, split_at_pauses, stitch
from workbench.options import Transcript

GAP_S = 0.6


@pytest.fixture(scope="module")
def clips(demo_clips) -> list[np.ndarray]:
    return [load_audio(path) for path in demo_clips]


def concatenate(clips, gap_s: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Clips joined by ``gap_s`` of silence, and where each clip lies."""
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    parts, spans, at = [], [], 0
    for clip in clips:
        spans.append((at, at + len(clip)))
        parts += [clip, gap]
        at += len(clip) + len(gap)
    return np.concatenate(parts), spans


def token_error_rate(reference: list[int], hypothesis: list[int]) -> float:
    return jiwer.wer(" ".join(map(str, reference)), " ".join(map(str, hypothesis))) if reference else float(
        bool(hypothesis))


def test_split_keeps_segments_short_covers_speech_and_cuts_in_silence(clips):
    # 15 clips back to back (only their own short pauses: cuts must be forced), 3 s of silence,
    # then 15 clips with 0.8 s gaps (one segment each).
    run_on = np.concatenate(clips[:15])
    audio = np.concatenate([run_on, np.zeros(3 * SAMPLE_RATE, np.float32), concatenate(clips[15:], GAP_S)[0]])
    segments = split_at_pauses(audio)

    longest = SplitOptions().max_seconds * SAMPLE_RATE
    assert all(0 <= a < b <= len(audio) and b - a <= longest for a, b in segments)
    assert all(b <= c for (_, b), (c, _) in zip(segments, segments[1:])), "segments overlap or are out of order"
    assert len([s for s in segments if s[1] <= len(run_on)]) >= 3, "80 s of speech needs >= 3 segments"
    assert len([s for s in segments if s[0] >= len(run_on)]) == 15

    covered = np.zeros(len(audio), bool)
    for a, b in segments:
        covered[a:b] = True
    peak = np.abs(audio).max()
    assert np.abs(audio[~covered]).max() < 0.1 * peak, "speech was left out"
    assert not covered[len(run_on) + SAMPLE_RATE:len(run_on) + 2 * SAMPLE_RATE].any(), "silence was kept"
    window = SAMPLE_RATE // 100  # 10 ms either side of every cut
    for cut in [b for _, b in segments[:-1]] + [a for a, _ in segments[1:]]:
        assert np.abs(audio[max(0, cut - window):cut + window]).max() < 0.1 * peak, f"cut in speech at {cut}"


def test_stitch_joins_in_order_and_keeps_failed_segments():
    def part(text, tokens, error=None):
        return Transcript(id="x", text=text, token_ids=tokens, output_tokens=len(tokens), prompt_tokens=10,
                          finish_reason="stop", error=error)

    ok = stitch("x", 70.0, [Segment(0, 20, part("你好", [1, 2])), Segment(21, 40, part("world", [3])),
                            Segment(41, 60, part("again", [4]))])
    assert (ok.text, ok.token_ids, ok.output_tokens, ok.prompt_tokens) == ("你好world again", [1, 2, 3, 4], 4, 30)
    failed = stitch("x", 70.0, [Segment(0, 20, part("你好", [1, 2])), Segment(21, 40, part("", [], "boom"))])
    assert not failed.ok and "21.0-40.0 s: boom" in failed.error and failed.segments[0].transcript.text == "你好"
    assert join_texts(["", "a", "b", "。c"]) == "a b。c"


def test_long_audio_matches_segmentwise_transcripts(engine, clips):
    audio, spans = concatenate(clips, GAP_S)
    assert 120 < len(audio) / SAMPLE_RATE < 180

    with pytest.raises(AudioError, match="longer than the model's 30 s limit.*long_audio=True"):
        engine.transcribe(audio, id="long")
    result = engine.transcribe(audio, id="long", long_audio=True)

    assert result.ok, result.error
    assert result.duration_s == pytest.approx(len(audio) / SAMPLE_RATE)
    # One segment per clip: each cut falls in the silence between clip k and clip k + 1.
    assert len(result.segments) == len(clips)
    for segment, (start, end) in zip(result.segments, spans):
        assert segment.start_s * SAMPLE_RATE <= start + 0.1 * SAMPLE_RATE
        assert segment.end_s * SAMPLE_RATE >= end - 0.4 * SAMPLE_RATE  # the clips end in ~0.35 s of silence
        assert segment.end_s * SAMPLE_RATE < end + GAP_S * SAMPLE_RATE
    # Each piece decodes as that stretch of audio does on its own, and the pieces are stitched in order.
    # (Per-clip references would differ by the silence around each cut, which changes the random
    # tiny model's output completely, so the reference is the exact span.)
    references = engine.transcribe_many(
        [audio[round(s.start_s * SAMPLE_RATE):round(s.end_s * SAMPLE_RATE)] for s in result.segments])
    rates = [token_error_rate(r.token_ids, s.transcript.token_ids) for r, s in zip(references, result.segments)]
    assert np.mean(rates) < 0.05, rates
    assert result.token_ids == [t for s in result.segments for t in s.transcript.token_ids]
    assert result.text == join_texts([s.transcript.text for s in result.segments])
    assert result.output_tokens == sum(s.transcript.output_tokens for s in result.segments)
    assert result.latency_s > 0 and result.prompt_tokens == sum(r.prompt_tokens for r in references)
