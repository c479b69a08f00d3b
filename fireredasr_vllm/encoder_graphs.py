"""The Conformer encoder + adapter replayed from CUDA graphs over a few padded batch shapes.

Run eagerly, one encoder call is hundreds of small kernel launches from the engine core's one Python
thread (16 Conformer blocks, ~40 launches each), and with a few new clips per engine step that CPU
time, not the GPU, sets the pace. Here a call's features are padded to a bucket shape
(batch in ``BATCHES``, frames rounded up to ``FRAME_STEP``) and the whole encoder is replayed from a
CUDA graph captured the first time that shape is seen: one launch instead of hundreds. Padding is
what the official batching already does (zero features past each clip's length, masks keep every clip
to its own frames; padded rows are full-length zeros and are dropped), so the tokens do not change.

vLLM's own ``SupportsEncoderCudaGraph`` protocol (``cudagraph_mm_encoder``) captures graphs per
*token budget* over packed, variable-length vision patches; a Conformer runs on padded (batch, frames)
tensors with per-clip masks, so the shapes are bucketed here instead, inside ``embed_multimodal``.

Graphs share one memory pool and one output buffer; batches of clips over ``MAX_GRAPH_FRAMES`` frames
(long clips) run eagerly, so no graph holds a large pool. Calls of more than ``BATCHES[-1]`` clips are
split, clips sorted by length, into chunks of that size.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable

import torch

BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
FRAME_STEP = 128  # fbank frames (10 ms each): buckets 1.28 s apart
MAX_GRAPH_FRAMES = 1536  # ~15 s clips; longer batches run eagerly
DISABLE_ENV = "FIREREDASR_ENCODER_CUDA_GRAPHS"  # "0": always eager (A/B measurements)

Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bucket_shape(batch: int, frames: int) -> tuple[int, int]:
    """(padded batch, padded frames) for ``batch`` clips of at most ``frames`` frames."""
    padded_batch = BATCHES[min(bisect.bisect_left(BATCHES, batch), len(BATCHES) - 1)]
    return max(padded_batch, batch), -(-max(frames, 1) // FRAME_STEP) * FRAME_STEP


def pad_batch(feats: torch.Tensor, frames: torch.Tensor, shape: tuple[int, int],
              out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``feats`` (B, T, 80) and ``frames`` (B,) padded to ``shape``: zero features, padded rows full length
    (no all-masked attention rows). Written into ``out`` (a graph's static inputs) when given."""
    rows, width = shape
    if out is None:
        out = (feats.new_zeros((rows, width, feats.shape[-1])),
               torch.full((rows,), width, dtype=frames.dtype, device=frames.device))
    else:
        out[0].zero_()
        out[1].fill_(width)
    out[0][: feats.shape[0], : feats.shape[1]].copy_(feats)
    out[1][: frames.shape[0]].copy_(frames)
    return out


class EncoderGraphs:
    """Replays ``encoder(feats, frames) -> (B, tokens, hidden)`` from CUDA graphs, one per bucket shape.

    Every shape is captured on the first call on a GPU (vLLM's memory-profiling run, so the graphs'
    memory is counted before the KV cache is sized), largest first; all graphs write into one output
    buffer, copied out after each replay."""

    def __init__(self, encoder: Encoder, enabled: bool = True):
        """``enabled``: False under vLLM's ``enforce_eager``; the environment variable ``DISABLE_ENV=0``
        turns graphs off too."""
        self.encoder = encoder
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, tuple, torch.Tensor]] = {}
        self.pool = None
        self.output: torch.Tensor | None = None
        self.enabled = enabled and os.environ.get(DISABLE_ENV, "1") != "0"

    def __call__(self, feats: torch.Tensor, frames: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """Encoder outputs (tokens, hidden) per clip, in input order (rows may run past a clip's own
        tokens). ``frames``: the frame counts on the device; ``lengths``: the same on the host."""
        if not (self.enabled and feats.is_cuda):
            return list(self.encoder(feats, frames))
        if not self.graphs:
            self.capture_all(feats, frames)
        longest = max(lengths)
        if longest > MAX_GRAPH_FRAMES:
            return list(self.encoder(feats, frames))
        if len(lengths) <= BATCHES[-1]:
            return list(self.replay(feats, frames, longest))
        # More clips than the largest bucket: chunks of similar length (sorted), each replayed.
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        outputs: list[torch.Tensor] = [feats] * len(lengths)
        for start in range(0, len(order), BATCHES[-1]):
            chunk = order[start:start + BATCHES[-1]]
            longest = max(lengths[i] for i in chunk)
            index = torch.tensor(chunk, device=feats.device)
            for i, out in zip(chunk, self.replay(feats[index, :longest], frames[index], longest)):
                outputs[i] = out
        return outputs

    def replay(self, feats: torch.Tensor, frames: torch.Tensor, longest: int) -> torch.Tensor:
        graph, inputs, output = self.graphs[bucket_shape(feats.shape[0], longest)]
        pad_batch(feats[:, :longest], frames, tuple(inputs[0].shape[:2]), out=inputs)
        graph.replay()
        # The output buffer is shared and rewritten by the next replay; vLLM keeps encoder outputs for
        # later steps, so this call's rows are copied out.
        return output[: feats.shape[0]].clone()

    def capture_all(self, feats: torch.Tensor, frames: torch.Tensor) -> None:
        """Every bucket shape, largest first (it sizes the shared output buffer), dtypes of ``feats`` /
        ``frames``."""
        shapes = [(rows, width) for rows in BATCHES for width in range(FRAME_STEP, MAX_GRAPH_FRAMES + 1, FRAME_STEP)]
        for shape in sorted(shapes, key=lambda shape: (shape[0] * shape[1], shape), reverse=True):
            self.capture(shape, feats, frames)

    def capture(self, shape: tuple[int, int], feats: torch.Tensor, frames: torch.Tensor) -> None:
        rows, width = shape
        device = feats.device
        inputs = (feats.new_zeros((rows, width, feats.shape[-1])),
                  torch.full((rows,), width, dtype=frames.dtype, device=device))
        # Warm-up: lazy initialisation (cuBLAS/cuDNN handles, workspaces) stays out of the graph.
        warm = self.encoder(*inputs)
        if self.output is None:
            self.output = torch.empty_like(warm)
            self.pool = torch.cuda.graph_pool_handle()
        output = self.output[:rows, : warm.shape[1]]
        del warm
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            # thread_local: vLLM's other threads (output copies) may use the GPU meanwhile.
            graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
            try:
                output.copy_(self.encoder(*inputs))
            finally:
                graph.capture_end()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graphs[shape] = (graph, inputs, output)
