"""A forecaster's future: the next ``horizon`` steps after the end of each series of a file.

``seqframe predict RUN --file series.csv`` lands here for runs trained with
``data=series``: each series' last ``input_len`` steps are read with the
saved normalisation (a series the model never saw is standardised on its own
history), and the forecast is written in the data's units with the time
stamps it is for, one row per series and future step.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from seqframe.errors import SeqframeError
from seqframe.harness.forecast_plot import ForecastPanel, plot_forecasts


def future_forecasts(trained: Any, file: str, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """``{ids, series, future (time stamps [H] per series), values [N, H, K, Q], targets, quantiles, axis}``."""
    model = trained.model(metrics=False)
    datamodule = trained.data_module(overrides)
    found, dataset = datamodule.read_new(file, with_targets=False)
    x, _, info = dataset.tensors
    with torch.no_grad():
        values = model.to_units(model.forecast_outputs(x), info).numpy()
    state = trained.data_state
    return {**found, "values": values, "targets": list(state["targets"]), "quantiles": list(model.quantiles)}


def columns(targets: Sequence[str], quantiles: Sequence[float]) -> List[str]:
    """The value columns: the point forecast per target (its name), then ``<target>_q<level>`` per quantile."""
    return [*targets, *(f"{t}_q{q:g}" for t in targets for q in quantiles)]


def write_forecasts(out: Path, forecast: Dict[str, Any]) -> None:
    """``id, time, step`` and the :func:`columns`, one row per series and future step, in the file's order."""
    quantiles, axis = forecast["quantiles"], forecast["axis"]
    point = quantiles.index(0.5) if quantiles else 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "time", "step", *columns(forecast["targets"], quantiles)])
        for seq_id, times, values in zip(forecast["ids"], forecast["future"], forecast["values"]):
            for h, stamp in enumerate(axis.text(times)):
                row = [
                    *values[h, :, point],
                    *(values[h, k, j] for k in range(values.shape[1]) for j in range(len(quantiles))),
                ]
                writer.writerow([seq_id, stamp, h + 1, *(f"{v:.7g}" for v in row)])


def future_panels(forecast: Dict[str, Any], limit: int) -> List[ForecastPanel]:
    """One plot panel per series (and target) for the first ``limit`` series."""
    quantiles = forecast["quantiles"]
    point = quantiles.index(0.5) if quantiles else 0
    interval = len(quantiles) > 1
    panels = []
    for one, times, values in list(zip(forecast["series"], forecast["future"], forecast["values"]))[:limit]:
        for k, target in enumerate(forecast["targets"]):
            panels.append(
                ForecastPanel(
                    title=f"{one.id} - {target}: forecast",
                    times=one.times,
                    history=one.values[:, k],
                    forecast_times=times,
                    median=values[:, k, point],
                    low=values[:, k, 0] if interval else None,
                    high=values[:, k, -1] if interval else None,
                    interval=f"{quantiles[0]:g}-{quantiles[-1]:g} quantiles" if interval else "",
                )
            )
    return panels


def forecast_file(
    trained: Any, file: str, out: Path, overrides: Sequence[str], plot: Optional[str], plot_series: int
) -> int:
    """Write the future of every series of ``file`` to ``out`` (and the plot); returns the number of series."""
    if out.suffix != ".csv":
        raise SeqframeError(f"--out {out}: a forecast is written as CSV; give a .csv file name")
    if plot is not None and (Path(plot).suffix.lower() not in (".png", ".pdf", ".svg") or plot_series < 1):
        raise SeqframeError(f"--plot {plot}: give a .png (or .pdf/.svg) file and --plot-series of at least 1")
    forecast = future_forecasts(trained, file, overrides)
    write_forecasts(out, forecast)
    if plot is not None:
        files = plot_forecasts(future_panels(forecast, plot_series), Path(plot))
        shown = min(plot_series, len(forecast["ids"]))
        print(f"seqframe: plotted {shown} of {len(forecast['ids'])} series in {', '.join(map(str, files))}")
    return int(np.asarray(forecast["values"]).shape[0])
