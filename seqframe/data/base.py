"""What every seqframe data module states about its task, and the shared loaders.

The model wires its input encoder, head, loss and metrics from
:class:`TaskSpec` alone, so a new data module only has to build its splits
and describe them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytorch_lightning as pl
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from seqframe.data.loading import resumable_loader
from seqframe.errors import SeqframeError

TASKS = ("classify", "regress", "per_step", "per_step_regress")
REGRESSION_TASKS = ("regress", "per_step_regress")  # real-valued targets: MSE
PER_STEP_TASKS = ("per_step", "per_step_regress")  # an output at every step
SPLITS = ("train", "val", "test")
IGNORE_INDEX = -100  # per-step class targets at padded steps: left out of the loss and the metrics


@dataclass(frozen=True)
class TaskSpec:
    """The contract between a data module and the model.

    * ``task``: ``classify`` (one label per sequence), ``regress`` (one
      vector per sequence), ``per_step`` (a label at every step) or
      ``per_step_regress`` (a vector at every step, e.g. many-to-many forecasts).
    * ``input_size``: features per step for real-valued inputs ``[B, T, F]``;
      ``vocab_size``: for token inputs ``[B, T]`` (int64). Exactly one is set.
    * ``num_outputs``: classes (2 means binary, one logit) or regression size.
    * ``baseline``: metric name -> value of a predictor that ignores the
      input's structure (chance level); reports compare against it.
    * ``monitor`` / ``mode``: the validation metric that picks the best
      checkpoint; ``target``: the metric value that counts as "solved".
    * ``stateful``: batches are :class:`~seqframe.data.streams.StreamBatch` es whose rows continue the
      previous batch's rows (``data.stateful=true``): the model carries its state from batch to batch.
    """

    task: str
    num_outputs: int
    monitor: str
    mode: str
    input_size: Optional[int] = None
    vocab_size: Optional[int] = None
    baseline: Dict[str, float] = field(default_factory=dict)
    target: Optional[float] = None
    stateful: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if (self.input_size is None) == (self.vocab_size is None):
            raise ValueError("a TaskSpec sets exactly one of input_size (features) and vocab_size (tokens)")

    def as_dict(self) -> dict:
        return asdict(self)


class BatchedTensors(TensorDataset):
    """A TensorDataset that hands the loader a whole batch at once (``__getitems__``: one indexing per
    tensor), instead of one item at a time stacked again by the collate function: the same batches,
    without per-item Python work (measurable when a model's step takes about a millisecond)."""

    def __getitems__(self, indices: List[int]) -> Tuple[Tensor, ...]:
        return tuple(tensor[indices] for tensor in self.tensors)


def batched_as_is(batch: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
    """The collate function for :class:`BatchedTensors`: its batches are already whole."""
    return batch


class TaskDataModule(pl.LightningDataModule):
    """A data module whose splits are built in memory, seeded, and described by ``spec``.

    Subclasses implement :meth:`build` (one split -> a Dataset of ``(x, y)``
    or ``(x, y, lengths)``) and :attr:`spec`. ``batch_size`` is per process:
    with N DDP processes a step sees N x batch_size sequences. ``shuffle=False``
    keeps the training order fixed (then N processes with batch b see exactly
    the batches one process with batch N x b sees).
    """

    collate_fn: Optional[Callable] = None  # how a loader batches items (file data pads per batch)
    report: Optional[Dict[str, Any]] = None  # what reading files found (rows, sequences, dropped): summary.json

    def __init__(self, batch_size: int = 64, seed: int = 0, num_workers: int = 0, shuffle: bool = True) -> None:
        super().__init__()
        self.shuffle = bool(shuffle)
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be a positive integer, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.splits: Dict[str, Dataset] = {}

    @property
    def spec(self) -> TaskSpec:
        raise NotImplementedError

    def build(self, split: str) -> Dataset:
        raise NotImplementedError

    @property
    def data_state(self) -> Optional[Dict[str, Any]]:
        """What this module fitted on the training split (normalisation, classes, vocabulary) as plain
        values: saved with the model, so that evaluation, prediction and export read new data the same
        way. None when nothing is fitted (generated tasks)."""
        return None

    def read_new(self, path: str | Path, with_targets: bool) -> Tuple[Any, Dataset]:
        """A new file read with :attr:`data_state` (``seqframe eval --file``, ``seqframe predict``):
        ``(the sequences with their ids, a Dataset)``. Only file data reads new files."""
        raise SeqframeError(
            f"{path}: reading new files needs file data (data=csv, numpy or text); "
            f"this run used {type(self).__name__}, which generates its data"
        )

    def split_seed(self, split: str) -> int:
        """A distinct, reproducible seed per split."""
        return self.seed * 1000 + SPLITS.index(split)

    def setup(self, stage: Optional[str] = None) -> None:
        for split in SPLITS:
            if split not in self.splits:
                self.splits[split] = self.build(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """A loader of one split; under DDP each process reads its own share (a
        DistributedSampler made here, so that ``shuffle=False`` is honoured:
        the Trainer runs with ``use_distributed_sampler=False``), and its position
        mid-epoch is saved in checkpoints (see :mod:`seqframe.data.loading`)."""
        self.setup()
        dataset, collate = self.splits[split], self.collate_fn
        if type(dataset) is TensorDataset and collate is None:
            dataset, collate = BatchedTensors(*dataset.tensors), batched_as_is
        options = {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "collate_fn": collate,
        }
        # training shards are padded (every rank runs the same steps); val/test read each sequence once
        return resumable_loader(dataset, shuffle=shuffle, seed=self.seed, pad=split == "train", **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
