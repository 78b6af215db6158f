"""Reading long series from a CSV file for ``data=series``: one row per time step, checked strictly.

A forecaster's windows assume that each series is sorted, has one row per
time step, no gaps and no missing values; a silent fix (re-sorting, filling)
would change what the model learns, so every violation is refused with one
line that names the file, the series, the line and the fix.

Time stamps are numbers or ISO dates (``1949-01``, ``2020-01-01``,
``2020-01-01 13:00``); dates are kept as ``datetime64`` in the coarsest unit
that holds them exactly (months stay months), so that future time stamps and
calendar covariates (month, day of week, hour) follow the calendar.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from seqframe.data.files import DataFileError, require_columns

BUILTIN = Path(__file__).resolve().parent / "builtin"  # series shipped with the package: data.path=NAME
UNITS = ("Y", "M", "D", "h", "m", "s")  # datetime64 units, coarsest first
UNIT_NAMES = {"Y": "year", "M": "month", "D": "day", "h": "hour", "m": "minute", "s": "second"}
CALENDAR = {"month": 12, "day_of_week": 7, "hour": 24}  # calendar covariate -> its period
AUTO_CALENDAR = {"M": ["month"], "D": ["day_of_week", "month"], "h": ["day_of_week", "hour"]}
AUTO_SEASON = {("M", 1): 12, ("D", 1): 7, ("D", 7): 52, ("h", 1): 24, ("m", 60): 24}  # (unit, step) -> m


def builtin_series() -> List[str]:
    """The names of the series that ship with seqframe (``data.path=airpassengers``)."""
    return sorted(p.stem for p in BUILTIN.glob("*.csv"))


def resolve_path(path: Optional[str]) -> Path:
    """``data.path``: a file, else the name of a built-in series; refused with what to give instead."""
    known = ", ".join(builtin_series())
    if not path:
        raise DataFileError(f"data=series needs a file: add data.path=/path/to/series.csv (or a built-in: {known})")
    resolved = Path(path).expanduser()
    if resolved.is_file():
        if resolved.stat().st_size == 0:
            raise DataFileError(f"{resolved}: the file is empty; give a CSV with a header and one row per time step")
        return resolved
    builtin = BUILTIN / f"{path}.csv"
    if builtin.is_file():
        return builtin
    raise DataFileError(
        f"data.path={path!r}: no such file (relative paths start at the current directory) and no built-in "
        f"series of that name (built-in: {known})"
    )


@dataclass(frozen=True)
class TimeAxis:
    """How a file's time stamps count: ``kind`` ``date`` (datetime64 in ``unit``), ``number`` or
    ``row`` (no time column: the row order), and the regular ``step`` between two rows."""

    kind: str
    unit: Optional[str] = None
    step: int = 1

    def as_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit, "step": self.step}

    def describe(self) -> str:
        if self.kind != "date":
            return f"{self.step:g} ({'row' if self.kind == 'row' else 'time unit'})"
        return f"{self.step} {UNIT_NAMES[self.unit]}{'s' if self.step != 1 else ''}"

    def future(self, last: Any, count: int) -> np.ndarray:
        """The ``count`` time stamps after ``last``."""
        steps = np.arange(1, count + 1) * self.step
        if self.kind == "date":
            return np.datetime64(last, self.unit) + steps.astype(f"timedelta64[{self.unit}]")
        return np.asarray(last) + steps

    def text(self, times: np.ndarray) -> List[str]:
        """Time stamps as the CSV shows them (ISO dates in the file's unit)."""
        if self.kind == "date":
            return [str(t) for t in np.datetime_as_string(times.astype(f"datetime64[{self.unit}]"), unit=self.unit)]
        return [f"{t:g}" for t in np.asarray(times, dtype=np.float64)]

    def calendar(self, times: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Known-future covariates ``[T, 2 * len(names)]``: sine and cosine of each calendar position."""
        columns = []
        for name in names:
            position = calendar_position(times, name).astype(np.float64)
            angle = 2 * np.pi * position / CALENDAR[name]
            columns += [np.sin(angle), np.cos(angle)]
        return np.stack(columns, axis=1) if columns else np.zeros((len(times), 0))

    def default_calendar(self) -> List[str]:
        return list(AUTO_CALENDAR.get(self.unit, [])) if self.kind == "date" else []

    def default_season(self) -> int:
        return AUTO_SEASON.get((self.unit, self.step), 1) if self.kind == "date" else 1


def calendar_position(times: np.ndarray, name: str) -> np.ndarray:
    """Month 0-11, day of week 0-6 (Monday 0) or hour 0-23 of datetime64 time stamps."""
    if name == "month":
        return times.astype("datetime64[M]").astype(np.int64) % 12
    if name == "day_of_week":
        return (times.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return times.astype("datetime64[h]").astype(np.int64) % 24


@dataclass
class Series:
    """One series: ``values`` ``[T, K]`` targets (None when not read), ``features`` ``[T, F]``,
    ``times`` ``[T]`` and the file ``lines`` of its rows (for messages)."""

    id: str
    times: np.ndarray
    values: Optional[np.ndarray]
    features: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


def _parse_times(
    texts: List[str], lines: List[int], keys: List[str], path: Path, column: str
) -> Tuple[np.ndarray, str]:
    """All time stamps as floats (``number``) or datetime64 (``date``); the first bad one is refused."""
    kind = "number"
    try:
        float(texts[0])
    except ValueError:
        kind = "date"
    parsed = []
    for text, line, key in zip(texts, lines, keys):
        try:
            parsed.append(float(text) if kind == "number" else np.datetime64(text.strip()))
        except ValueError:
            expected = "a number, as on line 2" if kind == "number" else "an ISO date (1949-01, 2020-01-01 13:00)"
            raise DataFileError(
                f"{path}: series {key!r}, line {line}: time {text!r} in {column!r} is not {expected}; fix the value"
            ) from None
    if kind == "number":
        return np.asarray(parsed, dtype=np.float64), kind
    return np.asarray(parsed, dtype="datetime64"), kind


def coarsest_unit(times: np.ndarray) -> str:
    """The coarsest datetime64 unit that holds every time stamp exactly (monthly data: ``M``)."""
    for unit in UNITS:
        if (times.astype(f"datetime64[{unit}]").astype(times.dtype) == times).all():
            return unit
    return np.datetime_data(times.dtype)[0]


def _number_cell(text: str, path: Path, key: str, line: int, column: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        shown = "empty" if not text.strip() else f"{text!r}, not a number"
        raise DataFileError(
            f"{path}: series {key!r}, line {line}: the {what} {column!r} is {shown}; fill in the missing value "
            f"(e.g. interpolate between its neighbours) or remove series {key!r}"
        )
    return value


def _numbers(rows, members, index, columns, path: Path, key: str, what: str) -> np.ndarray:
    """``[len(members), len(columns)]``: the named columns of a series' rows, every cell a finite number."""
    cells = [[_number_cell(rows[line - 1][index[c]], path, key, line, c, what) for c in columns] for line in members]
    return np.array(cells, dtype=np.float64).reshape(len(members), len(columns))


def _check_steps(series: List[Series], axis_kind: str, path: Path, column: str, unit: Optional[str]) -> int:
    """Every series sorted, without duplicates, at one regular step (the most common one); returns it."""
    fmt = (lambda t: f"{t:g}") if axis_kind != "date" else (lambda t: str(t))
    diffs = []
    for s in series:
        d = np.diff(s.times).astype(np.int64) if axis_kind == "date" else np.diff(s.times)
        bad = np.flatnonzero(d <= 0)
        if len(bad):
            i = int(bad[0])
            a, b = (fmt(s.times[i]), int(s.lines[i])), (fmt(s.times[i + 1]), int(s.lines[i + 1]))
            if d[i] == 0:
                raise DataFileError(
                    f"{path}: series {s.id!r} has two rows at {column}={a[0]} (lines {a[1]} and {b[1]}); "
                    f"remove the duplicate"
                )
            raise DataFileError(
                f"{path}: series {s.id!r} is not sorted by {column!r} ({b[0]} on line {b[1]} comes after {a[0]} "
                f"on line {a[1]}); sort the file by series and time"
            )
        diffs.append(d)
    every = np.concatenate(diffs)
    if not len(every):
        return 1
    values, counts = np.unique(every, return_counts=True)
    step = values[int(np.argmax(counts))]
    for s, d in zip(series, diffs):
        off = np.flatnonzero(d != step)
        if len(off):
            i = int(off[0])
            a, b = fmt(s.times[i]), fmt(s.times[i + 1])
            where = f"from {a} (line {int(s.lines[i])}) to {b} (line {int(s.lines[i + 1])})"
            size = f"{step:g} {UNIT_NAMES[unit]}(s)" if unit else f"{step:g}"
            if d[i] % step == 0:
                raise DataFileError(
                    f"{path}: series {s.id!r} has a gap {where}: {int(d[i] // step) - 1} missing steps of {size}; "
                    f"add the missing rows (e.g. interpolated values) or split the series in two ids"
                )
            raise DataFileError(
                f"{path}: series {s.id!r} jumps {where}, not a multiple of the data's step of {size}; "
                f"resample the file to one regular step"
            )
    return int(step) if float(step).is_integer() else step


def read_series(
    path: Path,
    id_column: Optional[str],
    time_column: Optional[str],
    targets: Optional[Sequence[str]],
    features: Sequence[str],
    with_targets: bool = True,
) -> Tuple[List[Series], TimeAxis, List[str]]:
    """Every series of a long-format CSV (series in order of first appearance), its time axis, and the
    target columns (``targets`` None: every column that is not id, time or a feature)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a UTF-8 text CSV file; give one row per time step, header first") from None
    if len(rows) < 2:
        raise DataFileError(f"{path}: no header and data rows; the first line must name the columns")
    header = [h.strip() for h in rows[0]]
    special = [c for c in (id_column, time_column) if c]
    targets = list(targets) if targets else [c for c in header if c not in special and c not in features]
    required = {
        "data.id_column": [id_column] if id_column else [],
        "data.time_column": [time_column] if time_column else [],
        "data.target_columns": targets if with_targets else [],
        "data.feature_columns": list(features),
    }
    require_columns(path, header, required)
    if with_targets and not targets:
        raise DataFileError(f"{path}: no column left to forecast (header {header}); set data.target_columns=")
    index = {c: i for i, c in enumerate(header)}
    groups: Dict[str, List[int]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) < len(header):
            row += [""] * (len(header) - len(row))
            rows[number - 1] = row
        groups.setdefault(row[index[id_column]].strip() if id_column else "series", []).append(number)
    texts, lines, keys = [], [], []
    for key, members in groups.items():
        for line in members:
            keys.append(key)
            lines.append(line)
            texts.append(rows[line - 1][index[time_column]] if time_column else str(len(lines)))
    if time_column:
        stamps, kind = _parse_times(texts, lines, keys, path, time_column)
    else:
        stamps, kind = np.zeros(len(lines)), "row"
    unit = coarsest_unit(stamps) if kind == "date" else None
    if unit:
        stamps = stamps.astype(f"datetime64[{unit}]")
    series, start = [], 0
    for key, members in groups.items():
        n = len(members)
        times = stamps[start : start + n] if kind != "row" else np.arange(n, dtype=np.float64)
        start += n
        values = _numbers(rows, members, index, targets, path, key, "target") if with_targets else None
        found = _numbers(rows, members, index, features, path, key, "feature")
        series.append(Series(key, times, values, found, np.asarray(members)))
    step = _check_steps(series, kind, path, time_column or "row", unit)
    return series, TimeAxis(kind, unit, step), targets
