"""Which distributed launches are safe with Hydra, decided before anything trains.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running this command line
again. In a Hydra multirun that child re-runs the whole sweep: it joins the
wrong job (or, with a sweeper, trains other hyper-parameters) and the sweep
still exits 0. Strategies that fork or spawn their ranks from the running
process (``ddp_fork``, ``ddp_spawn``), and ranks started by an outside
launcher (torchrun, SLURM), do not have that problem.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from seqframe.errors import SeqframeError

RELAUNCHING_STRATEGIES = {"ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true"}
EXTERNAL_LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "SLURM_STEP_NUM_TASKS")


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
    launched_outside = any(name in environ for name in EXTERNAL_LAUNCHER_VARIABLES)
    return isinstance(strategy, str) and strategy in RELAUNCHING_STRATEGIES and several and not launched_outside


def launched_by_torchrun(environ: Mapping[str, str] = os.environ) -> bool:
    return "TORCHELASTIC_RUN_ID" in environ


def check_run_dir_is_pinned(arguments: Sequence[str], environ: Mapping[str, str] = os.environ) -> None:
    """Under torchrun every process composes its own config: a time-stamped run dir would differ
    between them, so the run dir must be given on the command line."""
    if launched_by_torchrun(environ) and not any(
        a.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in arguments
    ):
        raise LaunchError(
            "under torchrun each process composes its own config, so the default time-stamped run dir would "
            "differ between them: add hydra.run.dir=outputs/<name> (the same on every node)"
        )


def check_launch(trainer: Mapping[str, Any], multirun: bool, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a multirun whose jobs would relaunch their ranks from the command line."""
    if multirun and relaunches_from_command_line(trainer, environ):
        raise LaunchError(
            f"a multirun (-m) cannot use strategy={trainer.get('strategy')!r}: Lightning would start the other "
            "ranks by re-running this command, and they would re-run the sweep and join the wrong jobs. Use "
            "hardware=ddp_cpu_fork (strategy=ddp_fork) on CPUs, trainer.strategy=ddp_spawn, start the ranks "
            "with torchrun (hardware=multi_node) or a cluster launcher, or run the jobs one by one without -m."
        )
