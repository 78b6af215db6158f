"""Every private member of Lightning (and torchmetrics) that seqframe touches, and only here.

Lightning offers no public way to do these few things; each is wrapped in a
function named for what it does, and tests/test_private_api.py has one
test per member, so a Lightning upgrade that moves one fails in one named
place instead of somewhere deep in a training run.
"""

from __future__ import annotations

from typing import Any

from seqframe.errors import SeqframeError


class LightningChangedError(SeqframeError):
    """A Lightning upgrade moved or renamed a private member that seqframe uses."""


def _check_member(owner: Any, name: str, use: str, package: str = "pytorch_lightning") -> None:
    """Refuse to go on when ``owner`` no longer has ``name`` (setting a missing attribute would
    silently create it and change nothing)."""
    if not hasattr(owner, name):
        from importlib.metadata import version

        raise LightningChangedError(
            f"{package} {version(package.replace('_', '-'))} has no {type(owner).__name__}.{name}, which "
            f"seqframe uses {use} (seqframe/harness/private_api.py, written against Lightning 2.6)"
        )


def count_logged_steps(trainer: Any, steps: int) -> None:
    """Set the step axis Lightning's loggers write (its count of stepped batches) to ``steps``:
    with several optimizer steps per Lightning step it would count Lightning steps instead.

    No public way: a logged ``step`` value would move only seqframe's own rows, while this count
    also decides when Lightning writes step logs (``log_every_n_steps``) and is the step that
    callbacks such as ``LearningRateMonitor`` log against."""
    loop = trainer.fit_loop.epoch_loop
    _check_member(loop, "_batches_that_stepped", "for steps_per_execution")
    loop._batches_that_stepped = int(steps)


def stop_after_this_step(trainer: Any) -> None:
    """Make this rank stop after the current step, as if it had received SIGTERM itself (the signal
    reaches the ranks at different moments; all must stop at the same step).

    No public way: ``trainer.received_sigterm`` is read-only, and ``trainer.should_stop`` would
    finish the epoch (validation, epoch-end checkpoints) and return from ``fit`` as if done."""
    use = "to stop all ranks at the same step on SIGTERM"
    _check_member(trainer, "_signal_connector", use)
    _check_member(trainer._signal_connector, "received_sigterm", use)
    trainer._signal_connector.received_sigterm = True


def set_metric_update_count(metric: Any, count: int) -> None:
    """Restore how many times a torchmetrics ``Metric`` was updated (its public ``update_count`` is
    read-only): ``compute()`` warns on, and syncing checks, a metric that seems never updated."""
    _check_member(metric, "_update_count", "to restore metric sums on exact resume", "torchmetrics")
    metric._update_count = int(count)


def forget_computed_value(metric: Any) -> None:
    """Drop the value a torchmetrics ``Metric`` cached at its last ``compute()``, so that the next one
    computes from the (restored) state instead of returning a stale result."""
    _check_member(metric, "_computed", "to restore metric sums on exact resume", "torchmetrics")
    metric._computed = None
