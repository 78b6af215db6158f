"""Refuse a bad config before anything trains, with a message naming the key and the valid choices.

Where the valid keys come from, so that nobody keeps a list by hand:

* a node with ``_target_`` (``data``, ``trainer``, ``model.optimizer``,
  ``model.scheduler``, each ``callbacks.*`` and ``logger.*``): the keyword
  arguments of the class it instantiates (through ``**kwargs`` to the base
  classes), with their type hints;
* ``cell``: the cell's constructor, as everywhere else (:mod:`seqframe.core.options`);
* ``model`` and the top level: the dataclasses :class:`ModelConfig` and
  :class:`TopLevelConfig` below — the one place for their types and ranges.
  A top-level key in ``conf/config.yaml`` or a config group (a folder of
  ``conf/``) is valid even without a field here; a field adds its checks.

:func:`check_overrides` runs before Hydra (so that ``trainer.max_epoch=3``
gets this message instead of Hydra's), :func:`check_config` on the composed
config at the start of :func:`seqframe.harness.train.train`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from seqframe.core.options import plain_types
from seqframe.errors import SeqframeError
from seqframe.harness.schema import TopLevelConfig

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
SCHEDULER_EXTRA_KEYS = ("interval", "monitor", "frequency")  # read by SequenceModel, not the scheduler


class ConfigError(SeqframeError):
    """A config key, type or value that cannot work; raised before training starts."""


# ---------------------------------------------------------------- messages


def unknown_key(key: str, where: str, valid: Iterable[str]) -> ConfigError:
    """``trainer.max_epoch is not a setting of ...; did you mean max_epochs?`` plus the valid keys."""
    valid = sorted(valid)
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(f"{key} is not a setting of {where}{hint} Valid keys: {', '.join(valid) or '(none)'}")


def accepted_types(hint: Any) -> Optional[tuple]:
    """The plain Python types a hint accepts (``Optional[Union[int, float]]`` too), else None (unchecked)."""
    direct = plain_types(hint)
    if direct is not None or typing.get_origin(hint) is not typing.Union:
        return direct
    parts = [(type(None),) if arg is type(None) else accepted_types(arg) for arg in typing.get_args(hint)]
    return tuple(t for part in parts for t in part) if all(parts) else None


def check_type(key: str, value: Any, hint: Any) -> None:
    accepted = accepted_types(hint)
    if accepted is None or value is None and type(None) in accepted:
        return
    if value is None:
        raise ConfigError(f"{key} must be set (got null)")
    if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
        return
    shown = [t for t in dict.fromkeys(accepted) if not (t is int and float in accepted) and t is not type(None)]
    expected = " or ".join(t.__name__ for t in shown) + (" or null" if type(None) in accepted else "")
    raise ConfigError(f"{key}={value!r} must be {expected}")


# ---------------------------------------------------------------- schemas (top level, model)


def check_schema(values: Mapping[str, Any], schema: type, prefix: str, also_valid: Iterable[str] = ()) -> None:
    """Keys, types, ranges and choices of ``values`` against a dataclass schema."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    valid = set(fields) | set(also_valid)
    for key in values:
        if key not in valid:
            raise unknown_key(f"{prefix}{key}", prefix.rstrip(".") or "the top level", valid)
    for name, spec in fields.items():
        if name not in values:
            continue
        value, hint = values[name], hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name} must be a group of settings, got {value!r}")
            check_schema(value, hint, f"{prefix}{name}.")
            continue
        check_type(f"{prefix}{name}", value, hint)
        _check_range(f"{prefix}{name}", value, spec.metadata)


def _check_range(key: str, value: Any, bounds: Mapping[str, Any]) -> None:
    choices = bounds.get("choices") or ()
    if choices and value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")
    low, high = bounds.get("min"), bounds.get("max")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (low is not None and value < low) or (high is not None and value > high):
        span = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        raise ConfigError(f"{key}={value!r} is out of range: it must be {span}")


# ---------------------------------------------------------------- nodes with _target_


def constructor_parameters(cls: type) -> Optional[Dict[str, Any]]:
    """Keyword arguments ``cls(...)`` takes, following ``**kwargs`` into base classes, with their hints;
    None when some ``**kwargs`` leads nowhere (then any key may be valid)."""
    parameters: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return None
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable annotations: keys are still checked, types are not
            hints = {}
        signature = inspect.signature(init)
        for name, parameter in list(signature.parameters.items())[1:]:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                parameters.setdefault(name, hints.get(name, Any))
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            return parameters
    return None


def check_target_node(node: Mapping[str, Any], prefix: str, extra: Iterable[str] = ()) -> None:
    """The keys and plain-typed values of a node Hydra instantiates, against its class's signature."""
    from hydra.utils import get_class

    target = node.get("_target_")
    if target is None:
        raise ConfigError(f"{prefix.rstrip('.')} needs a _target_ (the class to build)")
    try:
        cls = get_class(str(target))
    except Exception:
        raise ConfigError(
            f"{prefix}_target_={target!r} cannot be imported; is it spelled right and installed?"
        ) from None
    parameters = constructor_parameters(cls)
    if parameters is None:
        return
    for key, value in node.items():
        if key in HYDRA_KEYS or key in extra:
            continue
        if key not in parameters:
            raise unknown_key(f"{prefix}{key}", f"{prefix.rstrip('.')} ({target})", parameters)
        check_type(f"{prefix}{key}", value, parameters[key])


def _check_named_nodes(group: Optional[Mapping[str, Any]], prefix: str) -> None:
    """``callbacks.*`` / ``logger.*``: each entry null (dropped) or a node with ``_target_``."""
    for name, node in (group or {}).items():
        if node is not None:
            if not isinstance(node, Mapping):
                raise ConfigError(f"{prefix}{name} must be null or a node with _target_, got {node!r}")
            check_target_node(node, f"{prefix}{name}.")


# ---------------------------------------------------------------- the whole config


def config_groups(config_dir: Path) -> set:
    """Top-level keys a config group may add: the folders of the config tree."""
    return {p.name for p in Path(config_dir).iterdir() if p.is_dir()}


def primary_keys(config_dir: Path) -> set:
    """Top-level keys of ``config.yaml`` itself: valid by definition."""
    from omegaconf import OmegaConf

    return {k for k in OmegaConf.load(Path(config_dir) / "config.yaml") if k != "defaults"}


def check_config(cfg: Mapping[str, Any], config_dir: Path) -> None:
    """Every key, type and range seqframe can check without building anything; raises ConfigError."""
    from seqframe.core.options import check_options
    from seqframe.core.registry import get_cell
    from seqframe.data.batching import GLOBAL_KEY

    # keys starting with "_" are values that config files interpolate from (an experiment's lookup table)
    values = {k: v for k, v in dict(cfg).items() if not str(k).startswith("_") and k != "hydra"}
    also_valid = config_groups(config_dir) | primary_keys(config_dir)
    check_schema(values, TopLevelConfig, "", also_valid=also_valid)
    check_target_node(values["data"], "data.", extra=(GLOBAL_KEY,))  # taken out before the module is built
    check_target_node(values["trainer"], "trainer.")
    model = values.get("model") or {}
    if model.get("optimizer"):
        check_target_node(model["optimizer"], "model.optimizer.")
    if model.get("scheduler"):
        check_target_node(model["scheduler"], "model.scheduler.", extra=SCHEDULER_EXTRA_KEYS)
    _check_named_nodes(values.get("callbacks"), "callbacks.")
    _check_named_nodes(values.get("logger"), "logger.")
    cell = dict(values["cell"])
    cls = get_cell(str(cell.get("name")))
    check_options(cls, {k: v for k, v in cell.items() if k not in ("name", "backend")})


# ---------------------------------------------------------------- command-line overrides, before Hydra


def _single_run(override: Any) -> Optional[str]:
    """One job's version of an override: a sweep ``a=1,2`` becomes ``a=1`` (None: a sweeper's range)."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        first = next(iter(override.sweep_string_iterator()))
    except Exception:
        return None
    return f"{override.get_key_element()}={first}"


def _section_keys(composed: Any, parent: str) -> tuple[str, Iterable[str]]:
    """What may stand under ``parent``: a class's arguments (``_target_``), else the node's keys."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    node = OmegaConf.select(composed, parent) if parent else composed
    if node is None or not OmegaConf.is_dict(node):
        return parent or "the top level", []
    keys = [str(k) for k in node.keys()]
    if "_target_" in node:
        try:
            parameters = constructor_parameters(get_class(str(node["_target_"])))
        except Exception:
            parameters = None
        if parameters is not None:
            return f"{parent} ({node['_target_']})", sorted(set(parameters) | set(keys) - set(HYDRA_KEYS))
    return parent or "the top level", keys


def check_overrides(arguments: Sequence[str], config_dir: Path) -> None:
    """Compose once with the command line's overrides; turn Hydra's refusals into a ConfigError."""
    import re

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [a for a in arguments if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    overrides = OverridesParser.create().parse_overrides(lines)
    single = [s for o in overrides if not o.key_or_group.startswith("hydra") for s in [_single_run(o)] if s]
    if not single:
        return
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            compose("config", overrides=single)
            return
        except HydraException as exc:
            failed = re.search(r"Could not override '([^']+)'", str(exc))
            if failed is None:
                cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
                raise ConfigError(" ".join(f"{exc}{cause}".split())) from None
            key = failed.group(1)
            rest = [s for s in single if s.split("=", 1)[0].lstrip("+~") != key]
            composed = compose("config", overrides=rest)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    where, valid = _section_keys(composed, parent)
    if key.rsplit(".", 1)[-1] in valid:
        raise ConfigError(f"{key} is valid but not in the config files: add it with +{key}=... (a leading +)")
    raise unknown_key(key, where, valid)
