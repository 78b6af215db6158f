"""Stateful batching (``data.stateful=true``): one long token stream read in order, for truncated BPTT.

A split's stream of ``n`` tokens (inputs ``t[0..n-2]``, targets shifted by one) is cut into
``world_size x batch_size`` contiguous streams of equal length ``L = (n - 1) // (world_size x batch_size)``
(the last ``< world_size x batch_size`` tokens are left out); process ``r`` reads streams
``r*B .. r*B + B - 1``. Batch ``k`` holds chunk ``k`` (steps ``k*T .. k*T + T - 1``, the last chunk
shorter when ``T`` does not divide ``L``) of each of its streams, so row ``i`` of batch ``k+1``
continues row ``i`` of batch ``k``: the model carries its final state from one batch to the next
(:class:`StreamBatch`'s ``reset`` says where a stream starts afresh).

This is how char-rnn trained: a window of ``T`` steps of gradient (truncated BPTT), but a memory that
reaches back to the start of the stream. Validation and test read their splits the same way (the
standard stateful evaluation of a whole split). Only torch: the harness carries the state.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from seqframe.data.base import batched_as_is
from seqframe.data.loading import resumable_loader
from seqframe.errors import SeqframeError


class StreamBatch(NamedTuple):
    """One chunk of every stream: ``x`` ``[B, T, ...]``, ``y`` ``[B, T, ...]``, and ``reset`` ``[B]`` (bool):
    True where a stream starts here (its first chunk, or a new document), so the carried state is
    zeroed for that row before the chunk runs. A NamedTuple: Lightning moves it to the device whole."""

    x: Tensor
    y: Tensor
    reset: Tensor


def process_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamChunks(Dataset):
    """Item ``k`` is batch ``k`` (a :class:`StreamBatch`) of one process's streams
    (``inputs``/``targets``: ``[B, L, ...]``, row ``i`` one stream); every stream starts at batch 0."""

    def __init__(self, inputs: Tensor, targets: Tensor, seq_len: int) -> None:
        self.inputs, self.targets, self.seq_len = inputs, targets, int(seq_len)

    def __len__(self) -> int:
        return -(-self.inputs.shape[1] // self.seq_len)

    def __getitem__(self, k: int) -> StreamBatch:
        if not 0 <= k < len(self):
            raise IndexError(k)
        steps = slice(k * self.seq_len, (k + 1) * self.seq_len)
        reset = torch.full((self.inputs.shape[0],), k == 0, dtype=torch.bool)
        return StreamBatch(self.inputs[:, steps], self.targets[:, steps], reset)


def cut_streams(
    ids: Tensor,
    batch_size: int,
    seq_len: int,
    what: str,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
) -> StreamChunks:
    """One token stream ``ids`` (``[n]`` or ``[n, F]``) as this process's batches (see the module's docstring).

    ``what`` names the split in the message when it is too short for the streams."""
    if rank is None or world_size is None:
        rank, world_size = process_rank()
    streams = int(batch_size) * int(world_size)
    length = (len(ids) - 1) // streams
    if length < 1:
        raise SeqframeError(
            f"{what} has {len(ids)} tokens, too few for data.stateful=true with {streams} streams "
            f"(data.batch_size={batch_size} x {world_size} processes): lower data.batch_size or use more data"
        )
    inputs = ids[: streams * length].view(streams, length, *ids.shape[1:])
    targets = ids[1 : streams * length + 1].view(streams, length, *ids.shape[1:])
    mine = slice(rank * batch_size, (rank + 1) * batch_size)
    return StreamChunks(inputs[mine], targets[mine], seq_len)


def stream_loader(dataset: Dataset, seed: int, num_workers: int = 0) -> DataLoader:
    """The loader of a stateful split: its batches in order (never shuffled: the order is the point), each
    process its own streams, resumable mid-epoch like every seqframe loader (its position is a batch count)."""
    return resumable_loader(
        dataset,
        shuffle=False,
        seed=seed,
        pad=False,
        shard=False,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=batched_as_is,
    )
