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
(:func:`seqframe.core.options.type_mismatch`). :func:`check_command_line` runs
before Hydra: it parses the command line once and composes it once, so that a
refused config leaves no run directory behind; :func:`check_config` checks a
composed config (``train()`` calls it too, for callers without the command line).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from seqframe.core.options import RUNNER_KEYS, type_mismatch
from seqframe.errors import SeqframeError
from seqframe.harness.cell_configs import check_cell_config
from seqframe.harness.optional_dependencies import check_extras
from seqframe.harness.schema import TopLevelConfig

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
SCHEDULER_EXTRA_KEYS = ("interval", "monitor", "frequency")  # read by SequenceModel, not the scheduler
MULTIRUN_FLAGS = ("-m", "--multirun")
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
RUN_DIR_PLACEHOLDER = "<the run dir>"  # paths.output_dir before Hydra has made it


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


# ---------------------------------------------------------------- the command line, before Hydra


def is_override(argument: str) -> bool:
    """Whether a command-line argument is an override (``key=value``, ``~key``), not a flag or a flag's value."""
    return not argument.startswith("-") and ("=" in argument or argument.startswith("~"))


def _add_or_override(argument: str, groups: Iterable[str]) -> str:
    """``+key=value`` of a config value as ``++key=value`` (add it, or set it when the files have it), so
    that ``+trainer.max_steps=3`` keeps working now that ``trainer/default.yaml`` lists max_steps."""
    key = argument[1:].split("=", 1)[0]
    plain_value = not re.search(r"[/@]", key) and key.split(".")[0] != "hydra" and key not in groups
    return "+" + argument if argument.startswith("+") and not argument.startswith("++") and plain_value else argument


def _first_value(override: Any) -> Any:
    """An override's value, the first of a sweep's (``a=1,2`` -> 1)."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    return value.list[0] if isinstance(value, ChoiceSweep) and value.list else value


def _single_run(override: Any) -> Optional[str]:
    """One job's version of an override: a sweep ``a=1,2`` becomes ``a=1`` (None: a sweeper's range)."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        first = next(iter(override.sweep_string_iterator()))
    except Exception:
        return None
    return f"{override.get_key_element()}={first}"


def _cells_selected(overrides: Sequence[Any]) -> List[str]:
    """Cell names the overrides select (every one of ``cell=a,b``; ``cell.name=x``), else none."""
    chosen: List[str] = []
    for override in overrides:
        if override.key_or_group in ("cell", "cell.name") and not override.is_delete():
            values = override.sweep_string_iterator() if override.is_sweep_override() else [override.value()]
            chosen = [str(v) for v in values]
    return chosen


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


def _missing_choice(exc: Any) -> ConfigError:
    """``data=nosuchdata``: the group's choices, not Hydra's search path."""
    group, _, name = str(exc.missing_cfg_file).rpartition("/")
    if not group or not exc.options:
        return ConfigError(one_line(exc))
    close = difflib.get_close_matches(name, exc.options, n=1)
    hint = f"; did you mean {close[0]}?" if close else "."
    return ConfigError(f"{group}={name} is not a choice of {group}{hint} Choices: {', '.join(exc.options)}")


def _refused_override(key: str, value: Any, composed: Any, hydra_message: str) -> ConfigError:
    """Why Hydra refused ``key=value``, from the config composed without it."""
    if key.startswith("cell."):  # an unknown option or a value the cell's typed schema refused
        check_cell_config(str(composed.cell.name), {key.split(".", 1)[1]: value})
    if not hydra_message.startswith("Could not override"):
        return ConfigError(hydra_message)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    where, valid = _section_keys(composed, parent)
    if key.rsplit(".", 1)[-1] in valid:
        return ConfigError(f"{key} is valid but not in the config files: add it with +{key}=... (a leading +)")
    return unknown_key(key, where, valid)


def _compose(lines: List[str], config_dir: Path, values: Mapping[str, Any]) -> Any:
    """The config of ``lines``, composed once; Hydra's refusals become a ConfigError that says what to do."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            return compose("config", overrides=lines)
        except MissingConfigException as exc:
            raise _missing_choice(exc) from None
        except HydraException as exc:
            message = one_line(exc)
            failed = re.search(r"Could not override '([^']+)'|Error merging override \+*([^=\s]+)=", str(exc))
            if failed is None:
                raise ConfigError(message) from None
        key = failed.group(1) or failed.group(2)
        composed = compose("config", overrides=[x for x in lines if x.split("=", 1)[0].lstrip("+~") != key])
    raise _refused_override(key, values.get(key), composed, message)


def check_command_line(argv: Sequence[str], config_dir: Path) -> List[str]:
    """Check a ``seqframe-train`` command line before Hydra runs; returns the arguments to give Hydra.

    Parsed once and composed once (one job's values of a sweep): every cell the command line
    selects (``cell=a,b``) is looked up and given its ``cell.<option>`` keys; keys the config
    lacks are explained; and a single run gets the whole :func:`check_config`, so that a refused
    config leaves no run directory behind. Needs the cells registered (``register_cell_configs``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    groups = config_groups(config_dir)
    argv = [_add_or_override(a, groups) if is_override(a) else a for a in argv]
    lines = [a for a in argv if is_override(a)]
    check_extras(lines)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException as exc:
        raise ConfigError(f"{exc.override} cannot be read: {one_line(exc)}") from None
    values = {o.key_or_group: _first_value(o) for o in overrides if not o.is_delete()}
    given = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("cell.")}
    given = {k: v for k, v in given.items() if k not in RUNNER_KEYS}
    chosen = _cells_selected(overrides)
    for name in chosen:  # before composing: cell=lstmm gets "did you mean", not Hydra's search path
        check_cell_config(name, given, values=False)
    single = [s for o in overrides if not o.key_or_group.startswith("hydra") for s in [_single_run(o)] if s]
    composed = _compose(single, config_dir, values)
    if not chosen:
        check_cell_config(str(composed.cell.name), given, values=False)
    if not set(argv) & set(MULTIRUN_FLAGS + INFO_FLAGS):  # a sweep's jobs are checked one by one, in train()
        composed.paths.output_dir = RUN_DIR_PLACEHOLDER
        check_config(composed, config_dir)
    return argv
