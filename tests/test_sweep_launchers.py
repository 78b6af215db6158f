"""Parallel sweeps (joblib) and Optuna searches: real multiruns in subprocesses, tiny sizes;
the sweeper's handling of failed trials and search spaces in-process."""

import math
import subprocess
from types import SimpleNamespace

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from runs import BIN, run, summary, tiny

from hydra_plugins.seqframe_optuna_sweeper.optuna_sweeper import OptunaSweeper, distribution
from seqframe.errors import SeqframeError
from seqframe.harness import optional_dependencies as extras

TRAIN = str(BIN / "seqframe-train")


def test_compare_cells_runs_in_parallel_joblib_workers_records_a_failure_and_resumes(tmp_path):
    """experiment=compare_cells (joblib, 2 workers x 1 thread) with tiny overrides: the failing job is
    recorded and the sweep exits 1; resume=true then re-runs only that job, in the same job dirs."""
    sweep = tmp_path / "sweep"
    base = ["-m", "experiment=compare_cells", "cell=gru", "seed=0", *tiny(), "trainer.val_check_interval=1"]
    base += [f"hydra.sweep.dir={sweep}"]
    first = subprocess.run([TRAIN, *base, "model.hidden_size=8,-1"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=400)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-3000:]
    assert "1 finished, 1 failed" in first.stdout
    jobs = [summary(sweep / str(n)) for n in range(2)]
    assert [j["status"] for j in jobs] == ["finished", "failed"] and "hidden_size" in jobs[1]["error"]
    hydra_cfg = OmegaConf.load(sweep / "0" / ".hydra" / "hydra.yaml")
    assert hydra_cfg.hydra.launcher._target_.endswith("JoblibLauncher") and hydra_cfg.hydra.launcher.n_jobs == 2
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").threads == 1
    header = (sweep / "0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"time/elapsed_s", "time/cpu_s", "val/mse"} <= set(header)  # the report's clocks at each validation

    finished = (sweep / "0" / "summary.json").stat().st_mtime_ns
    second = run([*base, "model.hidden_size=8,12", "resume=true"], cwd=tmp_path)
    assert second.stdout.count("already finished (resume=true): skipped") == 1
    assert (sweep / "0" / "summary.json").stat().st_mtime_ns == finished
    rerun = summary(sweep / "1")
    assert rerun["status"] == "finished" and rerun["parameters"] > jobs[0]["parameters"]  # hidden 12 > 8
    assert "2 finished, 0 failed" in second.stdout


def test_optuna_study_on_sqlite_continues_when_the_command_is_run_again(tmp_path):
    command = [
        "-m", "hparams_search=adding_optuna", "hydra.sweeper.n_trials=2", *tiny(),
        "model.hidden_size=choice(8,16)", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "data.batch_size=32", "model.optimizer.lr=tag(log, interval(1e-3, 1e-2))",
    ]
    first = run(command, cwd=tmp_path)
    assert "0 earlier trials; 2 more" in first.stdout
    second = run(command, cwd=tmp_path)
    assert "2 earlier trials; 2 more" in second.stdout
    study = optuna.load_study(study_name="adding", storage=f"sqlite:///{tmp_path / 'seqframe_optuna.db'}")
    trials = study.trials
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial in trials:  # job dir = trial number: the second invocation overwrote nothing
        job = summary(tmp_path / "sweep" / str(trial.number))
        assert math.isclose(trial.value, job["best_val"], rel_tol=1e-6)
        assert trial.params["model.hidden_size"] in (8, 16) and 1e-3 <= trial.params["model.optimizer.lr"] <= 1e-2
        assert "data.batch_size" not in trial.params  # fixed on the command line: out of the search space
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.trials == 4 and results.best_value == min(t.value for t in trials)


class _Launcher:
    """Stands in for a Hydra launcher: job N's result is ``outcomes[N]`` (jobs are numbered by trial)."""

    def __init__(self, outcomes):
        self.outcomes, self.batches = list(outcomes), []

    def launch(self, batch, initial_job_idx):
        self.batches.append((initial_job_idx, [list(b) for b in batch]))
        results = []
        for index, _ in enumerate(batch, start=initial_job_idx):
            outcome = self.outcomes[index]
            if isinstance(outcome, Exception):
                results.append(JobReturn(status=JobStatus.FAILED, _return_value=outcome))
            else:
                results.append(JobReturn(status=JobStatus.COMPLETED, _return_value=outcome))
        return results


def test_failed_trials_are_told_as_failed_and_the_study_goes_on(tmp_path):
    sweeper = OptunaSweeper(n_trials=5, n_jobs=2, sampler="random", seed=0, storage=f"sqlite:///{tmp_path}/s.db",
                            study_name="s", params=OmegaConf.create({"model.hidden_size": "choice(8, 16)"}))
    sweeper.launcher = _Launcher([0.5, None, RuntimeError("out of memory"), float("nan"), 0.25])
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    sweeper.hydra_context = SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=lambda **_: None))
    sweeper.sweep(["seed=3"])
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "FAIL", "COMPLETE"] and study.best_value == 0.25
    assert sorted(idx for idx, _ in sweeper.launcher.batches) == [0, 1, 2, 3, 4]  # one job per trial, by number
    assert all(len(batch) == 1 for _, batch in sweeper.launcher.batches)
    assert all("seed=3" in job for _, batch in sweeper.launcher.batches for job in batch)


def test_a_search_space_that_contradicts_the_stored_study_is_one_clear_error(tmp_path):
    """The same study (name + storage) asked with another choice list: say how to keep both, not a traceback."""
    storage = f"sqlite:///{tmp_path}/s.db"

    def sweeper(choices: str) -> OptunaSweeper:
        made = OptunaSweeper(n_trials=1, sampler="random", seed=0, storage=storage, study_name="s",
                             params=OmegaConf.create({"model.hidden_size": choices}))
        made.launcher = _Launcher([0.5])
        made.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
        made.hydra_context = SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=lambda **_: None))
        return made

    sweeper("choice(32, 64, 128)").sweep([])
    with pytest.raises(SeqframeError, match=r"'s' .* another search space.*hydra.sweeper.study_name="):
        sweeper("choice(32, 64)").sweep([])


def _parsed(line):
    return OverridesParser.create().parse_overrides([line])[0]


def test_search_space_syntax_becomes_optuna_distributions():
    d = optuna.distributions
    assert distribution(_parsed("a=tag(log, interval(1e-4, 1e-2))")) == d.FloatDistribution(1e-4, 1e-2, log=True)
    assert distribution(_parsed("a=interval(16, 256)")) == d.FloatDistribution(16, 256)
    assert distribution(_parsed("a=tag(int, interval(16, 256))")) == d.IntDistribution(16, 256)
    assert distribution(_parsed("a=range(1, 4)")) == d.IntDistribution(1, 3)
    assert distribution(_parsed("a=choice(32, 64)")) == d.CategoricalDistribution([32, 64])
    assert distribution(_parsed("a=rnn,gru")) == d.CategoricalDistribution(["rnn", "gru"])
    # SeqframeError, not SearchSpaceError: Hydra's plugin scan re-executes the plugin module, rebinding its classes
    with pytest.raises(SeqframeError, match="not a search space"):
        distribution(_parsed("a=5"))  # a fixed value: no space to search


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setitem(extras.NEEDS, "hparams_search=", ("seqframe_no_such_module.x", "optuna"))
    with pytest.raises(SeqframeError, match=r"hparams_search=adding_optuna needs the optuna extra: pip install"):
        extras.check_extras(["hparams_search=adding_optuna"])
    extras.check_extras(["cell=gru", "experiment=compare_cells"])  # installed here: no complaint


def test_tensorboard_logging_without_tensorboard_names_the_extra(monkeypatch):
    """logger=many and logger=tensorboard need the tensorboard package (set-up does not install it)."""
    monkeypatch.setattr(extras, "_installed", lambda module: module != "tensorboard")
    for choice in ("logger=many", "logger=tensorboard"):
        expected = rf"{choice} needs the tensorboard extra: pip install 'seqframe\[tensorboard\]'"
        with pytest.raises(SeqframeError, match=expected):
            extras.check_extras([choice])
    extras.check_extras(["logger=csv"])
