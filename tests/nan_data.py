"""A test-only data module: the adding problem with one NaN in the training inputs.

Passed to a real run as ``data._target_=nan_data.AddingWithNaN`` (tests/ on PYTHONPATH);
production code knows nothing about it.
"""

from torch.utils.data import TensorDataset

from seqframe.data import AddingDataModule

NAN_SEQUENCE = 40  # with batch 8 and no shuffling: batch 5 of epoch 0, i.e. optimizer step 5


class AddingWithNaN(AddingDataModule):
    def build(self, split: str) -> TensorDataset:
        dataset = super().build(split)
        if split != "train":
            return dataset
        x, y = dataset.tensors
        x = x.clone()
        x[NAN_SEQUENCE, 0, 0] = float("nan")
        return TensorDataset(x, y)
