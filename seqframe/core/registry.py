"""Finding cells: a pluggy PluginManager fed from the ``seqframe`` entry points.

The built-in cells come through the same path as a third party's: the
``seqframe`` distribution names ``seqframe.core.cells.rnn`` etc. in its own
entry points. Entry points are loaded once, on first use, so that
``import seqframe`` stays light and imports no plugin.

Environment variables (read when the registry is first loaded):

* ``SEQFRAME_DISABLE_PLUGINS=a,b``: entry points ``a`` and ``b`` are blocked
  (pluggy's ``set_blocked``): never imported.
* ``SEQFRAME_PLUGINS=a,b``: of the third-party entry points, load only these;
  the built-ins stay on unless blocked.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import warnings
from dataclasses import dataclass, field
from importlib import import_module, metadata
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type

import pluggy

from seqframe import hookspecs
from seqframe.core.cell import Cell, name_problem
from seqframe.core.options import check_options, config_problems
from seqframe.errors import CellNameConflictError, PluginWarning, UnknownCellError

CORE_DISTRIBUTION = "seqframe"
DISABLE_ENV = "SEQFRAME_DISABLE_PLUGINS"
ONLY_ENV = "SEQFRAME_PLUGINS"
# Used only when the seqframe distribution is not installed (a bare source
# checkout on sys.path): then it has no entry points to be found through.
BUILTIN_MODULES = {name: f"seqframe.core.cells.{name}" for name in ("rnn", "lstm", "gru")}


@dataclass(frozen=True)
class Source:
    """Where a plugin came from: its entry point and distribution."""

    entry_point: str
    distribution: str
    version: str

    def describe(self) -> str:
        return f"entry point {self.entry_point!r} of distribution {self.distribution} {self.version}"


@dataclass(frozen=True)
class CellInfo:
    """One available cell: its name, class and provenance."""

    name: str
    cls: Type[Cell]
    source: Source

    @property
    def distribution(self) -> str:
        return self.source.distribution

    @property
    def version(self) -> str:
        return self.source.version

    @property
    def entry_point(self) -> str:
        return self.source.entry_point

    @property
    def module(self) -> str:
        return self.cls.__module__


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to load, or one of its cells that was refused (``cell``: its name)."""

    source: Source
    error: str
    cell: Optional[str] = None


@dataclass
class CellRegistry:
    """Every cell the installed plugins provide, plus what went wrong loading them."""

    cells: Dict[str, CellInfo] = field(default_factory=dict)
    conflicts: Dict[str, List[CellInfo]] = field(default_factory=dict)
    broken: List[BrokenPlugin] = field(default_factory=list)

    def add(self, info: CellInfo) -> None:
        if info.name in self.conflicts:
            self.conflicts[info.name].append(info)
            return
        known = self.cells.get(info.name)
        if known is None:
            self.cells[info.name] = info
        elif known.cls is not info.cls:
            self.conflicts[info.name] = [self.cells.pop(info.name), info]

    def get(self, name: str) -> CellInfo:
        """The cell called ``name``, or an error that says what is available."""
        if name in self.cells:
            return self.cells[name]
        if name in self.conflicts:
            claims = self.conflicts[name]
            listed = "; ".join(f"{c.cls.__module__}.{c.cls.__qualname__} from {c.source.describe()}" for c in claims)
            blocks = " or ".join(f"{DISABLE_ENV}={c.entry_point}" for c in claims)
            raise CellNameConflictError(
                f"cell name {name!r} is provided by more than one plugin: {listed}. "
                f"Uninstall one of them, or block one with {blocks}."
            )
        available = sorted(self.cells)
        message = f"unknown cell {name!r}."
        close = difflib.get_close_matches(name, available, n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        message += f" Available cells: {', '.join(available) or '(none)'}."
        for plugin in self.broken:
            if plugin.cell and plugin.cell.lower() == name.lower():
                message += f" The cell {name!r} of {plugin.source.describe()} was refused: {plugin.error}"
            elif plugin.source.entry_point == name:
                message += f" A plugin named {name!r} is installed but failed to load: {plugin.error}"
        message += " Run `seqframe cells` to see every cell and plugin."
        raise UnknownCellError(message)


def _split_env(variable: str) -> List[str]:
    return [part.strip() for part in os.environ.get(variable, "").split(",") if part.strip()]


def _source_of(entry_point: metadata.EntryPoint) -> Source:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return Source(entry_point.name, "unknown", "")
    return Source(entry_point.name, dist.metadata["Name"] or "unknown", dist.version or "")


def _discover() -> List[Tuple[Source, Any]]:
    """All entry points to consider: ``(source, loader)`` pairs, built-ins first."""
    found = [(_source_of(ep), ep.load) for ep in metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)]
    if not any(source.distribution == CORE_DISTRIBUTION for source, _ in found):
        from seqframe import __version__

        for name, module in BUILTIN_MODULES.items():
            found.append((Source(name, CORE_DISTRIBUTION, __version__), lambda module=module: import_module(module)))
    found.sort(key=lambda item: item[0].distribution != CORE_DISTRIBUTION)
    return found


def _report(registry: CellRegistry, source: Source, error: str, cell: Optional[str] = None) -> None:
    registry.broken.append(BrokenPlugin(source, error, cell))
    warnings.warn(
        f"seqframe plugin {source.describe()} failed and was skipped ({error}); "
        f"other cells still work. Fix or uninstall {source.distribution}, "
        f"or silence it with {DISABLE_ENV}={source.entry_point}.",
        PluginWarning,
        stacklevel=3,
    )


def _register_plugins(
    manager: pluggy.PluginManager, registry: CellRegistry, candidates: Iterable[Tuple[Source, Any]]
) -> Dict[str, Source]:
    """Import and register every allowed entry point; returns plugin name -> source."""
    only = set(_split_env(ONLY_ENV))
    for name in _split_env(DISABLE_ENV):
        manager.set_blocked(name)
    sources: Dict[str, Source] = {}
    for source, load in candidates:
        name = source.entry_point
        builtin = source.distribution == CORE_DISTRIBUTION
        if manager.is_blocked(name) or (only and not builtin and name not in only):
            continue
        if name in sources:
            _report(registry, source, f"entry point name {name!r} is already used by {sources[name].describe()}")
            continue
        try:
            module = load()
            manager.register(module, name=name)
        except Exception as exc:  # a plugin's import may fail in any way
            _report(registry, source, f"{type(exc).__name__}: {exc}")
            continue
        if not manager.get_hookcallers(module):
            _report(registry, source, "it implements no seqframe hook (expected a @seqframe.hookimpl seqframe_cells)")
            manager.unregister(module)
            continue
        sources[name] = source
    loaded = {source.entry_point for source, _ in candidates}
    for name in sorted(only - loaded):
        warnings.warn(
            f"{ONLY_ENV} names {name!r}, but no installed plugin has that entry point", PluginWarning, stacklevel=3
        )
    return sources


def check_cell_class(cls: object) -> Optional[str]:
    """Why ``cls`` is not a usable cell class, or None if it is: a Cell subclass with a valid name
    whose options can all become config keys (the rule for registration and the conformance kit)."""
    if not (inspect.isclass(cls) and issubclass(cls, Cell)):
        return f"seqframe_cells() returned {cls!r}, which is not a subclass of seqframe.Cell"
    problem = name_problem(cls.name)
    if problem:
        return f"cell class {cls.__qualname__}: {problem}"
    problems = config_problems(cls)
    if problems:
        return f"cell {cls.name!r} ({cls.__qualname__}) cannot be configured: " + "; ".join(problems)
    return None


def load_registry() -> CellRegistry:
    """Load every plugin now (no caching): what :func:`registry` does once."""
    registry = CellRegistry()
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    sources = _register_plugins(manager, registry, _discover())
    for impl in manager.hook.seqframe_cells.get_hookimpls():
        source = sources[impl.plugin_name]
        try:
            classes = list(impl.function() or [])
        except Exception as exc:  # the plugin's own code
            _report(registry, source, f"seqframe_cells() raised {type(exc).__name__}: {exc}")
            continue
        for cls in classes:  # a refused cell is listed as broken; the plugin's other cells stay
            problem = check_cell_class(cls)
            name = getattr(cls, "name", None)
            if problem:
                _report(registry, source, problem, name if isinstance(name, str) else None)
            else:
                registry.add(CellInfo(cls.name, cls, source))
    for name, claims in registry.conflicts.items():
        warnings.warn(
            f"cell name {name!r} is claimed by "
            + " and ".join(c.source.describe() for c in claims)
            + f"; `cell={name}` will fail until one is removed or blocked with {DISABLE_ENV}",
            PluginWarning,
            stacklevel=3,
        )
    return registry


_registry: Optional[CellRegistry] = None


def registry() -> CellRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def reset() -> None:
    """Forget the loaded plugins; the next lookup discovers them again (after a pip install, in tests)."""
    global _registry
    _registry = None


def list_cells() -> List[CellInfo]:
    """Every available cell, sorted by name."""
    return [registry().cells[name] for name in sorted(registry().cells)]


def broken_plugins() -> List[BrokenPlugin]:
    """Plugins that failed to load, with their errors."""
    return list(registry().broken)


def get_cell(name: str) -> Type[Cell]:
    """The cell class registered as ``name``."""
    return registry().get(name).cls


def cell_builder(name: str, options: Mapping[str, Any]) -> Callable[[int, int], Cell]:
    """Look up the cell called ``name`` and check ``options`` once: the builder it returns makes
    any number of cells, ``builder(input_size, hidden_size)`` (a stack's layers and directions),
    without checking again."""
    cls = get_cell(name)
    check_options(cls, options)
    return functools.partial(cls, **options)


def create_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> Cell:
    """Build the cell called ``name``; unknown options and wrong types are refused with a clear message."""
    return cell_builder(name, options)(input_size, hidden_size)
