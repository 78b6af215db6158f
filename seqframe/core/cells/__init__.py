"""Cells: the contract (:class:`Cell`) and the built-in rnn, lstm and gru.

The built-ins live in their own modules and are found through this
distribution's entry points, exactly like a third party's cells; importing
this package does not import them.
"""

from seqframe.core.cell import Cell, State

__all__ = ["Cell", "State"]
