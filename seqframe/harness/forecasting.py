"""After testing a forecaster: its test scores beside the baselines' and a plot of its test period.

:class:`ForecastReport` runs on the training process after ``trainer.test``:
it prints one table (the model's MAE, RMSE, MAPE, sMAPE, MASE and coverage
beside the naive, seasonal-naive and growth-scaled seasonal-naive
forecasts of the same test windows) and writes ``forecast.png`` (history,
forecast, interval and truth on the test period of the first few series)
and ``forecast_test.csv`` (every test forecast) into the run dir.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from seqframe.data.forecast_scores import BASELINE_NAMES, BASELINES, SCORES
from seqframe.data.series_io import TimeAxis
from seqframe.errors import SeqframeError
from seqframe.harness.forecast_plot import PER_FIGURE, ForecastPanel, plot_forecasts

PLOT_FILE = "forecast.png"
TEST_FILE = "forecast_test.csv"


def forecast_callbacks(datamodule: Any, output_dir: Path) -> List[pl.Callback]:
    """The callbacks a data module's task needs after testing: a report for forecasting data."""
    return [ForecastReport(Path(output_dir))] if (datamodule.data_state or {}).get("forecast") else []


def score_table(test: Dict[str, float], baseline: Dict[str, float]) -> str:
    """The model's test scores and the baselines' as aligned text (``test``: ``test/mae``...)."""
    columns = [*SCORES, *(["coverage"] if "test/coverage" in test else [])]
    rows = [("model", [test.get(f"test/{k}") for k in columns])]
    rows += [(BASELINE_NAMES[b], [baseline.get(f"{b}/{k}") for k in columns]) for b in BASELINES]
    width = max(len(name) for name, _ in rows)
    cell = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [" " * width + "".join(f"{c:>10}" for c in columns)]
    lines += [name.ljust(width) + "".join(f"{cell(v):>10}" for v in values) for name, values in rows]
    return "\n".join(lines)


def test_forecasts(model: Any, datamodule: Any) -> List[Dict[str, Any]]:
    """Per series: its test windows' forecasts ``[N, H, K, Q]`` and truth ``[N, H, K]`` in the data's units."""
    series, origins, dataset = datamodule.split_windows("test")
    x, y, info = dataset.tensors
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z = model.forecast_outputs(x.to(device)).cpu()
    model.train(was_training)
    pred, true = model.to_units(z, info).numpy(), model.to_units(y, info).numpy()
    result, start = [], 0
    for one, o in zip(series, origins):
        result.append(
            {"series": one, "origins": o, "pred": pred[start : start + len(o)], "true": true[start : start + len(o)]}
        )
        start += len(o)
    return [r for r in result if len(r["origins"])]


def panels(
    results: Sequence[Dict[str, Any]], targets: Sequence[str], quantiles: Sequence[float], limit: int
) -> List[ForecastPanel]:
    """Plot panels of the test period: history before it, the forecasts of its windows, the truth."""
    out = []
    for r in results[:limit]:
        one, first = r["series"], r["origins"][0]
        steps = np.concatenate([np.arange(o, o + r["pred"].shape[1]) for o in r["origins"]])
        for k, target in enumerate(targets):
            pred = r["pred"][:, :, k].reshape(len(steps), -1)
            interval = (pred[:, 0], pred[:, -1]) if len(quantiles) > 1 else (None, None)
            out.append(
                ForecastPanel(
                    title=f"{one.id} - {target}: test period" if one.id != "series" else f"{target}: test period",
                    times=one.times[:first],
                    history=one.values[:first, k],
                    forecast_times=one.times[steps],
                    median=pred[:, quantiles.index(0.5) if quantiles else 0],
                    low=interval[0],
                    high=interval[1],
                    actual=r["true"][:, :, k].reshape(-1),
                    interval=f"{quantiles[0]:g}-{quantiles[-1]:g} quantiles" if len(quantiles) > 1 else "",
                )
            )
    return out


def write_test_forecasts(
    path: Path, results: Sequence[Dict[str, Any]], targets: Sequence[str], quantiles, axis
) -> None:
    """``forecast_test.csv``: id, time, step, and per target its value, forecast and quantiles."""
    levels = [f"q{q:g}" for q in quantiles] if len(quantiles) > 1 else ["forecast"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "time", "step", *[f"{t}_{c}" for t in targets for c in ("actual", *levels)]])
        for r in results:
            for n, o in enumerate(r["origins"]):
                stamps = axis.text(r["series"].times[o : o + r["pred"].shape[1]])
                for h, stamp in enumerate(stamps):
                    cells = [[r["true"][n, h, k], *r["pred"][n, h, k]] for k in range(len(targets))]
                    writer.writerow([r["series"].id, stamp, h + 1, *(f"{v:.6g}" for c in cells for v in c)])


class ForecastReport(pl.Callback):
    """Print the test table and write the test period's plot and forecasts (see the module docstring)."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        print("\nseqframe: test forecasts (data units) beside the baselines on the same windows:")
        print(score_table(test, datamodule.spec.baseline))
        state = datamodule.data_state
        results = test_forecasts(pl_module, datamodule)
        targets, quantiles = state["targets"], list(pl_module.quantiles)
        write_test_forecasts(self.output_dir / TEST_FILE, results, targets, quantiles, TimeAxis(**state["time"]))
        try:
            files = plot_forecasts(panels(results, targets, quantiles, PER_FIGURE), self.output_dir / PLOT_FILE)
        except SeqframeError as exc:  # matplotlib is optional
            print(f"seqframe: no forecast plot: {exc}")
            return
        print(f"seqframe: test forecasts in {self.output_dir / TEST_FILE}, plot {', '.join(map(str, files))}")
