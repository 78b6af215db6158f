"""Sweeps that lose nothing: a failed job is recorded and the sweep goes on; the end
of a multirun prints one line per job and exits non-zero if any failed.

``SweepReport`` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``);
:func:`read_summaries` is what reports and resumes read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seqframe.harness.rundir import RunDir, read_summary


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
    if summary.get("status") == "finished":
        return f"{what}: finished, best {summary.get('monitor')} {summary.get('best_val')}"
    return f"{what}: {summary.get('status')} ({summary.get('error') or 'no error recorded'})"


class SweepReport(Callback):
    """At the end of a multirun: a one-screen report, and exit status 1 if any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from seqframe.harness.distributed import is_rank_zero

        if not is_rank_zero():  # under torchrun every rank runs the sweep; the others may not have written yet
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        summaries = read_summaries(sweep_dir) if sweep_dir.is_dir() else []
        failed = [s for s in summaries if s.get("status") != "finished"]
        print(f"\nseqframe sweep {sweep_dir}: {len(summaries) - len(failed)} finished, {len(failed)} failed")
        for summary in summaries:
            print("  " + describe(summary))
        if failed:
            print(
                "seqframe: the failed jobs' errors and tracebacks are in their summary.json; rerun the same "
                "command with resume=true and the same hydra.sweep.dir to run only what did not finish",
                file=sys.stderr,
            )
            sys.exit(1)
