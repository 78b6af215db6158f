"""The hooks a seqframe plugin can implement (pluggy project name ``seqframe``).

A plugin is a module named in the ``seqframe`` entry-point group of its
distribution; it implements hooks with :data:`hookimpl`::

    @seqframe.hookimpl
    def seqframe_cells():
        return [MyCell]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Type

import pluggy

PROJECT = "seqframe"
ENTRY_POINT_GROUP = "seqframe"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from seqframe.core.cell import Cell


@hookspec
def seqframe_cells() -> List[Type[Cell]]:
    """Return the :class:`seqframe.Cell` subclasses this plugin provides."""
