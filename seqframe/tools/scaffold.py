"""``seqframe new-cell NAME``: write an installable plugin package with a working cell."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template
from typing import Dict

from seqframe.errors import SeqframeError

# template file -> path in the new package ({module} is the import name)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "cell.py.tmpl": "{module}/__init__.py",
    "test_cell.py.tmpl": "tests/test_{module}.py",
}


def names_for(name: str) -> Dict[str, str]:
    """The names a plugin for cell ``name`` uses: distribution, module and class."""
    return {
        "name": name,
        "dist": "seqframe-" + name.replace("_", "-"),
        "module": f"seqframe_{name}",
        "class_name": "".join(part.capitalize() for part in name.split("_")) + "Cell",
    }


def new_cell(name: str, directory: Path) -> Path:
    """Write the package for cell ``name`` into ``directory/<distribution>``; returns that path."""
    from seqframe.core.cell import name_problem
    from seqframe.core.registry import list_cells

    problem = name_problem(name)
    if problem:
        raise SeqframeError(problem)

    taken = {info.name: info.distribution for info in list_cells()}
    if name in taken:
        raise SeqframeError(f"a cell named {name!r} is already installed (from {taken[name]}); choose another name")
    values = names_for(name)
    target = Path(directory) / values["dist"]
    if target.exists():
        raise SeqframeError(f"{target} already exists; remove it or choose another --dir (nothing was written)")
    templates = resources.files("seqframe.tools") / "templates" / "new_cell"
    for template, relative in LAYOUT.items():
        path = target / relative.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((templates / template).read_text()).substitute(values))
    return target
