"""Exact resume: what a checkpoint must hold beyond weights and optimizer, and where to find it.

Lightning's checkpoint already holds the weights, optimizer, schedulers,
loop progress and the loggers' step. Two things were missing for a resumed
run to continue bit-exactly on CPU:

* the random number generators (dropout draws from torch's global RNG):
  :class:`ResumeState` stores torch/numpy/python states per rank, as tensors
  and plain lists so that weights-only loading accepts them;
* the position inside an epoch: :class:`~seqframe.data.loading.ResumableSampler` makes each epoch's
  order a function of (seed, epoch) and can start part-way, and
  :class:`~seqframe.data.loading.ResumableDataLoader` tells Lightning how many batches it yielded
  (Lightning calls ``state_dict``/``load_state_dict`` on loaders that have them).

It also catches SIGTERM (what clusters send before pre-emption): the run
writes ``checkpoints/last.ckpt`` after the current training step and stops
cleanly.
"""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from seqframe.harness.checkpoints import CheckpointError, load_checkpoint
from seqframe.harness.private_api import stop_after_this_step

LAST = "last.ckpt"


def rng_state() -> Dict[str, Any]:
    """This process's torch, numpy and python RNG states as tensors and plain lists (weights-only loadable)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(mt), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather(obj: Any) -> List[Any]:
    """``obj`` from every rank (a list indexed by rank); just ``[obj]`` in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: List[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def metric_states(module: torch.nn.Module) -> Dict[str, Dict[str, Any]]:
    """The accumulated state of every torchmetrics metric in ``module`` (mid-epoch sums and counts),
    which Lightning does not save: without it the resumed epoch's logged means cover only its tail."""
    from torchmetrics import Metric

    return {
        name: {**{k: v for k, v in metric.metric_state.items()}, "_update_count": metric._update_count}
        for name, metric in module.named_modules()
        if isinstance(metric, Metric)
    }


def set_metric_states(module: torch.nn.Module, states: Dict[str, Dict[str, Any]]) -> None:
    from torchmetrics import Metric

    for name, metric in module.named_modules():
        if isinstance(metric, Metric) and name in states:
            for key, value in states[name].items():
                setattr(metric, key, value)
            metric._computed = None


class ResumeState(pl.Callback):
    """Puts every rank's RNG and metric states into each checkpoint and restores them; saves on SIGTERM.

    The states are restored at ``on_train_start``, after Lightning has rebuilt
    the loaders, so the resumed run draws exactly what the interrupted one
    would have drawn next.
    """

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self._to_restore: Optional[Dict[str, List[Any]]] = None
        self._module: Optional[torch.nn.Module] = None
        self.stopped_by_sigterm: Optional[Path] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._module = pl_module

    def state_dict(self) -> Dict[str, Any]:  # called on every rank while a checkpoint is written
        metrics = metric_states(self._module) if self._module is not None else {}
        return {"rng": _gather(rng_state()), "metrics": _gather(metrics)}

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
        self._to_restore = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.stopped_by_sigterm is not None:
            return
        # all ranks decide together (the signal reaches them at different moments), save, then all stop
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            stop_after_this_step(trainer)
            self._save_and_stop(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and self.stopped_by_sigterm is None:
            self._save_and_stop(trainer)  # the signal came outside a training step (e.g. during validation)

    def _save_and_stop(self, trainer: pl.Trainer) -> None:
        path = self.checkpoint_dir / LAST
        trainer.save_checkpoint(path, weights_only=False)  # full state (False: no log line about it)
        self.stopped_by_sigterm = path
        rank_zero_info(f"seqframe: SIGTERM at step {trainer.global_step}: saved {path}; resume with ckpt_path=last")


class StepCheckpoint(pl.Callback):
    """``last.ckpt`` every N training steps too (ModelCheckpoint saves it at epoch ends), so that a
    killed run loses at most N steps and resumes mid-epoch exactly."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 100) -> None:
        if int(every_n_train_steps) < 0:
            raise ValueError(f"callbacks.step_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.path = Path(dirpath) / LAST
        self.every = int(every_n_train_steps)

    _saved_at = 0  # the global step of the last save

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # every time a multiple of N is reached or crossed (one Lightning step may take several
        # optimizer steps: seqframe.harness.execution)
        step = trainer.global_step
        if self.every and step // self.every > self._saved_at // self.every and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_at = step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_at = trainer.global_step  # a resumed run counts from its checkpoint


def keep_csv_rows_before(trainer: pl.Trainer, checkpoint: Path) -> None:
    """Lightning's CSV logger empties ``metrics.csv`` when it starts; when resuming into the same
    run dir, keep the rows of the steps the checkpoint already holds (later ones are redone)."""
    from pytorch_lightning.loggers import CSVLogger

    loggers = [lg for lg in trainer.loggers if isinstance(lg, CSVLogger)]
    if not loggers or not trainer.is_global_zero:
        return
    step = int(load_checkpoint(checkpoint).get("global_step", 0))
    for logger in loggers:
        path = Path(logger.log_dir) / "metrics.csv"
        rows = []
        if path.is_file():
            with open(path, newline="") as file:
                rows = [row for row in csv.DictReader(file) if row.get("step") and int(row["step"]) < step]
        with warnings.catch_warnings():  # its warning that old logs will be deleted: not so here
            warnings.simplefilter("ignore")
            writer = logger.experiment  # creating the writer empties the file
        writer.metrics[:0] = rows  # written before the resumed run's rows


# the model settings the weights' shapes follow
STRUCTURE_KEYS = ("hidden_size", "num_layers", "bidirectional", "encoder", "embed_dim")


def check_same_model(checkpoint: Dict[str, Any], path: Path, hparams: Dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another task, cell or model shape: the weights may fit by chance
    (same sizes) and training would go on silently on the wrong problem. Backend and optimizer may change."""
    saved = checkpoint.get("hyper_parameters") or {}

    def cell(config: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in (config or {}).items() if k != "backend"}

    differences = [
        f"{key}: {saved[key]!r} there, {hparams[key]!r} here"
        for key in ("task", *STRUCTURE_KEYS)
        if key in saved and key in hparams and saved[key] != hparams[key]
    ]
    if "cell" in saved and cell(saved["cell"]) != cell(hparams.get("cell")):
        differences.insert(0, f"cell: {cell(saved['cell'])} there, {cell(hparams.get('cell'))} here")
    if differences:
        raise CheckpointError(
            f"ckpt_path: {path} was trained for another model or task ({'; '.join(differences)}). Resume with "
            "the run's own data=, cell= and model settings, or train anew without ckpt_path"
        )


def find_checkpoint(
    ckpt_path: Optional[str], output_dir: Path, hparams: Optional[Dict[str, Any]] = None
) -> Optional[Path]:
    """The checkpoint file ``ckpt_path`` means, checked (weights-only) before training starts.

    ``last``: this run dir's ``checkpoints/last.ckpt``, or None (start fresh) when
    there is none yet, so the same command works for the first start and every
    restart after a pre-emption. A run dir means its ``checkpoints/last.ckpt``.
    With ``hparams`` (the model about to train) it must be a checkpoint of the same model and task.
    """
    if ckpt_path in (None, ""):
        return None
    if str(ckpt_path) == "last":
        path = Path(output_dir) / "checkpoints" / LAST
        if not path.is_file():
            rank_zero_info(f"seqframe: ckpt_path=last: no {path} yet, starting from scratch")
            return None
    else:
        path = Path(str(ckpt_path))
        if path.is_dir():
            candidates = [path / "checkpoints" / LAST, path / LAST]
            path = next((c for c in candidates if c.is_file()), candidates[0])
            if not path.is_file():
                raise CheckpointError(f"ckpt_path={ckpt_path} is a directory without checkpoints/{LAST}")
    checkpoint = load_checkpoint(path)  # refuses unreadable checkpoints and pickled objects with a clear message
    if hparams is not None:
        check_same_model(checkpoint, path, hparams)
    return path
