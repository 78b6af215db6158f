"""Optional extras a command line needs, checked before Hydra starts, so a missing one is
a one-line "pip install 'seqframe[...]'" instead of Hydra's "could not find ..." error."""

from __future__ import annotations

import importlib.util
from typing import Dict, Sequence, Tuple

from seqframe.errors import SeqframeError

# An override's prefix -> (the module it needs, the extra that installs it).
NEEDS: Dict[str, Tuple[str, str]] = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "experiment=compare_cells": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "hparams_search=": ("optuna", "optuna"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check_extras(overrides: Sequence[str]) -> None:
    """Raise a SeqframeError naming the extra to install when an override needs a missing one."""
    for override in overrides:
        bare = override.lstrip("+~")
        for prefix, (module, extra) in NEEDS.items():
            if bare.startswith(prefix) and not _installed(module):
                raise SeqframeError(f"{bare} needs the {extra} extra: pip install 'seqframe[{extra}]'")
