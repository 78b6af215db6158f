"""One test per Lightning private member that seqframe/harness/private_api.py touches, each named for it:
a Lightning upgrade that moves, renames or changes one fails here, by name, in a tiny fit."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from seqframe.harness.private_api import LightningChangedError, count_logged_steps, stop_after_this_step

BATCHES = 6


class Tiny(pl.LightningModule):
    """One linear layer; ``on_step(module, batch_idx)`` runs inside each training step."""

    def __init__(self, on_step=None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.on_step = on_step

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        self.log("x", float(batch_idx), on_step=True, on_epoch=False)
        if self.on_step is not None:
            self.on_step(self, batch_idx)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(model: pl.LightningModule, data=None, batches: int = BATCHES, **trainer_kwargs) -> pl.Trainer:
    """A quiet one-epoch fit on CPU of ``data`` (default: ``batches`` batches of one row)."""
    options = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    options.update(enable_model_summary=False, accelerator="cpu", devices=1, log_every_n_steps=1)
    trainer = pl.Trainer(**{**options, **trainer_kwargs})
    trainer.fit(model, data if data is not None else DataLoader(torch.randn(batches, 2), batch_size=1))
    return trainer


class StepRecorder(Logger):
    """The ``(step, metric names)`` pairs Lightning hands its loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None) -> None:
        self.steps.append((step, sorted(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_lightning_still_has_batches_that_stepped():
    """``fit_loop.epoch_loop._batches_that_stepped`` is the step loggers write and what decides when they
    write (``log_every_n_steps``): seqframe sets it to optimizer steps - 1 inside a training step."""
    plain = StepRecorder()
    fit(Tiny(), logger=plain)
    assert [step for step, names in plain.steps if "x" in names] == list(range(BATCHES))  # Lightning's own count

    recorder = StepRecorder()
    trainer = fit(Tiny(lambda module, i: count_logged_steps(module.trainer, 10 * i + 9)), logger=recorder)
    assert [step for step, names in recorder.steps if "x" in names] == [10 * i + 9 for i in range(BATCHES)]
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 10 * (BATCHES - 1) + 9 + 1  # Lightning adds 1

    every_tenth = StepRecorder()  # the same count decides which steps are written: (step + 1) % 10 == 0
    five_each = Tiny(lambda module, i: count_logged_steps(module.trainer, 5 * i + 4))
    fit(five_each, batches=10, logger=every_tenth, log_every_n_steps=10)
    assert [step for step, names in every_tenth.steps if "x" in names] == [9, 19, 29, 39, 49]


def test_lightning_still_has_signal_connector_received_sigterm():
    """``trainer._signal_connector.received_sigterm`` set during a step makes Lightning raise
    ``SIGTERMException`` after that step (its batch-end hooks done), as a real SIGTERM does."""
    ends = []

    class StopAtThird(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            ends.append(batch_idx)
            if batch_idx == 2:
                stop_after_this_step(trainer)

    model = Tiny()
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[StopAtThird()],
    )  # fmt: skip
    with pytest.raises(SIGTERMException):
        trainer.fit(model, DataLoader(torch.randn(BATCHES, 2), batch_size=1))
    assert trainer.received_sigterm and trainer.global_step == 3 and ends == [0, 1, 2]


@pytest.mark.parametrize(
    "call, member",
    [
        (lambda: count_logged_steps(SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=object())), 1), "_batches"),
        (lambda: stop_after_this_step(SimpleNamespace(_signal_connector=object())), "received_sigterm"),
        (lambda: stop_after_this_step(object()), "_signal_connector"),
    ],
)
def test_a_moved_member_fails_by_name_instead_of_being_created(call, member):
    with pytest.raises(LightningChangedError, match=member):
        call()


def _summed_metric():
    from seqframe.harness.metrics import TaskMetrics

    metric = TaskMetrics("regression")
    metric.update(torch.tensor(2.0), 4, torch.ones(4, 1), torch.zeros(4, 1))
    return metric


def test_torchmetrics_still_has_update_count():
    """The counter behind the read-only ``update_count``: restoring it is what a resumed metric needs."""
    from seqframe.harness.private_api import set_metric_update_count

    metric = _summed_metric()
    assert metric.update_count == 1
    set_metric_update_count(metric, 7)
    assert metric.update_count == 7


def test_torchmetrics_still_has_computed():
    """The cached result of ``compute()``: without forgetting it, restored state is not read."""
    from seqframe.harness.private_api import forget_computed_value

    metric = _summed_metric()
    first = metric.compute()["mse"]
    metric.sums.mul_(2)  # as a restore does: the state changes under the cache
    assert metric.compute()["mse"] == first  # the stale cache: why forgetting it matters
    forget_computed_value(metric)
    assert metric.compute()["mse"] == 2 * first
