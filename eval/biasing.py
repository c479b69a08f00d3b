"""Contextual-biasing metrics: B-CER / U-CER and hotword recall, precision and F1.

B-CER and U-CER follow the deep-biasing scoring of facebookresearch/fbai-speech ``is21_deep_bias/score.py``
(Le et al., Interspeech 2021), with CJK characters as units: the reference and hypothesis are aligned once
(jiwer, as ``eval.metrics``); a reference unit inside an occurrence of a listed word is *biased*, every
other reference unit *unbiased*; its match, substitution or deletion counts toward B-CER or U-CER
accordingly; an inserted hypothesis unit counts as biased when it lies inside an occurrence of a listed word
in the hypothesis (in score.py: an inserted token that is a biasing word), else as unbiased.

    B-CER = (S+D+I over biased units) / biased reference units
    U-CER = (S+D+I over unbiased units) / unbiased reference units

Occurrences are found on the normalized unit sequences (``eval.normalize.to_units``), leftmost first, the
longest word first where several start at one unit, never overlapping. Recall, precision and F1 count
occurrences: per utterance and word, ``min(reference count, hypothesis count)`` are hits; recall =
hits / reference occurrences, precision = hits / hypothesis occurrences, F1 = 2 hits / (both occurrence
counts), their harmonic mean (0 when either side has occurrences but none match).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from eval.metrics import UtteranceScore, score_units
from eval.normalize import NormalizerOptions, to_units

BIASING_FIELDS = ("b_cer", "u_cer", "hotword_recall", "hotword_precision", "hotword_f1")


@dataclass(frozen=True)
class BiasingScore:
    """One utterance's biased / unbiased edit counts and hotword occurrence counts."""

    b_n: int  # reference units inside listed-word occurrences
    b_errors: int
    u_n: int
    u_errors: int
    ref_occurrences: int
    hyp_occurrences: int
    hits: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BiasingSummary(BiasingScore):
    """Corpus figures (rates as fractions; None where their denominator is 0) beside the summed counts."""

    b_cer: float | None
    u_cer: float | None
    hotword_recall: float | None
    hotword_precision: float | None
    hotword_f1: float | None


def word_units(words, options: NormalizerOptions = NormalizerOptions(), metric: str = "cer") -> list[tuple[str, ...]]:
    """The listed words as normalized unit tuples, longest first, duplicates and empty words dropped."""
    units = {tuple(to_units(word, options, metric)) for word in words}
    return sorted((u for u in units if u), key=lambda u: (-len(u), u))


def find_occurrences(units: list[str], words: list[tuple[str, ...]]) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(start, end, word)`` of each non-overlapping occurrence in ``units``: leftmost first, and the longest
    word where several start at the same unit (``words`` as ``word_units`` returns them)."""
    found, position = [], 0
    while position < len(units):
        word = next((w for w in words if tuple(units[position:position + len(w)]) == w), None)
        if word is None:
            position += 1
        else:
            found.append((position, position + len(word), word))
            position += len(word)
    return found


def covered(occurrences, length: int) -> list[bool]:
    inside = [False] * length
    for start, end, _ in occurrences:
        inside[start:end] = [True] * (end - start)
    return inside


def score_biasing_units(ref: list[str], hyp: list[str], words: list[tuple[str, ...]],
                        score: UtteranceScore | None = None) -> BiasingScore:
    """B/U counts of aligned unit sequences; ``score``: their alignment when already computed."""
    score = score or score_units(ref, hyp)
    ref_found, hyp_found = find_occurrences(ref, words), find_occurrences(hyp, words)
    ref_biased, hyp_biased = covered(ref_found, len(ref)), covered(hyp_found, len(hyp))
    counts = {"b_n": 0, "b_errors": 0, "u_n": 0, "u_errors": 0}
    ref_index = hyp_index = 0
    for op, _, _ in score.alignment:
        if op == "ins":
            counts["b_errors" if hyp_biased[hyp_index] else "u_errors"] += 1
        else:
            side = "b" if ref_biased[ref_index] else "u"
            counts[f"{side}_n"] += 1
            counts[f"{side}_errors"] += op != "equal"
            ref_index += 1
        hyp_index += op != "del"
    ref_counts, hyp_counts = occurrence_counts(ref_found), occurrence_counts(hyp_found)
    hits = sum(min(count, hyp_counts.get(word, 0)) for word, count in ref_counts.items())
    return BiasingScore(**counts, ref_occurrences=len(ref_found), hyp_occurrences=len(hyp_found), hits=hits)


def occurrence_counts(occurrences) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for _, _, word in occurrences:
        counts[word] = counts.get(word, 0) + 1
    return counts


def score_biasing(reference: str, hypothesis: str, words, options: NormalizerOptions = NormalizerOptions(),
                  metric: str = "cer") -> BiasingScore:
    """Normalize both texts and the listed ``words`` (strings), then count as ``score_biasing_units``."""
    return score_biasing_units(to_units(reference, options, metric), to_units(hypothesis, options, metric),
                               word_units(words, options, metric))


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarize_biasing(scores) -> BiasingSummary:
    """Corpus B-CER, U-CER, recall, precision and F1 from utterance ``BiasingScore``s (or their dicts)."""
    keys = [count.name for count in fields(BiasingScore)]
    totals = {key: 0 for key in keys}
    for score in scores:
        values = score if isinstance(score, dict) else score.to_dict()
        for key in keys:
            totals[key] += int(values[key])
    recall = ratio(totals["hits"], totals["ref_occurrences"])
    precision = ratio(totals["hits"], totals["hyp_occurrences"])
    f1 = ratio(2 * totals["hits"], totals["ref_occurrences"] + totals["hyp_occurrences"])  # harmonic mean of both
    return BiasingSummary(b_cer=ratio(totals["b_errors"], totals["b_n"]),
                          u_cer=ratio(totals["u_errors"], totals["u_n"]),
                          hotword_recall=recall, hotword_precision=precision, hotword_f1=f1, **totals)
