"""``data=csv``: sequences from a CSV file, in long or wide format.

* ``format=long`` (one row per time step): ``id_column`` says which sequence a
  row belongs to, ``time_column`` (optional) orders the rows of a sequence,
  ``feature_columns`` are the inputs (default: every other column) and
  ``target_column`` the sequence's label or value (the same on each of its rows).
* ``format=wide`` (one row per sequence): ``feature_columns`` are the time
  steps in order (default: every column but id/target/split) of a single
  feature; a shorter sequence leaves its last cells empty.

``split_column`` (optional) puts each sequence in ``train``/``val``/``test``;
without it the split is by fraction and seed. ``horizon=H`` turns the task
into forecasting: the input is a sequence without its last ``H`` steps;
``forecast=many_to_one`` learns the ``target_column`` value(s) on those steps
(a regression of ``H x targets`` values), ``forecast=many_to_many`` learns at
every step ``t`` the values of the ``H`` steps after ``t``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from seqframe.data.base import SPLITS
from seqframe.data.files import DataFileError, FileDataModule, Sequences, check_finite, require_columns

FORMATS = ("long", "wide")
FORECASTS = ("many_to_one", "many_to_many")


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataFileError(
            f"{path}: line {line}, column {column!r}: {text!r} is not a number; fix the value "
            f"(or leave {column!r} out of data.feature_columns)"
        ) from None


def _label(text: str) -> Union[int, float, str]:
    """A target cell as an int when it is one, else a float, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _as_list(columns: Union[None, str, Sequence[str]]) -> Optional[List[str]]:
    return None if columns is None else [columns] if isinstance(columns, str) else [str(c) for c in columns]


class CsvDataModule(FileDataModule):
    """Sequences from a CSV file; the module docstring describes both formats.

    The other keys are :class:`~seqframe.data.files.FileDataModule`'s
    (task, fractions, max_len, normalisation).
    """

    format_name = "csv"
    per_step_hint = (
        "set data.horizon=H data.forecast=many_to_many to forecast, at every step, the next H values of "
        "data.target_column"
    )

    @property
    def position_gap(self) -> int:
        """A forecast's horizon: train and val stop that many steps early, so no target reaches the next part."""
        return self.horizon or 0

    def __init__(
        self,
        path: Optional[str] = None,
        format: str = "long",
        id_column: Optional[str] = "id",
        time_column: Optional[str] = None,
        feature_columns: Union[None, str, Sequence[str]] = None,
        target_column: Union[None, str, Sequence[str]] = "target",
        split_column: Optional[str] = None,
        horizon: Optional[int] = None,
        forecast: str = "many_to_one",
        **options: Any,
    ) -> None:
        if format not in FORMATS:
            raise DataFileError(f"data.format={format!r} is not valid; choose long or wide")
        if forecast not in FORECASTS:
            raise DataFileError(f"data.forecast={forecast!r} is not valid; choose many_to_one or many_to_many")
        if horizon is not None and int(horizon) < 1:
            raise DataFileError(f"data.horizon={horizon} must be a positive number of steps (or null)")
        self.format, self.id_column, self.time_column = format, id_column, time_column
        self.feature_columns, self.targets = _as_list(feature_columns), _as_list(target_column) or []
        self.split_column, self.horizon = split_column, None if horizon is None else int(horizon)
        self.forecast = forecast
        if self.horizon is not None and options.get("task", "auto") == "auto":  # the YAML passes task=auto
            options["task"] = "regress" if forecast == "many_to_one" else "per_step_regress"
        super().__init__(path=path, **options)

    def _rows(self, path: Path) -> tuple[List[str], List[Dict[str, str]]]:
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                rows = list(reader)
        except UnicodeDecodeError:
            raise DataFileError(
                f"{path}: not a UTF-8 text CSV file (binary: an .npz or .npy? then use data=numpy)"
            ) from None
        if not header or not rows:
            raise DataFileError(f"{path}: no header and data rows; the first line must name the columns")
        return header, rows

    def _columns(self, path: Path, header: List[str], with_targets: bool) -> List[str]:
        """The feature columns, after checking that every named column exists."""
        special = [c for c in (self.id_column, self.time_column, self.split_column) if c]
        forecast = self.horizon is not None
        targets = self.targets if with_targets or forecast else []
        features = self.feature_columns or [
            c for c in header if c not in special and (forecast or c not in self.targets)
        ]
        required = {
            "data.id_column": [self.id_column] if self.format == "long" and self.id_column else [],
            "data.time_column": [self.time_column] if self.time_column else [],
            "data.split_column": [self.split_column] if self.split_column and with_targets else [],
            "data.target_column": targets,
            "data.feature_columns": features,
        }
        if self.format == "long" and self.id_column and self.id_column not in header:
            raise DataFileError(
                f"{path}: column {self.id_column!r} (data.id_column) is missing; the header has {header}. "
                f"Name the column that says which sequence a row belongs to with data.id_column=, or, for a "
                f"file that is one series, set data.id_column=null"
            )
        require_columns(path, header, required)
        if not features:
            raise DataFileError(f"{path}: no feature columns left (header {header}); set data.feature_columns=")
        return features

    def read(self, path: Path, with_targets: bool) -> Sequences:
        header, rows = self._rows(path)
        features = self._columns(path, header, with_targets)
        read = self._read_long if self.format == "long" else self._read_wide
        seqs = read(path, rows, features, with_targets)
        return self._forecast(path, seqs) if self.horizon is not None and with_targets else seqs

    def _split_of(self, path: Path, line: int, row: Dict[str, str]) -> str:
        value = row[self.split_column].strip()
        if value not in SPLITS:
            raise DataFileError(
                f"{path}: line {line}, column {self.split_column!r}: {value!r} is not train, val or test; fix the value"
            )
        return value

    def _read_long(self, path: Path, rows: List[Dict[str, str]], features: List[str], with_targets: bool) -> Sequences:
        groups: Dict[str, List[tuple[int, Dict[str, str]]]] = {}
        for line, row in enumerate(rows, start=2):
            key = row[self.id_column] if self.id_column else ""
            groups.setdefault(key, []).append((line, row))
        xs, ys, ids, where, split = [], [], [], [], []
        for key, members in groups.items():
            if self.time_column:
                times = [(_number(r[self.time_column], path, line, self.time_column), line) for line, r in members]
                order = sorted(range(len(members)), key=lambda i: times[i][0])
                for a, b in zip(order, order[1:]):
                    if times[a][0] == times[b][0]:
                        raise DataFileError(
                            f"{path}: lines {times[a][1]} and {times[b][1]}: sequence {key!r} has two rows at "
                            f"{self.time_column}={times[a][0]:g}; remove the duplicate"
                        )
                members = [members[i] for i in order]
            x = np.array([[_number(r[c], path, line, c) for c in features] for line, r in members])
            check_finite(x, path, "a feature", [f"sequence {key!r} (line {line})" for line, _ in members])
            xs.append(x)
            ids.append(key)
            where.append(f"sequence {key!r} (lines {members[0][0]}-{members[-1][0]})")
            if self.split_column and with_targets:
                split.append(self._one_value(path, key, members, self.split_column, self._split_of))
            if with_targets and self.horizon is None:
                ys.append(self._one_value(path, key, members, None, None))
            elif with_targets:  # forecasting: the target columns at every step (cut by _forecast)
                ys.append(np.array([[_number(r[c], path, line, c) for c in self.targets] for line, r in members]))
        return Sequences(xs, ys if ys else None, ids, where, features, split or None)

    def _one_value(self, path: Path, key: str, members, column: Optional[str], parse) -> Any:
        """The value a sequence has on every row (its target or split); a second value is an error."""
        column = column or self.targets[0]
        values = {}
        for line, row in members:
            value = parse(path, line, row) if parse else self._target(path, line, row)
            values.setdefault(value, line)
        if len(values) > 1:
            (a, line_a), (b, line_b) = list(values.items())[:2]
            raise DataFileError(
                f"{path}: sequence {key!r} has {column}={a!r} (line {line_a}) and {b!r} (line {line_b}); "
                f"a sequence has one {column} value: fix the rows or give the sequences different ids"
            )
        return next(iter(values))

    def _target(self, path: Path, line: int, row: Dict[str, str]) -> Any:
        if len(self.targets) != 1:
            raise DataFileError(f"{path}: give one data.target_column for classify/regress (got {self.targets})")
        text = row[self.targets[0]].strip()
        if text == "":
            raise DataFileError(
                f"{path}: line {line}: the target {self.targets[0]!r} is empty; fill it in or remove the row"
            )
        value = _label(text)
        if isinstance(value, float) and not np.isfinite(value):
            raise DataFileError(f"{path}: line {line}: the target {self.targets[0]!r} is {text}; fix the value")
        return value

    def _read_wide(self, path: Path, rows: List[Dict[str, str]], features: List[str], with_targets: bool) -> Sequences:
        xs, ys, ids, where, split = [], [], [], [], []
        for line, row in enumerate(rows, start=2):
            cells = [(row.get(c) or "").strip() for c in features]
            length = max((i + 1 for i, c in enumerate(cells) if c), default=0)
            gap = next((i for i in range(length) if not cells[i]), None)
            if length == 0 or gap is not None:
                column = features[gap if gap is not None else 0]
                raise DataFileError(
                    f"{path}: line {line}, column {column!r} is empty; in wide format only a sequence's last "
                    f"cells may be empty (a shorter sequence): fill the value or remove the row"
                )
            x = np.array([[_number(cells[i], path, line, features[i])] for i in range(length)])
            check_finite(x, path, "a step", [f"line {line}"] * length)
            xs.append(x)
            ids.append(row[self.id_column] if self.id_column and self.id_column in row else line - 2)
            where.append(f"line {line}")
            if with_targets:
                ys.append(self._target(path, line, row))
                if self.split_column:
                    split.append(self._split_of(path, line, row))
        return Sequences(xs, ys if with_targets else None, ids, where, ["value"], split or None)

    def _forecast(self, path: Path, seqs: Sequences) -> Sequences:
        """Inputs without the last ``horizon`` steps; targets: the values on those steps
        (many-to-one) or, at every step t, on steps t+1..t+horizon (many-to-many).
        Sequences of ``horizon`` steps or fewer have nothing to read: dropped and counted."""
        h = self.horizon
        keep = [i for i, x in enumerate(seqs.xs) if len(x) > h]
        short = len(seqs.xs) - len(keep)
        out = seqs.subset(keep)
        for i, where in enumerate(out.where):
            target = out.ys[i]
            check_finite(target, path, "the forecast target", [where] * len(target))
            steps = len(target) - h
            if self.forecast == "many_to_one":
                out.ys[i] = target[-h:].reshape(-1)
            else:
                out.ys[i] = np.stack([target[t + 1 : t + 1 + h].reshape(-1) for t in range(steps)])
            out.xs[i] = out.xs[i][:steps]
        if short:
            out.dropped["shorter_than_horizon_plus_one"] = short
            print(f"seqframe: {path}: dropped {short} sequences with at most data.horizon={h} steps")
        return out
