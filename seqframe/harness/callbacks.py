"""Lightning callbacks seqframe adds to every run, and the Optuna pruning one it adds to a search's trials."""

from __future__ import annotations

import time
from typing import Any, List, Optional

import pytorch_lightning as pl

from seqframe.harness.rundir import CPU, ELAPSED


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (its validation included), for summary.json; with each
    validation, the wall and CPU seconds since fitting started (``time/elapsed_s``, ``time/cpu_s``
    in metrics.csv). CPU seconds (all this process's threads) stay comparable on a busy machine."""

    def __init__(self) -> None:
        self.durations: List[float] = []
        self._start = 0.0
        self._fit_start = 0.0
        self._fit_cpu_start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._fit_cpu_start = time.process_time()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self._start)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            clocks = {ELAPSED: time.perf_counter() - self._fit_start, CPU: time.process_time() - self._fit_cpu_start}
            pl_module.log_dict(clocks, sync_dist=False)  # one call: each log call costs ~1 ms of Lightning


class OptunaPruning(pl.Callback):
    """Reports the monitored validation metric to the job's Optuna trial at every validation, and
    stops training cleanly (epoch end, checkpoints, test) when the study's pruner says the trial is
    hopeless; :attr:`pruned_at` is then the step. The sweeper tells the study PRUNED from the
    trial's ``pruned_at_step`` attribute, and summary.json says ``status: pruned``."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: Optional[int] = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        prune = False
        if trainer.is_global_zero and self.monitor in trainer.callback_metrics:
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.global_step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):  # every rank stops at the same step
            self.pruned_at = trainer.global_step
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.trial.set_user_attr("pruned_at_step", self.pruned_at)
                print(f"seqframe: optuna trial {self.trial.number} pruned at step {self.pruned_at} "
                      f"({self.monitor} {float(trainer.callback_metrics[self.monitor]):.4g})")


def pruning_callbacks(monitor: str) -> List[pl.Callback]:
    """:class:`OptunaPruning` when this job is a trial of an Optuna search with a pruner; else none."""
    from seqframe.harness.sweep import job_trial

    trial = job_trial()
    return [] if trial is None else [OptunaPruning(trial, monitor)]


def ending(trainer: pl.Trainer) -> str:
    """summary.json's status for a run whose fit returned: ``pruned`` if a pruner stopped it."""
    return "pruned" if any(getattr(c, "pruned_at", None) is not None for c in trainer.callbacks) else "finished"
