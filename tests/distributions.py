"""Throw-away installed distributions for discovery tests: a module plus a real
``*.dist-info`` (METADATA, entry_points.txt) in a directory put on ``sys.path``."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_CELL = """
import torch
import seqframe


class {cls}(seqframe.Cell):
    name = "{cell}"

    def __init__(self, input_size, hidden_size, scale: float = 1.0):
        super().__init__(input_size, hidden_size)
        self.scale = scale
        self.lin = torch.nn.Linear(input_size, hidden_size)
        self.rec = torch.nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, x):
        return self.lin(x)

    def step(self, p_t, state):
        h = torch.tanh(p_t + self.rec(state)) * self.scale
        return h, h


@seqframe.hookimpl
def seqframe_cells():
    return [{cls}]
"""


def make_distribution(root: Path, dist: str, version: str, entry_points: dict, modules: dict) -> Path:
    """Write modules and a dist-info for ``dist`` under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[seqframe]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def good_cell(cell: str, cls: str = "PluginCell") -> str:
    return GOOD_CELL.format(cell=cell, cls=cls)
