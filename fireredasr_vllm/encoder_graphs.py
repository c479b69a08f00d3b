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

Memory (GPU): vLLM sizes its KV cache from the peak memory of a profile run (vLLM 0.26's V1 model
runner calls the encoder there on its worst batch, the V2 runner only the LLM). The worst batch the
scheduler can hand the encoder in one step is its encoder budget in 30 s clips (the model computes it
from the config). On the first forward or encoder call, whichever the profile run makes, every graph
is captured and that batch runs eagerly beside a ballast tensor the size of the graphs' pool (memory
vLLM's peak counter no longer sees once a capture has ended), so the measured peak covers both; every
later call is cut into sub-batches of at most that many padded frames (clips x longest clip), so
nothing the encoder does afterwards needs more than vLLM set aside. Shapes past ``MAX_GRAPH_FRAMES`` frames (long clips) or ``MAX_GRAPH_CELLS`` padded frames
run eagerly. Graphs that do not fit are skipped with one warning.
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


def padded_cells(lengths: list[int]) -> int:
    """Padded batch x frames of one eager encoder call over clips of ``lengths`` frames."""
    return len(lengths) * max(lengths)


def sub_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` in sub-batches of at most ``budget`` padded frames each (``padded_cells``),
    shortest clips first so each sub-batch pads little; a clip longer than the budget runs alone."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batches and (len(batches[-1]) + 1) * lengths[index] <= budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


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

    ``worst_batch``: (clips, frames) of the largest batch vLLM's scheduler can hand the encoder in one step
    (its encoder budget in 30 s clips); its padded size is the budget of every call. ``reserve`` (on the first
    forward or encoder call, i.e. in vLLM's memory profile run) captures every shape and runs that batch; all
    graphs write into one output buffer, copied out after each replay."""

    def __init__(self, encoder: Encoder, worst_batch: tuple[int, int], enabled: bool = True):
        """``enabled``: False under vLLM's ``enforce_eager``; the environment variable ``DISABLE_ENV=0``
        turns graphs off too."""
        self.encoder = encoder
        self.worst_batch = worst_batch
        self.cell_budget = worst_batch[0] * worst_batch[1]
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, tuple, torch.Tensor]] = {}
        self.pool = None  # set once capturing started (even if nothing could be captured)
        self.output: torch.Tensor | None = None
        self.enabled = enabled and os.environ.get(DISABLE_ENV, "1") != "0"
        self.reserved = False
        self.pool_bytes = 0  # memory the captured graphs keep reserved

    def __call__(self, feats: torch.Tensor, frames: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """Encoder outputs (tokens, hidden) per clip, in input order (rows may run past a clip's own
        tokens). ``frames``: the frame counts on the device; ``lengths``: the same on the host."""
        if not feats.is_cuda:
            return self.by_length(feats, frames, lengths)
        self.reserve(feats.device, feats.dtype, feats.shape[-1], frames.dtype)
        outputs: list[torch.Tensor | None] = [None] * len(lengths)
        for batch in sub_batches(lengths, self.cell_budget):
            for index, output in zip(batch, self.encode(feats, frames, lengths, batch)):
                outputs[index] = output
        return outputs

    def encode(self, feats: torch.Tensor, frames: torch.Tensor, lengths: list[int], rows: list[int]) -> list[torch.Tensor]:
        """The clips at ``rows``, replayed from their bucket's graph when there is one, else eagerly; each
        cut to the sub-batch's longest clip."""
        longest = max(lengths[i] for i in rows)
        if rows != list(range(len(lengths))):  # outputs follow ``rows``: gather them in that order
            index = torch.tensor(rows, device=feats.device)
            feats, frames = feats[index, :longest], frames[index]
        shape = bucket_shape(len(rows), longest)
        if shape in self.graphs:
            return list(self.replay(feats, frames, longest, shape))
        return list(self.encoder(feats[:, :longest], frames))

    def reserve(self, device: torch.device, dtype: torch.dtype, feature_dim: int,
                frames_dtype: torch.dtype = torch.int32) -> None:
        """Once, on a GPU, before vLLM sizes its KV cache (its profile run calls the model first): capture the
        graphs, then run the worst batch eagerly beside a ballast of the graphs' pool size, so the peak vLLM
        measures covers the pool and the largest encoder call together."""
        if self.reserved or device.type != "cuda":
            return
        self.reserved = True
        clips, width = self.worst_batch
        feats = torch.zeros((clips, width, feature_dim), dtype=dtype, device=device)
        frames = torch.full((clips,), width, dtype=frames_dtype, device=device)
        if self.enabled:
            torch.cuda.empty_cache()
            reserved, allocated = torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device)
            self.capture_all(feats, frames)
            torch.cuda.empty_cache()
            self.pool_bytes = max(0, (torch.cuda.memory_reserved(device) - reserved)
                                  - (torch.cuda.memory_allocated(device) - allocated))
        ballast = torch.empty(self.pool_bytes, dtype=torch.uint8, device=device)
        self.encoder(feats, frames)
        del ballast
        logger.info("encoder: at most %d clips x %d frames a call (vLLM's encoder budget); CUDA graphs keep "
                    "%.2f GiB (%d shapes)", clips, width, self.pool_bytes / 2**30, len(self.graphs))

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
        """Every bucket shape up to ``MAX_GRAPH_CELLS`` and the budget, largest first, dtypes of ``feats`` /
        ``frames``. Out of memory: the shapes not captured yet run eagerly."""
        limit = min(MAX_GRAPH_CELLS, self.cell_budget)
        shapes = [(rows, width) for rows in BATCHES for width in range(FRAME_STEP, MAX_GRAPH_FRAMES + 1, FRAME_STEP)
                  if rows * width <= limit]
        self.pool = torch.cuda.graph_pool_handle()
        if not shapes:
            return
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
