"""Errors and warnings a user can meet, each with a message that says what to do."""

from __future__ import annotations


class SeqframeError(Exception):
    """Base of every error seqframe raises on purpose (its message is meant for users)."""


class UnknownCellError(SeqframeError, LookupError):
    """A cell name that no installed plugin provides."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class CellNameConflictError(SeqframeError):
    """Two installed plugins provide cells under the same name."""


class CellOptionError(SeqframeError, TypeError):
    """An option the cell's constructor does not take."""


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the other cells keep working."""
