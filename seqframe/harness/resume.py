"""Exact resume: what a checkpoint must hold beyond weights and optimizer.

Lightning's checkpoint already holds the weights, optimizer, schedulers,
loop progress and the loggers' step. Two things were missing for a resumed
run to continue bit-exactly on CPU:

* the random number generators, the metrics' mid-epoch sums and (``data.stateful``) the state the
  model carries from one training batch to the next: :class:`ResumeState` stores them per rank
  (:mod:`~seqframe.harness.rng_state`, :mod:`~seqframe.harness.metric_state`);
* the position inside an epoch: :class:`~seqframe.data.loading.ResumableSampler` makes each epoch's
  order a function of (seed, epoch) and can start part-way, and
  :class:`~seqframe.data.loading.ResumableDataLoader` tells Lightning how many batches it yielded.

The rest of fault tolerance has a module each: SIGTERM
(:mod:`~seqframe.harness.preemption`), step checkpoints
(:mod:`~seqframe.harness.step_checkpoint`), the CSV log across a resume
(:mod:`~seqframe.harness.csv_log`) and the checkpoint ``ckpt_path`` means
(:mod:`~seqframe.harness.resume_checkpoint`). Their names, and the loaders', are
importable from here too, as from ``seqframe.resume`` before 0.2 (older configs
name ``seqframe.resume.StepCheckpoint``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch

from seqframe.core.state import map_state
from seqframe.data.loading import ResumableDataLoader, ResumableSampler, resumable_loader
from seqframe.harness.csv_log import keep_csv_rows_before
from seqframe.harness.metric_state import metric_states, set_metric_states
from seqframe.harness.preemption import SaveOnSigterm
from seqframe.harness.resume_checkpoint import STRUCTURE_KEYS, check_same_model, find_checkpoint
from seqframe.harness.rng_state import rng_state, set_rng_state
from seqframe.harness.rundir import LAST
from seqframe.harness.step_checkpoint import StepCheckpoint

__all__ = [
    "LAST",
    "STRUCTURE_KEYS",
    "ResumableDataLoader",
    "ResumableSampler",
    "ResumeState",
    "SaveOnSigterm",
    "StepCheckpoint",
    "check_same_model",
    "find_checkpoint",
    "keep_csv_rows_before",
    "metric_states",
    "resumable_loader",
    "rng_state",
    "set_metric_states",
    "set_rng_state",
]


def _gather(obj: Any) -> List[Any]:
    """``obj`` from every rank (a list indexed by rank); just ``[obj]`` in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: List[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def carried_training_state(module: Optional[torch.nn.Module]) -> Any:
    """The state a stateful model (``data.stateful``) carries into its next training batch, on the CPU
    (gathered from every rank as plain tensors); None for other models."""
    state = (getattr(module, "carried", None) or {}).get("train")
    return None if state is None else map_state(lambda t: t.detach().cpu(), state)


class ResumeState(pl.Callback):
    """Puts every rank's RNG, metric and carried model states into each checkpoint and restores them.

    The states are restored at ``on_train_start``, after Lightning has rebuilt
    the loaders, so the resumed run draws exactly what the interrupted one
    would have drawn next. (Checkpoints keep this state under the class's name:
    renaming it would orphan the state in existing checkpoints.)
    """

    def __init__(self) -> None:
        self._to_restore: Optional[Dict[str, List[Any]]] = None
        self._module: Optional[torch.nn.Module] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._module = pl_module

    def state_dict(self) -> Dict[str, Any]:  # called on every rank while a checkpoint is written
        metrics = metric_states(self._module) if self._module is not None else {}
        carried = carried_training_state(self._module)
        return {"rng": _gather(rng_state()), "metrics": _gather(metrics), "carried": _gather(carried)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Dict) -> None:
        for logger in trainer.loggers:  # the logs on disk reach as far as the checkpoint (kill -9 loses neither)
            logger.save()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._to_restore:
            return
        rng, metrics = self._to_restore.get("rng") or [], self._to_restore.get("metrics") or []
        if rng:
            set_rng_state(rng[trainer.global_rank % len(rng)])
        if metrics:
            set_metric_states(pl_module, metrics[trainer.global_rank % len(metrics)])
        carried = self._to_restore.get("carried") or []
        if carried and carried[trainer.global_rank % len(carried)] is not None:
            state = carried[trainer.global_rank % len(carried)]
            pl_module.carried["train"] = map_state(lambda t: t.to(pl_module.device), state)
        self._to_restore = None
