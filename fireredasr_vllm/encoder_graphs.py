"""How a step's clips go through the Conformer encoder + adapter: CUDA graphs over a few padded batch shapes on
a GPU, groups of similar length on a CPU.

Run eagerly, one encoder call is hundreds of small kernel launches from the engine core's one Python
thread (16 Conformer blocks, dozens of launches each). Here a call's features are padded to a bucket
shape (batch in ``BATCHES``, frames rounded up to ``FRAME_STEP``) and the whole encoder is replayed from
a CUDA graph: one launch. Every shape is captured on the first call on a GPU (~11 s for the 99 shapes
on an H200). Measured on an H200 (docs/benchmarks.md): a lone clip's latency drops from 141 to 98 ms
p50; the throughput at 256 in flight does not change (vLLM's per-step work holds it). Padding is what
the official batching already does (zero features past each clip's length, masks keep every clip to its
own frames; padded rows are full-length zeros and are dropped), so the tokens do not change.

vLLM's own ``SupportsEncoderCudaGraph`` protocol (``cudagraph_mm_encoder``) captures graphs per
*token budget* over packed, variable-length vision patches; a Conformer runs on padded (batch, frames)
tensors with per-clip masks, so the shapes are bucketed here instead, inside ``embed_multimodal``.

On a CPU the encoder is compute-bound and launches cost nothing, so padding is what costs: the clips are
encoded in groups whose longest clip is at most ``CPU_GROUP_RATIO`` times the shortest. On a 2-core machine
``bench.model_throughput`` passed 24 clips of 2-10 s in 1.28-1.46 s so, against 2.01-2.08 s as one batch padded
to its longest clip (docs/benchmarks.md, "CPU").

Graphs share one memory pool and one output buffer. Shapes past ``MAX_GRAPH_FRAMES`` frames (long
clips) or ``MAX_GRAPH_CELLS`` padded frames in all (a burst of new clips, compute-bound anyway) run
eagerly: the graphs are captured after vLLM has sized its KV cache, so their pool must stay small
(a few GiB of the memory ``gpu_memory_utilization`` leaves free).
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
FRAME_STEP = 128  # fbank frames (10 ms each): buckets 1.28 s apart
MAX_GRAPH_FRAMES = 1536  # ~15 s clips; longer batches run eagerly
MAX_GRAPH_CELLS = 16384  # padded batch x frames of the largest graph (its activations size the shared pool)
CPU_GROUP_RATIO = 1.25  # on a CPU: longest / shortest clip of one encoder call
DISABLE_ENV = "FIREREDASR_ENCODER_CUDA_GRAPHS"  # "0": always eager (A/B measurements)

Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bucket_shape(batch: int, frames: int) -> tuple[int, int]:
    """(padded batch, padded frames) for ``batch`` clips of at most ``frames`` frames."""
    padded_batch = BATCHES[min(bisect.bisect_left(BATCHES, batch), len(BATCHES) - 1)]
    return max(padded_batch, batch), -(-max(frames, 1) // FRAME_STEP) * FRAME_STEP


def length_groups(lengths: list[int], ratio: float) -> list[list[int]]:
    """Indices of ``lengths`` in groups of similar length, shortest first: a group's longest is at most ``ratio``
    times its shortest."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and lengths[index] <= ratio * lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


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

    Every shape is captured on the first call on a GPU, largest first; all graphs write into one output
    buffer, copied out after each replay."""

    def __init__(self, encoder: Encoder, enabled: bool = True):
        """``enabled``: False under vLLM's ``enforce_eager``; the environment variable ``DISABLE_ENV=0``
        turns graphs off too."""
        self.encoder = encoder
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, tuple, torch.Tensor]] = {}
        self.pool = None  # set once capturing started (even if nothing could be captured)
        self.output: torch.Tensor | None = None
        self.enabled = enabled and os.environ.get(DISABLE_ENV, "1") != "0"

    def __call__(self, feats: torch.Tensor, frames: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """Encoder outputs (tokens, hidden) per clip, in input order (rows may run past a clip's own
        tokens). ``frames``: the frame counts on the device; ``lengths``: the same on the host.
        Batches larger than every graph (a burst of new clips: compute-bound anyway) run eagerly."""
        if not feats.is_cuda:
            return self.by_length(feats, frames, lengths)
        if self.enabled and self.pool is None:
            self.capture_all(feats, frames)
        shape = bucket_shape(len(lengths), max(lengths))
        if shape not in self.graphs:
            return list(self.encoder(feats, frames))
        return list(self.replay(feats, frames, max(lengths), shape))

    def by_length(self, feats: torch.Tensor, frames: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """Eagerly, one call per group of clips of similar length (``CPU_GROUP_RATIO``), each group cut to its
        longest clip; outputs in input order."""
        outputs: list[torch.Tensor | None] = [None] * len(lengths)
        for group in length_groups(lengths, CPU_GROUP_RATIO):
            rows = torch.tensor(group, device=feats.device)
            for index, output in zip(group, self.encoder(feats[rows, :max(lengths[i] for i in group)], frames[rows])):
                outputs[index] = output
        return outputs

    def replay(self, feats: torch.Tensor, frames: torch.Tensor, longest: int, shape: tuple[int, int]) -> torch.Tensor:
        graph, inputs, output = self.graphs[shape]
        pad_batch(feats[:, :longest], frames, shape, out=inputs)
        graph.replay()
        # The output buffer is shared and rewritten by the next replay; vLLM keeps encoder outputs for
        # later steps, so this call's rows are copied out.
        return output[: feats.shape[0]].clone()

    def capture_all(self, feats: torch.Tensor, frames: torch.Tensor) -> None:
        """Every bucket shape up to ``MAX_GRAPH_CELLS``, largest first, dtypes of ``feats`` / ``frames``.
        Out of memory: the shapes not captured yet run eagerly."""
        shapes = [(rows, width) for rows in BATCHES for width in range(FRAME_STEP, MAX_GRAPH_FRAMES + 1, FRAME_STEP)
                  if rows * width <= MAX_GRAPH_CELLS]
        self.pool = torch.cuda.graph_pool_handle()
        longest = self.encoder(feats.new_zeros((1, MAX_GRAPH_FRAMES, feats.shape[-1])),
                               torch.full((1,), MAX_GRAPH_FRAMES, dtype=frames.dtype, device=feats.device))
        self.output = longest.new_empty((max(rows for rows, _ in shapes), *longest.shape[1:]))
        for shape in sorted(shapes, key=lambda shape: (shape[0] * shape[1], shape), reverse=True):
            try:
                self.capture(shape, feats, frames)
            except (torch.OutOfMemoryError, RuntimeError):
                logger.warning("encoder CUDA graphs: out of memory after %d of %d shapes; the rest run eagerly",
                               len(self.graphs), len(shapes))
                break
        logger.info("encoder CUDA graphs: %d shapes captured", len(self.graphs))

    def capture(self, shape: tuple[int, int], feats: torch.Tensor, frames: torch.Tensor) -> None:
        rows, width = shape
        device = feats.device
        inputs = (feats.new_zeros((rows, width, feats.shape[-1])),
                  torch.full((rows,), width, dtype=frames.dtype, device=device))
        # Warm-up: lazy initialisation (cuBLAS/cuDNN handles, workspaces) stays out of the graph.
        tokens = self.encoder(*inputs).shape[1]
        output = self.output[:rows, :tokens]
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
