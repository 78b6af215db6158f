"""Generated tasks: the spec's Keras example and the classic memory benchmarks.

Every generator is a plain function of a seed (testable without Lightning);
the data modules only call them per split.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from seqframe.data.base import TaskDataModule, TaskSpec


def seed_example(samples: int, steps: int, features: int, seed: int) -> Tuple[Tensor, Tensor]:
    """The spec's Keras data: standard-normal ``X [N, T, F]``, random binary labels ``y [N]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, steps, features, generator=g)
    y = torch.randint(0, 2, (samples,), generator=g).float()
    return x, y


def adding_problem(samples: int, seq_len: int, seed: int) -> Tuple[Tensor, Tensor]:
    """Hochreiter & Schmidhuber's adding problem.

    ``x [N, T, 2]``: a value uniform in [0, 1] and a marker that is 1 at two
    positions, one in each half of the sequence; ``y [N, 1]``: the sum of the
    two marked values. Always predicting 1 scores MSE 1/6 (the variance of a
    sum of two uniforms), the baseline.
    """
    if seq_len < 2:
        raise ValueError(f"data.seq_len must be at least 2 for the adding problem, got {seq_len}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(samples, seq_len, generator=g)
    half = seq_len // 2
    first = torch.randint(0, half, (samples,), generator=g)
    second = torch.randint(half, seq_len, (samples,), generator=g)
    rows = torch.arange(samples)
    markers = torch.zeros(samples, seq_len)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second]).unsqueeze(1)
    return torch.stack([values, markers], dim=2), y


COPY_SYMBOLS, COPY_LENGTH = 8, 10
COPY_BLANK, COPY_DELIMITER = 0, COPY_SYMBOLS + 1


def copy_memory(samples: int, delay: int, seed: int) -> Tuple[Tensor, Tensor]:
    """Arjovsky et al.'s copy-memory task, as tokens.

    Input (length ``delay + 20``): 10 symbols from 1..8, ``delay - 1`` blanks
    (0), a delimiter (9), 10 blanks. Target: blanks for ``delay + 10`` steps,
    then the 10 symbols. A memoryless predictor (blanks, then uniform over the
    8 symbols) scores cross-entropy ``10 ln 8 / (delay + 20)``, the baseline.
    """
    if delay < 1:
        raise ValueError(f"data.delay must be at least 1, got {delay}")
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, COPY_SYMBOLS + 1, (samples, COPY_LENGTH), generator=g)
    steps = delay + 2 * COPY_LENGTH
    x = torch.full((samples, steps), COPY_BLANK, dtype=torch.long)
    y = torch.full((samples, steps), COPY_BLANK, dtype=torch.long)
    x[:, :COPY_LENGTH] = symbols
    x[:, COPY_LENGTH + delay - 1] = COPY_DELIMITER
    y[:, -COPY_LENGTH:] = symbols
    return x, y


class SeedExampleDataModule(TaskDataModule):
    """The spec's Keras example exactly: 100 samples x 10 steps x 8 features, random
    binary labels, batch 8. Training uses those 100 samples, as ``model.fit`` does;
    validation and test are fresh draws. The labels are random, so nothing can
    generalise: chance (accuracy 0.5, BCE ln 2) is the honest expectation on test."""

    def __init__(
        self,
        samples: int = 100,
        steps: int = 10,
        features: int = 8,
        batch_size: int = 8,
        seed: int = 0,
        shuffle: bool = True,
    ):
        super().__init__(batch_size=batch_size, seed=seed, shuffle=shuffle)
        self.samples, self.steps, self.features = int(samples), int(steps), int(features)

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            task="classify",
            num_outputs=2,
            input_size=self.features,
            monitor="val/loss",
            mode="min",
            baseline={"acc": 0.5, "loss": math.log(2)},
        )

    def build(self, split: str) -> Dataset:
        return TensorDataset(*seed_example(self.samples, self.steps, self.features, self.split_seed(split)))


class GeneratedDataModule(TaskDataModule):
    """A task generated afresh per split: ``train_size``/``val_size``/``test_size`` sequences."""

    def __init__(
        self,
        train_size: int = 10000,
        val_size: int = 1000,
        test_size: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, shuffle=shuffle)
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}


class AddingDataModule(GeneratedDataModule):
    """The adding problem; ``seq_len`` sets the memory span. Solved at MSE < 0.01."""

    def __init__(self, seq_len: int = 100, **splits_and_batch: int) -> None:
        super().__init__(**splits_and_batch)
        self.seq_len = int(seq_len)

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(
            task="regress",
            num_outputs=1,
            input_size=2,
            monitor="val/mse",
            mode="min",
            baseline={"mse": 1 / 6},
            target=0.01,
        )

    def build(self, split: str) -> Dataset:
        return TensorDataset(*adding_problem(self.sizes[split], self.seq_len, self.split_seed(split)))


class CopyDataModule(GeneratedDataModule):
    """The copy-memory task; ``delay`` blanks between the symbols and their recall."""

    def __init__(self, delay: int = 20, **splits_and_batch: int) -> None:
        super().__init__(**splits_and_batch)
        self.delay = int(delay)

    @property
    def spec(self) -> TaskSpec:
        baseline = COPY_LENGTH * math.log(COPY_SYMBOLS) / (self.delay + 2 * COPY_LENGTH)
        return TaskSpec(
            task="per_step",
            num_outputs=COPY_SYMBOLS + 2,
            vocab_size=COPY_SYMBOLS + 2,
            monitor="val/loss",
            mode="min",
            baseline={"loss": baseline},
            target=0.1 * baseline,
        )

    def build(self, split: str) -> Dataset:
        return TensorDataset(*copy_memory(self.sizes[split], self.delay, self.split_seed(split)))
