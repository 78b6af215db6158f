"""How a split is shared out between DDP processes.

Training pads the split so that every process runs the same number of steps
(DDP synchronises gradients each step). Validation and test do not pad: a
padded shard would count repeated sequences twice in the synced metrics, so
each sequence is read by exactly one process, the shards may differ by one,
and torchmetrics' sums and counts add up to the metric over the whole split.
"""

from __future__ import annotations

from torch.utils.data import Dataset, DistributedSampler


def shard_sampler(dataset: Dataset, shuffle: bool, seed: int, pad: bool) -> DistributedSampler:
    """This process's share of ``dataset`` (``pad=False``: each item read once over all processes)."""
    if pad:
        return DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=shuffle, seed=seed)
