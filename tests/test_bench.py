"""`seqframe bench` end to end on the smallest setting: the table, the files, the ratios."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_writes_the_table_with_ratios_to_torch_nn(tmp_path):
    exe = Path(sys.executable).with_name("seqframe")
    markdown = tmp_path / "benchmarks.md"
    subprocess.run(
        [
            str(exe),
            "bench",
            "--sizes",
            "spec",
            "--families",
            "rnn,gru",
            "--repeat",
            "3",
            "--no-startup",
            "--no-scans",
            "--out",
            str(tmp_path / "out"),
            "--markdown",
            str(markdown),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    rows = {(r["family"], r["model"]): r for r in report["steps"]}
    assert rows[("rnn", "torch.nn.RNN (fused)")]["ratio"] == 1.0
    assert rows[("gru", "torch.nn.GRU (fused)")]["ratio"] == 1.0
    for key in [("rnn", "rnn (auto)"), ("rnn", "rnn (loop)"), ("gru", "gru spec form (auto)")]:
        row = rows[key]
        assert row["min_ms"] <= row["median_ms"] and 0 < row["ratio"] < 100
        reference = rows[(key[0], f"torch.nn.{key[0].upper()} (fused)")]["median_ms"]
        assert abs(row["ratio"] - row["median_ms"] / reference) < 1e-9
    harness = report["harness"]
    assert min(harness["seqframe_ms"], harness["grouped_ms"], harness["lightning_ms"], harness["plain_ms"]) > 0
    assert "| bare Lightning Trainer" in markdown.read_text()
    text = markdown.read_text()
    assert "| spec (B=8 T=10 I=8 H=16) | rnn | rnn (auto) | auto |" in text and report["machine"] in text
