"""``seqframe-train`` (and ``seqframe train``): the Hydra app around :func:`seqframe.harness.train.train`.

Before Hydra runs, the command line is checked (cells registered as
``cell=`` choices, options and keys validated); each job then trains,
and a failure is a one-line message (a sweep records it and goes on).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig

from seqframe.harness.console import print_config
from seqframe.harness.rundir import RunDir, RunSummary
from seqframe.harness.train import config_dir, group_choice, train


def _report(summary: Dict[str, Any]) -> None:
    test = summary.get("test") or {}
    baseline = summary.get("baseline") or {}
    shown = [
        f"{k.split('/', 1)[-1]} {v:.4g} (baseline {baseline[k.split('/', 1)[-1]]:.4g})"
        for k, v in test.items()
        if k.split("/", 1)[-1] in baseline and v is not None
    ]
    print(f"\nseqframe: {summary['cell']} on {summary['data']}: test " + (", ".join(shown) or str(test)))
    print(f"seqframe: outputs in {summary['output_dir']} (summary.json, metrics.csv, checkpoints/)")


USER_ERRORS = (ValueError, FileNotFoundError)  # what a bad config or input raises; others keep their traceback


def _user_error(exc: BaseException) -> Optional[BaseException]:
    """The user-facing cause of a failure (unwrapping Hydra's instantiate errors), or None."""
    from hydra.errors import InstantiationException

    from seqframe.errors import SeqframeError

    if isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc if isinstance(exc, (SeqframeError, *USER_ERRORS)) else None


def _hydra_task(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from seqframe.harness.distributed import check_launch, is_rank_zero

    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    sweep_plugins = [hydra_config[group].get("_target_", "") for group in ("sweeper", "launcher")]
    if multirun:  # `-m cell=janet,gru cell.beta=2`: gru's jobs drop beta, saying so
        from seqframe.harness.cell_configs import drop_in_sweep_job

        drop_in_sweep_job(cfg)
    run_dir = RunDir(Path(cfg.paths.output_dir))
    previous = run_dir.read_summary() if cfg.get("resume") else None
    if previous is not None and previous.status == "finished":
        print(f"seqframe: {cfg.paths.output_dir} already finished (resume=true): skipped")
        return previous.best_val
    if is_rank_zero():
        print_config(cfg)
    try:
        check_launch(cfg.trainer, multirun, sweep_plugins=sweep_plugins)
        summary = train(cfg)
    except Exception as exc:
        cause = _user_error(exc)
        if multirun:  # recorded in the job's summary.json; the sweep goes on (SweepReport sums up)
            if run_dir.read_summary() is None:  # refused before training started
                run_dir.write_summary(
                    RunSummary(
                        status="failed",
                        cell=cfg.cell.get("name"),
                        data=group_choice("data", ""),
                        output_dir=str(run_dir.root),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
            print(f"\nseqframe-train: job failed: {cause or exc!r}", file=sys.stderr)
            return None
        if cause is None:
            raise
        print(f"\nseqframe-train: error: {cause}", file=sys.stderr)
        if run_dir.newest_summary_file().exists():  # not when refused before training
            print(f"(the traceback is in {run_dir.newest_summary_file()})", file=sys.stderr)
        sys.exit(2)
    if summary.get("status") == "stopped":  # SIGTERM: the whole process stops (a sweep too), cleanly
        if is_rank_zero():
            print(f"\nseqframe: {summary['error']}")
        sys.exit(0)
    if is_rank_zero() and summary.get("output_dir") and RunDir(summary["output_dir"]).summary_file.exists():
        _report(summary)
    return summary.get("best_val")


def main() -> None:
    """Console script ``seqframe-train``: Hydra composes the config from ``conf/`` and the command line.

    Before Hydra runs, every installed cell is registered as a ``cell=`` choice and the
    command line is checked (parsed and composed once; a single run's whole config), so
    that a refused config exits 2 with one line and leaves no run directory behind.
    """
    import hydra

    from seqframe.errors import SeqframeError
    from seqframe.harness.cell_configs import register_cell_configs
    from seqframe.harness.command_line import check_command_line
    from seqframe.harness.distributed import check_run_dir_is_pinned
    from seqframe.harness.optional_dependencies import expose_checkout_hydra_plugins

    conf = config_dir()
    try:
        check_run_dir_is_pinned(sys.argv[1:])
        expose_checkout_hydra_plugins()
        register_cell_configs(conf)
        sys.argv[1:] = check_command_line(sys.argv[1:], conf)
    except SeqframeError as exc:
        print(f"seqframe-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    hydra.main(version_base="1.3", config_path=str(conf), config_name="config")(_hydra_task)()


if __name__ == "__main__":
    main()
