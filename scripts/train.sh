#!/usr/bin/env bash
# The main job: sets up .venv on first use, then runs seqframe-train.
# Extra arguments are Hydra overrides, e.g.: bash scripts/train.sh cell=lstm data=copy
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "${SEQFRAME_VENV:-$root/.venv}/bin/seqframe-train" "$@"
