"""Loaders whose epoch order is a function of (seed, epoch) and that resume mid-epoch.

Lightning saves a loader's ``state_dict`` in checkpoints (and calls
``load_state_dict`` on resume) when the loader has them; these loaders give
it their position inside the epoch, so a resumed run reads exactly the
batches the interrupted one would have read next. Under DDP each process
reads its own share. Only torch: the harness's exact resume builds on them.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler's order (a pure function of seed and epoch, so any epoch can be replayed),
    for one process too, and able to start ``start`` samples into the epoch (once, then from 0).

    ``pad=True`` (training) repeats a few items so every process runs the same number of steps, as
    DDP needs. ``pad=False`` (validation, test) gives each item to exactly one process, so the synced
    metrics count every sequence once; the shards may then differ in size by one. ``shard=False``: every
    process reads the whole dataset (which is already its own, as stateful streams are).
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int, pad: bool = True, shard: bool = True) -> None:
        distributed = shard and torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=None if distributed else 1,
            rank=None if distributed else 0,
            shuffle=shuffle,
            seed=seed,
        )
        if not pad:  # DistributedSampler then pads nothing and takes every num_replicas-th item
            self.total_size = len(dataset)
            self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))
        self.start = 0

    def __iter__(self) -> Iterator[int]:  # a generator: the start is read when the epoch's first batch is drawn
        start, self.start = self.start, 0
        yield from itertools.islice(super().__iter__(), start, None)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` whose position Lightning saves in checkpoints."""

    batches_yielded = 0  # in the current epoch, counting those skipped on resume
    _skipped = 0

    def __iter__(self) -> Iterator[Any]:  # a generator: runs when the epoch's first batch is drawn
        self.batches_yielded, self._skipped = self._skipped, 0
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch

    def state_dict(self) -> Dict[str, int]:
        return {"batches": self.batches_yielded}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        batches = int(state.get("batches", 0))
        if batches >= len(self):  # saved after the epoch's last batch: the next epoch starts from its beginning
            batches = 0
        assert isinstance(self.sampler, ResumableSampler), "ResumableDataLoader needs a ResumableSampler"
        self.sampler.start = batches * int(self.batch_size or 1)
        self._skipped = batches


def resumable_loader(
    dataset: Dataset, shuffle: bool, seed: int, pad: bool = True, shard: bool = True, **options: Any
) -> ResumableDataLoader:
    """A loader whose epoch order depends only on (seed, epoch) and that resumes mid-epoch.

    Under DDP each process reads its own share. Its own generator seeds the
    workers, so iterating never draws from the global RNG that dropout uses.
    """
    sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, pad=pad, shard=shard)
    generator = torch.Generator().manual_seed(seed)
    return ResumableDataLoader(dataset, sampler=sampler, generator=generator, **options)
