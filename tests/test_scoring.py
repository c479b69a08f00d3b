"""eval/scoring.py: rows scored and summed once, for eval.run's run folders and eval.sweep's passes."""

import pytest

from eval.normalize import NormalizerOptions
from eval.scoring import SCORE_COLUMNS, Tally, score_columns


def row(reference, hypothesis, *, error=None, duration=2.0, latency=0.5, ttft=0.1, tokens=4):
    scores = dict.fromkeys(SCORE_COLUMNS) if error else score_columns(reference, hypothesis, NormalizerOptions(),
                                                                      "cer")
    return {"duration": duration, "latency_s": latency, "ttft_s": ttft, "output_tokens": tokens, "error": error,
            **scores}


def test_score_columns_count_the_edits():
    assert score_columns("今天天气好", "今天天气", NormalizerOptions(), "cer") == {"n": 5, "s": 0, "d": 1, "i": 0,
                                                                                "errors": 1}
    assert score_columns("one two three", "one too three four", NormalizerOptions(), "wer") == {
        "n": 3, "s": 1, "d": 0, "i": 1, "errors": 2}


def test_tally_sums_scored_rows_and_counts_failed_ones():
    rows = [row("今天天气好", "今天天气", latency=1.0), row("你好", "你好", latency=3.0),
            row("你好", "", error="clip.wav: too short")]
    summary = Tally.of(rows).summary("cer", wall_seconds=2.0)
    assert (summary.n, summary.s, summary.d, summary.i) == (7, 0, 1, 0)
    assert summary.error_rate == pytest.approx(1 / 7) and summary.ser == pytest.approx(1 / 2)
    assert (summary.utterances, summary.failed, summary.timed_utterances) == (2, 1, 2)
    assert summary.audio_seconds == 4.0 and summary.rtfx == 2.0 and summary.output_tokens_per_s == 4.0
    assert summary.latency_p50 == 2.0


def test_untimed_rows_count_for_accuracy_only():
    tally = Tally()
    tally.add(row("你好", "你"), timed=False)  # a row of an earlier, resumed run
    tally.add(row("你好", "你好"), timed=True)
    summary = tally.summary("cer", wall_seconds=1.0)
    assert (summary.n, summary.d, summary.utterances, summary.timed_utterances) == (4, 1, 2, 1)
    assert summary.audio_seconds == 2.0


def test_empty_references_divide_by_one_as_the_official_scorer():
    assert Tally.of([row("", "多")]).summary("cer", 1.0).error_rate == 1.0
