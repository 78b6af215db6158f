#!/usr/bin/env bash
# The test suite: sets up .venv on first use, checks style, runs pytest.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -k plugins -x
# Tests run in SEQFRAME_TEST_WORKERS pytest-xdist workers (default 2: most tests wait on a
# subprocess that uses one core, so two workers keep both cores of a small machine busy).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${SEQFRAME_VENV:-$root/.venv}"
cd "$root"
"$venv/bin/ruff" check .
exec "$venv/bin/python" -m pytest -n "${SEQFRAME_TEST_WORKERS:-2}" "$@"
