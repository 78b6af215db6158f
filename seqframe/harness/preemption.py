"""SIGTERM, what clusters send before pre-emption: save ``checkpoints/last.ckpt`` after the current
training step and stop cleanly, on every rank at the same step."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from seqframe.harness.private_api import stop_after_this_step
from seqframe.harness.rundir import LAST


class SaveOnSigterm(pl.Callback):
    """On SIGTERM: write the full state to ``<checkpoint_dir>/last.ckpt`` and stop;
    :attr:`stopped_by_sigterm` is then that path."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.stopped_by_sigterm: Optional[Path] = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.stopped_by_sigterm is not None:
            return
        # all ranks decide together (the signal reaches them at different moments), save, then all stop
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            stop_after_this_step(trainer)
            self._save_and_stop(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and self.stopped_by_sigterm is None:
            self._save_and_stop(trainer)  # the signal came outside a training step (e.g. during validation)

    def _save_and_stop(self, trainer: pl.Trainer) -> None:
        path = self.checkpoint_dir / LAST
        trainer.save_checkpoint(path, weights_only=False)  # full state (False: no log line about it)
        self.stopped_by_sigterm = path
        rank_zero_info(f"seqframe: SIGTERM at step {trainer.global_step}: saved {path}; resume with ckpt_path=last")
