"""The ``seqframe-train`` command line, checked once before Hydra runs.

It is parsed once and composed once (one job's values of a sweep), so that a
refused config costs no Hydra start-up and leaves no run directory behind;
Hydra's own refusals (an unknown key, a missing group choice) become messages
that say what to do. The rules themselves are :mod:`seqframe.harness.config_check`'s.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from seqframe.core.options import RUNNER_KEYS
from seqframe.harness.cell_configs import check_cell_config, options_only_some_take
from seqframe.harness.config_check import (
    HYDRA_KEYS,
    ConfigError,
    check_config,
    config_groups,
    constructor_parameters,
    one_line,
    unknown_key,
)
from seqframe.harness.optional_dependencies import check_extras

MULTIRUN_FLAGS = ("-m", "--multirun")
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
RUN_DIR_PLACEHOLDER = "<the run dir>"  # paths.output_dir before Hydra has made it


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


def _add_to_every_cell(argv: List[str], options: Iterable[str]) -> List[str]:
    """``cell.beta=2`` as ``++cell.beta=2`` (add-or-override), so that Hydra composes the jobs of the swept
    cells without ``beta`` too; :func:`~seqframe.harness.cell_configs.drop_in_sweep_job` drops it there."""
    keys = {f"cell.{key}" for key in options}
    return ["++" + a.lstrip("+") if is_override(a) and a.split("=", 1)[0].lstrip("+") in keys else a for a in argv]


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
    selects (``cell=a,b``) is looked up and given its ``cell.<option>`` keys (in a sweep over
    several cells, an option some of them lack is given as ``++cell.<option>`` and dropped from
    their jobs, and only an option none of them takes is refused); keys the config
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
    multirun = bool(set(argv) & set(MULTIRUN_FLAGS))
    cell_sweep = multirun and len(chosen) > 1  # an option some swept cells lack is dropped from their jobs
    lacking = options_only_some_take(chosen, given) if cell_sweep else {}
    for name in [] if cell_sweep else chosen:  # before composing: cell=lstmm gets "did you mean", not Hydra's
        check_cell_config(name, given, values=False)
    single = [s for o in overrides if not o.key_or_group.startswith("hydra") for s in [_single_run(o)] if s]
    argv, single = _add_to_every_cell(argv, lacking), _add_to_every_cell(single, lacking)
    composed = _compose(single, config_dir, values)
    if not chosen:
        check_cell_config(str(composed.cell.name), given, values=False)
    if not multirun and not set(argv) & set(INFO_FLAGS):  # a sweep's jobs are checked one by one, in train()
        composed.paths.output_dir = RUN_DIR_PLACEHOLDER
        check_config(composed, config_dir)
    return argv
