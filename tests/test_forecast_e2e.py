"""``data=series`` end to end through the console scripts: train with quantiles on a small panel, the summary
(scores, per step, baselines), the test plot, ``seqframe predict RUN --file`` (time stamps, shape, plot), and
the report's forecasting section."""

import csv
import json

import numpy as np
from runs import BIN, attempt, run
from test_series import write_series

from seqframe.tools.report_forecast import forecast_section

H = 6


def test_train_predict_and_report_a_panel(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(120)
    series = {
        f"s{k}": (20 + k + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, len(t))).round(3) for k in range(3)
    }
    series["s3"] = series["s0"][:80]  # a shorter one
    write_series(tmp_path / "load.csv", series, columns=("id", "time", "load"))
    data = ["data=series", "data.path=load.csv", "data.id_column=id", "data.time_column=time", "data.input_len=12"]
    options = [f"data.horizon={H}", f"data.test_size={2 * H}", "data.stride=2", "model.hidden_size=16"]
    quick = ["model.quantiles=[0.1,0.5,0.9]", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    result = run([*data, *options, *quick, "hydra.run.dir=run"], tmp_path)
    assert "seasonal naive" in result.stdout and "coverage" in result.stdout
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "finished" and s["monitor"] == "val/mae"
    assert {"test/mae", "test/rmse", "test/smape", "test/mase", "test/coverage", "test/mae_step6"} <= set(s["test"])
    assert {"naive/mae", "seasonal_naive/mase", "growth_seasonal_naive/mae", "mae"} <= set(s["baseline"])
    assert s["data_report"]["windows"]["test"] == 4 * 2 and s["data_report"]["calendar"] == ["day_of_week", "hour"]
    assert (tmp_path / "run" / "forecast.png").stat().st_size > 10_000
    with (tmp_path / "run" / "forecast_test.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4 * 2 * H

    # the future of each series, with its time stamps
    predicted = run(["run", "--file", "load.csv", "--plot", "future.png"], tmp_path, exe=BIN / "seqframe-predict")
    assert "forecast.csv" in predicted.stdout and (tmp_path / "future.png").is_file()
    with (tmp_path / "forecast.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "time", "step", "load", "load_q0.1", "load_q0.5", "load_q0.9"]
    assert [r["id"] for r in rows] == [k for k in series for _ in range(H)]
    last_s3 = np.datetime64("2024-01-01T00", "h") + 79  # s3 ends at hour 79
    assert [r["time"] for r in rows if r["id"] == "s3"] == [str(last_s3 + h) for h in range(1, H + 1)]
    assert all(
        float(r["load_q0.1"]) <= float(r["load"]) == float(r["load_q0.5"]) <= float(r["load_q0.9"]) for r in rows
    )

    # a classic --out suffix a forecast cannot have is refused in one line
    bad = attempt(["run", "--file", "load.csv", "--out", "f.npy"], tmp_path, exe=BIN / "seqframe-predict")
    assert bad.returncode == 2 and "give a .csv file name" in bad.stderr

    section = forecast_section([tmp_path / "run"])
    assert "| score | model | naive | seasonal_naive | growth_seasonal_naive |" in section
    assert f"{s['baseline']['naive/mae']:.4g}" in section and "coverage" in section

    # export would give standardised numbers without the windows seqframe builds: refused, saying what works
    refused = attempt(["export", "run", "--format", "pt2"], tmp_path, exe=BIN / "seqframe")
    assert refused.returncode != 0 and "is a forecasting model (data=series)" in refused.stderr
    assert "seqframe predict RUN --file FILE" in refused.stderr and not (tmp_path / "run" / "export").exists()
