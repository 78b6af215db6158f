"""Built-in data modules: each a LightningDataModule that states its task (:class:`TaskSpec`)."""

from seqframe.data.arrays import NumpyDataModule
from seqframe.data.base import TaskDataModule, TaskSpec
from seqframe.data.csv_files import CsvDataModule
from seqframe.data.synthetic import AddingDataModule, CopyDataModule, SeedExampleDataModule
from seqframe.data.text import TextDataModule

__all__ = [
    "TaskDataModule",
    "TaskSpec",
    "SeedExampleDataModule",
    "AddingDataModule",
    "CopyDataModule",
    "TextDataModule",
    "CsvDataModule",
    "NumpyDataModule",
]
