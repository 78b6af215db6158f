"""The module names of seqframe before its re-layout in 0.2, kept working as aliases.

``import seqframe.train`` (or a config's ``_target_: seqframe.resume.StepCheckpoint``)
still works: a finder on ``sys.meta_path`` answers an old name with the module
at its new place, the very same module object (so classes keep their identity),
after a :class:`DeprecationWarning` that names the new place. docs/layout.md
lists the table. Sub-modules of a moved package follow it
(``seqframe.cells.rnn`` -> ``seqframe.core.cells.rnn``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Dict, Optional, Sequence

MOVED: Dict[str, str] = {
    "seqframe.bench": "seqframe.tools.bench",
    "seqframe.callbacks": "seqframe.harness.callbacks",
    "seqframe.cell_config": "seqframe.harness.cell_configs",
    "seqframe.cells": "seqframe.core.cells",
    "seqframe.cells.base": "seqframe.core.cell",
    "seqframe.cells.gru_scan": "seqframe.core.cells.gru_kernel",
    "seqframe.checkpoints": "seqframe.harness.checkpoints",
    "seqframe.cli": "seqframe.tools.cli",
    "seqframe.config_check": "seqframe.harness.config_check",
    "seqframe.deploy": "seqframe.runs.deployable",
    "seqframe.distributed": "seqframe.harness.distributed",
    "seqframe.evaluate": "seqframe.runs.evaluate",
    "seqframe.execution": "seqframe.harness.execution",
    "seqframe.export": "seqframe.runs.export",
    "seqframe.extras": "seqframe.harness.optional_dependencies",
    "seqframe.guards": "seqframe.harness.guards",
    "seqframe.layers": "seqframe.core.recurrent",
    "seqframe.metrics": "seqframe.harness.metrics",
    "seqframe.model": "seqframe.harness.model",
    "seqframe.options": "seqframe.core.options",
    "seqframe.plugins": "seqframe.core.registry",
    "seqframe.predict": "seqframe.runs.predict",
    "seqframe.reliability": "seqframe.harness.reliability",
    "seqframe.report": "seqframe.tools.report",
    "seqframe.report_plots": "seqframe.tools.plots",
    "seqframe.resume": "seqframe.harness.resume",
    "seqframe.scaffold": "seqframe.tools.scaffold",
    "seqframe.scans": "seqframe.kernels",
    "seqframe.state": "seqframe.core.state",
    "seqframe.submitit_env": "seqframe.harness.submitit_env",
    "seqframe.sweep": "seqframe.harness.sweep",
    "seqframe.tables": "seqframe.tools.tables",
    "seqframe.train": "seqframe.harness.app",  # it held both train() and main()
    "seqframe.trained": "seqframe.runs.loading",
}


def new_name(old: str) -> Optional[str]:
    """Where the module ``old`` lives now (a moved package's sub-modules too), or None if it did not move."""
    for key in sorted(MOVED, key=len, reverse=True):
        if old == key or old.startswith(key + "."):
            return MOVED[key] + old[len(key) :]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; the old name is an alias that a later version removes",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system stamped the alias's spec on the real module: undo


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        new = new_name(fullname) if fullname.startswith("seqframe.") else None
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): an old name must not be found as a file first."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
