"""Plots of forecasts: a series' history, the forecast, its interval and (on a test period) the truth.

Practitioners look at the forecast before they trust a number, so training
with ``data=series`` draws its test period (``forecast.png`` in the run dir)
and ``seqframe predict RUN --file F --plot forecast.png`` draws the future.
matplotlib is optional (``pip install 'seqframe[report]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from seqframe.errors import SeqframeError

PER_FIGURE = 4  # series per figure: a few, each readable
HISTORY = 400  # at most this many past steps drawn per series


@dataclass
class ForecastPanel:
    """One series and target: ``times``/``history`` before the forecast, ``forecast_times``/``median``,
    optional ``low``/``high`` (the interval) and ``actual`` (the truth on a test period)."""

    title: str
    times: np.ndarray
    history: np.ndarray
    forecast_times: np.ndarray
    median: np.ndarray
    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None
    actual: Optional[np.ndarray] = None
    interval: str = ""


def _axis_values(times: np.ndarray) -> np.ndarray:
    """Dates as day-resolution datetime64 (matplotlib draws those), numbers unchanged."""
    times = np.asarray(times)
    return times.astype("datetime64[s]") if np.issubdtype(times.dtype, np.datetime64) else times


def plot_forecasts(panels: Sequence[ForecastPanel], out: Path, per_figure: int = PER_FIGURE) -> List[Path]:
    """Draw ``panels``, ``per_figure`` to a figure: ``out``, then ``out-2.png``, ...; returns the files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SeqframeError("forecast plots need matplotlib: pip install 'seqframe[report]'") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(panels), per_figure):
        group = panels[start : start + per_figure]
        fig, axes = plt.subplots(len(group), 1, figsize=(9, 2.8 * len(group)), squeeze=False)
        for ax, p in zip(axes[:, 0], group):
            keep = slice(max(0, len(p.history) - HISTORY), None)
            ax.plot(_axis_values(p.times[keep]), p.history[keep], color="black", lw=1.2, label="history")
            when = _axis_values(p.forecast_times)
            if p.actual is not None:
                ax.plot(when, p.actual, color="black", lw=1.2, ls=":", label="actual")
            if p.low is not None and p.high is not None:
                ax.fill_between(when, p.low, p.high, color="tab:blue", alpha=0.25, label=p.interval or "interval")
            ax.plot(when, p.median, color="tab:blue", lw=1.6, label="forecast")
            ax.set_title(p.title, fontsize=10)
            ax.grid(alpha=0.3)
        axes[0, 0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = out if start == 0 else out.with_name(f"{out.stem}-{start // per_figure + 1}{out.suffix}")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
