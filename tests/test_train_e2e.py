"""The training app end to end, through the real console script in subprocesses."""

import csv
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.seq_len=10",
    "data.train_size=128",
    "data.val_size=64",
    "data.test_size=64",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]


def run(args, cwd, exe=BIN / "seqframe-train", timeout=400):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONUNBUFFERED"] = "1"
    result = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{exe.name} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_default_run_beats_the_baseline(tmp_path):
    result = run([], tmp_path)
    [run_dir] = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["cell"] == "gru" and s["data"] == "adding"
    assert s["test"]["test/mse"] < 0.05 < s["baseline"]["mse"]
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "test mse" in result.stdout and str(run_dir) in result.stdout


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
        epochs = {row["epoch"] for row in csv.DictReader(f) if row.get("train/loss_epoch")}
    assert epochs == {"1"}, "the resumed run must train only the epoch after the checkpoint"


def test_ddp_cpu_runs_two_processes_and_writes_one_summary(tmp_path):
    run(["hardware=ddp_cpu", *TINY, "hydra.run.dir=ddp"], tmp_path)
    s = summary(tmp_path / "ddp")
    assert s["status"] == "finished" and s["world_size"] == 2 and s["hardware"] == "ddp_cpu"
    assert len(list(tmp_path.rglob("summary.json"))) == 1


def test_wheel_install_runs_from_another_directory(tmp_path):
    """A real wheel in a fresh venv: the config tree must come from the installed package."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)]
    try:
        import setuptools  # noqa: F401

        build.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("seqframe-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # dependencies (torch, Lightning, ...) come from this environment; seqframe from the wheel
    (site / "_seqframe_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import seqframe.train as t; print(t.config_dir())"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(site)), where
    run(
        ["experiment=seed_keras", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
        elsewhere,
        exe=venv / "bin" / "seqframe-train",
    )
    assert summary(elsewhere / "run")["status"] == "finished"


@pytest.mark.parametrize(
    "args,message",
    [
        (["cell.name=lstn"], "Did you mean 'lstm'?"),
        (["cell=lstm", "cell.forget_bias=x"], "could not convert string to float"),
        (["data=text"], "data.path=/path/to/corpus.txt"),
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
