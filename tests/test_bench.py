"""`seqframe bench`: its candidates come from the registry, its options reach the run, and end to end
on the smallest setting: the table, the files, the ratios."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import seqframe
from seqframe.tools import bench, cli


def test_candidates_are_every_installed_cell_against_its_family_reference():
    rows = bench.candidates(["lstm", "gru", "rnn"], with_compile=False)
    for family in ("lstm", "gru", "rnn"):
        mine = [r for r in rows if r.family == family]
        assert mine[0].backend == "reference" and mine[0].label == f"torch.nn.{family.upper()} (fused)"
    labelled = {(r.family, r.label) for r in rows}
    for info in seqframe.list_cells():
        family = bench.family_of(info.cls)
        assert {(family, f"{info.name} (auto)"), (family, f"{info.name} (loop)")} <= labelled
    assert [bench.family_of(seqframe.get_cell(n)) for n in ("lstm", "gru", "rnn")] == ["lstm", "gru", "rnn"]
    assert {r.family for r in bench.candidates(["rnn"], with_compile=False)} == {"rnn"}


def test_variants_add_a_row_with_options():
    name, options = bench.parse_variant("gru:reset_after=true")
    assert (name, options) == ("gru", {"reset_after": True})
    assert bench.parse_variant("mycell:method=parallel,k=3") == ("mycell", {"method": "parallel", "k": 3})
    [row] = [r for r in bench.candidates(["gru"], False, [(name, options)]) if "reset_after" in r.label]
    assert row.label == "gru reset_after=True (auto)" and row.build(4, 5).cells[0].reset_after
    with pytest.raises(ValueError, match="CELL:KEY=VALUE"):
        bench.parse_variant("gru")


def test_command_line_options_reach_the_run(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: calls.append(kwargs))
    assert cli.main(["bench", "--sizes", "spec", "--no-scans", "--variant", "gru:reset_after=true"]) == 0
    assert cli.main(["bench", "--sizes", "spec"]) == 0
    assert [c["scans"] for c in calls] == [False, True]
    assert calls[0]["variants"] == [("gru", {"reset_after": True})] and calls[1]["variants"] == []
    refusals = {
        ("--families", "lstm,tcn"): "--families: unknown ['tcn']; choose from lstm, gru, rnn",
        ("--variant", "x"): "--variant 'x': write CELL:KEY=VALUE",
    }
    for bad, message in refusals.items():
        with pytest.raises(SystemExit) as refused:
            cli.main(["bench", *bad])
        assert message in str(refused.value)


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
    for key in [("rnn", "rnn (auto)"), ("rnn", "rnn (loop)"), ("gru", "gru (auto)")]:
        row = rows[key]
        assert row["min_ms"] <= row["median_ms"] and 0 < row["ratio"] < 100
        reference = rows[(key[0], f"torch.nn.{key[0].upper()} (fused)")]["median_ms"]
        assert abs(row["ratio"] - row["median_ms"] / reference) < 1e-9
    harness = report["harness"]
    assert min(harness["seqframe_ms"], harness["grouped_ms"], harness["lightning_ms"], harness["plain_ms"]) > 0
    assert "| bare Lightning Trainer" in markdown.read_text()
    text = markdown.read_text()
    assert "| spec (B=8 T=10 I=8 H=16) | rnn | rnn (auto) | auto |" in text and report["machine"] in text
    assert "scans" not in report and "## Scans" not in text  # --no-scans
