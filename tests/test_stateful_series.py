"""Stateful truncated BPTT over several long series (``data=csv``/``numpy`` with ``data.stateful=true``):
the series are dealt into streams of chunks, and the carried state is reset where each series starts."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from test_stateful import train_in_process

from seqframe.data.files import DataFileError
from seqframe.data.streams import cut_documents

SERIES = [torch.arange(0, 10), torch.arange(100, 105), torch.arange(200, 213)]


def test_series_are_dealt_into_streams_in_order_with_a_reset_where_each_starts():
    """Checked by hand: 3 series of 10, 5 and 13 steps in chunks of 4 are 9 chunks; 2 streams take 5 and
    4 of them in order. Padding (0 in, -100 out) fills a series' last chunk and a stream that ran out."""
    batches = list(cut_documents(SERIES, [s + 1 for s in SERIES], batch_size=2, seq_len=4, rank=0, world_size=1))
    assert [b.x.tolist() for b in batches] == [
        [[0, 1, 2, 3], [200, 201, 202, 203]],
        [[4, 5, 6, 7], [204, 205, 206, 207]],
        [[8, 9, 0, 0], [208, 209, 210, 211]],
        [[100, 101, 102, 103], [212, 0, 0, 0]],
        [[104], [0]],  # a batch is as long as its longest real chunk
    ]
    assert [b.y.tolist()[0] for b in batches][2:] == [[9, 10, -100, -100], [101, 102, 103, 104], [105]]
    assert [b.reset.tolist() for b in batches] == [
        [True, True],
        [False, False],
        [False, False],
        [True, False],
        [False, True],
    ]
    # two processes, two streams each: rank 1 reads chunks 5-6 and 7-8; every rank runs 3 batches
    second = list(cut_documents(SERIES, SERIES, batch_size=2, seq_len=4, rank=1, world_size=2))
    assert [b.x.tolist() for b in second] == [
        [[200, 201, 202, 203], [208, 209, 210, 211]],
        [[204, 205, 206, 207], [212, 0, 0, 0]],
        [[0], [0]],
    ]
    assert len(list(cut_documents(SERIES, SERIES, batch_size=2, seq_len=4, rank=0, world_size=2))) == 3


def _model(task: str, outputs: int):
    from seqframe.harness.model import SequenceModel

    torch.manual_seed(0)
    spec = {"task": task, "num_outputs": outputs, "input_size": 2, "monitor": "val/loss", "mode": "min"}
    return SequenceModel({**spec, "stateful": True}, {"name": "gru", "backend": "loop"}, hidden_size=8)


def test_a_stateful_pass_over_several_series_gives_each_series_its_whole_run():
    """The outputs of every chunk, put back in place, are each series run alone from the initial state:
    the state was carried within a series and reset where the next starts (without the resets it is not)."""
    model = _model("per_step_regress", 1)
    xs = [torch.randn(n, 2) for n in (10, 5, 13)]
    ys = [torch.randn(n, 1) for n in (10, 5, 13)]
    chunks = cut_documents(xs, ys, batch_size=2, seq_len=4, rank=0, world_size=1)
    seen = []
    model.head.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    placed = [torch.full((len(x), 1), float("nan")) for x in xs]
    with torch.no_grad():
        for k, batch in enumerate(chunks):
            model.batch_loss(batch, "val")
            for row, (first, stop) in enumerate(chunks.runs):
                if first + k < stop:
                    series, start, end = chunks.chunks[first + k]
                    placed[series][start:end] = seen[-1][row, : end - start]
        for x, out in zip(xs, placed):
            assert (model(x[None])[0] - out).abs().max() <= 1e-6

        # the control: carrying the state into the next series (no reset there) changes its outputs
        state, outputs = None, []
        for batch in chunks:
            out, state = model.forward_with_state(batch.x, state)
            outputs.append(out)
        second_series_start = outputs[3][0, :4]  # batch 3, row 0: series 1's first chunk after series 0's end
        assert (second_series_start - placed[1][:4]).abs().max() > 1e-3


def test_a_process_whose_streams_ran_out_trains_on_zero_loss_not_nan():
    """Under DDP every rank runs the same batches; one that holds only padding adds nothing to the gradient."""
    for task, outputs, ys in (
        ("per_step_regress", 1, [s.float()[:, None] for s in SERIES]),
        ("per_step", 3, [s % 3 for s in SERIES]),
    ):
        model = _model(task, outputs)
        xs = [s.float()[:, None].repeat(1, 2) for s in SERIES]
        last = list(cut_documents(xs, ys, batch_size=2, seq_len=4, rank=1, world_size=2))[-1]
        loss = model.batch_loss(last, "val", log_step=False)
        loss.backward()
        assert loss.item() == 0.0
        assert all(p.grad is None or torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def _long_csv(path: Path, steps: int = 300) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "t", "load"])
        for series, phase in (("a", 0.0), ("b", 1.0)):
            writer.writerows([series, t, f"{np.sin(0.2 * t + phase):.5f}"] for t in range(steps))
    return path


def test_csv_series_train_statefully_split_by_position_with_the_horizon_left_out(tmp_path):
    """Two series of 300 steps forecasting 3 ahead: 297 inputs each, split 80/10/10 by position, with the
    last 3 steps of train and val left out (their targets would be the next part's values)."""
    path = _long_csv(tmp_path / "load.csv")
    overrides = ["data=csv", f"data.path={path}", "data.time_column=t", "data.target_column=load", "data.horizon=3"]
    overrides += ["data.forecast=many_to_many", "data.stateful=true", "data.seq_len=20", "data.batch_size=4"]
    result = train_in_process(
        tmp_path / "run", [*overrides, "cell=lstm", "model.hidden_size=8", "trainer.max_epochs=2"]
    )
    report = result["data_report"]
    assert report["split"] == {"train": 2, "val": 2, "test": 2}
    assert report["split_steps"] == {"train": 2 * (237 - 3), "val": 2 * (267 - 237 - 3), "test": 2 * (297 - 267)}
    assert result["steps"] == 2 * 6  # 2 x 12 chunks of 20 (234 = 11 x 20 + 14) dealt into 4 streams: 6 batches
    assert np.isfinite(result["best_val"]) and np.isfinite(result["test"]["test/mse"])

    (tmp_path / "one.csv").write_text("date,sales\n" + "".join(f"{t},{t % 7}\n" for t in range(50)))
    with pytest.raises(DataFileError, match="for a file that is one series, set data.id_column=null"):
        from seqframe.data import CsvDataModule

        CsvDataModule(path=str(tmp_path / "one.csv"), target_column="sales", horizon=1, forecast="many_to_many")
    one = CsvDataModule(
        path=str(tmp_path / "one.csv"),
        id_column=None,
        time_column="date",
        target_column="sales",
        horizon=1,
        forecast="many_to_many",
        stateful=True,
        seq_len=8,
        batch_size=2,
    )
    assert one.report["split_steps"] == {"train": 38, "val": 4, "test": 5}  # 49 inputs: 39 - 1, 44 - 39 - 1, 49 - 44
    with pytest.raises(DataFileError, match="needs a target at every step.*data.horizon=H data.forecast=many_to_many"):
        from seqframe.data import CsvDataModule

        CsvDataModule(path=str(path), time_column="t", target_column="load", horizon=3, stateful=True)


def test_numpy_values_at_every_step_are_a_per_step_regression_read_statefully(tmp_path):
    from seqframe.data import NumpyDataModule

    x = np.random.default_rng(0).standard_normal((1, 400, 2))
    np.savez(tmp_path / "one.npz", X=x, y=x[:, :, :1] * 2)  # [N, T, K]: K values at every step
    data = NumpyDataModule(path=str(tmp_path / "one.npz"), stateful=True, seq_len=25, batch_size=4)
    assert data.spec.task == "per_step_regress" and data.spec.stateful
    assert data.report["split_steps"] == {"train": 320, "val": 40, "test": 40}
    batches = list(data.train_dataloader())  # one series of 320 steps in 13 chunks: 4 streams of 4, 3, 3, 3
    assert [tuple(b.x.shape) for b in batches] == [(4, 25, 2)] * 4
    assert [b.reset.tolist() for b in batches] == [[True] * 4, [False] * 4, [False] * 4, [False, True, True, True]]
    mean, std = np.asarray(data.state["mean"]), np.asarray(data.state["std"])  # fitted on the 320 training steps
    assert np.allclose(mean, x[0, :320].mean(0)) and np.allclose(std, x[0, :320].std(0))
    stream_1 = torch.cat([b.x[1] for b in batches[:3]]).numpy()  # chunks 4-6: steps 100-174, in order
    assert np.allclose(stream_1, (x[0, 100:175] - mean) / std, atol=1e-6)
    assert torch.equal(
        torch.cat([b.y[1] for b in batches[:3]]), torch.tensor(x[0, 100:175, :1] * 2, dtype=torch.float32)
    )
    np.savez(tmp_path / "labels.npz", X=x, y=np.zeros(1))
    with pytest.raises(DataFileError, match=r"give y of shape \[N, T\] \(a label per step\)"):
        NumpyDataModule(path=str(tmp_path / "labels.npz"), stateful=True, task="regress")
