"""``data=series``: forecasting the future of long series, cut into sliding windows and split by time.

A CSV in long format (one row per time step; ``id_column`` for several
series, one global model across them) becomes many samples: each reads
``input_len`` steps and forecasts the next ``horizon`` steps of the
``target_columns``. The last ``test_size`` steps of every series are its
test period and the ``val_size`` steps before them its validation period:

* training windows start every ``stride`` steps (counted back from the end of
  the training period) and their targets never reach the val/test period;
* val/test windows start at the cut and every ``horizon`` steps after it
  (each step forecast once); their inputs look back into earlier data, as a
  forecaster's would;
* values are standardised per series (``normalize=series``; ``global``: one
  mean and std for all) on the training period only, after an optional
  ``transform=log``; with ``window_norm`` each window is also taken relative
  to its input's mean level (trends). Predictions and metrics are in the
  data's own units;
* a date-time ``time_column`` gives calendar covariates (month, day of
  week, hour: ``calendar=auto`` picks by the step) as known-future inputs:
  the model reads ``horizon`` more steps that carry the calendar of the
  forecast period (and a flag) but no values;
* naive, seasonal-naive and growth-scaled seasonal-naive forecasts are scored
  on the same test windows (the TaskSpec's ``baseline``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from seqframe.data.base import SPLITS, TaskDataModule, TaskSpec
from seqframe.data.files import DataFileError
from seqframe.data.forecast_scores import BASELINES, baseline_forecasts, mase_scale, score_forecasts
from seqframe.data.series_io import CALENDAR, Series, TimeAxis, read_series, resolve_path

NORMALIZE = ("series", "global", "none")
TRANSFORMS = ("none", "log")
TOO_SHORT = ("error", "drop")


def to_units(z: Tensor, info: Tensor, log: bool) -> Tensor:
    """Normalised values ``z`` ``[B, H, K, ...]`` back in the data's units, with a window's ``info``
    ``[B, 3, K]`` (location, scale, MASE scale): ``loc + scale * z``, then ``exp`` after ``transform=log``."""
    shape = (z.shape[0], 1, z.shape[2]) + (1,) * (z.dim() - 3)
    value = info[:, 0].reshape(shape) + info[:, 1].reshape(shape) * z
    return value.exp() if log else value


def window_origins(
    n: int, input_len: int, horizon: int, stride: int, val_size: int, test_size: int
) -> Dict[str, List[int]]:
    """The first forecast step of every window of a series of ``n`` steps, per split (the rule in the
    module docstring): a window reads steps ``[o - input_len, o)`` and forecasts ``[o, o + horizon)``."""
    train_end, val_end = n - val_size - test_size, n - test_size
    train = list(range(train_end - horizon, input_len - 1, -stride))[::-1]
    return {
        "train": train,
        "val": list(range(train_end, val_end - horizon + 1, horizon)),
        "test": list(range(val_end, n - horizon + 1, horizon)),
    }


def _names(columns: Union[None, str, Sequence[str]]) -> Optional[List[str]]:
    return None if columns is None else [columns] if isinstance(columns, str) else [str(c) for c in columns]


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if value is None or isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise DataFileError(f"data.{name}={value!r} must be an integer >= {minimum}")
    return int(value)


class SeriesDataModule(TaskDataModule):
    """Forecasting windows from a CSV of long series; the module docstring has the rules.

    Args:
        path: the CSV file, or the name of a built-in series (``airpassengers``).
        id_column: the series a row belongs to (null: the file is one series).
        time_column: numbers or ISO dates, one regular step (null: the row order).
        target_columns: the columns to forecast (null: every column but id, time and features).
        feature_columns: observed covariates, read over the input window only.
        input_len, horizon, stride: steps read, steps forecast, steps between training windows.
        season_length: m of the seasonal naive and the MASE scale (null: from the step: 12 for months,
            7 for days, 24 for hours, else 1).
        val_size, test_size: steps at the end of every series (null: ``horizon``).
        normalize: ``series``, ``global`` or ``none``; transform: ``none`` or ``log``;
        window_norm: each window relative to its input's mean level.
        calendar: ``auto``, ``none`` or a list of ``month``, ``day_of_week``, ``hour``.
        too_short: a series too short for its windows is an ``error`` or dropped (``drop``, counted).
        data_state: what a trained model saved (given back by ``seqframe eval``/``predict``).
    """

    def __init__(
        self,
        path: Optional[str] = None,
        id_column: Optional[str] = None,
        time_column: Optional[str] = None,
        target_columns: Union[None, str, Sequence[str]] = None,
        feature_columns: Union[None, str, Sequence[str]] = None,
        input_len: int = 24,
        horizon: int = 1,
        stride: int = 1,
        season_length: Optional[int] = None,
        val_size: Optional[int] = None,
        test_size: Optional[int] = None,
        normalize: str = "series",
        transform: str = "none",
        window_norm: bool = False,
        calendar: Union[str, Sequence[str]] = "auto",
        too_short: str = "error",
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        num_workers: int = 0,
        data_state: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers, shuffle=shuffle)
        for key, value, choices in (
            ("normalize", normalize, NORMALIZE),
            ("transform", transform, TRANSFORMS),
            ("too_short", too_short, TOO_SHORT),
        ):
            if value not in choices:
                raise DataFileError(f"data.{key}={value!r} is not valid; choose one of {', '.join(choices)}")
        horizon = _positive("horizon", horizon)
        self.settings: Dict[str, Any] = {
            "id_column": id_column,
            "time_column": time_column,
            "targets": _names(target_columns),
            "features": _names(feature_columns) or [],
            "input_len": _positive("input_len", input_len),
            "horizon": horizon,
            "stride": _positive("stride", stride),
            "season_length": None if season_length is None else _positive("season_length", season_length),
            "val_size": horizon if val_size is None else _positive("val_size", val_size, horizon),
            "test_size": horizon if test_size is None else _positive("test_size", test_size, horizon),
            "normalize": normalize,
            "transform": transform,
            "window_norm": bool(window_norm),
            "calendar": calendar,
            "too_short": too_short,
        }
        self.path = resolve_path(path)
        self.state: Dict[str, Any] = dict(data_state or {})
        self.report: Dict[str, Any] = {}
        self.series: Optional[List[Series]] = None
        if not self.state:  # training: fit on the training periods now (the model needs the spec)
            self._fit(*self._read(self.path))

    # -- reading and fitting ----------------------------------------------------------
    def _read(self, path, with_targets: bool = True) -> Tuple[List[Series], TimeAxis, List[str]]:
        s = self.state or self.settings
        return read_series(path, s["id_column"], s["time_column"], s["targets"], s["features"], with_targets)

    def _calendar(self, axis: TimeAxis) -> List[str]:
        chosen = self.settings["calendar"]
        if chosen in (None, "none"):
            return []
        if chosen == "auto":
            return axis.default_calendar()
        names = _names(chosen) or []
        unknown = [n for n in names if n not in CALENDAR]
        if unknown:
            raise DataFileError(f"data.calendar: {unknown[0]!r} is not one of auto, none, {', '.join(CALENDAR)}")
        if names and axis.kind != "date":
            raise DataFileError(
                f"{self.path}: data.calendar={names} needs dates in data.time_column (e.g. 2020-01-01 13:00); "
                f"this file's time is {'the row order' if axis.kind == 'row' else 'a number'}: set data.calendar=none"
            )
        return names

    def _long_enough(self, series: List[Series], season: int) -> List[Series]:
        """The series with room for a training window, a val and a test period (and a season to scale
        MASE by); a shorter one is an error or, with ``too_short=drop``, dropped and counted."""
        s = self.settings
        need = s["input_len"] + s["horizon"] + s["val_size"] + s["test_size"]
        need = max(need, s["val_size"] + s["test_size"] + season + 1)
        short = [one for one in series if len(one) < need]
        if short and s["too_short"] == "error":
            one = short[0]
            raise DataFileError(
                f"{self.path}: series {one.id!r} has {len(one)} steps; it needs at least {need} (input_len "
                f"{s['input_len']} + horizon {s['horizon']} + val_size {s['val_size']} + test_size {s['test_size']}, "
                f"and more than season_length {season} before the val period): lower those, or set "
                f"data.too_short=drop to leave out such series ({len(short)} of {len(series)})"
            )
        if len(short) == len(series):
            raise DataFileError(f"{self.path}: every series is shorter than {need} steps; lower data.input_len")
        if short:
            self.report.setdefault("dropped", {})["shorter_than_needed"] = len(short)
            print(f"seqframe: {self.path}: dropped {len(short)} series shorter than {need} steps (too_short=drop)")
        return [one for one in series if len(one) >= need]

    def _fit(self, series: List[Series], axis: TimeAxis, targets: List[str]) -> None:
        """Everything learned from the training periods: statistics, MASE scales, the baselines' scores."""
        s = self.settings
        season = s["season_length"] or axis.default_season()
        series = self._long_enough(series, season)
        train = [one.values[: len(one) - s["val_size"] - s["test_size"]] for one in series]
        if s["transform"] == "log":
            for one in series:
                bad = np.argwhere(one.values <= 0)
                if len(bad):
                    row, col = bad[0]
                    raise DataFileError(
                        f"{self.path}: series {one.id!r}, line {one.lines[row]}: {targets[col]}="
                        f"{one.values[row, col]:g}; data.transform=log needs values > 0: use data.transform=none"
                    )
        moments = [self._moments(self._transform(t)) for t in train]
        if s["normalize"] == "global":
            pooled = self._moments(np.concatenate([self._transform(t) for t in train]))
            moments = [pooled] * len(series)
        features = [one.features[: len(t)] for one, t in zip(series, train)]
        feature_moments = self._moments(np.concatenate(features)) if s["features"] else ([], [])
        scales = []
        for one, t in zip(series, train):
            scale = mase_scale(t, season)
            if (scale <= 0).any():
                print(f"seqframe: series {one.id!r} repeats itself every {season} steps: MASE scaled by 1 for it")
            scales.append(np.where(scale > 0, scale, 1.0).tolist())
        calendar = self._calendar(axis)
        self.state = {
            "format": "series",
            **{k: v for k, v in s.items() if k != "calendar"},
            "targets": targets,
            "season_length": season,
            "calendar": calendar,
            "time": axis.as_dict(),
            "series": {
                one.id: {"mean": m[0], "std": m[1], "mase_scale": sc} for one, m, sc in zip(series, moments, scales)
            },
            "feature_mean": feature_moments[0],
            "feature_std": feature_moments[1],
            "input_size": len(targets) + len(s["features"]) + (2 * len(calendar) + 1 if calendar else 0),
            "forecast": {"horizon": s["horizon"], "targets": targets, "log": s["transform"] == "log"},
        }
        self.series, self.axis = series, axis
        self.state["baseline"] = self._baselines(series)
        windows = {split: sum(len(self._origins(one)[split]) for one in series) for split in SPLITS}
        if windows["train"] == 0:
            raise DataFileError(
                f"{self.path}: no training window fits; lower data.input_len or data.val_size/test_size"
            )
        self.report.update(
            series=len(series),
            windows=windows,
            step=axis.describe(),
            season_length=season,
            calendar=calendar,
            input_size=self.state["input_size"],
        )
        print(
            f"seqframe: {self.path}: {len(series)} series, a step of {axis.describe()}, windows {windows}, "
            f"season_length {season}, calendar {calendar or 'none'}"
        )

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.state.get("transform", self.settings["transform"]) == "log" else values

    def _moments(self, values: np.ndarray) -> Tuple[List[float], List[float]]:
        if (self.state or self.settings)["normalize"] == "none":
            return [0.0] * values.shape[1], [1.0] * values.shape[1]
        std = values.std(axis=0)
        return values.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()

    def _origins(self, one: Series) -> Dict[str, List[int]]:
        s = self.state
        return window_origins(len(one), s["input_len"], s["horizon"], s["stride"], s["val_size"], s["test_size"])

    def _baselines(self, series: List[Series]) -> Dict[str, float]:
        """The baselines' scores on the test windows; the plain keys are the seasonal naive's (the benchmark)."""
        h, m = self.state["horizon"], self.state["season_length"]
        forecasts: Dict[str, list] = {name: [] for name in BASELINES}
        true, scale = [], []
        for one in series:
            for o in self._origins(one)["test"]:
                for name, values in baseline_forecasts(one.values[:o], h, m).items():
                    forecasts[name].append(values)
                true.append(one.values[o : o + h])
                scale.append(self.state["series"][one.id]["mase_scale"])
        result: Dict[str, float] = {}
        for name in BASELINES:
            values = score_forecasts(np.stack(forecasts[name]), np.stack(true), np.asarray(scale))
            result.update({f"{name}/{k}": v for k, v in values.items()})
        result.update({k.split("/", 1)[1]: v for k, v in result.items() if k.startswith("seasonal_naive/")})
        return result

    # -- windows ---------------------------------------------------------------------
    def series_stats(self, one: Series) -> Dict[str, Any]:
        """A series' saved statistics; a series the model never saw is standardised on its own history."""
        known = self.state["series"].get(one.id)
        if known is not None:
            return known
        if self.state["normalize"] == "global":
            return {**next(iter(self.state["series"].values())), "mase_scale": [1.0] * len(self.state["targets"])}
        mean, std = self._moments(self._transform(one.values))
        return {"mean": mean, "std": std, "mase_scale": [1.0] * len(mean)}

    def windows(self, one: Series, origins: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
        """``(x [N, L(+H), input_size], y [N, H, K], info [N, 3, K])`` of the windows that forecast from
        ``origins``; an origin may be ``len(one)`` (the future: y is NaN there)."""
        s, stats = self.state, self.series_stats(one)
        length, h = s["input_len"], s["horizon"]
        times = np.concatenate([one.times, TimeAxis(**s["time"]).future(one.times[-1], h)])
        mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
        z = (self._transform(one.values) - mean) / std
        z = np.concatenate([z, np.full((h, z.shape[1]), np.nan)])
        f = one.features
        if s["features"]:
            f = (f - np.asarray(s["feature_mean"])) / np.asarray(s["feature_std"])
        f = np.concatenate([f, np.zeros((h, f.shape[1]))])
        o = np.asarray(origins, dtype=np.int64)[:, None]
        past, future = o + np.arange(-length, 0), o + np.arange(h)
        level = z[past].mean(axis=1, keepdims=True) if s["window_norm"] else np.zeros((len(o), 1, z.shape[1]))
        x = [z[past] - level, f[past]]
        if s["calendar"]:
            calendar = TimeAxis(**s["time"]).calendar(times, s["calendar"])
            x = [np.concatenate([*x, calendar[past], np.zeros((*past.shape, 1))], axis=2)]
            zeros = np.zeros((*future.shape, z.shape[1] + f.shape[1]))
            x.append(np.concatenate([zeros, calendar[future], np.ones((*future.shape, 1))], axis=2))
            x = np.concatenate(x, axis=1)
        else:
            x = np.concatenate(x, axis=2)
        level = level[:, 0]
        info = np.stack(
            [mean + level * std, np.broadcast_to(std, level.shape), np.broadcast_to(stats["mase_scale"], level.shape)],
            axis=1,
        )
        as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        return as_tensor(x), as_tensor(z[future] - level[:, None]), as_tensor(info)

    def split_windows(self, split: str) -> Tuple[List[Series], List[List[int]], TensorDataset]:
        """A split's windows of every series: the series, each one's origins, and the dataset."""
        if self.series is None:  # a saved state: read the file again, nothing is refitted
            series, axis, _ = self._read(self.path)
            self.series = [one for one in series if one.id in self.state["series"]]
        origins = [self._origins(one)[split] for one in self.series]
        parts = [self.windows(one, o) for one, o in zip(self.series, origins) if o]
        return self.series, origins, TensorDataset(*(torch.cat(p) for p in zip(*parts)))

    def build(self, split: str) -> Dataset:
        return self.split_windows(split)[2]

    def read_new(self, path, with_targets: bool) -> Tuple[Dict[str, Any], Dataset]:
        """A file's series, each to be forecast after its last step: ``({ids, series, future time stamps},
        TensorDataset(x, y, info))``. Scoring a new file (``seqframe eval --file``) is not supported: the
        run's own test period is (``seqframe eval RUN``)."""
        if with_targets:
            raise DataFileError(
                f"{path}: data=series scores its own test period (seqframe eval RUN, or seqframe-train's test); "
                f"to forecast a file's future use seqframe predict RUN --file {path}"
            )
        resolved = resolve_path(str(path))
        series, axis, _ = read_series(
            resolved, self.state["id_column"], self.state["time_column"], self.state["targets"], self.state["features"]
        )
        trained = TimeAxis(**self.state["time"])
        if (axis.kind, axis.unit, axis.step) != (trained.kind, trained.unit, trained.step) and len(series[0]) > 1:
            raise DataFileError(
                f"{resolved}: this file's step is {axis.describe()}, the model was trained on {trained.describe()}; "
                f"resample the file to {trained.describe()}"
            )
        for one in series:
            if len(one) < self.state["input_len"]:
                raise DataFileError(
                    f"{resolved}: series {one.id!r} has {len(one)} steps; a forecast reads the last "
                    f"input_len={self.state['input_len']}: give a longer history"
                )
        unseen = [one.id for one in series if one.id not in self.state["series"]]
        if unseen:
            print(
                f"seqframe: {len(unseen)} series the model was not trained on (e.g. {unseen[0]!r}): "
                f"standardised on their own history"
            )
        parts = [self.windows(one, [len(one)]) for one in series]
        future = [trained.future(one.times[-1], self.state["horizon"]) for one in series]
        found = {"ids": [one.id for one in series], "series": series, "future": future, "axis": trained}
        return found, TensorDataset(*(torch.cat(p) for p in zip(*parts)))

    # -- the contract ----------------------------------------------------------------
    @property
    def data_state(self) -> Dict[str, Any]:
        return dict(self.state)

    @property
    def spec(self) -> TaskSpec:
        s = self.state
        return TaskSpec(
            task="regress",
            num_outputs=s["horizon"] * len(s["targets"]),
            input_size=s["input_size"],
            monitor="val/mae",
            mode="min",
            baseline=dict(s["baseline"]),
        )
