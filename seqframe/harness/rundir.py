"""The run directory: where a run's files are, and the summary that sweeps, reports and users read.

:class:`RunDir` names every file a run writes and finds its checkpoints;
:class:`RunSummary` is ``summary.json``, each field documented (docs/run-dir.md
is generated from it). Every reader and writer of a run dir goes through here,
so the layout is written down once. Nothing here imports Lightning or Hydra,
so reading runs back stays cheap (``seqframe report``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from seqframe.harness.checkpoints import CheckpointError

SUMMARY_FILE = "summary.json"
FAILED_ATTEMPT_FILE = "summary.failed-attempt.json"  # a failed attempt on a run that had finished
DONE = ("finished", "pruned")  # the statuses of a run that ended as meant (a sweep counts neither as failed)
METRICS_FILE = "metrics.csv"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST_PATTERN = "best*.ckpt"  # ModelCheckpoint's filename in conf/callbacks/default.yaml
HYDRA = ".hydra"
CONFIG_FILE = Path(HYDRA) / "config.yaml"  # relative to the run dir, as messages name it
OVERRIDES_FILE = Path(HYDRA) / "overrides.yaml"
ELAPSED = "time/elapsed_s"  # wall seconds since fitting started, logged with each validation
CPU = "time/cpu_s"  # the run's CPU seconds since fitting started, logged with it
SCHEMA_VERSION = 1  # raised when a field changes meaning or goes away (new fields alone do not)
WHICH = ("last", "best")


def _field(doc: str, default: Any = None) -> Any:
    """A summary field and its documentation (docs/run-dir.md's table is made from it)."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class RunSummary:
    """``summary.json``: what a run was and how it ended.

    Every field is written, ``null`` while not known (a run that failed early
    has only the first few). Readers tolerate keys they do not know (a newer
    seqframe's) and fields that are missing (an older one's).
    """

    schema_version: int = _field(
        f"Version of this layout ({SCHEMA_VERSION}); 0 when read from a summary written before it had one.",
        SCHEMA_VERSION,
    )
    status: str = _field(
        "`finished`, `pruned` (an Optuna search's pruner stopped it early, as hopeless: its checkpoints and "
        "test results are kept, `steps` says when), `failed` (see `error`) or `stopped` (SIGTERM: `checkpoint` "
        "holds the state to resume from). The file is written when the run ends, so a run still training or "
        f"killed with -9 has none (or its previous attempt's); sweeps show such a job as `missing`. A failed "
        f"attempt (e.g. a refused resume) on a run that had finished or was pruned keeps this file and writes "
        f"`{FAILED_ATTEMPT_FILE}` beside it.",
        "running",
    )
    cell: Optional[str] = _field("The cell's registered name (`cell=`). Set at start.")
    cell_options: Optional[Dict[str, Any]] = _field("The composed `cell` config group, resolved. Set at start.")
    data: Optional[str] = _field("The `data=` choice (the data module's class name without Hydra). Set at start.")
    hardware: Optional[str] = _field("The `hardware=` choice (`custom` without Hydra). Set at start.")
    seed: Optional[int] = _field("The `seed` the run was seeded with. Set at start.")
    output_dir: Optional[str] = _field("This run dir. Set at start.")
    task: Optional[str] = _field("The task kind from the data spec (`regress`, `classify`, ...). Set once built.")
    baseline: Optional[Dict[str, float]] = _field(
        "Metric name (without `test/`) -> the score of a trivial predictor, for comparison. Set once built."
    )
    target: Optional[float] = _field(
        "The monitored metric's value that counts as solving the task (`seqframe report`'s time to target), "
        "or null. Set once built."
    )
    monitor: Optional[str] = _field("The validation metric checkpoints follow (e.g. `val/mse`). Set once built.")
    monitor_mode: Optional[str] = _field("`min` or `max`: which way `monitor` improves. Set once built.")
    parameters: Optional[int] = _field("The model's number of parameters. Set once built.")
    paths: Optional[List[str]] = _field(
        "The code path each layer runs (`fused`, `scan`, `loop` or `compile`). Set once built."
    )
    gates: Optional[int] = _field("The cell's number of gates. Set once built.")
    has_cell_state: Optional[bool] = _field("Whether the cell carries a cell state (as an LSTM). Set once built.")
    data_report: Optional[Dict[str, Any]] = _field(
        "What the data module reports about the data read (e.g. dropped sequences), or null. Set once built."
    )
    resumed_from: Optional[str] = _field("The checkpoint training resumed from, or null. Set when fitting starts.")
    checkpoint: Optional[str] = _field("The checkpoint written on SIGTERM (status `stopped`); null otherwise.")
    best_val: Optional[float] = _field(
        "The best `monitor` value over the validations (NaN and inf kept). Set when fitting ends."
    )
    final_val: Optional[float] = _field("`monitor` at the last validation. Set when fitting ends.")
    epochs: Optional[int] = _field("Epochs completed. Set when fitting ends (or on SIGTERM).")
    steps: Optional[int] = _field("Optimizer steps taken. Set when fitting ends (or on SIGTERM).")
    world_size: Optional[int] = _field("Number of processes that trained. Set when fitting ends.")
    batch_size: Optional[Dict[str, int]] = _field(
        "`per_process` and `global` batch size. Set when fitting ends."
    )
    steps_per_execution: Optional[int] = _field(
        "Optimizer steps per Lightning step (`steps_per_execution`). Set when fitting ends."
    )
    threads: Optional[int] = _field(
        "torch threads per process (`threads`; `auto` means 1, null torch's default). Set before fitting."
    )
    flush_denormal: Optional[bool] = _field(
        "Whether subnormal floats were flushed to zero in every torch compute thread (`flush_denormal`), "
        "checked with a real product: false when off, on a CPU without the flag, or with `threads` above 1 "
        "(torch sets it in its main thread only). Set before fitting."
    )
    time_per_epoch: Optional[float] = _field("Mean wall seconds per training epoch. Set when fitting ends.")
    epoch_times: Optional[List[float]] = _field("Wall seconds of each training epoch. Set when fitting ends.")
    best_checkpoint: Optional[str] = _field(
        "The best checkpoint's path as written, or null. Set when fitting ends; "
        "`RunDir.checkpoint(\"best\")` falls back to `checkpoints/best*.ckpt` if the dir moved."
    )
    test: Optional[Dict[str, Optional[float]]] = _field(
        "Test metrics of the best checkpoint (`test/<metric>` -> value); null with `test=false`. Set at the end."
    )
    error: Optional[str] = _field("`<ExceptionType>: <message>` of a failed or stopped run; null otherwise.")
    traceback: Optional[str] = _field("The failure's Python traceback (status `failed`); null otherwise.")
    wall_time: Optional[float] = _field("Wall seconds from start to end, however the run ended.")
    extra: Dict[str, Any] = field(
        default_factory=dict,
        metadata={"doc": "Not a key: the keys read that this version does not know, written back unchanged."},
    )

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> RunSummary:
        """A summary from its JSON form: unknown keys kept in ``extra``, missing ones left at their default."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        summary = cls(**{k: v for k, v in values.items() if k in known})
        summary.extra = {k: v for k, v in values.items() if k not in known}
        if "schema_version" not in values:
            summary.schema_version = 0  # written before summaries had a version
        return summary

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form: every field (null when unknown), then the unknown keys read."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**values, **{k: v for k, v in self.extra.items() if k not in values}}

    def update(self, **values: Any) -> None:
        """Set several fields at once; a name that is no field is an error (a typo would be lost silently)."""
        for name, value in values.items():
            if name == "extra" or not hasattr(self, name):
                raise AttributeError(f"RunSummary has no field {name!r}")
            setattr(self, name, value)


def summary_table() -> str:
    """The Markdown table of :class:`RunSummary`'s fields that docs/run-dir.md holds."""
    rows = ["| field | type | meaning, and when it is set |", "| --- | --- | --- |"]
    for f in dataclasses.fields(RunSummary):
        rows.append(f"| `{f.name}` | `{f.type}` | {f.metadata['doc']} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class RunDir:
    """A run's directory, as ``seqframe-train`` writes it (``paths.output_dir``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        """Written at epoch ends, every N steps, on SIGTERM and on a NaN stop: the newest state."""
        return self.checkpoints / LAST

    def best_checkpoints(self) -> List[Path]:
        return sorted(self.checkpoints.glob(BEST_PATTERN))

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def metrics_file(self) -> Path:
        """Where the CSV logger (conf/logger/csv.yaml) writes the logged metrics."""
        return self.root / METRICS_FILE

    @property
    def hydra_dir(self) -> Path:
        return self.root / HYDRA

    @property
    def config_file(self) -> Path:
        """The composed config Hydra saved; evaluate, predict and export rebuild the data from it."""
        return self.root / CONFIG_FILE

    @property
    def overrides_file(self) -> Path:
        return self.root / OVERRIDES_FILE

    def read_summary(self) -> Optional[RunSummary]:
        """The run's summary, or None when there is none (yet) or it cannot be read."""
        try:
            values = json.loads(self.summary_file.read_text())
        except (OSError, ValueError):
            return None
        return RunSummary.from_dict(values) if isinstance(values, dict) else None

    @property
    def failed_attempt_file(self) -> Path:
        """Where a failed attempt's summary goes when ``summary.json`` holds a run that had ended well."""
        return self.root / FAILED_ATTEMPT_FILE

    def newest_summary_file(self) -> Path:
        """The summary of the latest attempt: ``summary.failed-attempt.json`` when it is newer."""
        attempt, summary = self.failed_attempt_file, self.summary_file
        if attempt.is_file() and (not summary.is_file() or attempt.stat().st_mtime_ns >= summary.stat().st_mtime_ns):
            return attempt
        return summary

    def write_summary(self, summary: RunSummary) -> Path:
        """Write ``summary.json`` whole or not at all (a kill mid-write leaves the previous one); returns
        the file written. A failed attempt never replaces the summary of a run that finished (or was
        pruned): a refused resume must not turn a finished run into a failed one for sweeps and reports.
        It goes to ``summary.failed-attempt.json`` beside it instead."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.summary_file
        if summary.status == "failed":
            previous = self.read_summary()
            if previous is not None and previous.status in DONE:
                target = self.failed_attempt_file
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
        os.replace(partial, target)
        return target

    def checkpoint(self, which: str = "last") -> Path:
        """The checkpoint file of this run: ``last`` (its newest state) or ``best`` (the summary's best
        checkpoint, else ``best*.ckpt``, else ``last.ckpt``). ``root`` may also be the checkpoints folder
        itself. Raises :class:`CheckpointError` when there is none."""
        if which not in WHICH:
            raise ValueError(f"which={which!r}: choose one of {', '.join(WHICH)}")
        candidates = [self.last_checkpoint, self.root / LAST]
        if which == "best":
            best = (self.read_summary() or RunSummary()).best_checkpoint
            candidates[:0] = [*([Path(best)] if best else []), *self.best_checkpoints()]
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            return found
        if which == "last":
            raise CheckpointError(f"{self.root} is a directory without {CHECKPOINTS}/{LAST}")
        raise CheckpointError(
            f"{self.root} holds no {CHECKPOINTS}/ with a .ckpt file; did its training run finish an epoch?"
        )


def read_summary(run_dir: Path) -> Optional[Dict[str, Any]]:
    """A run's summary.json as a plain dict (as users' scripts read it), or None when there is none."""
    summary = RunDir(run_dir).read_summary()
    return None if summary is None else summary.to_dict()
