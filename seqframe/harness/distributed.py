"""Which distributed launches are safe with Hydra, decided before anything trains.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running this command line
again. In a Hydra multirun that child re-runs the whole sweep: it joins the
wrong job (or, with a sweeper, trains other hyper-parameters) and the sweep
still exits 0. Strategies that fork or spawn their ranks from the running
process (``ddp_fork``, ``ddp_spawn``), and ranks started by an outside
launcher (torchrun, SLURM), do not have that problem.

Outside launchers bring their own rules, checked here too: under torchrun
every rank runs the sweep itself (only an ordered sweep keeps them in the same
jobs, in a pinned sweep dir); under submitit every rank must be one of the
job's tasks (``hardware=slurm``, see :mod:`seqframe.harness.submitit_env`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from seqframe.errors import SeqframeError

RELAUNCHING_STRATEGIES = {"ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true"}
EXTERNAL_LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "SLURM_STEP_NUM_TASKS")
ORDERED_SWEEP_PLUGINS = (
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
)
SUBMITIT_ENVIRONMENT = "seqframe.harness.submitit_env.SubmititEnvironment"


class LaunchError(SeqframeError):
    """A combination of launch mode and strategy that would train the wrong thing."""


def _devices(trainer: Mapping[str, Any]) -> int:
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    return 2  # -1 / "auto": possibly several; treat as multi-device


def relaunches_from_command_line(trainer: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Lightning would start extra ranks by re-running the command line."""
    strategy = trainer.get("strategy", "auto")
    several = _devices(trainer) * int(trainer.get("num_nodes", 1) or 1) > 1
    launched_outside = any(name in environ for name in EXTERNAL_LAUNCHER_VARIABLES) or uses_submitit_ranks(trainer)
    return isinstance(strategy, str) and strategy in RELAUNCHING_STRATEGIES and several and not launched_outside


def uses_submitit_ranks(trainer: Mapping[str, Any]) -> bool:
    """Whether the trainer takes its ranks from submitit's tasks (``hardware=slurm`` / ``slurm_local``)."""
    plugins = trainer.get("plugins") or []
    return any(isinstance(p, Mapping) and p.get("_target_") == SUBMITIT_ENVIRONMENT for p in plugins)


def inside_submitit_job(environ: Mapping[str, str] = os.environ) -> bool:
    return "SUBMITIT_EXECUTOR" in environ


def is_rank_zero(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is (or will be) global rank 0, also before Lightning has set up its ranks.

    Lightning's ``rank_zero_only.rank`` is read from the environment at import and set to the
    global rank once the strategy is set up; submitit's local tasks are only known by their own
    variable, so that is checked as well."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0 and environ.get("SUBMITIT_LOCAL_GLOBALID", "0") == "0"


def launched_by_torchrun(environ: Mapping[str, str] = os.environ) -> bool:
    return "TORCHELASTIC_RUN_ID" in environ


def check_run_dir_is_pinned(arguments: Sequence[str], environ: Mapping[str, str] = os.environ) -> None:
    """Under torchrun every process composes its own config: a time-stamped run (or sweep) dir would
    differ between them, so it must be given on the command line."""
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in arguments) else "hydra.run.dir"
    if launched_by_torchrun(environ) and not any(a.lstrip("+").startswith(key + "=") for a in arguments):
        raise LaunchError(
            f"under torchrun each process composes its own config, so the default time-stamped {key} would "
            f"differ between them: add {key}=outputs/<name> (the same on every node)"
        )


def check_torchrun_sweep(sweep_plugins: Sequence[str], environ: Mapping[str, str] = os.environ) -> None:
    """Under torchrun every rank runs the whole sweep itself and must meet the others in every job:
    only Hydra's basic sweeper and launcher give every rank the same jobs in the same order, one at a time."""
    unsafe = [p for p in sweep_plugins if p not in ORDERED_SWEEP_PLUGINS]
    if launched_by_torchrun(environ) and unsafe:
        raise LaunchError(
            f"under torchrun every rank runs the sweep itself, and {', '.join(unsafe)} would not give every rank "
            "the same jobs in the same order (each rank would run its own search or its own parallel jobs): "
            "sweep lists of values with the default sweeper and launcher (e.g. cell=rnn,lstm), or start one "
            "torchrun per job"
        )


def require_submitit_job(environ: Mapping[str, str] = os.environ) -> None:
    """Ranks taken from submitit's tasks need a submitit job, which Hydra's launcher only starts with -m."""
    if not inside_submitit_job(environ):
        raise LaunchError(
            "hardware=slurm / slurm_local runs each rank as a task of a submitit job, and Hydra only uses "
            "its launcher in a multirun: add -m (a sweep of one job is fine), e.g. "
            "seqframe-train -m hardware=slurm trainer.devices=4"
        )


def check_submitit_ranks(trainer: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Inside a submitit job, every rank must be one of its tasks, and there must be one task per device."""
    if uses_submitit_ranks(trainer):
        require_submitit_job(environ)
    if not inside_submitit_job(environ):
        return
    if not uses_submitit_ranks(trainer):
        if relaunches_from_command_line(trainer, environ):
            raise LaunchError(
                f"under the submitit launcher, strategy={trainer.get('strategy')!r} cannot start its other ranks "
                "(submitit runs the job, not this command line): use hardware=slurm (or slurm_local), where each "
                "submitit task is one rank"
            )
        return
    ranks = _devices(trainer) * int(trainer.get("num_nodes", 1) or 1)
    tasks = int(environ.get("SUBMITIT_LOCAL_NTASKS") or environ.get("SLURM_NTASKS") or 1)
    if ranks != tasks:
        raise LaunchError(
            f"the submitit job has {tasks} tasks but the trainer expects {ranks} ranks (trainer.devices x "
            "trainer.num_nodes): set trainer.devices and trainer.num_nodes only; hardware=slurm derives "
            "hydra.launcher.tasks_per_node and nodes from them"
        )


def check_launch(
    trainer: Mapping[str, Any],
    multirun: bool,
    environ: Mapping[str, str] = os.environ,
    sweep_plugins: Sequence[str] = (),
) -> None:
    """Refuse a multirun whose jobs would relaunch their ranks from the command line or whose ranks
    would not meet in the same jobs, and submitit jobs whose tasks are not the trainer's ranks.
    ``sweep_plugins``: the ``_target_`` of Hydra's sweeper and launcher in a multirun."""
    check_submitit_ranks(trainer, environ)
    if multirun:
        check_torchrun_sweep(sweep_plugins, environ)
    if multirun and relaunches_from_command_line(trainer, environ):
        raise LaunchError(
            f"a multirun (-m) cannot use strategy={trainer.get('strategy')!r}: Lightning would start the other "
            "ranks by re-running this command, and they would re-run the sweep and join the wrong jobs. Use "
            "hardware=ddp_cpu_fork (strategy=ddp_fork) on CPUs, start the ranks with torchrun "
            "(hardware=multi_node, hydra.sweep.dir pinned) or through submitit (hardware=slurm), or run the "
            "jobs one by one without -m."
        )
