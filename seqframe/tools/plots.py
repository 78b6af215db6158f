"""The report's figures (matplotlib, an optional extra: ``pip install 'seqframe[report]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def _setting(row: Dict[str, Any]) -> str:
    """What a panel holds: the task and the overrides other than the cell and the seed."""
    rest = [p for p in row["overrides"].split() if not p.startswith(("cell=", "seed="))]
    return " ".join([str(row["task"]), *rest])


def _colours(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    cells = sorted({str(r["cell"]) for r in rows})
    palette = plt.get_cmap("tab10")
    return {cell: palette(i % 10) for i, cell in enumerate(cells)}


def plot_curves(rows: Sequence[Dict[str, Any]], path: Path) -> None:
    """Validation metric against step (left) and wall time (right), one row of panels per setting."""
    settings = sorted({_setting(r) for r in rows if r["_curve"]}) or ["(no validation yet)"]
    colours = _colours(rows)
    figure, axes = plt.subplots(len(settings), 2, figsize=(11, 3.6 * len(settings)), squeeze=False)
    for (left, right), setting in zip(axes, settings):
        labelled = set()
        for row in (r for r in rows if r["_curve"] and _setting(r) == setting):
            cell = str(row["cell"])
            label = None if cell in labelled else cell
            labelled.add(cell)
            steps = [p[0] for p in row["_curve"]]
            values = [p[2] for p in row["_curve"]]
            left.plot(steps, values, marker=".", color=colours[cell], label=label, alpha=0.85)
            timed = [(p[1], p[2]) for p in row["_curve"] if p[1] is not None]
            if timed:
                right.plot(*zip(*timed), marker=".", color=colours[cell], alpha=0.85)
            if row.get("baseline") is not None:
                for axis in (left, right):
                    axis.axhline(row["baseline"], color="grey", linestyle="--", linewidth=0.8)
        monitor = next((r["monitor"] for r in rows if _setting(r) == setting and r["monitor"]), "metric")
        left.set(title=setting, xlabel="step", ylabel=monitor)
        right.set(title=setting, xlabel="wall time (s)", ylabel=monitor)
        if labelled:
            left.legend(title="cell (dashed: baseline)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_bars(rows: Sequence[Dict[str, Any]], path: Path) -> None:
    """Mean time per epoch and parameter count per cell and setting."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "finished":
            groups.setdefault(f"{row['cell']}\n{_setting(row)}", []).append(row)
    labels = sorted(groups) or ["(no finished run)"]
    times = [_mean(groups.get(k, []), "time_per_epoch_s") for k in labels]
    params = [_mean(groups.get(k, []), "parameters") for k in labels]
    colours = _colours([r for members in groups.values() for r in members])
    bar_colours = [colours.get(k.split("\n")[0], "grey") for k in labels]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 1.4 * len(labels)), 7))
    top.bar(labels, times, color=bar_colours)
    top.set(ylabel="time per epoch (s)", title="time per epoch (mean over runs)")
    bottom.bar(labels, params, color=bar_colours)
    bottom.set(ylabel="parameters", title="parameters")
    for axis in (top, bottom):
        axis.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _mean(rows: Sequence[Dict[str, Any]], column: str) -> float:
    values = [r[column] for r in rows if isinstance(r.get(column), (int, float))]
    return sum(values) / len(values) if values else 0.0


def plot_study(study: Any, target: Path, importances: bool) -> List[Tuple[str, str]]:
    """An Optuna study's optimization history and (when they could be computed) parameter importances,
    drawn by optuna's own matplotlib functions; returns the PNG names and titles written."""
    import warnings

    import optuna.visualization.matplotlib as optuna_plots

    figures = [("optuna_history.png", "optimization history", optuna_plots.plot_optimization_history)]
    if importances:
        figures.append(("optuna_importances.png", "parameter importances", optuna_plots.plot_param_importances))
    for name, _, plot in figures:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            axes = plot(study)
        axes.figure.set_size_inches(8, 4.5)
        axes.figure.tight_layout()
        axes.figure.savefig(target / name, dpi=90)
        plt.close(axes.figure)
    return [(name, title) for name, title, _ in figures]
