"""The CSV log across a resume: Lightning's CSV logger empties ``metrics.csv`` when it starts, which
would lose the rows of the steps before the checkpoint a run resumes from."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytorch_lightning as pl

from seqframe.harness.checkpoints import load_checkpoint
from seqframe.harness.rundir import METRICS_FILE


def keep_csv_rows_before(trainer: pl.Trainer, checkpoint: Path) -> None:
    """When resuming into the same run dir, keep the rows of the steps ``checkpoint`` already holds
    (later ones are redone, and logged again)."""
    from pytorch_lightning.loggers import CSVLogger

    loggers = [lg for lg in trainer.loggers if isinstance(lg, CSVLogger)]
    if not loggers or not trainer.is_global_zero:
        return
    step = int(load_checkpoint(checkpoint).get("global_step", 0))
    for logger in loggers:
        path = Path(logger.log_dir) / METRICS_FILE
        rows = []
        if path.is_file():
            with open(path, newline="") as file:
                rows = [row for row in csv.DictReader(file) if row.get("step") and int(row["step"]) < step]
        with warnings.catch_warnings():  # its warning that old logs will be deleted: not so here
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
            writer = logger.experiment  # creating the writer empties the file
        writer.metrics[:0] = rows  # written before the resumed run's rows
