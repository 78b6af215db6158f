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
from typing import Any, List, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from seqframe.errors import SeqframeError
from seqframe.harness.rundir import LAST
from seqframe.harness.schema import NONFINITE_ACTIONS as ACTIONS


class NonFiniteError(SeqframeError):
    """Training met a NaN/inf loss or gradient and was stopped (the last good state is saved)."""


def _first_nonfinite_gradient(module: torch.nn.Module) -> Optional[str]:
    """The first parameter whose gradient holds a NaN/inf (called only once something is known to be bad)."""
    for name, parameter in module.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return name
    return None


def _largest_gradient(parameters: List[torch.Tensor]) -> Optional[torch.Tensor]:
    """max |gradient| over ``parameters``, in one fused call: finite exactly when every gradient
    element is (a max-norm cannot overflow), so the hot path costs a few ops however many parameters."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(gradients, norm_type=math.inf) if gradients else None


class NonFiniteGuard(pl.Callback):
    """Stop (or skip the batch) when the loss or a gradient is NaN or infinite."""

    def __init__(self, checkpoint_dir: Path, action: str = "stop") -> None:
        if action not in ACTIONS:
            raise ValueError(f"on_nonfinite={action!r} is not valid; choose one of {', '.join(ACTIONS)}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.action = action
        self.skipped = 0
        self._loss: Optional[torch.Tensor] = None
        self._parameters: List[torch.Tensor] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parameters = list(pl_module.parameters())  # walking the module tree each step costs more than the check

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()  # checked with the gradients below: one host sync per step, not two

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        loss, self._loss = self._loss, None
        largest = _largest_gradient(self._parameters or list(pl_module.parameters()))
        checked = [t.reshape(()).to(torch.float32) for t in (loss, largest) if t is not None]
        if not checked or bool(torch.isfinite(torch.stack(checked)).all()):
            return
        bad_loss = None if loss is None or bool(torch.isfinite(loss).all()) else float(loss)
        gradient = None if bad_loss is not None else _first_nonfinite_gradient(pl_module)
        what = (
            f"the loss is {bad_loss}"
            if bad_loss is not None
            else f"the gradient of {gradient} is not finite"
        )
        batch = trainer.fit_loop.epoch_loop.batch_idx
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch})"
        if self.action == "skip":
            optimizer.zero_grad(set_to_none=True)  # parameters without a gradient are left alone by the step
            self.skipped += 1
            rank_zero_warn(f"seqframe: {what} {where}: batch skipped (on_nonfinite=skip; {self.skipped} so far)")
            return
        path = self.checkpoint_dir / LAST
        trainer.save_checkpoint(path, weights_only=False)  # the weights and optimizer are still those before this step
        raise NonFiniteError(
            f"training stopped: {what} {where}. The last good state is in {path}. Check the data for NaN/inf, "
            f"lower model.optimizer.lr or set trainer.gradient_clip_val; on_nonfinite=skip drops such batches, "
            f"trainer.detect_anomaly=true finds the operation that made it"
        )
