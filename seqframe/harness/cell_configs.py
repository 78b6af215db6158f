"""Cells as Hydra configs: every installed cell becomes ``cell=<name>``.

A cell's options are its constructor's keyword arguments; this module turns
them into a typed structured config (a dataclass) that Hydra's ConfigStore
serves under group ``cell`` — unless ``conf/cell/<name>.yaml`` exists, which
then wins (the built-ins have commented YAML files). It also checks
``cell.<option>=...`` overrides before Hydra composes, so a misspelled option
is refused with the list of valid ones.
"""

from __future__ import annotations

from dataclasses import MISSING, field, make_dataclass
from pathlib import Path
from typing import Any, Iterable, List, Sequence, Type

from seqframe.core.cell import Cell
from seqframe.core.options import RUNNER_KEYS, cell_options, describe_options, option_types, plain_types
from seqframe.core.registry import get_cell, list_cells
from seqframe.errors import CellOptionError


def cell_schema(cls: Type[Cell]) -> type:
    """A dataclass with ``name``, ``backend`` and one typed field per option (its default)."""
    fields: List[tuple] = [("name", str, field(default=cls.name)), ("backend", str, field(default="auto"))]
    hints = option_types(cls)
    for key, parameter in cell_options(cls).items():
        hint = hints[key] if plain_types(hints[key]) else Any
        default = parameter.default
        if default is parameter.empty:
            fields.append((key, hint, field(default=MISSING)))
        elif isinstance(default, (list, dict)):
            fields.append((key, hint, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields.append((key, hint, field(default=default)))
    return make_dataclass(f"{cls.__name__}CellConfig", fields)


def register_cell_configs(config_dir: Path) -> List[str]:
    """Store a config for every installed cell without its own YAML; returns their names."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    registered = []
    for info in list_cells():
        if not (config_dir / "cell" / f"{info.name}.yaml").is_file():
            store.store(group="cell", name=info.name, node=cell_schema(info.cls), provider=info.distribution)
            registered.append(info.name)
    return registered


def _cells_chosen(overrides: Sequence[Any], config_dir: Path) -> List[str]:
    """Cell names an override list selects (``cell=a,b``, ``cell.name=x``), else the composed default."""
    chosen: List[str] = []
    for override in overrides:
        if override.key_or_group in ("cell", "cell.name"):
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            chosen = [str(v) for v in values]
    if chosen:
        return chosen
    from hydra import compose, initialize_config_dir

    groups = [o.input_line for o in overrides if o.key_or_group == "experiment" and not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return [str(compose("config", overrides=groups).cell.name)]


def check_cell_overrides(arguments: Iterable[str], config_dir: Path) -> None:
    """Refuse ``cell.<option>=`` overrides that the chosen cell(s) do not take, before Hydra runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [a for a in arguments if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    overrides = OverridesParser.create().parse_overrides(lines)
    keys = {o.key_or_group.split(".", 1)[1] for o in overrides if o.key_or_group.startswith("cell.")}
    keys -= set(RUNNER_KEYS)
    if not keys:
        return
    for name in _cells_chosen(overrides, config_dir):
        cls = get_cell(name)
        unknown = sorted(keys - set(cell_options(cls)))
        if unknown:
            raise CellOptionError(
                f"cell {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {describe_options(cls, extra={'backend': 'auto'})}"
            )
