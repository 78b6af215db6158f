"""A cell's options: the keyword arguments of its constructor, with their types and defaults.

They are the whole configuration surface of a cell: Hydra configs, error
messages and the scaffold all read them from here.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Dict, Iterable, List, Mapping, Optional, Type

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


def config_value(value: Any) -> bool:
    """Whether a config (YAML, the command line) can hold ``value``: plain values, lists and dicts of them."""
    if value is None or isinstance(value, PLAIN_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        return all(map(config_value, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and config_value(v) for k, v in value.items())
    return False


def config_problems(cls: Type[Cell]) -> List[str]:
    """Why a cell's options cannot become config keys (empty when they can).

    Checked where cells are accepted (the registry), so that one such cell is listed as broken
    with this reason instead of breaking the config of every run.
    """
    problems = []
    for key, parameter in cell_options(cls).items():
        if parameter.default is parameter.empty:
            problems.append(
                f"option {key!r} has no default; every option after the two sizes needs one, "
                f"as it becomes the config key cell.{key} (e.g. {key}: float = 1.0)"
            )
        elif not config_value(parameter.default):
            problems.append(
                f"option {key!r} has the default {parameter.default!r}, which a config cannot hold; "
                "use a bool, int, float, str or None (or a list or dict of them), e.g. a name that "
                "__init__ looks up"
            )
    return problems


def plain_types(hint: Any) -> Optional[tuple]:
    """The Python types a plain (or Optional plain) hint accepts, else None: what a Hydra schema can type."""
    if hint in PLAIN_TYPES:
        return (int, float) if hint is float else (hint,)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and len(args) == 2 and type(None) in args:
        inner = plain_types(next(a for a in args if a is not type(None)))
        return inner + (type(None),) if inner else None
    return None


def accepted_types(hint: Any) -> Optional[tuple]:
    """The plain types a hint accepts (``Optional[Union[int, float]]`` too), else None: not checked."""
    direct = plain_types(hint)
    if direct is not None or typing.get_origin(hint) is not typing.Union:
        return direct
    parts = [(type(None),) if arg is type(None) else accepted_types(arg) for arg in typing.get_args(hint)]
    return tuple(t for part in parts for t in part) if all(parts) else None


def type_mismatch(label: str, value: Any, hint: Any) -> Optional[str]:
    """``label='abc' must be int or null`` when ``value`` does not fit ``hint``, else None.

    The one value-type rule of seqframe, for cell options and config keys alike: a float
    takes an int, nothing but bool takes a bool, and a hint that is not plain is left to
    the constructor (None).
    """
    accepted = accepted_types(hint)
    if accepted is None or (value is None and type(None) in accepted):
        return None
    if value is None:
        return f"{label} must be set (got null)"
    if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
        return None
    shown = [t for t in dict.fromkeys(accepted) if not (t is int and float in accepted) and t is not type(None)]
    expected = " or ".join(t.__name__ for t in shown) + (" or null" if type(None) in accepted else "")
    return f"{label}={value!r} must be {expected}"


def describe_options(cls: Type[Cell], extra: Optional[Mapping[str, Any]] = None) -> str:
    """``forget_bias=1.0, init='keras'``: the options with their defaults (plus ``extra``), for messages."""
    defaults = {k: p.default for k, p in cell_options(cls).items()} | dict(extra or {})
    shown = [k if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in defaults.items()]
    return ", ".join(shown) or "(none)"


def type_name(hint: Any) -> str:
    """``float``, ``Optional[int]``: a type hint as users read it."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def describe_typed_options(cls: Type[Cell]) -> List[str]:
    """``["forget_bias=1.0: float", ...]``: each option with its default and type (``seqframe cells``)."""
    hints = option_types(cls)
    return [f"{key}={parameter.default!r}: {type_name(hints[key])}" for key, parameter in cell_options(cls).items()]


def check_option_names(cls: Type[Cell], names: Iterable[str], extra: Optional[Mapping[str, Any]] = None) -> None:
    """Refuse options the constructor does not take, listing the valid ones (and ``extra``:
    keys the caller takes besides them, such as a config's ``backend``, with their defaults)."""
    unknown = sorted(set(names) - set(cell_options(cls)) - set(extra or {}))
    if unknown and not takes_any_option(cls):
        raise CellOptionError(
            f"cell {cls.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {describe_options(cls, extra)}"
        )


def check_options(cls: Type[Cell], options: Mapping[str, Any], extra: Optional[Mapping[str, Any]] = None) -> None:
    """Refuse unknown options and values of the wrong type, before any cell is built."""
    check_option_names(cls, options, extra)
    defaults = cell_options(cls)
    for key, hint in option_types(cls).items():
        problem = type_mismatch(f"cell {cls.name!r}: option {key}", options[key], hint) if key in options else None
        if problem:
            default = defaults[key].default
            raise CellOptionError(problem + ("" if default is inspect.Parameter.empty else f" (default: {default!r})"))
