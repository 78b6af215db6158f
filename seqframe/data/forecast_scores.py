"""Forecast errors, baseline forecasts and quantile scores: the one place their formulas live.

The model's metrics (:class:`seqframe.harness.metrics.ForecastMetrics`) and
the baselines ``data=series`` scores on the same test windows both add up
:func:`error_sums` and read them with :func:`scores`, so a model and its
baselines are measured by the same code, in the data's own units.

Definitions, over every test window, horizon step and target (``e = p - y``):
``mae`` = mean |e|; ``rmse`` = sqrt(mean e^2); ``mape`` = 100 * mean |e| / |y|;
``smape`` = 100 * mean 2|e| / (|y| + |p|) (torchmetrics' SMAPE, in percent);
``mase`` = mean |e| / s, where ``s`` is the series' in-sample seasonal-naive
MAE on its training period (mean |y_t - y_{t-m}|), as in Hyndman & Koehler (2006).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from torch import Tensor

SCORES = ("mae", "rmse", "mape", "smape", "mase")
PER_STEP = ("mae", "rmse", "smape", "mase")  # also per horizon step, in the test metrics
EPSILON = 1.17e-06  # the smallest denominator of (s)MAPE, as torchmetrics'
BASELINES = ("naive", "seasonal_naive", "growth_seasonal_naive")
BASELINE_NAMES = {
    "naive": "naive (last value)",
    "seasonal_naive": "seasonal naive",
    "growth_seasonal_naive": "seasonal naive x growth",
}


def error_sums(pred: Tensor, true: Tensor, scale: Tensor) -> Tensor:
    """``[len(SCORES), H]``: per horizon step, the sums over windows and targets of |e|, e^2, |e|/|y|,
    2|e|/(|y|+|p|) and |e|/s, from ``pred``/``true`` ``[N, H, K]`` and the MASE scale ``s`` ``[N, K]``."""
    error = (pred - true).abs()
    terms = torch.stack(
        [
            error,
            error.square(),
            error / true.abs().clamp_min(EPSILON),
            2 * error / (true.abs() + pred.abs()).clamp_min(EPSILON),
            error / scale.unsqueeze(1),
        ]
    )
    return terms.sum(dim=(1, 3))


def scores(sums: Tensor, count: Tensor, per_step: bool = False) -> Dict[str, Tensor]:
    """The scores from :func:`error_sums` added up over batches; ``count``: values per horizon step ``[H]``.
    With ``per_step``, also ``<score>_step<h>`` of the PER_STEP scores for each horizon step h = 1..H
    (zero-padded: ``mae_step01`` ... ``mae_step12``)."""

    def finish(s: Tensor, n: Tensor) -> Dict[str, Tensor]:
        mean = s / n
        return {"mae": mean[0], "rmse": mean[1].sqrt(), "mape": 100 * mean[2], "smape": 100 * mean[3], "mase": mean[4]}

    values = finish(sums.sum(1), count.sum())
    if per_step:
        width = len(str(sums.shape[1]))  # step01..step12: in order when sorted as text
        for h in range(sums.shape[1]):
            step = finish(sums[:, h], count[h])
            values.update({f"{k}_step{h + 1:0{width}d}": step[k] for k in PER_STEP})
    return values


def score_forecasts(pred: np.ndarray, true: np.ndarray, scale: np.ndarray) -> Dict[str, float]:
    """:func:`scores` of whole arrays (``[N, H, K]`` and ``[N, K]``) as floats: the baselines' scores."""
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    sums = error_sums(as_tensor(pred), as_tensor(true), as_tensor(scale))
    count = torch.full((pred.shape[1],), pred.shape[0] * pred.shape[2], dtype=torch.float64)
    return {k: float(v) for k, v in scores(sums, count).items()}


def mase_scale(values: np.ndarray, season: int) -> np.ndarray:
    """``[K]``: the in-sample seasonal-naive MAE of a training period ``[T, K]`` (T > season)."""
    return np.abs(values[season:] - values[:-season]).mean(axis=0)


def baseline_forecasts(history: np.ndarray, horizon: int, season: int) -> Dict[str, np.ndarray]:
    """The baselines' forecasts ``[H, K]`` of the ``horizon`` steps after ``history`` ``[T, K]`` (T >= season):

    * ``naive``: the last value;
    * ``seasonal_naive``: the value one season earlier (y[t+h-m*ceil(h/m)] for h = 1..H);
    * ``growth_seasonal_naive``: the seasonal naive times the last season's growth, the mean of the last
      ``m`` values over the mean of the ``m`` before them (1 with less than two seasons of history).
    """
    t = len(history)
    h = np.arange(horizon)
    seasonal = history[t + h - season * (h // season + 1)]
    growth = np.ones(history.shape[1])
    if t >= 2 * season:
        last, before = history[t - season :].mean(axis=0), history[t - 2 * season : t - season].mean(axis=0)
        growth = np.where((before > 0) & (last > 0), last / np.where(before > 0, before, 1), 1.0)
    return {
        "naive": np.repeat(history[-1:], horizon, axis=0),
        "seasonal_naive": seasonal,
        "growth_seasonal_naive": seasonal * growth,
    }


def pinball(pred: Tensor, true: Tensor, quantiles: Sequence[float]) -> Tensor:
    """The mean pinball (quantile) loss of ``pred`` ``[..., Q]`` for ``true`` ``[...]``:
    max(q (y - p), (q - 1) (y - p)), averaged over values and quantiles."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    diff = true.unsqueeze(-1) - pred
    return torch.maximum(q * diff, (q - 1) * diff).mean()


def covered(pred: Tensor, true: Tensor) -> Tensor:
    """How many values of ``true`` lie within the outermost quantiles of ``pred`` ``[..., Q]`` (sorted)."""
    return ((true >= pred[..., 0]) & (true <= pred[..., -1])).sum()
