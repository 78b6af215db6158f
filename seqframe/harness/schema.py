"""The schema of seqframe's own config keys: every type, range and list of choices, in one place.

The model, the guards and the config check import their choice lists from
here, and docs/configuration.md is generated from it. Keys of nodes that
Hydra instantiates (``data``, ``trainer``, callbacks, loggers, optimizer)
are checked against their classes' signatures instead (:mod:`seqframe.harness.config_check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

ENCODERS = ("auto", "none", "linear", "embedding")  # model.encoder
NONFINITE_ACTIONS = ("stop", "skip")  # on_nonfinite
MONITOR_MODES = ("auto", "min", "max")  # monitor_mode
THREADS_AUTO = "auto"  # threads: the rule in seqframe.harness.threads


def bounded(minimum: Optional[float] = None, maximum: Optional[float] = None, choices: Sequence[str] = ()) -> Any:
    """A schema field with a range or a set of choices (no default: the YAML holds the defaults)."""
    return field(metadata={"min": minimum, "max": maximum, "choices": tuple(choices)})


@dataclass
class ModelConfig:
    """``model.*``: the arguments of :class:`seqframe.harness.model.SequenceModel` after ``task`` and ``cell``."""

    hidden_size: int = bounded(minimum=1)
    num_layers: int = bounded(minimum=1)
    bidirectional: bool = bounded()
    dropout: float = bounded(minimum=0.0, maximum=1.0)
    encoder: str = bounded(choices=ENCODERS)
    embed_dim: int = bounded(minimum=1)
    optimizer: Optional[dict] = bounded()
    scheduler: Optional[dict] = bounded()
    time_checkpoint: Optional[int] = bounded(minimum=1)
    quantiles: Optional[list] = bounded(minimum=0.0, maximum=1.0)


@dataclass
class TopLevelConfig:
    """The top-level keys of ``conf/config.yaml`` that have a type or range to check."""

    seed: int = bounded(minimum=0)
    ckpt_path: Optional[str] = bounded()
    monitor: str = bounded()
    monitor_mode: str = bounded(choices=MONITOR_MODES)
    test: bool = bounded()
    resume: bool = bounded()
    on_nonfinite: str = bounded(choices=NONFINITE_ACTIONS)
    threads: Union[int, str, None] = bounded(minimum=1, choices=(THREADS_AUTO,))
    flush_denormal: bool = bounded()
    steps_per_execution: int = bounded(minimum=1)
    model: ModelConfig = bounded()
