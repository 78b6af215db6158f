"""Running the real console scripts in subprocesses, and reading what a run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

BIN = Path(sys.executable).parent


def tiny(epochs: int = 1) -> List[str]:
    """Overrides for a run of a few seconds on the adding problem."""
    return [
        "data.seq_len=10",
        "data.train_size=128",
        "data.val_size=64",
        "data.test_size=64",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
    ]


def attempt(args, cwd, exe=BIN / "seqframe-train", timeout=400, pythonpath=None) -> subprocess.CompletedProcess:
    """Run a console script and return what happened (for runs that are meant to fail too)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run(args, cwd, exe=BIN / "seqframe-train", timeout=400) -> subprocess.CompletedProcess:
    """Run a console script; fail the test with its output if it fails."""
    result = attempt(args, cwd, exe, timeout)
    assert result.returncode == 0, (
        f"{exe.name} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
