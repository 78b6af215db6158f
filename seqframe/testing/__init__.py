"""The conformance kit: checks that a cell honours the seqframe contract.

In a plugin's tests::

    from seqframe.testing import check_cell

    def test_mycell():
        check_cell("mycell")

or, with the pytest plugin this distribution installs (entry point
``pytest11``), one test per check and cell::

    SEQFRAME_CELLS = ["mycell"]

    def test_conformance(seqframe_check):
        seqframe_check()          # or seqframe_check(beta=2.0): the cell's options

The pre-check runs first; when it fails, its one sentence is the whole report.
"""

from seqframe.testing.checks import (
    CHECKS,
    CellUnderTest,
    CheckSkipped,
    ConformanceError,
    check_cell,
    precheck,
    run_check,
)

__all__ = ["CHECKS", "CellUnderTest", "CheckSkipped", "ConformanceError", "check_cell", "precheck", "run_check"]
