"""One stage's metrics as running sums in one state vector: one cheap update per batch.

torchmetrics' own metric classes each wrap their update in bookkeeping
(~40-80 µs per call on the reference CPU); a small model made three such
calls per batch (mean loss, and MSE + MAE or accuracy), more time than its
forward pass. :class:`TaskMetrics` keeps every sum the epoch needs in two
small vectors, updated on-device with a handful of ops and no host sync, and
reduced once at epoch end (a sum over processes under DDP: it is a
torchmetrics ``Metric``, so syncing and the resume state work as before).
Sums are float32 (as torchmetrics keeps them) and counts int64 (exact).

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
        # float sums (loss * weight, and the squared and absolute errors) and integer counts (the loss
        # weight, correct predictions, target elements): int64 stays exact, float32 exists on every device
        floats, counts = (3, 2) if kind == "regression" else (1, 3)
        self.add_state("sums", default=torch.zeros(floats), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(counts, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, loss: Tensor, weight: Union[int, Tensor], predictions: Tensor, targets: Tensor) -> None:
        """Add one batch: its mean ``loss`` over ``weight`` items, and its predictions and targets."""
        device = loss.device
        if not isinstance(weight, Tensor):  # a fill on the device: no host-to-device copy (a sync on a GPU)
            weight = torch.full((), weight, dtype=torch.long, device=device)
        loss_sum = loss.float() * weight
        if self.kind == "regression":
            error = (predictions - targets).float()
            floats = [loss_sum, error.square().sum(), error.abs().sum()]
            counts = [weight, torch.full((), targets.numel(), dtype=torch.long, device=device)]
        elif self.kind == "binary":
            floats = [loss_sum]
            correct = ((predictions > 0) == targets.bool()).sum()
            counts = [weight, correct, torch.full((), targets.numel(), dtype=torch.long, device=device)]
        else:
            valid = targets != self.ignore_index
            floats = [loss_sum]
            counts = [weight, ((predictions.argmax(-1) == targets) & valid).sum(), valid.sum()]
        self.sums += torch.stack(floats).to(self.sums.dtype)
        self.counts += torch.stack([c.to(torch.long) for c in counts])

    def compute(self) -> Dict[str, Tensor]:
        weight, *counts = self.counts.float()  # float32: float64 does not exist on every device
        if self.kind == "regression":
            loss_sum, squared, absolute = self.sums.float()
            values = [loss_sum / weight, squared / counts[0], absolute / counts[0]]
        else:
            correct, total = counts
            values = [self.sums.float()[0] / weight, correct / total]
        return dict(zip(self.names, values))
