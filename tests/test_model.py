"""SequenceModel: the spec's Keras model sizes, heads per task, lengths, optimizer config."""

import pytest
import torch

from seqframe.data import AddingDataModule, CopyDataModule, SeedExampleDataModule
from seqframe.harness.model import SequenceModel


def model_for(dm, cell="lstm", **kwargs):
    return SequenceModel(task=dm.spec.as_dict(), cell={"name": cell}, **kwargs)


@pytest.mark.parametrize("cell,count", [("lstm", 1617), ("gru", 1217)])
def test_seed_example_model_has_the_keras_parameter_count(cell, count):
    model = model_for(SeedExampleDataModule(), cell, hidden_size=16)
    assert sum(p.numel() for p in model.parameters()) == count
    assert model(torch.randn(3, 10, 8)).shape == (3, 1)


def test_regression_and_per_step_heads():
    adding = model_for(AddingDataModule(seq_len=20), "gru", hidden_size=8, num_layers=2, bidirectional=True)
    assert adding(torch.randn(4, 20, 2)).shape == (4, 1)
    copy = model_for(CopyDataModule(delay=5), "rnn", hidden_size=8)
    assert copy(torch.randint(0, 10, (4, 25))).shape == (4, 25, 10)


def test_many_to_one_reads_each_sequence_at_its_own_end():
    model = model_for(AddingDataModule(seq_len=12), "gru", hidden_size=8, bidirectional=True).eval()
    x = torch.randn(2, 12, 2)
    lengths = torch.tensor([12, 5])
    with torch.no_grad():
        batched = model(x, lengths)
        alone = model(x[1:, :5])
    torch.testing.assert_close(batched[1], alone[0], atol=1e-6, rtol=1e-6)


def test_optimizer_and_scheduler_come_from_config():
    model = model_for(
        AddingDataModule(seq_len=5),
        "rnn",
        hidden_size=4,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.5, "momentum": 0.9},
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 3, "interval": "epoch"},
    )
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["lr"] == 0.5
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def test_wrong_encoder_for_the_data_is_refused():
    with pytest.raises(ValueError, match="cannot read token inputs"):
        model_for(CopyDataModule(delay=5), encoder="linear")
    with pytest.raises(ValueError, match="choose one of"):
        model_for(AddingDataModule(), encoder="conv")
