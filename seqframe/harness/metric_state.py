"""The accumulated state of torchmetrics metrics (mid-epoch sums and counts), which Lightning does not
save: without it a resumed epoch's logged means would cover only its tail.

The two private members this needs are reached through :mod:`seqframe.harness.private_api`.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from seqframe.harness.private_api import forget_computed_value, set_metric_update_count

UPDATE_COUNT = "_update_count"  # the key in checkpoints (kept: older checkpoints hold it)


def metric_states(module: torch.nn.Module) -> Dict[str, Dict[str, Any]]:
    """Every torchmetrics metric in ``module`` by module name: its states and how often it was updated."""
    from torchmetrics import Metric

    return {
        name: {**metric.metric_state, UPDATE_COUNT: metric.update_count}
        for name, metric in module.named_modules()
        if isinstance(metric, Metric)
    }


def set_metric_states(module: torch.nn.Module, states: Dict[str, Dict[str, Any]]) -> None:
    """Restore what :func:`metric_states` captured (metrics not named in ``states`` are left alone)."""
    from torchmetrics import Metric

    for name, metric in module.named_modules():
        if isinstance(metric, Metric) and name in states:
            values = dict(states[name])
            count = values.pop(UPDATE_COUNT, None)
            for key, value in values.items():  # the names the metric gave add_state
                setattr(metric, key, value)
            if count is not None:
                set_metric_update_count(metric, count)
            forget_computed_value(metric)
