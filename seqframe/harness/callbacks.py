"""Lightning callbacks seqframe adds to every run."""

from __future__ import annotations

import time
from typing import List

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
