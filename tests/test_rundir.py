"""The run-dir contract: summary.json round trips, tolerates other versions' keys, keeps the keys users
read; checkpoints are found in one place; docs/run-dir.md documents every field."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from seqframe.harness.checkpoints import CheckpointError
from seqframe.harness.resume_checkpoint import find_checkpoint
from seqframe.harness.rundir import SCHEMA_VERSION, RunDir, RunSummary, read_summary, summary_table
from seqframe.runs.loading import run_checkpoint

DOC = Path(__file__).resolve().parents[1] / "docs" / "run-dir.md"
# what report, sweeps, the tests and users' scripts read from summary.json before it had a schema
KEYS_READ_TODAY = (
    "status cell cell_options data hardware seed output_dir task baseline target monitor monitor_mode parameters "
    "paths gates has_cell_state data_report resumed_from checkpoint best_val final_val epochs steps world_size "
    "batch_size steps_per_execution time_per_epoch epoch_times best_checkpoint test error traceback wall_time"
).split()


def finished() -> RunSummary:
    return RunSummary(
        status="finished", cell="gru", cell_options={"name": "gru"}, data="adding", seed=3, monitor="val/mse",
        monitor_mode="min", best_val=0.01, test={"test/mse": 0.02}, epoch_times=[1.5, 1.25], batch_size={"global": 8},
    )


def test_a_summary_round_trips_with_its_schema_version(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_summary(finished())
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION >= 1
    assert set(KEYS_READ_TODAY) <= set(written), "a key users read went away"
    assert "extra" not in written
    assert run.read_summary() == finished()
    assert read_summary(tmp_path / "run") == written  # the plain-dict reader sees the same
    assert not list((tmp_path / "run").glob("*.partial"))


def test_keys_of_other_versions_are_kept_and_missing_ones_default(tmp_path):
    older_or_newer = {"status": "failed", "cell": "lstm", "error": "ValueError: x", "added_later": {"a": 1}}
    (tmp_path / "summary.json").write_text(json.dumps(older_or_newer))
    summary = RunDir(tmp_path).read_summary()
    assert (summary.status, summary.cell, summary.error, summary.best_val) == ("failed", "lstm", "ValueError: x", None)
    assert summary.schema_version == 0  # written before summaries had a version
    assert summary.extra == {"added_later": {"a": 1}}
    RunDir(tmp_path).write_summary(summary)
    assert json.loads((tmp_path / "summary.json").read_text())["added_later"] == {"a": 1}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", None])
def test_no_readable_summary_reads_as_none(tmp_path, content):
    if content is not None:
        (tmp_path / "summary.json").write_text(content)
    assert RunDir(tmp_path).read_summary() is None and read_summary(tmp_path) is None


def test_update_refuses_a_name_that_is_no_field():
    summary = RunSummary()
    summary.update(status="stopped", steps=4)
    assert (summary.status, summary.steps) == ("stopped", 4)
    with pytest.raises(AttributeError, match="no field 'best_value'"):
        summary.update(best_value=1.0)


def _checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "global_step": 1}, path)
    return path


def test_checkpoint_lookup_last_and_best(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(CheckpointError, match="directory without checkpoints/last.ckpt"):
        run.checkpoint("last")
    with pytest.raises(CheckpointError, match="holds no checkpoints/ with a .ckpt file"):
        run.checkpoint("best")
    last = _checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert run.checkpoint("last") == last and run.checkpoint("best") == last  # best falls back to last
    best = _checkpoint(tmp_path / "checkpoints" / "best-epoch=1-step=8.ckpt")
    assert run.checkpoint("best") == best and run.checkpoint("last") == last
    named = _checkpoint(tmp_path / "elsewhere.ckpt")
    run.write_summary(RunSummary(best_checkpoint=str(named)))
    assert run.checkpoint("best") == named  # the summary's best first
    run.write_summary(RunSummary(best_checkpoint=str(tmp_path / "moved" / "best.ckpt")))
    assert run.checkpoint("best") == best  # a run dir that moved: its own best*.ckpt
    assert RunDir(tmp_path / "checkpoints").checkpoint("last") == last  # the checkpoints folder itself
    with pytest.raises(ValueError, match="choose one of last, best"):
        run.checkpoint("worst")


def test_resume_and_loading_back_find_checkpoints_through_the_run_dir(tmp_path):
    last = _checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    best = _checkpoint(tmp_path / "checkpoints" / "best-epoch=0-step=4.ckpt")
    assert find_checkpoint(str(tmp_path), tmp_path / "other") == last
    assert find_checkpoint("last", tmp_path) == last
    assert run_checkpoint(tmp_path) == best and run_checkpoint(tmp_path, "last") == last
    assert run_checkpoint(best) == best
    with pytest.raises(CheckpointError, match="neither a run dir nor a checkpoint file"):
        run_checkpoint(tmp_path / "nothing")


def test_the_docs_page_holds_the_generated_field_table():
    text = DOC.read_text()
    for f in dataclasses.fields(RunSummary):
        assert f"| `{f.name}` |" in text, f"docs/run-dir.md does not document {f.name}"
        assert f.metadata.get("doc"), f"RunSummary.{f.name} has no documentation"
    assert summary_table() in text, (
        "docs/run-dir.md's table is out of date; regenerate it with "
        "python -c 'from seqframe.harness.rundir import summary_table; print(summary_table())'"
    )
