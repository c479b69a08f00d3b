"""Repetition penalty with the official FireRedASR semantics, as a vLLM logits processor.

The official code calls HF ``generate(inputs_embeds=...)``, so its repetition penalty only sees
GENERATED tokens. vLLM's built-in ``repetition_penalty`` also counts the prompt, which here contains
``<|im_end|>`` and the instruction's characters, so a penalty of 3.0 would also push down the
end-of-sequence token. Requests opt in with ``SamplingParams(extra_args={PENALTY_KEY: 3.0})``;
``HISTORY_KEY`` carries tokens generated before this request (used by step-wise beam search).
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

PENALTY_KEY = "generated_repetition_penalty"
HISTORY_KEY = "generated_history"
PROCESSOR_FQCN = "fireredasr_vllm.penalty:GeneratedRepetitionPenalty"


def apply_repetition_penalty(logits: torch.Tensor, token_ids: list[int], penalty: float) -> torch.Tensor:
    """HF ``RepetitionPenaltyLogitsProcessor`` on a 1-D logits row: divide positive scores of seen
    tokens by ``penalty``, multiply negative ones."""
    if not token_ids or penalty == 1.0:
        return logits
    index = torch.tensor(sorted(set(token_ids)), device=logits.device, dtype=torch.long)
    scores = logits[index]
    logits[index] = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits


class GeneratedRepetitionPenalty(AdapterLogitsProcessor):
    """Per-request processor enabled by ``extra_args[PENALTY_KEY]``."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        extra = params.extra_args or {}
        penalty = float(extra.get(PENALTY_KEY, 1.0))
        if penalty == 1.0:
            return None
        history = [int(t) for t in extra.get(HISTORY_KEY, ())]

        def penalize(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            return apply_repetition_penalty(logits, history + list(output_ids), penalty)

        return penalize
