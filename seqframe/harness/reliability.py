"""What :func:`seqframe.harness.train.train` adds to every run so that it loses nothing and fails loudly.

One place for the wiring: the callbacks that make checkpoints resumable
exactly and guard against NaN, and the fit call that finds the checkpoint to
resume, loads it weights-only and turns SIGTERM into a clean stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytorch_lightning as pl
from omegaconf import DictConfig

from seqframe.harness.checkpoint_io import AtomicCheckpoints
from seqframe.harness.csv_log import keep_csv_rows_before
from seqframe.harness.guards import NonFiniteGuard
from seqframe.harness.preemption import SaveOnSigterm
from seqframe.harness.resume import ResumeState
from seqframe.harness.resume_checkpoint import find_checkpoint
from seqframe.harness.rundir import RunDir, RunSummary


def reliability_callbacks(cfg: DictConfig, output_dir: Path) -> List[pl.Callback]:
    """RNG and metric state in checkpoints written whole or not at all, SIGTERM handling, and the
    non-finite guard (``on_nonfinite``)."""
    checkpoints = RunDir(output_dir).checkpoints
    return [
        AtomicCheckpoints(),
        ResumeState(),
        SaveOnSigterm(checkpoints),
        NonFiniteGuard(checkpoints, action=str(cfg.get("on_nonfinite", "stop"))),
    ]


def fit_resumably(trainer: pl.Trainer, model: Any, datamodule: Any, cfg: DictConfig, summary: RunSummary) -> bool:
    """``trainer.fit`` from ``ckpt_path`` (checked, then loaded weights-only by Lightning too).

    Returns False when SIGTERM stopped the run: the checkpoint is written and
    ``summary`` says ``status: stopped`` and how to resume.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    resume_from = find_checkpoint(cfg.get("ckpt_path"), Path(cfg.paths.output_dir), dict(model.hparams))
    summary.resumed_from = str(resume_from) if resume_from else None
    if resume_from is not None:
        keep_csv_rows_before(trainer, resume_from)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except SIGTERMException:
        saver = next(c for c in trainer.callbacks if isinstance(c, SaveOnSigterm))
        summary.update(
            status="stopped",
            steps=trainer.global_step,
            epochs=trainer.current_epoch,
            checkpoint=str(saver.stopped_by_sigterm),
            error=f"stopped by SIGTERM at step {trainer.global_step}; resume with ckpt_path=last "
            f"hydra.run.dir={cfg.paths.output_dir}",
        )
        return False
    return True
