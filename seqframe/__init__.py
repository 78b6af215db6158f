"""seqframe: a plugin-based framework for recurrent sequence models.

Public API: :class:`Cell` (the contract a cell implements), :data:`hookimpl`
(to register cells from a plugin), :func:`list_cells`, :func:`get_cell`,
:func:`create_cell` (the registry), and :class:`Recurrent` (runs any cell
over batches of sequences).

Importing this package is cheap: torch, the registry and the plugins are
loaded on first use of the names that need them, never Lightning or Hydra.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from seqframe import _aliases
from seqframe.hookspecs import hookimpl

_aliases.install()  # the names of modules before the 0.2 re-layout keep working (docs/layout.md)

__version__ = "0.2.0"

_LAZY = {
    "Cell": "seqframe.core.cell",
    "State": "seqframe.core.cell",
    "Recurrent": "seqframe.core.recurrent",
    "list_cells": "seqframe.core.registry",
    "get_cell": "seqframe.core.registry",
    "create_cell": "seqframe.core.registry",
    "broken_plugins": "seqframe.core.registry",
    "CellInfo": "seqframe.core.registry",
    "SeqframeError": "seqframe.errors",
    "UnknownCellError": "seqframe.errors",
    "CellNameConflictError": "seqframe.errors",
    "CellOptionError": "seqframe.errors",
    "PluginWarning": "seqframe.errors",
}

__all__ = ["hookimpl", "__version__", *_LAZY]

if TYPE_CHECKING:
    from seqframe.core.cell import Cell, State
    from seqframe.core.recurrent import Recurrent
    from seqframe.core.registry import CellInfo, broken_plugins, create_cell, get_cell, list_cells
    from seqframe.errors import (
        CellNameConflictError,
        CellOptionError,
        PluginWarning,
        SeqframeError,
        UnknownCellError,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seqframe' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
