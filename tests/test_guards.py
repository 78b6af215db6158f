"""A NaN in the data stops the run with a message and keeps the last good state; or the batch is skipped."""

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from nan_data import NAN_SEQUENCE
from runs import attempt, summary

from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.checkpoints import load_checkpoint
from seqframe.harness.train import config_dir, train

BATCH = 8
NAN_STEP = NAN_SEQUENCE // BATCH
NAN_RUN = [
    "data._target_=nan_data.AddingWithNaN",
    "data.seq_len=10",
    "data.train_size=128",
    "data.val_size=32",
    "data.test_size=32",
    f"data.batch_size={BATCH}",
    "data.shuffle=false",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "callbacks.step_checkpoint.every_n_train_steps=2",
]


def test_nan_in_the_data_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = attempt([*NAN_RUN, "hydra.run.dir=run"], tmp_path, pythonpath=Path(__file__).parent)
    assert result.returncode == 2, result.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    message = f"seqframe-train: error: training stopped: the loss is nan at step {NAN_STEP} (epoch 0, batch {NAN_STEP})"
    assert message in result.stderr and f"The last good state is in {last}" in result.stderr
    assert summary(tmp_path / "run")["status"] == "failed"
    good = load_checkpoint(last)
    assert good["global_step"] == NAN_STEP  # the updates of batches 0..NAN_STEP-1, not the bad one
    assert all(torch.isfinite(t).all() for t in good["state_dict"].values())


def test_skip_drops_only_the_bad_batch(tmp_path, monkeypatch):
    """In-process (the real train()): with on_nonfinite=skip the run finishes with finite weights."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    register_cell_configs(config_dir())
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*NAN_RUN, "on_nonfinite=skip", "test=false"])
    cfg.paths.output_dir = str(tmp_path)
    with pytest.warns(UserWarning, match="batch skipped") as caught:
        result = train(cfg)
    skipped = [w for w in caught if "batch skipped" in str(w.message)]
    assert len(skipped) == 1 and f"the loss is nan at step {NAN_STEP}" in str(skipped[0].message)
    assert result["status"] == "finished" and result["steps"] == 128 // BATCH
    assert math.isfinite(result["final_val"])
    final = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(t).all() for t in final["state_dict"].values())


def _guarded_step(guard, module: torch.nn.Module, loss: torch.Tensor, saved: list):
    """The guard's two hooks around one step, with a stand-in for the trainer's few fields."""
    from types import SimpleNamespace

    epoch_loop = SimpleNamespace(batch_idx=3)
    trainer = SimpleNamespace(
        global_step=7,
        current_epoch=1,
        fit_loop=SimpleNamespace(epoch_loop=epoch_loop),
        save_checkpoint=lambda path, **options: saved.append(path),
    )
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    guard.on_before_backward(trainer, module, loss)
    loss.backward()
    guard.on_before_optimizer_step(trainer, module, optimizer)


@pytest.mark.parametrize(
    "poison, named",
    [
        (lambda w: (w * float("nan")).sum(), "the loss is nan"),  # a NaN loss
        (lambda w: w.sqrt()[0, 0], "gradient of 1.weight"),  # loss sqrt(0) = 0 is finite, its gradient is inf
    ],
)
def test_a_nonfinite_loss_or_gradient_is_named_with_its_step(tmp_path, poison, named):
    """In-process: the fused max-norm check finds NaN/inf anywhere, and the message names the loss or the
    parameter; finite steps pass untouched."""
    from seqframe.harness.guards import NonFiniteError, NonFiniteGuard

    guard = NonFiniteGuard(tmp_path, action="stop")
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, bias=False))
    saved: list = []
    _guarded_step(guard, module, module(torch.ones(1, 2)).sum(), saved)  # finite: nothing happens
    assert saved == []
    weight = module[1].weight
    with torch.no_grad():
        weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    module.zero_grad()
    with pytest.raises(NonFiniteError, match=named) as error:
        _guarded_step(guard, module, poison(weight), saved)
    assert "at step 7 (epoch 1, batch 3)" in str(error.value) and saved == [tmp_path / "last.ckpt"]
