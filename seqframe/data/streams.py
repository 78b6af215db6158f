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

Several documents or series (``data=csv``/``numpy``, :func:`cut_documents`) are read the same way, with
the state reset where each one starts: every series is cut into chunks of ``T`` steps (its last chunk
padded), the chunks of all series in file order are dealt into ``world_size x batch_size`` contiguous
runs of nearly equal count (one long series is thus read as ``batch_size`` streams, as text is), and a
chunk that starts a series (or a run) has ``reset`` set, so no state crosses from one series to the next.
Padded steps have targets the loss leaves out (``IGNORE_INDEX`` labels, NaN values).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from seqframe.data.base import IGNORE_INDEX, batched_as_is
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


class DocumentChunks(Dataset):
    """Item ``k`` is batch ``k`` (a :class:`StreamBatch`) of one process's runs of chunks (see the module's
    docstring). ``chunks`` lists every chunk of every series as ``(series, start, stop)``, ``runs`` the
    ``(first, stop)`` chunk indices of this process's streams; a run past its end reads padding."""

    def __init__(
        self,
        xs: Sequence[Tensor],
        ys: Sequence[Tensor],
        chunks: List[tuple[int, int, int]],
        runs: List[tuple[int, int]],
        batches: int,
    ) -> None:
        self.xs, self.ys, self.chunks, self.runs, self.batches = xs, ys, chunks, runs, batches

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, k: int) -> StreamBatch:
        if not 0 <= k < self.batches:
            raise IndexError(k)
        rows = [first + k if first + k < stop else None for first, stop in self.runs]
        steps = max((self.chunks[c][2] - self.chunks[c][1] for c in rows if c is not None), default=1)
        x0, y0 = self.xs[0], self.ys[0]
        x = x0.new_zeros((len(rows), steps, *x0.shape[1:]))
        fill = IGNORE_INDEX if not y0.is_floating_point() else float("nan")
        y = y0.new_full((len(rows), steps, *y0.shape[1:]), fill)
        reset = torch.ones(len(rows), dtype=torch.bool)
        for i, c in enumerate(rows):
            if c is None:  # this stream has run out: padding, left out of the loss
                continue
            series, start, stop = self.chunks[c]
            x[i, : stop - start] = self.xs[series][start:stop]
            y[i, : stop - start] = self.ys[series][start:stop]
            reset[i] = start == 0 or k == 0
        return StreamBatch(x, y, reset)


def cut_documents(
    xs: Sequence[Tensor],
    ys: Sequence[Tensor],
    batch_size: int,
    seq_len: int,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
) -> DocumentChunks:
    """Series ``xs[i]`` ``[T_i, ...]`` with per-step targets ``ys[i]`` ``[T_i, ...]`` as this process's
    batches (see the module's docstring): every process runs the same number of batches, as DDP needs."""
    if rank is None or world_size is None:
        rank, world_size = process_rank()
    chunks = [(i, start, min(start + seq_len, len(x))) for i, x in enumerate(xs) for start in range(0, len(x), seq_len)]
    streams = int(batch_size) * int(world_size)
    base, extra = divmod(len(chunks), streams)  # the first `extra` streams take one chunk more
    firsts = [s * base + min(s, extra) for s in range(streams + 1)]
    runs = [(firsts[s], firsts[s + 1]) for s in range(rank * batch_size, (rank + 1) * batch_size)]
    return DocumentChunks(xs, ys, chunks, runs, base + (extra > 0))


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


class StatefulSplits:
    """Mixed into a :class:`~seqframe.data.base.TaskDataModule` whose splits can be read as streams: with
    ``stateful`` set, :meth:`build` returns stream batches and every split's loader reads them in order."""

    stateful: bool = False

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.stateful:
            return super()._loader(split, shuffle)
        self.setup()
        return stream_loader(self.splits[split], self.seed, self.num_workers)
