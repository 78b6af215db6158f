"""Sweeps that lose nothing: a failed job is recorded and the sweep goes on; the end
of a multirun prints one line per job and exits non-zero if any failed.

``SweepReport`` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``);
:func:`read_summaries` is what reports and resumes read. The Optuna sweeper
(``hydra_plugins/seqframe_optuna_sweeper``) and the job it launches meet here: the
pruner both build (:func:`make_pruner`) and the job's own trial (:func:`job_trial`),
which a training job reports its validations to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seqframe.errors import SeqframeError
from seqframe.harness.rundir import DONE, RunDir, read_summary

SWEEPER = "seqframe_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # the end of its ``_target_``
PRUNERS = ("none", "median", "hyperband")
_own_jobs: Optional[Set[str]] = None  # the job dirs this process ran, when the sweep is shared with others


def make_pruner(name: str, options: Optional[Dict[str, Any]] = None) -> Any:
    """Optuna's pruner for ``hydra.sweeper.pruner`` (with ``hydra.sweeper.pruner_options`` as its
    arguments). The sweeper and every job build it the same way: the job's trial asks it."""
    import optuna

    if name not in PRUNERS:
        raise SeqframeError(f"hydra.sweeper.pruner={name}: choose one of {', '.join(PRUNERS)}")
    kinds = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
             "hyperband": optuna.pruners.HyperbandPruner}
    try:
        return kinds[name](**dict(options or {}))
    except TypeError as exc:
        raise SeqframeError(f"hydra.sweeper.pruner_options for pruner={name}: {exc}") from None


def job_trial() -> Optional[Any]:
    """The Optuna trial this Hydra job runs, when seqframe's Optuna sweeper launched it with a pruner;
    else None. The trial number is the job number (the sweeper launches each trial as its own job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith(SWEEPER) or sweeper.get("pruner", "none") == "none":
        return None
    import optuna

    options = sweeper.get("pruner_options")
    pruner = make_pruner(sweeper.pruner, dict(options) if options else None)
    storage = optuna.storages.get_storage(sweeper.storage)  # one connection pool for both look-ups
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, int(hydra.job.num)))


def record_own_jobs(job_dirs: Iterable[str]) -> None:
    """Called by a sweeper whose study other processes share: the end-of-sweep report then shows only
    this process's jobs (the others' may still be running, and are theirs to report)."""
    global _own_jobs
    _own_jobs = set(job_dirs)


def read_summaries(sweep_dir: Path) -> List[Dict[str, Any]]:
    """One entry per job directory directly below ``sweep_dir``, by job number; a job
    without a readable summary.json (killed, or still running) has status ``missing``."""
    jobs = sorted((RunDir(p) for p in sweep_dir.iterdir() if RunDir(p).hydra_dir.is_dir()), key=_job_number)
    return [{"job": job.root.name, **(read_summary(job.root) or {"status": "missing"})} for job in jobs]


def _job_number(job: RunDir) -> tuple:
    """Job 2 before job 10."""
    return len(job.root.name), job.root.name


def describe(summary: Dict[str, Any]) -> str:
    """One line per job: what ran and how it ended."""
    what = f"job {summary['job']}: {summary.get('cell')} on {summary.get('data')}"
    if summary.get("status") in DONE:
        return f"{what}: {summary['status']}, best {summary.get('monitor')} {summary.get('best_val')}"
    return f"{what}: {summary.get('status')} ({summary.get('error') or 'no error recorded'})"


class SweepReport(Callback):
    """At the end of a multirun: a one-screen report, and exit status 1 if any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from seqframe.harness.distributed import is_rank_zero

        if not is_rank_zero():  # under torchrun every rank runs the sweep; the others may not have written yet
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        summaries = read_summaries(sweep_dir) if sweep_dir.is_dir() else []
        if _own_jobs is not None:
            summaries = [s for s in summaries if s["job"] in _own_jobs]
        failed = [s for s in summaries if s.get("status") not in DONE]
        pruned = sum(s.get("status") == "pruned" for s in summaries)
        done = f"{len(summaries) - len(failed) - pruned} finished" + (f", {pruned} pruned" if pruned else "")
        print(f"\nseqframe sweep {sweep_dir}: {done}, {len(failed)} failed")
        for summary in summaries:
            print("  " + describe(summary))
        if failed:
            print(
                "seqframe: the failed jobs' errors and tracebacks are in their summary.json; rerun the same "
                "command with resume=true and the same hydra.sweep.dir to run only what did not finish",
                file=sys.stderr,
            )
            sys.exit(1)
