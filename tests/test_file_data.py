"""File data modules in-process: every bad input's message, splits, normalisation, padding, forecasting."""

import csv

import numpy as np
import pytest
import torch

from seqframe.data import CsvDataModule, NumpyDataModule
from seqframe.data.files import IGNORE_INDEX, DataFileError, pad_batch
from seqframe.data.text import tokenize
from seqframe.harness.model import SequenceModel


def write_csv(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def long_rows(count=12, steps=3, label=lambda s: s % 2, feature=lambda s, t: s + t / 10):
    """Rows ``id, t, a, label``: sequence ``s`` has ``steps`` rows."""
    return [[f"s{s}", t, feature(s, t), label(s)] for s in range(count) for t in range(steps)]


HEADER = ["id", "t", "a", "label"]
CSV_OPTIONS = {"time_column": "t", "target_column": "label", "val_fraction": 0.25, "test_fraction": 0.25}


def bad_csv(tmp_path, rows, header=HEADER):
    return write_csv(tmp_path / "bad.csv", header, rows)


def empty_file(path):
    path.write_text("")
    return path


def nan_at_line_5(rows):
    rows[3][2] = "nan"  # line 5: the header is line 1
    return rows


BAD_INPUTS = {
    "missing column": (
        lambda p: bad_csv(p, [r[:3] for r in long_rows()], HEADER[:3]),
        {},
        ["bad.csv", "column 'label' (data.target_column) is missing", "set data.target_column="],
    ),
    "NaN feature": (
        lambda p: bad_csv(p, nan_at_line_5(long_rows())),
        {},
        ["bad.csv", "sequence 's1' (line 5)", "NaN/inf", "fix or remove it"],
    ),
    "inf target": (
        lambda p: bad_csv(p, [r[:3] + ["inf" if r[0] == "s2" else 1.5] for r in long_rows()]),
        {"task": "regress"},
        ["bad.csv", "line 8: the target 'label' is inf", "fix the value"],
    ),
    "not a number": (
        lambda p: bad_csv(p, [r if i != 1 else [r[0], r[1], "abc", r[3]] for i, r in enumerate(long_rows())]),
        {},
        ["bad.csv", "line 3, column 'a': 'abc' is not a number", "fix the value"],
    ),
    "empty file": (lambda p: empty_file(p / "bad.csv"), {}, ["bad.csv", "is empty"]),
    "header only": (lambda p: bad_csv(p, []), {}, ["bad.csv", "the first line must name the columns"]),
    "single class": (
        lambda p: bad_csv(p, long_rows(label=lambda s: "cat")),
        {},
        ["bad.csv", "every target is 'cat'", "add sequences of other classes"],
    ),
    "two labels in one sequence": (
        lambda p: bad_csv(p, [r[:3] + [r[1]] for r in long_rows()]),
        {},
        ["bad.csv", "sequence 's0' has label=0 (line 2) and 1 (line 3)", "a sequence has one label value"],
    ),
    "longer than max_len": (
        lambda p: bad_csv(p, long_rows()),
        {"max_len": 2},
        ["bad.csv", "sequence 's0' (lines 2-4) has 3 steps, more than data.max_len=2", "data.too_long=drop"],
    ),
    "duplicate time": (
        lambda p: bad_csv(p, [r if i != 1 else [r[0], 0, r[2], r[3]] for i, r in enumerate(long_rows())]),
        {},
        ["bad.csv", "lines 2 and 3", "t=0", "remove the duplicate"],
    ),
    "bad split value": (
        lambda p: bad_csv(p, [r + ["training"] for r in long_rows()], HEADER + ["split"]),
        {"split_column": "split"},
        ["bad.csv", "line 2, column 'split': 'training' is not train, val or test"],
    ),
    "empty split": (
        lambda p: bad_csv(p, [r + ["train"] for r in long_rows()], HEADER + ["split"]),
        {"split_column": "split"},
        ["bad.csv", "the val split is empty", "put some rows in the val split"],
    ),
    "wide gap": (
        lambda p: bad_csv(p, [[i, 1.0, "", 2.0, i % 2] for i in range(8)], ["id", "x0", "x1", "x2", "label"]),
        {"format": "wide", "time_column": None},
        ["bad.csv", "line 2, column 'x1' is empty", "only a sequence's last cells may be empty"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_csv_input_names_file_row_and_fix(tmp_path, case):
    make, options, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(DataFileError) as error:
        CsvDataModule(path=str(path), **{**CSV_OPTIONS, **options}).setup()
    for part in expected:
        assert part in str(error.value), f"{case}: {part!r} not in {error.value}"


def test_a_file_of_the_other_format_is_named_as_such(tmp_path):
    """An .npz given to data=csv, or a CSV to data=numpy: the message names the right data= choice."""
    npz, text = tmp_path / "arrays.npz", write_csv(tmp_path / "series.npy", HEADER, long_rows())
    np.savez(npz, X=np.zeros((4, 3, 2)), y=np.arange(4) % 2)
    with pytest.raises(DataFileError, match=r"arrays.npz: not a UTF-8 text CSV file .* use data=numpy"):
        CsvDataModule(path=str(npz), **CSV_OPTIONS).setup()
    with pytest.raises(DataFileError, match=r"series.npy: not an .npy/.npz file .* for a CSV use data=csv"):
        NumpyDataModule(path=str(text)).setup()


def keras_arrays(n=10, steps=5, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, steps, features)), rng.integers(0, 2, size=(n, 1))


def with_nan(array, index):
    array = array.astype(float).copy()
    array[index] = np.nan
    return array


BAD_ARRAYS = {
    "X of wrong shape": (
        lambda X, y: {"X": X[:, :, 0], "y": y},
        ["X has shape (10, 5)", "[sequences, steps, features]"],
    ),
    "y of another length": (lambda X, y: {"X": X, "y": y[:9]}, ["y has shape (9, 1) but X has 10 sequences"]),
    "lengths of another length": (
        lambda X, y: {"X": X, "y": y, "lengths": np.full(9, 5)},
        ["lengths has shape (9,)", "one per sequence"],
    ),
    "length out of range": (
        lambda X, y: {"X": X, "y": y, "lengths": np.array([5, 5, 5, 0, 5, 5, 5, 5, 5, 5])},
        ["lengths[3] = 0 is not in 1..5", "fix lengths"],
    ),
    "NaN in X": (lambda X, y: {"X": with_nan(X, (2, 1, 0)), "y": y}, ["X of sequence 2 (X[2]) is nan", "(1, 0)"]),
    "inf in y": (
        lambda X, y: {"X": X, "y": np.where(np.arange(10)[:, None] == 4, np.inf, 0.5)},
        ["y of sequence 4 (y[4]) is inf"],
    ),
    "missing y": (lambda X, y: {"X": X, "targets": y}, ["no array 'y'", "set data.y_key="]),
    "no sequences": (lambda X, y: {"X": X[:0], "y": y[:0]}, ["X has shape (0, 5, 3)", "no sequences"]),
    "single class": (lambda X, y: {"X": X, "y": np.ones_like(y)}, ["every target is 1", "a single class"]),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_numpy_input_names_file_index_and_fix(tmp_path, case):
    make, expected = BAD_ARRAYS[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **make(*keras_arrays()))
    with pytest.raises(DataFileError) as error:
        NumpyDataModule(path=str(path), val_fraction=0.2, test_fraction=0.2).setup()
    for part in ["bad.npz", *expected]:
        assert part in str(error.value), f"{case}: {part!r} not in {error.value}"


def test_padding_beyond_lengths_is_never_read_and_batches_pad_per_batch(tmp_path):
    X, y = keras_arrays()
    lengths = np.array([5, 2, 3, 5, 1, 4, 5, 2, 3, 5])
    X[np.arange(5)[None, :] >= lengths[:, None]] = np.nan  # padding may hold anything
    np.savez(tmp_path / "ok.npz", X=X, y=y, lengths=lengths)
    dm = NumpyDataModule(path=str(tmp_path / "ok.npz"), normalize=False, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    dataset = dm.splits["train"]
    assert sorted(len(x) for x, _, _ in dataset) == sorted(lengths[np.array(dm.split_names) == "train"].tolist())
    x, y_batch, batch_lengths = pad_batch([dataset[i] for i in range(3)])
    assert x.shape == (3, int(batch_lengths.max()), 3) and not torch.isnan(x).any()
    for row, n in zip(x, batch_lengths):
        assert torch.all(row[n:] == 0)
    assert len(pad_batch([dataset[0], dataset[0]])) == 2  # equal lengths: no lengths needed
    per_step = pad_batch([(torch.ones(3, 1), torch.tensor([1, 2, 3]), 3), (torch.ones(1, 1), torch.tensor([4]), 1)])
    assert per_step[1].tolist() == [[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]


def test_the_model_loss_leaves_padded_per_step_targets_out():
    """A padded batch from pad_batch gives the loss of its sequences run unpadded, one by one
    (weighted by their steps): padded steps add nothing, whatever the padding holds."""
    torch.manual_seed(0)
    spec = {"task": "per_step", "num_outputs": 5, "monitor": "val/loss", "mode": "min", "input_size": 2}
    model = SequenceModel(task=spec, cell={"name": "gru"}, hidden_size=8).eval()
    items = [(torch.randn(n, 2), torch.randint(0, 5, (n,)), n) for n in (4, 1, 3)]
    with torch.no_grad():
        alone = [model.batch_loss(pad_batch([item]), "val") for item in items]
        expected = sum(loss * n for loss, (_, _, n) in zip(alone, items)) / 8
        x, y, lengths = pad_batch(items)
        assert (y == IGNORE_INDEX).sum() == 4
        assert torch.allclose(model.batch_loss((x, y, lengths), "val"), expected, atol=1e-6)
        y_filled = y.masked_fill(y == IGNORE_INDEX, 0)  # padding that holds real classes: still left out
        assert torch.allclose(model.batch_loss((x, y_filled, lengths), "val"), expected, atol=1e-6)


def test_normalisation_comes_from_the_training_split_only(tmp_path):
    rows = long_rows(count=12, steps=4)
    split = {s: "train" if s < 8 else ("val" if s < 10 else "test") for s in range(12)}
    shifted = [
        [r[0], r[1], r[2] + (1000 if split[int(r[0][1:])] != "train" else 0), r[3], split[int(r[0][1:])]] for r in rows
    ]
    path = write_csv(tmp_path / "shifted.csv", HEADER + ["split"], shifted)
    dm = CsvDataModule(path=str(path), time_column="t", target_column="label", split_column="split")
    dm.setup()
    train_values = np.array([r[2] for r in shifted if r[4] == "train"])
    assert dm.data_state["mean"] == pytest.approx([train_values.mean()])
    assert dm.data_state["std"] == pytest.approx([train_values.std()])
    val_x = torch.cat([x for x, _, _ in dm.splits["val"]])
    assert val_x.mean().item() == pytest.approx(
        (1000 + 8.5 + 0.15 - train_values.mean()) / train_values.std(), rel=1e-4
    )
    assert dm.report["split"] == {"train": 8, "val": 2, "test": 2}


def test_fraction_split_keeps_sequences_whole_and_is_seeded(tmp_path):
    path = write_csv(tmp_path / "series.csv", HEADER, long_rows(count=40, steps=3))
    splits = []
    for seed in (0, 0, 1):
        dm = CsvDataModule(path=str(path), seed=seed, **CSV_OPTIONS)
        ids = {s: {i for i, n in zip(dm.sequences.ids, dm.split_names) if n == s} for s in ("train", "val", "test")}
        assert set.union(*ids.values()) == {f"s{s}" for s in range(40)} and sum(map(len, ids.values())) == 40
        assert all(len(x) == 3 for x in dm.sequences.xs)  # every row of a sequence in one place
        splits.append(ids)
    assert splits[0] == splits[1] and splits[0] != splits[2]
    assert {k: len(v) for k, v in splits[0].items()} == {"train": 20, "val": 10, "test": 10}


def test_dropped_sequences_are_counted(tmp_path):
    rows = long_rows(count=12, steps=3) + [["long", t, 0.5, 1] for t in range(6)]
    dm = CsvDataModule(path=str(write_csv(tmp_path / "s.csv", HEADER, rows)), max_len=3, too_long="drop", **CSV_OPTIONS)
    assert dm.report["dropped"] == {"longer_than_max_len": 1} and dm.report["sequences"] == 12


def test_forecast_many_to_one_targets_are_the_next_steps(tmp_path):
    rows = [[f"s{s}", t, 10 * s + t, 100 * s - t] for s in range(10) for t in range(6)] + [["short", 0, 1.0, 2.0]]
    path = write_csv(tmp_path / "f.csv", ["id", "t", "a", "b"], rows)
    dm = CsvDataModule(
        path=str(path),
        time_column="t",
        target_column=["a", "b"],
        horizon=2,
        normalize=False,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert dm.spec.task == "regress" and dm.spec.num_outputs == 4 and dm.spec.input_size == 2
    assert dm.report["dropped"] == {"shorter_than_horizon_plus_one": 1}
    index = dm.sequences.ids.index("s3")
    assert dm.sequences.xs[index].tolist() == [[30 + t, 300 - t] for t in range(4)]
    assert np.asarray(dm.sequences.ys[index]).tolist() == [34, 296, 35, 295]


def test_word_tokens():
    assert tokenize("Hello, world!\nBye  now", "word") == ["Hello", ",", "world", "!", "\n", "Bye", "now"]
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]


def test_wide_format_rows_are_sequences_with_trailing_blanks(tmp_path):
    rows = [[f"r{i}", 1.0 * i, 2.0, *([3.0] if i % 2 else [""]), i % 3] for i in range(12)]
    path = write_csv(tmp_path / "wide.csv", ["name", "x0", "x1", "x2", "label"], rows)
    dm = CsvDataModule(path=str(path), format="wide", id_column="name", target_column="label", normalize=False)
    assert dm.sequences.ids == [f"r{i}" for i in range(12)]
    assert [x.ravel().tolist() for x in dm.sequences.xs[:2]] == [[0.0, 2.0], [1.0, 2.0, 3.0]]
    assert dm.spec.num_outputs == 3 and dm.spec.input_size == 1 and dm.data_state["classes"] == [0, 1, 2]


def test_forecast_many_to_many_targets_every_step_and_padding_is_not_scored(tmp_path):
    from seqframe.harness.model import SequenceModel

    rows = [[f"s{s}", t, 10 * s + t] for s in range(10) for t in range(3 + s % 4)]
    path = write_csv(tmp_path / "m.csv", ["id", "t", "a"], rows)
    dm = CsvDataModule(
        path=str(path),
        time_column="t",
        target_column="a",
        horizon=2,
        forecast="many_to_many",
        task="auto",  # as conf/data/csv.yaml passes it
        normalize=False,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert dm.spec.task == "per_step_regress" and dm.spec.num_outputs == 2 and dm.spec.monitor == "val/mse"
    index = dm.sequences.ids.index("s3")  # 6 steps: a = 30..35
    assert dm.sequences.xs[index].ravel().tolist() == [30, 31, 32, 33]
    assert dm.sequences.ys[index].tolist() == [[31, 32], [32, 33], [33, 34], [34, 35]]
    dm.setup()
    items = sorted((dm.splits["train"][i] for i in range(len(dm.splits["train"]))), key=lambda item: -item[2])
    x, y, lengths = pad_batch(items[:1] + items[-1:])
    assert lengths.tolist()[0] > lengths.tolist()[1] and torch.isnan(y[1, lengths[1] :]).all()
    model = SequenceModel(dm.spec.as_dict(), {"name": "gru"}, hidden_size=4)
    output = model(x, lengths)
    assert output.shape == (2, x.shape[1], 2)
    valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    loss, _, _ = model._loss(output, y)
    assert loss.item() == pytest.approx(((output - y)[valid] ** 2).mean().item(), rel=1e-6)
