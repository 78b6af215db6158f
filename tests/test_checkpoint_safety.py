"""A checkpoint carrying an arbitrary pickled object is refused everywhere, and nothing in it runs."""

import pathlib

import pytest
import torch
from runs import attempt, tiny

from seqframe.harness.checkpoints import CheckpointError, load_checkpoint
from seqframe.harness.resume_checkpoint import find_checkpoint


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do (with os.system)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 1, "extra": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # proof that the payload is live when loaded unsafely
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_refused_by_seqframe_and_by_lightning_resume(crafted, tmp_path):
    path, marker = crafted
    with pytest.raises(CheckpointError, match="holds pickled objects other than tensors") as caught:
        find_checkpoint(str(path), tmp_path)
    assert "torch refused: " in str(caught.value) and "\n" not in str(caught.value)
    import pickle

    import pytorch_lightning as pl

    from seqframe.data import AddingDataModule
    from seqframe.harness.model import SequenceModel

    data = AddingDataModule(seq_len=4, train_size=8, val_size=8, test_size=8, batch_size=4)
    model = SequenceModel(task=data.spec.as_dict(), cell={"name": "rnn"}, hidden_size=4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(pickle.UnpicklingError):  # the second line of defence: Lightning's own load
        trainer.fit(model, datamodule=data, ckpt_path=path, weights_only=True)
    assert not marker.exists()


def test_refused_on_the_command_line(crafted, tmp_path):
    path, marker = crafted
    result = attempt([*tiny(), f"ckpt_path={path}", "hydra.run.dir=run"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"seqframe-train: error: checkpoint {path} holds pickled objects other than tensors" in result.stderr
    assert not marker.exists() and not list((tmp_path / "run").rglob("*.ckpt"))


@pytest.mark.parametrize("content", [b"id,t,x\n1,0,0.5\n", b"\x00garbage", b""])
def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path, content):
    """Not a security refusal: a CSV, garbage or an empty file is simply not a checkpoint."""
    path = tmp_path / "not.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a torch checkpoint file"):
        load_checkpoint(path)


def test_resuming_another_task_or_cell_is_refused_but_backend_and_optimizer_may_change(tmp_path):
    """Weights of the same sizes would load silently and train on the wrong problem; say so instead."""
    from seqframe.harness.resume_checkpoint import check_same_model

    here = {"task": {"task": "regress", "input_size": 2}, "cell": {"name": "gru", "backend": "auto"},
            "hidden_size": 64, "optimizer": {"lr": 0.003}}
    same = {**here, "cell": {"name": "gru", "backend": "loop"}, "optimizer": {"lr": 0.001}}
    check_same_model({"hyper_parameters": same}, tmp_path / "x.ckpt", here)
    for other, named in (
        ({**here, "task": {"task": "classify", "input_size": 2}}, "task: "),
        ({**here, "cell": {"name": "lstm", "backend": "auto"}}, "cell: "),
        ({**here, "hidden_size": 32}, "hidden_size: 32 there, 64 here"),
    ):
        with pytest.raises(CheckpointError, match=rf"another model or task \({named}.*train anew without ckpt_path"):
            check_same_model({"hyper_parameters": other}, tmp_path / "x.ckpt", here)
