"""steps_per_execution: K optimizer steps per Lightning step train exactly as one step each, resume exactly,
stop at max_steps exactly, and settings that cannot keep their meaning are refused."""

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from runs import attempt, run, summary
from test_private_api import BATCHES, Tiny, fit
from test_resume import (
    RUN,
    assert_same_final_state,
    kill_group,
    metrics_without_clocks,
    start,
    wait_for_new_checkpoint,
    weights,
)

from seqframe.harness.checkpoints import load_checkpoint
from seqframe.harness.config_check import ConfigError
from seqframe.harness.execution import BatchGroup, GroupedLoader, as_batches, epoch_done, trainer_overrides

K = 5  # does not divide the 32 steps of an epoch: the last group of each epoch holds 2 batches

SCHEDULERS = {
    "epoch": "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:1,gamma:0.5}",
    "step": "model.scheduler={_target_:torch.optim.lr_scheduler.ExponentialLR,gamma:0.99,interval:step}",
    "plateau": "model.scheduler={_target_:torch.optim.lr_scheduler.ReduceLROnPlateau,factor:0.5,patience:0,"
    "monitor:val/loss}",
}


def epoch_rows(run_dir):
    """metrics.csv without the per-step loss rows (written every K-th step with groups, as in Keras)."""
    return [row for row in metrics_without_clocks(run_dir) if not row.get("train/loss_step")]


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_grouped_steps_train_exactly_as_one_step_each(tmp_path, scheduler):
    """Dropout, shuffling, gradient clipping (the default 1.0) and the scheduler: bit-identical weights,
    optimizer and scheduler states, and the same epoch metrics at the same steps."""
    args = [*RUN, SCHEDULERS[scheduler]]
    run([*args, "hydra.run.dir=one"], tmp_path)
    run([*args, f"steps_per_execution={K}", "hydra.run.dir=grouped"], tmp_path)
    one, grouped = weights(tmp_path / "one"), weights(tmp_path / "grouped")
    assert grouped["global_step"] == one["global_step"] == 64
    for name, tensor in one["state_dict"].items():
        assert torch.equal(grouped["state_dict"][name], tensor), name
    if scheduler == "plateau":  # Lightning steps it after the epoch-end checkpoint, seqframe's groups before it
        assert grouped["lr_schedulers"][0]["_last_lr"] == one["lr_schedulers"][0]["_last_lr"]
        assert grouped["lr_schedulers"][0]["last_epoch"] == one["lr_schedulers"][0]["last_epoch"] + 1
    else:
        assert grouped["lr_schedulers"] == one["lr_schedulers"]
    for a, b in zip(one["optimizer_states"][0]["state"].values(), grouped["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert epoch_rows(tmp_path / "grouped") == epoch_rows(tmp_path / "one")
    assert summary(tmp_path / "grouped")["steps_per_execution"] == K


def test_max_steps_stops_exactly_inside_a_group(tmp_path):
    run([*RUN, f"steps_per_execution={K}", "+trainer.max_steps=13", "hydra.run.dir=r"], tmp_path)
    assert summary(tmp_path / "r")["steps"] == 13
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.ckpt")["global_step"] == 13


def test_kill_9_then_resume_with_groups_is_bit_exact(tmp_path):
    """Step checkpoints fall at the first group end past each multiple of 7; a resumed run continues exactly."""
    grouped = [*RUN, f"steps_per_execution={K}"]
    run([*grouped, "hydra.run.dir=reference"], tmp_path)
    last = tmp_path / "broken" / "checkpoints" / "last.ckpt"
    process = start([*grouped, "hydra.run.dir=broken"], tmp_path, "kill.log")
    wait_for_new_checkpoint(last, process, tmp_path / "kill.log")
    kill_group(process)
    killed_at = load_checkpoint(last)["global_step"]
    assert 0 < killed_at < 64 and (killed_at % 32) % K in (0, 2), "checkpoints fall on group boundaries"
    run([*grouped, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path)
    assert_same_final_state(tmp_path / "broken", tmp_path / "reference")


def test_refused_settings_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="accumulate_grad_batches=2"):
        trainer_overrides(4, OmegaConf.create({"accumulate_grad_batches": 2}))
    with pytest.raises(ConfigError, match="val_check_interval=50 .* use 56 or 48"):
        trainer_overrides(8, OmegaConf.create({"val_check_interval": 50}))
    no_clipping = {"gradient_clip_val": None, "gradient_clip_algorithm": None}
    assert trainer_overrides(8, OmegaConf.create({"val_check_interval": 48, "accumulate_grad_batches": 1})) == {
        **no_clipping,
        "val_check_interval": 6,  # in groups
    }
    assert trainer_overrides(8, OmegaConf.create({"val_check_interval": 0.5})) == no_clipping  # a fraction
    assert trainer_overrides(1, OmegaConf.create({"accumulate_grad_batches": 2})) == {}
    result = attempt([*RUN, "steps_per_execution=0", "hydra.run.dir=r"], tmp_path)
    assert result.returncode == 2 and "steps_per_execution" in result.stderr


def test_grouped_loader_groups_batches_and_passes_the_position_through():
    class Loader(list):
        sampler = "the sampler"
        position = None

        def state_dict(self):
            return {"batches": 3}

        def load_state_dict(self, state):
            self.position = state

    loader = Loader(range(7))
    grouped = GroupedLoader(loader, 3)
    assert list(grouped) == [[0, 1, 2], [3, 4, 5], [6]] and len(grouped) == 3
    assert all(isinstance(group, BatchGroup) for group in grouped)
    assert grouped.sampler == "the sampler" and grouped.state_dict() == {"batches": 3}
    grouped.load_state_dict({"batches": 6})
    assert loader.position == {"batches": 6}
    assert as_batches(BatchGroup([1, 2])) == [1, 2] and as_batches((1, 2)) == [(1, 2)]


def test_a_step_checkpoint_at_an_epochs_last_group_resumes_exactly(tmp_path):
    """The epoch scheduler steps after the epoch's last batch, before that group's step checkpoint (as
    Lightning does), so a run resumed from it goes on exactly; checkpoints here come only from the
    step checkpoint, at each epoch's end (steps 32 and 64)."""
    args = [
        *RUN,
        SCHEDULERS["epoch"],
        f"steps_per_execution={K - 1}",  # 4 divides 32: an epoch ends on a group end
        "callbacks.model_checkpoint=null",
        "callbacks.step_checkpoint.every_n_train_steps=32",
    ]
    run([*args, "hydra.run.dir=reference"], tmp_path)
    run([*args, "trainer.max_epochs=1", "hydra.run.dir=broken"], tmp_path)  # as if killed after step 32
    assert load_checkpoint(tmp_path / "broken" / "checkpoints" / "last.ckpt")["lr_schedulers"][0]["last_epoch"] == 1
    run([*args, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path)
    resumed, reference = weights(tmp_path / "broken"), weights(tmp_path / "reference")
    assert resumed["global_step"] == reference["global_step"] == 64
    assert resumed["lr_schedulers"] == reference["lr_schedulers"]
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name


def test_val_check_interval_in_batches_keeps_its_meaning(tmp_path):
    args = [*RUN, "trainer.max_epochs=1", "+trainer.val_check_interval=16", "trainer.check_val_every_n_epoch=null"]
    run([*args, "hydra.run.dir=one"], tmp_path)
    run([*args, "steps_per_execution=4", "hydra.run.dir=grouped"], tmp_path)
    val_steps = [row["step"] for row in epoch_rows(tmp_path / "grouped") if row.get("val/loss")]
    assert val_steps == ["15", "31"]
    assert epoch_rows(tmp_path / "grouped") == epoch_rows(tmp_path / "one")


class Rows(torch.utils.data.IterableDataset):
    """``BATCHES`` rows and no length: only Lightning's ``is_last_batch`` knows where the epoch ends."""

    def __iter__(self):
        return iter(torch.randn(BATCHES, 2))


def test_epoch_done_only_after_the_epochs_last_batch():
    """Where epoch-interval schedulers step: the last batch Lightning runs in the epoch (counting
    ``limit_train_batches``, or the end of a loader without length), not when ``max_steps`` cut it."""
    seen = []

    def record(module, batch_idx):
        seen.append(epoch_done(module.trainer))

    fit(Tiny(record), limit_train_batches=4)
    assert seen == [False, False, False, True]
    seen.clear()
    fit(Tiny(record), data=torch.utils.data.DataLoader(Rows(), batch_size=1))
    assert seen == [False] * (BATCHES - 1) + [True]

    at_epoch_end = []

    class AtEpochEnd(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            at_epoch_end.append(epoch_done(trainer))

    fit(Tiny(), callbacks=[AtEpochEnd()], max_steps=2)
    fit(Tiny(), callbacks=[AtEpochEnd()])
    assert at_epoch_end == [False, True]
