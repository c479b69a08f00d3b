"""Rows scored and summed in one place: a transcript's row gets its N/S/D/I (and, scored against a hotword
list, its biasing counts) from ``score_columns``, and a set of rows its ``Summary`` from ``Tally`` (eval.run's
run folders, eval.sweep's passes, the bench scripts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.biasing import score_biasing_units, summarize_biasing, word_units
from eval.metrics import CorpusScore, score_units
from eval.normalize import NormalizerOptions, to_units
from eval.records import Summary, speed

SCORE_COLUMNS = ("n", "s", "d", "i", "errors")


def score_columns(reference: str, hypothesis: str, normalizer: NormalizerOptions, metric: str,
                  hotwords: tuple[str, ...] | None = None) -> dict:
    """A row's edit counts: ``n`` reference units, ``s``/``d``/``i`` edits, ``errors`` = S+D+I; with
    ``hotwords`` (the words it is scored for biasing against), its ``BiasingScore`` counts too (b_n, u_n, ...)."""
    ref, hyp = to_units(reference, normalizer, metric), to_units(hypothesis, normalizer, metric)
    score = score_units(ref, hyp)
    columns = {"n": score.n, "s": score.s, "d": score.d, "i": score.i, "errors": score.errors}
    if hotwords is not None:
        columns |= score_biasing_units(ref, hyp, word_units(hotwords, normalizer, metric), score).to_dict()
    return columns


@dataclass
class Tally:
    """Running corpus counts and speed of rows, for a progress bar and the summary. A row with an ``error``
    counts as failed; ``timed`` rows add their duration, output tokens, latency and time to first token; rows
    scored for biasing (a ``b_n`` column) give the summary its biasing figures."""

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
    biasing: list = field(default_factory=list)  # rows scored for biasing (their b_n, u_n, ... counts)

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
        if row.get("b_n") is not None:
            self.biasing.append(row)
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
                          biasing=summarize_biasing(self.biasing) if self.biasing else None,
                          **speed(audio_seconds=self.audio_seconds, wall_seconds=wall_seconds,
                                  utterances=len(self.latencies), output_tokens=self.output_tokens,
                                  latencies=self.latencies, ttfts=self.ttfts))
