"""``seqframe report``'s forecasting section: each forecaster's test scores beside its baselines'.

A run trained with ``data=series`` has its test scores (``test/mae``...) and,
in ``baseline``, the naive, seasonal-naive and growth-scaled seasonal-naive
scores of the same test windows; this section puts them in one table, with
the interval coverage of runs trained with quantiles. Reads summary.json only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

from seqframe.data.forecast_scores import BASELINES, SCORES
from seqframe.harness.rundir import RunDir


def _number(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.4g}"


def forecast_rows(runs: Sequence[Path]) -> List[Dict[str, str]]:
    """One row per forecasting run and score: the model's value and each baseline's."""
    rows = []
    for run in runs:
        summary = RunDir(run).read_summary()
        baseline = (summary.baseline or {}) if summary else {}
        if summary is None or "seasonal_naive/mae" not in baseline:
            continue
        test = summary.test or {}
        for score in (*SCORES, "coverage"):
            if score == "coverage" and "test/coverage" not in test:
                continue
            row = {
                "run": str(run),
                "cell": summary.cell or "-",
                "score": score,
                "model": _number(test.get(f"test/{score}")),
            }
            row.update({b: _number(baseline.get(f"{b}/{score}")) for b in BASELINES})
            rows.append(row)
    return rows


def forecast_section(runs: Sequence[Path]) -> str:
    """The markdown section for the forecasting runs among ``runs`` ('' when there are none)."""
    rows = forecast_rows(runs)
    if not rows:
        return ""
    columns = ("run", "cell", "score", "model", *BASELINES)
    lines = ["", "## Forecasts: test scores beside the baselines (data units; MAPE, sMAPE in %)", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
