"""The package's layers, read from the source: each imports only the layers below it.

Layers, from the bottom: the root's public modules (errors, hook specs, kernels),
``core`` (no Lightning, no Hydra), ``data`` (core only), ``harness``, ``runs``,
``tools``; ``testing`` (the conformance kit) builds on core alone. Every import
counts, also those inside functions: a lazy import is still a dependency.
Also: the module names from before the re-layout still import, as aliases.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

import seqframe
from seqframe._aliases import MOVED, new_name

PACKAGE = Path(seqframe.__file__).parent
ROOT_MODULES = {"seqframe", "seqframe.errors", "seqframe.hookspecs", "seqframe.kernels", "seqframe._aliases"}
ALLOWED: Dict[str, Set[str]] = {
    "root": {"root", "core"},
    "core": {"root", "core"},
    "data": {"root", "core", "data"},
    "harness": {"root", "core", "data", "harness"},
    "runs": {"root", "core", "data", "harness", "runs"},
    "tools": {"root", "core", "data", "harness", "runs", "tools"},
    "testing": {"root", "core", "testing"},
}
FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "torchmetrics")
NO_FRAMEWORKS = {"root", "core", "testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in ROOT_MODULES:
        return "root"
    return module.split(".")[1]


def imports_of(path: Path) -> List[Tuple[int, str]]:
    """Every module ``path`` imports (absolute names), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "seqframe":  # ``from seqframe import kernels``: a sub-module or a root name
                subs = [f"seqframe.{a.name}" for a in node.names]
                found += [(node.lineno, name) for name in subs if name in ROOT_MODULES]
    return found


def sources() -> List[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts)


def test_every_module_is_in_a_known_layer() -> None:
    assert {layer_of(module_name(p)) for p in sources()} <= set(ALLOWED)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    module = module_name(path)
    layer = layer_of(module)
    wrong = []
    for line, imported in imports_of(path):
        top = imported.split(".")[0]
        if imported.startswith("seqframe.") or imported == "seqframe":
            target = layer_of(imported) if imported.split(".")[1:2] != ["conf"] else "root"
            if target not in ALLOWED[layer]:
                wrong.append(f"line {line}: {layer} imports {imported} ({target})")
        elif layer in NO_FRAMEWORKS and top in FRAMEWORKS:
            wrong.append(f"line {line}: {layer} imports {imported}")
    assert not wrong, f"{module} breaks the layering:\n" + "\n".join(wrong)


def test_the_layering_check_catches_a_wrong_import(tmp_path: Path) -> None:
    """The reader above must see imports inside functions too (the usual way a layer is broken)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from seqframe.harness.model import SequenceModel\n    import hydra\n")
    assert [name for _, name in imports_of(source)] == ["seqframe.harness.model", "hydra"]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_names_are_aliases_of_the_new_modules(old: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aliased = importlib.import_module(old)
    assert aliased is importlib.import_module(MOVED[old])
    assert aliased.__spec__.name == MOVED[old]  # the real module keeps its own spec
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)


def test_a_moved_package_takes_its_sub_modules_along() -> None:
    assert new_name("seqframe.cells.rnn") == "seqframe.core.cells.rnn"
    assert new_name("seqframe.data.text") is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from seqframe.cells.lstm import LSTM
    from seqframe.core.cells.lstm import LSTM as NEW

    assert LSTM is NEW
