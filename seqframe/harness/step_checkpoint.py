"""``last.ckpt`` every N training steps too (ModelCheckpoint saves it at epoch ends only), so that a
killed run loses at most N steps and resumes mid-epoch exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from seqframe.harness.rundir import LAST


class StepCheckpoint(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` whenever the global step reaches or crosses a multiple of
    ``every_n_train_steps`` (0: never; conf/callbacks/default.yaml's ``step_checkpoint``)."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 100) -> None:
        if int(every_n_train_steps) < 0:
            raise ValueError(f"callbacks.step_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.path = Path(dirpath) / LAST
        self.every = int(every_n_train_steps)

    _saved_at = 0  # the global step of the last save

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # "or crosses": one Lightning step may take several optimizer steps (seqframe.harness.execution)
        step = trainer.global_step
        if self.every and step // self.every > self._saved_at // self.every and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_at = step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_at = trainer.global_step  # a resumed run counts from its checkpoint
