"""Optuna searches beyond one batch and one machine, with real components really started: slots that
never wait for each other (Hydra's joblib launcher), three `seqframe-train` workers sharing one study
on a real PostgreSQL server while one of them is killed with SIGKILL, pruning of hopeless trials,
and `seqframe report` on the study."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from postgres import postgres_server, server_binaries
from runs import BIN, run, summary, tiny

from hydra_plugins.seqframe_optuna_sweeper.optuna_sweeper import counted
from seqframe.harness.train import config_dir
from seqframe.tools.report import trial_rows

APPS = Path(__file__).parent / "apps"
PG_BINARIES, NO_PG = server_binaries()
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture
def postgres():
    """A real PostgreSQL server in a temp dir on a free port, stopped after the test."""
    if PG_BINARIES is None:
        pytest.skip(NO_PG)
    with postgres_server(PG_BINARIES) as url:
        yield url


def start(args, cwd: Path, log: str) -> subprocess.Popen:
    """A `seqframe-train` worker in its own process group (kill -9 takes all of it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    with open(cwd / log, "w") as out:
        return subprocess.Popen([str(BIN / "seqframe-train"), *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def report(sweep: Path, cwd: Path) -> str:
    result = subprocess.run([str(BIN / "seqframe"), "report", str(sweep)], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_slow_trial_does_not_hold_up_the_other_slot(tmp_path):
    """2 slots over joblib, trial 0 sleeps 4 s and the others 0.2 s: the other slot runs trial after
    trial meanwhile (a batch sweeper would have waited for trial 0 after one)."""
    storage = f"sqlite:///{tmp_path / 'sleepy.db'}"
    command = [sys.executable, str(APPS / "sleepy_trials.py"), "-m", f"hydra.searchpath=[file://{config_dir()}]",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.sweeper.storage={storage}",
               "hydra.sweeper.study_name=sleepy", "hydra.sweeper.n_trials=8"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    study = optuna.load_study(study_name="sleepy", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 8  # exactly n_trials
    ran = {}
    for trial in study.trials:
        pid, started, ended = (tmp_path / "sweep" / str(trial.number) / "ran.txt").read_text().split()
        ran[trial.number] = (pid, float(started), float(ended))
    slow_pid, slow_start, slow_end = ran[0]
    meanwhile = [n for n, (pid, s, e) in ran.items() if n and s >= slow_start and e <= slow_end]
    assert len(meanwhile) >= 4, ran
    assert {ran[n][0] for n in meanwhile} != {slow_pid}  # in the other joblib worker process
    assert {t.user_attrs["worker"].rsplit("/", 1)[1] for t in study.trials} == {"0", "1"}


def test_three_workers_share_one_postgres_study_and_one_is_killed_mid_trial(postgres, tmp_path):
    """3 `seqframe-train -m` processes, one study of 9 trials on PostgreSQL, one worker killed with
    SIGKILL mid-trial: its trial ends FAIL and is run again by another worker; the study ends with
    exactly 9 complete trials plus the failed one; every trial has its own run dir."""
    sweep = tmp_path / "sweep"
    args = [
        "-m", "hparams_search=adding_optuna", f"hydra.sweeper.storage={postgres}", "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=null", "hydra.sweeper.max_trials=9", "hydra.sweeper.sampler=random",
        "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4", f"hydra.sweep.dir={sweep}",
        "model.hidden_size=choice(8,16)", "data.batch_size=choice(32,64)", *tiny(epochs=2), "test=false",
    ]
    workers = [start(args, tmp_path, f"worker{i}.log") for i in range(3)]
    victim = workers[0]
    deadline = time.monotonic() + 300
    killed = None
    try:
        while killed is None:  # the victim's first trial: claimed (RUNNING) and its job begun
            assert time.monotonic() < deadline and victim.poll() is None, (tmp_path / "worker0.log").read_text()
            time.sleep(0.1)
            try:
                trials = optuna.load_study(study_name="shared", storage=postgres).trials
            except KeyError:  # no study yet
                continue
            for trial in trials:
                mine = trial.user_attrs.get("worker", "").endswith(f":{victim.pid}")
                begun = (sweep / str(trial.number) / ".hydra").is_dir()
                if mine and begun and trial.state == optuna.trial.TrialState.RUNNING:
                    time.sleep(0.5)
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed = trial.number
                    break
        victim.wait(60)
        for i, worker in enumerate(workers[1:], start=1):
            assert worker.wait(400) == 0, (tmp_path / f"worker{i}.log").read_text()[-4000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)

    study = optuna.load_study(study_name="shared", storage=postgres)
    trials = study.trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [killed]
    assert sum(t.state in DONE for t in trials) == 9 and len(trials) == 10 and counted(trials) == 9
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed)
    assert retry.state in DONE and retry.params == failed[0].params
    assert not retry.user_attrs["worker"].endswith(f":{victim.pid}")
    assert len({t.user_attrs["worker"] for t in trials}) == 3  # all three took part
    job_dirs = sorted(int(p.name) for p in sweep.iterdir() if p.is_dir())
    assert job_dirs == [t.number for t in trials]  # one run dir per trial: none written twice
    assert not (sweep / str(killed) / "summary.json").exists()  # killed mid-trial: no summary
    for trial in trials:
        if trial.state in DONE:
            job = summary(sweep / str(trial.number))  # intact JSON
            assert job["status"] == "finished" and job["best_val"] == pytest.approx(trial.value, rel=1e-6)
            overrides = OmegaConf.load(sweep / str(trial.number) / ".hydra" / "overrides.yaml")
            assert {o for o in overrides if o.startswith(tuple(trial.params))} == {
                f"{k}={v}" for k, v in trial.params.items()}  # this trial's own parameters, nobody else's
            assert OmegaConf.load(sweep / str(trial.number) / ".hydra" / "hydra.yaml").hydra.job.num == trial.number

    print("\ntrial table (3 workers, PostgreSQL, worker pid", victim.pid, "killed):")
    for row in trial_rows(study):
        retry_of = f"retry of {row['retry_of']}" if row["retry_of"] is not None else ""
        print(f"  {row['trial']:>2} {row['state']:<8} {row['worker']:<28} {row['wall_s']:6.1f} s {retry_of}")

    text = report(sweep, tmp_path)
    assert "## Optuna study `shared`" in text and "9 complete, 1 fail" in text
    assert f"Best trial {study.best_trial.number}: {study.best_value:.4g}" in text
    assert "### Parameter importances" in text
    for png in ("optuna_history.png", "optuna_importances.png"):
        assert (sweep / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in text
    studies = json.loads((sweep / "report.json").read_text())["studies"]
    assert len(studies[0]["trials"]) == 10 and studies[0]["trials"][retry.number]["retry_of"] == killed
    assert set(studies[0]["importances"]) == {"model.optimizer.lr", "model.hidden_size", "data.batch_size"}
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number and "@" in results["storage"]


def test_hopeless_trials_are_pruned_early_and_shown_as_pruned(tmp_path):
    """Trials alternate between a learning rate that learns and lr=0 (hopeless), in that order (queued
    in the study first); a median pruner stops each hopeless one at its first validation."""
    storage = f"sqlite:///{tmp_path / 'prune.db'}"
    queued = optuna.create_study(study_name="prune", storage=storage, direction="minimize")
    learning_rates = (0.01, 0.0, 0.01, 0.0)
    for lr in learning_rates:
        queued.enqueue_trial({"model.optimizer.lr": lr})
    sweep = tmp_path / "sweep"
    run([
        "-m", "hparams_search=adding_optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=prune",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_options={n_startup_trials:1}",
        "model.optimizer.lr=choice(0.0,0.01)", "model.hidden_size=16", "data.batch_size=32", *tiny(epochs=4),
        "test=false", f"hydra.sweep.dir={sweep}",
    ], tmp_path)
    study = optuna.load_study(study_name="prune", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    for trial, lr in zip(study.trials, learning_rates):
        job = summary(sweep / str(trial.number))
        assert trial.params["model.optimizer.lr"] == lr
        if lr:
            assert job["status"] == "finished" and job["steps"] == 16  # 4 epochs of 4 steps
        else:  # stopped after its first validation: one epoch; its checkpoints kept
            assert job["status"] == "pruned" and job["steps"] == 4 and trial.user_attrs["pruned_at_step"] == 4
            assert trial.intermediate_values == {4: pytest.approx(job["best_val"])}
            assert (sweep / str(trial.number) / "checkpoints" / "last.ckpt").is_file()

    text = report(sweep, tmp_path)
    with open(sweep / "report.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["finished", "pruned", "finished", "pruned"]
    assert "2 complete, 2 pruned" in text and text.count("| PRUNED |") == 2
