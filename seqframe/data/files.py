"""What the file data modules (``data=csv``, ``data=numpy``) share.

A reader turns a file into :class:`Sequences` (one float array ``[T_i, F]``
per sequence, raw targets, ids, optional split labels). :class:`FileDataModule`
does the rest the same way for every format: the ``max_len`` rule, the task
and its classes, the split (by fraction and seed, or by a split column, always
whole sequences), per-feature normalisation fitted on the training split only,
and batches padded per batch with ``lengths``.

What a trained model needs to read new files the same way (normalisation,
classes, feature names) is :attr:`FileDataModule.data_state`, a plain dict
that training saves in the model's hyper-parameters and that
``seqframe-eval`` / ``seqframe-predict`` hand back as ``data_state=``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from seqframe.data.base import IGNORE_INDEX, PER_STEP_TASKS, REGRESSION_TASKS, SPLITS, TaskDataModule, TaskSpec
from seqframe.data.streams import StatefulSplits, cut_documents
from seqframe.errors import SeqframeError

FILE_TASKS = ("auto", "classify", "regress", "per_step", "per_step_regress")
TOO_LONG = ("error", "drop")


class DataFileError(SeqframeError, ValueError):
    """A data file seqframe cannot use as it is; the message names the file, the row and the fix."""


@dataclass
class Sequences:
    """A file's content: ``xs[i]`` ``[T_i, F]`` float, targets (None when the file has none),
    ``ids[i]`` names sequence i in messages and predictions, ``where[i]`` says where it is in the file."""

    xs: List[np.ndarray]
    ys: Optional[List[Any]]
    ids: List[Any]
    where: List[str]
    features: List[str]
    split: Optional[List[str]] = None
    dropped: Dict[str, int] = field(default_factory=dict)

    def steps(self, start: float, stop: float, gap: int = 0) -> Sequences:
        """Every sequence's steps from fraction ``start`` to fraction ``stop`` of its length, less the last
        ``gap`` (a forecast's targets must not reach into the next part); sequences left empty are left out."""
        cuts = [(int(len(x) * start), int(len(x) * stop) - gap) for x in self.xs]
        keep = [i for i, (a, b) in enumerate(cuts) if b > a]
        part = self.subset(keep)
        for j, i in enumerate(keep):
            a, b = cuts[i]
            part.xs[j] = part.xs[j][a:b]
            if part.ys is not None:
                part.ys[j] = part.ys[j][a:b]
            part.where[j] = f"{part.where[j]}, steps {a}-{b - 1}"
        return part

    def subset(self, keep: Sequence[int]) -> Sequences:
        pick = lambda values: None if values is None else [values[i] for i in keep]  # noqa: E731
        return Sequences(
            [self.xs[i] for i in keep],
            pick(self.ys),
            pick(self.ids),
            pick(self.where),
            self.features,
            pick(self.split),
            dict(self.dropped),
        )


def require_columns(path: Path, header: List[str], required: Dict[str, List[str]]) -> None:
    """Refuse the first named column the header lacks, naming the config key that named it."""
    for key, columns in required.items():
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataFileError(
                f"{path}: column {missing[0]!r} ({key}) is missing; the header has {header}. "
                f"Rename the column or set {key}="
            )


def check_finite(array: np.ndarray, path: Path, what: str, where: Sequence[str]) -> None:
    """Refuse NaN/inf, naming the first sequence (and step) that has one."""
    bad = ~np.isfinite(array)
    if bad.any():
        index = np.argwhere(bad)[0]
        raise DataFileError(
            f"{path}: {what} of {where[int(index[0])]} is {array[tuple(index)]} "
            f"(NaN/inf at index {tuple(index.tolist())}); "
            f"fix or remove it in the file (seqframe drops nothing silently)"
        )


def split_by_fraction(count: int, val_fraction: float, test_fraction: float, seed: int) -> List[str]:
    """A split name per sequence: a seeded permutation cut into test, val, train (at least one train)."""
    order = np.random.default_rng(seed).permutation(count)
    n_test, n_val = int(round(count * test_fraction)), int(round(count * val_fraction))
    names = np.empty(count, dtype=object)
    names[order[:n_test]] = "test"
    names[order[n_test : n_test + n_val]] = "val"
    names[order[n_test + n_val :]] = "train"
    return names.tolist()


def fit_normalisation(xs: List[np.ndarray]) -> tuple[List[float], List[float]]:
    """Per-feature mean and standard deviation over every valid step of ``xs``
    (a constant feature gets std 1, so it is centred, not blown up)."""
    steps = np.concatenate(xs, axis=0).astype(np.float64)
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean.tolist(), std.tolist()


class SequenceList(Dataset):
    """Sequences of different lengths: item ``i`` is ``(x [T_i, F], y, T_i)``; :func:`pad_batch` pads them."""

    def __init__(self, xs: List[Tensor], ys: Optional[Tensor]) -> None:
        self.xs, self.ys = xs, ys

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, i: int):
        y = self.ys[i] if self.ys is not None else torch.zeros(())
        return self.xs[i], y, len(self.xs[i])


def pad_batch(items) -> tuple:
    """Pad a batch to its own longest sequence: ``(x, y)`` when all have that length,
    else ``(x, y, lengths)``; per-step labels are padded with IGNORE_INDEX, per-step values with NaN."""
    xs, ys, lengths = zip(*items)
    x = torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True)
    if ys[0].dim() >= 1 and len(ys[0]) == len(xs[0]) and ys[0].dtype == torch.long:  # per-step labels
        y = torch.nn.utils.rnn.pad_sequence(list(ys), batch_first=True, padding_value=IGNORE_INDEX)
    elif ys[0].dim() == 2 and len(ys[0]) == len(xs[0]):  # per-step values
        y = torch.nn.utils.rnn.pad_sequence(list(ys), batch_first=True, padding_value=float("nan"))
    else:
        y = torch.stack(ys)
    lengths = torch.tensor(lengths, dtype=torch.long)
    return (x, y) if bool((lengths == x.shape[1]).all()) else (x, y, lengths)


class FileDataModule(StatefulSplits, TaskDataModule):
    """Sequences from a file: subclasses implement :meth:`read`; the rest is shared.

    Args (the ``data=`` keys every file format has):
        path: the file. task: ``auto`` (integer/string targets classify, real
            ones regress), ``classify``, ``regress`` or ``per_step``.
        val_fraction, test_fraction: the split by fraction (seeded by ``seed``),
            unless the file has a split column.
        max_len: the longest sequence allowed (null: no limit); a longer one is an
            error, or dropped and counted with ``too_long=drop``. Nothing is truncated.
        normalize: per-feature standardisation, fitted on the training split only.
        data_state: what a trained model saved (normalisation, classes); given by
            ``seqframe-eval``/``seqframe-predict`` so new data is read as in training.
        stateful: read long series as streams, ``seq_len`` steps per batch, the model's state carried
            from one batch to the next and reset where each series starts (truncated BPTT,
            :mod:`seqframe.data.streams`); needs a target at every step. Without a split column, every
            series is then split by position: its first steps train, the next validate, the last test.
    """

    format_name = "file"  # what users type: data=csv, data=numpy

    def __init__(
        self,
        path: Optional[str] = None,
        task: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_len: Optional[int] = None,
        too_long: str = "error",
        normalize: bool = True,
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        data_state: Optional[Dict[str, Any]] = None,
        stateful: bool = False,
        seq_len: int = 100,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, shuffle=shuffle)
        self.stateful, self.seq_len = bool(stateful), int(seq_len)
        if self.seq_len < 1:
            raise DataFileError(f"data.seq_len={seq_len} must be a positive number of steps per batch")
        if task not in FILE_TASKS:
            raise DataFileError(f"data.task={task!r} is not valid; choose one of {', '.join(FILE_TASKS)}")
        if too_long not in TOO_LONG:
            raise DataFileError(f"data.too_long={too_long!r} is not valid; choose error or drop")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataFileError("data.val_fraction and data.test_fraction must be in [0, 1) and sum to less than 1")
        self.task, self.max_len, self.too_long = task, max_len, too_long
        self.val_fraction, self.test_fraction, self.normalize = float(val_fraction), float(test_fraction), normalize
        self.collate_fn = pad_batch
        self.path = self.check_path(path)
        self.state: Dict[str, Any] = dict(data_state or {})
        self.report: Dict[str, Any] = {}
        self.sequences: Optional[Sequences] = None
        if not self.state:  # training: fit now (the model needs the spec); with a saved state, read on demand
            self._fit(self.load(self.path, with_targets=True))

    # -- what subclasses provide -------------------------------------------------
    def read(self, path: Path, with_targets: bool) -> Sequences:
        """The file as :class:`Sequences` (targets only when ``with_targets``)."""
        raise NotImplementedError

    # -- shared logic ---------------------------------------------------------------
    def check_path(self, path: Optional[str]) -> Path:
        if not path:
            raise DataFileError(f"data={self.format_name} needs a file: add data.path=/path/to/file to the command")
        resolved = Path(path).expanduser()
        if not resolved.is_file():
            raise DataFileError(f"data.path={path!r}: no such file (relative paths start at the current directory)")
        if resolved.stat().st_size == 0:
            raise DataFileError(f"{resolved}: the file is empty; give a file with at least one sequence")
        return resolved

    def load(self, path: Path, with_targets: bool) -> Sequences:
        """Read ``path`` and apply the ``max_len`` rule (what is dropped is counted)."""
        seqs = self.read(path, with_targets)
        if not seqs.xs:
            raise DataFileError(f"{path}: no sequences found; give a file with at least one data row")
        limit = self.max_len
        if limit is not None:
            long = [i for i, x in enumerate(seqs.xs) if len(x) > int(limit)]
            if long and self.too_long == "error":
                i = long[0]
                raise DataFileError(
                    f"{path}: {seqs.where[i]} has {len(seqs.xs[i])} steps, more than data.max_len={limit} "
                    f"({len(long)} such sequences); raise data.max_len or set data.too_long=drop to drop them"
                )
            if long:
                long_set = set(long)
                seqs = seqs.subset([i for i in range(len(seqs.xs)) if i not in long_set])
                seqs.dropped["longer_than_max_len"] = len(long)
                print(f"seqframe: {path}: dropped {len(long)} sequences longer than data.max_len={limit}")
        return seqs

    def _fit(self, seqs: Sequences) -> None:
        """Task, classes, split and normalisation from the training file."""
        self.report = {"sequences": len(seqs.xs), "dropped": dict(seqs.dropped)}
        task, classes = self._infer_task(seqs)
        if self.stateful and task not in PER_STEP_TASKS:
            raise DataFileError(
                f"data.stateful=true needs a target at every step, and {self.path} gives one per sequence "
                f"(task {task}): {self.per_step_hint}; or set data.stateful=false"
            )
        train = self._split(seqs)["train"].xs
        mean, std = fit_normalisation(train) if self.normalize else (None, None)
        self.state = {
            "format": self.format_name,
            "task": task,
            "features": seqs.features,
            "classes": classes,
            "num_outputs": self._num_outputs(task, classes, seqs),
            "mean": mean,
            "std": std,
            "max_len": self.max_len if self.max_len is not None else max(len(x) for x in seqs.xs),
        }
        print(f"seqframe: {self.path}: {len(seqs.xs)} sequences, split {self.report['split']}, dropped {seqs.dropped}")

    per_step_hint = "give a target at every step"  # how a format does that: in the stateful error
    position_gap = 0  # steps left out at the end of the train and val parts (a forecast's horizon)

    def _split(self, seqs: Sequences) -> Dict[str, Sequences]:
        """The splits (by the file's split column, else by fractions and seed: whole sequences; stateful
        without a split column: every sequence by position); keeps ``seqs``."""
        if self.stateful and not seqs.split:
            val, test = self.val_fraction, self.test_fraction
            cuts = {"train": (0.0, 1 - val - test), "val": (1 - val - test, 1 - test), "test": (1 - test, 1.0)}
            gap = {"train": self.position_gap, "val": self.position_gap, "test": 0}
            parts = {split: seqs.steps(*cuts[split], gap[split]) for split in SPLITS}
            self.split_names: Optional[List[str]] = None  # every sequence is in every split
        else:
            names = seqs.split or split_by_fraction(len(seqs.xs), self.val_fraction, self.test_fraction, self.seed)
            parts = {split: seqs.subset([i for i, n in enumerate(names) if n == split]) for split in SPLITS}
            self.split_names = names
        for split in SPLITS:
            if not parts[split].xs:
                raise DataFileError(
                    f"{self.path}: the {split} split is empty ({len(seqs.xs)} sequences); use more sequences, "
                    f"larger data.val_fraction/test_fraction, or put some rows in the {split} split"
                )
        self.sequences, self.parts = seqs, parts
        self.report["split"] = {s: len(parts[s].xs) for s in SPLITS}
        if self.stateful:
            self.report["split_steps"] = {s: sum(len(x) for x in parts[s].xs) for s in SPLITS}
        return parts

    def _infer_task(self, seqs: Sequences) -> tuple[str, Optional[list]]:
        if seqs.ys is None:
            raise DataFileError(f"{self.path}: no targets found; name the target (see data.target)")
        task = self.task
        first = np.asarray(seqs.ys[0])
        if task == "auto":
            if (
                first.ndim >= 1
                and first.shape[0] == len(seqs.xs[0])
                and first.shape[0] > 1
                and first.dtype.kind in "iub"
            ):
                task = "per_step"
            elif first.ndim == 2 and first.shape[0] == len(seqs.xs[0]) and first.dtype.kind == "f":
                task = "per_step_regress"  # [T_i, K] values at every step
            else:
                task = "classify" if first.dtype.kind in "iubUSO" else "regress"
        if task in REGRESSION_TASKS:
            return task, None
        values = np.concatenate([np.asarray(y).reshape(-1) for y in seqs.ys])
        classes = sorted(set(values.tolist()))
        if len(classes) < 2:
            raise DataFileError(
                f"{self.path}: every target is {classes[0]!r}: a single class cannot be learned; "
                f"add sequences of other classes (or use data.task=regress for a real-valued target)"
            )
        return task, classes

    @staticmethod
    def _num_outputs(task: str, classes: Optional[list], seqs: Sequences) -> int:
        if classes is not None:
            return len(classes)
        first = np.asarray(seqs.ys[0])
        return int(first.shape[-1]) if task == "per_step_regress" else int(first.size)

    def encode_targets(self, seqs: Sequences) -> Tensor | List[Tensor]:
        """Targets as tensors: class indices (unknown labels are an error naming the sequence), or floats."""
        task, classes = self.state["task"], self.state["classes"]
        if task == "per_step_regress":  # [T_i, K] per sequence: pad_batch pads them
            for y, where in zip(seqs.ys, seqs.where):
                check_finite(np.asarray(y, dtype=np.float64), self.path, "the target", [where] * len(y))
            return [torch.tensor(np.asarray(y), dtype=torch.float32) for y in seqs.ys]
        if task == "regress":
            y = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in seqs.ys])
            check_finite(y, self.path, "the target", seqs.where)
            return torch.tensor(y, dtype=torch.float32)
        index = {c: i for i, c in enumerate(classes)}
        encoded = []
        for where, y in zip(seqs.where, seqs.ys):
            labels = np.asarray(y).reshape(-1).tolist()
            unknown = [v for v in labels if v not in index]
            if unknown:
                raise DataFileError(
                    f"{self.path}: {where} has label {unknown[0]!r}, which the model was not trained on "
                    f"(known: {classes[:10]}); remove it or retrain with it"
                )
            encoded.append(torch.tensor([index[v] for v in labels], dtype=torch.long))
        return encoded if task == "per_step" else torch.cat(encoded)

    def features_tensor(self, seqs: Sequences) -> List[Tensor]:
        """Each sequence as float32, normalised with the training statistics."""
        mean, std = self.state.get("mean"), self.state.get("std")
        out = []
        for x in seqs.xs:
            x = np.asarray(x, dtype=np.float64)
            if mean is not None:
                x = (x - np.asarray(mean)) / np.asarray(std)
            out.append(torch.tensor(x, dtype=torch.float32))
        return out

    def dataset(self, seqs: Sequences, with_targets: bool = True) -> SequenceList:
        xs = self.features_tensor(seqs)
        if not with_targets or seqs.ys is None:
            return SequenceList(xs, None)
        ys = self.encode_targets(seqs)
        if isinstance(ys, list):  # per-step: pad_batch pads them
            return SequenceListPerStep(xs, ys)
        return SequenceList(xs, ys)

    def read_new(self, path: str | Path, with_targets: bool) -> tuple[Sequences, SequenceList]:
        """A file read with the saved state (no refitting), every sequence in file order."""
        resolved = self.check_path(str(path))
        previous, self.path = self.path, resolved
        try:
            seqs = self.load(resolved, with_targets=with_targets)
            for x, where in zip(seqs.xs, seqs.where):
                if x.shape[1] != len(self.state["features"]):
                    raise DataFileError(
                        f"{resolved}: {where} has {x.shape[1]} features, the model was trained on "
                        f"{len(self.state['features'])} ({self.state['features']}); give the same features"
                    )
            return seqs, self.dataset(seqs, with_targets)
        finally:
            self.path = previous

    @property
    def data_state(self) -> Dict[str, Any]:
        return dict(self.state)

    @property
    def spec(self) -> TaskSpec:
        task, n = self.state["task"], int(self.state["num_outputs"])
        if task in REGRESSION_TASKS:
            return TaskSpec(
                task=task,
                num_outputs=n,
                input_size=len(self.state["features"]),
                monitor="val/mse",
                mode="min",
                stateful=self.stateful,
            )
        baseline = {"acc": 1.0 / n, "loss": math.log(n)}
        return TaskSpec(
            task=task,
            num_outputs=n,
            input_size=len(self.state["features"]),
            monitor="val/loss",
            mode="min",
            baseline=baseline,
            stateful=self.stateful,
        )

    def build(self, split: str) -> Dataset:
        if self.sequences is None:  # a saved state: split the file again (same seed, same split), no refit
            self._split(self.load(self.path, with_targets=True))
        dataset = self.dataset(self.parts[split])
        if not self.stateful:
            return dataset
        return cut_documents(dataset.xs, dataset.labels, self.batch_size, self.seq_len)  # per-step: checked in _fit


class SequenceListPerStep(SequenceList):
    """Like :class:`SequenceList`, with a label tensor ``[T_i]`` per sequence."""

    def __init__(self, xs: List[Tensor], ys: List[Tensor]) -> None:
        super().__init__(xs, None)
        self.labels = ys

    def __getitem__(self, i: int):
        return self.xs[i], self.labels[i], len(self.xs[i])
