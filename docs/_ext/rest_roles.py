"""A griffe extension for the API pages: seqframe's docstrings use reST markup; show it as markdown.

``:class:`~seqframe.core.cell.Cell``` becomes `` `Cell` ``, double backquotes
single ones, and a paragraph ending in ``::`` ends in ``:`` before its
indented code block (:func:`seqframe.tools.config_reference.markdown_of_rest`).
Only the docs build sees the change; the docstrings stay as they are.
"""

from __future__ import annotations

from typing import Any

import griffe

from seqframe.tools.config_reference import markdown_of_rest


class RestRoles(griffe.Extension):
    """Rewrites each loaded object's docstring for markdown."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of_rest(obj.docstring.value)
