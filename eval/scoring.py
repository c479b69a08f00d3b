"""Rows scored and summed in one place: a transcript's row gets its N/S/D/I from ``score_columns``, and a set
of rows its ``Summary`` from ``Tally`` (eval.run's run folders, eval.sweep's passes, the bench scripts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.metrics import CorpusScore, score_utterance
from eval.normalize import NormalizerOptions
from eval.records import Summary, speed

SCORE_COLUMNS = ("n", "s", "d", "i", "errors")


def score_columns(reference: str, hypothesis: str, normalizer: NormalizerOptions, metric: str) -> dict:
    """A row's edit counts: ``n`` reference units, ``s``/``d``/``i`` edits, ``errors`` = S+D+I."""
    score = score_utterance(reference, hypothesis, normalizer, metric)
    return {"n": score.n, "s": score.s, "d": score.d, "i": score.i, "errors": score.errors}


@dataclass
class Tally:
    """Running corpus counts and speed of rows, for a progress bar and the summary. A row with an ``error``
    counts as failed; ``timed`` rows add their duration, output tokens, latency and time to first token."""

    n: int = 0
    s: int = 0
    d: int = 0
    i: int = 0
    sentences: int = 0
    sentence_errors: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    output_tokens: int = 0
    latencies: list = field(default_factory=list)
    ttfts: list = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[dict], timed: bool = True) -> Tally:
        tally = cls()
        for row in rows:
            tally.add(row, timed)
        return tally

    def add(self, row: dict, timed: bool) -> None:
        if row.get("error"):
            self.failed += 1
            return
        self.n, self.s, self.d, self.i = (self.n + row["n"], self.s + row["s"], self.d + row["d"], self.i + row["i"])
        self.sentences += 1
        self.sentence_errors += int(row["errors"] > 0)
        if timed:
            self.audio_seconds += row["duration"] or 0.0
            self.output_tokens += row["output_tokens"] or 0
            self.latencies.append(row["latency_s"])
            self.ttfts.append(row["ttft_s"])

    def corpus(self, metric: str) -> CorpusScore:
        return CorpusScore.of_counts(n=self.n, s=self.s, d=self.d, i=self.i, sentences=self.sentences,
                                     sentence_errors=self.sentence_errors, metric=metric)

    def summary(self, metric: str, wall_seconds: float) -> Summary:
        return Summary.of(self.corpus(metric), failed=self.failed, timed_utterances=len(self.latencies),
                          **speed(audio_seconds=self.audio_seconds, wall_seconds=wall_seconds,
                                  utterances=len(self.latencies), output_tokens=self.output_tokens,
                                  latencies=self.latencies, ttfts=self.ttfts))
