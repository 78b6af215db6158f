"""A Lightning cluster environment in which each submitit task is one DDP rank.

Under hydra-submitit-launcher the job's command is ``python -m
submitit.core._submit <folder>``, so Lightning's ``ddp`` cannot start the other
ranks by re-running it (the child fails with "unrecognized arguments", hydra
#2231). Instead submitit starts ``tasks_per_node`` copies of the job (``srun``
on SLURM, subprocesses with the local executor), and this environment tells
Lightning which rank each copy is, from ``submitit.JobEnvironment()``.
"""

from __future__ import annotations

import os
import zlib
from typing import Optional

from lightning_fabric.plugins.environments import ClusterEnvironment

from seqframe.harness.distributed import inside_submitit_job, require_submitit_job

PORTS = (10000, 30000)  # below Linux's ephemeral range (32768-60999), so no client socket holds it


def port_for_job(job_id: str) -> int:
    """The same port on every task of a job (and most likely another one for another job)."""
    low, high = PORTS
    return low + zlib.crc32(job_id.encode()) % (high - low)


class SubmititEnvironment(ClusterEnvironment):
    """Ranks, world size and main address/port of the submitit job this process is a task of.

    The main address is the job's first host (``127.0.0.1`` for the local
    executor) and the port is derived from the job id, so every task agrees on
    both without talking; ``MASTER_ADDR`` / ``MASTER_PORT`` override them.
    """

    def __init__(self, main_port: Optional[int] = None) -> None:
        super().__init__()
        require_submitit_job()
        import submitit

        self._job = submitit.JobEnvironment()
        self._main_port = main_port

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" in os.environ:
            return os.environ["MASTER_ADDR"]
        if self._job.name() == "local":
            return "127.0.0.1"
        return self._job.hostnames[0]

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return self._main_port or port_for_job(self._job.job_id)

    @staticmethod
    def detect() -> bool:
        return inside_submitit_job()

    def world_size(self) -> int:
        return self._job.num_tasks

    def set_world_size(self, size: int) -> None:
        """Ignored: submitit decides the world size (``tasks_per_node`` x ``nodes``)."""

    def global_rank(self) -> int:
        return self._job.global_rank

    def set_global_rank(self, rank: int) -> None:
        """Ignored: submitit decides the ranks."""

    def local_rank(self) -> int:
        return self._job.local_rank

    def node_rank(self) -> int:
        return self._job.node
