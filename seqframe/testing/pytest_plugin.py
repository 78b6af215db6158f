"""pytest plugin of the conformance kit (loaded through the ``pytest11`` entry point).

It adds one fixture, ``seqframe_check``, and nothing that runs by itself (no
autouse fixture, no hook that touches other tests), so it is inert in every
test run that does not ask for it. A test that takes ``seqframe_check`` is
repeated for every (cell, check) pair; the cells come from, in this order:
a ``@pytest.mark.seqframe_cells("a", "b")`` marker, a module-level
``SEQFRAME_CELLS`` list, or the ``seqframe_cells`` ini option.

The fixture is a callable; its keyword arguments are the cell's options, e.g.
``seqframe_check(beta=2.0)`` checks the cell built with ``beta=2.0`` (a test
may be parametrized over option values). The first test of each cell is the
pre-check: when it fails, that test reports its one sentence and every other
check of the cell is shown as skipped with that sentence as the reason. A
check that cannot run here (``cuda`` without a GPU) is a skip with its reason.
"""

from __future__ import annotations

from typing import Any, Callable, List

import pytest

CHECK_NAMES = (
    "precheck",
    "shapes_and_dtypes",
    "no_input_mutation",
    "state_round_trip",
    "scan_matches_loop",
    "generated_matches_loop",
    "gradients_reach_parameters",
    "gradcheck",
    "lengths_masking",
    "layers_and_directions",
    "dtype_moves",
    "meta_device",
    "cuda",
    "deterministic",
    "state_dict_round_trip",
    "learns",
)  # the keys of seqframe.testing.CHECKS; kept here so that loading the plugin imports no torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("seqframe_cells", "cells checked by tests that use the seqframe_check fixture", type="args")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "seqframe_cells(*names): cells for the seqframe_check fixture")


def _cells_for(metafunc: pytest.Metafunc) -> List[str]:
    marker = metafunc.definition.get_closest_marker("seqframe_cells")
    if marker is not None:
        return list(marker.args)
    from_module = getattr(metafunc.module, "SEQFRAME_CELLS", None)
    if from_module:
        return list(from_module)
    return list(metafunc.config.getini("seqframe_cells"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seqframe_check" not in metafunc.fixturenames:
        return
    cells = _cells_for(metafunc)
    if not cells:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} uses seqframe_check but names no cell: set SEQFRAME_CELLS = ['name'] "
            "in the module, mark it @pytest.mark.seqframe_cells('name'), or set seqframe_cells in pytest's ini"
        )
    pairs = [(cell, check) for cell in cells for check in CHECK_NAMES]
    metafunc.parametrize("seqframe_check", pairs, indirect=True, ids=[f"{c}-{k}" for c, k in pairs])


@pytest.fixture
def seqframe_check(request: pytest.FixtureRequest) -> Callable[..., None]:
    """A callable that runs one conformance check on one cell; its keyword arguments are the cell's
    options (``seqframe_check(beta=2.0)``). A check that cannot run is a pytest skip with the reason."""
    from seqframe.testing import CheckSkipped, run_check

    cell, check = request.param

    def check_with(**options: Any) -> None:
        try:
            run_check(cell, check, options or None)
        except CheckSkipped as exc:
            pytest.skip(str(exc))

    return check_with
