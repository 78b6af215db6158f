"""Cells as Hydra configs: every installed cell becomes ``cell=<name>``.

A cell's options are its constructor's keyword arguments; this module turns
them into a typed structured config (a dataclass) that Hydra's ConfigStore
serves under group ``cell`` — unless ``conf/cell/<name>.yaml`` exists, which
then wins (the built-ins have commented YAML files). :func:`check_cell_config`
is the cell part of the config check, for the command line and the composed
config alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field, make_dataclass
from pathlib import Path
from typing import Any, List, Mapping, Type

from seqframe.core.cell import Cell
from seqframe.core.options import (
    cell_options,
    check_option_names,
    check_options,
    option_types,
    plain_types,
)
from seqframe.core.registry import get_cell, list_cells
from seqframe.errors import CellOptionError
from seqframe.harness.schema import ModelConfig

RUNNER_DEFAULTS = {"backend": "auto"}  # the config's keys besides the options (and name), listed with them
MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}  # set under model for every layer, not under cell


def cell_schema(cls: Type[Cell]) -> type:
    """A dataclass with ``name``, ``backend`` and one typed field per option (its default)."""
    fields: List[tuple] = [("name", str, field(default=cls.name))]
    fields += [(key, str, field(default=default)) for key, default in RUNNER_DEFAULTS.items()]
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


def _misplaced(name: str, key: str, value: Any) -> CellOptionError:
    if key == "input_size":
        where = "the input size comes from the data (model.encoder and model.embed_dim shape it)"
    else:
        where = f"it is a model setting, the same for every layer: model.{key}={value}"
    return CellOptionError(f"cell.{key} is not an option of cell {name!r}: {where}")


def check_cell_config(name: str, options: Mapping[str, Any], values: bool = True) -> None:
    """The cell part of a config: the cell's name (an unknown one gets "did you mean"), sizes and
    other model settings given under ``cell``, then the options (names and, with ``values``, types)."""
    cls = get_cell(name)
    for key, value in options.items():
        if key not in cell_options(cls) and (key in MODEL_KEYS or key == "input_size"):
            raise _misplaced(name, key, value)
    if values:
        check_options(cls, options, extra=RUNNER_DEFAULTS)
    else:
        check_option_names(cls, options, extra=RUNNER_DEFAULTS)
