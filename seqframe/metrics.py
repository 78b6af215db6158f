"""One stage's metrics as running sums in one state vector: one cheap update per batch.

torchmetrics' own metric classes each wrap their update in bookkeeping
(~40-80 µs per call on the reference CPU); a small model made three such
calls per batch (mean loss, and MSE + MAE or accuracy), more time than its
forward pass. :class:`TaskMetrics` keeps every sum the epoch needs in one
float64 vector, updated on-device with a handful of ops and no host sync, and
reduced once at epoch end (a sum over processes under DDP: it is a
torchmetrics ``Metric``, so syncing and the resume state work as before).

Definitions (``n`` counts target elements, padded steps excluded):
``loss`` = sum(loss_b * w_b) / sum(w_b); ``mse`` = sum((p - y)^2) / n;
``mae`` = sum(|p - y|) / n; ``acc`` = correct / n, where a binary prediction
is ``logit > 0`` and a multiclass one is the arg-max over classes.
"""

from __future__ import annotations

from typing import Dict, Union

import torch
from torch import Tensor
from torchmetrics import Metric

KINDS = ("regression", "binary", "multiclass")


class TaskMetrics(Metric):
    """The mean loss plus ``mse``/``mae`` (regression) or ``acc`` (classification) of one stage."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, kind: str, ignore_index: int = -100) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not valid; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.ignore_index = ignore_index
        self.names = ("loss", "mse", "mae") if kind == "regression" else ("loss", "acc")
        # loss * weight, weight, then the sums of the task's metrics and their element count
        self.add_state("sums", default=torch.zeros(len(self.names) + 2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, loss: Tensor, weight: Union[int, Tensor], predictions: Tensor, targets: Tensor) -> None:
        """Add one batch: its mean ``loss`` over ``weight`` items, and its predictions and targets."""
        weight = torch.as_tensor(weight, device=loss.device)
        if self.kind == "regression":
            error = predictions - targets
            count = torch.full((), targets.numel(), device=loss.device)
            parts = [error.square().sum(), error.abs().sum(), count]
        elif self.kind == "binary":
            correct = ((predictions > 0) == targets.bool()).sum()
            parts = [correct, torch.full((), targets.numel(), device=loss.device)]
        else:
            valid = targets != self.ignore_index
            correct = ((predictions.argmax(-1) == targets) & valid).sum()
            parts = [correct, valid.sum()]
        values = [loss * weight, weight, *parts]
        self.sums += torch.stack([v.to(torch.float64) for v in values])

    def compute(self) -> Dict[str, Tensor]:
        loss_sum, weight, *sums, count = self.sums
        values = [loss_sum / weight, *(s / count for s in sums)]
        return {name: value.to(torch.float32) for name, value in zip(self.names, values)}
