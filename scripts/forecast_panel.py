"""A generated panel of hourly series for ``experiment=forecast_panel`` (issue 18): one global model.

Each series is a level with a per-series linear trend, a daily cycle (its
own amplitude and peak hour), a weekly pattern (weekdays above weekends, its
own size) and AR(1) noise; a quarter of the series are shorter (4-6 weeks
instead of 8). The seasonal naive of the benchmark repeats yesterday (m=24),
so a model that reads the calendar and the level beats it (MASE < 1)::

    .venv/bin/python scripts/forecast_panel.py forecast_panel.csv            # 200 series
    .venv/bin/seqframe-train experiment=forecast_panel data.path=forecast_panel.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

WEEKS = 8  # hours of the long series: 8 weeks
START = np.datetime64("2024-01-01T00", "h")  # a Monday


def one_series(rng: np.random.Generator, hours: int) -> np.ndarray:
    """One series of ``hours`` values: level, trend, daily and weekly seasonality, AR(1) noise."""
    t = np.arange(hours)
    level = rng.uniform(50, 150)
    trend = level * rng.uniform(-0.15, 0.3) * t / (WEEKS * 168)
    daily = level * rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * (t - rng.integers(0, 24)) / 24)
    day = (t // 24) % 7  # 0 Monday ... 6 Sunday (the panel starts on a Monday)
    weekly = -level * rng.uniform(0.05, 0.25) * (day >= 5)
    noise = np.zeros(hours)
    shocks = rng.normal(0, level * 0.03, hours)
    for i in range(1, hours):
        noise[i] = 0.6 * noise[i - 1] + shocks[i]
    return level + trend + daily + weekly + noise


def write_panel(path: Path, series: int = 200, seed: int = 0) -> int:
    """Write the panel as ``id,time,load`` rows; returns the number of rows."""
    rng = np.random.default_rng(seed)
    rows = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "time", "load"])
        for s in range(series):
            weeks = WEEKS if s % 4 else int(rng.integers(4, 7))  # every 4th series is shorter
            values = one_series(rng, weeks * 168)
            times = np.datetime_as_string(START + np.arange(len(values)).astype("timedelta64[h]"), unit="m")
            writer.writerows([f"s{s:03d}", str(t).replace("T", " "), f"{v:.3f}"] for t, v in zip(times, values))
            rows += len(values)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the CSV to write")
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = write_panel(args.out, args.series, args.seed)
    print(f"{args.out}: {args.series} series, {rows} rows")


if __name__ == "__main__":
    main()
