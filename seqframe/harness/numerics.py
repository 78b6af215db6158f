"""Subnormal floats in a training process: the ``flush_denormal`` setting.

A gradient flowing back over a long sequence shrinks step by step until it
is subnormal (below float32's smallest normal number, 1.18e-38), and on
many x86 CPUs arithmetic on subnormals takes a slow microcode path, ~100x
slower per operation: the issue behind this setting measured a 10x jump in
an LSTM's backward from T=100 to T=200. Values that small carry nothing a
float32 optimizer can use, so ``flush_denormal: true`` (the default, as
Keras on TensorFlow does) makes the CPU treat them as zero.
docs/guide/speed.md has the measurements.

The flag is a CPU register of each thread: torch sets it in the calling
thread only. Each training process sets its own (DDP ranks and joblib
workers each run :func:`seqframe.harness.train.train`); with ``threads: N``
above 1 torch's other compute threads keep subnormals, which
:func:`flushes_subnormals` detects and ``summary.json`` then records as false.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("seqframe")

PROBE_PER_THREAD = 1 << 16  # elements per thread: above torch's grain size, so every compute thread takes a part


def flushes_subnormals() -> bool:
    """Whether every torch compute thread of this process flushes a subnormal result to zero.

    A real product is checked rather than a flag, since the flag is per thread
    and ``torch.set_flush_denormal`` returns only whether the CPU supports it.
    """
    import torch

    size = PROBE_PER_THREAD * max(1, torch.get_num_threads())
    small = torch.full((size,), 1e-20, dtype=torch.float32)
    return not bool((small * small).any())  # 1e-40 is subnormal in float32


def set_flush_denormal(enabled: bool) -> bool:
    """Apply ``flush_denormal=enabled`` to this process; returns whether subnormals are now flushed
    (false when asked not to, on a CPU without the flag, or where other threads keep them)."""
    import torch

    torch.set_flush_denormal(bool(enabled))
    flushed = flushes_subnormals()
    if enabled and not flushed:
        logger.warning(
            "flush_denormal: subnormals are not flushed in every compute thread (%d threads; torch sets the flag "
            "in its main thread only, and some CPUs lack it); long sequences may train slower",
            torch.get_num_threads(),
        )
    return flushed
