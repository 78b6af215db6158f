"""Your data in, your model out, through the real console scripts:
write a file -> seqframe-train -> seqframe-eval -> seqframe-predict -> seqframe export
-> run the exported file in a Python process where seqframe cannot be imported."""

import csv
import json

import numpy as np
import pytest
from runs import BIN, run, run_without_seqframe, summary

QUIET = ["trainer.enable_progress_bar=false", "logger=csv"]

# Runs an exported model with seqframe made unimportable (runs.WITHOUT_SEQFRAME).
RUN_EXPORTED = """
import numpy as np
fmt, model, inputs, out = sys.argv[1:5]
data = np.load(inputs)
if fmt == "pt2":
    import torch
    program = torch.export.load(model).module()
    y = program(torch.from_numpy(data["x"]), torch.from_numpy(data["lengths"])).detach().numpy()
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": data["x"], "lengths": data["lengths"]})[0]
np.save(out, y)
"""


def run_exported(tmp_path, fmt, model, x, lengths):
    """The exported model's output for ``x``/``lengths``, computed without seqframe."""
    np.savez(tmp_path / "inputs.npz", x=x.astype(np.float32), lengths=lengths.astype(np.int64))
    out = tmp_path / "exported_out.npy"
    run_without_seqframe(RUN_EXPORTED, tmp_path, fmt, str(model), str(tmp_path / "inputs.npz"), str(out))
    return np.load(out)


def test_keras_npz_trains_predicts_and_exports(tmp_path):
    """(seqframe-eval is exercised by the CSV flow below: one run of each script per format is enough.)"""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 10, 8)), rng.integers(0, 2, size=(100, 1))  # the spec's Keras data
    np.savez(tmp_path / "keras.npz", X=X, y=y)
    run_dir = tmp_path / "run"
    run(["experiment=seed_keras", "data=numpy", "data.path=keras.npz", f"hydra.run.dir={run_dir}", *QUIET], tmp_path)
    trained = summary(run_dir)
    assert trained["parameters"] == 1617 and trained["task"] == "classify"

    new = tmp_path / "new.npz"
    np.savez(new, X=X[::-1][:30])  # no y needed to predict
    run([str(run_dir), str(new), "--out", "p.npy"], tmp_path, exe=BIN / "seqframe-predict")
    probabilities = np.load(tmp_path / "p.npy")
    assert probabilities.shape == (30, 2) and np.allclose(probabilities.sum(1), 1)

    run(["export", str(run_dir), "--format", "pt2"], tmp_path, exe=BIN / "seqframe")
    exported = run_dir / "export" / "model.pt2"
    info = json.loads((run_dir / "export" / "model.pt2.json").read_text())
    assert info["classes"] == [0, 1] and info["longest_training_sequence"] == 10
    assert info["max_len"] is None and info["time_steps"].startswith("any")  # the steps run in a loop in the graph
    out = run_exported(tmp_path, "pt2", exported, X[::-1][:30], np.full(30, 10))
    assert np.abs(out - probabilities).max() <= 1e-5

    # longer sequences than any in training, and shorter ones padded: the trained model's answers
    import torch

    from seqframe.runs.deployable import Deployable
    from seqframe.runs.loading import load_run

    longer, lengths = rng.normal(size=(4, 23, 8)), np.array([23, 5, 17, 1])
    out = run_exported(tmp_path, "pt2", exported, longer, lengths)
    trained_run = load_run(run_dir)
    with torch.no_grad():
        whole = Deployable(trained_run.model(metrics=False), trained_run.data_state)
        expected = whole(torch.tensor(longer, dtype=torch.float32), torch.tensor(lengths)).numpy()
    assert np.abs(out - expected).max() <= 1e-5


def series_rows(rng, ids, labelled=True):
    """Long format, rows of each sequence shuffled in time: ``id, t, temp, load[, label]``."""
    rows = []
    for s in ids:
        label = ["low", "high"][int(s[1:]) % 2]
        for t in rng.permutation(int(rng.integers(3, 9))):
            temp = 20 + (5 if label == "high" else 0) + rng.normal()
            rows.append([s, int(t), temp, 100 + 10 * rng.normal(), *([label] if labelled else [])])
    return rows


def test_csv_series_train_evaluate_predict_export_onnx(tmp_path):
    rng = np.random.default_rng(1)
    with (tmp_path / "series.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "t", "temp", "load", "label"])
        writer.writerows(series_rows(rng, [f"s{i}" for i in range(60)]))
    run_dir = tmp_path / "run"
    data = ["data=csv", "data.path=series.csv", "data.time_column=t", "data.target_column=label"]
    model = ["model.hidden_size=8", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    run([*data, *model, *QUIET], tmp_path)
    trained = summary(run_dir)
    assert trained["data_report"]["split"] == {"train": 48, "val": 6, "test": 6}

    run([str(run_dir), "--out", "metrics.json"], tmp_path, exe=BIN / "seqframe-eval")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == pytest.approx(trained["test"], rel=1e-6)  # the same metrics as training, on the same split

    new_ids = [f"s{i}" for i in (105, 7, 42, 100, 3)]  # unseen and seen ids, in no particular order
    new_rows = series_rows(rng, new_ids, labelled=False)
    with (tmp_path / "new.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "t", "temp", "load"])
        writer.writerows(new_rows)
    best = trained["best_checkpoint"]  # a checkpoint file works as well as its run dir
    run([best, "new.csv", "--out", "p.csv"], tmp_path, exe=BIN / "seqframe-predict")
    with (tmp_path / "p.csv").open() as handle:
        predicted = list(csv.DictReader(handle))
    assert [row["id"] for row in predicted] == new_ids  # one row per sequence, in the file's order
    assert all(row["prediction"] == max(("high", "low"), key=lambda c: float(row[f"p_{c}"])) for row in predicted)

    run(["export", str(run_dir), "--format", "onnx"], tmp_path, exe=BIN / "seqframe")
    steps = max(sum(r[0] == s for r in new_rows) for s in new_ids)  # any time size: this batch's longest
    x, lengths = np.zeros((len(new_ids), steps, 2)), np.zeros(len(new_ids), dtype=np.int64)
    for i, s in enumerate(new_ids):  # raw features, padded: the exported model normalises itself
        rows = sorted((r for r in new_rows if r[0] == s), key=lambda r: r[1])
        x[i, : len(rows)] = [[r[2], r[3]] for r in rows]
        lengths[i] = len(rows)
    out = run_exported(tmp_path, "onnx", run_dir / "export" / "model.onnx", x, lengths)
    expected = np.array([[float(row["p_high"]), float(row["p_low"])] for row in predicted])
    assert np.abs(out - expected).max() <= 1e-5


@pytest.mark.parametrize("cell", ["mingru", "layernorm_lstm", "gru on tokens"])
def test_every_cell_exports_with_a_free_batch_size(tmp_path, cell):
    """Plugin cells and token inputs export too (bidirectional, padded, batch 1 and 5); the flows
    above export lstm (pt2) and gru (ONNX) and run them without seqframe."""
    import torch

    from seqframe.harness.model import SequenceModel
    from seqframe.runs.deployable import Deployable
    from seqframe.runs.export import _write, example_inputs

    task = {"task": "classify", "num_outputs": 3, "input_size": 4, "monitor": "val/loss", "mode": "min"}
    if cell.endswith("tokens"):  # a language model: token ids in, probabilities per step out
        task.update(task="per_step", input_size=None, vocab_size=3)
    name = cell.split()[0]
    model = SequenceModel(task, {"name": name, "backend": "loop"}, hidden_size=6, bidirectional=name != "gru")
    deployable = Deployable(model.eval(), {"mean": [1.0, 2.0, 3.0, 4.0], "std": [2.0, 1.0, 0.5, 1.0]})
    with torch.no_grad():
        exported = _write("pt2", deployable, *example_inputs(model, 3, 4), tmp_path / "m.pt2")
        for batch in (1, 5):
            x, lengths = example_inputs(model, batch, 4, seed=batch)
            assert (exported(x, lengths) - deployable(x, lengths)).abs().max() <= 1e-5


@pytest.mark.parametrize("cell", ["mingru", "layernorm_lstm", "lstm on tokens", "peephole_lstm"])
def test_every_forward_cell_exports_for_any_length(tmp_path, cell):
    """Traced at 4 steps, run at 1 and at 9 (batch 2 and 5, padded): the steps are a loop in the graph.
    peephole_lstm unpacks one parameter into three views inside ``step`` (``p_i, p_f, p_o = self.peephole``),
    which torch 2.13 cannot pass into a loop (they alias): it is unrolled over the 4 steps instead, and says so."""
    import torch

    from seqframe.harness.model import SequenceModel
    from seqframe.runs.deployable import AnyLengthDeployable, Deployable
    from seqframe.runs.export import example_inputs, write_any_length

    task = {"task": "regress", "num_outputs": 2, "input_size": 4, "monitor": "val/mse", "mode": "min"}
    if cell.endswith("tokens"):
        task.update(task="per_step", num_outputs=3, input_size=None, vocab_size=3)
    model = SequenceModel(task, {"name": cell.split()[0], "backend": "loop"}, hidden_size=6, num_layers=2).eval()
    state = {"mean": [1.0, 2.0, 3.0, 4.0], "std": [2.0, 1.0, 0.5, 1.0]}
    with torch.no_grad():
        any_length = AnyLengthDeployable(model, state)
        exported, written, unrolled = write_any_length("pt2", any_length, *example_inputs(model, 3, 4), tmp_path / "m")
        if cell == "peephole_lstm":
            assert "aliasing" in unrolled and type(written) is Deployable
        else:
            assert unrolled is None and written is any_length
        for batch, steps in ((2, 1), (5, 9)) if unrolled is None else ((2, 4), (5, 4)):
            x, lengths = example_inputs(model, batch, steps, seed=batch)
            got, expected = exported(x, lengths), Deployable(model, state)(x, lengths)
            if task["task"] == "per_step":  # answers past a sequence's length are unspecified
                keep = torch.arange(steps)[None, :] < lengths[:, None]
                got, expected = got[keep], expected[keep]
            assert (got - expected).abs().max() <= 1e-5


def test_export_unrolls_a_fixed_max_len_only_without_torch_while_loop_or_for_bidirectional(monkeypatch):
    import torch

    from seqframe.harness.model import SequenceModel
    from seqframe.runs.deployable import loops_export

    task = {"task": "classify", "num_outputs": 3, "input_size": 4, "monitor": "val/loss", "mode": "min"}
    forward = SequenceModel(task, {"name": "gru", "backend": "loop"}, hidden_size=6)
    assert loops_export(forward)
    assert not loops_export(SequenceModel(task, {"name": "gru", "backend": "loop"}, hidden_size=6, bidirectional=True))
    monkeypatch.delattr(torch, "while_loop")  # an older torch: the fixed time size, as before
    assert not loops_export(forward)


def test_word_level_text_predicts_every_token_with_the_saved_vocabulary(tmp_path):
    """The text path of seqframe-eval/-predict in-process: a data module rebuilt from the saved
    data_state reads a new file with the training vocabulary; one prediction per token, in order."""
    from seqframe.data import TextDataModule
    from seqframe.harness.model import SequenceModel
    from seqframe.runs.deployable import Deployable
    from seqframe.runs.predict import run_batches, write_predictions

    rng = np.random.default_rng(2)
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", ","]
    (tmp_path / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, size=7)) + " ." for _ in range(50)))
    (tmp_path / "new.txt").write_text("the zebra sat on a mat .\nthe dog ran")  # 'zebra': never seen
    options = {"path": str(tmp_path / "corpus.txt"), "tokens": "word", "seq_len": 4}
    trained = TextDataModule(**options)
    state = trained.data_state
    assert state["classes"][1:] == sorted(set(words) | {".", "\n"})
    model = SequenceModel(trained.spec.as_dict(), {"name": "gru"}, hidden_size=4, data_state=state).eval()

    reread = TextDataModule(**options, data_state=state)
    assert reread.vocabulary.itos == state["classes"]
    sequences, dataset = reread.read_new(tmp_path / "new.txt", with_targets=True)
    x, y, length = dataset[0]
    assert x.tolist()[:2] == [state["classes"].index("the"), 0] and y.tolist()[:1] == [0]  # zebra: unknown
    assert sum(len(x) for x, _, _ in dataset) == 10  # 11 tokens; the last has no next token to score

    sequences, dataset = reread.read_new(tmp_path / "new.txt", with_targets=False)
    rows = run_batches(Deployable(model, state), dataset, batch_size=2)
    write_predictions(tmp_path / "p.csv", sequences.ids, rows, state)
    with (tmp_path / "p.csv").open() as handle:
        predicted = list(csv.DictReader(handle))
    assert [int(r["id"]) + int(r["step"]) for r in predicted] == list(range(11))  # every token, in order
    assert {r["prediction"] for r in predicted} <= set(state["classes"])


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    import pickle

    from seqframe.harness.checkpoints import CheckpointError
    from seqframe.runs.loading import load_run

    (tmp_path / "checkpoints").mkdir()
    with (tmp_path / "checkpoints" / "last.ckpt").open("wb") as handle:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"hook": print}}, handle)
    with pytest.raises(CheckpointError, match="could run arbitrary code"):
        load_run(tmp_path)
