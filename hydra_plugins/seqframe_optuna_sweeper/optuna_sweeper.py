"""seqframe's Optuna sweeper for Hydra (``hydra/sweeper=optuna``, e.g. via ``hparams_search=adding_optuna``).

Why not hydra-optuna-sweeper: its releases hold optuna < 3 (whose SQLite storage
needs SQLAlchemy < 2 and alembic < 1.14), and a job that returns no value (a failed
seqframe job returns None) aborts its whole study. This sweeper uses a current
optuna's ask/tell API, one trial at a time per worker slot:

* ``n_jobs`` slots (with ``hydra/launcher=joblib``: in parallel), each asking its next
  trial as soon as its last one ends, so no slot waits for the slowest of a batch;
* a failed job is told as a FAIL and the study goes on; a job whose pruner stopped it
  (``pruner``; the job reports each validation to its trial) is told PRUNED;
* with an RDB ``storage`` (``sqlite:///optuna.db`` on one machine, ``postgresql://...``
  for many) the same command continues the same study, and any number of processes
  on any number of machines share it: trials are claimed under a lock held in the
  database itself (PostgreSQL advisory lock; a lock file beside an SQLite file), so
  ``max_trials`` is exact; each running trial sends heartbeats, and a trial whose
  worker died (``kill -9``, a lost node) is failed after ``grace_period`` and queued
  again (``max_retry``) for whichever worker asks next.

Job directories are numbered by trial number, so neither a continued study nor
another worker ever writes an earlier trial's run dir. optuna is imported only when
a sweep starts: Hydra imports every plugin module on every start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from seqframe.errors import SeqframeError
from seqframe.harness.sweep import make_pruner, record_own_jobs

SAMPLERS = ("tpe", "random")
RESULTS_FILE = "optimization_results.yaml"


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


def shown_url(storage: Optional[str]) -> Optional[str]:
    """The storage URL as files and logs show it: no password (give it with PGPASSWORD or ~/.pgpass),
    and an SQLite file as an absolute path, so that ``seqframe report`` finds it from anywhere."""
    if not storage:
        return storage
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=os.path.abspath(url.database))
    return url.set(password=None).render_as_string(hide_password=False)


def counted(trials: Sequence[Any]) -> int:
    """The trials a study-wide ``max_trials`` counts: all of them, less those that died with their
    worker and were queued again (their retry counts in their place)."""
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(t.number not in retried for t in trials)


class StudyLock:
    """Serialises claiming trials among every worker of a study, on any machine: a PostgreSQL
    advisory lock (released by the server if the worker dies), a lock file beside an SQLite
    file, and within one process a thread lock. Other databases: the thread lock only."""

    def __init__(self, storage: Optional[str], study_name: str) -> None:
        self._threads = threading.Lock()
        self._engine: Any = None
        self._file: Optional[Path] = None
        self.shared = storage is None  # an in-memory study: one process, the thread lock covers it
        if storage:
            import sqlalchemy
            from sqlalchemy.engine import make_url

            url = make_url(storage)
            if url.get_backend_name() == "postgresql":
                self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
                self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
            elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                self._file = Path(f"{url.database}.lock")
            self.shared = self._engine is not None or self._file is not None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._threads:
            if self._engine is not None:
                import sqlalchemy

                with self._engine.connect() as connection:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                    try:
                        yield
                    finally:
                        connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            elif self._file is not None:
                import fcntl

                self._file.parent.mkdir(parents=True, exist_ok=True)
                with self._file.open("a") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
            else:
                yield


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int, interval: Optional[int]) -> Iterator[None]:
    """Record the running trial's heartbeat every ``interval`` seconds while its job runs (the
    first one was recorded when it was claimed): if this process dies, the beats stop."""
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class OptunaSweeper(Sweeper):
    """Optuna's ask/tell, one trial per job: ``n_jobs`` slots each run trials back to back."""

    def __init__(
        self,
        direction: str = "minimize",
        study_name: Optional[str] = None,
        storage: Optional[str] = None,
        n_trials: Optional[int] = 20,
        max_trials: Optional[int] = None,
        n_jobs: int = 1,
        sampler: str = "tpe",
        seed: Optional[int] = None,
        pruner: str = "none",
        pruner_options: Optional[DictConfig] = None,
        heartbeat_interval: Optional[int] = None,
        grace_period: Optional[int] = None,
        max_retry: Optional[int] = 3,
        params: Optional[DictConfig] = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler={sampler}: choose one of {', '.join(SAMPLERS)}")
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: choose minimize or maximize")
        if n_trials is None and max_trials is None:
            raise ValueError("hydra.sweeper.n_trials=null needs hydra.sweeper.max_trials=N (the study's total)")
        make_pruner(pruner, pruner_options)  # a bad name or option: said now, not in the first job
        if pruner != "none" and not storage:
            raise ValueError(
                f"hydra.sweeper.pruner={pruner} needs hydra.sweeper.storage (e.g. sqlite:///optuna.db): each "
                "job reports its validations to the study from its own process"
            )
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.max_trials, self.n_jobs = n_trials, max_trials, max(1, n_jobs)
        self.sampler, self.seed, self.pruner = sampler, seed, pruner
        self.pruner_options = OmegaConf.to_container(pruner_options) if pruner_options else {}
        self.heartbeat_interval = int(heartbeat_interval) if storage and heartbeat_interval else None
        self.grace_period, self.max_retry = grace_period, max_retry
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._claimed: List[int] = []  # the trial numbers this process ran
        self._stop = threading.Event()
        self._heartbeats: Any = None  # the RDB storage, when heartbeats are on
        self._said_waiting = False

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

    def _storage(self) -> Any:
        """The study's storage: with heartbeats and a retry of dead workers' trials when configured."""
        import optuna

        if not self.storage or not self.heartbeat_interval:
            return self.storage
        if self._heartbeats is not None:
            return self._heartbeats
        retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        keyword = "heartbeat_stale_trial_callback" if retry_class else "failed_trial_callback"  # optuna < 4.9
        retry = (retry_class or optuna.storages.RetryFailedTrialCallback)(max_retry=self.max_retry)
        self._heartbeats = optuna.storages.RDBStorage(
            self.storage, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
            **{keyword: retry},
        )
        return self._heartbeats

    def _trial_id(self, trial: Any) -> int:
        """The storage's id of a trial (what heartbeats are recorded under)."""
        study_id = self._heartbeats.get_study_id_from_name(trial.study.study_name)
        return self._heartbeats.get_trial_id_from_study_id_trial_number(study_id, trial.number)

    def _study(self, lock: StudyLock) -> Any:
        import optuna

        if self.sampler == "random":
            sampler = optuna.samplers.RandomSampler(seed=self.seed)
        else:  # constant liar: parallel workers do not all ask for the same promising point
            sampler = optuna.samplers.TPESampler(seed=self.seed, constant_liar=True)
        with lock():  # the first of many workers creates the tables and the study; the others load it
            return optuna.create_study(
                study_name=self.study_name,
                storage=self._storage(),
                sampler=sampler,
                pruner=make_pruner(self.pruner, self.pruner_options),
                direction=self.direction,
                load_if_exists=True,
            )

    def _ask(self, study: Any, space: Dict[str, Any]) -> Any:
        """A new trial; a search space that contradicts the stored study's is a user error, said as one."""
        try:
            return study.ask(space)
        except ValueError as exc:  # optuna: a distribution differs from the one this study stored
            raise SearchSpaceError(
                f"study {study.study_name!r} in {shown_url(self.storage)} was run with another search space "
                f"({exc}); give this search its own hydra.sweeper.study_name=NAME (or storage), or delete the "
                "stored study"
            ) from None

    def _claim(self, study: Any, space: Dict[str, Any], lock: StudyLock, slot: str) -> Tuple[Any, bool]:
        """The next trial for ``slot`` (None when done) and whether to look again later: the study's
        budget is used up but a trial still runs elsewhere, whose worker may die and leave it to us."""
        import optuna
        from optuna.trial import TrialState

        with lock():
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL, and queued again
            if self._stop.is_set() or (self.n_trials is not None and len(self._claimed) >= self.n_trials):
                return None, False
            trials = study.get_trials(deepcopy=False)
            queued = any(t.state == TrialState.WAITING for t in trials)
            if self.max_trials is not None and not queued and counted(trials) >= self.max_trials:
                running = [t.number for t in trials if t.state == TrialState.RUNNING]
                others = sorted(set(running) - set(self._claimed))
                if others and self.heartbeat_interval and not self._said_waiting:
                    self._said_waiting = True
                    print(f"seqframe optuna: the study holds max_trials={self.max_trials}; waiting while trials "
                          f"{others} run elsewhere (if a worker died, its trial runs again here)")
                return None, bool(running) and self.heartbeat_interval is not None
            trial = self._ask(study, space)
            self._claimed.append(trial.number)
            trial.set_user_attr("worker", f"{self.worker}/{slot}" if self.n_jobs > 1 else self.worker)
            if self.heartbeat_interval:
                self._heartbeats.record_heartbeat(self._trial_id(trial))  # before the lock goes: never stale unseen
            return trial, False

    def _launch(self, study: Any, trials: Sequence[Any], fixed: List[str]) -> List[Any]:
        """Launch trials as jobs numbered by trial number (so one launch takes consecutive numbers;
        the slots launch one trial at a time) and tell the study how each ended."""
        assert [t.number for t in trials] == list(range(trials[0].number, trials[0].number + len(trials)))
        batch = [fixed + [f"{key}={value}" for key, value in trial.params.items()] for trial in trials]
        self.validate_batch_is_legal(batch)
        with contextlib.ExitStack() as beating:
            if self.heartbeat_interval:
                for trial in trials:
                    beating.enter_context(heartbeat(self._heartbeats, self._trial_id(trial), self.heartbeat_interval))
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
        for trial, result in zip(trials, results):
            self._tell(study, trial, result)
        return results

    @staticmethod
    def _stored(study: Any, trial: Any) -> Any:
        """The trial as the storage holds it now (its job, in another process, may have added to it;
        ``trial.user_attrs`` is a copy from when it was asked)."""
        return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)

    def _tell(self, study: Any, trial: Any, result: Any) -> None:
        """COMPLETE with the job's value, PRUNED if its pruner stopped it, FAIL if it failed."""
        from optuna.trial import TrialState

        try:
            value = objective(result.return_value)
        except Exception as exc:  # the job raised: a failed trial, not a failed study
            print(f"seqframe optuna: trial {trial.number} raised {exc!r}")
            value = None
        if value is not None and "pruned_at_step" in self._stored(study, trial).user_attrs:
            told = study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        elif value is None:
            told = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        else:
            told = study.tell(trial, value, skip_if_finished=True)
        if told.state == TrialState.FAIL and value is not None:
            print(f"seqframe optuna: trial {trial.number} had been failed by another worker (its heartbeats "
                  "stopped for longer than hydra.sweeper.grace_period); its result is not counted")

    def _slot(self, study: Any, space: Dict[str, Any], fixed: List[str], lock: StudyLock, slot: int) -> list:
        """One worker slot: claim, run, tell, until the budget is used up."""
        import time

        results = []
        while True:
            trial, look_again = self._claim(study, space, lock, str(slot))
            if trial is None:
                if not look_again:
                    return results
                time.sleep(min(self.heartbeat_interval or 1, 2))
                continue
            try:
                results += self._launch(study, [trial], fixed)
            except BaseException:
                self._stop.set()  # the other slots finish their trial and claim no more
                raise

    def sweep(self, arguments: List[str]) -> List[Any]:
        import optuna

        assert self.config is not None and self.launcher is not None
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        space, fixed = self._search_space(arguments)
        lock = StudyLock(self.storage, self.study_name or "seqframe")
        study = self._study(lock)
        slots = self.n_jobs
        if slots > 1 and type(self.launcher).__name__ == "BasicLauncher":
            print("seqframe optuna: the basic launcher runs jobs in this process, one at a time; "
                  "for parallel trials add hydra/launcher=joblib")
            slots = 1
        budget = f"{self.n_trials} more" if self.n_trials is not None else "trials"
        if self.max_trials is not None:
            budget += f" until the study holds {self.max_trials}"
            if self.storage and not lock.shared:
                print("seqframe optuna: only PostgreSQL and SQLite storages are locked while trials are claimed; "
                      "workers sharing another database may together run a few more than max_trials")
        print(f"seqframe optuna: study '{study.study_name}' ({shown_url(self.storage) or 'in memory'}), "
              f"{len(study.trials)} earlier trials; {budget}, {slots} at a time, worker {self.worker}")
        self._write_results(study)
        try:
            returns = self._run_slots(study, space, fixed, lock, slots)
        finally:
            self._stop.set()
            record_own_jobs(str(n) for n in self._claimed)
        self._write_results(study)
        return returns

    def _run_slots(self, study: Any, space: Dict[str, Any], fixed: List[str], lock: StudyLock, slots: int) -> list:
        """Every slot in its own thread (a launch blocks until its job ends), until the budget is used up."""
        with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="optuna-slot") as pool:
            futures = [pool.submit(self._slot, study, space, fixed, lock, slot) for slot in range(slots)]
            return [f.result() for f in futures]

    def _write_results(self, study: Any) -> None:
        """``optimization_results.yaml`` in the sweep dir: the study (what ``seqframe report`` reads)
        and, once a trial has finished, the best one (also printed)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        results: Dict[str, Any] = {"study": study.study_name, "storage": shown_url(self.storage),
                                   "direction": self.direction, "trials": len(trials), "complete": len(complete),
                                   "pruned": sum(t.state == TrialState.PRUNED for t in trials)}
        if complete:
            best = study.best_trial
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        partial = sweep_dir / f"{RESULTS_FILE}.{os.getpid()}.partial"  # workers write it in turn, each whole
        OmegaConf.save(OmegaConf.create(results), partial)
        os.replace(partial, sweep_dir / RESULTS_FILE)
        if self._claimed:
            if complete:
                print(f"seqframe optuna: best trial {best.number}: {best.value:.4g} with {best.params}")
            else:
                print(f"seqframe optuna: study '{study.study_name}': no trial has finished yet")
