"""docs/writing-a-cell.md, run as written: scaffold, install, kit, train, block."""

import json
import re

import torch
from venvs import REPO, make_venv, pip_install, run_in

from seqframe.testing import CHECKS

TUTORIAL = REPO / "docs" / "writing-a-cell.md"


def tutorial_commands():
    blocks = re.findall(r"```bash\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_tutorial_commands_work_as_written(tmp_path):
    venv = make_venv(tmp_path / "venv")
    pip_install(venv, "--no-build-isolation", "-e", str(REPO))
    work = tmp_path / "work"
    work.mkdir()
    outputs = {}
    for command in tutorial_commands():
        result = run_in(venv, ["bash", "-c", command], work)
        report = f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        assert result.returncode == 0, f"tutorial command failed: {command}\n{report}"
        outputs[command] = result.stdout
    assert len(outputs) >= 7, list(outputs)
    listing = outputs["seqframe cells mycell"]
    assert re.search(r"^mycell\s+mycell\s+seqframe-mycell\s+0\.1\.0\s+1600\s", listing, flags=re.M), listing
    kit = outputs["python -m pytest -q seqframe-mycell"]  # the pre-check, every check; cuda skipped without a GPU
    assert f"{len(CHECKS) - (not torch.cuda.is_available())} passed" in kit, kit
    [summary_file] = work.glob("outputs/*/*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "finished" and summary["cell_options"]["forget_bias"] == 0.5
    assert "mycell" not in outputs["SEQFRAME_DISABLE_PLUGINS=mycell seqframe cells"]
    only = outputs["SEQFRAME_PLUGINS=mycell seqframe cells"]
    assert "mycell" in only and "lstm" in only
