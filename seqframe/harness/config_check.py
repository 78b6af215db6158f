"""Refuse a bad config before anything trains, with a message naming the key and the valid choices.

Where the valid keys come from, so that nobody keeps a list by hand:

* a node with ``_target_`` (``data``, ``trainer``, ``model.optimizer``,
  ``model.scheduler``, each ``callbacks.*`` and ``logger.*``): the keyword
  arguments of the class it instantiates (through ``**kwargs`` to the base
  classes), with their type hints;
* ``cell``: the cell's constructor, as everywhere else (:mod:`seqframe.core.options`);
* ``model`` and the top level: the dataclasses of :mod:`seqframe.harness.schema`,
  the one place for their types, ranges and choices. A top-level key in
  ``conf/config.yaml`` or a config group (a folder of ``conf/``) is valid even
  without a field there; a field adds its checks.

Values are typed by one rule for cell options and config keys alike
(:func:`seqframe.core.options.type_mismatch`). :func:`check_config` checks a
composed config; :mod:`seqframe.harness.command_line` runs it before Hydra starts
(``train()`` calls it too, for callers without the command line).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

from seqframe.core.options import RUNNER_KEYS, type_mismatch
from seqframe.errors import SeqframeError
from seqframe.harness.cell_configs import check_cell_config
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
    hint = f"; did you mean {close[0]}?" if close else "."
    return ConfigError(f"{key} is not a setting of {where}{hint} Valid keys: {', '.join(valid) or '(none)'}")


def check_type(key: str, value: Any, hint: Any) -> None:
    problem = type_mismatch(key, value, hint)
    if problem:
        raise ConfigError(problem)


def one_line(exc: BaseException) -> str:
    """Hydra's message (and its cause's) on one line."""
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    return " ".join(f"{exc}{cause}".split())


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
    if choices and isinstance(value, str) and value not in choices:  # a number is checked against the range
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


_passed: Optional[str] = None  # the last config that passed, as text


def _fingerprint(cfg: Mapping[str, Any]) -> Optional[str]:
    """A composed config as text, without ``hydra`` and ``paths`` (the run dir is made after the check)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        return None
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("hydra", "paths")]))


def check_config(cfg: Mapping[str, Any], config_dir: Path) -> None:
    """Every key, type and range seqframe can check without building anything; raises ConfigError.

    The config that passed last is remembered by content: ``train()`` checks again what the
    command line checked before Hydra ran only when it differs.
    """
    global _passed
    from seqframe.core.recurrent import BACKENDS
    from seqframe.data.batching import GLOBAL_KEY

    fingerprint = _fingerprint(cfg)
    if fingerprint is not None and fingerprint == _passed:
        return
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
    check_cell_config(str(cell.get("name")), {k: v for k, v in cell.items() if k not in RUNNER_KEYS})
    _check_range("cell.backend", cell.get("backend", "auto"), {"choices": BACKENDS})
    _passed = fingerprint
