"""A first run reads clean: the config as a tree, no warning or tip that does not apply, one torch thread."""

from __future__ import annotations

import io
import os
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
from runs import run, summary, tiny

from seqframe.harness.console import config_tree, quiet_third_party
from seqframe.harness.threads import AUTO, AUTO_THREADS, set_threads, thread_count


def test_a_fresh_run_prints_the_config_tree_and_no_warning(tmp_path):
    # as a newcomer runs it (progress bar on, a fresh dir); batches of 16 so that the epoch has more
    # steps than log_every_n_steps (else Lightning rightly warns that nothing is logged per step)
    args = [a for a in tiny() if "progress_bar" not in a] + ["data.batch_size=16", "trainer.log_every_n_steps=4"]
    result = run(args, tmp_path)
    printed = result.stdout + result.stderr
    # a warning through Python's warnings module prints "<file>.py:<line>: ..." (Lightning's format too)
    noise = [line for line in printed.splitlines() if re.search(r"\.py:\d+: |warn|tip:|litlogger|deprecat", line, re.I)]
    assert not noise, "a first run printed:\n" + "\n".join(noise)
    assert "├── cell: gru" in result.stdout and "├── data: adding" in result.stdout
    assert "threads=auto" in result.stdout and "<outputs> = " in result.stdout
    [run_dir] = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["threads"] == AUTO_THREADS == 1


def test_config_tree_is_short_and_shows_what_was_chosen():
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from seqframe.harness.train import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/runs/1", "model.hidden_size=8"])
    console = Console(file=io.StringIO(), width=100)
    console.print(config_tree(cfg, {"cell": "gru", "hardware": "cpu", "experiment": None, "hydra/launcher": "basic"}))
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "config hardware=cpu" and lines[-1] == "└── <outputs> = /runs/1"
    text = "\n".join(lines)
    assert len(lines) < 30 and "├── cell: gru  name=gru backend=auto" in text  # the file chosen, settings beside
    assert "hidden_size=8" in text and "dirpath=<outputs>/checkpoints" in text and "(Adam)  lr=" in text
    assert "scheduler" not in text and "ckpt_path" not in text  # nulls left out (.hydra/config.yaml has them)


def test_threads_setting(monkeypatch):
    from lightning_fabric.utilities.distributed import _set_num_threads_if_needed  # what DDP launchers call

    assert (thread_count(AUTO), thread_count(3), thread_count(None)) == (AUTO_THREADS, 3, None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored after the test
    before = torch.get_num_threads()
    try:
        assert set_threads(2) == torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
        assert set_threads(None) == 2  # null: left as it is (torch's default in a fresh process)
        assert set_threads(AUTO) == torch.get_num_threads() == AUTO_THREADS
        _set_num_threads_if_needed(num_processes=1)  # a DDP launch keeps the count instead of 1 per core
        assert torch.get_num_threads() == AUTO_THREADS
    finally:
        torch.set_num_threads(before)


def _caught(emit, run_dir) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party(run_dir)  # its filters go in front of "always"; catch_warnings drops them after
        emit()
    return [str(w.message) for w in caught]


def test_the_csv_logger_warns_only_when_it_would_delete_metrics(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    (tmp_path / ".hydra").mkdir()  # what Hydra writes into every run dir before the logger starts
    assert _caught(lambda: CSVLogger(tmp_path, name="", version="").experiment, tmp_path) == []
    (tmp_path / "metrics.csv").write_text("step\n0\n")  # a previous run's log: the warning is true here
    messages = _caught(lambda: CSVLogger(tmp_path, name="", version="").experiment, tmp_path)
    assert any("exists and is not empty" in m for m in messages)


def test_lightnings_pytree_deprecation_is_filtered(tmp_path):
    from pytorch_lightning.utilities import CombinedLoader

    assert _caught(lambda: CombinedLoader([torch.zeros(2)]), tmp_path) == []


def test_the_few_workers_warning_is_filtered_and_no_other(tmp_path, monkeypatch):
    from pytorch_lightning.trainer.connectors.data_connector import _worker_check  # the check itself
    from torch.utils.data import DataLoader

    # as on a machine with 8 cores (on 2 cores Lightning's check stays silent)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    trainer = SimpleNamespace(num_devices=1, reload_dataloaders_every_n_epochs=0)
    loader = DataLoader(range(4))
    assert _caught(lambda: _worker_check(trainer, loader, "train_dataloader"), tmp_path) == []
    with pytest.warns(UserWarning, match="does not have many workers"):
        _worker_check(trainer, loader, "train_dataloader")  # without the filter: the warning it targets
