"""`seqframe bench`: its candidates come from the registry, its options reach the run, and end to end
on the smallest setting: the table, the files, the ratios; the length sweep on short lengths."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import seqframe
from seqframe.tools import bench, bench_lengths, cli


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
    assert calls[0]["lengths"] == bench_lengths.LengthSweep((100, 1000, 10000), (64, 32, 128), max_repeat=7)
    assert calls[0]["steps"] and calls[0]["lengths"].flush_denormal  # the full run includes the sweep
    argv = ["--only", "lengths", "--lengths", "5,10", "--length-shape", "2,3,4", "--repeat", "2"]
    assert cli.main(["bench", *argv, "--no-flush-denormal", "--time-checkpoint", "3"]) == 0
    assert calls[2]["lengths"] == bench_lengths.LengthSweep((5, 10), (2, 3, 4), False, 3, max_repeat=2)
    assert not (calls[2]["steps"] or calls[2]["scans"] or calls[2]["harness"]) and not calls[2]["startup"]
    assert cli.main(["bench", "--no-lengths", "--no-steps"]) == 0
    assert calls[3]["lengths"] is None and not calls[3]["steps"] and calls[3]["scans"]
    refusals = {
        ("--families", "lstm,tcn"): "--families: unknown ['tcn']; choose from lstm, gru, rnn",
        ("--variant", "x"): "--variant 'x': write CELL:KEY=VALUE",
        ("--only", "lengths,speed"): "--only: unknown ['speed']; choose from steps, scans, harness, startup, lengths, "
        "generated, generated_startup",
        ("--lengths", "100,0"): "--lengths: write positive integers separated by commas, got '100,0'",
        ("--length-shape", "64,32"): "--length-shape: write 3 positive integer(s) separated by commas",
        ("--time-checkpoint", "x"): "--time-checkpoint: write 1 positive integer(s)",
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
            "--no-lengths",
            "--no-generated",
            "--no-generated-startup",
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
    assert "lengths" not in report and "## Length" not in text  # --no-lengths


SHAPE = (64, 32, 128)  # the sweep's own B, I, H: large enough that a step's memory shows at T=5


def test_length_sweep_measures_every_model_per_time_step_and_its_memory():
    sweep = bench_lengths.LengthSweep((5, 10), SHAPE, max_repeat=2, budget_s=0.5)
    table = bench_lengths.length_table(sweep, ["lstm", "gru", "rnn"])
    rows = {(r["T"], r["model"]): r for r in table["rows"]}
    names = [f"torch.nn.{f} (fused)" for f in ("LSTM", "GRU", "RNN")]
    names += [f"{info.name} (auto)" for info in seqframe.list_cells()]
    assert set(rows) == {(t, name) for t in (5, 10) for name in names}
    for (steps, name), row in rows.items():
        assert row["ms_per_step"] > 0 and row["peak_mb"] > 0 and 1 <= row["repeat"] <= 2, (steps, name)
        assert row["flushed"]  # the sweep's default: subnormals flushed to zero in the worker
        assert "compiling" not in row["path"], (steps, name)  # auto measured once its kernels were built
        assert abs(row["ms_per_step"] * steps - row["step_ms"]) < 1e-9 * row["step_ms"]
        reference = rows[(steps, f"torch.nn.{row['family'].upper()} (fused)")]
        assert abs(row["ratio"] - row["ms_per_step"] / reference["ms_per_step"]) < 1e-9
    for name in names:  # twice the steps, more kept for the backward pass
        assert rows[(10, name)]["peak_mb"] > rows[(5, name)]["peak_mb"], name
    text = "\n".join(bench_lengths.to_markdown(table))
    assert "## Length: training step per time step, B=64 I=32 H=128, subnormals flushed" in text
    assert "| model | T=5 | T=10 |" in text and "| torch.nn.GRU (fused) | " in text and "(1.00; n=" in text


def test_time_checkpoint_bounds_the_sweeps_memory():
    """``--time-checkpoint`` reaches the cells: at T=64 keeping every 8th state holds less than all 64."""
    assert bench_lengths.supports_time_checkpoint()
    lstm = bench_lengths.Model("lstm", "lstm", "auto")
    peaks = {}
    for checkpoint in (None, 8):
        sweep = bench_lengths.LengthSweep((64,), SHAPE, False, checkpoint, max_repeat=1, budget_s=0.1)
        result = bench_lengths.run_model(lstm, 64, sweep)
        assert not result["flushed"]  # flush_denormal=False reaches the worker
        peaks[checkpoint] = result["peak_mb"]
    assert 0 < peaks[8] < 0.7 * peaks[None], peaks


@pytest.mark.parametrize("family", ["gru", "rnn"])
def test_the_hand_fused_references_compute_the_newcomer_cells_exactly(family):
    """The generated kernels are judged against these: they must be the same cells, in float64."""
    import torch

    from seqframe.tools import bench_generated

    torch.manual_seed(0)
    hand = bench_generated.HAND_FUSED[family](5, 7).double()
    loop = seqframe.Recurrent(bench_generated.NEWCOMERS[family], 5, 7, backend="loop").double()
    loop.cells[0].load_state_dict(hand.cell.state_dict())
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    results = []
    for model in (hand, loop):
        inp = x.clone().requires_grad_()
        out = model(inp)[0]
        (out * torch.linspace(-1, 1, 7, dtype=torch.float64)).sum().backward()
        results.append((out.detach(), inp.grad, [p.grad for p in model.parameters()]))
    (out_a, x_a, grads_a), (out_b, x_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-12, rtol=0)
    torch.testing.assert_close(x_a, x_b, atol=1e-12, rtol=0)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_the_generated_tables_in_markdown():
    from seqframe.tools import bench_generated

    row = {"size": "spec", "shape": "B=8 T=10 I=8 H=16", "family": "lstm", "model": "newcomer_lstm (generated)",
           "median_ms": 0.6, "min_ms": 0.5, "ratio": 1.5, "ratio_hand": None}
    text = "\n".join(bench_generated.to_markdown({
        "generated": [row],
        "handwritten": [{"size": "spec", "cell": "gru", "model": "gru (generated)", "median_ms": 1.0, "ratio": 1.2}],
        "generated_startup": [{"cache": "cold", "backend": "auto", "first_step_s": 0.5, "kernels_ready_s": 20.0}],
    }))
    assert "| spec (B=8 T=10 I=8 H=16) | lstm | newcomer_lstm (generated) | 0.60 | 0.50 | 1.50 | - |" in text
    assert "| spec | gru | gru (generated) | 1.00 | 1.20 |" in text
    assert "| cold | auto | 0.5 | 20.0 |" in text
