#!/usr/bin/env bash
# The benchmark: sets up .venv on first use, then runs `seqframe bench` (arguments pass through).
#   bash scripts/bench.sh --markdown docs/benchmarks.md     # the full table, as in docs/benchmarks.md
#   bash scripts/bench.sh --sizes spec,medium --no-startup  # quicker
#   bash scripts/bench.sh --variant gru:reset_after=true --variant mingru:scan_method=parallel  # cells with options too
# Every installed cell is timed (the registry's), against torch.nn's kernel of its family.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "${SEQFRAME_VENV:-$root/.venv}/bin/seqframe" bench "$@"
