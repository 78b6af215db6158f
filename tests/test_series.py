"""``data=series`` in-process: windows by hand, no leakage, metrics and baselines against NumPy, the inverse
normalisation, quantile scores on a known distribution, and every bad input's one-line message."""

import csv
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional import mean_absolute_error, symmetric_mean_absolute_percentage_error

from seqframe.data.files import DataFileError
from seqframe.data.forecast_scores import baseline_forecasts, covered, pinball
from seqframe.data.series import SeriesDataModule, to_units, window_origins
from seqframe.harness.metrics import ForecastMetrics


def write_series(path, series, start="2024-01-01T00", unit="h", columns=("id", "time", "y")):
    """``series``: id -> values, hourly from ``start``; returns the path."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for key, values in series.items():
            times = np.datetime64(start, unit) + np.arange(len(values)).astype(f"timedelta64[{unit}]")
            writer.writerows([key, str(t).replace("T", " "), v] for t, v in zip(times, values))
    return path


def module(path, **options):
    settings = dict(id_column="id", time_column="time", target_columns=["y"], input_len=3, horizon=2)
    return SeriesDataModule(path=str(path), **{**settings, **options})


def test_window_origins_by_hand():
    # n=12: train period [0, 6), val [6, 8), test [8, 12); a window reads [o-3, o) and forecasts [o, o+2)
    assert window_origins(12, 3, 2, 1, 2, 4) == {"train": [3, 4], "val": [6], "test": [8, 10]}
    # stride counts back from the end of the training period
    assert window_origins(20, 3, 2, 3, 2, 2)["train"] == [5, 8, 11, 14]


def test_windows_hold_the_raw_values_and_never_leak_into_the_test_period(tmp_path):
    values = [float(v) for v in range(10, 22)]  # 12 hourly steps
    path = write_series(tmp_path / "s.csv", {"a": values})
    data = module(path, val_size=2, test_size=4, normalize="none", calendar="none", season_length=2)
    x, y, info = data.build("train").tensors
    assert x[:, :, 0].tolist() == [[10, 11, 12], [11, 12, 13]] and y[:, :, 0].tolist() == [[13, 14], [14, 15]]
    assert y.max() < 16  # no training target reaches the val period (steps 6..) or the test period
    x, y, _ = data.build("test").tensors
    assert x[:, :, 0].tolist() == [[15, 16, 17], [17, 18, 19]]  # inputs look back into val
    assert y[:, :, 0].tolist() == [[18, 19], [20, 21]]
    assert data.report["windows"] == {"train": 2, "val": 1, "test": 2}
    # the calendar: known-future steps appended (values 0, flag 1), sin/cos of day of week and hour
    x, _, _ = module(path, val_size=2, test_size=4, normalize="none", season_length=2).build("train").tensors
    assert x.shape == (2, 3 + 2, 1 + 4 + 1)
    assert x[0, 3:, 0].tolist() == [0, 0] and x[0, :, -1].tolist() == [0, 0, 0, 1, 1]
    hour = np.arange(5)  # the first window reads hours 0..2 of a Monday and forecasts hours 3..4
    assert np.allclose(x[0, :, 3].numpy(), np.sin(2 * np.pi * hour / 24), atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"normalize": "series"},
        {"normalize": "global"},
        {"transform": "log", "window_norm": True},
        {"normalize": "global", "transform": "log"},
    ],
)
def test_inverse_normalisation_gives_back_the_data(tmp_path, options):
    rng = np.random.default_rng(0)
    series = {k: (rng.uniform(5, 50) + rng.normal(0, 3, 40).cumsum() ** 2 / 10 + 1).round(3) for k in "abc"}
    path = write_series(tmp_path / "s.csv", series)
    data = module(path, input_len=6, horizon=4, val_size=4, test_size=8, calendar="none", **options)
    for split in ("train", "test"):
        found, origins, dataset = data.split_windows(split)
        x, y, info = dataset.tensors
        expected = np.concatenate([[series[s.id][o : o + 4] for o in os] for s, os in zip(found, origins)])
        assert np.allclose(to_units(y, info, data.state["transform"] == "log")[..., 0].numpy(), expected, rtol=1e-5)
    train = np.asarray(series["a"][: 40 - 12])  # statistics from the training period only
    stats = data.state["series"]["a"]
    if options.get("normalize") == "series" and "transform" not in options:
        assert stats["mean"] == pytest.approx([train.mean()]) and stats["std"] == pytest.approx([train.std()])
    assert stats["mase_scale"] == pytest.approx([np.abs(train[24:] - train[:-24]).mean()])


def test_metrics_match_numpy_and_torchmetrics():
    rng = np.random.default_rng(1)
    true = rng.uniform(1, 10, (7, 3, 2))
    pred = true + rng.normal(0, 1, true.shape)
    scale = rng.uniform(0.5, 2, (7, 2))
    metrics = ForecastMetrics(horizon=3, per_step=True)
    for part in (slice(0, 4), slice(4, 7)):  # two batches
        p, y, s = (torch.tensor(a[part], dtype=torch.float32) for a in (pred, true, scale))
        metrics.update(torch.tensor(0.0), 1, p[..., None], y, s)
    got = {k: float(v) for k, v in metrics.compute().items()}
    e = np.abs(pred - true)
    assert got["mae"] == pytest.approx(e.mean(), rel=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt((e**2).mean()), rel=1e-5)
    assert got["mape"] == pytest.approx(100 * (e / np.abs(true)).mean(), rel=1e-5)
    assert got["smape"] == pytest.approx(100 * (2 * e / (np.abs(true) + np.abs(pred))).mean(), rel=1e-5)
    assert got["mase"] == pytest.approx((e / scale[:, None, :]).mean(), rel=1e-5)
    assert got["mae_step2"] == pytest.approx(e[:, 1].mean(), rel=1e-5)
    assert got["rmse_step3"] == pytest.approx(np.sqrt((e[:, 2] ** 2).mean()), rel=1e-5)
    p, y = torch.tensor(pred), torch.tensor(true)
    assert got["mae"] == pytest.approx(float(mean_absolute_error(p, y)), rel=1e-5)
    assert got["smape"] == pytest.approx(100 * float(symmetric_mean_absolute_percentage_error(p, y)), rel=1e-5)


def test_baselines_recomputed_independently(tmp_path):
    rows = list(csv.DictReader(open(module_builtin_path())))
    y = np.array([float(r["passengers"]) for r in rows])
    data = SeriesDataModule(
        path="airpassengers",
        id_column="series",
        time_column="month",
        target_columns="passengers",
        input_len=24,
        horizon=12,
        val_size=12,
        test_size=12,
    )
    base = data.spec.baseline
    test, last_year = y[-12:], y[-24:-12]
    growth = last_year.sum() / y[-36:-24].sum()
    assert base["naive/mae"] == pytest.approx(np.abs(test - y[-13]).mean()) == pytest.approx(76.0)
    assert base["seasonal_naive/mae"] == pytest.approx(np.abs(test - last_year).mean())
    assert round(base["seasonal_naive/mae"], 1) == 47.8 and round(base["seasonal_naive/mape"], 1) == 10.0
    assert base["growth_seasonal_naive/mae"] == pytest.approx(np.abs(test - last_year * growth).mean())
    assert round(base["growth_seasonal_naive/mae"], 1) == 13.4 and round(base["growth_seasonal_naive/mape"], 1) == 3.0
    train = y[:120]
    assert base["mase"] == pytest.approx(np.abs(test - last_year).mean() / np.abs(train[12:] - train[:-12]).mean())
    # a horizon longer than the season repeats the last season
    history = np.arange(10.0)[:, None]
    assert baseline_forecasts(history, 5, 3)["seasonal_naive"][:, 0].tolist() == [7, 8, 9, 7, 8]


def module_builtin_path():
    from seqframe.data.series_io import resolve_path

    return resolve_path("airpassengers")


def test_quantile_loss_and_coverage_on_a_known_distribution():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.normal(0, 2, 200_000))
    levels = [0.1, 0.5, 0.9]
    z = torch.tensor([-1.2815515655446004, 0.0, 1.2815515655446004])  # standard normal quantiles
    true_quantiles = (2 * z).expand(len(y), 3)
    assert float(covered(true_quantiles, y)) / len(y) == pytest.approx(0.8, abs=0.005)
    # the expected pinball loss at the true quantile of N(0, s^2) is s * phi(z_q)
    phi = lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    assert float(pinball(true_quantiles, y, levels)) == pytest.approx(2 * np.mean([phi(v) for v in z]), rel=0.01)
    assert float(pinball(true_quantiles + 0.5, y, levels)) > float(pinball(true_quantiles, y, levels))
    metrics = ForecastMetrics(horizon=1, quantiles=levels)
    metrics.update(
        torch.tensor(0.0),
        len(y),
        true_quantiles.float()[:, None, None, :],
        y.float()[:, None, None],
        torch.ones(len(y), 1),
    )
    got = metrics.compute()
    assert float(got["coverage"]) == pytest.approx(0.8, abs=0.005)
    assert float(got["mae"]) == pytest.approx(float(y.abs().mean()), rel=1e-4)  # the median is the point forecast


BAD = [
    ({"a": [1.0] * 30, "b": [1.0] * 9}, {}, ["series 'b' has 9 steps", "at least", "data.too_short=drop"]),
    ({"a": [1.0] * 30}, {"swap": True}, ["series 'a' is not sorted", "sort the file"]),
    ({"a": [1.0] * 30}, {"duplicate": True}, ["series 'a' has two rows at time=", "remove the duplicate"]),
    ({"a": [1.0] * 30}, {"gap": True}, ["series 'a' has a gap", "1 missing steps of 1 hour", "add the missing rows"]),
    ({"a": [1.0] * 10 + [""] + [1.0] * 19}, {}, ["series 'a', line 12", "'y' is empty", "fill in the missing value"]),
]


@pytest.mark.parametrize("series, damage, words", BAD)
def test_bad_input_is_refused_in_one_line_naming_the_series_and_the_fix(tmp_path, series, damage, words):
    path = write_series(tmp_path / "bad.csv", series)
    lines = path.read_text().splitlines()
    if damage.get("swap"):
        lines[5], lines[6] = lines[6], lines[5]
    if damage.get("duplicate"):
        lines[6] = lines[5]
    if damage.get("gap"):
        del lines[7]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError) as caught:
        module(path, input_len=4, horizon=2, val_size=2, test_size=2)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message
    if "too_short" in words[-1]:  # ... and with too_short=drop the long one is kept, the drop counted
        kept = module(path, input_len=4, horizon=2, val_size=2, test_size=2, too_short="drop")
        assert kept.report["series"] == 1 and kept.report["dropped"] == {"shorter_than_needed": 1}
