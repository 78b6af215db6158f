"""Every private member of Lightning (and torchmetrics) that seqframe touches, and only here.

Lightning offers no public way to do these few things; each is wrapped in a
function named for what it does, and tests/test_private_api.py has one
test per member, so a Lightning upgrade that moves one fails in one named
place instead of somewhere deep in a training run.
"""

from __future__ import annotations

from typing import Any


def count_logged_steps(trainer: Any, steps: int) -> None:
    """Set the step axis Lightning's loggers write (its count of stepped batches) to ``steps``:
    with several optimizer steps per Lightning step it would count Lightning steps instead."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = int(steps)


def epoch_batches_done(trainer: Any) -> bool:
    """Whether the training epoch's batches are all done (not cut short by ``max_steps``): Lightning's
    own test for stepping epoch-interval schedulers."""
    return bool(trainer.fit_loop.epoch_loop._num_ready_batches_reached())


def stop_after_this_step(trainer: Any) -> None:
    """Make this rank stop after the current step, as if it had received SIGTERM itself (the signal
    reaches the ranks at different moments; all must stop at the same step)."""
    trainer._signal_connector.received_sigterm = True
