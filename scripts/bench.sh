#!/usr/bin/env bash
# The benchmark: sets up .venv on first use, then runs `seqframe bench` (arguments pass through).
#   bash scripts/bench.sh --markdown docs/benchmarks.md     # the full table, as in docs/benchmarks.md
#   bash scripts/bench.sh --sizes spec,medium --no-startup  # quicker
#   bash scripts/bench.sh --variant gru:reset_after=true --variant mingru:scan_method=parallel  # cells with options too
#   bash scripts/bench.sh --only lengths --lengths 100,1000 --no-flush-denormal  # the length sweep alone, subnormals kept
#   bash scripts/bench.sh --only lengths --time-checkpoint 100  # its memory with every 100th state kept
# Every installed cell is timed (the registry's), against torch.nn's kernel of its family. The full run
# includes the length sweep (T=100, 1,000, 10,000; a fresh process per model and T for its peak memory),
# which takes the longest; --no-lengths skips it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "${SEQFRAME_VENV:-$root/.venv}/bin/seqframe" bench "$@"
