"""Torch's thread count in a training process: the ``threads`` setting and what ``auto`` means.

``threads: auto`` (the default) is one thread per process. torch's own default,
one thread per core, suits large matrix products; a recurrent model multiplies
small matrices once per time step, and spread over threads every product waits
for the slowest one, on a busy machine for one that is not even running.
Measured on a shared, busy 2-core machine, in seconds per epoch cut to 8-30
batches: the default GRU job 16-48 with torch's default against 0.9-1.7 with
one thread, a peephole LSTM of 16 units 17 against 0.6, a GRU of 512 units at
batch 256 143 (two threads) against 18; one thread was the fastest in all
12 interleaved comparisons (3 models, 2 repeats, with and without a CPU hog).
Only with the machine nearly idle did two threads gain, and little: 3-15% on
the default job, none on the small one. ``threads=N`` sets N threads (a large
model on an otherwise idle many-core machine may gain from more); ``null``
keeps torch's.

Each process sets its own count: DDP ranks and joblib workers each run
:func:`seqframe.harness.train.train`.
"""

from __future__ import annotations

import os
from typing import Optional, Union

from seqframe.harness.schema import THREADS_AUTO as AUTO

AUTO_THREADS = 1  # what ``auto`` means: see the module docstring

ThreadsSetting = Union[int, str, None]


def thread_count(setting: ThreadsSetting) -> Optional[int]:
    """The thread count that ``threads=setting`` asks for; None keeps torch's default.

    The value was checked against :class:`seqframe.harness.schema.TopLevelConfig` (``auto``,
    a number >= 1 or null).
    """
    if setting is None:
        return None
    return AUTO_THREADS if setting == AUTO else int(setting)


def set_threads(setting: ThreadsSetting) -> int:
    """Apply ``threads=setting`` to this process; returns the number of threads torch now uses.

    ``OMP_NUM_THREADS`` is set to the same count: Lightning's DDP launchers would otherwise reset
    torch to one thread per core per rank, and processes started from this one inherit it.
    """
    import torch

    count = thread_count(setting)
    if count is not None:
        os.environ["OMP_NUM_THREADS"] = str(count)
        if count != torch.get_num_threads():
            torch.set_num_threads(count)
    return torch.get_num_threads()
