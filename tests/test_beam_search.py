"""fireredasr_engine/beam_search.py: the beam-search bookkeeping and its search on greedy paths, on scripted
log-probs (no engine; the engine's beam search against the official decoder is tests/test_parity.py)."""

import asyncio
import math

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from fireredasr_engine.beam_search import BeamSearch, penalize_logprobs, search_greedy_paths

EOS = 0


def run(search: BeamSearch, scorer) -> tuple[list[int], str]:
    """Drive ``search`` as the engine does: each running beam's top log-probs from ``scorer(tokens)``."""
    while not search.done:
        tops = []
        for tokens, _ in search.beams:
            top = sorted(scorer(tokens).items(), key=lambda t: -t[1])
            tops.append(top[:search.num_logprobs(tokens)])
        search.advance(tops)
    return search.result()


def table(rows: dict[tuple, dict[int, float]], default: dict[int, float]):
    """A scripted model: log-probs (as probabilities' logs) after each prefix, ``default`` elsewhere."""
    return lambda tokens: {tok: math.log(p) for tok, p in rows.get(tuple(tokens), default).items()}


# ----------------------------------------------------------------- penalize_logprobs
def test_penalize_logprobs_is_transformers_on_log_probs():
    top = [(3, -0.1), (5, -0.7), (8, -1.2), (9, 0.0)]
    history = [5, 9, 9, 1]
    scores = torch.full((1, 10), -50.0)
    for tok, lp in top:
        scores[0, tok] = lp
    expected = RepetitionPenaltyLogitsProcessor(3.0)(torch.tensor([history]), scores)[0]
    penalized = penalize_logprobs(top, history, 3.0)
    assert [tok for tok, _ in penalized] == [tok for tok, _ in top]
    assert [lp for _, lp in penalized] == pytest.approx([expected[tok].item() for tok, _ in top])
    assert penalize_logprobs(top, history, 1.0) is top and penalize_logprobs(top, [], 3.0) is top


# ----------------------------------------------------------------- BeamSearch
def test_width_one_is_greedy():
    scorer = table({(): {1: 0.6, 2: 0.4}, (1,): {3: 0.5, EOS: 0.3, 2: 0.2}, (1, 3): {EOS: 0.9, 2: 0.1}},
                   {EOS: 1.0})
    assert run(BeamSearch(1, 10, EOS), scorer) == ([1, 3, EOS], "stop")


def test_a_wider_beam_finds_the_better_hypothesis_greedy_misses():
    scorer = table({(): {1: 0.55, 2: 0.45}, (1,): {EOS: 0.3, 3: 0.3, 4: 0.4}, (2,): {EOS: 0.95, 3: 0.05}},
                   {EOS: 0.1, 5: 0.9})
    assert run(BeamSearch(1, 2, EOS, length_penalty=0.0), scorer)[0][0] == 1
    assert run(BeamSearch(2, 10, EOS, length_penalty=0.0), scorer) == ([2, EOS], "stop")


def test_finished_scores_divide_by_the_length_with_the_end_token():
    scorer = table({(): {EOS: 0.5, 1: 0.5}, (1,): {EOS: 0.8, 2: 0.2}}, {EOS: 1.0})
    search = BeamSearch(2, 10, EOS, length_penalty=1.0)
    run(search, scorer)
    assert search.finished == [(pytest.approx(math.log(0.5 * 0.8) / 2), [1, EOS]),
                               (pytest.approx(math.log(0.5) / 1), [EOS])]


def test_an_end_token_ranked_below_the_width_finishes_nothing():
    # step 1, width 2: candidates 1 (0.5), 2 (0.3), EOS (0.2, rank 3 of 2N=4): neither finished nor kept
    scorer = table({(): {1: 0.5, 2: 0.3, EOS: 0.2}}, {EOS: 0.9, 3: 0.1})
    search = BeamSearch(2, 10, EOS)
    search.advance([sorted(scorer([]).items(), key=lambda t: -t[1])])
    assert search.finished == [] and [tokens for tokens, _ in search.beams] == [[1], [2]]
    assert run(search, scorer) == ([1, EOS], "stop")


def test_max_tokens_finishes_the_best_hypotheses_by_length():
    scorer = table({}, {1: 0.7, 2: 0.2, EOS: 0.1})
    search = BeamSearch(3, 4, EOS)
    tokens, finish = run(search, scorer)
    assert (tokens, finish, search.steps) == ([1, 1, 1, 1], "length", 4)
    assert len(search.finished) == 3 and all(len(t) == 4 or t[-1] == EOS for _, t in search.finished)


def test_stops_early_once_no_running_beam_can_win():
    calls = []

    def scorer(tokens):
        calls.append(tuple(tokens))
        return table({(): {EOS: 0.9, 1: 0.1}}, {EOS: 0.01, 2: 0.99})(tokens)

    search = BeamSearch(1, 50, EOS, length_penalty=1.0)
    assert run(search, scorer) == ([EOS], "stop")
    assert search.steps == 1 and calls == [()]  # log 0.9 beats the running log 0.1 / 1: no second step


def test_each_beam_is_penalised_by_its_own_history():
    # raw, token 1 again is best after [1]; with penalty 3 its log-prob triples and 2 wins
    scorer = table({(): {1: 0.6, 3: 0.4}, (1,): {1: 0.6, 2: 0.4}, (3,): {1: 0.6, 2: 0.4}}, {EOS: 1.0})
    assert run(BeamSearch(1, 3, EOS), scorer)[0] == [1, 1, EOS]
    assert run(BeamSearch(1, 3, EOS, penalty=3.0), scorer)[0] == [1, 2, EOS]
    search = BeamSearch(2, 3, EOS, penalty=3.0)
    assert search.num_logprobs([1, 1, 2]) == 4 + 2 and BeamSearch(2, 3, EOS).num_logprobs([1, 1, 2]) == 4


def test_without_an_end_token_every_hypothesis_runs_to_max_tokens():
    scorer = table({}, {EOS: 0.9, 1: 0.1})
    assert run(BeamSearch(2, 3, None), scorer) == ([EOS, EOS, EOS], "length")


# ----------------------------------------------------------------- search_greedy_paths
def full_vocabulary(scorer, size: int = 30):
    """``scorer`` with every token of a ``size``-token vocabulary (the unlisted ones unlikely), as an engine's
    top log-probs always fill the number asked for."""
    return lambda tokens: {tok: math.log(1e-6) for tok in range(size)} | scorer(tokens)


class GreedyPaths:
    """A scripted engine for ``search_greedy_paths``: each path runs greedily on ``scorer``'s top log-probs
    until the end token or ``max_tokens``; records what was requested and which paths were cut short."""

    def __init__(self, scorer, max_tokens: int, eos: int | None = EOS):
        self.scorer, self.max_tokens, self.eos = scorer, max_tokens, eos
        self.started: list[tuple[int, ...]] = []
        self.cancelled: list[tuple[int, ...]] = []

    async def open_path(self, history: list[int], num_logprobs: int):
        self.started.append(tuple(history))
        tokens = list(history)
        try:
            while len(tokens) < self.max_tokens:
                await asyncio.sleep(0)  # a model step: other paths run meanwhile
                top = sorted(self.scorer(tokens).items(), key=lambda t: -t[1])[:num_logprobs]
                yield top, top[0][0]
                tokens.append(top[0][0])
                if tokens[-1] == self.eos:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled.append(tuple(history))
            raise


def search_on_paths(search: BeamSearch, paths: GreedyPaths) -> tuple[list[int], str]:
    asyncio.run(search_greedy_paths(search, paths.open_path))
    return search.result()


SCRIPTED = [  # (scorer, BeamSearch arguments) of the step-wise tests above
    (table({(): {1: 0.6, 2: 0.4}, (1,): {3: 0.5, EOS: 0.3, 2: 0.2}, (1, 3): {EOS: 0.9, 2: 0.1}}, {EOS: 1.0}),
     dict(width=1, max_tokens=10, eos=EOS)),
    (table({(): {1: 0.55, 2: 0.45}, (1,): {EOS: 0.3, 3: 0.3, 4: 0.4}, (2,): {EOS: 0.95, 3: 0.05}},
           {EOS: 0.1, 5: 0.9}), dict(width=2, max_tokens=10, eos=EOS, length_penalty=0.0)),
    (table({}, {1: 0.7, 2: 0.2, EOS: 0.1}), dict(width=3, max_tokens=4, eos=EOS)),
    (table({(): {1: 0.6, 3: 0.4}, (1,): {1: 0.6, 2: 0.4}, (3,): {1: 0.6, 2: 0.4}}, {EOS: 1.0}),
     dict(width=2, max_tokens=3, eos=EOS, penalty=3.0)),
    (table({}, {EOS: 0.9, 1: 0.1}), dict(width=2, max_tokens=3, eos=None)),
]


@pytest.mark.parametrize("scorer, arguments", SCRIPTED + [(full_vocabulary(s), a) for s, a in SCRIPTED])
def test_greedy_paths_find_what_the_step_wise_search_finds(scorer, arguments):
    step_wise, on_paths = BeamSearch(**arguments), BeamSearch(**arguments)
    paths = GreedyPaths(scorer, arguments["max_tokens"], arguments["eos"])
    assert search_on_paths(on_paths, paths) == run(step_wise, scorer)
    assert on_paths.finished == step_wise.finished and on_paths.steps == step_wise.steps
    assert len(paths.started) <= sum(1 for _ in range(on_paths.steps)) * arguments["width"]


def test_a_beam_that_follows_its_path_needs_no_new_request():
    # a confident model: the best beam runs greedily to the end; the runners-up branch off and die
    sure = full_vocabulary(table({(1,) * 6: {EOS: 0.99, 2: 0.01}}, {1: 0.9, 2: 0.06, 3: 0.04}))
    paths = GreedyPaths(sure, 20)
    search = BeamSearch(3, 20, EOS)
    tokens, _ = search_on_paths(search, paths)
    assert tokens == [1] * 6 + [EOS]
    step_wise_requests = 1 + 3 * (search.steps - 1)
    assert paths.started[0] == () and len(paths.started) < step_wise_requests / 2
    assert len(set(paths.started)) == len(paths.started)  # no history asked for twice
    assert paths.cancelled and () not in paths.cancelled  # dropped branches were cut short; the main path ran out


def test_a_path_with_too_few_log_probs_for_a_longer_history_is_not_used():
    search = BeamSearch(1, 5, EOS, penalty=3.0)
    top = [(7, -0.1), (8, -2.0), (9, -3.0)]
    assert search.covered(top, [1, 2]) and search.covered(top, [7])  # 2N = 2 unpenalised entries suffice
    assert not search.covered(top, [7, 8]) and BeamSearch(1, 5, EOS).covered(top, [7, 8])  # no penalty: all count


def test_a_failed_path_fails_the_search():
    async def broken(history, num_logprobs):
        yield [(1, -0.1), (2, -2.0)], 1
        raise RuntimeError("engine said no")

    with pytest.raises(RuntimeError, match="engine said no"):
        asyncio.run(search_greedy_paths(BeamSearch(1, 5, EOS), broken))
