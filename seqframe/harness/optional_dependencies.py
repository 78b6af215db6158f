"""Optional extras a command line needs, checked before Hydra starts, so a missing one is
a one-line "pip install 'seqframe[...]'" instead of Hydra's "could not find ..." error."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Sequence, Tuple

from seqframe.errors import SeqframeError

# An override's prefix -> (the module it needs, the extra that installs it).
NEEDS: Dict[str, Tuple[str, str]] = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "experiment=compare_cells": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "hparams_search=": ("optuna", "optuna"),
    "hydra/sweeper=optuna": ("optuna", "optuna"),
    "hardware=slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),  # slurm and slurm_local
    "logger=tensorboard": ("tensorboard", "tensorboard"),
    "logger=many": ("tensorboard", "tensorboard"),  # csv and tensorboard
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


def expose_checkout_hydra_plugins() -> None:
    """Let Hydra find seqframe's own plugins (the Optuna sweeper) in an editable install.

    Hydra lists the ``hydra_plugins`` namespace with pkgutil, which cannot see through
    setuptools' editable-install import hook; a wheel install puts them in site-packages
    and needs nothing. So the checkout's ``hydra_plugins/`` is added to the namespace's path.
    """
    import seqframe

    own = Path(seqframe.__file__).resolve().parent.parent / "hydra_plugins"
    if not own.is_dir():
        return
    try:
        import hydra_plugins
    except ImportError:
        return
    if str(own) not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(str(own))
