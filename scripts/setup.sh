#!/usr/bin/env bash
# Creates .venv (once) and installs seqframe into it, editable, with its dev tools.
#
# torch: an installed torch is kept. Otherwise SEQFRAME_TORCH is installed,
# by default "torch==2.13.0" (the CPU build where a local CPU wheel is
# configured, as on this project's machines). GPU users pick their build, e.g.
#   SEQFRAME_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" bash scripts/train.sh
# or reuse a torch installed in the system Python with SEQFRAME_SYSTEM_SITE=1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEQFRAME_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "seqframe setup: creating $venv" >&2
  if [ "${SEQFRAME_SYSTEM_SITE:-0}" = 1 ]; then
    "$python" -m venv --system-site-packages "$venv"
  else
    "$python" -m venv "$venv"
  fi
fi

stamp="$venv/.seqframe-installed"
if [ ! -f "$stamp" ] || [ -n "$(find "$root/pyproject.toml" "$root"/plugins/*/pyproject.toml -newer "$stamp")" ]; then
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "seqframe setup: installing ${SEQFRAME_TORCH:-torch==2.13.0}" >&2
    # shellcheck disable=SC2086  # SEQFRAME_TORCH may carry pip options
    "${pip[@]}" ${SEQFRAME_TORCH:-torch==2.13.0} 2> >(grep -v "is ignored" >&2)
  fi
  echo "seqframe setup: installing seqframe, its dependencies and the cells in plugins/" >&2
  plugins=()
  for plugin in "$root"/plugins/*/pyproject.toml; do plugins+=(-e "$(dirname "$plugin")"); done
  "${pip[@]}" -e "$root[dev,report,slurm,onnx,joblib,optuna]" "${plugins[@]}" 2> >(grep -v "is ignored" >&2)
  touch "$stamp"
fi
