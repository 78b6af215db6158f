"""Checkpoint files that a reader never sees half-written.

Lightning's own writer (``lightning_fabric``'s ``_atomic_save`` through fsspec) writes into a
temporary file in the system temp dir and then moves it into place: where the temp dir is on
another filesystem than the run dir (a tmpfs ``/tmp``, a cluster's scratch) that move is a copy
into the destination, so a kill or a full disk mid-copy leaves a cut ``last.ckpt``, and nothing is
fsynced. :class:`AtomicCheckpointIO` writes ``<name>.<pid>.partial`` beside the target, fsyncs it,
renames it over the target and fsyncs the folder: the target is always a whole old or a whole new
checkpoint (tests/test_sweep_reliability.py kills a writer mid-write).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.plugins.io import TorchCheckpointIO


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash after it must not bring the old entry back)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default checkpoint IO, but local files are written as temp file + fsync + rename."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        """Write ``checkpoint`` to ``path`` whole or not at all (remote URLs: Lightning's own writer)."""
        import torch

        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # not *.ckpt: never taken for one
        try:
            with partial.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)  # a failed write (a full disk) leaves no litter
        _fsync_folder(target.parent)


class AtomicCheckpoints(pl.Callback):
    """Makes the trainer write checkpoints with :class:`AtomicCheckpointIO`, unless a custom
    checkpoint IO was configured (that one keeps its own guarantees)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
