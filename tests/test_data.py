"""The built-in tasks' generators: shapes, targets recomputed independently, baselines."""

import math

import numpy as np
import pytest
import torch

from seqframe.data import AddingDataModule, CopyDataModule, SeedExampleDataModule, TextDataModule
from seqframe.data.synthetic import adding_problem, copy_memory
from seqframe.data.text import windows


def test_seed_example_is_the_spec_data():
    dm = SeedExampleDataModule()
    dm.setup()
    x, y = dm.splits["train"].tensors
    assert x.shape == (100, 10, 8) and y.shape == (100,) and dm.batch_size == 8
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # standard normal
    assert dm.spec.task == "classify" and dm.spec.baseline == {"acc": 0.5, "loss": math.log(2)}
    assert not torch.equal(x, dm.splits["test"].tensors[0])


def test_adding_targets_and_baseline():
    x, y = adding_problem(4000, 30, seed=3)
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 1)
    xn, yn = x.numpy(), y.numpy()[:, 0]
    markers = xn[:, :, 1]
    assert np.all(markers.sum(1) == 2)
    positions = [np.flatnonzero(row) for row in markers]
    assert all(p[0] < 15 <= p[1] for p in positions)  # one marker in each half
    recomputed = np.array([xn[i, p, 0].sum() for i, p in enumerate(positions)])
    np.testing.assert_allclose(yn, recomputed, rtol=1e-6)
    assert ((yn - 1.0) ** 2).mean() == pytest.approx(1 / 6, abs=0.01)  # always predicting 1
    assert AddingDataModule(seq_len=30).spec.baseline == {"mse": 1 / 6}
    assert torch.equal(adding_problem(10, 30, seed=3)[0], adding_problem(10, 30, seed=3)[0])


def test_copy_task_layout_and_baseline():
    delay = 7
    x, y = copy_memory(500, delay, seed=1)
    assert x.shape == y.shape == (500, delay + 20)
    assert torch.all((x[:, :10] >= 1) & (x[:, :10] <= 8))
    assert torch.all(x[:, 10 + delay - 1] == 9) and torch.all(x[:, 10 + delay :] == 0)
    assert torch.all(y[:, :-10] == 0) and torch.equal(y[:, -10:], x[:, :10])
    # the memoryless predictor: blank where the target is blank, uniform over 8 symbols at recall
    probs = torch.zeros(delay + 20, 10)
    probs[:-10, 0] = 1.0
    probs[-10:, 1:9] = 1 / 8
    ce = -torch.log(probs[torch.arange(delay + 20), y]).mean().item()
    assert CopyDataModule(delay=delay).spec.baseline["loss"] == pytest.approx(ce, rel=1e-6)


def test_text_windows_vocabulary_and_baseline(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcab" * 200 + "zzz" + "abcab" * 20)
    dm = TextDataModule(path=str(corpus), seq_len=8, val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    assert dm.vocabulary.itos[1:] == ["a", "b", "c"]  # training split only: 'z' is unknown
    x, y = dm.splits["train"].tensors
    assert x.shape[1] == 8 and torch.equal(x[0, 1:], y[0, :-1])
    assert dm.vocabulary.decode(x[0]) == "abcababc"
    bits = -(0.4 * math.log2(0.4) * 2 + 0.2 * math.log2(0.2))
    assert dm.spec.baseline["bpc"] == pytest.approx(bits, abs=1e-3)
    test_ids = torch.cat([dm.splits["test"].tensors[0].flatten()])
    assert dm.spec.vocab_size == 4 and test_ids.max() < 4


def test_windows_are_shifted_by_one():
    x, y = windows(torch.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({}, ValueError, "data.path=/path/to/corpus.txt"),
        ({"path": "/does/not/exist.txt"}, FileNotFoundError, "no such file"),
    ],
)
def test_text_errors_say_what_to_do(kwargs, error, match):
    with pytest.raises(error, match=match):
        TextDataModule(**kwargs)


def test_text_too_short_for_seq_len(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("hello world")
    with pytest.raises(ValueError, match="smaller seq_len"):
        TextDataModule(path=str(corpus), seq_len=50)


def test_generated_data_declares_no_state_and_refuses_new_files_clearly():
    """The data-module contract evaluate/predict/export rely on: ``data_state`` and ``read_new``
    exist on every TaskDataModule; generated data has no state and says what reads files."""
    from seqframe.errors import SeqframeError

    module = AddingDataModule(seq_len=5, train_size=4, val_size=2, test_size=2)
    assert module.data_state is None
    with pytest.raises(SeqframeError, match=r"new.csv: reading new files needs file data \(data=csv, numpy or text\)"):
        module.read_new("new.csv", with_targets=True)
