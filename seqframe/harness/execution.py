"""Several batches per Lightning step: Keras's ``steps_per_execution``, for models too small for Lightning.

A tiny model's training step costs less than Lightning's per-batch machinery
around it (hooks, closures, progress, logging bookkeeping: ~1 ms per batch on
the reference CPU against 0.75 ms for the spec's 1617-parameter LSTM). With
``steps_per_execution: K`` the loaders hand Lightning :class:`BatchGroup` s of
K consecutive batches, and :class:`GroupedSteps` runs all of them inside one
Lightning step: K optimizer steps (manual optimization), each exactly what
``K = 1`` would do — same batches, order, clipping, guard and schedulers, so
the weights come out the same — while Lightning's per-batch work runs once
per group.

Everything lives here, behind one entry point, :func:`configure`, which
:func:`seqframe.harness.train.train` calls once; the LightningModule only
forwards four hooks to the :class:`GroupedSteps` it is given (``module.execution``).

What changes, as in Keras: per-batch callbacks and step-level logs see every
K-th step (``global_step`` still counts optimizer steps, and so does the
``step`` column of the logs); ``limit_*_batches`` counts groups;
``val_check_interval`` in batches must be a multiple of K; checkpoints fall
on group boundaries (a SIGTERM stops after the current group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional

import torch

from seqframe.harness.config_check import ConfigError
from seqframe.harness.private_api import count_logged_steps


def configure(model: Any, datamodule: Any, steps_per_execution: int, trainer_cfg: Any) -> Dict[str, Any]:
    """Make one run take ``steps_per_execution`` optimizer steps per Lightning step; returns the Trainer
    settings that needs (pass them to the Trainer). Nothing changes for 1.

    Above 1: settings that cannot keep their meaning are refused (:func:`trainer_overrides`), ``model``
    switches to manual optimization with a :class:`GroupedSteps` as ``model.execution`` (which clips
    as the Trainer's ``gradient_clip_*`` say), and ``datamodule``'s loaders hand out :class:`BatchGroup` s.
    A training-loop setting, not a hyper-parameter: checkpoints do not record it."""
    k = int(steps_per_execution)
    overrides = trainer_overrides(k, trainer_cfg)
    if k == 1:
        return overrides
    model.automatic_optimization = False
    model.execution = GroupedSteps(trainer_cfg.get("gradient_clip_val"), trainer_cfg.get("gradient_clip_algorithm"))
    group_datamodule_batches(datamodule, k)
    return overrides


class BatchGroup(list):
    """Up to K consecutive batches that one Lightning step runs (a list, so Lightning moves it to the device)."""


class GroupedLoader:
    """Yields the batches of ``loader`` in :class:`BatchGroup` s of ``size`` (the last one may be shorter).

    Every other attribute is the wrapped loader's: the sampler (Lightning's
    ``set_epoch``) and, where the loader has them, ``state_dict``/``load_state_dict``
    (its position mid-epoch, in its own batches: exact resume).
    """

    def __init__(self, loader: Any, size: int) -> None:
        self.loader = loader
        self.size = int(size)

    def __iter__(self) -> Iterator[BatchGroup]:
        group = BatchGroup()
        for batch in self.loader:
            group.append(batch)
            if len(group) == self.size:
                yield group
                group = BatchGroup()
        if group:
            yield group

    def __len__(self) -> int:
        return -(-len(self.loader) // self.size)

    def __getattr__(self, name: str) -> Any:  # sampler, state_dict, load_state_dict, ...: the wrapped loader's
        if name == "loader":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


LOADER_HOOKS = ("train_dataloader", "val_dataloader", "test_dataloader")


def group_datamodule_batches(datamodule: Any, steps_per_execution: int) -> None:
    """Make ``datamodule``'s train/val/test loaders hand out groups of ``steps_per_execution`` batches.

    The data modules know nothing of execution: their loader methods are wrapped
    on this instance only, so any LightningDataModule works with any K."""
    if int(steps_per_execution) == 1:
        return
    for hook in LOADER_HOOKS:
        make = getattr(datamodule, hook)
        setattr(datamodule, hook, lambda make=make: GroupedLoader(make(), steps_per_execution))


def as_batches(batch_or_group: Any) -> List[Any]:
    """The batches a Lightning step received: a group's, or the one batch."""
    return list(batch_or_group) if isinstance(batch_or_group, BatchGroup) else [batch_or_group]


def trainer_overrides(steps_per_execution: int, trainer_cfg: Any) -> Dict[str, Any]:
    """The Trainer settings K optimizer steps per Lightning step need, after refusing those that cannot keep
    their meaning: no Trainer-side clipping (manual optimization; :class:`GroupedSteps` clips),
    ``val_check_interval`` in groups."""
    k = int(steps_per_execution)
    if k == 1:
        return {}
    accumulate = trainer_cfg.get("accumulate_grad_batches") or 1
    if int(accumulate) != 1:
        raise ConfigError(
            f"steps_per_execution={k} cannot be combined with trainer.accumulate_grad_batches={accumulate}: "
            "set one of them to 1 (to accumulate, raise data.batch_size instead)"
        )
    overrides: Dict[str, Any] = {"gradient_clip_val": None, "gradient_clip_algorithm": None}
    interval = trainer_cfg.get("val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool):  # in batches; Lightning counts groups
        if interval % k:
            lower, upper = interval // k * k, -(-interval // k) * k
            raise ConfigError(
                f"trainer.val_check_interval={interval} batches is not a multiple of steps_per_execution={k}; "
                f"validation can only run between groups of {k} steps: use {upper}" + (f" or {lower}" if lower else "")
            )
        overrides["val_check_interval"] = interval // k
    return overrides


def epoch_done(trainer: Any) -> bool:
    """Whether the training epoch's batches are all done, not cut short by ``max_steps``: Lightning's own test
    for stepping epoch-interval schedulers (``_num_ready_batches_reached``), in public terms (the batch index
    within the epoch counts ready batches; ``is_last_batch`` covers loaders without a length)."""
    ready = trainer.fit_loop.epoch_loop.batch_idx + 1
    return ready == trainer.num_training_batches or bool(trainer.is_last_batch)


class GroupedSteps:
    """Runs a :class:`BatchGroup` as K optimizer steps, each what automatic optimization does for one batch.

    The module forwards ``training_step``, ``on_before_optimizer_step``, ``on_train_epoch_end`` and the
    scheduler part of ``configure_optimizers`` here, and provides ``batch_loss`` and ``log_step_loss``
    (:class:`seqframe.harness.model.SequenceModel`'s).
    """

    def __init__(
        self, gradient_clip_val: Optional[float] = None, gradient_clip_algorithm: Optional[str] = None
    ) -> None:
        self.clip = (gradient_clip_val, gradient_clip_algorithm)
        self.scheduler: Optional[ManualScheduler] = None

    def optimizer_config(
        self, optimizer: Any, scheduler: Any, interval: str = "epoch", monitor: Optional[str] = None
    ) -> Dict[str, Any]:
        """``configure_optimizers``' answer: Lightning steps no scheduler under manual optimization, so
        :class:`ManualScheduler` does, where Lightning would."""
        self.scheduler = ManualScheduler.check(scheduler, interval, monitor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def training_step(self, module: Any, group: Any) -> None:
        """Zero the gradients, backward, the guard and clipping (:meth:`before_optimizer_step`), step,
        step-interval schedulers — per batch; stop at ``max_steps`` exactly, mid-group too."""
        trainer = module.trainer
        optimizer = module.optimizers()
        scheduler = self.scheduler
        loss = None
        for batch in as_batches(group):
            if 0 <= trainer.max_steps <= trainer.global_step:
                return self._end_group(module, loss, last_of_epoch=False)
            loss = module.batch_loss(batch, "train", log_step=False)
            optimizer.zero_grad()
            module.manual_backward(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.after_optimizer_step()
        self._end_group(module, loss, last_of_epoch=epoch_done(trainer))

    def _end_group(self, module: Any, loss: Optional[torch.Tensor], last_of_epoch: bool) -> None:
        """After the epoch's last batch its epoch-interval schedulers step (before the batch-end hooks, as
        Lightning steps them); the logs' step axis stays on optimizer steps; the newest loss is logged."""
        trainer = module.trainer
        if last_of_epoch and self.scheduler is not None:
            self.scheduler.after_last_batch()
        count_logged_steps(trainer, trainer.global_step - 1)  # Lightning would count its own steps (groups)
        if loss is not None:  # Lightning writes step logs only at group ends
            module.log_step_loss(loss)

    def before_optimizer_step(self, module: Any, optimizer: Any) -> None:
        """Clip as the Trainer would: after the callbacks' ``on_before_optimizer_step`` (the guard)."""
        value, algorithm = self.clip
        if value:
            module.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)

    def train_epoch_end(self, module: Any) -> None:
        """ReduceLROnPlateau with the epoch's metrics; not when ``max_steps`` cut the epoch short."""
        if self.scheduler is not None and epoch_done(module.trainer):
            self.scheduler.at_epoch_end(module.trainer.callback_metrics)


@dataclass
class ManualScheduler:
    """Steps an LR scheduler as Lightning's automatic optimization does (which it skips under manual
    optimization): after every optimizer step (``interval: step``) or at each epoch's end (``epoch``,
    the default), ReduceLROnPlateau with the ``monitor`` metric's value."""

    scheduler: Any
    interval: str = "epoch"
    monitor: Optional[str] = None

    @classmethod
    def check(cls, scheduler: Any, interval: str = "epoch", monitor: Optional[str] = None) -> ManualScheduler:
        if interval not in ("step", "epoch"):
            raise ValueError(f"model.scheduler.interval={interval!r} is not valid; choose step or epoch")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if interval == "step":
                raise ValueError(
                    "model.scheduler: ReduceLROnPlateau with interval=step needs steps_per_execution=1; "
                    "use interval=epoch, or one step per execution"
                )
            if not monitor:
                raise ValueError("model.scheduler: ReduceLROnPlateau needs monitor=<a logged metric>, e.g. val/loss")
        return cls(scheduler, interval, monitor)

    @property
    def plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def after_optimizer_step(self) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def after_last_batch(self) -> None:
        """The epoch's last batch is done: epoch-interval schedulers step here, before the batch-end
        hooks (step checkpoints), as Lightning steps them; ReduceLROnPlateau waits for validation."""
        if self.interval == "epoch" and not self.plateau:
            self.scheduler.step()

    def at_epoch_end(self, metrics: Mapping[str, Any]) -> None:
        """ReduceLROnPlateau with the epoch's ``monitor`` value (its validation has run by now)."""
        if self.interval != "epoch" or not self.plateau:
            return
        if self.monitor not in metrics:
            raise ValueError(
                f"model.scheduler.monitor={self.monitor!r} was not logged; logged: {', '.join(sorted(metrics))}"
            )
        self.scheduler.step(metrics[self.monitor])
