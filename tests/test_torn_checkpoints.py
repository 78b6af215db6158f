"""Runs that survive a torn checkpoint: a cut ``last.ckpt`` resumes from the newest checkpoint that
loads (one warning), a refused resume keeps a finished run's summary.json, and a checkpoint writer
killed mid-write never leaves a cut file behind."""

import json
import multiprocessing
import os
import signal
import time

import pytest
import torch
from runs import attempt, run, summary, tiny

from seqframe.harness.checkpoint_io import AtomicCheckpointIO
from seqframe.harness.checkpoints import CheckpointError, load_checkpoint
from seqframe.harness.resume_checkpoint import find_checkpoint
from seqframe.harness.rundir import RunDir, RunSummary


def cut(path, keep=0.5):
    """What a full disk or a copy cut short leaves: the first part of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write(path, step, mtime):
    torch.save({"state_dict": {"w": torch.full((4,), float(step))}, "global_step": step}, path)
    os.utime(path, (mtime, mtime))


def test_a_cut_last_checkpoint_falls_back_to_the_newest_that_loads_with_one_warning(tmp_path, caplog):
    folder = RunDir(tmp_path).checkpoints
    folder.mkdir()
    write(folder / "best-epoch=0-step=4.ckpt", 4, 1000)
    write(folder / "best-epoch=2-step=12.ckpt", 12, 3000)
    write(folder / "last.ckpt", 16, 4000)
    cut(folder / "last.ckpt")
    found = find_checkpoint("last", tmp_path)
    assert found == folder / "best-epoch=2-step=12.ckpt"  # the newest good one, not the older best
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "skipped damaged last.ckpt (cut short at" in lines[0] and lines[0].endswith(f"resuming from {found}")
    assert find_checkpoint(str(tmp_path), tmp_path) == found  # a run dir as ckpt_path: the same fallback

    for path in folder.glob("best*.ckpt"):
        cut(path, keep=0.1)
    none_loads = r"ckpt_path=last: no checkpoint in .* loads \(damaged: .*last.ckpt \(cut short"
    with pytest.raises(CheckpointError, match=none_loads):
        find_checkpoint("last", tmp_path)
    with pytest.raises(CheckpointError, match="is damaged: a torch archive cut short"):
        find_checkpoint(str(folder / "last.ckpt"), tmp_path)  # a file named by the user: that one, or an error


def test_a_checkpoint_refused_for_what_it_holds_is_not_skipped(tmp_path):
    """Falling back is for damaged files; a last.ckpt with pickled objects stays a refusal."""
    folder = RunDir(tmp_path).checkpoints
    folder.mkdir()
    write(folder / "best.ckpt", 4, 1000)
    torch.save({"state_dict": {}, "extra": RunSummary()}, folder / "last.ckpt")  # an arbitrary pickled object
    with pytest.raises(CheckpointError, match="holds pickled objects other than tensors"):
        find_checkpoint("last", tmp_path)


def test_a_failed_attempt_keeps_the_finished_summary_and_writes_its_own_beside_it(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.write_summary(RunSummary(status="finished", best_val=0.5))
    finished = run_dir.summary_file.read_bytes()
    written = run_dir.write_summary(RunSummary(status="failed", error="CheckpointError: no checkpoint loads"))
    assert written == run_dir.failed_attempt_file == run_dir.newest_summary_file()
    assert run_dir.summary_file.read_bytes() == finished
    assert json.loads(written.read_text())["error"] == "CheckpointError: no checkpoint loads"
    run_dir.write_summary(RunSummary(status="finished", best_val=0.25))  # a later attempt that finishes
    assert run_dir.read_summary().best_val == 0.25 and run_dir.newest_summary_file() == run_dir.summary_file


def test_resume_after_a_torn_last_checkpoint_and_a_refused_resume_on_the_command_line(tmp_path):
    """A real run, its last.ckpt cut: ckpt_path=last resumes from the best checkpoint (one warning line)
    and trains on; with every checkpoint cut the resume is refused and summary.json stays as it was."""
    base = [*tiny(epochs=2), "data.batch_size=32", "test=false", "callbacks.step_checkpoint.every_n_train_steps=0"]
    run([*base, "hydra.run.dir=run"], tmp_path)
    run_dir = RunDir(tmp_path / "run")
    best = run_dir.best_checkpoints()
    assert len(best) == 1 and best[0].name.startswith("best-epoch=")
    cut(run_dir.last_checkpoint)

    finished = run_dir.summary_file.read_bytes()
    refused = tmp_path / "refused"
    refused.mkdir()
    (refused / "checkpoints").mkdir()
    for path in (*best, run_dir.last_checkpoint):
        (refused / "checkpoints" / path.name).write_bytes(path.read_bytes()[:100])
    (refused / "summary.json").write_bytes(finished)
    result = attempt([*base, "hydra.run.dir=refused", "ckpt_path=last"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "ckpt_path=last: no checkpoint in" in result.stderr and "train anew" in result.stderr
    assert (refused / "summary.json").read_bytes() == finished  # still the finished run's
    failed_attempt = json.loads((refused / "summary.failed-attempt.json").read_text())
    assert failed_attempt["status"] == "failed" and "no checkpoint in" in failed_attempt["error"]
    assert "summary.failed-attempt.json" in result.stderr  # where the traceback is

    resumed = run([*base, "hydra.run.dir=run", "ckpt_path=last", "trainer.max_epochs=3"], tmp_path)
    output = resumed.stdout + resumed.stderr
    warned = [line for line in output.splitlines() if "skipped damaged" in line]
    assert len(warned) == 1 and f"resuming from {best[0]}" in warned[0], output[-3000:]
    after = summary(run_dir.root)
    assert after["status"] == "finished" and after["resumed_from"] == str(best[0])
    assert after["steps"] == 12  # 128 sequences / batch 32 = 4 steps per epoch, 3 epochs
    assert load_checkpoint(run_dir.last_checkpoint)["global_step"] == 12  # a whole last.ckpt again


def _write_forever(path, started):
    """The writer the test kills: checkpoints of ~24 MB, numbered, written over one another."""
    torch.set_num_threads(1)
    io = AtomicCheckpointIO()
    weights = torch.randn(6_000_000)
    number = 0
    while True:
        number += 1
        io.save_checkpoint({"state_dict": {"w": weights}, "global_step": number}, path)
        started.set()


def test_a_writer_killed_mid_write_leaves_a_whole_checkpoint(tmp_path):
    """kill -9 while ``last.ckpt.<pid>.partial`` is being written (caught in the act: the partial file
    is left behind), several times: last.ckpt always loads, as the previous whole checkpoint."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    context = multiprocessing.get_context("fork")  # no re-import of torch per writer
    caught_mid_write = 0
    for _ in range(20):
        started = context.Event()
        writer = context.Process(target=_write_forever, args=(path, started), daemon=True)
        writer.start()
        assert started.wait(120), "the writer wrote no checkpoint"
        partial = path.with_name(f"last.ckpt.{writer.pid}.partial")
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(30)
        assert load_checkpoint(path)["global_step"] >= 1  # whole, whatever the moment of the kill
        if partial.exists():  # the kill hit mid-write: the cut file is the temp one, never last.ckpt
            caught_mid_write += 1
            if caught_mid_write == 3:
                break
    assert caught_mid_write == 3
    assert [p.name for p in path.parent.glob("*.ckpt")] == ["last.ckpt"]  # resume's glob never takes a temp file
