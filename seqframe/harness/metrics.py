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

from typing import Dict, Sequence, Union

import torch
from torch import Tensor
from torchmetrics import Metric

from seqframe.data.forecast_scores import SCORES, covered, error_sums, pinball, scores

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


class ForecastMetrics(Metric):
    """A forecasting stage's metrics in the data's units (:mod:`seqframe.data.forecast_scores` has the
    formulas): the mean loss, ``mae``, ``rmse``, ``mape``, ``smape``, ``mase``, with quantiles also
    ``pinball`` and ``coverage`` (the share of values between the outermost quantiles), and with
    ``per_step`` each score per horizon step (``mae_step1``...). Running sums, as :class:`TaskMetrics`."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, horizon: int, quantiles: Sequence[float] = (), per_step: bool = False) -> None:
        super().__init__()
        self.quantiles, self.per_step = tuple(quantiles), per_step
        self.point = self.quantiles.index(0.5) if self.quantiles else 0  # the median is the point forecast
        self.add_state("sums", default=torch.zeros(len(SCORES), horizon), dist_reduce_fx="sum")
        # loss * weight, pinball sum; loss weight, values per step, values covered by the interval
        self.add_state("extra", default=torch.zeros(2), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(2 + horizon, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, loss: Tensor, weight: int, pred: Tensor, true: Tensor, scale: Tensor) -> None:
        """One batch: its mean ``loss`` over ``weight`` windows, forecasts ``[B, H, K, Q]`` (sorted over Q),
        values ``[B, H, K]`` and MASE scales ``[B, K]``, all in the data's units."""
        pred, true = pred.float(), true.float()
        self.sums += error_sums(pred[..., self.point], true, scale.float())
        quantile = pinball(pred, true, self.quantiles) * true.numel() if self.quantiles else loss.new_zeros(())
        self.extra += torch.stack([loss.float() * weight, quantile.float()])
        inside = covered(pred, true) if self.quantiles else torch.zeros((), dtype=torch.long, device=pred.device)
        per_step = torch.full((true.shape[1],), true.shape[0] * true.shape[2], dtype=torch.long, device=pred.device)
        self.counts += torch.cat([torch.stack([torch.as_tensor(weight, device=pred.device), inside]), per_step])

    def compute(self) -> Dict[str, Tensor]:
        counts = self.counts.float()
        values = {"loss": self.extra[0] / counts[0], **scores(self.sums, counts[2:], self.per_step)}
        if self.quantiles:
            total = counts[2:].sum()
            values.update(pinball=self.extra[1] / total, coverage=counts[1] / total)
        return values
