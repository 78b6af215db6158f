"""Guards against silent failure: a NaN or inf loss or gradient must not train on unnoticed.

:class:`NonFiniteGuard` looks at the loss before backward and at the
gradients before the optimizer step (before clipping, which would hide
them). ``on_nonfinite=stop`` writes ``checkpoints/last.ckpt`` — still the
weights and optimizer state from before the bad step — and stops the run
with a message naming the step; ``skip`` drops that batch's update (the
optimizer sees no gradients) and goes on, counting the skipped batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from seqframe.errors import SeqframeError

ACTIONS = ("stop", "skip")


class NonFiniteError(SeqframeError):
    """Training met a NaN/inf loss or gradient and was stopped (the last good state is saved)."""


def _first_nonfinite_gradient(module: torch.nn.Module) -> Optional[str]:
    for name, parameter in module.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return name
    return None


class NonFiniteGuard(pl.Callback):
    """Stop (or skip the batch) when the loss or a gradient is NaN or infinite."""

    def __init__(self, checkpoint_dir: Path, action: str = "stop") -> None:
        if action not in ACTIONS:
            raise ValueError(f"on_nonfinite={action!r} is not valid; choose one of {', '.join(ACTIONS)}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.action = action
        self.skipped = 0
        self._bad_loss: Optional[float] = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        self._bad_loss = value if not math.isfinite(value) else None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        gradient = _first_nonfinite_gradient(pl_module)
        if self._bad_loss is None and gradient is None:
            return
        what = (
            f"the loss is {self._bad_loss}"
            if self._bad_loss is not None
            else f"the gradient of {gradient} is not finite"
        )
        batch = trainer.fit_loop.epoch_loop.batch_idx
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch})"
        self._bad_loss = None
        if self.action == "skip":
            optimizer.zero_grad(set_to_none=True)  # parameters without a gradient are left alone by the step
            self.skipped += 1
            rank_zero_warn(f"seqframe: {what} {where}: batch skipped (on_nonfinite=skip; {self.skipped} so far)")
            return
        path = self.checkpoint_dir / "last.ckpt"
        trainer.save_checkpoint(path)  # the weights and optimizer are still those before this step
        raise NonFiniteError(
            f"training stopped: {what} {where}. The last good state is in {path}. Check the data for NaN/inf, "
            f"lower model.optimizer.lr or set trainer.gradient_clip_val; on_nonfinite=skip drops such batches, "
            f"trainer.detect_anomaly=true finds the operation that made it"
        )
