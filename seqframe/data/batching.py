"""What ``data.batch_size`` and ``data.global_batch_size`` mean when several processes train.

``data.batch_size`` is per process (per device), as in Lightning: with N
processes one optimizer step sees N x batch_size sequences.
``data.global_batch_size`` gives the sequences per step instead, as Keras's
distribution strategies do; each process then reads global / N of them, so it
must divide evenly. The key is taken out of the data config before the data
module is built, so no data module has to know about it.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from seqframe.errors import SeqframeError

GLOBAL_KEY = "global_batch_size"


class BatchSizeError(SeqframeError, ValueError):
    """A global batch that the processes cannot share evenly."""


def without_global_batch_size(data: DictConfig) -> Tuple[DictConfig, Optional[int]]:
    """The data config without ``global_batch_size`` (for instantiation), and its value."""
    config = OmegaConf.to_container(data, resolve=True)
    global_batch = config.pop(GLOBAL_KEY, None)
    return OmegaConf.create(config), global_batch


def per_process_batch_size(batch_size: int, global_batch_size: Optional[Any], world_size: int) -> int:
    """The batch each process loads: ``batch_size``, or ``global_batch_size / world_size`` when that is set."""
    if global_batch_size is None:
        return int(batch_size)
    if not isinstance(global_batch_size, int) or isinstance(global_batch_size, bool) or global_batch_size < 1:
        raise BatchSizeError(f"data.global_batch_size must be a positive integer, got {global_batch_size!r}")
    if global_batch_size % world_size:
        below = global_batch_size // world_size * world_size
        closest = [n for n in (below, below + world_size) if n > 0]
        raise BatchSizeError(
            f"data.global_batch_size={global_batch_size} cannot be split evenly over {world_size} processes "
            f"(trainer.devices x trainer.num_nodes): use a multiple of {world_size} "
            f"(e.g. {' or '.join(map(str, closest))}), or set data.batch_size, the batch of each process"
        )
    return global_batch_size // world_size
