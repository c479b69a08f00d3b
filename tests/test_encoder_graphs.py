"""fireredasr_vllm.encoder_graphs: bucket shapes, and padding to them leaves every clip's encoding unchanged.

The CUDA graphs themselves need a GPU (bench/gpu_benchmark.py measures them); on the CPU the same
padding is checked against the official Conformer, clip by clip.
"""

from __future__ import annotations

import pytest
import torch
from fireredasr.models.module.conformer_encoder import ConformerEncoder

from fireredasr_vllm import encoder_graphs
from fireredasr_vllm.encoder_graphs import (BATCHES, FRAME_STEP, EncoderGraphs, bucket_shape, length_groups, pad_batch,
                                          padded_cells, sub_batches)


@pytest.mark.parametrize("batch, frames", [(1, 1), (1, 200), (3, 128), (5, 129), (17, 1000), (64, 1536), (65, 10)])
def test_bucket_shape_covers_the_batch(batch, frames):
    rows, width = bucket_shape(batch, frames)
    assert rows >= batch and width >= frames and width % FRAME_STEP == 0 and width - frames < FRAME_STEP
    assert rows in BATCHES or rows == batch > BATCHES[-1]
    assert rows == min(b for b in BATCHES if b >= batch) if batch <= BATCHES[-1] else True


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    model = ConformerEncoder(idim=80, n_layers=2, n_head=2, d_model=32, kernel_size=5).eval()

    def run(feats, frames):
        with torch.inference_mode():
            return model(feats, frames)[0]
    return run


def test_padding_to_a_bucket_keeps_each_clip_encoding(encoder):
    """Zero frames past each clip and full-length zero rows (what a graph replays) change no clip's output."""
    torch.manual_seed(1)
    lengths = [57, 200, 131, 9, 77]
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for row, n in enumerate(lengths):
        feats[row, :n] = torch.randn(n, 80)
    frames = torch.tensor(lengths, dtype=torch.int32)
    shape = bucket_shape(len(lengths), max(lengths))
    assert shape[0] > len(lengths) and shape[1] > max(lengths)  # both axes padded
    padded = encoder(*pad_batch(feats, frames, shape))
    for row, n in enumerate(lengths):
        alone = encoder(feats[row:row + 1, :n], frames[row:row + 1])[0]
        torch.testing.assert_close(padded[row, : len(alone)], alone, rtol=1e-4, atol=1e-5)


def test_static_inputs_are_overwritten_in_place(encoder):
    """A graph's static inputs are refilled on every replay: no values from the previous, larger batch stay."""
    shape = bucket_shape(4, 100)
    static = pad_batch(torch.randn(4, 100, 80), torch.full((4,), 100, dtype=torch.int32), shape)
    ids = [t.data_ptr() for t in static]
    small = torch.randn(1, 30, 80)
    pad_batch(small, torch.tensor([30], dtype=torch.int32), shape, out=static)
    assert [t.data_ptr() for t in static] == ids
    assert torch.equal(static[0][0, :30], small[0]) and not static[0][0, 30:].any() and not static[0][1:].any()
    assert static[1].tolist() == [30] + [shape[1]] * (shape[0] - 1)


def test_length_groups_keep_similar_lengths_together():
    lengths = [100, 300, 120, 126, 90, 1000]
    groups = length_groups(lengths, 1.25)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert groups == [[4, 0], [2, 3], [1], [5]]
    assert all(max(lengths[i] for i in g) <= 1.25 * min(lengths[i] for i in g) for g in groups)


def test_cpu_runs_eagerly_in_groups_of_similar_length(encoder, monkeypatch):
    """On a CPU no graph is captured; each clip's encoding is the one it gets alone."""
    torch.manual_seed(2)
    lengths = [40, 25, 38, 90]
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for row, n in enumerate(lengths):
        feats[row, :n] = torch.randn(n, 80)
    frames = torch.tensor(lengths, dtype=torch.int32)
    graphs = EncoderGraphs(encoder, (4, 200))
    calls = []
    monkeypatch.setattr(graphs, "encoder", lambda f, n: calls.append(f.shape) or encoder(f, n))
    out = graphs(feats, frames, lengths)
    assert not graphs.graphs and len(out) == len(lengths)
    assert sorted(calls) == [(1, 25, 80), (1, 90, 80), (2, 40, 80)]  # 38 and 40 together, cut to 40 frames
    for row, n in enumerate(lengths):
        alone = encoder(feats[row:row + 1, :n], frames[row:row + 1])[0]
        torch.testing.assert_close(out[row][: len(alone)], alone, rtol=1e-4, atol=1e-5)
    monkeypatch.setenv(encoder_graphs.DISABLE_ENV, "0")
    assert not EncoderGraphs(encoder, (4, 200)).enabled and not EncoderGraphs(encoder, (4, 200), enabled=False).enabled


def test_sub_batches_stay_within_the_budget():
    lengths = [300, 3000, 120, 800, 790, 310, 2999, 50]
    budget = 2 * 3000
    batches = sub_batches(lengths, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(padded_cells([lengths[i] for i in batch]) <= budget for batch in batches)
    assert batches == [[7, 2, 0, 5, 4, 3], [6, 1]]  # shortest first, filled up to the budget
    assert sub_batches([5000, 10], 3000) == [[1], [0]]  # a clip over the budget runs alone
    assert padded_cells([10, 30, 20]) == 90


def test_sub_batched_encodings_equal_the_unsplit_call(encoder):
    """What a GPU call past the profiled budget does (cut into sub-batches, each to its longest clip) gives
    every clip the encoding it gets in the one padded call."""
    torch.manual_seed(3)
    lengths = [57, 200, 131, 9, 77, 160]
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for row, n in enumerate(lengths):
        feats[row, :n] = torch.randn(n, 80)
    frames = torch.tensor(lengths, dtype=torch.int32)
    unsplit = encoder(feats, frames)
    graphs = EncoderGraphs(encoder, (4, 200))
    batches = sub_batches(lengths, 400)
    assert len(batches) > 1
    whole = sub_batches(lengths, 10_000)  # one sub-batch of every clip, shortest first: not the input order
    assert len(whole) == 1 and whole[0] != sorted(whole[0])
    for batch in batches + whole:
        for index, output in zip(batch, graphs.encode(feats, frames, lengths, batch)):
            tokens = min(len(output), unsplit.shape[1])
            # Rows past a clip's own tokens differ with the padding; the clip's own do not.
            own = encoder(feats[index:index + 1, :lengths[index]], frames[index:index + 1]).shape[1]
            torch.testing.assert_close(output[:own], unsplit[index, :own], rtol=1e-4, atol=1e-5)
            assert tokens >= own


def test_the_worst_encoder_batch_is_the_schedulers_budget_in_clips_of_the_limit():
    """30 s clips (2,998 frames, 375 speech tokens at downsample 2) filling vLLM's encoder budget of a step."""
    from types import SimpleNamespace

    from fireredasr_vllm.model import worst_encoder_batch

    def config(batched_tokens, encoder_tokens=None):
        hf = SimpleNamespace(fireredasr={"max_audio_seconds": 30.0}, encoder_downsample_rate=2)
        return SimpleNamespace(model_config=SimpleNamespace(hf_config=hf), scheduler_config=SimpleNamespace(
            max_num_batched_tokens=batched_tokens, max_num_encoder_input_tokens=encoder_tokens or batched_tokens))

    clips, frames = worst_encoder_batch(config(8192))
    assert frames == 2998 and clips == 8192 // 375
    assert worst_encoder_batch(config(100)) == (1, 2998)  # a budget below one clip still fits one clip
    assert worst_encoder_batch(config(2048, 16384))[0] == 16384 // 375
