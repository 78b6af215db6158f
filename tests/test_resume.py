"""Exact resume after SIGTERM and kill -9, determinism, through real `seqframe-train` processes."""

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from runs import BIN, run, summary

from seqframe.harness.checkpoints import load_checkpoint

STEPS_PER_EPOCH = 32  # 256 sequences / batch 8 (per process: 128 / 4 under ddp_cpu)
EPOCHS = 2
EVERY = 7  # step checkpoints at steps 7, 14, ... : never at an epoch end, so every one is mid-epoch

# dropout acts between the two layers; shuffled data; step checkpoints
RUN = [
    "cell=lstm",
    "model.num_layers=2",
    "model.dropout=0.3",
    "model.hidden_size=16",
    "data.seq_len=10",
    "data.train_size=256",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=8",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    f"callbacks.step_checkpoint.every_n_train_steps={EVERY}",
    "test=false",
]


def start(args, cwd: Path, log: str) -> subprocess.Popen:
    """A real seqframe-train in its own process group (so that kill -9 reaches DDP's second rank too)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(cwd / log, "w") as out:
        return subprocess.Popen(
            [str(BIN / "seqframe-train"), *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_new_checkpoint(path: Path, process: subprocess.Popen, log: Path, after_ns: int = 0) -> None:
    deadline = time.monotonic() + 300
    while not (path.is_file() and path.stat().st_mtime_ns > after_ns):
        assert process.poll() is None, f"the run ended before writing a checkpoint:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.005)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def metrics_without_clocks(run_dir: Path) -> list:
    """metrics.csv's rows without the wall/CPU clock columns (time/*), which differ from run to run."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(handle)]


def assert_same_final_state(resumed: Path, reference: Path) -> None:
    a, b = weights(resumed), weights(reference)
    assert a["global_step"] == b["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), f"{name} differs after resume"
    assert summary(resumed)["final_val"] == summary(reference)["final_val"]
    # the metrics log too: rows from before each interruption kept, mid-epoch means restored
    assert metrics_without_clocks(resumed) == metrics_without_clocks(reference)


def test_sigterm_then_kill_9_then_resume_is_bit_exact(tmp_path):
    run([*RUN, "hydra.run.dir=reference"], tmp_path)

    last = tmp_path / "broken" / "checkpoints" / "last.ckpt"
    # 1. SIGTERM (as a cluster sends before pre-emption): a checkpoint and a clean exit
    process = start([*RUN, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path, "term.log")
    wait_for_new_checkpoint(last, process, tmp_path / "term.log")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, (tmp_path / "term.log").read_text()[-3000:]
    stopped = summary(tmp_path / "broken")
    assert stopped["status"] == "stopped" and "SIGTERM" in stopped["error"] and stopped["checkpoint"] == str(last)
    assert "resume with ckpt_path=last" in (tmp_path / "term.log").read_text()
    at_sigterm = load_checkpoint(last)
    assert 0 < at_sigterm["global_step"] < EPOCHS * STEPS_PER_EPOCH

    # 2. resume, then kill -9 just after the next step checkpoint
    process = start([*RUN, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path, "kill.log")
    wait_for_new_checkpoint(last, process, tmp_path / "kill.log", after_ns=last.stat().st_mtime_ns)
    kill_group(process)
    killed_at = load_checkpoint(last)
    assert killed_at["global_step"] > at_sigterm["global_step"]
    assert killed_at["global_step"] % STEPS_PER_EPOCH, "a step checkpoint must be mid-epoch"
    assert killed_at["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"batches": killed_at["global_step"] % STEPS_PER_EPOCH}
    ]
    assert len(killed_at["callbacks"]["ResumeState"]["rng"]) == 1  # one rank

    # 3. the same command once more finishes the run: identical to the uninterrupted one
    run([*RUN, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path)
    assert summary(tmp_path / "broken")["resumed_from"] == str(last)
    assert_same_final_state(tmp_path / "broken", tmp_path / "reference")


def test_kill_9_of_a_two_process_ddp_run_resumes_bit_exact(tmp_path):
    ddp = [*RUN, "hardware=ddp_cpu", "data.batch_size=4"]
    run([*ddp, "hydra.run.dir=reference"], tmp_path)
    last = tmp_path / "broken" / "checkpoints" / "last.ckpt"
    process = start([*ddp, "hydra.run.dir=broken"], tmp_path, "kill.log")
    wait_for_new_checkpoint(last, process, tmp_path / "kill.log")
    kill_group(process)
    killed_at = load_checkpoint(last)
    assert killed_at["global_step"] % STEPS_PER_EPOCH and len(killed_at["callbacks"]["ResumeState"]["rng"]) == 2
    run([*ddp, "ckpt_path=last", "hydra.run.dir=broken"], tmp_path)
    assert_same_final_state(tmp_path / "broken", tmp_path / "reference")


def test_seed_and_deterministic_give_identical_metrics_run_to_run(tmp_path):
    """Two runs of the real train() in this process (cheap: no start-up), same seed: the same metrics."""
    from hydra import compose, initialize_config_dir

    from seqframe.harness.train import config_dir, train

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*RUN, "trainer.max_epochs=1", "seed=3"])
    results = []
    try:
        for name in ("first", "second"):
            cfg.paths.output_dir = str(tmp_path / name)
            results.append(train(cfg))
    finally:
        torch.use_deterministic_algorithms(False)  # Lightning set it for this process; other tests do not want it
    first, second = (metrics_without_clocks(tmp_path / name) for name in ("first", "second"))
    assert first == second and "val/mse" in first[0]
    assert results[0]["final_val"] == results[1]["final_val"]


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_ckpt_path_forms(tmp_path, what):
    """``last`` without a checkpoint starts fresh; a directory without one is refused."""
    from seqframe.harness.checkpoints import CheckpointError
    from seqframe.harness.resume_checkpoint import find_checkpoint

    if what == "missing":
        assert find_checkpoint("last", tmp_path) is None
    else:
        with pytest.raises(CheckpointError, match="directory without checkpoints/last.ckpt"):
            find_checkpoint(str(tmp_path), tmp_path)
