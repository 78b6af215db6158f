"""The training app end to end, through the real console script in subprocesses."""

import csv
import os
import subprocess
from pathlib import Path

import pytest
from runs import BIN, run, summary, tiny
from venvs import REPO, build_wheel, make_venv, pip_install, run_in, site_packages

TINY = tiny()


def test_default_run_beats_the_baseline(tmp_path):
    result = run([], tmp_path)
    [run_dir] = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["cell"] == "gru" and s["data"] == "adding"
    assert s["test"]["test/mse"] < 0.05 < s["baseline"]["mse"]
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "test mse" in result.stdout and str(run_dir) in result.stdout


def test_default_cell_trains_in_bf16_mixed_precision(tmp_path):
    run([*TINY, "precision=bf16-mixed", "test=false", "hydra.run.dir=run"], tmp_path)
    s = summary(tmp_path / "run")
    assert s["status"] == "finished" and s["cell"] == "gru" and s["paths"] == ["fused"]
    assert s["final_val"] is not None and s["final_val"] < s["baseline"]["mse"] * 10


def test_seed_keras_experiment_is_the_spec_model(tmp_path):
    run(["experiment=seed_keras", "trainer.enable_progress_bar=false", "hydra.run.dir=run"], tmp_path)
    s = summary(tmp_path / "run")
    assert (s["cell"], s["data"], s["parameters"], s["epochs"], s["steps"]) == ("lstm", "seed_example", 1617, 2, 26)
    assert s["paths"] == ["fused"] and 0.0 <= s["test"]["test/acc"] <= 1.0


def test_gru_on_copy(tmp_path):
    run(
        [
            "cell=gru",
            "data=copy",
            "data.delay=5",
            "data.train_size=128",
            "data.val_size=64",
            "data.test_size=64",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    s = summary(tmp_path / "run")
    assert s["task"] == "per_step" and s["monitor"] == "val/loss" and s["status"] == "finished"
    assert {"test/acc", "test/loss", "test/bpc"} <= set(s["test"])


def test_multirun_writes_one_summary_per_job(tmp_path):
    run(["-m", "cell=rnn,lstm", "data=adding", *TINY, "hydra.sweep.dir=sweep"], tmp_path)
    cells = sorted(summary(p.parent)["cell"] for p in (tmp_path / "sweep").glob("*/summary.json"))
    assert cells == ["lstm", "rnn"]


def test_resume_from_last_checkpoint_continues(tmp_path):
    run(["cell=lstm", *TINY, "hydra.run.dir=first"], tmp_path)
    first = summary(tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    run(["cell=lstm", *TINY, "trainer.max_epochs=2", f"ckpt_path={last}", "hydra.run.dir=second"], tmp_path)
    second = summary(tmp_path / "second")
    assert second["steps"] == 2 * first["steps"] and second["epochs"] == 2
    with open(tmp_path / "second" / "metrics.csv") as f:
        epochs = {row["epoch"] for row in csv.DictReader(f) if row.get("train/loss")}
    assert epochs == {"1"}, "the resumed run must train only the epoch after the checkpoint"


def test_wheel_install_runs_from_another_directory(tmp_path):
    """A real wheel in a fresh venv: the config tree must come from the installed package."""
    venv = make_venv(tmp_path / "venv")
    pip_install(venv, str(build_wheel(tmp_path / "wheels")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_in(venv, ["python", "-c", "import seqframe.harness.train as t; print(t.config_dir())"], elsewhere)
    assert where.stdout.strip().startswith(str(site_packages(venv))), where.stdout + where.stderr
    run(
        ["experiment=seed_keras", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
        elsewhere,
        exe=venv / "bin" / "seqframe-train",
    )
    assert summary(elsewhere / "run")["status"] == "finished"


@pytest.mark.parametrize(
    "args,message",
    [
        (["data=text"], "data.path=/path/to/corpus.txt"),  # bad cells: refused before Hydra (test_command_line.py)
    ],
)
def test_user_errors_are_reported_clearly(tmp_path, args, message):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(BIN / "seqframe-train"), *args, "hydra.run.dir=run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert summary(tmp_path / "run")["status"] == "failed"


def test_plugin_cell_trains_from_its_entry_point_with_no_yaml(tmp_path):
    assert not (REPO / "conf" / "cell" / "mingru.yaml").exists()
    run(["cell=mingru", "cell.scan_method=sequential", *TINY, "hydra.run.dir=run"], tmp_path)
    s = summary(tmp_path / "run")
    assert s["cell"] == "mingru" and s["paths"] == ["fused"] and s["status"] == "finished"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["cell=mingru", "cell.foo=1"],
            "cell 'mingru' has no option 'foo'; its options are: scan_method='auto', backend='auto'",
        ),
        (["cell=rnn,lstm", "cell.nonlinearity=relu"], "cell 'lstm' has no option 'nonlinearity'"),
        (["cell=layernorm_lstm", "cell.eps=abc"], "cell 'layernorm_lstm': option eps='abc' must be float"),
    ],
)
def test_bad_cell_options_fail_before_training(tmp_path, args, message):
    result = subprocess.run(
        [str(BIN / "seqframe-train"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and message in result.stderr
    assert not list(tmp_path.rglob("summary.json")), "nothing may train"


def test_multirun_with_relaunched_ddp_ranks_is_refused_before_training(tmp_path):
    result = subprocess.run(
        [str(BIN / "seqframe-train"), "-m", "cell=rnn,lstm", "hardware=ddp_cpu", *TINY, "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "hardware=ddp_cpu_fork" in result.stderr and "torchrun" in result.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


def test_multirun_on_forked_ddp_ranks(tmp_path):
    run(["-m", "cell=rnn,lstm", "hardware=ddp_cpu_fork", *TINY, "hydra.sweep.dir=sweep"], tmp_path)
    summaries = [summary(p.parent) for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert sorted(s["cell"] for s in summaries) == ["lstm", "rnn"]
    assert all(s["world_size"] == 2 and s["status"] == "finished" for s in summaries)
    assert len(list(tmp_path.rglob("summary.json"))) == 2


def _weights(run_dir: Path) -> dict:
    import torch

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return checkpoint["state_dict"]


def test_two_ddp_processes_equal_one_process_with_the_global_batch(tmp_path):
    same = [
        "cell=gru",
        "data.seq_len=12",
        "data.train_size=128",
        "data.val_size=32",
        "data.test_size=32",
        "data.shuffle=false",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "test=false",
    ]
    run([*same, "hardware=ddp_cpu", "data.batch_size=8", "hydra.run.dir=ddp"], tmp_path)
    run([*same, "hardware=cpu", "data.batch_size=16", "hydra.run.dir=single"], tmp_path)
    assert summary(tmp_path / "ddp")["steps"] == summary(tmp_path / "single")["steps"] == 16
    ddp, single = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for name in ddp:
        assert (ddp[name] - single[name]).abs().max() < 1e-5, name


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_torchrun_on_localhost(tmp_path):
    port = _free_port()
    args = ["hardware=multi_node", "trainer.accelerator=cpu", *TINY, "hydra.run.dir=run"]
    nodes = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                str(BIN / "seqframe-train"),
                *args,
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    s = summary(tmp_path / "run")
    assert s["status"] == "finished" and s["world_size"] == 2 and s["hardware"] == "multi_node"
    assert len(list(tmp_path.rglob("summary.json"))) == 1


def test_torchrun_without_a_pinned_run_dir_is_refused(tmp_path):
    env = {**os.environ, "TORCHELASTIC_RUN_ID": "x"}
    result = subprocess.run(
        [str(BIN / "seqframe-train"), "hardware=multi_node"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "add hydra.run.dir=outputs/<name>" in result.stderr


def test_a_failing_job_does_not_stop_the_sweep_and_the_sweep_reports_it(tmp_path):
    command = [str(BIN / "seqframe-train"), "-m", "model.hidden_size=8,-1,4", *TINY, "hydra.sweep.dir=sweep"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    statuses = [summary(tmp_path / "sweep" / str(job))["status"] for job in range(3)]
    assert statuses == ["finished", "failed", "finished"]
    assert "model.hidden_size=-1 is out of range" in summary(tmp_path / "sweep" / "1")["error"]
    assert "2 finished, 1 failed" in result.stdout and "job 1: gru on adding: failed" in result.stdout
    assert "resume=true" in result.stderr


def test_resume_skips_the_jobs_that_finished(tmp_path):
    args = ["-m", "cell=rnn,lstm", *TINY, "hydra.sweep.dir=sweep"]
    run(args, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("*/summary.json")}
    (tmp_path / "sweep" / "1" / "summary.json").unlink()  # as if job 1 had been killed
    result = run([*args, "resume=true"], tmp_path)
    assert result.stdout.count("already finished (resume=true): skipped") == 1
    assert (tmp_path / "sweep" / "0" / "summary.json").stat().st_mtime_ns == stamps[
        tmp_path / "sweep" / "0" / "summary.json"
    ]
    assert summary(tmp_path / "sweep" / "1")["status"] == "finished"
    assert "2 finished, 0 failed" in result.stdout
