"""`seqframe report` on a real (tiny) sweep: the table's values are the summaries' values."""

import csv
import json
import subprocess
from pathlib import Path

from runs import BIN, tiny

TINY = tiny(epochs=2)


def test_report_of_a_sweep_with_seeds_and_a_failed_job(tmp_path):
    sweep = [str(BIN / "seqframe-train"), "-m", "cell=rnn,gru", "seed=0,1", *TINY, "hydra.sweep.dir=sweep"]
    subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True)
    failing = [str(BIN / "seqframe-train"), "-m", "model.hidden_size=-1", *TINY, "hydra.sweep.dir=broken"]
    assert subprocess.run(failing, cwd=tmp_path, capture_output=True, timeout=300).returncode == 1
    out = tmp_path / "report"
    result = subprocess.run(
        [str(BIN / "seqframe"), "report", "sweep", "broken", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "# seqframe report" in result.stdout and "Over seeds" in result.stdout
    with open(out / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and sorted(r["status"] for r in rows) == ["failed"] + ["finished"] * 4
    for row in rows:
        summary = json.loads((Path(tmp_path / row["run"]) / "summary.json").read_text())
        assert row["cell"] == summary["cell"] and row["status"] == summary["status"]
        if summary["status"] == "finished":
            assert float(row["best_val"]) == summary["best_val"]
            assert float(row["test"]) == summary["test"]["test/mse"]
            assert float(row["baseline"]) == 1 / 6 and int(row["parameters"]) == summary["parameters"]
            assert row["steps_to_target"] in ("not reached", *(str(s) for s in range(1, 100)))
    import matplotlib.image

    for name in ("curves.png", "bars.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in result.stdout
        height, width = matplotlib.image.imread(png).shape[:2]
        assert height > 200 and width > 200
    groups = json.loads((out / "report.json").read_text())["groups"]
    assert sorted((g["cell"], g["runs"]) for g in groups) == [("gru", 2), ("rnn", 2)]
    rnn = [
        json.loads((p.parent / "summary.json").read_text())["best_val"]
        for p in (tmp_path / "sweep").glob("*/summary.json")
        if json.loads(p.read_text())["cell"] == "rnn"
    ]
    mean = sum(rnn) / 2
    assert next(g for g in groups if g["cell"] == "rnn")["best_val"].startswith(f"{mean:.4g} ± ")


def test_report_of_a_missing_directory_says_so(tmp_path):
    result = subprocess.run([str(BIN / "seqframe"), "report", "nowhere"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "nowhere: no such directory" in result.stderr
