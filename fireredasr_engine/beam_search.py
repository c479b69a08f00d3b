"""The bookkeeping of beam search as the official decoder runs it (transformers ``generate(num_beams=N)``),
kept apart from the engine that scores the steps, so that it can be tested on scripted log-probs.

Each step, as transformers does: keep the 2N best continuations of all beams by summed log-prob (the
official repetition penalty acts on the log-probs: a seen token's is multiplied by it); an end token among
the best N finishes a hypothesis scored sum / length ** length_penalty (the length counts the end token);
the best N others run on; at ``max_tokens`` the best N all finish. Search stops once N hypotheses are
finished and the best running beam, scored at its current length, cannot beat the worst of them
(``early_stopping=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

TopLogprobs = list[tuple[int, float]]  # (token id, log-prob), best first


def penalize_logprobs(top: TopLogprobs, history: Sequence[int], penalty: float) -> TopLogprobs:
    """transformers' repetition penalty as beam search applies it: on log-probs of seen tokens."""
    if penalty == 1.0 or not history:
        return top
    seen = set(history)
    return [(tok, (lp * penalty if lp < 0 else lp / penalty) if tok in seen else lp) for tok, lp in top]


@dataclass
class BeamSearch:
    """State of one search: ``beams`` run on (tokens, summed log-prob), ``finished`` holds the best N
    (score, tokens). Drive it with ``advance(tops)`` until ``done``; ``result()`` is the best hypothesis."""

    width: int
    max_tokens: int
    eos: int | None  # None: no end token (``ignore_eos``), every hypothesis runs to ``max_tokens``
    penalty: float = 1.0  # the official repetition penalty (generated tokens only)
    length_penalty: float = 1.0
    beams: list[tuple[list[int], float]] = field(default_factory=lambda: [([], 0.0)])
    finished: list[tuple[float, list[int]]] = field(default_factory=list)
    steps: int = 0

    @property
    def done(self) -> bool:
        return not self.beams or self.steps >= self.max_tokens

    def score(self, logprob_sum: float, length: int) -> float:
        return logprob_sum / length ** self.length_penalty

    def num_logprobs(self, tokens: Sequence[int]) -> int:
        """How many top log-probs a beam needs: 2N, plus its distinct seen tokens when penalised (a
        penalised token may come from below the raw top 2N)."""
        return 2 * self.width + (len(set(tokens)) if self.penalty != 1.0 else 0)

    def advance(self, tops: Sequence[TopLogprobs]) -> None:
        """One step; ``tops[i]``: the top log-probs (at least ``num_logprobs``) after running beam ``i``."""
        keep = 2 * self.width
        candidates = sorted(((cum + lp, tokens + [tok]) for (tokens, cum), top in zip(self.beams, tops)
                             for tok, lp in penalize_logprobs(top, tokens, self.penalty)), key=lambda c: -c[0])
        self.steps += 1
        last = self.steps == self.max_tokens
        beams = []
        for rank, (cum, tokens) in enumerate(candidates[:keep]):
            if last or tokens[-1] == self.eos:
                if rank < self.width:
                    self.finished.append((self.score(cum, len(tokens)), tokens))
            elif len(beams) < self.width:
                beams.append((tokens, cum))
        self.finished = sorted(self.finished, key=lambda f: -f[0])[:self.width]
        if len(self.finished) == self.width and beams and \
                self.finished[-1][0] >= self.score(beams[0][1], self.steps):
            beams = []  # no running beam can still beat the worst finished hypothesis
        self.beams = beams

    def result(self) -> tuple[list[int], str]:
        """The best hypothesis and its finish reason ("stop": it ends with the end token, else "length")."""
        finished = self.finished or [  # degenerate: no continuation ever ranked among the best N
            (self.score(cum, len(tokens)), tokens) for tokens, cum in self.beams]
        best = finished[0][1]
        return best, "stop" if self.eos is not None and best[-1] == self.eos else "length"
