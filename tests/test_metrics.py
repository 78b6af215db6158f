"""TaskMetrics against independent references over several batches (NumPy and torchmetrics' own classes)."""

import numpy as np
import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from torchmetrics.classification import MulticlassAccuracy

from seqframe.harness.metrics import TaskMetrics


def test_regression_sums_match_torchmetrics_and_the_weighted_mean_loss():
    torch.manual_seed(0)
    metrics, mse, mae = TaskMetrics("regression"), MeanSquaredError(), MeanAbsoluteError()
    losses, weights = [], []
    for size in (5, 3, 8):
        p, y = torch.randn(size, 2), torch.randn(size, 2)
        loss = torch.rand(())
        metrics.update(loss, size, p, y)
        mse.update(p, y)
        mae.update(p, y)
        losses.append(float(loss))
        weights.append(size)
    out = metrics.compute()
    torch.testing.assert_close(out["mse"], mse.compute())
    torch.testing.assert_close(out["mae"], mae.compute())
    assert abs(float(out["loss"]) - np.average(losses, weights=weights)) < 1e-6


def test_binary_accuracy_thresholds_logits_at_zero():
    metrics = TaskMetrics("binary")
    logits = torch.tensor([0.3, -0.2, 0.9, -1.5, 0.1])  # all but one in [0, 1]: still logits, not probabilities
    targets = torch.tensor([1, 0, 0, 0, 0])
    metrics.update(torch.tensor(0.5), 5, logits, targets)
    assert abs(float(metrics.compute()["acc"]) - 3 / 5) < 1e-7


def test_multiclass_accuracy_skips_ignored_targets():
    torch.manual_seed(0)
    metrics, reference = (
        TaskMetrics("multiclass", ignore_index=-100),
        MulticlassAccuracy(4, average="micro", ignore_index=-100),
    )
    for _ in range(3):
        logits, targets = torch.randn(12, 4), torch.randint(0, 4, (12,))
        targets[::3] = -100
        metrics.update(torch.tensor(1.0), int((targets != -100).sum()), logits, targets)
        reference.update(logits, targets)
    torch.testing.assert_close(metrics.compute()["acc"], reference.compute())
    metrics.reset()
    assert not metrics.sums.any() and not metrics.counts.any()
