"""``seqframe report SWEEP_DIR...``: the runs of sweeps as one comparison table.

It reads only files (each run's summary.json, metrics.csv and
.hydra/overrides.yaml), so it works on a sweep that is still running or
partly failed, and it imports neither torch nor Lightning. On an Optuna
search (a sweep dir with ``optimization_results.yaml``) it also reads the
study from its storage: the best trial, every trial (state, worker, wall
time), the optimization history and the parameter importances, by optuna's
own functions.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from seqframe.harness.rundir import CPU, ELAPSED, SUMMARY_FILE, RunDir, RunSummary
from seqframe.tools.report_forecast import forecast_section

Point = Tuple[int, int, float, Optional[float], Optional[float]]  # epoch, step, value, wall s, CPU s

COLUMNS = (
    "run",
    "cell",
    "task",
    "overrides",
    "parameters",
    "gates",
    "cell_state",
    "time_per_epoch_s",
    "steps_to_target",
    "time_to_target_s",
    "cpu_to_target_s",
    "monitor",
    "best_val",
    "test",
    "baseline",
    "status",
)
GROUPED = ("best_val", "test", "time_per_epoch_s", "steps_to_target", "time_to_target_s", "cpu_to_target_s")


def find_runs(directories: Iterable[Path]) -> List[Path]:
    """Every run directory (one holding a summary.json) below the given directories."""
    runs = set()
    for directory in directories:
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such directory (give sweep or run directories)")
        runs.update(p.parent for p in directory.rglob(SUMMARY_FILE))
    return sorted(runs, key=_natural)


def _natural(path: Path) -> tuple:
    """Sort key that puts job 2 before job 10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts)


def key_overrides(run_dir: Path) -> str:
    """The run's command-line overrides that tell it apart (Hydra's own settings left out)."""
    path = RunDir(run_dir).overrides_file
    if not path.is_file():
        return ""
    lines = [line[2:].strip() for line in path.read_text().splitlines() if line.startswith("- ")]
    return " ".join(line.strip("'\"") for line in lines if not line.lstrip("+~").startswith("hydra"))


def _validation_curve(run_dir: Path, monitor: str) -> List[Point]:
    """``(epoch, step, value, wall seconds, CPU seconds)`` of the monitored metric from metrics.csv, in
    order; the seconds (since fitting started, logged with each validation) are None in older runs."""
    path = RunDir(run_dir).metrics_file
    if not path.is_file() or not monitor:
        return []
    curve = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(monitor) not in (None, ""):
                wall, cpu = (float(row[c]) if row.get(c) not in (None, "") else None for c in (ELAPSED, CPU))
                curve.append((int(float(row["epoch"])), int(float(row["step"])), float(row[monitor]), wall, cpu))
    return curve


def _seconds(summary: RunSummary, epoch: int, elapsed: Optional[float]) -> Optional[float]:
    """Wall seconds at a validation: its logged clock, else the end of its epoch (older runs)."""
    if elapsed is not None:
        return elapsed
    epoch_times = summary.epoch_times or []
    return sum(epoch_times[: epoch + 1]) if len(epoch_times) > epoch else None


def time_to_target(summary: RunSummary, curve: Sequence[Point]) -> Tuple[Any, Any, Any]:
    """Steps, wall seconds and CPU seconds until the monitored validation metric first reached the
    task's target."""
    target = summary.target
    if target is None:
        return None, None, None
    maximise = summary.monitor_mode == "max"
    for epoch, step, value, elapsed, cpu in curve:
        if (value >= target) if maximise else (value <= target):
            return step, _seconds(summary, epoch, elapsed), cpu
    return "not reached", None, None


def run_row(run_dir: Path) -> Dict[str, Any]:
    summary = RunDir(run_dir).read_summary() or RunSummary(status="missing")
    monitor = summary.monitor or ""
    metric = monitor.split("/", 1)[-1]
    curve = _validation_curve(run_dir, monitor)
    steps, seconds, cpu_seconds = time_to_target(summary, curve)
    return {
        "_curve": [(step, _seconds(summary, epoch, elapsed), value) for epoch, step, value, elapsed, _ in curve],
        "run": str(run_dir),
        "cell": summary.cell,
        "task": summary.data,
        "overrides": key_overrides(run_dir),
        "parameters": summary.parameters,
        "gates": summary.gates,
        "cell_state": summary.has_cell_state,
        "time_per_epoch_s": summary.time_per_epoch,
        "steps_to_target": steps,
        "time_to_target_s": seconds,
        "cpu_to_target_s": cpu_seconds,
        "monitor": monitor,
        "best_val": summary.best_val,
        "test": (summary.test or {}).get(f"test/{metric}"),
        "baseline": (summary.baseline or {}).get(metric),
        "status": summary.status,
    }


def _without_seed(overrides: str) -> str:
    return " ".join(part for part in overrides.split() if not part.startswith("seed="))


def group_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Finished runs that differ only in ``seed=``: mean and standard deviation of each number."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "finished":
            groups.setdefault((row["cell"], row["task"], _without_seed(row["overrides"])), []).append(row)
    result = []
    for (cell, task, overrides), members in groups.items():
        entry: Dict[str, Any] = {"cell": cell, "task": task, "overrides": overrides, "runs": len(members)}
        for column in GROUPED:
            values = [m[column] for m in members if isinstance(m[column], (int, float))]
            if len(values) == len(members) and values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                entry[column] = f"{statistics.mean(values):.4g} ± {spread:.2g}"
            else:
                reached = f"{len(values)}/{len(members)} runs"
                unreached = all(m[column] == "not reached" for m in members)
                entry[column] = "not reached" if unreached else ("-" if not values else reached)
        result.append(entry)
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(directories: Sequence[Path], out: Optional[Path] = None) -> str:
    """Write report.md and report.csv (into ``out``, default the first directory); returns the markdown."""
    rows = [run_row(run) for run in find_runs(directories)]
    shared = set.intersection(*(set(r["overrides"].split()) for r in rows)) if rows else set()
    for row in rows:  # keep the overrides that tell runs apart
        row["overrides"] = " ".join(part for part in row["overrides"].split() if part not in shared)
    groups = group_rows(rows)
    text = "# seqframe report\n\n" + f"Runs: {len(rows)} from {', '.join(map(str, directories))}\n\n"
    text += markdown_table(COLUMNS, rows) + "\n"
    if any(g["runs"] > 1 for g in groups):
        text += "\n## Over seeds (mean ± standard deviation)\n\n"
        text += markdown_table(("cell", "task", "overrides", "runs", *GROUPED), groups) + "\n"
    target = out or directories[0]
    target.mkdir(parents=True, exist_ok=True)
    try:
        from seqframe.tools.plots import plot_bars, plot_curves
    except ImportError:
        text += "\n(Plots need matplotlib: pip install 'seqframe[report]'.)\n"
    else:
        plot_curves(rows, target / "curves.png")
        plot_bars(rows, target / "bars.png")
        text += "\n![validation curves](curves.png)\n\n![time per epoch and parameters](bars.png)\n"
    studies = [study_report(d, target) for d in directories if (d / STUDY_FILE).is_file()]
    text += "".join(section for section, _ in studies)
    text += forecast_section([Path(r["run"]) for r in rows])
    (target / "report.md").write_text(text)
    with (target / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plain = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    found = {"runs": plain, "groups": groups, "studies": [study for _, study in studies]}
    (target / "report.json").write_text(json.dumps(found, indent=2, default=str) + "\n")
    return text


STUDY_FILE = "optimization_results.yaml"  # the Optuna sweeper writes it into the sweep dir
TRIAL_COLUMNS = ("trial", "state", "value", "worker", "wall_s", "retry_of", "params")


def trial_rows(study: Any) -> List[Dict[str, Any]]:
    """One row per trial of an Optuna study: number, state, value, the worker that ran it, wall seconds,
    and the trial it re-runs (one whose worker died)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        start, end = trial.datetime_start, trial.datetime_complete
        rows.append({
            "trial": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "worker": trial.user_attrs.get("worker"),
            "wall_s": (end - start).total_seconds() if start and end else None,
            "retry_of": trial.system_attrs.get("failed_trial"),
            "params": " ".join(f"{k}={_cell(v)}" for k, v in trial.params.items()),
        })
    return rows


def _importances(study: Any) -> Tuple[Dict[str, float], str]:
    """optuna's parameter importances, or none and why (too few finished trials, a constant value)."""
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study)), ""
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return {}, f"(No parameter importances: {exc})\n"


def study_report(sweep_dir: Path, target: Path) -> Tuple[str, Dict[str, Any]]:
    """The Markdown section on the Optuna study of ``sweep_dir`` (PNGs into ``target``) and its data."""
    import yaml

    written = yaml.safe_load((sweep_dir / STUDY_FILE).read_text()) or {}
    name, storage = written.get("study"), written.get("storage")
    text = f"\n## Optuna study `{name}`\n\n"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:  # optuna missing, a server down, a password not given: the file table stands
        return text + f"(The study in {storage} could not be read: {type(exc).__name__}: {exc})\n", {"study": name}
    rows = trial_rows(study)
    states = {state: sum(r["state"] == state for r in rows) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    text += f"Storage `{storage}`, {study.direction.name.lower()}; {len(rows)} trials: "
    text += ", ".join(f"{n} {state.lower()}" for state, n in states.items() if n) + ".\n\n"
    data: Dict[str, Any] = {"study": name, "storage": storage, "trials": rows}
    if states["COMPLETE"]:
        best = study.best_trial
        data["best"] = {"trial": best.number, "value": best.value, "params": best.params}
        text += f"Best trial {best.number}: {best.value:.4g} (run dir {sweep_dir / str(best.number)}) with "
        text += ", ".join(f"`{k}={_cell(v)}`" for k, v in best.params.items()) + ".\n\n"
    text += "### Trials\n\n" + markdown_table(TRIAL_COLUMNS, rows) + "\n"
    importances, why_not = _importances(study)
    data["importances"] = importances
    text += "\n### Parameter importances\n\n"
    text += why_not or markdown_table(("parameter", "importance"), [
        {"parameter": k, "importance": v} for k, v in importances.items()]) + "\n"
    try:
        from seqframe.tools.plots import plot_study
    except ImportError:
        return text + "\n(Plots need matplotlib: pip install 'seqframe[report]'.)\n", data
    for png, title in plot_study(study, target, bool(importances)):
        text += f"\n![{title}]({png})\n"
    return text, data
