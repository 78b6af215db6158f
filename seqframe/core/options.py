"""A cell's options: the keyword arguments of its constructor, with their types and defaults.

They are the whole configuration surface of a cell: Hydra configs, error
messages and the scaffold all read them from here.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Dict, Optional, Type

from seqframe.core.cell import Cell
from seqframe.errors import CellOptionError

PLAIN_TYPES = (int, float, bool, str)
RUNNER_KEYS = ("name", "backend")  # keys of a cell config that are not constructor options


def cell_options(cls: Type[Cell]) -> Dict[str, inspect.Parameter]:
    """The keyword options of a cell's constructor (everything after the two sizes)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[3:]
    return {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def takes_any_option(cls: Type[Cell]) -> bool:
    """Whether the constructor has ``**kwargs`` (then unknown options cannot be refused)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


def option_types(cls: Type[Cell]) -> Dict[str, Any]:
    """Type hints of a cell's options, resolved (``from __future__ import annotations`` too)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable hints: options stay untyped rather than breaking the app
        hints = {}
    return {name: hints.get(name, Any) for name in cell_options(cls)}


def plain_types(hint: Any) -> Optional[tuple]:
    """The Python types a plain (or Optional plain) hint accepts, else None (not checked)."""
    if hint in PLAIN_TYPES:
        return (int, float) if hint is float else (hint,)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and len(args) == 2 and type(None) in args:
        inner = plain_types(next(a for a in args if a is not type(None)))
        return inner + (type(None),) if inner else None
    return None


def describe_options(cls: Type[Cell], extra: Optional[Dict[str, Any]] = None) -> str:
    """``forget_bias=1.0, init='keras'``: the options with their defaults (plus ``extra``), for messages."""
    defaults = {k: p.default for k, p in cell_options(cls).items()} | dict(extra or {})
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "(none)"


def check_options(cls: Type[Cell], options: Dict[str, Any]) -> None:
    """Refuse unknown options (listing the valid ones) and values of the wrong type."""
    valid = cell_options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown and not takes_any_option(cls):
        raise CellOptionError(
            f"cell {cls.name!r} has no option {', '.join(map(repr, unknown))}; its options are: {describe_options(cls)}"
        )
    for key, hint in option_types(cls).items():
        accepted = plain_types(hint)
        if key not in options or accepted is None:
            continue
        value = options[key]
        if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
            continue
        shown = [t for t in accepted if not (t is int and float in accepted)]  # a float option takes ints too
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in shown)
        raise CellOptionError(
            f"cell {cls.name!r}: option {key}={value!r} must be {expected} (default: {valid[key].default!r})"
        )
