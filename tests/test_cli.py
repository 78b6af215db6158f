"""The one ``seqframe`` command: a cheap help that lists every sub-command, and train/eval/predict
as the old scripts under one name (their arguments handed on untouched); inference builds no metrics."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from runs import BIN, run, summary

SUB_COMMANDS = {"train", "eval", "predict", "generate", "export", "report", "bench", "cells", "new-cell"}
FRAMEWORKS = ("torch", "pytorch_lightning", "lightning", "hydra", "omegaconf")
QUIET = ["trainer.enable_progress_bar=false", "logger=csv"]


def seqframe(*args: str, check: bool = True, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "seqframe"), *args], capture_output=True, text=True, check=check, timeout=120, cwd=cwd
    )


def test_help_lists_every_sub_command():
    from seqframe.tools.cli import build_parser

    [commands] = [a for a in build_parser()._actions if a.dest == "command"]
    assert set(commands.choices) == SUB_COMMANDS
    out = seqframe("--help").stdout
    listed = set(re.findall(r"^ {4}(\S+) +\S", out, re.MULTILINE))
    assert listed == SUB_COMMANDS, out


def test_cli_import_and_help_load_no_framework():
    """What ``seqframe --help`` (and eval's and predict's help) costs: no torch, Lightning or Hydra."""
    code = (
        "import contextlib, io, sys\n"
        "from seqframe.tools.cli import main\n"
        "for argv in (['--help'], ['eval', '--help'], ['predict', '--help'], []):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"


def test_eval_and_predict_take_the_scripts_own_arguments():
    for command, script in (("eval", "seqframe-eval"), ("predict", "seqframe-predict")):
        ours, theirs = seqframe(command, "--help").stdout, subprocess.run(
            [str(BIN / script), "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert ours.startswith(f"usage: seqframe {command} ") and theirs.startswith(f"usage: {script} ")
        assert ours.split("\n\n", 1)[1] == theirs.split("\n\n", 1)[1]  # the same description and arguments
    missing = seqframe("predict", "run", "new.csv", check=False)  # --out is required: the script's own parser says so
    assert missing.returncode == 2 and "seqframe predict: error: the following arguments are required: --out" in (
        missing.stderr
    )


def test_train_hands_its_arguments_to_hydra(tmp_path):
    shown = seqframe("train", "--cfg", "job", "cell=rnn", "model.hidden_size=7", cwd=tmp_path).stdout
    assert re.search(r"^cell:\n  name: rnn$", shown, re.MULTILINE) and re.search(r"^  hidden_size: 7$", shown, re.M)
    assert "powered by Hydra" in seqframe("train", "--help", cwd=tmp_path).stdout
    refused = seqframe("train", "cell=rnn", "cell.no_such_option=1", "hydra.run.dir=run", check=False, cwd=tmp_path)
    assert refused.returncode == 2 and "seqframe-train: error:" in refused.stderr and "no_such_option" in refused.stderr


def test_train_runs_the_hydra_app_as_seqframe_train(monkeypatch):
    """The app reads sys.argv: it sees exactly the arguments, after the seqframe-train script (which
    Lightning's DDP launcher re-runs for the other ranks), and sys.argv is given back afterwards."""
    import seqframe.harness.app as app
    from seqframe.tools.cli import main

    seen = []
    monkeypatch.setattr(app, "main", lambda: seen.append(list(sys.argv)))
    before = list(sys.argv)
    assert main(["train", "-m", "cell=rnn,lstm", "--cfg", "job"]) == 0
    assert seen == [[str(BIN / "seqframe-train"), "-m", "cell=rnn,lstm", "--cfg", "job"]] and sys.argv == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run through ``seqframe train``: the spec's Keras model on an .npz file (file data, so
    that predict works on it too)."""
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.savez(folder / "keras.npz", X=rng.normal(size=(64, 10, 8)), y=rng.integers(0, 2, size=(64, 1)))
    args = ["experiment=seed_keras", "data=numpy", "data.path=keras.npz", "trainer.max_epochs=1", "hydra.run.dir=run"]
    run(["train", *args, *QUIET], folder, exe=BIN / "seqframe")
    return folder


def test_seqframe_train_then_eval_on_its_run_dir(trained):
    s = summary(trained / "run")
    assert (s["status"], s["cell"], s["data"], s["epochs"]) == ("finished", "lstm", "numpy", 1)
    run(["eval", "run", "--out", "metrics.json"], trained, exe=BIN / "seqframe")
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) == set(s["test"]) and metrics == pytest.approx(s["test"], rel=1e-6)


def test_predict_and_export_build_no_metrics(trained, monkeypatch, tmp_path):
    from seqframe.harness.metrics import TaskMetrics
    from seqframe.runs.export import export
    from seqframe.runs.loading import load_run
    from seqframe.runs.predict import predict

    built = []
    original = TaskMetrics.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(TaskMetrics, "__init__", counting)
    monkeypatch.chdir(trained)  # the run's data.path is relative to where it was trained
    np.savez(tmp_path / "new.npz", X=np.random.default_rng(1).normal(size=(5, 10, 8)))
    assert predict(str(trained / "run"), str(tmp_path / "new.npz"), str(tmp_path / "p.npy")) == 5
    assert export(str(trained / "run"), "pt2", str(tmp_path / "model.pt2")).is_file()
    assert built == []
    load_run(trained / "run").model()  # evaluation does build them: the count sees metrics
    assert len(built) == 3
