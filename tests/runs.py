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


# The first lines of a script that must run without seqframe: its editable-install finders are removed and
# the script stops if `import seqframe` still works. Only torch, numpy or onnxruntime remain.
WITHOUT_SEQFRAME = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path_importer_cache.clear()
try:
    import seqframe
except ImportError:
    pass
else:
    raise SystemExit("seqframe is importable: " + str(seqframe.__file__))
"""


def run_without_seqframe(script: str, folder: Path, *args: str) -> None:
    """Run ``script`` (after :data:`WITHOUT_SEQFRAME`) in an isolated Python process; fail with its output."""
    path = folder / "without_seqframe.py"
    path.write_text(WITHOUT_SEQFRAME + script)
    result = subprocess.run([sys.executable, "-I", str(path), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
