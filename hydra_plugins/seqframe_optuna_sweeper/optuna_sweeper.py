"""seqframe's Optuna sweeper for Hydra (``hydra/sweeper=optuna``, e.g. via ``hparams_search=adding_optuna``).

Why not hydra-optuna-sweeper: its releases hold optuna < 3 (whose SQLite storage
needs SQLAlchemy < 2 and alembic < 1.14), and a job that returns no value (a failed
seqframe job returns None) aborts its whole study. This sweeper uses a current
optuna's ask/tell API: each batch of trials runs through the configured launcher
(basic or joblib), a failed job is told to the study as a FAIL and the study goes
on, and with an RDB ``storage`` (e.g. ``sqlite:///optuna.db``) the same command
continues the same study. Job directories are numbered by trial number, so a
continued study never overwrites an earlier trial's run dir.

optuna is imported only when a sweep starts: Hydra imports every plugin module on
every start-up.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from seqframe.errors import SeqframeError

SAMPLERS = ("tpe", "random")


class SearchSpaceError(SeqframeError, ValueError):
    """A ``hydra.sweeper.params`` entry this sweeper cannot turn into an optuna distribution."""


def distribution(override: Override) -> Any:
    """The optuna distribution of one search-space entry, in Hydra's override syntax:
    ``choice(32, 64)``, ``range(1, 4)``, ``interval(1e-4, 1e-2)``, ``tag(log, interval(...))``,
    ``tag(int, interval(16, 256))``; a plain comma list is a choice."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, ChoiceSweep) or (override.is_sweep_override() and isinstance(value, list)):
        return d.CategoricalDistribution(list(value.list if isinstance(value, ChoiceSweep) else value))
    if isinstance(value, RangeSweep):
        return d.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step or 1))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if "int" in value.tags:  # Hydra parses interval bounds as floats
            return d.IntDistribution(int(value.start), int(value.end), log=log)
        return d.FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(
        f"hydra.sweeper.params.{override.get_key_element()}: '{override.input_line}' is not a search space; "
        "use choice(...), range(...) or [tag(log, )]interval(low, high)"
    )


def objective(return_value: Any) -> Optional[float]:
    """The job's value for optuna, or None for a failed trial (no value, or not finite)."""
    try:
        value = float(return_value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class OptunaSweeper(Sweeper):
    """Ask ``n_jobs`` trials, launch them as one batch, tell their results; repeat to ``n_trials``."""

    def __init__(
        self,
        direction: str = "minimize",
        study_name: Optional[str] = None,
        storage: Optional[str] = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: str = "tpe",
        seed: Optional[int] = None,
        params: Optional[DictConfig] = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler={sampler}: choose one of {', '.join(SAMPLERS)}")
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: choose minimize or maximize")
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.sampler, self.seed = n_trials, max(1, n_jobs), sampler, seed
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _search_space(self, arguments: Sequence[str]) -> tuple:
        """Distributions from ``params`` and sweeps on the command line; fixed overrides pass through."""
        parser = OverridesParser.create()
        lines = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        space: Dict[str, Any] = {}
        fixed: Dict[str, str] = {}
        for override in parser.parse_overrides(lines):
            key = override.get_key_element()
            if override.is_sweep_override():
                space[key] = distribution(override)
                fixed.pop(key, None)
            else:
                fixed[key] = override.input_line  # a plain command-line value overrides a params entry
                space.pop(key, None)
        return space, list(fixed.values())

    def _study(self) -> Any:
        import optuna

        sampler = optuna.samplers.TPESampler(seed=self.seed) if self.sampler == "tpe" else None
        if self.sampler == "random":
            sampler = optuna.samplers.RandomSampler(seed=self.seed)
        return optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )

    def _ask(self, study: Any, space: Dict[str, Any]) -> Any:
        """A new trial; a search space that contradicts the stored study's is a user error, said as one."""
        try:
            return study.ask(space)
        except ValueError as exc:  # optuna: a distribution differs from the one this study stored
            raise SearchSpaceError(
                f"study {study.study_name!r} in {self.storage} was run with another search space ({exc}); "
                "give this search its own hydra.sweeper.study_name=NAME (or storage), or delete the stored study"
            ) from None

    def sweep(self, arguments: List[str]) -> List[Any]:
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        space, fixed = self._search_space(arguments)
        study = self._study()
        print(f"seqframe optuna: study '{study.study_name}' ({self.storage or 'in memory'}), "
              f"{len(study.trials)} earlier trials; {self.n_trials} more, {self.n_jobs} at a time")
        returns: List[Any] = []
        remaining = self.n_trials
        while remaining > 0:
            trials = [self._ask(study, space) for _ in range(min(self.n_jobs, remaining))]
            batch = [fixed + [f"{key}={value}" for key, value in trial.params.items()] for trial in trials]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                try:
                    value = objective(result.return_value)
                except Exception as exc:  # the job raised: a failed trial, not a failed study
                    print(f"seqframe optuna: trial {trial.number} raised {exc!r}")
                    value = None
                if value is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
            returns.append(results)
            remaining -= len(trials)
        self._write_results(study)
        return returns

    def _write_results(self, study: Any) -> None:
        """Print the best trial and write it to ``optimization_results.yaml`` in the sweep dir."""
        from optuna.trial import TrialState

        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not complete:
            print(f"seqframe optuna: study '{study.study_name}': no trial has finished yet")
            return
        best = study.best_trial
        results = {"study": study.study_name, "storage": self.storage, "best_trial": best.number,
                   "best_value": best.value, "best_params": best.params, "trials": len(study.trials),
                   "complete": len(complete)}
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        print(f"seqframe optuna: best trial {best.number}: {best.value:.4g} with {best.params}")
