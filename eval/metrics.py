"""Error counts per utterance and per corpus, aligned with jiwer over normalized units.

Units come from ``eval.normalize.to_units`` (CJK characters + words for ``cer``, words for ``wer``);
jiwer aligns their space-joined sequences, so a unit is never split. Totals (N and S+D+I) equal the
official FireRedASR scorer's; S/D/I can split differently where several alignments tie.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field

import jiwer

from eval.normalize import NormalizerOptions, to_units

JIWER_OPS = {"equal": "equal", "substitute": "sub", "delete": "del", "insert": "ins"}
MARKS = {"equal": "", "sub": "S", "del": "D", "ins": "I"}


@dataclass(frozen=True)
class UtteranceScore:
    """Edit counts of one hypothesis against its reference, and the unit alignment.

    ``alignment`` lists ``(op, ref_unit, hyp_unit)`` with op in equal/sub/del/ins; the missing side
    of a deletion or insertion is None.
    """

    n: int
    s: int
    d: int
    i: int
    alignment: list[tuple[str, str | None, str | None]]
    errors: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "errors", self.s + self.d + self.i)


@dataclass(frozen=True)
class CorpusScore:
    """Summed counts; ``error_rate`` = (S+D+I)/N over the units of ``metric`` (characters and words for
    ``cer``, words for ``wer``)."""

    n: int
    s: int
    d: int
    i: int
    error_rate: float
    sentences: int
    sentence_errors: int
    ser: float
    metric: str = "cer"

    @classmethod
    def of_counts(cls, *, n: int, s: int, d: int, i: int, sentences: int, sentence_errors: int,
                  metric: str = "cer") -> CorpusScore:
        """The rates of summed counts; as in the official scorer, N=0 divides by 1 instead of 0."""
        return cls(n=n, s=s, d=d, i=i, error_rate=(s + d + i) / max(n, 1), sentences=sentences,
                   sentence_errors=sentence_errors, ser=sentence_errors / max(sentences, 1), metric=metric)

    def to_dict(self) -> dict:
        return asdict(self)


def score_units(ref: list[str], hyp: list[str]) -> UtteranceScore:
    """Align two unit sequences (units must not contain whitespace)."""
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    ref_words, hyp_words = out.references[0], out.hypotheses[0]
    alignment = []
    for chunk in out.alignments[0]:
        op = JIWER_OPS[chunk.type]
        refs = ref_words[chunk.ref_start_idx:chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx]
        for k in range(max(len(refs), len(hyps))):
            alignment.append((op, refs[k] if k < len(refs) else None, hyps[k] if k < len(hyps) else None))
    return UtteranceScore(len(ref), out.substitutions, out.deletions, out.insertions, alignment)


def score_utterance(reference: str, hypothesis: str, options: NormalizerOptions = NormalizerOptions(),
                    metric: str = "cer") -> UtteranceScore:
    """Normalize both texts and count the edits."""
    return score_units(to_units(reference, options, metric), to_units(hypothesis, options, metric))


def corpus_score(scores: list[UtteranceScore], metric: str = "cer") -> CorpusScore:
    """Sum utterance scores (see ``CorpusScore.of_counts``)."""
    s, d, i = (sum(getattr(score, op) for score in scores) for op in "sdi")
    return CorpusScore.of_counts(n=sum(score.n for score in scores), s=s, d=d, i=i, sentences=len(scores),
                                 sentence_errors=sum(score.errors > 0 for score in scores), metric=metric)


def score_corpus(refs: list[str], hyps: list[str], options: NormalizerOptions = NormalizerOptions(),
                 metric: str = "cer") -> CorpusScore:
    """Corpus error rate of paired references and hypotheses."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return corpus_score([score_utterance(r, h, options, metric) for r, h in zip(refs, hyps)], metric)


def display_width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_alignment(alignment: list[tuple[str, str | None, str | None]]) -> str:
    """Three aligned lines for reports: REF, HYP (``*`` fills a missing side) and S/D/I markers."""
    ref_line, hyp_line, mark_line = ["REF:"], ["HYP:"], ["    "]
    for op, ref, hyp in alignment:
        width = max(display_width(ref or "*"), display_width(hyp or "*"))
        for line, unit in ((ref_line, ref or "*" * width), (hyp_line, hyp or "*" * width),
                           (mark_line, MARKS[op])):
            line.append(unit + " " * (width - display_width(unit)))
    return "\n".join(" ".join(line).rstrip() for line in (ref_line, hyp_line, mark_line))
