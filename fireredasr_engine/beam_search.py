"""The bookkeeping of beam search as the official decoder runs it (transformers ``generate(num_beams=N)``),
kept apart from the engine that scores the steps, so that it can be tested on scripted log-probs.

Each step, as transformers does: keep the 2N best continuations of all beams by summed log-prob (the
official repetition penalty acts on the log-probs: a seen token's is multiplied by it); an end token among
the best N finishes a hypothesis scored sum / length ** length_penalty (the length counts the end token);
the best N others run on; at ``max_tokens`` the best N all finish. Search stops once N hypotheses are
finished and the best running beam, scored at its current length, cannot beat the worst of them
(``early_stopping=False``).

``search_greedy_paths`` drives a search with few model requests: a request from a beam's history runs on
greedily and reports the top log-probs at every position of its path, so a beam that keeps following a path
needs no new request; a new one starts only where a beam leaves every path, and a path no beam follows is
cancelled. The result is the step-wise search's: a path's later top log-probs serve a beam only when they
hold all of its best 2N candidates (``covered``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

TopLogprobs = list[tuple[int, float]]  # (token id, log-prob), best first
# A greedy path from a history: (top log-probs after the history so far, the token it goes on with), in order.
PathRequest = Callable[[list[int], int], AsyncIterator[tuple[TopLogprobs, int]]]
PATH_EXTRA_LOGPROBS = 8  # top log-probs a path asks beyond its start's need: room for the tokens it adds


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

    def covered(self, top: TopLogprobs, tokens: Sequence[int]) -> bool:
        """Whether ``top`` (raw, best first) holds every candidate a beam ``tokens`` can contribute: its 2N
        best after the penalty are inside it when 2N of its entries are unpenalised (no token outside
        ``top`` scores above those)."""
        seen = set(tokens) if self.penalty != 1.0 else set()
        return sum(tok not in seen for tok, _ in top) >= 2 * self.width

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


@dataclass(eq=False)
class _Path:
    start: tuple[int, ...]
    task: asyncio.Task | None = None
    tokens: list[int] = field(default_factory=list)  # the path after ``start`` so far
    ended: bool = False

    @property
    def frontier(self) -> tuple[int, ...]:
        return self.start + tuple(self.tokens)

    def followed_by(self, beam: Sequence[int]) -> bool:
        """Whether ``beam`` lies on this path (at or behind its frontier): its later steps may come from here."""
        start = len(self.start)
        return tuple(beam[:start]) == self.start and list(beam[start:]) == self.tokens[:len(beam) - start]


async def search_greedy_paths(search: BeamSearch, open_path: PathRequest) -> None:
    """Run ``search`` to its end; ``open_path(history, num_logprobs)`` requests one greedy path."""
    # history -> (the top log-probs after it, whether a path was asked for it: then they are used as they are)
    known: dict[tuple[int, ...], tuple[TopLogprobs, bool]] = {}
    paths: list[_Path] = []
    live: list[_Path] = []  # paths still running that a beam follows
    changed = asyncio.Event()
    failures: list[Exception] = []

    async def follow(path: _Path, num_logprobs: int) -> None:
        try:
            async for top, token in open_path(list(path.start), num_logprobs):
                known[path.frontier] = top, not path.tokens  # its first top: asked for exactly that beam
                path.tokens.append(token)
                changed.set()
        except Exception as error:
            failures.append(error)
        finally:
            path.ended = True
            changed.set()

    def usable(beam: Sequence[int]) -> bool:
        top, asked = known.get(tuple(beam), (None, False))
        return asked or (top is not None and search.covered(top, beam))

    def pending(beam: Sequence[int]) -> bool:
        return any(path.frontier == tuple(beam) and not path.ended for path in live)

    try:
        while not search.done:
            while not all(usable(beam) for beam, _ in search.beams):
                if failures:
                    raise failures[0]
                for beam, _ in search.beams:
                    if not usable(beam) and not pending(beam):
                        if any(path.start == tuple(beam) for path in paths):  # it gave nothing: ask no more
                            raise RuntimeError(f"a beam search request ended without log-probs after "
                                               f"{len(beam)} tokens")
                        path = _Path(tuple(beam))
                        path.task = asyncio.create_task(
                            follow(path, search.num_logprobs(beam) + PATH_EXTRA_LOGPROBS))
                        paths.append(path)
                        live.append(path)
                changed.clear()
                await changed.wait()
            search.advance([known[tuple(beam)][0][:search.num_logprobs(beam)] for beam, _ in search.beams])
            followed = [path for path in live if any(path.followed_by(beam) for beam, _ in search.beams)]
            for path in live:
                if path not in followed:
                    path.task.cancel()  # no beam follows it any more: its request is aborted
            live = [path for path in followed if not path.ended]
    finally:
        for path in paths:
            path.task.cancel()
        await asyncio.gather(*(path.task for path in paths), return_exceptions=True)
