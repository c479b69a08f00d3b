"""fireredasr_vllm/penalty.py: the official repetition penalty (generated tokens only) as vLLM applies it,
checked against transformers' RepetitionPenaltyLogitsProcessor, which the official decoder runs."""

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor
from vllm import SamplingParams

from fireredasr_vllm.penalty import HISTORY_KEY, PENALTY_KEY, GeneratedRepetitionPenalty, apply_repetition_penalty

VOCAB = 50


def transformers_penalty(logits: torch.Tensor, token_ids: list[int], penalty: float) -> torch.Tensor:
    """What HF generate does to one row of scores, the generated ids being its ``input_ids``."""
    return RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([token_ids]), logits.clone()[None])[0]


@pytest.mark.parametrize("penalty", [3.0, 1.5, 0.5])
@pytest.mark.parametrize("token_ids", [[7], [3, 3, 9, 3], [0, VOCAB - 1, 12, 40, 12]])
def test_matches_transformers(penalty, token_ids):
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(len(token_ids))) * 4  # both signs
    expected = transformers_penalty(logits, token_ids, penalty)
    assert torch.equal(apply_repetition_penalty(logits.clone(), token_ids, penalty), expected)
    changed = set((expected != logits).nonzero().flatten().tolist())
    assert changed == set(token_ids) - {i for i in token_ids if logits[i] == 0}  # seen tokens only


def test_positive_scores_divided_negative_multiplied_in_place():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0])
    out = apply_repetition_penalty(logits, [0, 1, 1], 2.0)
    assert out is logits  # the row vLLM hands over is changed in place
    assert logits.tolist() == [1.0, -4.0, 1.0, -1.0]


@pytest.mark.parametrize("token_ids, penalty", [([], 3.0), ([1, 2], 1.0)])
def test_nothing_to_penalise_leaves_the_row(token_ids, penalty):
    logits = torch.tensor([2.0, -2.0, 1.0])
    assert apply_repetition_penalty(logits, token_ids, penalty).tolist() == [2.0, -2.0, 1.0]


def test_request_processor_counts_the_history_and_the_generated_tokens_only():
    """A beam step's request carries the tokens its beam generated before (HISTORY_KEY); the prompt is never
    penalised. ``new_req_logits_processor`` reads nothing from the processor itself."""
    new_processor = GeneratedRepetitionPenalty.new_req_logits_processor
    assert new_processor(None, SamplingParams()) is None
    assert new_processor(None, SamplingParams(extra_args={PENALTY_KEY: 1.0})) is None
    penalize = new_processor(None, SamplingParams(extra_args={PENALTY_KEY: 3.0, HISTORY_KEY: [4, 5]}))
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(0))
    expected = transformers_penalty(logits, [4, 5, 6], 3.0)
    assert torch.equal(penalize([6], logits.clone()), expected)
