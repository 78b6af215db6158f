"""Distributed launches: batch semantics, rank-aware output, synced metrics, submitit and torchrun sweeps.

The process tests run real gloo ranks on CPU (``ddp_cpu``, submitit's local
executor, torchrun --standalone); the rules they rely on are tested in-process.
"""

import json
import subprocess

import pytest
import torch
from omegaconf import OmegaConf
from runs import BIN, run, summary, tiny

from seqframe.data.batching import BatchSizeError, per_process_batch_size, without_global_batch_size
from seqframe.harness.distributed import (
    LaunchError,
    check_launch,
    check_run_dir_is_pinned,
    check_submitit_ranks,
    check_torchrun_sweep,
)

TINY = tiny()
BASIC = (
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
)
SUBMITIT_TRAINER = {
    "devices": 2,
    "num_nodes": 1,
    "strategy": "ddp",
    "plugins": [{"_target_": "seqframe.harness.submitit_env.SubmititEnvironment"}],
}
LOCAL_TASK = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1"}


# --- batch size: per process by default, or a global batch shared out evenly ---------------------------------------


@pytest.mark.parametrize(
    "batch, global_batch, world, expected", [(64, None, 4, 64), (64, 64, 4, 16), (8, 16, 2, 8), (8, 5, 1, 5)]
)
def test_global_batch_is_shared_out_over_the_processes(batch, global_batch, world, expected):
    assert per_process_batch_size(batch, global_batch, world) == expected


def test_a_global_batch_the_processes_cannot_share_is_refused_with_the_numbers_and_the_fix():
    with pytest.raises(BatchSizeError) as error:
        per_process_batch_size(64, 10, 4)
    message = str(error.value)
    assert "data.global_batch_size=10" in message and "4 processes" in message
    assert "multiple of 4" in message and "8 or 12" in message and "data.batch_size" in message
    with pytest.raises(BatchSizeError, match="positive integer"):
        per_process_batch_size(64, 0, 1)
    assert isinstance(error.value, ValueError)  # seqframe-train reports it as a user error


def test_global_batch_size_is_taken_out_of_the_data_config():
    cfg = OmegaConf.create({"seed": 3, "data": {"_target_": "x", "seed": "${seed}", "global_batch_size": 32}})
    data, global_batch = without_global_batch_size(cfg.data)
    assert global_batch == 32 and "global_batch_size" not in data and data.seed == 3


# --- launch rules -----------------------------------------------------------------------------------------------------


def test_submitit_tasks_must_be_the_trainers_ranks():
    check_submitit_ranks(SUBMITIT_TRAINER, LOCAL_TASK)  # 2 tasks, 2 devices: fine
    with pytest.raises(LaunchError, match="2 tasks but the trainer expects 4 ranks"):
        check_submitit_ranks({**SUBMITIT_TRAINER, "devices": 4}, LOCAL_TASK)
    with pytest.raises(LaunchError, match="use hardware=slurm"):  # Lightning would relaunch python -m submitit...
        check_submitit_ranks({"devices": 2, "strategy": "ddp"}, LOCAL_TASK)
    check_submitit_ranks({"devices": 1, "strategy": "auto"}, LOCAL_TASK)  # one process per job: plain submitit
    # a multirun whose ranks are submitit's tasks is not a relaunching multirun
    check_launch(SUBMITIT_TRAINER, multirun=True, environ=LOCAL_TASK, sweep_plugins=BASIC)


def test_slurm_hardware_outside_a_submitit_job_says_to_add_multirun(monkeypatch):
    from seqframe.harness.submitit_env import SubmititEnvironment

    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    with pytest.raises(LaunchError, match="add -m"):  # refused before training by seqframe-train
        check_launch(SUBMITIT_TRAINER, multirun=False, environ={}, sweep_plugins=BASIC)
    with pytest.raises(LaunchError, match="add -m"):  # and by the environment itself (Python API)
        SubmititEnvironment()


def test_submitit_environment_gives_every_task_the_same_address_and_port(monkeypatch):
    from seqframe.harness.submitit_env import SubmititEnvironment, port_for_job

    ports = set()
    for rank in ("0", "1"):
        for name, value in {**LOCAL_TASK, "SUBMITIT_LOCAL_GLOBALID": rank, "SUBMITIT_LOCAL_LOCALID": rank}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
        monkeypatch.setenv("SUBMITIT_LOCAL_NODEID", "0")
        monkeypatch.delenv("MASTER_PORT", raising=False)
        monkeypatch.delenv("MASTER_ADDR", raising=False)
        env = SubmititEnvironment()
        assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (int(rank), int(rank), 0, 2)
        assert env.creates_processes_externally and env.main_address == "127.0.0.1"
        ports.add(env.main_port)
    assert ports == {port_for_job("4242")} and port_for_job("4242") != port_for_job("4243")
    assert all(10000 <= port_for_job(str(job)) < 30000 for job in range(200))


def test_on_slurm_the_first_host_of_the_job_is_the_main_address(monkeypatch):
    from seqframe.harness.submitit_env import SubmititEnvironment, port_for_job

    slurm_task = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "777",
        "SLURM_JOB_NODELIST": "gpu[3-4]",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
    }
    for name, value in slurm_task.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    env = SubmititEnvironment()
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (5, 1, 1, 8)
    assert env.main_address == "gpu3" and env.main_port == port_for_job("777")
    monkeypatch.setenv("MASTER_PORT", "12345")
    assert env.main_port == 12345


def test_slurm_hardware_composes_the_launcher_from_the_trainer_settings():
    from hydra import compose, initialize_config_dir

    from seqframe.harness.train import config_dir

    overrides = ["hardware=slurm", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.plugins[0]._target_ == "seqframe.harness.submitit_env.SubmititEnvironment"


def test_slurm_hardware_without_the_launcher_plugin_says_how_to_install_it(monkeypatch):
    from seqframe.errors import SeqframeError
    from seqframe.harness import optional_dependencies as extras

    extras.check_extras(["hardware=slurm_local"])  # installed by scripts/setup.sh
    monkeypatch.setattr(extras, "_installed", lambda module: False)
    with pytest.raises(SeqframeError, match=r"pip install 'seqframe\[slurm\]'"):
        extras.check_extras(["-m", "hardware=slurm"])
    extras.check_extras(["hardware=cpu"])


def test_torchrun_sweeps_need_a_pinned_sweep_dir_and_an_ordered_sweep():
    torchrun = {"TORCHELASTIC_RUN_ID": "x"}
    with pytest.raises(LaunchError, match=r"add hydra.sweep.dir=outputs/<name>"):
        check_run_dir_is_pinned(["-m", "cell=rnn,lstm", "hydra.run.dir=a"], torchrun)
    check_run_dir_is_pinned(["-m", "cell=rnn,lstm", "hydra.sweep.dir=a"], torchrun)
    check_torchrun_sweep(BASIC, torchrun)
    optuna = ("hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", BASIC[1])
    with pytest.raises(LaunchError, match="OptunaSweeper would not give every rank the same jobs"):
        check_launch({"devices": 1, "strategy": "ddp"}, multirun=True, environ=torchrun, sweep_plugins=optuna)
    check_torchrun_sweep(optuna, {})  # without torchrun the sweeper runs once


# --- real processes ---------------------------------------------------------------------------------------------------


def _test_mse_of_checkpoint(path, data_args: dict) -> tuple:
    """Test MSE of a checkpoint over the whole test split, computed here in one process with plain torch;
    and what a sampler that pads the split (repeating item 0 for 2 ranks) would have counted instead."""
    from seqframe.data import AddingDataModule
    from seqframe.harness.checkpoints import load_checkpoint
    from seqframe.harness.model import SequenceModel

    checkpoint = load_checkpoint(path)
    model = SequenceModel(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"])
    data = AddingDataModule(**data_args)
    data.setup()
    x, y = next(iter(torch.utils.data.DataLoader(data.splits["test"], batch_size=len(data.splits["test"]))))[:2]
    with torch.no_grad():
        errors = (model(x).double().reshape(-1) - y.double().reshape(-1)) ** 2
    return errors.mean().item(), torch.cat([errors, errors[:1]]).mean().item()


def test_ddp_cpu_with_a_global_batch_syncs_metrics_over_unequal_shards_and_reports_once(tmp_path):
    sizes = {"seq_len": 10, "train_size": 128, "val_size": 63, "test_size": 65}
    args = [f"data.{k}={v}" for k, v in sizes.items()]
    result = run(
        ["hardware=ddp_cpu", *args, "data.global_batch_size=16", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false"],
        tmp_path,
    )
    # the default run dir is time-stamped (${now:...}); the relaunched rank 1 is given rank 0's, so there is one
    run_dirs = [p for p in tmp_path.glob("outputs/*/*") if p.is_dir()]
    assert len(run_dirs) == 1 and len(list(tmp_path.rglob("summary.json"))) == 1
    s = summary(run_dirs[0])
    assert s["status"] == "finished" and s["world_size"] == 2 and s["hardware"] == "ddp_cpu"
    assert s["batch_size"] == {"per_process": 8, "global": 16} and s["steps"] == 128 // 16
    # rank 1's stdout is the same pipe: the config and the final report come from rank 0 only
    assert result.stdout.count("hidden_size=") == 1 and result.stdout.count("seqframe: outputs in") == 1
    # 65 test sequences on 2 ranks: shards of 33 and 32; the synced metric is the MSE over all 65, once each
    exact, padded = _test_mse_of_checkpoint(s["best_checkpoint"], {**sizes, "seed": 0})
    assert abs(s["test"]["test/mse"] - exact) < 1e-5 * max(1.0, exact)
    assert abs(padded - exact) > 1e-4  # the check can tell a padded (repeated) shard from the exact one


def test_submitit_local_sweep_runs_each_job_as_two_task_ranks(tmp_path):
    result = run(["-m", "hardware=slurm_local", "cell=rnn,lstm", *TINY], tmp_path)
    [sweep] = tmp_path.glob("multirun/*/*")  # the default, time-stamped sweep dir: resolved once, for all tasks
    summaries = sorted((summary(p.parent) for p in sweep.glob("*/summary.json")), key=lambda s: s["cell"])
    assert [s["cell"] for s in summaries] == ["lstm", "rnn"]
    # 128 sequences, batch 64 per rank, 2 ranks: one step per epoch (one process would take two)
    assert all(s["status"] == "finished" and s["world_size"] == 2 and s["steps"] == 1 for s in summaries)
    assert len(list(tmp_path.rglob("summary.json"))) == 2
    assert "2 finished, 0 failed" in result.stdout
    jobs = [d for d in (sweep / ".submitit").iterdir() if d.is_dir() and "%" not in d.name]  # %j: staging
    assert len(jobs) == 2
    for job in jobs:  # each job ran two tasks; only task 0 printed the config and the report
        outputs = {p.name.split("_")[1]: p.read_text() for p in job.glob("*_log.out")}
        assert sorted(outputs) == ["0", "1"]
        assert outputs["0"].count("seqframe: outputs in") == 1 and "hidden_size=" in outputs["0"]
        assert "seqframe: outputs in" not in outputs["1"] and "hidden_size=" not in outputs["1"]


def test_torchrun_standalone_multirun_runs_every_job_on_both_ranks(tmp_path):
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", str(BIN / "seqframe-train"),
        "-m", "cell=rnn,lstm", "hardware=multi_node", "trainer.accelerator=cpu", *TINY, "hydra.sweep.dir=sweep",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert sorted(s["cell"] for s in summaries) == ["lstm", "rnn"]
    assert all(s["status"] == "finished" and s["world_size"] == 2 and s["steps"] == 1 for s in summaries)
    assert len(list(tmp_path.rglob("summary.json"))) == 2
    assert result.stdout.count("seqframe sweep") == 1 and "2 finished, 0 failed" in result.stdout
