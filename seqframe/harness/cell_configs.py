"""Cells as Hydra configs: every installed cell becomes ``cell=<name>``.

A cell's options are its constructor's keyword arguments; this module turns
them into a typed structured config (a dataclass) that Hydra's ConfigStore
serves under group ``cell`` — unless ``conf/cell/<name>.yaml`` exists, which
then wins (the built-ins have commented YAML files). :func:`check_cell_config`
is the cell part of the config check, for the command line and the composed
config alike.

A sweep over several cells may set an option only some of them take
(``-m cell=janet,gru cell.beta=2.0``): :func:`options_only_some_take` finds
such options on the command line (an option none of them takes is refused),
and :func:`drop_options_of_other_cells` removes them from the jobs of the
cells without them, saying so (docs/guide/sweeps.md).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Type

from seqframe.core.cell import Cell
from seqframe.core.options import (
    RUNNER_KEYS,
    cell_options,
    check_option_names,
    check_options,
    describe_options,
    option_types,
    plain_types,
    takes_any_option,
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
        default = parameter.default  # there is one: the registry refuses cells with an option without
        if isinstance(default, (list, dict)):
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


def options_only_some_take(names: Sequence[str], options: Mapping[str, Any]) -> Dict[str, List[str]]:
    """A sweep over the cells ``names``: ``{option: [the swept cells without it]}`` for each option that only
    some of them take (their jobs drop it). An option none of them takes is refused as for one cell, with
    "did you mean" over all their options; an unknown cell name is refused too."""
    for name in names:
        get_cell(name)
    lacking: Dict[str, List[str]] = {}
    for key, value in options.items():
        without = []
        for name in names:
            try:
                check_cell_config(name, {key: value}, values=False)
            except CellOptionError as exc:
                without.append(name)
                refusal = exc
        if len(without) == len(names):
            if key in MODEL_KEYS or key == "input_size" or len(names) == 1:
                raise refusal
            valid = sorted({k for name in names for k in cell_options(get_cell(name))})
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]}?" if close else "."
            listed = "; ".join(f"{name}: {describe_options(get_cell(name), RUNNER_DEFAULTS)}" for name in names)
            raise CellOptionError(f"cell.{key} is an option of none of the swept cells{hint} Their options: {listed}")
        if without:
            lacking[key] = without
    return lacking


def drop_options_of_other_cells(cfg: Any, overrides: Sequence[str]) -> Dict[str, Any]:
    """Remove from a sweep job's ``cfg.cell`` the options its cell does not take that the job's
    ``overrides`` set (the command line checked that another swept cell takes them); returns them."""
    from omegaconf import open_dict

    cls = get_cell(str(cfg.cell.name))
    given = [line.split("=", 1)[0].lstrip("+") for line in overrides]
    keys = [key[len("cell.") :] for key in given if key.startswith("cell.")]
    dropped = {
        key: cfg.cell[key]
        for key in keys
        if key in cfg.cell and key not in RUNNER_KEYS and key not in cell_options(cls) and not takes_any_option(cls)
    }
    with open_dict(cfg.cell):
        for key in dropped:
            del cfg.cell[key]
    return dropped


def drop_in_sweep_job(cfg: Any) -> Dict[str, Any]:
    """:func:`drop_options_of_other_cells` for the running Hydra sweep job: one line says what was
    dropped, and the job's saved config (``.hydra/config.yaml``) becomes the config that ran, with a
    comment naming the dropped options."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra = HydraConfig.get()
    dropped = drop_options_of_other_cells(cfg, list(hydra.overrides.task))
    if not dropped:
        return dropped
    shown = ", ".join(f"cell.{key}={value}" for key, value in dropped.items())
    note = f"cell {cfg.cell.name!r} has no option {', '.join(dropped)}: {shown} is for the other cells of this sweep"
    print(f"seqframe: {note}; dropped from this job")
    saved = Path(hydra.runtime.output_dir) / str(hydra.output_subdir or "") / "config.yaml"
    if hydra.output_subdir and saved.is_file():
        saved.write_text(f"# {note}, dropped from this job\n" + OmegaConf.to_yaml(cfg))
    return dropped
